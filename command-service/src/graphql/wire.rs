//! Wire scalars and enums the original declares that have no domain type of their own.

use async_graphql::{Enum, InputValueError, InputValueResult, Scalar, ScalarType, Value};
use domain::policy::ServerRole;

/// The original's `BigInt`: a 64-bit integer, sent as a number (or, from JavaScript clients
/// that cannot hold it exactly, a decimal string).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BigInt(pub i64);

#[Scalar]
impl ScalarType for BigInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => n
                .as_i64()
                .map(Self)
                .ok_or_else(|| InputValueError::custom("BigInt must be a whole number")),
            Value::String(s) => s
                .trim()
                .parse()
                .map(Self)
                .map_err(|_| InputValueError::custom("BigInt must be a whole number")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

/// A server role as the original's GraphQL enum names it (`admin.userList(role:)`).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ServerRole")]
pub enum ServerRoleWire {
    /// `server:user`.
    #[graphql(name = "SERVER_USER")]
    User,
    /// `server:admin`.
    #[graphql(name = "SERVER_ADMIN")]
    Admin,
    /// `server:guest`.
    #[graphql(name = "SERVER_GUEST")]
    Guest,
    /// `server:archived-user`.
    #[graphql(name = "SERVER_ARCHIVED_USER")]
    ArchivedUser,
}

impl From<ServerRoleWire> for ServerRole {
    fn from(r: ServerRoleWire) -> Self {
        match r {
            ServerRoleWire::User => Self::User,
            ServerRoleWire::Admin => Self::Admin,
            ServerRoleWire::Guest => Self::Guest,
            ServerRoleWire::ArchivedUser => Self::ArchivedUser,
        }
    }
}

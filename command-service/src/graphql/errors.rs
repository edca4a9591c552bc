//! GraphQL errors carry `extensions.code` as in the original, which clients match on.

use async_graphql::ErrorExtensions;
use domain::policy::Denied;

/// The codes this API answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not allowed.
    Forbidden,
    /// Sign in first.
    Unauthorized,
    /// The project does not exist.
    StreamNotFound,
    /// Something else does not exist.
    NotFound,
    /// Malformed input.
    BadRequest,
    /// A version could not be created (e.g. its root object is not stored).
    CommitCreate,
    /// Our failure.
    Internal,
}

impl ErrorCode {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => "FORBIDDEN",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::StreamNotFound => "STREAM_NOT_FOUND",
            Self::NotFound => "NOT_FOUND_ERROR",
            Self::BadRequest => "BAD_REQUEST_ERROR",
            Self::CommitCreate => "COMMIT_CREATE_ERROR",
            Self::Internal => "INTERNAL_SERVER_ERROR",
        }
    }
}

/// An error with `extensions.code`.
pub fn gql_error(code: ErrorCode, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code.as_str()))
}

/// A policy refusal, with its code.
pub(crate) fn denied(d: &Denied) -> async_graphql::Error {
    let message = d.message.clone();
    let code = d.code.as_str();
    async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code))
}

/// A database failure: logged, reported without details.
pub(crate) fn internal(e: impl std::fmt::Display) -> async_graphql::Error {
    tracing::error!(error = %e, "GraphQL resolver failed");
    gql_error(ErrorCode::Internal, "internal server error")
}

/// An account service failure, with the code its kind maps to.
pub(crate) fn account_error(e: crate::accounts::AccountError) -> async_graphql::Error {
    use crate::accounts::AccountError as A;
    match e {
        A::Invalid(m) => gql_error(ErrorCode::BadRequest, m),
        A::EmailTaken | A::InviteOnly => gql_error(ErrorCode::BadRequest, e.to_string()),
        A::BadCredentials | A::Unauthorized(_) => gql_error(ErrorCode::Unauthorized, e.to_string()),
        A::Forbidden(m) => gql_error(ErrorCode::Forbidden, m),
        A::NotFound(m) => gql_error(ErrorCode::NotFound, m),
        A::Command(c) => super::mutations::command_error(c),
        A::Internal(_) => internal(e),
    }
}

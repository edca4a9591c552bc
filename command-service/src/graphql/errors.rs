//! GraphQL errors carry `extensions.code` as in the original, which clients match on.

use async_graphql::ErrorExtensions;
use domain::policy::Denied;

use crate::error::AppError;

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
    AppError::from(d.clone()).into()
}

/// Our failure: logged with its cause chain, reported without details.
pub(crate) fn internal(e: impl Into<anyhow::Error>) -> async_graphql::Error {
    AppError::internal(e).into()
}

/// An account service failure, with the code its kind maps to.
pub(crate) fn account_error(e: crate::accounts::AccountError) -> async_graphql::Error {
    AppError::from(e).into()
}

/// A command's failure, with the code its kind maps to.
pub(crate) fn command_error(e: crate::commands::CommandError) -> async_graphql::Error {
    AppError::from(e).into()
}

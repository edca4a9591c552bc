//! GraphQL errors carry `extensions.code` as in the original, which clients match on.

use axum::http::StatusCode;
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

    /// The HTTP status the same failure has over REST.
    fn status(self) -> StatusCode {
        match self {
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::StreamNotFound | Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest | Self::CommitCreate => StatusCode::BAD_REQUEST,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error with `extensions.code`.
pub fn gql_error(code: ErrorCode, message: impl Into<String>) -> AppError {
    AppError::new(code.status(), code.as_str(), message)
}

/// A policy refusal, with its code.
pub(crate) fn denied(d: &Denied) -> AppError {
    AppError::from(d.clone())
}

/// Our failure: logged with its cause chain, reported without details.
pub(crate) fn internal(e: impl Into<anyhow::Error>) -> AppError {
    AppError::internal(e)
}

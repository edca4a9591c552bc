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

/// Gives the errors async-graphql makes itself the codes the original's clients see:
/// `GRAPHQL_PARSE_FAILED` for a document that does not parse (`parse_failed`, known before it
/// ran: the handler parses first, and execution reuses that parse), `GRAPHQL_VALIDATION_FAILED`
/// for one the schema refuses (an error with no path: unknown fields, unused or mistyped
/// variables, the depth and complexity limits), `BAD_USER_INPUT` for an argument or variable
/// refused while executing (an error with a path: a required variable not sent). Resolvers'
/// own errors all have a code already (`ApiResult`), so an uncoded one is async-graphql's.
/// (An extension could do this too, but any extension makes async-graphql box a future and
/// name the type of every field it resolves: measured slower on uncached reads.)
pub(crate) fn with_codes(response: &mut async_graphql::Response, parse_failed: bool) {
    for e in &mut response.errors {
        let code = if parse_failed {
            "GRAPHQL_PARSE_FAILED"
        } else if e.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
        } else {
            "BAD_USER_INPUT"
        };
        let extensions = e.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", code);
        }
    }
}

//! GraphQL errors carry `extensions.code` as in the original, which clients match on.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Variables};
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
/// `GRAPHQL_PARSE_FAILED` for a document that does not parse, `GRAPHQL_VALIDATION_FAILED` for
/// one the schema refuses (unknown fields, unused or mistyped variables, the depth and
/// complexity limits), `BAD_USER_INPUT` for an argument or variable refused while executing
/// (a required variable not sent, a value of the wrong type). Resolvers' own errors all have a
/// code already (`ApiResult`), so an uncoded error at execution is one of those. Without this
/// they were the only GraphQL errors without `extensions.code`.
pub(crate) struct RequestErrorCodes;

impl ExtensionFactory for RequestErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestErrorCodes)
    }
}

/// Sets `code` on `e` unless it has one.
fn with_code(mut e: ServerError, code: &'static str) -> ServerError {
    let extensions = e.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
    e
}

#[async_trait::async_trait]
impl Extension for RequestErrorCodes {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|e| with_code(e, "GRAPHQL_PARSE_FAILED"))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| with_code(e, "GRAPHQL_VALIDATION_FAILED"))
                .collect()
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let mut response = next.run(ctx, operation_name).await;
        response.errors = std::mem::take(&mut response.errors)
            .into_iter()
            .map(|e| with_code(e, "BAD_USER_INPUT"))
            .collect();
        response
    }
}

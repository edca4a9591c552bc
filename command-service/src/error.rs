//! The one application error of the API, and its two renderings: REST's JSON envelope and
//! GraphQL's `extensions.code`.
//!
//! REST errors use the original server's envelope, `{"error": {"message", "code"}}`, with the
//! status the original uses; GraphQL errors carry the original's code (which can differ from
//! REST's for the same failure: both are decided here, side by side). Our own failures keep
//! their whole cause chain for the log and reach the client only as "internal server error".

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error that becomes an HTTP response or a GraphQL error. It is what every resolver and
/// handler returns ([`ApiResult`]), so `?` works on every failure kind that has a `From` impl
/// here and on nothing else: an error type without one does not compile, instead of reaching
/// the client without a code (async-graphql's own `Error` converts any `Display` type).
#[derive(Debug, Clone)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    /// `extensions.code` when answered over GraphQL.
    graphql_code: &'static str,
    message: String,
    /// An error async-graphql made (a missing context entry, a dataloader's), passed through
    /// as it is once it has a code.
    graphql: Option<Box<async_graphql::Error>>,
}

/// What resolvers and handlers return.
pub type ApiResult<T> = Result<T, AppError>;

impl AppError {
    /// An error with an explicit status and machine-readable code (the same over GraphQL).
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            graphql_code: code,
            message: message.into(),
            graphql: None,
        }
    }

    /// The same error with another code over GraphQL (the original's, where it differs).
    fn over_graphql(mut self, code: &'static str) -> Self {
        self.graphql_code = code;
        self
    }

    /// 404 for an unknown route or resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND_ERROR", message)
    }

    /// 500 for a failure that is ours; the cause, with its whole chain, goes to the log only.
    /// When the chain shows the database went away during the request, 503 with
    /// `SERVICE_UNAVAILABLE` instead: the caller can do something about that (try again).
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let cause: anyhow::Error = cause.into();
        if cause
            .chain()
            .filter_map(|e| e.downcast_ref::<sqlx::Error>())
            .any(database_gone)
        {
            return Self::database_lost(&format!("{cause:#}"));
        }
        tracing::error!(error = format!("{cause:#}"), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "internal server error",
        )
    }

    /// 503 `SERVICE_UNAVAILABLE`: the database went away during the request (`cause` is logged).
    fn database_lost(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(error = %cause, "the database went away mid-request");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::dbgate::CODE,
            DATABASE_LOST,
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code a GraphQL client sees.
    pub fn graphql_code(&self) -> &'static str {
        self.graphql_code
    }

    /// What the caller is told.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What a caller is told when the database went away during its request.
pub const DATABASE_LOST: &str = "The database became unavailable during the request. A change may \
     or may not have been recorded: send it again with the same Idempotency-Key (it is applied \
     once), or read it back before sending it again.";

/// Whether `e` says the database is unreachable or shutting down (rather than refusing this
/// statement): lost or refused connections, an exhausted or closed pool, and PostgreSQL's
/// connection-exception (08) and operator-intervention (57P) classes.
fn database_gone(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        // A new connection hung up on during its first exchange (a proxy or pooler in front
        // of a stopped server accepts, then closes): sqlx calls that a protocol error of the
        // TLS negotiation.
        sqlx::Error::Protocol(m) => m.starts_with("unexpected response from SSLRequest"),
        _ => false,
    }
}

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

/// A batch loader's shared database error (every key of the batch holds the same one).
impl From<std::sync::Arc<sqlx::Error>> for AppError {
    fn from(e: std::sync::Arc<sqlx::Error>) -> Self {
        match std::sync::Arc::try_unwrap(e) {
            Ok(e) => Self::internal(e),
            // Shared with other keys: the database-gone check reads it in place.
            Err(shared) if database_gone(&shared) => Self::database_lost(&shared),
            Err(shared) => Self::internal(shared),
        }
    }
}

/// The file store failed (S3 unreachable, a refused request): ours, logged with its chain.
impl From<workers::blobs::BlobError> for AppError {
    fn from(e: workers::blobs::BlobError) -> Self {
        Self::internal(e)
    }
}

/// A policy refusal: its code and status (401, 403, or 404 for a project the caller may not
/// see).
impl From<domain::policy::Denied> for AppError {
    fn from(d: domain::policy::Denied) -> Self {
        use domain::policy::DenyCode;
        let status = match d.code {
            DenyCode::Unauthorized => StatusCode::UNAUTHORIZED,
            DenyCode::Forbidden => StatusCode::FORBIDDEN,
            DenyCode::StreamNotFound => StatusCode::NOT_FOUND,
        };
        Self::new(status, d.code.as_str(), d.message)
    }
}

/// An account service failure, with the status and code its kind maps to.
impl From<crate::accounts::AccountError> for AppError {
    fn from(e: crate::accounts::AccountError) -> Self {
        use crate::accounts::AccountError as A;
        match e {
            A::Invalid(m) => Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST_ERROR", m),
            A::EmailTaken => Self::new(StatusCode::BAD_REQUEST, "EMAIL_TAKEN", e.to_string())
                .over_graphql("BAD_REQUEST_ERROR"),
            A::InviteOnly => Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", e.to_string())
                .over_graphql("BAD_REQUEST_ERROR"),
            A::BadCredentials | A::Unauthorized(_) => {
                Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", e.to_string())
            }
            A::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", m),
            A::NotFound(m) => Self::not_found(m),
            A::Command(c) => c.into(),
            A::Internal(cause) => Self::internal(cause),
        }
    }
}

/// A command's refusal: the policy's code and status, 404 for what does not exist (over
/// GraphQL, `STREAM_NOT_FOUND` for a project, as a refusal would say), 409 for an entity whose
/// state forbids the action or a stream too hot (`BAD_REQUEST_ERROR` over GraphQL, as the
/// original), 400 for other broken rules (`COMMIT_CREATE_ERROR` for a missing root object),
/// 503 (with `PROJECTION_LAG`) for a change made but not visible yet, 500 for our failures.
impl From<crate::commands::CommandError> for AppError {
    fn from(e: crate::commands::CommandError) -> Self {
        use crate::commands::CommandError;
        use domain::DomainError;
        use domain::error::Entity;
        match e {
            CommandError::Denied(d) => d.into(),
            CommandError::Domain(
                DomainError::NotFound {
                    kind: Entity::Project,
                    ..
                }
                | DomainError::Deleted(Entity::Project),
            ) => domain::policy::Denied::project_not_found().into(),
            CommandError::Domain(d @ DomainError::NotFound { .. }) => {
                Self::not_found(d.to_string())
            }
            CommandError::Domain(d @ DomainError::InvalidTransition { .. }) => {
                Self::new(StatusCode::CONFLICT, "INVALID_STATE_ERROR", d.to_string())
                    .over_graphql("BAD_REQUEST_ERROR")
            }
            CommandError::Domain(d @ DomainError::RootObjectMissing { .. }) => Self::new(
                StatusCode::BAD_REQUEST,
                "COMMIT_CREATE_ERROR",
                d.to_string(),
            ),
            CommandError::Domain(d) => {
                Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST_ERROR", d.to_string())
            }
            CommandError::BadInput(m) => Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST_ERROR", m),
            CommandError::Contended { .. } => {
                Self::new(StatusCode::CONFLICT, "CONFLICT", e.to_string())
                    .over_graphql("BAD_REQUEST_ERROR")
            }
            CommandError::Lag(lag) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                projections::ProjectionLag::CODE,
                lag.to_string(),
            ),
            CommandError::Internal(cause) => Self::internal(cause),
        }
    }
}

/// Over GraphQL: the message (generic for our failures) and `extensions.code`. `AppError` is
/// deliberately not `Display`, so this is the only way it becomes a GraphQL error (never
/// async-graphql's blanket conversion, which would drop the code).
impl From<AppError> for async_graphql::Error {
    fn from(e: AppError) -> Self {
        use async_graphql::ErrorExtensions;
        if let Some(passed) = e.graphql {
            return *passed;
        }
        let code = e.graphql_code;
        async_graphql::Error::new(e.message).extend_with(|_, x| x.set("code", code))
    }
}

/// An error async-graphql made: kept as it is, with `INTERNAL_SERVER_ERROR` added when it has
/// no code (a missing context entry is our bug), so no GraphQL error leaves without one.
impl From<async_graphql::Error> for AppError {
    fn from(e: async_graphql::Error) -> Self {
        use async_graphql::ErrorExtensions;
        let coded = e
            .extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some());
        let passed = if coded {
            e
        } else {
            tracing::error!(error = %e.message, "uncoded GraphQL error");
            e.extend_with(|_, x| x.set("code", "INTERNAL_SERVER_ERROR"))
        };
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            passed.message.clone(),
        );
        error.graphql = Some(Box::new(passed));
        error
    }
}

/// Failures that are ours by nature (a store, a decode, a join): logged with their chain.
impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "code": self.code}});
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::ErrorExtensions;

    use super::*;

    fn code_of(e: &async_graphql::Error) -> Option<String> {
        match e.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    #[test]
    fn every_graphql_error_leaves_with_a_code() {
        // Ours: the GraphQL code, which may differ from REST's.
        let taken = AppError::from(crate::accounts::AccountError::EmailTaken);
        assert_eq!(taken.status(), StatusCode::BAD_REQUEST);
        let over_graphql = async_graphql::Error::from(taken);
        assert_eq!(code_of(&over_graphql).as_deref(), Some("BAD_REQUEST_ERROR"));

        // async-graphql's own, with a code: passed through with every extension.
        let coded = async_graphql::Error::new("slow down").extend_with(|_, x| {
            x.set("code", "RATE_LIMIT_ERROR");
            x.set("statusCode", 429);
        });
        let through = async_graphql::Error::from(AppError::from(coded));
        assert_eq!(code_of(&through).as_deref(), Some("RATE_LIMIT_ERROR"));
        assert!(
            through
                .extensions
                .as_ref()
                .and_then(|x| x.get("statusCode"))
                .is_some()
        );
        assert_eq!(through.message, "slow down");

        // async-graphql's own without one (a missing context entry): ours, so internal.
        let bare = async_graphql::Error::new("Data `X` does not exist.");
        let through = async_graphql::Error::from(AppError::from(bare));
        assert_eq!(code_of(&through).as_deref(), Some("INTERNAL_SERVER_ERROR"));
    }

    #[test]
    fn a_lost_database_answers_503_even_through_a_shared_loader_error() {
        let shared = std::sync::Arc::new(sqlx::Error::PoolTimedOut);
        let _other_key = shared.clone();
        let e = AppError::from(shared);
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        let e = AppError::from(std::sync::Arc::new(sqlx::Error::RowNotFound));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.graphql_code(), "INTERNAL_SERVER_ERROR");
    }

    #[test]
    fn a_connection_hung_up_on_while_being_set_up_is_a_lost_database() {
        // What sqlx says when a proxy in front of a stopped server accepts and closes.
        let hung_up = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert_eq!(
            AppError::from(hung_up).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        // Any other protocol error is ours.
        let garbled = sqlx::Error::Protocol("unknown message type: 'x'".into());
        assert_eq!(
            AppError::from(garbled).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}

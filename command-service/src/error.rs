//! The one application error of the HTTP layer and its JSON rendering.
//!
//! REST errors use the original server's envelope, `{"error": {"message", "code"}}`, with the
//! status the original uses; internal causes are logged, never sent to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error that becomes an HTTP response.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AppError {
    /// An error with an explicit status and machine-readable code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 404 for an unknown route or resource.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND_ERROR", message)
    }

    /// 500 for a failure that is ours; the cause goes to the log only.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "internal server error",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// A command's refusal as REST routes answer it: the policy's code and status (401, 403, or 404
/// for a project the caller may not see), 404 for what does not exist, 409 for an entity whose
/// state forbids the action or a stream too hot, 400 for other broken rules, 503 (with
/// `PROJECTION_LAG`) for a change made but not visible yet, 500 for our failures.
impl From<crate::commands::CommandError> for AppError {
    fn from(e: crate::commands::CommandError) -> Self {
        use crate::commands::CommandError;
        use domain::DomainError;
        use domain::policy::DenyCode;
        match e {
            CommandError::Denied(d) => {
                let status = match d.code {
                    DenyCode::Unauthorized => StatusCode::UNAUTHORIZED,
                    DenyCode::Forbidden => StatusCode::FORBIDDEN,
                    DenyCode::StreamNotFound => StatusCode::NOT_FOUND,
                };
                Self::new(status, d.code.as_str(), d.message)
            }
            CommandError::Domain(d @ DomainError::NotFound { .. }) => {
                Self::not_found(d.to_string())
            }
            CommandError::Domain(d @ DomainError::InvalidTransition { .. }) => {
                Self::new(StatusCode::CONFLICT, "INVALID_STATE_ERROR", d.to_string())
            }
            CommandError::Domain(d) => {
                Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST_ERROR", d.to_string())
            }
            CommandError::BadInput(m) => Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST_ERROR", m),
            CommandError::Contended { .. } => {
                Self::new(StatusCode::CONFLICT, "CONFLICT", e.to_string())
            }
            CommandError::Lag(lag) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                projections::ProjectionLag::CODE,
                lag.to_string(),
            ),
            CommandError::Internal(m) => Self::internal(m),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "code": self.code}});
        (self.status, Json(body)).into_response()
    }
}

//! Knowing when PostgreSQL is down, so requests are refused at once with a clear answer instead
//! of each waiting out the pool's acquire timeout and failing with an internal error.
//!
//! A probe runs `SELECT 1` through the pool every `STRATA_DATABASE_PROBE_INTERVAL_MS`, bounded
//! by `STRATA_DATABASE_PROBE_TIMEOUT_MS`. One failed probe closes the gate; the first probe that
//! succeeds opens it again, with no restart. While closed, GraphQL answers
//! `SERVICE_UNAVAILABLE` and REST routes 503 with `Retry-After`; nothing is written.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sqlx::PgPool;

use crate::app::AppState;

/// The wire code GraphQL clients get while the database is down.
pub const CODE: &str = "SERVICE_UNAVAILABLE";

/// What the API tells a caller while the database is down.
pub const MESSAGE: &str =
    "The database is unavailable: nothing was read or recorded. Try again shortly.";

/// Whether the database answered its last probe.
#[derive(Clone, Default)]
pub struct DbGate {
    down: Arc<AtomicBool>,
}

impl DbGate {
    /// True while the last probe failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Probes `pool` every `interval` (each probe bounded by `timeout`) until the process
    /// ends, logging each change of state.
    pub async fn watch(self, pool: PgPool, interval: Duration, timeout: Duration) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let probe = tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&pool));
            let failure = match probe.await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {} ms", timeout.as_millis())),
            };
            let was_down = self.down.swap(failure.is_some(), Ordering::Relaxed);
            match (&failure, was_down) {
                (Some(error), false) => {
                    tracing::error!(%error, "PostgreSQL is down: refusing requests until it is back");
                }
                (None, true) => tracing::info!("PostgreSQL is back: serving requests"),
                _ => {}
            }
        }
    }
}

/// Paths that need no database: health, metrics, ping.
fn needs_database(path: &str) -> bool {
    !matches!(path, "/liveness" | "/readiness" | "/metrics" | "/api/ping")
}

/// Refuses requests that need the database while it is down.
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.db_gate().is_down() || !needs_database(req.uri().path()) {
        return next.run(req).await;
    }
    let retry_after = state.settings().database_retry_after_seconds;
    // A WebSocket client cannot read a body that answers its upgrade: it needs the status.
    let upgrading = crate::graphql::ws::is_upgrade(req.headers());
    let mut response = if req.uri().path() == "/graphql" && !upgrading {
        // GraphQL clients read errors from the body; the original answers them with 200.
        (
            StatusCode::OK,
            axum::Json(json!({
                "data": null,
                "errors": [{"message": MESSAGE, "extensions": {"code": CODE}}],
            })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": MESSAGE, "code": CODE})),
        )
            .into_response()
    };
    // Digits are always a valid header value.
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&retry_after.to_string()).unwrap_or(HeaderValue::from_static("5")),
    );
    response
}

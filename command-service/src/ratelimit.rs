//! Rate limits in Redis, per token (else per client IP) and action, like the original's
//! bursty limiter: a request passes while the regular window has room, else while the burst
//! window has room. Unlike the original, the object routes' limits really apply (its table
//! keys never match those paths).
//!
//! Fail-open: when Redis errors or is slow, the request passes, the failure is logged and
//! counted (`strata_rate_limit_failures_total`); a limiter outage never becomes a 500.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fred::prelude::LuaInterface;
use sha2::{Digest, Sha256};

use crate::app::AppState;

pub mod limits;

pub use limits::{Limit, defaults, parse};

/// The outcome of a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Passes; `remaining` in the current window.
    Allowed {
        /// Requests left.
        remaining: u32,
    },
    /// Over the limit until `reset_in`.
    Limited {
        /// When a request may pass again.
        reset_in: Duration,
    },
    /// Limits are off, or the limiter failed (fail-open).
    Unchecked,
}

// Regular window first; once full, the burst window. Returns {allowed, remaining, reset ms}.
const SCRIPT: &str = r"
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if c <= tonumber(ARGV[2]) then return {1, tonumber(ARGV[2]) - c, redis.call('PTTL', KEYS[1])} end
local b = redis.call('INCR', KEYS[2])
if b == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
if b <= tonumber(ARGV[4]) then return {1, tonumber(ARGV[4]) - b, redis.call('PTTL', KEYS[2])} end
return {0, 0, math.max(redis.call('PTTL', KEYS[1]), 1)}
";

/// How long checks are skipped after the limiter failed.
const BREAKER_PAUSE: Duration = Duration::from_secs(1);

/// How long a check may take before the request passes unchecked.
const CHECK_TIMEOUT: Duration = Duration::from_millis(200);

/// The limiter: the configured limits, the Redis they are counted in, and a circuit breaker.
/// Cheap to clone (shared); what resolvers and the middleware are given instead of the whole
/// application state.
#[derive(Clone)]
pub struct Limiter {
    inner: std::sync::Arc<LimiterInner>,
}

struct LimiterInner {
    enabled: bool,
    limits: std::collections::BTreeMap<&'static str, Limit>,
    redis: fred::clients::Client,
    pool: sqlx::PgPool,
    failures: prometheus::IntCounter,
    /// The prefix of this deployment's keys, named on first use.
    namespace: tokio::sync::OnceCell<String>,
    /// Until when checks skip Redis after a failure (so an outage does not add the check
    /// timeout to every request).
    paused_until: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Limiter {
    /// A limiter over `limits` (checks pass unchecked when `enabled` is false), counting in
    /// `redis`, its failures in `failures`.
    pub fn new(
        enabled: bool,
        limits: std::collections::BTreeMap<&'static str, Limit>,
        redis: fred::clients::Client,
        pool: sqlx::PgPool,
        failures: prometheus::IntCounter,
    ) -> Self {
        Self {
            inner: std::sync::Arc::new(LimiterInner {
                enabled,
                limits,
                redis,
                pool,
                failures,
                namespace: tokio::sync::OnceCell::new(),
                paused_until: std::sync::Mutex::new(None),
            }),
        }
    }

    /// The prefix of this deployment's Redis keys (`strata:<database schema>`), so deployments
    /// sharing a Redis (and parallel test schemas) never count each other's requests.
    async fn namespace(&self) -> Result<&str, sqlx::Error> {
        self.inner
            .namespace
            .get_or_try_init(|| async {
                let schema: String = sqlx::query_scalar("SELECT current_schema()")
                    .fetch_one(&self.inner.pool)
                    .await?;
                Ok(format!("strata:{schema}"))
            })
            .await
            .map(String::as_str)
    }

    /// Checks `action` for `subject` (a token digest or an IP).
    pub async fn check(&self, action: &str, subject: &str) -> Verdict {
        let inner = &*self.inner;
        if !inner.enabled {
            return Verdict::Unchecked;
        }
        let Some(limit) = inner.limits.get(action).copied() else {
            return Verdict::Unchecked;
        };
        // A poisoned lock: not paused.
        let paused = inner
            .paused_until
            .lock()
            .map(|until| until.is_some_and(|t| std::time::Instant::now() < t))
            .unwrap_or(false);
        if paused {
            inner.failures.inc();
            return Verdict::Unchecked;
        }
        let namespace = match self.namespace().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter cannot name its keys; letting the request through");
                inner.failures.inc();
                return Verdict::Unchecked;
            }
        };
        let keys = vec![
            format!("{namespace}:rl:{action}:{subject}"),
            format!("{namespace}:rl:{action}:{subject}:burst"),
        ];
        // Windows are minutes long; saturating is never reached.
        let args = vec![
            i64::try_from(limit.window.as_millis()).unwrap_or(i64::MAX),
            i64::from(limit.regular),
            i64::try_from(limit.burst_window.as_millis()).unwrap_or(i64::MAX),
            i64::from(limit.burst),
        ];
        let outcome = tokio::time::timeout(
            CHECK_TIMEOUT,
            inner.redis.eval::<Vec<i64>, _, _, _>(SCRIPT, keys, args),
        )
        .await;
        match outcome {
            Ok(Ok(v)) if v.len() == 3 => {
                if v[0] == 1 {
                    Verdict::Allowed {
                        remaining: u32::try_from(v[1]).unwrap_or(0), // count <= limit: never negative
                    }
                } else {
                    Verdict::Limited {
                        // The script returns at least 1 here.
                        reset_in: Duration::from_millis(u64::try_from(v[2]).unwrap_or(1000)),
                    }
                }
            }
            other => {
                let reason = match other {
                    Ok(Ok(v)) => format!("unexpected reply {v:?}"),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_owned(),
                };
                tracing::warn!(%action, %reason, "rate limiter unavailable; letting requests through for a second");
                inner.failures.inc();
                if let Ok(mut until) = inner.paused_until.lock() {
                    *until = Some(std::time::Instant::now() + BREAKER_PAUSE);
                }
                Verdict::Unchecked
            }
        }
    }
}

/// Whom a request is counted against: its token (digested: keys must not hold secrets), else
/// the client's address.
pub fn subject(headers: &axum::http::HeaderMap, peer: Option<SocketAddr>) -> String {
    match crate::auth::presented_token(headers) {
        Some(token) => format!("t:{}", hex::encode(&Sha256::digest(token.as_bytes())[..12])),
        None => format!(
            "ip:{}",
            peer.map(|p| p.ip().to_string()).unwrap_or_default()
        ),
    }
}

/// The route's action class, if it has one beyond `ALL_REQUESTS`.
fn route_action(method: &str, route: &str) -> Option<&'static str> {
    Some(match (method, route) {
        ("POST", "/graphql") => "POST_GRAPHQL",
        ("POST", "/objects/{project_id}") => "POST_OBJECTS",
        ("GET", "/objects/{project_id}/{object_id}")
        | ("GET", "/objects/{project_id}/{object_id}/single") => "GET_OBJECTS",
        ("POST", "/api/getobjects/{project_id}")
        | ("POST", "/api/v2/projects/{project_id}/object-stream")
        | ("POST", "/api/v2/projects/{project_id}/object-stream/") => "POST_GETOBJECTS",
        ("POST", "/api/diff/{project_id}") => "POST_DIFF",
        ("POST", "/auth/local/login")
        | ("POST", "/auth/pwdreset/request")
        | ("POST", "/auth/pwdreset/finalize") => "AUTH",
        ("POST", "/auth/local/register") => "USER_CREATE",
        _ => return None,
    })
}

/// The 429 answer, with the original's headers.
pub fn too_many(reset_in: Duration) -> Response {
    let seconds = reset_in.as_secs_f64().ceil().max(1.0) as u64;
    let reset_at = time::OffsetDateTime::now_utc() + reset_in;
    let mut res = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(serde_json::json!({"error": {
            "message": format!("You are sending too many requests. Try again in {seconds} s."),
            "code": "RATE_LIMIT_ERROR"}})),
    )
        .into_response();
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        headers.insert("retry-after", v);
    }
    if let Ok(v) = reset_at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| ())
        .and_then(|t| HeaderValue::from_str(&t).map_err(|_| ()))
    {
        headers.insert("x-ratelimit-reset", v);
    }
    headers.insert(
        "x-speckle-meditation",
        HeaderValue::from_static("https://http.cat/429"),
    );
    res
}

/// Middleware: `ALL_REQUESTS`, then the route's own class.
pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let who = subject(req.headers(), peer);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let method = req.method().as_str().to_owned();
    let mut remaining = None;
    for action in std::iter::once("ALL_REQUESTS").chain(route_action(&method, &route)) {
        match state.limiter().check(action, &who).await {
            Verdict::Limited { reset_in } => return too_many(reset_in),
            Verdict::Allowed { remaining: r } => remaining = Some(r),
            Verdict::Unchecked => {}
        }
    }
    let mut res = next.run(req).await;
    if let Some(r) = remaining
        && let Ok(v) = HeaderValue::from_str(&r.to_string())
    {
        res.headers_mut().insert("x-ratelimit-remaining", v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_defaults_and_bad_specs_are_refused() {
        let limits = parse("post_graphql=2/10,1/60; AUTH = 1/1,0/1").unwrap();
        assert_eq!(
            limits["POST_GRAPHQL"],
            Limit {
                regular: 2,
                window: Duration::from_secs(10),
                burst: 1,
                burst_window: Duration::from_secs(60)
            }
        );
        assert_eq!(limits["AUTH"].burst, 0);
        assert_eq!(limits["ALL_REQUESTS"], defaults()["ALL_REQUESTS"]);
        assert!(parse("NOPE=1/1,1/1").is_err());
        assert!(parse("AUTH=1/0,1/1").is_err());
        assert!(parse("AUTH=1/1").is_err());
    }
}

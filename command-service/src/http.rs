//! The HTTP surface: router, middleware, health and metrics endpoints.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::compression::Predicate;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::error::AppError;

/// Builds the API router over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/liveness", get(liveness))
        .route("/readiness", get(readiness))
        .route("/metrics", get(metrics))
        .route("/api/ping", get(|| async { "pong" }))
        .route(
            "/graphql",
            get(crate::graphql::ws::get).post(crate::graphql::handler),
        )
        .route("/explorer", get(crate::graphql::explorer))
        .route(
            "/auth/local/register",
            axum::routing::post(crate::auth::register),
        )
        .route("/auth/local/login", axum::routing::post(crate::auth::login))
        .route("/auth/token", axum::routing::post(crate::auth::token))
        .route("/auth/accesscode", get(crate::auth::access_code))
        .route(
            "/auth/pwdreset/request",
            axum::routing::post(crate::auth::password_reset_request),
        )
        .route(
            "/auth/pwdreset/finalize",
            axum::routing::post(crate::auth::password_reset_finalize),
        )
        .route(
            "/objects/{project_id}",
            axum::routing::post(crate::objects::upload),
        )
        .route(
            "/objects/{project_id}/{object_id}",
            get(crate::objects::download),
        )
        .route(
            "/objects/{project_id}/{object_id}/single",
            get(crate::objects::single),
        )
        .route(
            "/api/diff/{project_id}",
            axum::routing::post(crate::objects::diff),
        )
        .route(
            "/api/getobjects/{project_id}",
            axum::routing::post(crate::objects::get_objects),
        )
        .route(
            "/api/v2/projects/{project_id}/object-stream",
            axum::routing::post(crate::objects::object_stream),
        )
        .route(
            "/api/v2/projects/{project_id}/object-stream/",
            axum::routing::post(crate::objects::object_stream),
        )
        .route(
            "/api/stream/{project_id}/blob",
            axum::routing::post(crate::blobs::upload),
        )
        .route(
            "/api/stream/{project_id}/blob/diff",
            axum::routing::post(crate::blobs::diff),
        )
        .route(
            "/api/stream/{project_id}/blob/{blob_id}",
            get(crate::blobs::download).delete(crate::blobs::delete),
        )
        .route("/api/stream/{project_id}/blobs", get(crate::blobs::list))
        .route(
            "/api/file/{file_type}/{project_id}",
            axum::routing::post(crate::blobs::upload_and_import),
        )
        .route(
            "/api/file/{file_type}/{project_id}/{model_name}",
            axum::routing::post(crate::blobs::upload_and_import),
        )
        .route(
            "/api/v2/projects/{project_id}/modelingestion/{ingestion_id}/uploads/sign",
            axum::routing::post(crate::ingestion::rest::sign),
        )
        .route(
            "/api/v2/projects/{project_id}/modelingestion/{ingestion_id}/uploads/complete",
            axum::routing::post(crate::ingestion::rest::complete),
        )
        .route(
            "/api/v2/projects/{project_id}/models/{model_id}/versions/{version_id}/artifacts",
            get(crate::ingestion::rest::artifacts),
        )
        .merge(crate::previews::routes())
        .merge(crate::web::routes())
        .fallback(|| async { AppError::not_found("no such route") })
        // A request may carry several parts plus multipart framing; each part has its own limit.
        .layer(axum::extract::DefaultBodyLimit::max(
            state
                .settings()
                .object_multipart_upload_size_limit_bytes
                .saturating_add(1 << 20),
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::ratelimit::middleware,
        ))
        .layer(middleware::from_fn(embed_token))
        // Before rate limits and authentication: while PostgreSQL is down nothing can be
        // served, and every caller hears so at once.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::dbgate::middleware,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let request_id = req
                .headers()
                .get(crate::context::REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("http", method = %req.method(), uri = %req.uri(), request_id)
        }))
        // gzip for clients that ask (connectors and the viewer all do): object downloads shrink
        // several-fold. The fastest level: the default (6) held a download of 1 MB objects to
        // 25 MB/s on one core, while level 1 still shrinks Speckle JSON about four-fold.
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest)
                .compress_when(
                    tower_http::compression::predicate::DefaultPredicate::new().and(
                        |_: StatusCode,
                         _: axum::http::Version,
                         _: &axum::http::HeaderMap,
                         extensions: &axum::http::Extensions| {
                            extensions
                                .get::<crate::objects::stream::EncodedHere>()
                                .is_none()
                        },
                    ),
                ),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn(security_headers))
        // Outermost: preflights are answered before rate limits and authentication, and
        // every answer (errors included) carries the headers a browser needs to read it.
        .layer(cors(state.settings()))
        .with_state(state)
}

/// CORS as the original's API: any origin by default (`STRATA_CORS_ALLOWED_ORIGINS`), every
/// method, the request headers a page asks for (`Authorization`, `Content-Type`,
/// `apollographql-client-name`, `x-request-id`, ...) and no cookies: clients authenticate with
/// bearer tokens. Preflights are cached by browsers for a day.
fn cors(settings: &crate::config::Settings) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
    let origin = match settings.cors_origins() {
        Ok(Some(list)) => AllowOrigin::list(
            list.iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
        // Validated when the settings were loaded; `*` is the only other outcome.
        Ok(None) | Err(_) => AllowOrigin::any(),
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([header::HeaderName::from_static(
            crate::context::REQUEST_ID_HEADER,
        )])
        .max_age(Duration::from_secs(24 * 3600))
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    // The web app's pages set their own policy (the embed may be framed); every other answer
    // may not be framed at all.
    if !res.headers().contains_key(header::CONTENT_SECURITY_POLICY) {
        res.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    res
}

async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let res = next.run(req).await;
    let metrics = state.metrics();
    metrics
        .http_requests
        .with_label_values(&[method.as_str(), route.as_str(), res.status().as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[method.as_str(), route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    res
}

/// `?embedToken=` (how embedded viewers pass a token) becomes the request's
/// `Authorization`, unless one was sent, so every route authenticates it the same way.
async fn embed_token(mut req: Request, next: Next) -> Response {
    let token = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "embedToken")
            .map(|(_, v)| v.to_owned())
    });
    if let Some(token) = token.filter(|t| !t.is_empty())
        && !req.headers().contains_key(header::AUTHORIZATION)
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        req.headers_mut().insert(header::AUTHORIZATION, value);
    }
    next.run(req).await
}

/// The process is alive. Deliberately checks no dependency: an orchestrator restarting the
/// API because Postgres is down would only add load to an outage.
async fn liveness() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready to serve: Postgres and Redis both answer within the configured timeout.
async fn readiness(State(state): State<AppState>) -> Response {
    let timeout = Duration::from_millis(state.settings().readiness_timeout_ms);
    let (postgres, redis) = tokio::join!(
        check(timeout, state.ping_postgres()),
        check(timeout, state.ping_redis())
    );
    let ready = postgres.is_ok() && redis.is_ok();
    let detail = |r: &Result<(), String>| match r {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e}),
    };
    let body = json!({
        "status": if ready { "ok" } else { "unavailable" },
        "details": {"postgres": detail(&postgres), "redis": detail(&redis)},
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn check<F>(timeout: Duration, fut: F) -> Result<(), String>
where
    F: Future<Output = Result<(), String>>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    let metrics = state.metrics();
    metrics.live_subscriptions.set(state.hub().active());
    let (streams, bytes, budget) = state.bus().state_cache_held();
    for (measure, value) in [
        ("streams", streams),
        ("bytes", bytes),
        ("budget_bytes", budget),
    ] {
        metrics
            .command_state_cache
            .with_label_values(&[measure])
            .set(value as f64);
    }
    let heads = state.event_log().head_counts();
    for (measure, value) in [
        ("appends_onto_known_head", heads.onto_known),
        ("appends_head_looked_up", heads.looked_up),
    ] {
        metrics
            .event_log
            .with_label_values(&[measure])
            .set(value as f64);
    }
    match state.event_log().horizon_stats().await {
        Ok(stats) => {
            let gauge = |name: &str, v: f64| metrics.event_log.with_label_values(&[name]).set(v);
            gauge("held_back_events", stats.held_back_events as f64);
            gauge("max_position", stats.max_position as f64);
            gauge(
                "oldest_open_transaction_seconds",
                stats.oldest_open_transaction_seconds,
            );
        }
        Err(e) => tracing::warn!(error = %e, "event log stats unavailable for /metrics"),
    }
    match projections::status(state.pool()).await {
        Ok(all) => {
            for p in all {
                let name = p.name.as_str();
                metrics
                    .projections
                    .with_label_values(&[name, "behind_events"])
                    .set(p.behind_events as f64);
                metrics
                    .projections
                    .with_label_values(&[name, "behind_seconds"])
                    .set(p.behind_seconds);
                metrics
                    .projections
                    .with_label_values(&[name, "halted"])
                    .set(if p.error.is_some() { 1.0 } else { 0.0 });
            }
        }
        Err(e) => tracing::warn!(error = %e, "projection status unavailable for /metrics"),
    }
    match schema::monitor::sample(state.pool()).await {
        Ok(sample) => metrics.set_db(&sample),
        Err(e) => tracing::warn!(error = %e, "database figures unavailable for /metrics"),
    }
    match schema::previews::stats(state.pool()).await {
        Ok(figures) => {
            for (measure, value) in figures {
                metrics.previews.with_label_values(&[&measure]).set(value);
            }
        }
        Err(e) => tracing::warn!(error = %e, "preview figures unavailable for /metrics"),
    }
    let text = metrics.render().map_err(AppError::internal)?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

//! Preview images over HTTP, as the original serves them, and the preview worker's wiring.
//!
//! - `GET /preview/:p[/:angle]` (the project's newest version outside the `globals` model),
//!   `/preview/:p/branches/:model[/:angle]`, `/preview/:p/commits/:version[/:angle]` and
//!   `/preview/:p/objects/:object[/:angle]`; angle `0` (default) or `all` (the sprite).
//! - Answers as the original: the stored PNG (`private, max-age=604800`); a placeholder image
//!   while it is not rendered (`no-cache, no-store`: it may change any second); error images
//!   with `X-Preview-Error`/`X-Preview-Error-Code`; a refused caller gets the 401 image (or
//!   404 for a project that does not exist) with status 200, except the objects route (403,
//!   empty). Previews of public projects are public.
//! - The built viewer page (`STRATA_PREVIEW_VIEWER_DIR`) at `/_strata/viewer/`, which the
//!   renderer's browser opens on this origin.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use domain::policy;
use fred::prelude::PubsubInterface;
use futures::FutureExt;
use futures::future::BoxFuture;
use projections::speckle::query;
use schema::previews::{self as stored, PreviewStatus};
use workers::preview::{Placeholder, PreviewControl, PreviewOptions};

use crate::accounts::Accounts;
use crate::app::AppState;
use crate::config::{Secret, Settings};

/// The original's image size.
const WIDTH: u32 = 700;
const HEIGHT: u32 = 400;
const CACHED: &str = "private, max-age=604800";
const UNCACHED: &str = "no-cache, no-store";

/// The preview and viewer-page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/preview/{project_id}", get(latest))
        .route("/preview/{project_id}/{angle}", get(latest_angle))
        .route("/preview/{project_id}/branches/{model}", get(branch))
        .route(
            "/preview/{project_id}/branches/{model}/{angle}",
            get(branch_angle),
        )
        .route("/preview/{project_id}/commits/{version_id}", get(commit))
        .route(
            "/preview/{project_id}/commits/{version_id}/{angle}",
            get(commit_angle),
        )
        .route("/preview/{project_id}/objects/{object_id}", get(object))
        .route(
            "/preview/{project_id}/objects/{object_id}/{angle}",
            get(object_angle),
        )
        .route("/_strata/viewer/{file}", get(viewer_file))
}

/// Whose root object a preview request names.
enum Target {
    Latest,
    Model(String),
    Version(String),
    Object(String),
}

async fn latest(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(p): Path<String>,
) -> Response {
    serve(&state, &headers, &p, Target::Latest, None).await
}

async fn latest_angle(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, angle)): Path<(String, String)>,
) -> Response {
    serve(&state, &headers, &p, Target::Latest, Some(angle)).await
}

async fn branch(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, model)): Path<(String, String)>,
) -> Response {
    serve(&state, &headers, &p, Target::Model(model), None).await
}

async fn branch_angle(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, model, angle)): Path<(String, String, String)>,
) -> Response {
    serve(&state, &headers, &p, Target::Model(model), Some(angle)).await
}

async fn commit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, v)): Path<(String, String)>,
) -> Response {
    serve(&state, &headers, &p, Target::Version(v), None).await
}

async fn commit_angle(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, v, angle)): Path<(String, String, String)>,
) -> Response {
    serve(&state, &headers, &p, Target::Version(v), Some(angle)).await
}

async fn object(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, o)): Path<(String, String)>,
) -> Response {
    serve(&state, &headers, &p, Target::Object(o), None).await
}

async fn object_angle(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((p, o, angle)): Path<(String, String, String)>,
) -> Response {
    serve(&state, &headers, &p, Target::Object(o), Some(angle)).await
}

fn image(bytes: Vec<u8>, cache: &'static str, error_code: Option<&'static str>) -> Response {
    let mut res = (StatusCode::OK, bytes).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    if let Some(code) = error_code {
        h.insert("x-preview-error", HeaderValue::from_static("true"));
        h.insert("x-preview-error-code", HeaderValue::from_static(code));
    }
    res
}

fn placeholder(kind: Placeholder, cache: &'static str, code: Option<&'static str>) -> Response {
    image(kind.png(WIDTH, HEIGHT), cache, code)
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "preview route failed");
    placeholder(Placeholder::Error, UNCACHED, Some("INTERNAL_ERROR"))
}

async fn serve(
    state: &AppState,
    headers: &HeaderMap,
    project_id: &str,
    target: Target,
    angle: Option<String>,
) -> Response {
    let objects_route = matches!(target, Target::Object(_));
    // Who may see it: as reading the project.
    let principal = match crate::auth::authenticate(state, headers).await {
        Ok(p) => p,
        Err(unavailable @ crate::auth::InvalidToken::Unavailable(_)) => {
            return unavailable.into_response();
        }
        Err(_) if objects_route => return StatusCode::FORBIDDEN.into_response(),
        Err(_) => return placeholder(Placeholder::Unauthorized, UNCACHED, None),
    };
    let pool = state.pool();
    let project =
        match query::project_with_role(pool, project_id, principal.user_id.as_deref()).await {
            Ok(p) => p,
            Err(e) => return internal(e),
        };
    let Some(project) = project else {
        return if objects_route {
            StatusCode::FORBIDDEN.into_response()
        } else {
            placeholder(Placeholder::NotFound, UNCACHED, None)
        };
    };
    let access = crate::graphql::project::access_of(&project.visibility, project.role.as_deref());
    if policy::can_read_project(&principal, &access).is_err() {
        return if objects_route {
            StatusCode::FORBIDDEN.into_response()
        } else {
            placeholder(Placeholder::Unauthorized, UNCACHED, None)
        };
    }
    // Which object.
    let object_id = match target {
        Target::Object(o) => Ok(Some(o)),
        Target::Latest => query::latest_project_object(pool, project_id).await,
        Target::Model(name) => query::latest_model_object(pool, project_id, &name).await,
        Target::Version(v) => query::version_in_project(pool, project_id, &v)
            .await
            .map(|v| v.map(|v| v.referenced_object)),
    }
    .transpose();
    let object_id = match object_id {
        None => return placeholder(Placeholder::Pending, UNCACHED, None),
        Some(Err(e)) => return internal(e),
        Some(Ok(o)) => o,
    };
    let angle = angle.unwrap_or_else(|| stored::MAIN_ANGLE.to_owned());
    object_image(state, project_id, &object_id, &angle).await
}

async fn object_image(
    state: &AppState,
    project_id: &str,
    object_id: &str,
    angle: &str,
) -> Response {
    let pool = state.pool();
    match schema::objects::existing(pool, project_id, &[object_id.to_owned()]).await {
        Ok(found) if !found.is_empty() => {}
        Ok(_) => {
            return placeholder(Placeholder::NotFound, CACHED, Some("OBJECT_NOT_FOUND"));
        }
        Err(e) => return internal(e),
    }
    let record = match stored::get(pool, project_id, object_id).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let Some(record) = record else {
        return placeholder(Placeholder::Pending, UNCACHED, None);
    };
    match record.status {
        PreviewStatus::Empty => return placeholder(Placeholder::Empty, CACHED, None),
        PreviewStatus::Failed if record.angles.is_empty() => {
            return placeholder(Placeholder::Error, UNCACHED, Some("PREVIEW_FAILED"));
        }
        PreviewStatus::Rendering if record.angles.is_empty() => {
            return placeholder(Placeholder::Pending, UNCACHED, None);
        }
        _ => {}
    }
    if !record.angles.iter().any(|a| a == angle) {
        return placeholder(Placeholder::Error, CACHED, Some("ANGLE_NOT_FOUND"));
    }
    let Some(blobs) = state.blobs() else {
        return placeholder(Placeholder::Error, UNCACHED, Some("PREVIEW_NOT_FOUND"));
    };
    match blobs.get(&stored::key(project_id, object_id, angle)).await {
        Ok(Some(bytes)) => image(bytes, CACHED, None),
        Ok(None) => placeholder(Placeholder::Error, UNCACHED, Some("PREVIEW_NOT_FOUND")),
        Err(e) => internal(e),
    }
}

/// A preview for a web page: the latest of the project (or of the model with id `model`), as the session's
/// token may see it (anonymous without one).
pub async fn for_page(
    state: &AppState,
    token: Option<&str>,
    project_id: &str,
    model: Option<String>,
) -> Response {
    let mut headers = HeaderMap::new();
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        headers.insert(header::AUTHORIZATION, value);
    }
    let target = match model {
        None => Target::Latest,
        // Pages name models by id; the original's route (and `serve`) by name.
        Some(id) => match query::model_name(state.pool(), &id).await {
            Ok(Some(name)) => Target::Model(name),
            Ok(None) => return placeholder(Placeholder::NotFound, UNCACHED, None),
            Err(e) => return internal(e),
        },
    };
    serve(state, &headers, project_id, target, None).await
}

/// The viewer page's files, from the built directory; 404 for anything else.
async fn viewer_file(State(state): State<AppState>, Path(file): Path<String>) -> Response {
    let content_type = match file.as_str() {
        "preview.html" => "text/html; charset=utf-8",
        "preview.js" | "app.js" => "text/javascript; charset=utf-8",
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let Some(dir) = state.settings().preview_viewer_dir.clone() else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": {
                "code": "PREVIEWS_DISABLED",
                "message": "STRATA_PREVIEW_VIEWER_DIR is not set: the viewer page was not built"
            }})),
        )
            .into_response();
    };
    match tokio::fs::read(std::path::Path::new(&dir).join(&file)).await {
        Ok(bytes) => {
            let mut res = (StatusCode::OK, bytes).into_response();
            res.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, %dir, "reading the viewer page");
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

/// The read decision for a request carrying a preview grant, or `None` when it carries none
/// (then the caller authenticates as usual). A grant that does not check out is refused.
pub fn grant_decision(
    state: &AppState,
    headers: &HeaderMap,
    project_id: &str,
) -> Option<policy::Decision> {
    let token = crate::auth::presented_token(headers)?;
    if !token.starts_with(crate::accounts::PREVIEW_GRANT_PREFIX) {
        return None;
    }
    let pepper = state.settings().token_pepper.as_ref()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let granted = Accounts::preview_grant_project(pepper, &token, now);
    Some(policy::can_read_objects_with_grant(
        granted.as_deref(),
        project_id,
    ))
}

/// The renderer's settings, when this process renders previews (a viewer page is built).
pub fn preview_options(settings: &Settings) -> Option<PreviewOptions> {
    settings.preview_viewer_dir.as_ref()?;
    Some(PreviewOptions {
        server_url: settings
            .preview_server_url
            .clone()
            .unwrap_or_else(|| settings.origin()),
        chromedriver: settings.preview_chromedriver.clone().into(),
        chromium: settings.preview_chromium.clone().map(Into::into),
        width: WIDTH,
        height: HEIGHT,
        angles: settings.preview_angles.max(1),
        render_timeout: Duration::from_secs(settings.preview_render_timeout_seconds),
        max_renders_per_browser: settings.preview_max_renders_per_browser.max(1),
        max_browser_rss_bytes: settings
            .preview_max_browser_rss_mb
            .saturating_mul(1024 * 1024),
    })
}

/// Grants from the pepper; announcements through the realtime channel.
pub struct LivePreviewControl {
    pepper: Secret,
    grant_ttl: Duration,
    redis: fred::clients::Client,
    pool: sqlx::PgPool,
}

impl LivePreviewControl {
    /// Wiring for a worker process.
    pub fn new(settings: &Settings, pool: sqlx::PgPool) -> anyhow::Result<Arc<Self>> {
        let pepper = settings
            .require_token_pepper("preview grants are signed with it")?
            .clone();
        let redis_url = settings
            .redis_url
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("STRATA_REDIS_URL is required to announce previews"))?;
        Ok(Arc::new(Self {
            pepper,
            grant_ttl: Duration::from_secs(settings.preview_grant_seconds),
            redis: crate::app::redis_client(redis_url, settings.redis_reconnect_max_ms)?,
            pool,
        }))
    }
}

impl PreviewControl for LivePreviewControl {
    fn grant(&self, project_id: &str) -> String {
        // A huge TTL saturates at half of i64::MAX, so the sum cannot overflow.
        let expires = time::OffsetDateTime::now_utc().unix_timestamp()
            + i64::try_from(self.grant_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        Accounts::preview_grant(&self.pepper, project_id, expires)
    }

    fn generated<'a>(&'a self, project_id: &'a str, object_id: &'a str) -> BoxFuture<'a, ()> {
        async move {
            let event = crate::realtime::LiveEvent::preview_generated(project_id, object_id);
            let published = async {
                let channel = crate::realtime::channel(&self.pool).await?;
                let text = serde_json::to_string(&event)?;
                self.redis
                    .publish::<(), _, _>(channel.as_str(), text)
                    .await?;
                Ok::<_, anyhow::Error>(())
            };
            // Best effort, like every live message: the image is stored either way.
            if let Err(e) = published.await {
                tracing::warn!(error = %e, project_id, object_id, "announcing a preview");
            }
        }
        .boxed()
    }
}

/// `strata previews regenerate`: enqueues a fresh render of every (project, root object) the
/// chosen versions point at (`project` none = every project), then, with `wait`, follows the
/// jobs with a progress bar. Exits non-zero when a render failed.
pub async fn regenerate(
    pool: &sqlx::PgPool,
    project_id: Option<&str>,
    version_id: Option<&str>,
    wait: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let targets = query::version_objects(pool, project_id, version_id).await?;
    if targets.is_empty() {
        eprintln!("no versions match");
        return Ok(std::process::ExitCode::FAILURE);
    }
    let generation = uuid::Uuid::new_v4().simple().to_string();
    let mut keys = Vec::with_capacity(targets.len());
    let mut conn = pool.acquire().await?;
    for (project, object) in &targets {
        let job = projections::speckle::previews::job(project, object, None, Some(&generation));
        schema::jobs::enqueue_on(&mut conn, &job).await?;
        keys.extend(job.dedupe_key);
    }
    drop(conn);
    eprintln!("{} previews queued", keys.len());
    if !wait {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let bar = indicatif::ProgressBar::new(keys.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} rendered, {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        let (done, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'failed') \
             FROM jobs WHERE dedupe_key = ANY($1)",
        )
        .bind(&keys)
        .fetch_one(pool)
        .await?;
        // Counts are never negative.
        bar.set_position(u64::try_from(done + failed).unwrap_or(0));
        bar.set_message(format!("{failed} failed"));
        if done + failed >= keys.len() as i64 {
            bar.finish();
            return Ok(if failed == 0 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

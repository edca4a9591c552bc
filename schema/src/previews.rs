//! Preview images' records: one row per (project, root object), written by the preview worker;
//! the images live in S3 under [`key`].

use sqlx::PgPool;
use time::OffsetDateTime;

/// The main image's angle (the original's `"0"`).
pub const MAIN_ANGLE: &str = "0";
/// The sprite of every angle side by side (the original's `"all"`).
pub const SPRITE_ANGLE: &str = "all";

/// The S3 key of one angle of the preview of `object_id` in `project_id`.
pub fn key(project_id: &str, object_id: &str, angle: &str) -> String {
    format!("previews/{project_id}/{object_id}/{angle}.png")
}

/// Where a preview stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviewStatus {
    /// A worker is rendering it (or died doing so; the job is retried after its lease).
    Rendering,
    /// Stored.
    Done,
    /// The object has nothing to draw; the empty-model image is stored.
    Empty,
    /// Every attempt failed; `error` says why.
    Failed,
}

impl PreviewStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rendering => "rendering",
            Self::Done => "done",
            Self::Empty => "empty",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "done" => Self::Done,
            "empty" => Self::Empty,
            "failed" => Self::Failed,
            _ => Self::Rendering,
        }
    }
}

/// A preview's record.
#[derive(Clone, Debug)]
pub struct Preview {
    /// Where it stands.
    pub status: PreviewStatus,
    /// Attempts so far.
    pub attempts: i32,
    /// The angles stored.
    pub angles: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long the last successful render took.
    pub duration_ms: Option<i32>,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// A stored row: status, attempts, angles, error, duration, time.
type PreviewRow = (
    String,
    i32,
    Vec<String>,
    Option<String>,
    Option<i32>,
    OffsetDateTime,
);

/// The record of `object_id`'s preview in `project_id`, if a worker has taken it up.
pub async fn get(
    pool: &PgPool,
    project_id: &str,
    object_id: &str,
) -> Result<Option<Preview>, sqlx::Error> {
    let row: Option<PreviewRow> = sqlx::query_as(
        "SELECT status, attempts, angles, error, duration_ms, updated_at FROM object_previews \
             WHERE project_id = $1 AND object_id = $2",
    )
    .bind(project_id)
    .bind(object_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(status, attempts, angles, error, duration_ms, updated_at)| Preview {
            status: PreviewStatus::parse(&status),
            attempts,
            angles,
            error,
            duration_ms,
            updated_at,
        },
    ))
}

/// Records that attempt `attempt` started (a re-render keeps the stored angles until replaced).
pub async fn start(
    pool: &PgPool,
    project_id: &str,
    object_id: &str,
    attempt: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO object_previews (project_id, object_id, status, attempts) VALUES ($1, $2, 'rendering', $3) \
         ON CONFLICT (project_id, object_id) DO UPDATE SET status = CASE \
           WHEN object_previews.status IN ('done', 'empty') THEN object_previews.status ELSE 'rendering' END, \
           attempts = $3, updated_at = now()",
    )
    .bind(project_id)
    .bind(object_id)
    .bind(attempt)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Records stored images (`Done`) or the empty-model image (`Empty`).
pub async fn stored(
    pool: &PgPool,
    project_id: &str,
    object_id: &str,
    status: PreviewStatus,
    angles: &[&str],
    duration_ms: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO object_previews (project_id, object_id, status, angles, duration_ms, attempts) \
         VALUES ($1, $2, $3, $4, $5, 1) \
         ON CONFLICT (project_id, object_id) DO UPDATE SET status = $3, angles = $4, duration_ms = $5, \
           error = NULL, updated_at = now()",
    )
    .bind(project_id)
    .bind(object_id)
    .bind(status.as_str())
    .bind(angles)
    .bind(duration_ms)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Records that the last attempt failed with `error` (images stored before stay served).
pub async fn failed(
    pool: &PgPool,
    project_id: &str,
    object_id: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO object_previews (project_id, object_id, status, error) VALUES ($1, $2, 'failed', $3) \
         ON CONFLICT (project_id, object_id) DO UPDATE SET status = CASE \
           WHEN object_previews.status IN ('done', 'empty') THEN object_previews.status ELSE 'failed' END, \
           error = $3, updated_at = now()",
    )
    .bind(project_id)
    .bind(object_id)
    .bind(error)
    .execute(pool)
    .await
    .map(|_| ())
}

/// Figures for `/metrics`: previews by status, the queue, and render times.
pub async fn stats(pool: &PgPool) -> Result<Vec<(String, f64)>, sqlx::Error> {
    let mut out: Vec<(String, f64)> = sqlx::query_as(
        "SELECT s.status, count(p.status)::float8 FROM \
           unnest(ARRAY['rendering', 'done', 'empty', 'failed']) AS s(status) \
           LEFT JOIN object_previews p ON p.status = s.status GROUP BY s.status ORDER BY s.status",
    )
    .fetch_all(pool)
    .await?;
    let (queued, oldest): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8 FROM jobs \
         WHERE kind = 'preview.render' AND status IN ('pending', 'running')",
    )
    .fetch_one(pool)
    .await?;
    out.push(("queued".to_owned(), queued as f64));
    out.push(("oldest_queued_seconds".to_owned(), oldest.unwrap_or(0.0))); // none queued: 0
    let (p50, p99): (Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) / 1000.0, \
                percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) / 1000.0 \
         FROM object_previews WHERE status = 'done' AND updated_at > now() - interval '1 hour'",
    )
    .fetch_one(pool)
    .await?;
    // No renders in the hour: 0.
    out.push(("render_seconds_p50_1h".to_owned(), p50.unwrap_or(0.0)));
    out.push(("render_seconds_p99_1h".to_owned(), p99.unwrap_or(0.0)));
    Ok(out)
}

/// Whether the tree under `object_id` (the object itself or anything in its closure) holds
/// something the viewer draws: a geometry object or a display value. `None`: the root object
/// is not stored (yet: a bundle's objects are written after its version).
pub async fn has_geometry(
    pool: &PgPool,
    project_id: &str,
    object_id: &str,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT (o.speckle_type LIKE 'Objects.Geometry.%' OR o.data LIKE '%displayValue%' \
            OR EXISTS (SELECT 1 FROM jsonb_object_keys(COALESCE(o.closure, '{}'::jsonb)) AS c(id) \
                       JOIN objects x ON x.project_id = o.project_id AND x.id = c.id \
                       WHERE x.speckle_type LIKE 'Objects.Geometry.%' OR x.data LIKE '%displayValue%')) \
         FROM objects o WHERE o.project_id = $1 AND o.id = $2",
    )
    .bind(project_id)
    .bind(object_id)
    .fetch_optional(pool)
    .await
}

//! Where each projection stands: for `strata projections status` and `/metrics`.

use schema::LogCursor;
use serde::Serialize;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use crate::runtime::cursor_of;

/// One projection's state.
#[derive(Clone, Debug, Serialize)]
pub struct ProjectionStatus {
    /// Name.
    pub name: String,
    /// Generation of the tables in use.
    pub generation: i32,
    /// Checkpoint, as `xid:position`.
    pub checkpoint: String,
    /// Events folded by the current generation.
    pub events_applied: i64,
    /// Readable events after the checkpoint.
    pub behind_events: i64,
    /// Age of the oldest readable event not yet applied (0 when caught up).
    pub behind_seconds: f64,
    /// Set while the projection is halted on an event.
    pub error: Option<String>,
    /// The position it halted on.
    pub error_position: Option<i64>,
    /// When it last failed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub failed_at: Option<OffsetDateTime>,
}

/// Every installed projection's state.
pub async fn status(pool: &PgPool) -> Result<Vec<ProjectionStatus>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.projection, c.generation, c.transaction_id::text AS xid, c.position, \
                c.events_applied, c.error, c.error_position, c.failed_at, \
                (SELECT count(*) FROM events e \
                  WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position) \
                    AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())) AS behind, \
                coalesce((SELECT extract(epoch FROM now() - e.recorded_at)::float8 FROM events e \
                  WHERE (e.transaction_id, e.position) > (c.transaction_id, c.position) \
                    AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                  ORDER BY e.transaction_id, e.position LIMIT 1), 0) AS behind_seconds \
         FROM projection_checkpoints c ORDER BY c.projection",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let cursor: LogCursor = cursor_of(row)?;
            Ok(ProjectionStatus {
                name: row.try_get("projection")?,
                generation: row.try_get("generation")?,
                checkpoint: cursor.to_string(),
                events_applied: row.try_get("events_applied")?,
                behind_events: row.try_get("behind")?,
                behind_seconds: row.try_get("behind_seconds")?,
                error: row.try_get("error")?,
                error_position: row.try_get("error_position")?,
                failed_at: row.try_get("failed_at")?,
            })
        })
        .collect()
}

/// A projection's checkpoint as one row: what a cached answer computed from its read model
/// depends on.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Checkpoint {
    /// Generation of the tables in use.
    pub generation: i32,
    /// Events folded by the current generation.
    pub events_applied: i64,
    /// The transaction id of the last event applied, as text.
    pub xid: String,
    /// The position of the last event applied.
    pub position: i64,
}

/// The checkpoint of projection `name` (one primary-key row).
pub async fn checkpoint(pool: &PgPool, name: &str) -> Result<Checkpoint, sqlx::Error> {
    sqlx::query_as(
        "SELECT generation, events_applied, transaction_id::text AS xid, position \
         FROM projection_checkpoints WHERE projection = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await
}

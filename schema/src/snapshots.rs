//! Aggregate snapshots (`aggregate_snapshots`): a stream's folded command state at one stream
//! version, stored as text by whoever folds it. This module stores and finds rows; it knows
//! nothing of what the text holds, and a row is never authoritative (see the migration).

use sqlx::PgPool;

use domain::StreamId;

/// A stored snapshot of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream version the state was folded up to (≥ 1).
    pub version: u64,
    /// The state, in the text its aggregate wrote.
    pub state: String,
}

/// The snapshot of `stream` in `shape`, if one is stored (a row of another shape is not).
pub async fn find(
    pool: &PgPool,
    stream: &StreamId,
    shape: &str,
) -> Result<Option<Snapshot>, sqlx::Error> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "SELECT stream_version, state FROM aggregate_snapshots \
         WHERE stream_id = $1 AND shape = $2",
    )
    .bind(stream.as_str())
    .bind(shape)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(version, state)| {
        // The table's CHECK keeps the version ≥ 1.
        Some(Snapshot {
            version: u64::try_from(version).ok()?,
            state,
        })
    }))
}

/// Stores `snapshot` of `stream` in `shape`, replacing a row of another shape or of an older
/// or the same version (a slower writer never replaces a newer snapshot with an older one; an
/// unreadable row is replaced by the first snapshot taken after it was found). Whether it was
/// stored.
pub async fn store(
    pool: &PgPool,
    stream: &StreamId,
    shape: &str,
    snapshot: &Snapshot,
) -> Result<bool, sqlx::Error> {
    let version = i64::try_from(snapshot.version).unwrap_or(i64::MAX);
    let stored = sqlx::query(
        "INSERT INTO aggregate_snapshots (stream_id, shape, stream_version, state) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (stream_id) DO UPDATE \
         SET shape = excluded.shape, stream_version = excluded.stream_version, \
             state = excluded.state, taken_at = now() \
         WHERE aggregate_snapshots.shape <> excluded.shape \
            OR aggregate_snapshots.stream_version <= excluded.stream_version",
    )
    .bind(stream.as_str())
    .bind(shape)
    .bind(version)
    .bind(&snapshot.state)
    .execute(pool)
    .await?;
    Ok(stored.rows_affected() == 1)
}

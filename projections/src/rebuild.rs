//! Zero-downtime rebuilds: fold the whole log into fresh tables beside the live ones, catch
//! up, and swap the views in one transaction. Readers see the old tables until the swap and
//! never a half-built model.

use std::time::Instant;

use schema::LogCursor;
use schema::event_log::read_all_with;
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::projection::{
    Batch, Projection, ProjectionError, create_indexes, create_tables, physical, point_views, sql,
};
use crate::runtime::{advance, cursor_of};

/// How a rebuild runs.
#[derive(Clone, Debug)]
pub struct RebuildOptions {
    /// Events per read and per transaction during the bulk fold.
    pub batch_size: i64,
    /// Compare rebuilt and live tables at the same log position, report every difference,
    /// and keep the live tables (a consistency check that changes nothing).
    pub verify: bool,
    /// Most differences listed per table (all are counted).
    pub max_differences: i64,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            batch_size: 10_000,
            verify: false,
            max_differences: 50,
        }
    }
}

/// A row present on one side only.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Difference {
    /// Logical table.
    pub table: String,
    /// `rebuilt` or `live`: where the row exists.
    pub only_in: &'static str,
    /// The row, as JSON.
    pub row: serde_json::Value,
}

/// What a rebuild did.
#[derive(Clone, Debug, Serialize)]
pub struct RebuildReport {
    /// Projection.
    pub projection: String,
    /// Generation built.
    pub generation: i32,
    /// Events folded.
    pub events: u64,
    /// Wall time of the whole rebuild.
    pub seconds: f64,
    /// Events per second of the bulk fold.
    pub events_per_second: f64,
    /// Whether the new tables went live.
    pub swapped: bool,
    /// Differing rows counted (with `verify`).
    pub difference_count: i64,
    /// Differing rows listed (with `verify`), up to the limit per table.
    pub differences: Vec<Difference>,
}

/// Why a rebuild stopped (nothing was swapped).
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Another rebuild of the same projection runs.
    #[error("a rebuild of {0} is already running")]
    Busy(String),
    /// The projection is not installed.
    #[error("projection {0} is not installed: run `strata migrate`")]
    NotInstalled(String),
    /// The handler failed.
    #[error("{0}")]
    Projection(#[from] ProjectionError),
    /// The database failed.
    #[error("database error during rebuild: {0}")]
    Database(#[from] sqlx::Error),
}

/// Rebuilds `projection` (with the owning role: it creates tables). `progress(done, total)`
/// is called after every batch.
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
    options: &RebuildOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<RebuildReport, RebuildError> {
    let name = projection.name();
    let started = Instant::now();
    let mut guard = PgConnection::connect_with(&pool.connect_options()).await?;
    let free: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_lock(hashtext(current_schema() || ':rebuild:' || $1))",
    )
    .bind(name)
    .fetch_one(&mut guard)
    .await?;
    if !free {
        return Err(RebuildError::Busy(name.to_owned()));
    }
    let live: i32 =
        sqlx::query_scalar("SELECT generation FROM projection_checkpoints WHERE projection = $1")
            .bind(name)
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| RebuildError::NotInstalled(name.to_owned()))?;
    let next = live + 1;
    {
        let mut tx = pool.begin().await?;
        create_tables(&mut tx, projection, next, false).await?;
        tx.commit().await?;
    }
    let result = build_and_swap(pool, projection, options, progress, live, next, started).await;
    // A failed build leaves its tables behind: drop them too.
    if result.as_ref().map(|r| !r.swapped).unwrap_or(true) {
        drop_tables(pool, projection, next).await?;
    }
    let _ = guard.close().await;
    result
}

async fn build_and_swap(
    pool: &PgPool,
    projection: &dyn Projection,
    options: &RebuildOptions,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
    live: i32,
    next: i32,
    started: Instant,
) -> Result<RebuildReport, RebuildError> {
    let name = projection.name();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    let total = u64::try_from(total).unwrap_or(0); // count(*) is never negative

    // Bulk fold, one transaction per batch; indexes come after the load.
    let fold_started = Instant::now();
    let mut cursor = LogCursor::START;
    let mut done = 0u64;
    loop {
        let events = read_all_with(&mut *pool.acquire().await?, cursor, options.batch_size).await?;
        let Some(last) = events.last().map(|e| e.cursor) else {
            break;
        };
        let mut tx = pool.begin().await?;
        crate::projection::fold(projection, &mut Batch::new(&mut tx, next, false), &events).await?;
        tx.commit().await?;
        cursor = last;
        done += events.len() as u64;
        progress(done, total.max(done));
    }
    let fold_seconds = fold_started.elapsed().as_secs_f64();
    {
        let mut conn = pool.acquire().await?;
        for table in projection.tables() {
            create_indexes(&mut conn, table, next).await?;
        }
    }

    // Final catch-up and swap, holding the checkpoint row: the live runner waits meanwhile.
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT transaction_id::text AS xid, position FROM projection_checkpoints \
         WHERE projection = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await?;
    let mut live_cursor = cursor_of(&row)?;
    loop {
        let events = read_all_with(&mut tx, cursor, options.batch_size).await?;
        let Some(last) = events.last().map(|e| e.cursor) else {
            break;
        };
        crate::projection::fold(projection, &mut Batch::new(&mut tx, next, false), &events).await?;
        cursor = last;
        done += events.len() as u64;
    }
    progress(done, done);
    // Bring the live tables to the same point, with reactions enabled: events the live runner
    // had not reached yet still owe their jobs.
    loop {
        let events: Vec<_> = read_all_with(&mut tx, live_cursor, options.batch_size)
            .await?
            .into_iter()
            .filter(|e| e.cursor <= cursor)
            .collect();
        let Some(last) = events.last().map(|e| e.cursor) else {
            break;
        };
        crate::projection::fold(projection, &mut Batch::new(&mut tx, live, true), &events).await?;
        advance(&mut tx, name, last, events.len()).await?;
        live_cursor = last;
    }

    let mut report = RebuildReport {
        projection: name.to_owned(),
        generation: next,
        events: done,
        seconds: 0.0,
        events_per_second: if fold_seconds > 0.0 {
            done as f64 / fold_seconds
        } else {
            0.0
        },
        swapped: !options.verify,
        difference_count: 0,
        differences: Vec::new(),
    };
    if options.verify {
        for table in projection.tables() {
            let (count, rows) =
                compare(&mut tx, table.name, live, next, options.max_differences).await?;
            report.difference_count += count;
            report.differences.extend(rows);
        }
    } else {
        point_views(&mut tx, projection, next).await?;
        sqlx::query(
            "UPDATE projection_checkpoints SET generation = $2, transaction_id = $3::text::xid8, \
                    position = $4, events_applied = $5, updated_at = now(), \
                    failed_at = NULL, error = NULL, error_position = NULL, definition = $6 \
             WHERE projection = $1",
        )
        .bind(name)
        .bind(next)
        .bind(cursor.transaction_id.to_string())
        .bind(cursor.position)
        .bind(i64::try_from(done).unwrap_or(i64::MAX)) // saturates; never reached
        .bind(crate::projection::definition(projection))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    if report.swapped {
        drop_tables(pool, projection, live).await?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn compare(
    conn: &mut PgConnection,
    table: &str,
    live: i32,
    rebuilt: i32,
    limit: i64,
) -> Result<(i64, Vec<Difference>), sqlx::Error> {
    let (old, new) = (physical(table, live), physical(table, rebuilt));
    let mut count = 0;
    let mut rows = Vec::new();
    for (only_in, a, b) in [("rebuilt", &new, &old), ("live", &old, &new)] {
        let diff =
            format!("SELECT to_jsonb(x) AS j FROM {a} x EXCEPT ALL SELECT to_jsonb(y) FROM {b} y");
        let n: i64 = sqlx::query_scalar(sql(format!("SELECT count(*) FROM ({diff}) d")))
            .fetch_one(&mut *conn)
            .await?;
        count += n;
        let listed = sqlx::query(sql(format!("{diff} LIMIT {limit}")))
            .fetch_all(&mut *conn)
            .await?;
        for row in listed {
            rows.push(Difference {
                table: table.to_owned(),
                only_in,
                row: row.try_get("j")?,
            });
        }
    }
    Ok((count, rows))
}

async fn drop_tables(
    pool: &PgPool,
    projection: &dyn Projection,
    generation: i32,
) -> Result<(), sqlx::Error> {
    for table in projection.tables() {
        sqlx::query(sql(format!(
            "DROP TABLE IF EXISTS {}",
            physical(table.name, generation)
        )))
        .execute(pool)
        .await?;
    }
    Ok(())
}

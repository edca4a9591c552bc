//! The database monitor: figures about the database strata runs on, read at scrape time (the
//! original runs a separate monitor service for the same gauges). Every query reads catalog
//! views or counts over indexed ranges, so a scrape stays cheap on a large database.

use sqlx::PgPool;

/// One sample of the database's state.
#[derive(Clone, Debug, Default)]
pub struct DbSample {
    /// Per table of this schema: (name, total bytes with indexes and TOAST, estimated rows).
    pub tables: Vec<(String, f64, f64)>,
    /// Connections to this database by state (`active`, `idle`, `idle in transaction`, …).
    pub connections: Vec<(String, f64)>,
    /// The longest-running open transaction, seconds (0 without one).
    pub longest_transaction_seconds: f64,
    /// The largest replay lag of a streaming replica, seconds (0 without replicas).
    pub replication_lag_seconds: f64,
    /// Events appended per second over the last minute.
    pub events_per_second: f64,
    /// Per job kind: (kind, queued, oldest queued seconds, failed for good).
    pub jobs: Vec<(String, f64, f64, f64)>,
    /// Share of webhook delivery attempts in the last hour that failed (0 without attempts).
    pub webhook_failure_ratio: f64,
}

/// Reads a sample.
pub async fn sample(pool: &PgPool) -> Result<DbSample, sqlx::Error> {
    let tables = sqlx::query_as(
        "SELECT c.relname::text, pg_total_relation_size(c.oid)::float8, \
                greatest(coalesce(s.n_live_tup, 0), 0)::float8 \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let connections = sqlx::query_as(
        "SELECT coalesce(state, 'unknown'), count(*)::float8 FROM pg_stat_activity \
         WHERE datname = current_database() GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let longest_transaction_seconds: f64 = sqlx::query_scalar(
        "SELECT coalesce(extract(epoch FROM max(now() - xact_start)), 0)::float8 \
         FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL \
           AND pid <> pg_backend_pid()",
    )
    .fetch_one(pool)
    .await?;
    let replication_lag_seconds: f64 = sqlx::query_scalar(
        "SELECT coalesce(extract(epoch FROM max(replay_lag)), 0)::float8 FROM pg_stat_replication",
    )
    .fetch_one(pool)
    .await?;
    let events_per_second: f64 = sqlx::query_scalar(
        "SELECT (count(*) / 60.0)::float8 FROM events WHERE recorded_at > now() - interval '1 minute'",
    )
    .fetch_one(pool)
    .await?;
    let jobs = sqlx::query_as(
        "SELECT kind, \
                count(*) FILTER (WHERE status IN ('pending', 'running'))::float8, \
                coalesce(extract(epoch FROM now() - min(created_at) \
                    FILTER (WHERE status IN ('pending', 'running'))), 0)::float8, \
                count(*) FILTER (WHERE status = 'failed')::float8 \
         FROM jobs GROUP BY kind ORDER BY kind",
    )
    .fetch_all(pool)
    .await?;
    let webhook_failure_ratio: f64 = sqlx::query_scalar(
        "SELECT coalesce(avg(CASE WHEN succeeded THEN 0 ELSE 1 END), 0)::float8 \
         FROM webhook_delivery_attempts WHERE started_at > now() - interval '1 hour'",
    )
    .fetch_one(pool)
    .await?;
    Ok(DbSample {
        tables,
        connections,
        longest_transaction_seconds,
        replication_lag_seconds,
        events_per_second,
        jobs,
        webhook_failure_ratio,
    })
}

//! Reaction jobs: enqueued in a projector's transaction, claimed by workers under a lease.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// Which handler runs it, e.g. `webhook.deliver`.
    pub kind: String,
    /// The handler's input.
    pub payload: serde_json::Value,
    /// Enqueuing the same key twice stores one job: makes re-projection harmless.
    pub dedupe_key: Option<String>,
    /// Attempts before the job is marked failed.
    pub max_attempts: i32,
    /// The log position of the event that caused it.
    pub source_position: Option<i64>,
    /// Jobs with the same key run in enqueue order: one is claimed only when no earlier one
    /// is running or due (an earlier one waiting for a retry does not hold it back).
    pub ordering_key: Option<String>,
    /// Not before this time (a timer derived from an event's time); `None`: at once.
    pub run_at: Option<time::OffsetDateTime>,
}

/// A job a worker holds.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    /// Job id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Input.
    pub payload: serde_json::Value,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Its ordering key, if it must run in order with others.
    pub ordering_key: Option<String>,
    /// The trace of the command whose event caused it (`schema::trace`), if exported.
    pub traceparent: Option<String>,
}

/// Enqueues on `conn`, inside the caller's transaction. Returns false when the dedupe key
/// was already taken.
pub async fn enqueue_on(conn: &mut PgConnection, job: &NewJob) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO jobs (kind, payload, dedupe_key, max_attempts, source_position, ordering_key, run_at) \
         VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, now())) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(&job.kind)
    .bind(&job.payload)
    .bind(&job.dedupe_key)
    .bind(job.max_attempts)
    .bind(job.source_position)
    .bind(&job.ordering_key)
    .bind(job.run_at)
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The statement that claims the jobs `$which` picks for worker `$1` for a lease of `$2`
/// seconds, returning what [`run_claim`] reads.
macro_rules! claim_sql {
    ($which:literal) => {
        concat!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, \
                    locked_until = now() + make_interval(secs => $2) \
             WHERE ",
            $which,
            " RETURNING id, kind, payload, attempts, max_attempts, ordering_key, \
                       (SELECT ev.metadata->>'traceparent' FROM events ev \
                        WHERE ev.position = jobs.source_position) AS traceparent"
        )
    };
}

/// Claims up to `limit` due jobs of `kinds` for `worker`, for `lease`. A job whose lease
/// ran out (its worker died) is claimable again; its open attempt is marked abandoned.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    kinds: &[String],
    limit: i64,
    lease: Duration,
) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let query = sqlx::query(claim_sql!(
        "id IN (SELECT id FROM jobs j \
                WHERE kind = ANY($3) AND run_at <= now() \
                  AND (status = 'pending' OR (status = 'running' AND locked_until < now())) \
                  AND (ordering_key IS NULL OR NOT EXISTS ( \
                      SELECT 1 FROM jobs e \
                      WHERE e.ordering_key = j.ordering_key AND e.id < j.id \
                        AND e.status IN ('pending', 'running') AND e.run_at <= now())) \
                ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)"
    ))
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(kinds)
    .bind(limit);
    run_claim(pool, worker, query).await
}

/// Claims the next due job of `ordering_key` once the job before it is finished, so a worker
/// can run one key's jobs back to back without a full queue scan between them.
pub async fn claim_next_in_order(
    pool: &PgPool,
    worker: &str,
    kinds: &[String],
    ordering_key: &str,
    lease: Duration,
) -> Result<Option<ClaimedJob>, sqlx::Error> {
    let query = sqlx::query(claim_sql!(
        "id = (SELECT id FROM jobs j \
               WHERE ordering_key = $4 AND kind = ANY($3) AND run_at <= now() \
                 AND (status = 'pending' OR (status = 'running' AND locked_until < now())) \
                 AND NOT EXISTS ( \
                     SELECT 1 FROM jobs e \
                     WHERE e.ordering_key = $4 AND e.id < j.id \
                       AND e.status IN ('pending', 'running') AND e.run_at <= now()) \
               ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    ))
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(kinds)
    .bind(ordering_key);
    Ok(run_claim(pool, worker, query).await?.pop())
}

/// Runs a claim statement of [`claim_sql`] for `worker` in one transaction with the records
/// of its claims.
async fn run_claim(
    pool: &PgPool,
    worker: &str,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = query.fetch_all(&mut *tx).await?;
    let jobs = record_claims(&mut tx, worker, rows).await?;
    tx.commit().await?;
    Ok(jobs)
}

/// Records an attempt for each claimed row (closing the open attempt of a dead worker).
async fn record_claims(
    tx: &mut PgConnection,
    worker: &str,
    rows: Vec<sqlx::postgres::PgRow>,
) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        let job = ClaimedJob {
            id: row.try_get("id")?,
            kind: row.try_get("kind")?,
            payload: row.try_get("payload")?,
            attempt: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
            ordering_key: row.try_get("ordering_key")?,
            traceparent: row.try_get("traceparent")?,
        };
        sqlx::query(
            "UPDATE job_attempts SET outcome = 'abandoned', finished_at = now(), \
                    error = 'lease expired: the worker stopped' \
             WHERE job_id = $1 AND outcome IS NULL",
        )
        .bind(job.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO job_attempts (job_id, attempt, worker) VALUES ($1, $2, $3)")
            .bind(job.id)
            .bind(job.attempt)
            .bind(worker)
            .execute(&mut *tx)
            .await?;
        jobs.push(job);
    }
    Ok(jobs)
}

/// Pushes the lease of a job this worker still holds `lease` into the future.
pub async fn extend_lease(
    pool: &PgPool,
    worker: &str,
    job: &ClaimedJob,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET locked_until = now() + make_interval(secs => $3) \
         WHERE id = $1 AND locked_by = $2 AND attempts = $4 AND status = 'running'",
    )
    .bind(job.id)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(job.attempt)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records success. Returns false if the lease had been lost to another worker (the result
/// is then not recorded: that worker owns the job now).
pub async fn succeed(pool: &PgPool, worker: &str, job: &ClaimedJob) -> Result<bool, sqlx::Error> {
    finish(pool, worker, job, None, None).await
}

/// Records a failure; the job is retried after `retry_in`, or marked failed when it has
/// used its attempts (or when `retry_in` is `None`: a permanent failure).
pub async fn fail(
    pool: &PgPool,
    worker: &str,
    job: &ClaimedJob,
    error: &str,
    retry_in: Option<Duration>,
) -> Result<bool, sqlx::Error> {
    finish(pool, worker, job, Some(error), retry_in).await
}

/// Gives a claimed job back before it finished (its worker is shutting down): due again at
/// once, its attempt recorded as abandoned, so another worker claims it now rather than after
/// the lease runs out. False when the worker no longer held it.
pub async fn hand_back(pool: &PgPool, worker: &str, job: &ClaimedJob) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE jobs SET status = 'pending', locked_by = NULL, locked_until = NULL, run_at = now() \
         WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND status = 'running'",
    )
    .bind(job.id)
    .bind(worker)
    .bind(job.attempt)
    .execute(&mut *tx)
    .await?;
    close_attempt(
        tx,
        updated,
        job,
        "abandoned",
        Some("handed back: the worker shut down before it finished"),
    )
    .await
}

/// Ends the transaction of a worker's release of `job` (`released`): closes the job's current
/// attempt with `outcome` (and `error`) and commits when the worker still held the job, rolls
/// back when it did not. Whether it held it.
async fn close_attempt(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    released: sqlx::postgres::PgQueryResult,
    job: &ClaimedJob,
    outcome: &str,
    error: Option<&str>,
) -> Result<bool, sqlx::Error> {
    if released.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    record_attempt(&mut tx, job, outcome, error).await?;
    tx.commit().await?;
    Ok(true)
}

/// Closes `job`'s current attempt with `outcome` (and `error`).
async fn record_attempt(
    conn: &mut sqlx::PgConnection,
    job: &ClaimedJob,
    outcome: &str,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE job_attempts SET finished_at = now(), outcome = $3, error = $4 \
         WHERE job_id = $1 AND attempt = $2",
    )
    .bind(job.id)
    .bind(job.attempt)
    .bind(outcome)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

async fn finish(
    pool: &PgPool,
    worker: &str,
    job: &ClaimedJob,
    error: Option<&str>,
    retry_in: Option<Duration>,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let retry = error.is_some() && retry_in.is_some() && job.attempt < job.max_attempts;
    let status = match (error, retry) {
        (None, _) => "done",
        (Some(_), true) => "pending",
        (Some(_), false) => "failed",
    };
    let updated = sqlx::query(
        "UPDATE jobs SET status = $3, last_error = $4, locked_by = NULL, locked_until = NULL, \
                run_at = CASE WHEN $3 = 'pending' THEN now() + make_interval(secs => $5) ELSE run_at END, \
                finished_at = CASE WHEN $3 = 'pending' THEN NULL ELSE now() END \
         WHERE id = $1 AND locked_by = $2 AND attempts = $6 AND status = 'running'",
    )
    .bind(job.id)
    .bind(worker)
    .bind(status)
    .bind(error)
    .bind(retry_in.unwrap_or_default().as_secs_f64())
    .bind(job.attempt)
    .execute(&mut *tx)
    .await?;
    let outcome = if error.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    close_attempt(tx, updated, job, outcome, error).await
}

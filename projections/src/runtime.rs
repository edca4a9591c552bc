//! Running projections: one active runner per projection across all processes, catching up
//! from the checkpoint and then following the log live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use schema::LogCursor;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::projection::{Batch, Projection, ProjectionError};

/// Tuning of the live runner; every value is explicit and configurable.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Most events folded in one transaction.
    pub batch_size: i64,
    /// How often to look for new events when no notification arrives.
    pub poll_interval: Duration,
    /// How long a failed projection waits before trying the failing event again.
    pub retry_after: Duration,
    /// How often a standby process tries to take over a projection.
    pub lock_retry: Duration,
    /// How long the runner of a projection no command waits for ([`Projection::awaited`])
    /// lets pass after a wake-up before it folds, so the events of that time share one batch.
    pub linger: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            retry_after: Duration::from_secs(5),
            lock_retry: Duration::from_secs(1),
            linger: Duration::from_millis(20),
        }
    }
}

/// The first pause before looking again at events held back by an open transaction.
const HELD_BACK_FIRST_PAUSE: Duration = Duration::from_millis(1);

/// Runs a set of projections until cancelled.
pub struct ProjectorRuntime {
    pool: PgPool,
    projections: Vec<Arc<dyn Projection>>,
    options: RuntimeOptions,
}

pub(crate) struct StepOutcome {
    pub applied: usize,
    pub last: Option<LogCursor>,
    /// The checkpoint after the step.
    pub at: LogCursor,
    /// Committed events wait past the horizon.
    pub held_back: bool,
}

/// What a projection's runner found past its checkpoint, asked without a transaction
/// ([`look`]).
#[derive(Debug, Default, PartialEq, Eq)]
struct Look {
    /// Readable events it folds follow the checkpoint: a step's work.
    fold: bool,
    /// Where the checkpoint was moved past readable events it does not fold.
    moved: Option<LogCursor>,
    /// How many readable events were looked at (at most the batch size).
    readable: i64,
    /// Committed events wait past the horizon ([`schema::LockedCheckpoint::held_back`]).
    held_back: bool,
}

/// What a caught-up runner does before it looks at the log again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Idle {
    /// Nothing is pending: wait for a wake-up (or the poll interval).
    Wait,
    /// Events are held back: look again after a short, growing pause, as nothing will
    /// announce the end of the transaction that holds them.
    Pause,
    /// Look again at once (more was skipped than one look covers).
    Look,
}

pub(crate) enum StepError {
    Handler {
        last: LogCursor,
        position: Option<i64>,
        message: String,
    },
    Database(sqlx::Error),
    /// The live tables were built by another definition of the projection.
    Stale(String),
}

impl From<sqlx::Error> for StepError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

impl ProjectorRuntime {
    /// A runtime for `projections` on `pool` (the runtime role suffices: tables exist).
    pub fn new(
        pool: PgPool,
        projections: Vec<Arc<dyn Projection>>,
        options: RuntimeOptions,
    ) -> Self {
        Self {
            pool,
            projections,
            options,
        }
    }

    /// Runs every projection until `cancel` fires. A failing projection stops alone.
    /// Dropping the returned future (aborting its task) stops every runner at once, as a
    /// crash would: open batches roll back.
    pub async fn run(self, cancel: CancellationToken) {
        // Without it (the database is down at start), waits in this process ask the database.
        let local = match crate::local::of(&self.pool).await {
            Ok(local) => Some(local),
            Err(e) => {
                tracing::warn!(error = %e, "projectors cannot name their log; local waits will ask the database");
                None
            }
        };
        let (wake_tx, wake_rx) = watch::channel(0u64);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(schema::wakeups::listen(
            self.pool.clone(),
            schema::wakeups::EVENTS_CHANNEL,
            wake_tx,
            cancel.clone(),
        ));
        for projection in self.projections {
            tasks.spawn(run_projection(
                self.pool.clone(),
                projection,
                self.options.clone(),
                (wake_rx.clone(), local.clone()),
                cancel.clone(),
            ));
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "projection runner panicked");
            }
        }
    }
}

fn lock_key_sql() -> &'static str {
    "hashtext(current_schema() || ':projection:' || $1)"
}

/// Takes the projection's session advisory lock on a dedicated connection; whoever holds the
/// connection owns the projection. Returns `None` when cancelled first.
async fn acquire_ownership(
    pool: &PgPool,
    name: &str,
    options: &RuntimeOptions,
    cancel: &CancellationToken,
) -> Option<PgConnection> {
    loop {
        let attempt: Result<Option<PgConnection>, sqlx::Error> = async {
            let mut conn = PgConnection::connect_with(&pool.connect_options()).await?;
            let got: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT pg_try_advisory_lock({})",
                lock_key_sql()
            )))
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
            Ok(got.then_some(conn))
        }
        .await;
        match attempt {
            Ok(Some(conn)) => return Some(conn),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(projection = name, error = %e, "cannot try the projection lock")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(options.lock_retry) => {}
            () = cancel.cancelled() => return None,
        }
    }
}

async fn run_projection(
    pool: PgPool,
    projection: Arc<dyn Projection>,
    options: RuntimeOptions,
    (mut wake, local): (
        watch::Receiver<u64>,
        Option<Arc<crate::local::LocalCheckpoints>>,
    ),
    cancel: CancellationToken,
) {
    let name = projection.name();
    loop {
        let Some(mut owner) = acquire_ownership(&pool, name, &options, &cancel).await else {
            return;
        };
        tracing::info!(projection = name, "running projection");
        // After a batch fails, go one event at a time up to the batch's end, so the events
        // before the bad one are applied and the error names the exact position.
        let mut probe_until: Option<LogCursor> = None;
        let mut held_pause = HELD_BACK_FIRST_PAUSE;
        let mut owner_checked = Instant::now();
        // The local appends this runner has taken a hint from (the first step looks anyway).
        let mut seen_local = schema::wakeups::local_appends();
        loop {
            if cancel.is_cancelled() {
                let _ = owner.close().await;
                return;
            }
            let size = if probe_until.is_some() {
                1
            } else {
                options.batch_size
            };
            match step(&pool, projection.as_ref(), size).await {
                Ok(outcome) => {
                    if let Some(last) = outcome.last {
                        // Committed: tell this process's waiters, the local record first.
                        if let Some(local) = &local {
                            local.advanced(name, last);
                        }
                        schema::wakeups::wake_local(schema::wakeups::CHECKPOINTS_CHANNEL);
                    }
                    if let (Some(until), Some(last)) = (probe_until, outcome.last)
                        && last >= until
                    {
                        probe_until = None;
                    }
                    if outcome.applied as i64 == size {
                        continue;
                    }
                    if outcome.applied > 0 {
                        held_pause = HELD_BACK_FIRST_PAUSE;
                    }
                    // Caught up. The step said whether anything waits past the horizon, so
                    // nothing is asked until a wake-up (or the poll) unless something does.
                    // Looking takes no transaction id: an open one holds every reader's
                    // horizon back, so spurious wake-ups must not each cost one.
                    let mut at = outcome.at;
                    let mut idle = if outcome.held_back {
                        Idle::Pause
                    } else {
                        Idle::Wait
                    };
                    let lost_owner = loop {
                        match idle {
                            Idle::Look => {}
                            Idle::Pause => {
                                tokio::select! {
                                    () = tokio::time::sleep(held_pause) => {}
                                    () = cancel.cancelled() => break false,
                                }
                                // Back off from 1 ms towards the poll interval while a long
                                // transaction holds the horizon; progress resets it.
                                held_pause = (held_pause * 2).min(options.poll_interval);
                            }
                            Idle::Wait => {
                                held_pause = HELD_BACK_FIRST_PAUSE;
                                // Whether the lock connection is still there, asked at most
                                // once a poll interval: an idle runner is woken by every
                                // append, and a lost owner only wastes work until it notices
                                // (the checkpoint's row lock keeps two from applying twice).
                                if owner_checked.elapsed() >= options.poll_interval {
                                    if sqlx::query("SELECT 1").execute(&mut owner).await.is_err() {
                                        break true;
                                    }
                                    owner_checked = Instant::now();
                                }
                                // A wake-up sent while the step ran is seen here at once.
                                tokio::select! {
                                    _ = wake.changed() => {}
                                    () = tokio::time::sleep(options.poll_interval) => {}
                                    () = cancel.cancelled() => break false,
                                }
                                if !projection.awaited() {
                                    tokio::select! {
                                        () = tokio::time::sleep(options.linger) => {}
                                        () = cancel.cancelled() => break false,
                                    }
                                }
                                // This process appended to a stream the projection folds
                                // since it last looked: straight to a step, which folds
                                // whatever is readable (a hint only; wrong, it costs an
                                // empty step). Else the log is asked what came.
                                if schema::wakeups::local_append_since(&mut seen_local).is_some_and(
                                    |stream| {
                                        crate::projection::follows(projection.as_ref(), &stream)
                                    },
                                ) {
                                    break false;
                                }
                            }
                        }
                        let Ok(found) = look(&pool, projection.as_ref(), at, size).await else {
                            // The step reports (and retries) what failed.
                            break false;
                        };
                        if found.fold {
                            break false;
                        }
                        match found.moved {
                            Some(past) => {
                                at = past;
                                if let Some(local) = &local {
                                    local.advanced(name, past);
                                }
                                schema::wakeups::wake_local(schema::wakeups::CHECKPOINTS_CHANNEL);
                            }
                            // Readable events, yet the checkpoint is no longer where this
                            // runner left it (a rebuild swapped it): a step sorts it out.
                            None if found.readable > 0 => break false,
                            None => {}
                        }
                        idle = if found.readable == size {
                            Idle::Look
                        } else if found.held_back {
                            Idle::Pause
                        } else {
                            Idle::Wait
                        };
                    };
                    if lost_owner {
                        tracing::warn!(projection = name, "lost the projection lock connection");
                        break;
                    }
                }
                Err(StepError::Handler {
                    last,
                    position,
                    message,
                }) => {
                    if size > 1 {
                        probe_until = Some(last);
                        continue;
                    }
                    tracing::error!(projection = name, position, error = %message, "projection halted on an event");
                    if let Err(e) = record_failure(&pool, name, position, &message).await {
                        tracing::warn!(projection = name, error = %e, "cannot record the failure");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(options.retry_after) => {}
                        () = cancel.cancelled() => {}
                    }
                }
                Err(StepError::Stale(message)) => {
                    tracing::error!(projection = name, error = %message, "projection refused");
                    if let Err(e) = record_failure(&pool, name, None, &message).await {
                        tracing::warn!(projection = name, error = %e, "cannot record the failure");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(options.retry_after) => {}
                        () = cancel.cancelled() => {}
                    }
                }
                Err(StepError::Database(e)) => {
                    tracing::warn!(projection = name, error = %e, "projection step failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(options.lock_retry) => {}
                        () = cancel.cancelled() => {}
                    }
                    if sqlx::query("SELECT 1").execute(&mut owner).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// Folds the next batch after the checkpoint and moves the checkpoint, in one transaction.
/// The checkpoint row is locked for the duration, so no two runners (or a runner and a
/// rebuild's swap) can apply the same events.
pub(crate) async fn step(
    pool: &PgPool,
    projection: &dyn Projection,
    size: i64,
) -> Result<StepOutcome, StepError> {
    let mut tx = pool.begin().await?;
    // A read model is derived from the log, and its checkpoint moves in the same transaction:
    // a batch lost in a crash is applied again from the log, so its commit need not wait for
    // the disk (the lock turns that off). Whatever acts on it durably (a job claimed, a
    // delivery recorded) commits after it in the WAL, and so flushes it first.
    let (checkpoint, events) =
        schema::event_log::read_and_move_checkpoint(&mut tx, projection.name(), size)
            .await?
            .ok_or_else(|| {
                StepError::Database(sqlx::Error::Protocol(format!(
                    "projection {} is not installed: run `strata migrate`",
                    projection.name()
                )))
            })?;
    let generation = checkpoint.generation;
    if checkpoint.definition.as_deref() != Some(crate::projection::definition(projection).as_str())
    {
        return Err(StepError::Stale(format!(
            "the tables of projection {} were built by another definition of it: run \
             `strata migrate`, which rebuilds it",
            projection.name()
        )));
    }
    let cursor = checkpoint.cursor;
    let Some(last) = events.last().map(|e| e.cursor) else {
        tx.commit().await?;
        return Ok(StepOutcome {
            applied: 0,
            last: None,
            at: cursor,
            held_back: checkpoint.held_back,
        });
    };
    // Each event applied here continues the trace of the command that appended it; the spans
    // last as long as the batch's transaction.
    let _traced: Vec<tracing::Span> = events
        .iter()
        .filter(|e| e.metadata.traceparent.is_some())
        .map(|e| {
            let span = tracing::info_span!(
                "projection.apply",
                projection = projection.name(),
                event_type = %e.event_type,
                position = e.cursor.position,
                batch = events.len(),
            );
            schema::trace::continue_trace(&span, e.metadata.traceparent.as_deref());
            span
        })
        .collect();
    let applied = {
        let mut batch = Batch::new(&mut tx, generation, true);
        crate::projection::fold(projection, &mut batch, &events).await
    };
    if let Err(e) = applied {
        let (position, message) = match e {
            ProjectionError::Handler { position, message } => (position, message),
            ProjectionError::Database(e) => (None, e.to_string()),
        };
        let position = position.or_else(|| events.first().map(|e| e.cursor.position));
        return Err(StepError::Handler {
            last,
            position,
            message,
        });
    }
    // The statement that read the batch moved the checkpoint past it; the commit makes both
    // hold, or neither.
    tx.commit().await?;
    Ok(StepOutcome {
        applied: events.len(),
        last: Some(last),
        at: last,
        held_back: checkpoint.held_back,
    })
}

/// Looks past `at`, the checkpoint of `projection`, in one statement: up to `limit` readable
/// events, and whether committed ones wait past the horizon. When none of those readable
/// events is in a category the projection folds, the checkpoint moves past them (compared
/// and set, so a rebuild's swap or another owner in between makes it do nothing), without a
/// batch transaction that would fold nothing; they are not counted as applied. Like a batch,
/// a move is announced and does not wait for the disk (the log it skips is durable). A
/// projection that names no categories folds every event, so it never moves here.
async fn look(
    pool: &PgPool,
    projection: &dyn Projection,
    at: LogCursor,
    limit: i64,
) -> Result<Look, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH readable AS ( \
               SELECT transaction_id, position, \
                      ($4::text[] IS NULL OR split_part(stream_id, ':', 1) = ANY($4)) AS folded \
               FROM events \
               WHERE (transaction_id, position) > ($2::text::xid8, $3) \
                 AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
               ORDER BY transaction_id, position LIMIT $5), \
             found AS ( \
               SELECT count(*) AS readable, coalesce(bool_or(folded), false) AS fold \
               FROM readable), \
             last AS ( \
               SELECT transaction_id, position FROM readable \
               ORDER BY transaction_id DESC, position DESC LIMIT 1), \
             moved AS ( \
               UPDATE projection_checkpoints c \
               SET transaction_id = last.transaction_id, position = last.position, \
                   updated_at = now() \
               FROM last, found \
               WHERE c.projection = $1 AND c.transaction_id = $2::text::xid8 \
                 AND c.position = $3 AND NOT found.fold \
               RETURNING c.transaction_id::text AS xid, c.position) \
             SELECT found.readable, found.fold, {} AS held_back, \
                    moved.xid, moved.position, \
                    CASE WHEN moved.xid IS NOT NULL THEN \
                      set_config('synchronous_commit', 'off', true) || pg_notify($6, current_schema() || ' ' || $7)::text \
                    END AS announced \
             FROM found LEFT JOIN moved ON true",
            schema::event_log::HELD_BACK_SQL
        )
    });
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(projection.name())
        .bind(at.transaction_id.to_string())
        .bind(at.position)
        .bind(projection.categories())
        .bind(limit)
        .bind(schema::wakeups::CHECKPOINTS_CHANNEL)
        .bind(schema::wakeups::origin())
        .fetch_one(pool)
        .await?;
    let moved: Option<String> = row.try_get("xid")?;
    Ok(Look {
        fold: row.try_get("fold")?,
        moved: match moved {
            Some(_) => Some(cursor_of(&row)?),
            None => None,
        },
        readable: row.try_get("readable")?,
        held_back: row.try_get("held_back")?,
    })
}

pub(crate) async fn advance(
    conn: &mut PgConnection,
    name: &str,
    last: LogCursor,
    applied: usize,
) -> Result<(), sqlx::Error> {
    // Read-your-writes waits (`wait::Waiter`) of other processes look again when this
    // commits; this process's were told by `LocalCheckpoints` (the origin says so).
    sqlx::query(
        "WITH moved AS ( \
           UPDATE projection_checkpoints SET transaction_id = $2::text::xid8, position = $3, \
                  events_applied = events_applied + $4, updated_at = now(), \
                  failed_at = NULL, error = NULL, error_position = NULL \
           WHERE projection = $1 RETURNING 1) \
         SELECT pg_notify($5, current_schema() || ' ' || $6) FROM moved",
    )
    .bind(name)
    .bind(last.transaction_id.to_string())
    .bind(last.position)
    .bind(applied as i64)
    .bind(schema::wakeups::CHECKPOINTS_CHANNEL)
    .bind(schema::wakeups::origin())
    .execute(conn)
    .await?;
    Ok(())
}

async fn record_failure(
    pool: &PgPool,
    name: &str,
    position: Option<i64>,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE projection_checkpoints SET failed_at = now(), error = $2, error_position = $3 \
         WHERE projection = $1",
    )
    .bind(name)
    .bind(message)
    .bind(position)
    .execute(pool)
    .await?;
    Ok(())
}

pub(crate) fn cursor_of(row: &sqlx::postgres::PgRow) -> Result<LogCursor, sqlx::Error> {
    let xid: String = row.try_get("xid")?;
    Ok(LogCursor {
        transaction_id: xid.parse().map_err(|e| {
            sqlx::Error::Decode(format!("checkpoint transaction id {xid:?}: {e}").into())
        })?,
        position: row.try_get("position")?,
    })
}

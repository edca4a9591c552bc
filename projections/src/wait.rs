//! Read-your-writes: wait until named projections have applied a position.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use schema::LogCursor;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::local::LocalCheckpoints;
use crate::runtime::cursor_of;

/// The projections did not catch up in time. The write itself is committed: a client can
/// re-read later; it must not retry the write.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionLag {
    /// Timed out.
    #[error(
        "the change is saved, but the read models {behind:?} had not caught up after {waited_ms} ms; \
         read again shortly (do not repeat the change)"
    )]
    Timeout {
        /// Projections still behind.
        behind: Vec<String>,
        /// How long the wait lasted.
        waited_ms: u128,
    },
    /// A named projection does not exist.
    #[error("unknown projection {0}")]
    Unknown(String),
    /// The database failed while waiting.
    #[error("database error while waiting for projections: {0}")]
    Database(#[from] sqlx::Error),
}

impl ProjectionLag {
    /// The GraphQL `extensions.code` of this error.
    pub const CODE: &'static str = "PROJECTION_LAG";
}

/// Where projection `name` has applied the log up to.
pub async fn checkpoint_of(pool: &PgPool, name: &str) -> Result<LogCursor, ProjectionLag> {
    let row = sqlx::query(
        "SELECT projection, transaction_id::text AS xid, position FROM projection_checkpoints \
         WHERE projection = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ProjectionLag::Unknown(name.to_owned()))?;
    Ok(cursor_of(&row)?)
}

/// Waits until every projection in `names` has a checkpoint at or past `target`, polling with
/// a short growing interval, for at most `timeout`. A caller that waits often keeps a
/// [`Waiter`], which is woken by the projectors instead of polling.
pub async fn wait_for(
    pool: &PgPool,
    names: &[&str],
    target: LogCursor,
    timeout: Duration,
) -> Result<(), ProjectionLag> {
    wait_until(pool, names, target, timeout, None, None).await
}

/// Read-your-writes for a long-lived caller (the command bus): each projector announces every
/// checkpoint it moves on `strata_checkpoints`, and a waiter looks again at once instead of at
/// its next poll. Polling stays as the fallback, so a lost notification costs latency only.
///
/// When the projections run in this process, their commits are known here at once
/// ([`crate::local`]) and the wait asks the database only as a fallback.
///
/// Clones share one listener, started by the first wait and stopped with the last clone.
#[derive(Clone, Debug, Default)]
pub struct Waiter {
    wakeups: Arc<OnceLock<Wakeups>>,
    local: Arc<tokio::sync::OnceCell<Arc<LocalCheckpoints>>>,
}

#[derive(Debug)]
struct Wakeups {
    moved: watch::Receiver<u64>,
    _stop: DropGuard,
}

impl Waiter {
    /// [`wait_for`], woken by checkpoint notifications.
    pub async fn wait_for(
        &self,
        pool: &PgPool,
        names: &[&str],
        target: LogCursor,
        timeout: Duration,
    ) -> Result<(), ProjectionLag> {
        // Unnamed while the database cannot be asked: the wait then asks it, as it would.
        let local = self
            .local
            .get_or_try_init(|| crate::local::of(pool))
            .await
            .ok();
        let moved = self
            .wakeups
            .get_or_init(|| {
                let (tx, moved) = watch::channel(0u64);
                let stop = CancellationToken::new();
                // This process's projectors tell `local` of their commits: their notifications
                // would only wake the wait a second time, to ask the database.
                let (pool, channel) = (pool.clone(), schema::wakeups::CHECKPOINTS_CHANNEL);
                if local.is_some() {
                    tokio::spawn(schema::wakeups::listen_remote(
                        pool,
                        channel,
                        tx,
                        stop.clone(),
                    ));
                } else {
                    tokio::spawn(schema::wakeups::listen(pool, channel, tx, stop.clone()));
                }
                Wakeups {
                    moved,
                    _stop: stop.drop_guard(),
                }
            })
            .moved
            .clone();
        wait_until(
            pool,
            names,
            target,
            timeout,
            Some(moved),
            local.map(Arc::as_ref),
        )
        .await
    }
}

async fn wait_until(
    pool: &PgPool,
    names: &[&str],
    target: LogCursor,
    timeout: Duration,
    mut moved: Option<watch::Receiver<u64>>,
    local: Option<&LocalCheckpoints>,
) -> Result<(), ProjectionLag> {
    let start = Instant::now();
    let mut here = local.map(LocalCheckpoints::subscribe);
    // When every one of these projections has moved in this process, its runner is here and
    // wakes this wait through `here` when it commits: the database is asked only after another
    // process's notification or at the fallback poll. Otherwise it is asked at once, as the
    // runner may be elsewhere and past the target already.
    let all_here = local.is_some_and(|l| names.iter().all(|n| l.get(n).is_some()));
    let mut ask_database = !all_here;
    let mut pause = Duration::from_millis(if all_here { 20 } else { 1 });
    loop {
        // Whatever moves after this point wakes the wait below.
        if let Some(moved) = moved.as_mut() {
            moved.borrow_and_update();
        }
        if let Some(here) = here.as_mut() {
            here.borrow_and_update();
        }
        if local.is_some_and(|l| l.all_at(names, target)) {
            return Ok(());
        }
        let timed_out = start.elapsed() >= timeout;
        if ask_database || timed_out {
            let behind = behind_in_database(pool, names, target).await?;
            if behind.is_empty() {
                return Ok(());
            }
            if timed_out {
                return Err(ProjectionLag::Timeout {
                    behind,
                    waited_ms: start.elapsed().as_millis(),
                });
            }
        }
        let sleep = tokio::time::sleep(pause.min(timeout.saturating_sub(start.elapsed())));
        tokio::select! {
            // A local commit also arrives as a notification: take it as the local one.
            biased;
            changed = changed(&mut here) => {
                if changed.is_err() {
                    here = None;
                }
                ask_database = false;
            }
            changed = changed(&mut moved) => {
                // The listener is gone: poll from now on.
                if changed.is_err() {
                    moved = None;
                }
                ask_database = true;
            }
            () = sleep => {
                ask_database = true;
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

/// Waits for `rx` to change; never returns when there is none.
async fn changed(rx: &mut Option<watch::Receiver<u64>>) -> Result<(), watch::error::RecvError> {
    match rx {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

/// The projections among `names` whose stored checkpoint is before `target`.
async fn behind_in_database(
    pool: &PgPool,
    names: &[&str],
    target: LogCursor,
) -> Result<Vec<String>, ProjectionLag> {
    let rows = sqlx::query(
        "SELECT projection, transaction_id::text AS xid, position FROM projection_checkpoints \
         WHERE projection = ANY($1)",
    )
    .bind(names)
    .fetch_all(pool)
    .await?;
    if rows.len() < names.len() {
        let found: Vec<String> = rows
            .iter()
            .filter_map(|r| sqlx::Row::try_get::<String, _>(r, "projection").ok())
            .collect();
        let missing = names
            .iter()
            .find(|n| !found.iter().any(|f| f == *n))
            .copied()
            .unwrap_or_default();
        return Err(ProjectionLag::Unknown(missing.to_owned()));
    }
    let mut behind = Vec::new();
    for row in &rows {
        if cursor_of(row)? < target {
            behind.push(sqlx::Row::try_get::<String, _>(row, "projection")?);
        }
    }
    Ok(behind)
}

//! The late-commit race: many writers, some holding their transaction open before commit,
//! some rolling back, while a reader follows the log. Shared by the test suite (short) and
//! the benchmark binary's soak (long).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use domain::{EventMetadata, NewEvent, StreamId};
use rand::Rng;
use schema::{AppendRequest, EventLog, ExpectedVersion, LogCursor};
use sqlx::PgPool;
use tokio::sync::Mutex;

/// What the reader saw against what the writers committed.
#[derive(Debug, Default)]
pub struct RaceOutcome {
    /// Events whose transaction committed.
    pub committed: usize,
    /// Events the following reader received.
    pub seen: usize,
    /// Events received more than once.
    pub duplicates: usize,
    /// Committed events never received.
    pub missing: usize,
    /// Events received from transactions that rolled back.
    pub phantom: usize,
    /// Times the reader's cursor went backwards.
    pub out_of_order: usize,
    /// Whether a fresh read of the whole log gives the reader's sequence exactly.
    pub stable_order: bool,
    /// Events a naive `position > last` reader, running alongside, skipped for good.
    pub naive_missed: usize,
    /// Transactions rolled back on purpose.
    pub rolled_back: usize,
}

impl RaceOutcome {
    /// Every committed event seen exactly once, nothing else, in a stable order.
    pub fn is_exact(&self) -> bool {
        self.seen == self.committed
            && self.duplicates == 0
            && self.missing == 0
            && self.phantom == 0
            && self.out_of_order == 0
            && self.stable_order
    }
}

/// The naive way to follow a log: the next 64 positions after `last`. It skips for good an
/// event whose transaction commits after a later position was read.
pub async fn naive_read(pool: &PgPool, last: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT position FROM events WHERE position > $1 ORDER BY position LIMIT 64")
        .bind(last)
        .fetch_all(pool)
        .await
}

/// Runs `writers` concurrent writers for `rounds` transactions each against `pool`'s schema.
pub async fn late_commit_race(
    pool: &PgPool,
    writers: usize,
    rounds: usize,
) -> anyhow::Result<RaceOutcome> {
    let log = EventLog::new(pool.clone());
    let committed = Arc::new(Mutex::new(HashSet::<i64>::new()));
    let aborted = Arc::new(Mutex::new(HashSet::<i64>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let max_committed_xid = Arc::new(std::sync::atomic::AtomicU64::new(0));

    let reader = {
        let log = log.clone();
        let done = done.clone();
        let max_committed_xid = max_committed_xid.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut cursor = LogCursor::START;
            let mut seen = Vec::new();
            let mut out_of_order = 0;
            let mut drain_deadline: Option<std::time::Instant> = None;
            let mut horizon_passed = false;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let batch = log.read_all(cursor, 64).await?;
                for e in &batch {
                    if e.cursor <= cursor {
                        out_of_order += 1;
                    }
                    cursor = e.cursor;
                    seen.push(e.cursor);
                }
                if batch.is_empty() {
                    // Done only once every writer has finished and the visibility horizon is
                    // past their last commit: other sessions (other tests) may hold it back.
                    if finished {
                        let horizon: String = sqlx::query_scalar(
                            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text",
                        )
                        .fetch_one(&pool)
                        .await?;
                        let passed = horizon.parse::<u64>().unwrap_or(0)
                            > max_committed_xid.load(Ordering::SeqCst);
                        // The batch above was read before the horizon check: once it has
                        // passed, read once more before stopping.
                        if (passed && horizon_passed)
                            || drain_deadline.is_some_and(|d: std::time::Instant| {
                                d.elapsed() > Duration::from_secs(30)
                            })
                        {
                            break;
                        }
                        horizon_passed = passed;
                        drain_deadline.get_or_insert_with(std::time::Instant::now);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            anyhow::Ok((seen, out_of_order))
        })
    };

    let naive = {
        let pool = pool.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = 0i64;
            let mut seen = HashSet::new();
            loop {
                // Once every writer has finished, one more pass to the end: whatever it
                // skipped by then is skipped for good.
                let finished = done.load(Ordering::SeqCst);
                loop {
                    let rows = naive_read(&pool, last).await?;
                    let Some(&end) = rows.last() else { break };
                    last = end;
                    seen.extend(rows);
                    if !finished {
                        break;
                    }
                }
                if finished {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            anyhow::Ok(seen)
        })
    };

    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        let pool = pool.clone();
        let committed = committed.clone();
        let aborted = aborted.clone();
        let max_committed_xid = max_committed_xid.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new("race", &format!("w{w}"))?;
            for round in 0..rounds {
                let (hold_ms, rollback, size) = {
                    let mut rng = rand::rng();
                    let hold = if rng.random_bool(0.3) { rng.random_range(1..25) } else { 0 };
                    (hold, rng.random_bool(0.1), rng.random_range(1..4))
                };
                let events = (0..size)
                    .map(|i| NewEvent {
                        event_type: "Raced".into(),
                        schema_version: 1,
                        payload: serde_json::json!({"w": w, "round": round, "i": i}),
                    })
                    .collect();
                let request = AppendRequest {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Any,
                    events,
                    metadata: EventMetadata::default(),
                    command_id: None,
                };
                let mut tx = pool.begin().await?;
                let appended = log.append_on(&mut tx, &request).await?;
                if hold_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                }
                // Positions of one append need not be contiguous: concurrent appends interleave.
                let positions: Vec<i64> = sqlx::query_scalar(
                    "SELECT position FROM events WHERE stream_id = $1 AND stream_version BETWEEN $2 AND $3",
                )
                .bind(stream.as_str())
                .bind(appended.first_version as i64)
                .bind(appended.last_version as i64)
                .fetch_all(&mut *tx)
                .await?;
                if rollback {
                    tx.rollback().await?;
                    aborted.lock().await.extend(positions);
                } else {
                    tx.commit().await?;
                    max_committed_xid.fetch_max(appended.last.transaction_id, Ordering::SeqCst);
                    committed.lock().await.extend(positions);
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    done.store(true, Ordering::SeqCst);
    let (seen, out_of_order) = reader.await??;
    let naive_seen = naive.await??;

    let committed = committed.lock().await.clone();
    let aborted = aborted.lock().await.clone();
    let mut unique = HashSet::new();
    let duplicates = seen.iter().filter(|c| !unique.insert(c.position)).count();
    let fresh: Vec<LogCursor> = {
        let mut out = Vec::new();
        let mut cursor = LogCursor::START;
        loop {
            let batch = log.read_all(cursor, 1000).await?;
            let Some(last) = batch.last() else { break };
            cursor = last.cursor;
            out.extend(batch.iter().map(|e| e.cursor));
        }
        out
    };
    Ok(RaceOutcome {
        committed: committed.len(),
        seen: seen.len(),
        duplicates,
        missing: committed.difference(&unique).count(),
        phantom: unique.intersection(&aborted).count(),
        out_of_order,
        stable_order: fresh == seen,
        naive_missed: committed.difference(&naive_seen).count(),
        rolled_back: aborted.len(),
    })
}

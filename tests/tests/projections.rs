//! The projector runtime, read-your-writes and rebuilds against real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use domain::{EventMetadata, NewEvent, StreamId};
use futures::FutureExt;
use projections::{
    Applied, Batch, Projection, ProjectionError, ProjectorRuntime, RebuildOptions, RuntimeOptions,
    TableDef,
};
use schema::jobs::NewJob;
use schema::{AppendRequest, Appended, EventLog, ExpectedVersion, RecordedEvent};
use serde_json::json;
use sqlx::PgPool;
use tests::TestDb;
use tokio_util::sync::CancellationToken;

/// Sums `n` per stream; fails on `poison` events until `fixed`; can stall mid-batch; counts
/// how many runners are inside `apply` at once; emits one job per event.
#[derive(Default)]
struct Totals {
    fixed: AtomicBool,
    stall: AtomicBool,
    entered: AtomicBool,
    inside: AtomicUsize,
    max_inside: AtomicUsize,
}

const TOTALS_TABLES: &[TableDef] = &[TableDef {
    name: "totals",
    create: "CREATE TABLE {table} (stream_id text PRIMARY KEY, total bigint NOT NULL, events bigint NOT NULL)",
    indexes: &["CREATE INDEX {table}_total ON {table} (total)"],
}];

impl Projection for Totals {
    fn name(&self) -> &'static str {
        "totals"
    }
    fn tables(&self) -> &'static [TableDef] {
        TOTALS_TABLES
    }
    fn apply<'a>(&'a self, batch: &'a mut Batch<'_>, events: &'a [RecordedEvent]) -> Applied<'a> {
        async move {
            // A guard, so a runner aborted inside `apply` leaves the count right.
            struct Inside<'x>(&'x AtomicUsize);
            impl Drop for Inside<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            let _inside = Inside(&self.inside);
            self.max_inside.fetch_max(now, Ordering::SeqCst);
            self.fold(batch, events).await
        }
        .boxed()
    }
}

impl Totals {
    async fn fold(
        &self,
        batch: &mut Batch<'_>,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let table = batch.table("totals");
        for e in events {
            if e.payload["poison"] == true && !self.fixed.load(Ordering::SeqCst) {
                return Err(ProjectionError::Handler {
                    position: Some(e.cursor.position),
                    message: "poison event".into(),
                });
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {table} AS t VALUES ($1, $2, 1) ON CONFLICT (stream_id) \
                 DO UPDATE SET total = t.total + excluded.total, events = t.events + 1"
            )))
            .bind(&e.stream_id)
            .bind(e.payload["n"].as_i64().unwrap_or(0))
            .execute(&mut *batch.conn)
            .await?;
            batch
                .enqueue(&NewJob {
                    kind: "test.echo".into(),
                    payload: json!({"position": e.cursor.position}),
                    dedupe_key: Some(format!("echo:{}", e.cursor.position)),
                    max_attempts: 3,
                    source_position: Some(e.cursor.position),
                    ordering_key: None,
                    run_at: None,
                })
                .await?;
        }
        self.entered.store(true, Ordering::SeqCst);
        while self.stall.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

fn fast() -> RuntimeOptions {
    RuntimeOptions {
        batch_size: 50,
        poll_interval: Duration::from_millis(50),
        retry_after: Duration::from_millis(100),
        lock_retry: Duration::from_millis(100),
        linger: Duration::from_millis(20),
    }
}

async fn append(log: &EventLog, stream: &str, payload: serde_json::Value) -> Appended {
    append_to(log, "project", stream, payload).await
}

async fn append_to(
    log: &EventLog,
    category: &str,
    stream: &str,
    payload: serde_json::Value,
) -> Appended {
    log.append(&AppendRequest {
        stream: StreamId::new(category, stream).unwrap(),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            event_type: "Counted".into(),
            schema_version: 1,
            payload,
        }],
        metadata: EventMetadata::default(),
        command_id: None,
    })
    .await
    .unwrap()
}

fn spawn_runtime(
    pool: &PgPool,
    projections: Vec<Arc<dyn Projection>>,
) -> (tokio::task::JoinHandle<()>, CancellationToken) {
    let cancel = CancellationToken::new();
    let runtime = ProjectorRuntime::new(pool.clone(), projections, fast());
    let token = cancel.clone();
    (
        tokio::spawn(async move { runtime.run(token).await }),
        cancel,
    )
}

/// Ground truth straight from the log.
async fn truth(pool: &PgPool) -> Vec<(String, i64, i64)> {
    sqlx::query_as(
        "SELECT stream_id, sum((payload->>'n')::bigint)::bigint, count(*) FROM events \
         GROUP BY stream_id ORDER BY stream_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn read_totals(pool: &PgPool) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT stream_id, total, events FROM totals ORDER BY stream_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn install(db: &TestDb, p: &Arc<Totals>) {
    projections::install(&db.pool, &[p.clone() as Arc<dyn Projection>])
        .await
        .unwrap();
}

/// The newest event this test wrote, whether or not the visibility horizon has passed it
/// yet: other tests' open transactions hold the horizon back, and waiting for the true last
/// write is what read-your-writes means.
async fn events_applied(pool: &PgPool, projection: &str) -> i64 {
    sqlx::query_scalar("SELECT events_applied FROM projection_checkpoints WHERE projection = $1")
        .bind(projection)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn head(log: &EventLog) -> schema::LogCursor {
    // The alias matters: `ORDER BY transaction_id` would otherwise name the text output column
    // and sort "999" after "1000" (seen once a fresh cluster's transaction ids reached 1000).
    let (xid, position): (String, i64) = sqlx::query_as(
        "SELECT transaction_id::text AS xid, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1",
    )
    .fetch_one(log.pool())
    .await
    .unwrap();
    schema::LogCursor {
        transaction_id: xid.parse().unwrap(),
        position,
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// The status of `name` once it reports an error (within [`WAIT`]).
async fn halted_status(pool: &PgPool, name: &str) -> projections::ProjectionStatus {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = projections::status(pool).await.unwrap();
        let t = status.into_iter().find(|s| s.name == name).unwrap();
        if t.error.is_some() {
            return t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never halted: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_definition_halts_the_projection_until_rebuilt() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let totals = Arc::new(Totals {
        fixed: AtomicBool::new(true),
        ..Totals::default()
    });
    install(&db, &totals).await;
    assert_eq!(
        projections::needs_rebuild(&db.pool, totals.as_ref())
            .await
            .unwrap(),
        None
    );
    for i in 0..5 {
        append(&log, "a", json!({"n": i})).await;
    }
    // As if the code of the projection changed (a column added) since its tables were built.
    sqlx::query(
        "UPDATE projection_checkpoints SET definition = 'older' WHERE projection = 'totals'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert!(
        projections::needs_rebuild(&db.pool, totals.as_ref())
            .await
            .unwrap()
            .is_some()
    );
    let (task, cancel) = spawn_runtime(&db.pool, vec![totals.clone()]);
    let refused = halted_status(&db.pool, "totals").await;
    assert!(
        refused
            .error
            .as_deref()
            .is_some_and(|e| e.contains("strata migrate")),
        "{refused:?}"
    );
    assert_eq!(
        refused.events_applied, 0,
        "nothing folded into stale tables"
    );
    projections::rebuild(
        &db.pool,
        totals.as_ref(),
        &RebuildOptions::default(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(
        projections::needs_rebuild(&db.pool, totals.as_ref())
            .await
            .unwrap(),
        None
    );
    append(&log, "a", json!({"n": 10})).await;
    projections::wait_for(&db.pool, &["totals"], head(&log).await, WAIT)
        .await
        .unwrap();
    assert_eq!(read_totals(&db.pool).await, truth(&db.pool).await);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_then_follows_live_and_reads_its_own_writes() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let totals = Arc::new(Totals::default());
    install(&db, &totals).await;
    for i in 0..120 {
        append(&log, &format!("s{}", i % 7), json!({"n": i})).await;
    }
    let (task, cancel) = spawn_runtime(
        &db.pool,
        vec![totals.clone(), Arc::new(projections::streams::StreamHeads)],
    );
    projections::wait_for(
        &db.pool,
        &["totals", "stream_heads"],
        head(&log).await,
        WAIT,
    )
    .await
    .unwrap();
    assert_eq!(read_totals(&db.pool).await, truth(&db.pool).await);

    // Read-your-writes: each write is visible to a query right after the wait.
    for i in 0..20 {
        let written = append(&log, "live", json!({"n": i})).await;
        projections::wait_for(&db.pool, &["totals"], written.last, WAIT)
            .await
            .unwrap();
        let (total, events): (i64, i64) =
            sqlx::query_as("SELECT total, events FROM totals WHERE stream_id = 'project:live'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!((total, events), ((0..=i).sum::<i64>(), i + 1));
    }
    // The waits above were for `totals` alone: `stream_heads` folds on its own schedule.
    projections::wait_for(&db.pool, &["stream_heads"], head(&log).await, WAIT)
        .await
        .unwrap();
    let heads: i64 = sqlx::query_scalar("SELECT sum(events)::bigint FROM stream_heads")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(heads, 140);
    let status = projections::status(&db.pool).await.unwrap();
    let t = status.iter().find(|s| s.name == "totals").unwrap();
    assert_eq!(
        (t.behind_events, t.events_applied, t.error.clone()),
        (0, 140, None)
    );
    // The projector enqueued one job per event, in its own transactions.
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 140);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn waiting_on_a_stopped_projection_times_out_with_projection_lag() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let written = append(&log, "a", json!({"n": 1})).await;
    let err = projections::wait_for(
        &db.pool,
        &["stream_heads"],
        written.last,
        Duration::from_millis(150),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, projections::ProjectionLag::Timeout { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("saved"), "{err}");
    assert_eq!(projections::ProjectionLag::CODE, "PROJECTION_LAG");
    let err = projections::wait_for(&db.pool, &["nope"], written.last, WAIT)
        .await
        .unwrap_err();
    assert!(matches!(err, projections::ProjectionLag::Unknown(ref n) if n == "nope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_batch_resumes_to_what_a_rebuild_gives() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let totals = Arc::new(Totals::default());
    install(&db, &totals).await;
    for i in 0..200 {
        append(&log, &format!("s{}", i % 5), json!({"n": i})).await;
    }
    totals.stall.store(true, Ordering::SeqCst);
    let (task, _cancel) = spawn_runtime(&db.pool, vec![totals.clone()]);
    while !totals.entered.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Crash: the batch is written but not committed.
    task.abort();
    let _ = task.await;
    totals.stall.store(false, Ordering::SeqCst);
    let applied: i64 = sqlx::query_scalar(
        "SELECT events_applied FROM projection_checkpoints WHERE projection = 'totals'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(applied, 0, "the interrupted batch must not have committed");

    let (task, cancel) = spawn_runtime(&db.pool, vec![totals.clone()]);
    projections::wait_for(&db.pool, &["totals"], head(&log).await, WAIT)
        .await
        .unwrap();
    assert_eq!(read_totals(&db.pool).await, truth(&db.pool).await);
    cancel.cancel();
    task.await.unwrap();
    let options = RebuildOptions {
        verify: true,
        ..Default::default()
    };
    let report = projections::rebuild(&db.pool, totals.as_ref(), &options, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(report.difference_count, 0, "{:?}", report.differences);
    assert_eq!(report.events, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_never_apply_the_same_projection_at_once_and_fail_over() {
    let db = TestDb::new().await;
    let other_pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let log = EventLog::new(db.pool.clone());
    let totals = Arc::new(Totals::default());
    install(&db, &totals).await;
    let (first, _c1) = spawn_runtime(&db.pool, vec![totals.clone()]);
    let (second, c2) = spawn_runtime(&other_pool, vec![totals.clone()]);
    for i in 0..150 {
        append(&log, &format!("s{}", i % 3), json!({"n": i})).await;
    }
    projections::wait_for(&db.pool, &["totals"], head(&log).await, WAIT)
        .await
        .unwrap();
    // Exactly one session holds the projection's lock.
    let holders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND objid::bigint = (hashtext(current_schema() || ':projection:totals')::bigint & 4294967295)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(holders, 1);
    // Kill the first; whoever is left carries on.
    first.abort();
    let _ = first.await;
    for i in 150..200 {
        append(&log, &format!("s{}", i % 3), json!({"n": i})).await;
    }
    projections::wait_for(&db.pool, &["totals"], head(&log).await, WAIT)
        .await
        .unwrap();
    assert_eq!(read_totals(&db.pool).await, truth(&db.pool).await);
    assert_eq!(
        totals.max_inside.load(Ordering::SeqCst),
        1,
        "two runners were inside apply at once"
    );
    c2.cancel();
    second.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_error_halts_only_its_projection_at_the_exact_event_then_resumes() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let totals = Arc::new(Totals::default());
    install(&db, &totals).await;
    for i in 0..10 {
        append(&log, "a", json!({"n": i})).await;
    }
    let poison = append(&log, "a", json!({"n": 100, "poison": true})).await;
    for i in 0..10 {
        append(&log, "b", json!({"n": i})).await;
    }
    let (task, cancel) = spawn_runtime(
        &db.pool,
        vec![totals.clone(), Arc::new(projections::streams::StreamHeads)],
    );
    // The healthy projection goes all the way.
    projections::wait_for(&db.pool, &["stream_heads"], head(&log).await, WAIT)
        .await
        .unwrap();
    // The failing one stops on the poison event, having applied everything before it.
    let halted = halted_status(&db.pool, "totals").await;
    assert_eq!(halted.error_position, Some(poison.last.position));
    assert_eq!(halted.events_applied, 10);
    assert_eq!(halted.behind_events, 11);
    assert_eq!(
        read_totals(&db.pool).await,
        vec![("project:a".to_owned(), 45, 10)]
    );
    // After the fix it resumes and clears the error.
    totals.fixed.store(true, Ordering::SeqCst);
    projections::wait_for(&db.pool, &["totals"], head(&log).await, WAIT)
        .await
        .unwrap();
    assert_eq!(read_totals(&db.pool).await, truth(&db.pool).await);
    let status = projections::status(&db.pool).await.unwrap();
    assert!(status.iter().all(|s| s.error.is_none()));
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_concurrent_writes_swaps_atomically_and_equals_the_fold() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let totals = Arc::new(Totals {
        fixed: AtomicBool::new(true),
        ..Totals::default()
    });
    install(&db, &totals).await;
    for i in 0..500 {
        append(&log, &format!("s{}", i % 11), json!({"n": i})).await;
    }
    let (task, cancel) = spawn_runtime(&db.pool, vec![totals.clone()]);
    projections::wait_for(&db.pool, &["totals"], head(&log).await, WAIT)
        .await
        .unwrap();
    let jobs_before: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&db.pool)
        .await
        .unwrap();

    let stop = CancellationToken::new();
    let writer = {
        let log = log.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.is_cancelled() {
                append(&log, &format!("w{}", i % 4), json!({"n": i})).await;
                i += 1;
            }
            i
        })
    };
    // A reader never sees the model shrink: it never reads a half-built table.
    let low_water = Arc::new(AtomicI64::new(0));
    let reader = {
        let pool = db.pool.clone();
        let stop = stop.clone();
        let low_water = low_water.clone();
        tokio::spawn(async move {
            let mut regressions = 0;
            while !stop.is_cancelled() {
                let n: i64 =
                    sqlx::query_scalar("SELECT coalesce(sum(events), 0)::bigint FROM totals")
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                if n < low_water.load(Ordering::SeqCst) {
                    regressions += 1;
                }
                low_water.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            regressions
        })
    };
    let options = RebuildOptions {
        batch_size: 100,
        ..Default::default()
    };
    let report = projections::rebuild(&db.pool, totals.as_ref(), &options, &|_, _| {})
        .await
        .unwrap();
    assert!(report.swapped);
    assert_eq!(report.generation, 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.cancel();
    let written = writer.await.unwrap();
    assert!(written > 0);
    assert_eq!(reader.await.unwrap(), 0, "a reader saw the model shrink");
    projections::wait_for(&db.pool, &["totals"], head(&log).await, WAIT)
        .await
        .unwrap();
    assert_eq!(read_totals(&db.pool).await, truth(&db.pool).await);
    // Only events new since the rebuild produced jobs: the replay enqueued none again.
    let jobs_after: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(jobs_after - jobs_before, i64::from(written));
    let old_tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'totals_g1'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        old_tables, 0,
        "the old generation is dropped after the swap"
    );
    cancel.cancel();
    task.await.unwrap();
    let verify = RebuildOptions {
        verify: true,
        ..Default::default()
    };
    let check = projections::rebuild(&db.pool, totals.as_ref(), &verify, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(check.difference_count, 0, "{:?}", check.differences);
    assert!(!check.swapped);
}

#[tokio::test]
async fn verify_reports_every_difference() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let totals = Arc::new(Totals::default());
    install(&db, &totals).await;
    for i in 0..30 {
        append(&log, &format!("s{}", i % 3), json!({"n": i})).await;
    }
    // A rebuild folds what readers can see; other tests may hold the horizon back a moment.
    tests::wait_readable(&log, head(&log).await).await;
    // Fold by rebuilding (no live runner), then corrupt the live table behind its back.
    let report = projections::rebuild(
        &db.pool,
        totals.as_ref(),
        &RebuildOptions::default(),
        &|_, _| {},
    )
    .await
    .unwrap();
    assert!(report.swapped);
    sqlx::query("UPDATE totals_g2 SET total = total + 1 WHERE stream_id = 'project:s1'")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM totals_g2 WHERE stream_id = 'project:s2'")
        .execute(&db.pool)
        .await
        .unwrap();
    let verify = RebuildOptions {
        verify: true,
        ..Default::default()
    };
    let check = projections::rebuild(&db.pool, totals.as_ref(), &verify, &|_, _| {})
        .await
        .unwrap();
    // s1 differs (one row each side), s2 is missing from live (one row).
    assert_eq!(check.difference_count, 3, "{:?}", check.differences);
    assert!(
        check
            .differences
            .iter()
            .any(|d| d.only_in == "live" && d.row["stream_id"] == "project:s1")
    );
    assert!(
        check
            .differences
            .iter()
            .any(|d| d.only_in == "rebuilt" && d.row["stream_id"] == "project:s2")
    );
    // Verify changed nothing live.
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM totals")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(live, 2);
}

/// [`Totals`] restricted to some stream categories.
struct Only(Arc<Totals>, &'static [&'static str]);

impl Projection for Only {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn tables(&self) -> &'static [TableDef] {
        self.0.tables()
    }
    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(self.1)
    }
    fn apply<'a>(&'a self, batch: &'a mut Batch<'_>, events: &'a [RecordedEvent]) -> Applied<'a> {
        self.0.apply(batch, events)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_folds_only_the_streams_it_follows_and_waits_skip_it_for_the_rest() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let only: Arc<dyn Projection> = Arc::new(Only(Arc::new(Totals::default()), &["user"]));
    projections::install(&db.pool, std::slice::from_ref(&only))
        .await
        .unwrap();
    let (task, cancel) = spawn_runtime(&db.pool, vec![only.clone()]);
    // The totals once the checkpoint has passed every event in the log.
    let caught_up = async || {
        projections::wait_for(&db.pool, &["totals"], head(&log).await, WAIT)
            .await
            .unwrap();
        read_totals(&db.pool).await
    };
    append(&log, "a", json!({"n": 1})).await;
    append_to(&log, "user", "b", json!({"n": 2})).await;
    // The checkpoint passed both events; only the followed stream was folded.
    assert_eq!(caught_up().await, vec![("user:b".to_owned(), 2, 1)]);
    // Caught up, a runner moves past events it does not follow without a batch: the
    // checkpoint reaches them, and they are not counted as applied.
    let applied_before = events_applied(&db.pool, "totals").await;
    for n in 3..6 {
        append(&log, "c", json!({"n": n})).await;
    }
    assert_eq!(caught_up().await, vec![("user:b".to_owned(), 2, 1)]);
    assert_eq!(events_applied(&db.pool, "totals").await, applied_before);
    // A followed event after them is folded as before.
    append_to(&log, "user", "b", json!({"n": 4})).await;
    assert_eq!(caught_up().await, vec![("user:b".to_owned(), 6, 2)]);
    assert!(events_applied(&db.pool, "totals").await > applied_before);
    cancel.cancel();
    task.await.unwrap();

    // A command waits only for the read models that fold its stream.
    let names = [
        projections::speckle::NAME,
        projections::webhooks::NAME,
        projections::mail::NAME,
        "unknown",
    ];
    assert_eq!(
        projections::following(&names, "project:abc"),
        [
            projections::speckle::NAME,
            projections::webhooks::NAME,
            "unknown"
        ]
    );
    assert_eq!(
        projections::following(&names, "user:abc"),
        [
            projections::speckle::NAME,
            projections::mail::NAME,
            "unknown"
        ]
    );
    assert_eq!(
        projections::following(&names, "ingestion:abc"),
        [projections::speckle::NAME, "unknown"]
    );
    // Nor for one that no command waits for, which its runner folds in batches.
    assert_eq!(
        projections::following(&["stream_heads", projections::speckle::NAME], "project:abc"),
        [projections::speckle::NAME]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_moved_checkpoint_is_announced_to_read_your_writes_waiters() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let totals = Arc::new(Totals::default());
    install(&db, &totals).await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&db.pool)
        .await
        .unwrap();
    listener
        .listen(schema::wakeups::CHECKPOINTS_CHANNEL)
        .await
        .unwrap();
    let (task, cancel) = spawn_runtime(&db.pool, vec![totals.clone()]);
    let written = append(&log, "a", json!({"n": 5})).await;
    // Notifications of other tests' schemas share the channel; ours names our schema.
    let note = tokio::time::timeout(WAIT, async {
        loop {
            let note = listener.recv().await.unwrap();
            // `<schema> <origin>`: this process's waiters know it already and skip it.
            if note.payload() == format!("{} {}", db.schema, schema::wakeups::origin()) {
                return note;
            }
        }
    })
    .await
    .expect("the projector announces the checkpoint it moved");
    assert_eq!(note.channel(), schema::wakeups::CHECKPOINTS_CHANNEL);
    // The announcement comes with the commit: the checkpoint is there for whoever wakes.
    assert!(
        projections::checkpoint_of(&db.pool, "totals")
            .await
            .unwrap()
            >= written.last
    );
    // A waiter woken by it answers for the write.
    projections::Waiter::default()
        .wait_for(&db.pool, &["totals"], written.last, WAIT)
        .await
        .unwrap();
    assert_eq!(read_totals(&db.pool).await, truth(&db.pool).await);
    cancel.cancel();
    task.await.unwrap();
}

/// A runner that never polls (an hour between polls) is driven by wake-ups alone, and by
/// its own look at the horizon: events held back by an open transaction are folded once it
/// ends, though nothing announces that end. Checked for a projection that folds every event
/// and for one that follows some categories (and moves past the others without a batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_never_polls_follows_wake_ups_and_events_held_back_by_an_open_transaction() {
    for follows in [None, Some(&["project"][..])] {
        let db = TestDb::new().await;
        let log = EventLog::new(db.pool.clone());
        let totals = Arc::new(Totals::default());
        let projection: Arc<dyn Projection> = match follows {
            None => totals.clone(),
            Some(categories) => Arc::new(Only(totals.clone(), categories)),
        };
        projections::install(&db.pool, std::slice::from_ref(&projection))
            .await
            .unwrap();
        let cancel = CancellationToken::new();
        let runtime = ProjectorRuntime::new(
            db.pool.clone(),
            vec![projection],
            RuntimeOptions {
                poll_interval: Duration::from_secs(3600),
                ..fast()
            },
        );
        let token = cancel.clone();
        let task = tokio::spawn(async move { runtime.run(token).await });
        let caught_up = async || {
            projections::wait_for(&db.pool, &["totals"], head(&log).await, WAIT)
                .await
                .unwrap_or_else(|e| panic!("follows {follows:?}: {e}"));
        };
        append(&log, "a", json!({"n": 1})).await;
        caught_up().await;
        append_to(&log, "user", "u", json!({"n": 7})).await;
        caught_up().await;
        // An open transaction that began before the next append holds it past the horizon.
        let mut blocker = db.pool.begin().await.unwrap();
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *blocker)
            .await
            .unwrap();
        let held = append(&log, "a", json!({"n": 2})).await;
        let waited =
            projections::wait_for(&db.pool, &["totals"], held.last, Duration::from_millis(200))
                .await;
        assert!(
            matches!(waited, Err(projections::ProjectionLag::Timeout { .. })),
            "follows {follows:?}: folded past an open transaction: {waited:?}"
        );
        // Its end is announced by nothing; the runner's look at the horizon finds the event.
        blocker.commit().await.unwrap();
        caught_up().await;
        let mut expected = truth(&db.pool).await;
        if follows.is_some() {
            expected.retain(|(stream, _, _)| stream.starts_with("project:"));
        }
        assert_eq!(read_totals(&db.pool).await, expected, "follows {follows:?}");
        cancel.cancel();
        task.await.unwrap();
    }
}

//! Reaction jobs: claimed with SKIP LOCKED under a lease, retried with backoff, every
//! attempt recorded, a dead worker's job taken over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use schema::jobs::{ClaimedJob, NewJob};
use sqlx::PgPool;
use tests::TestDb;
use tokio_util::sync::CancellationToken;
use workers::{JobError, JobHandler, JobRunner, RunnerOptions};

/// Writes one effect row per job (idempotently); can hang, or fail the first `fail_first` runs.
struct Echo {
    pool: PgPool,
    hang: bool,
    fail_first: usize,
    permanent: bool,
    runs: AtomicUsize,
}

impl Echo {
    fn new(pool: &PgPool) -> Self {
        Self {
            pool: pool.clone(),
            hang: false,
            fail_first: 0,
            permanent: false,
            runs: AtomicUsize::new(0),
        }
    }
}

impl JobHandler for Echo {
    fn kind(&self) -> &'static str {
        "test.echo"
    }
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> BoxFuture<'a, Result<(), JobError>> {
        async move {
            let run = self.runs.fetch_add(1, Ordering::SeqCst);
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.permanent {
                return Err(JobError::permanent("malformed"));
            }
            if run < self.fail_first {
                return Err(JobError::retry(format!("flaky {run}")));
            }
            sqlx::query("INSERT INTO effects (job_id) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(job.id)
                .execute(&self.pool)
                .await
                .map_err(|e| JobError::retry(e.to_string()))?;
            Ok(())
        }
        .boxed()
    }
}

/// A live worker's options. Its lease is far longer than any pause a loaded machine makes, so
/// no test here sees a lease run out under a live worker by accident; the tests that need a
/// lease to run out (a dead worker's) or to be renewed (a long job) say so with their own.
fn options(worker: &str) -> RunnerOptions {
    RunnerOptions {
        worker_id: worker.into(),
        concurrency: 4,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(30),
        backoff_base: Duration::from_millis(40),
        backoff_max: Duration::from_millis(200),
        drain: Duration::from_secs(10),
    }
}

async fn setup() -> TestDb {
    let db = TestDb::new().await;
    sqlx::query("CREATE TABLE effects (job_id bigint PRIMARY KEY)")
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

async fn enqueue(pool: &PgPool, key: &str, max_attempts: i32) -> i64 {
    let mut conn = pool.acquire().await.unwrap();
    let job = NewJob {
        kind: "test.echo".into(),
        payload: serde_json::json!({"key": key}),
        dedupe_key: Some(key.into()),
        max_attempts,
        source_position: None,
        ordering_key: None,
        run_at: None,
    };
    assert!(schema::jobs::enqueue_on(&mut conn, &job).await.unwrap());
    assert!(
        !schema::jobs::enqueue_on(&mut conn, &job).await.unwrap(),
        "dedupe key reused"
    );
    sqlx::query_scalar("SELECT id FROM jobs WHERE dedupe_key = $1")
        .bind(key)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn spawn(
    pool: &PgPool,
    handler: Echo,
    worker: &str,
) -> (tokio::task::JoinHandle<()>, CancellationToken) {
    let cancel = CancellationToken::new();
    let runner = JobRunner::new(pool.clone(), vec![Arc::new(handler)], options(worker));
    let token = cancel.clone();
    (tokio::spawn(async move { runner.run(token).await }), cancel)
}

async fn wait_status(pool: &PgPool, id: i64, status: &str) {
    for _ in 0..500 {
        let now: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
        if now == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never reached {status}");
}

async fn attempts(pool: &PgPool, id: i64) -> Vec<(i32, String, Option<String>)> {
    sqlx::query_as(
        "SELECT attempt, worker, outcome FROM job_attempts WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_dies_is_retried_by_another() {
    let db = setup().await;
    let id = enqueue(&db.pool, "dies", 5).await;
    // The dying worker's lease is short: it must run out for the job to be retried.
    let dying = tokio::spawn(
        JobRunner::new(
            db.pool.clone(),
            vec![Arc::new(Echo {
                hang: true,
                ..Echo::new(&db.pool)
            })],
            RunnerOptions {
                lease: Duration::from_millis(500),
                ..options("dying")
            },
        )
        .run(CancellationToken::new()),
    );
    wait_status(&db.pool, id, "running").await;
    dying.abort();
    let _ = dying.await;
    let (healthy, cancel) = spawn(&db.pool, Echo::new(&db.pool), "healthy");
    wait_status(&db.pool, id, "done").await;
    let tried = attempts(&db.pool, id).await;
    assert_eq!(
        tried,
        vec![
            (1, "dying".to_owned(), Some("abandoned".to_owned())),
            (2, "healthy".to_owned(), Some("succeeded".to_owned()))
        ]
    );
    let effects: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(effects, 1);
    cancel.cancel();
    healthy.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_hands_back_the_job_it_cannot_finish_in_time() {
    let db = setup().await;
    let id = enqueue(&db.pool, "handed back", 5).await;
    // A lease of a minute: without the hand-back, the job would wait that long for another
    // worker.
    let stopping_options = RunnerOptions {
        lease: Duration::from_secs(60),
        drain: Duration::from_millis(300),
        ..options("stopping")
    };
    let handler = Echo {
        hang: true,
        ..Echo::new(&db.pool)
    };
    let runner = JobRunner::new(db.pool.clone(), vec![Arc::new(handler)], stopping_options);
    let cancel = CancellationToken::new();
    let stopping = tokio::spawn(runner.run(cancel.clone()));
    wait_status(&db.pool, id, "running").await;
    let asked = std::time::Instant::now();
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the runner stops once its drain is over")
        .unwrap();
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "the job had its drain to finish first"
    );
    // Due again at once, its attempt recorded as given back.
    let (status, locked_by): (String, Option<String>) =
        sqlx::query_as("SELECT status, locked_by FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), locked_by), ("pending", None));
    let why: Option<String> =
        sqlx::query_scalar("SELECT error FROM job_attempts WHERE job_id = $1 AND attempt = 1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(why.unwrap_or_default().contains("handed back"));
    // Another worker finishes it now, well within the stopped worker's lease.
    let (healthy, cancel) = spawn(&db.pool, Echo::new(&db.pool), "healthy");
    wait_status(&db.pool, id, "done").await;
    assert!(asked.elapsed() < Duration::from_secs(60));
    assert_eq!(
        attempts(&db.pool, id).await,
        vec![
            (1, "stopping".to_owned(), Some("abandoned".to_owned())),
            (2, "healthy".to_owned(), Some("succeeded".to_owned()))
        ]
    );
    cancel.cancel();
    healthy.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_keeps_its_lease_and_runs_once() {
    let db = setup().await;
    let id = enqueue(&db.pool, "long", 5).await;
    struct Slow(PgPool);
    impl JobHandler for Slow {
        fn kind(&self) -> &'static str {
            "test.echo"
        }
        fn run<'a>(&'a self, job: &'a ClaimedJob) -> BoxFuture<'a, Result<(), JobError>> {
            async move {
                // Run until the job has outlived the lease it was claimed with: only renewals
                // keep it from the other worker meanwhile.
                let first_lease_end: time::OffsetDateTime =
                    sqlx::query_scalar("SELECT locked_until FROM jobs WHERE id = $1")
                        .bind(job.id)
                        .fetch_one(&self.0)
                        .await
                        .unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                loop {
                    let (now, locked_until): (time::OffsetDateTime, time::OffsetDateTime) =
                        sqlx::query_as("SELECT now(), locked_until FROM jobs WHERE id = $1")
                            .bind(job.id)
                            .fetch_one(&self.0)
                            .await
                            .unwrap();
                    if now > first_lease_end && locked_until > now {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the job never outlived its first lease"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                sqlx::query("INSERT INTO effects (job_id) VALUES ($1)")
                    .bind(job.id)
                    .execute(&self.0)
                    .await
                    .unwrap();
                Ok(())
            }
            .boxed()
        }
    }
    let c1 = CancellationToken::new();
    let c2 = CancellationToken::new();
    // A short lease renewed every third of it (0.5 s): a renewal up to 1 s late keeps it.
    let short = |w: &str| RunnerOptions {
        lease: Duration::from_millis(1500),
        ..options(w)
    };
    let r1 = JobRunner::new(
        db.pool.clone(),
        vec![Arc::new(Slow(db.pool.clone()))],
        short("one"),
    );
    let r2 = JobRunner::new(
        db.pool.clone(),
        vec![Arc::new(Slow(db.pool.clone()))],
        short("two"),
    );
    let (t1, t2) = (
        tokio::spawn(r1.run(c1.clone())),
        tokio::spawn(r2.run(c2.clone())),
    );
    wait_status(&db.pool, id, "done").await;
    assert_eq!(
        attempts(&db.pool, id).await.len(),
        1,
        "the lease ran out under a live worker"
    );
    c1.cancel();
    c2.cancel();
    t1.await.unwrap();
    t2.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_with_backoff_and_every_attempt_is_recorded() {
    let db = setup().await;
    let flaky = enqueue(&db.pool, "flaky", 5).await;
    let (task, cancel) = spawn(
        &db.pool,
        Echo {
            fail_first: 2,
            ..Echo::new(&db.pool)
        },
        "w",
    );
    wait_status(&db.pool, flaky, "done").await;
    let outcomes: Vec<_> = attempts(&db.pool, flaky)
        .await
        .into_iter()
        .map(|a| a.2.unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"]);
    cancel.cancel();
    task.await.unwrap();

    let doomed = enqueue(&db.pool, "doomed", 2).await;
    let (task, cancel) = spawn(
        &db.pool,
        Echo {
            fail_first: 100,
            ..Echo::new(&db.pool)
        },
        "w",
    );
    wait_status(&db.pool, doomed, "failed").await;
    assert_eq!(
        attempts(&db.pool, doomed).await.len(),
        2,
        "stops at max_attempts"
    );
    cancel.cancel();
    task.await.unwrap();

    let malformed = enqueue(&db.pool, "malformed", 5).await;
    let (task, cancel) = spawn(
        &db.pool,
        Echo {
            permanent: true,
            ..Echo::new(&db.pool)
        },
        "w",
    );
    wait_status(&db.pool, malformed, "failed").await;
    assert_eq!(
        attempts(&db.pool, malformed).await.len(),
        1,
        "a permanent error is not retried"
    );
    let last_error: String = sqlx::query_scalar("SELECT last_error FROM jobs WHERE id = $1")
        .bind(malformed)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(last_error, "malformed");
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn competing_workers_run_each_job_once() {
    let db = setup().await;
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(enqueue(&db.pool, &format!("many{i}"), 3).await);
    }
    let runners: Vec<_> = (0..3)
        .map(|w| spawn(&db.pool, Echo::new(&db.pool), &format!("w{w}")))
        .collect();
    for id in &ids {
        wait_status(&db.pool, *id, "done").await;
    }
    let total_attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM job_attempts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(total_attempts, 60);
    for (task, cancel) in runners {
        cancel.cancel();
        task.await.unwrap();
    }
}

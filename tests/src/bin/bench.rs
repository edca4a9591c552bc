//! Benchmarks that print figures beside a reference measured in the same run.
//!
//! `bench append`: events/s appended with 1, 8 and 32 concurrent writers against plain
//! single-row INSERT transactions into an equivalent table; then `read_all` events/s over 1M
//! events. `bench race`: the late-commit soak (1,000 rounds per writer).
//!
//! The database comes from `--database-url`, else `STRATA_ADMIN_DATABASE_URL`, else
//! `STRATA_TEST_DATABASE_URL`; the bench works in a schema of its own and drops it at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use domain::{EventMetadata, NewEvent, StreamId};
use schema::{AppendLimits, AppendRequest, EventLog, ExpectedVersion, LogCursor};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

#[derive(Parser)]
struct Args {
    /// PostgreSQL URL of a role that may create schemas.
    #[arg(long)]
    database_url: Option<String>,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Append throughput vs plain INSERTs, then read_all throughput.
    Append {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Events loaded for the read_all measurement.
        #[arg(long, default_value_t = 1_000_000)]
        read_events: u64,
    },
    /// The late-commit race soak.
    Race {
        /// Concurrent writers.
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Transactions per writer.
        #[arg(long, default_value_t = 1000)]
        rounds: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tests::init();
    let args = Args::parse();
    let url = args
        .database_url
        .or_else(|| std::env::var("STRATA_ADMIN_DATABASE_URL").ok())
        .or_else(|| std::env::var("STRATA_TEST_DATABASE_URL").ok())
        .context(
            "give --database-url or set STRATA_ADMIN_DATABASE_URL (deploy/dev up writes it)",
        )?;
    let schema_name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema_name}")))
        .execute(&admin)
        .await?;
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema_name}");
    let pool = PgPoolOptions::new()
        .max_connections(40)
        .connect(&scoped)
        .await?;
    schema::migrate(&pool).await?;
    print_settings(&pool).await?;
    let result = match args.bench {
        Bench::Append {
            seconds,
            read_events,
        } => append_bench(&pool, seconds, read_events).await,
        Bench::Race { writers, rounds } => race_bench(&pool, writers, rounds).await,
    };
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA {schema_name} CASCADE"
    )))
    .execute(&admin)
    .await?;
    result
}

async fn print_settings(pool: &PgPool) -> anyhow::Result<()> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN \
         ('fsync','synchronous_commit','full_page_writes','shared_buffers','server_version')",
    )
    .fetch_all(pool)
    .await?;
    let shown: Vec<String> = rows.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("postgres: {}", shown.join(" "));
    Ok(())
}

async fn append_bench(pool: &PgPool, seconds: u64, read_events: u64) -> anyhow::Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE reference_events (
            position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            stream_id text NOT NULL, stream_version bigint NOT NULL, event_type text NOT NULL,
            schema_version integer NOT NULL, payload jsonb NOT NULL, metadata jsonb NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(), hash bytea NOT NULL,
            UNIQUE (stream_id, stream_version))",
    )
    .execute(pool)
    .await?;
    let log = EventLog::new(pool.clone());
    let window = Duration::from_secs(seconds);
    println!(
        "\nappend: {seconds} s per measurement, one 1-event append (or INSERT) per transaction"
    );
    println!(
        "{:>8} {:>14} {:>16} {:>8}",
        "writers", "strata ev/s", "reference ev/s", "ratio"
    );
    for writers in [1usize, 8, 32] {
        let ref_pool = pool.clone();
        let reference = run_writers(writers, window, move |w, i| {
            let pool = ref_pool.clone();
            async move {
                sqlx::query(
                    "INSERT INTO reference_events (stream_id, stream_version, event_type, \
                     schema_version, payload, metadata, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(format!("ref:w{writers}_{w}"))
                .bind(i as i64 + 1)
                .bind("Counted")
                .bind(1i32)
                .bind(json!({"n": i, "writer": w}))
                .bind(json!({"actorUserId": "bench"}))
                .bind(vec![7u8; 32])
                .execute(&pool)
                .await?;
                anyhow::Ok(())
            }
        })
        .await?;
        let bench_log = log.clone();
        let strata = run_writers(writers, window, move |w, i| {
            let log = bench_log.clone();
            async move {
                let request = AppendRequest {
                    stream: StreamId::new("bench", &format!("w{writers}_{w}"))?,
                    expected: ExpectedVersion::Exact(i),
                    events: vec![NewEvent {
                        event_type: "Counted".into(),
                        schema_version: 1,
                        payload: json!({"n": i, "writer": w}),
                    }],
                    metadata: EventMetadata {
                        actor_user_id: Some("bench".into()),
                        ..Default::default()
                    },
                    command_id: None,
                };
                log.append(&request).await?;
                anyhow::Ok(())
            }
        })
        .await?;
        println!(
            "{writers:>8} {strata:>14.0} {reference:>16.0} {:>7.0}%",
            100.0 * strata / reference
        );
    }

    println!("\nread_all: loading {read_events} events in 1000-event appends");
    let loader = EventLog::new(pool.clone()).with_limits(AppendLimits {
        max_events: 1000,
        ..Default::default()
    });
    let per_writer = read_events.div_ceil(1000).div_ceil(8);
    let load_start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let loader = loader.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..per_writer {
                let request = AppendRequest {
                    stream: StreamId::new("load", &format!("w{w}"))?,
                    expected: ExpectedVersion::Exact(b * 1000),
                    events: (0..1000)
                        .map(|i| NewEvent {
                            event_type: "Loaded".into(),
                            schema_version: 1,
                            payload: json!({"n": i, "batch": b, "name": "a model name", "flag": true}),
                        })
                        .collect(),
                    metadata: EventMetadata::default(),
                    command_id: None,
                };
                loader.append(&request).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    println!(
        "loaded {total} events in {:.1} s ({:.0} events/s through append)",
        load_start.elapsed().as_secs_f64(),
        total as f64 / load_start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let mut cursor = LogCursor::START;
    let mut read = 0u64;
    loop {
        let batch = log.read_all(cursor, 10_000).await?;
        let Some(last) = batch.last() else { break };
        cursor = last.cursor;
        read += batch.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "read_all: {read} events in {secs:.2} s = {:.0} events/s (pages of 10,000, decoded)",
        read as f64 / secs
    );
    Ok(())
}

/// Runs `writers` loops of `op(writer, iteration)` for `window`; returns operations per second.
async fn run_writers<F, Fut>(writers: usize, window: Duration, op: F) -> anyhow::Result<f64>
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let op = op.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while start.elapsed() < window {
                op(w, i).await?;
                i += 1;
            }
            done.fetch_add(i, Ordering::Relaxed);
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn race_bench(pool: &PgPool, writers: usize, rounds: usize) -> anyhow::Result<()> {
    println!(
        "\nrace: {writers} writers x {rounds} transactions (30% held open 1-25 ms, 10% rolled back)"
    );
    let start = Instant::now();
    let outcome = tests::race::late_commit_race(pool, writers, rounds).await?;
    println!("{outcome:#?}");
    println!(
        "took {:.1} s; exact: {}",
        start.elapsed().as_secs_f64(),
        outcome.is_exact()
    );
    anyhow::ensure!(
        outcome.is_exact(),
        "the reader did not see every committed event exactly once"
    );
    Ok(())
}

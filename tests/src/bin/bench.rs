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
    /// Projections: rebuild events/s over N events, live lag at 100 and 1,000 events/s,
    /// and the read-your-writes wait.
    Projections {
        /// Events folded by the rebuild.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Seconds per live-lag rate.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// GraphQL latency: one project with 10 models x 5 versions at 1, 16 and 64 concurrent
    /// clients, and an authenticated `{activeUser{id}}`, beside `GET /api/ping` (the HTTP floor).
    Graphql {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
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
        Bench::Graphql { seconds } => graphql_bench(&pool, &scoped, seconds).await,
        Bench::Projections { events, seconds } => projections_bench(&pool, events, seconds).await,
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
            transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
            stream_id text NOT NULL, stream_version bigint NOT NULL, event_type text NOT NULL,
            schema_version integer NOT NULL, payload jsonb NOT NULL, metadata jsonb NOT NULL,
            command_id uuid, recorded_at timestamptz NOT NULL DEFAULT now(), hash bytea NOT NULL,
            UNIQUE (stream_id, stream_version));
         CREATE INDEX ON reference_events (transaction_id, position);",
    )
    .execute(pool)
    .await?;
    let log = EventLog::new(pool.clone());
    let window = Duration::from_secs(seconds);
    println!(
        "\nappend: {seconds} s per measurement, one 1-event append per transaction; reference: \
         single-row INSERTs into a table with the same columns and indexes"
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

    load_events(pool, read_events).await?;
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

/// Appends about `count` events in 1000-event appends from 8 writers; returns the log's size.
async fn load_events(pool: &PgPool, count: u64) -> anyhow::Result<i64> {
    println!("\nloading {count} events in 1000-event appends");
    let loader = EventLog::new(pool.clone()).with_limits(AppendLimits {
        max_events: 1000,
        ..Default::default()
    });
    let per_writer = count.div_ceil(1000).div_ceil(8);
    let load_start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let loader = loader.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..per_writer {
                let request = AppendRequest {
                    stream: StreamId::new("load", &format!("w{w}_{}", b % 50))?,
                    expected: ExpectedVersion::Any,
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
    Ok(total)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn projections_bench(pool: &PgPool, events: u64, seconds: u64) -> anyhow::Result<()> {
    projections::install(pool, &projections::registry()).await?;
    let total = load_events(pool, events).await?;
    let log = EventLog::new(pool.clone());

    // Reference: reading the same events with no projection at all.
    let start = Instant::now();
    let mut cursor = LogCursor::START;
    loop {
        let batch = log.read_all(cursor, 10_000).await?;
        let Some(last) = batch.last() else { break };
        cursor = last.cursor;
    }
    let read_rate = total as f64 / start.elapsed().as_secs_f64();

    let heads = projections::streams::StreamHeads;
    let report = projections::rebuild(
        pool,
        &heads,
        &projections::RebuildOptions::default(),
        &|_, _| {},
    )
    .await?;
    println!("\nrebuild stream_heads over {} events:", report.events);
    println!(
        "  fold {:.0} events/s (whole rebuild incl. indexes and swap {:.2} s); reference read_all alone {:.0} events/s; ratio {:.0}%",
        report.events_per_second,
        report.seconds,
        read_rate,
        100.0 * report.events_per_second / read_rate
    );

    // Live lag: a runtime follows while a writer appends at a fixed rate.
    let cancel = tokio_util::sync::CancellationToken::new();
    let runtime = projections::ProjectorRuntime::new(
        pool.clone(),
        vec![Arc::new(projections::streams::StreamHeads)],
        projections::RuntimeOptions::default(),
    );
    let running = tokio::spawn(runtime.run(cancel.clone()));
    let head = log.readable_head().await?;
    projections::wait_for(pool, &["stream_heads"], head, Duration::from_secs(120)).await?;
    println!(
        "\nlive lag (append returned -> checkpoint passed it; default options: batch 500, NOTIFY + 500 ms poll):"
    );
    for rate in [100u64, 1000] {
        let lags = live_lag(pool, &log, rate, Duration::from_secs(seconds)).await?;
        println!(
            "  {rate:>5} events/s: n={} p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            lags.len(),
            ms(percentile(&lags, 0.5)),
            ms(percentile(&lags, 0.99)),
            ms(lags.last().copied().unwrap_or_default())
        );
    }

    // Read-your-writes: append, then wait for the projection to pass it.
    let mut waits = Vec::new();
    for i in 0..500 {
        let written = log
            .append(&AppendRequest {
                stream: StreamId::new("ryw", "one")?,
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    event_type: "Counted".into(),
                    schema_version: 1,
                    payload: json!({"n": i}),
                }],
                metadata: EventMetadata::default(),
                command_id: None,
            })
            .await?;
        let start = Instant::now();
        projections::wait_for(
            pool,
            &["stream_heads"],
            written.last,
            Duration::from_secs(5),
        )
        .await?;
        waits.push(start.elapsed());
    }
    waits.sort();
    println!(
        "\nread-your-writes wait (500 sequential appends): p50 {:.2} ms  p99 {:.2} ms",
        ms(percentile(&waits, 0.5)),
        ms(percentile(&waits, 0.99))
    );
    cancel.cancel();
    running.await?;
    Ok(())
}

async fn live_lag(
    pool: &PgPool,
    log: &EventLog,
    rate: u64,
    window: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(LogCursor, Instant)>();
    let writer = {
        let log = log.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let start = Instant::now();
            let mut i = 0u64;
            while start.elapsed() < window {
                tick.tick().await;
                let written = log
                    .append(&AppendRequest {
                        stream: StreamId::new("lag", &format!("s{}", i % 16))?,
                        expected: ExpectedVersion::Any,
                        events: vec![NewEvent {
                            event_type: "Counted".into(),
                            schema_version: 1,
                            payload: json!({"n": i}),
                        }],
                        metadata: EventMetadata::default(),
                        command_id: None,
                    })
                    .await?;
                let _ = tx.send((written.last, Instant::now()));
                i += 1;
            }
            anyhow::Ok(())
        })
    };
    let mut pending: std::collections::VecDeque<(LogCursor, Instant)> = Default::default();
    let mut lags = Vec::new();
    let mut writer_done = false;
    loop {
        while let Ok(item) = rx.try_recv() {
            pending.push_back(item);
        }
        if writer.is_finished() {
            writer_done = true;
        }
        if pending.is_empty() && writer_done && rx.is_empty() {
            break;
        }
        let (xid, position): (String, i64) = sqlx::query_as(
            "SELECT transaction_id::text, position FROM projection_checkpoints WHERE projection = 'stream_heads'",
        )
        .fetch_one(pool)
        .await?;
        let checkpoint = LogCursor {
            transaction_id: xid.parse()?,
            position,
        };
        let now = Instant::now();
        while pending.front().is_some_and(|(c, _)| *c <= checkpoint) {
            if let Some((_, at)) = pending.pop_front() {
                lags.push(now.saturating_duration_since(at));
            }
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    writer.await??;
    lags.sort();
    Ok(lags)
}

async fn graphql_bench(pool: &PgPool, scoped_url: &str, seconds: u64) -> anyhow::Result<()> {
    projections::install(pool, &projections::registry()).await?;
    let redis = std::env::var("STRATA_REDIS_URL")
        .or_else(|_| std::env::var("STRATA_TEST_REDIS_URL"))
        .context("set STRATA_REDIS_URL (deploy/dev up writes it)")?;
    let settings = command_service::config::Settings {
        port: 0,
        database_url: Some(command_service::config::Secret::new(scoped_url)),
        redis_url: Some(command_service::config::Secret::new(redis)),
        token_pepper: Some(command_service::config::Secret::new(
            "bench-pepper-bench-pepper-bench-pepper-00",
        )),
        database_max_connections: 40,
        ..Default::default()
    };
    let app = tests::TestApp::spawn(settings).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let runtime = projections::ProjectorRuntime::new(
        pool.clone(),
        projections::registry(),
        projections::RuntimeOptions::default(),
    );
    let running = tokio::spawn(runtime.run(cancel.clone()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = app.base_url.clone();
    let res = http
        .post(format!("{base}/auth/local/register?challenge=bench"))
        .json(&json!({"email": "bench@example.com", "password": "bench password", "name": "Bench"}))
        .send()
        .await?;
    let location = res
        .headers()
        .get("location")
        .context("no redirect")?
        .to_str()?
        .to_owned();
    let code = location
        .split("access_code=")
        .nth(1)
        .and_then(|c| c.split('&').next())
        .context("no code")?;
    let tokens: serde_json::Value = http
        .post(format!("{base}/auth/token"))
        .json(&json!({"appId": "spklwebapp", "appSecret": "spklwebapp", "accessCode": code, "challenge": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let token = tokens["token"].as_str().context("no token")?.to_owned();
    let gql = |query: String, variables: serde_json::Value| {
        let http = http.clone();
        let base = base.clone();
        let token = token.clone();
        async move {
            let body: serde_json::Value = http
                .post(format!("{base}/graphql"))
                .bearer_auth(&token)
                .json(&json!({"query": query, "variables": variables}))
                .send()
                .await?
                .json()
                .await?;
            anyhow::ensure!(body.get("errors").is_none(), "GraphQL errors: {body}");
            anyhow::Ok(body)
        }
    };
    let project = gql(
        "mutation { projectMutations { create(input: {name: \"bench\"}) { id } } }".into(),
        json!({}),
    )
    .await?;
    let pid = project["data"]["projectMutations"]["create"]["id"]
        .as_str()
        .context("no project")?
        .to_owned();
    for m in 0..10 {
        let model = gql(
            "mutation($p: String!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }".into(),
            json!({"p": pid, "n": format!("model {m}")}),
        )
        .await?;
        let mid = model["data"]["modelMutations"]["create"]["id"]
            .as_str()
            .context("no model")?
            .to_owned();
        for v in 0..5 {
            gql(
                "mutation($p: String!, $m: String!, $msg: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: \"0123456789abcdef0123456789abcdef\", message: $msg}) { id } } }".into(),
                json!({"p": pid, "m": mid, "msg": format!("v{v}")}),
            )
            .await?;
        }
    }
    let project_query = "query($id: String!) { project(id: $id) { id name role models(limit: 10) { totalCount items { id name versions(limit: 5) { totalCount items { id message referencedObject createdAt authorUser { id name } } } } } } }";
    println!("\ngraphql: {seconds} s per measurement; every response checked for errors");
    println!(
        "{:>8} {:>28} {:>10} {:>10} {:>10}",
        "clients", "request", "req/s", "p50 ms", "p99 ms"
    );
    for clients in [1usize, 16, 64] {
        for (label, kind) in [
            ("GET /api/ping (floor)", 0u8),
            ("{activeUser{id}}", 1),
            ("project 10x5", 2),
        ] {
            let window = Duration::from_secs(seconds);
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let http = http.clone();
                let base = base.clone();
                let token = token.clone();
                let pid = pid.clone();
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while start.elapsed() < window {
                        let t = Instant::now();
                        match kind {
                            0 => {
                                let text = http
                                    .get(format!("{base}/api/ping"))
                                    .send()
                                    .await?
                                    .text()
                                    .await?;
                                anyhow::ensure!(text == "pong", "ping answered {text}");
                            }
                            _ => {
                                let body = if kind == 1 {
                                    json!({"query": "{activeUser{id}}"})
                                } else {
                                    json!({"query": project_query, "variables": {"id": pid}})
                                };
                                let res: serde_json::Value = http
                                    .post(format!("{base}/graphql"))
                                    .bearer_auth(&token)
                                    .json(&body)
                                    .send()
                                    .await?
                                    .json()
                                    .await?;
                                anyhow::ensure!(
                                    res.get("errors").is_none() && res["data"].is_object(),
                                    "bad response {res}"
                                );
                            }
                        }
                        latencies.push(t.elapsed());
                    }
                    anyhow::Ok(latencies)
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            let rate = all.len() as f64 / start.elapsed().as_secs_f64();
            all.sort();
            println!(
                "{clients:>8} {label:>28} {rate:>10.0} {:>10.2} {:>10.2}",
                ms(percentile(&all, 0.5)),
                ms(percentile(&all, 0.99))
            );
        }
    }
    cancel.cancel();
    running.await?;
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

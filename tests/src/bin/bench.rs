//! Benchmarks that print figures beside a reference measured in the same run.
//!
//! `bench audit`: as-of replays of a 10,000-event project beside a current-state read; export
//! and offline verification of a 1M-event log beside the online chain check.
//! `bench objects`: server ingest of gzip batches beside a raw COPY of the same rows; download.
//! `bench pages`: the web app's projects page and a 50-model project page beside `/api/ping`.
//! `bench subscriptions`: mutation-to-message latency with 1,000 connected subscribers.
//! `bench webhooks`: delivery throughput and append-to-receipt latency beside plain POSTs.
//! `bench append`: events/s appended with 1, 8 and 32 concurrent writers against plain
//! single-row INSERT transactions into an equivalent table; then `read_all` events/s over 1M
//! events. `bench race`: the late-commit soak (1,000 rounds per writer).
//! `bench faults`: the fault suite (`tests::faults`) with 30-second outages (60 s for S3 and
//! SMTP) against the release `strata` beside this binary; prints the fault table.
//! `bench first-command`: the first command on a big project in a fresh process, from the stored
//! snapshot beside the fold of the whole stream.
//! `bench soak`: the same load paced to a moderate rate for 30 minutes with nothing broken,
//! sampled every minute (memory of each process, connections, job queue, projection lag,
//! p50/p99), the first third of the samples being the reference the rest are held to.
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
    /// How sessions plan prepared statements, the bench's and the API's alike
    /// (`STRATA_DATABASE_PLAN_CACHE_MODE`): `auto` measures what PostgreSQL does by itself.
    #[arg(long, default_value_t = schema::session::PlanCacheMode::default())]
    plan_cache_mode: schema::session::PlanCacheMode,
    #[command(subcommand)]
    bench: Bench,
}

/// `--plan-cache-mode`, for the API a bench starts.
static PLAN_CACHE_MODE: std::sync::OnceLock<schema::session::PlanCacheMode> =
    std::sync::OnceLock::new();

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
    /// Web app pages: the projects page (20 projects) and a project page with 50 models,
    /// one client, beside `GET /api/ping` (the HTTP floor) in the same run.
    Pages {
        /// Requests per page.
        #[arg(long, default_value_t = 500)]
        requests: usize,
    },
    /// Webhooks: deliveries/s draining a backlog (one webhook, in order; ten webhooks), and
    /// latency from append to receipt at a steady rate, beside plain POSTs to the same
    /// receiver (the HTTP floor).
    Webhooks {
        /// Events in the backlog per webhook.
        #[arg(long, default_value_t = 300)]
        backlog: usize,
        /// Events in the latency run.
        #[arg(long, default_value_t = 300)]
        latency_events: usize,
    },
    /// Subscriptions: latency from a mutation's answer to each subscriber's message, with
    /// many subscribers connected over `graphql-ws`, beside the mutation's own latency.
    Subscriptions {
        /// Connected subscribers, all on one project.
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Mutations measured.
        #[arg(long, default_value_t = 20)]
        mutations: usize,
    },
    /// Objects: server-bound ingest of pre-built gzip batches (many concurrent requests)
    /// beside a raw COPY of the same rows into an equivalent table, then the download of the
    /// whole tree.
    Objects {
        /// Small objects (about 150 bytes each) detached from one root.
        #[arg(long, default_value_t = 100_000)]
        objects: usize,
        /// Objects per batch (one multipart part).
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Concurrent upload requests.
        #[arg(long, default_value_t = 8)]
        clients: usize,
    },
    /// Commands at scale: sequential model and version creates (each with read-your-writes,
    /// over HTTP) and 16 concurrent version creates on one project, in projects already holding
    /// 0, 1,000, 10,000 and 50,000 versions, beside `GET /api/ping` (the HTTP floor).
    Commands {
        /// Creates measured per kind and size.
        #[arg(long, default_value_t = 200)]
        ops: usize,
        /// Project sizes, in versions already there.
        #[arg(long, value_delimiter = ',', default_value = "0,1000,10000,50000")]
        sizes: Vec<usize>,
        /// `STRATA_COMMAND_STATE_CACHE_STREAMS` of the server (0: every command folds its
        /// project's whole stream, as before the cache).
        #[arg(long, default_value_t = 10_000)]
        state_cache_streams: usize,
    },
    /// Audit: the project as of a past position, folded from its events, in a project of
    /// `events` events (p50/p99 beside a current-state read of the same project from the read
    /// model), then export + offline verification of a log of `verify_events` events.
    Audit {
        /// Events in the project's stream.
        #[arg(long, default_value_t = 10_000)]
        events: usize,
        /// As-of reads measured.
        #[arg(long, default_value_t = 200)]
        reads: usize,
        /// Events in the log exported and verified offline.
        #[arg(long, default_value_t = 1_000_000)]
        verify_events: usize,
    },
    /// The fault suite: each fault in turn (then all at once) under a mixed load, checked
    /// afterwards; needs `strata` built beside this binary and the dev stack's S3 and SMTP
    /// (`STRATA_S3_*`, `STRATA_SMTP_*`, `STRATA_MAIL_API_URL` from `.local/strata.env`).
    Faults {
        /// Seconds PostgreSQL and Redis stay down.
        #[arg(long, default_value_t = 30)]
        outage: u64,
        /// Seconds S3 and SMTP stay down.
        #[arg(long, default_value_t = 60)]
        long_outage: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Faults to run (default: all), by name.
        #[arg(long, value_delimiter = ',')]
        only: Vec<tests::faults::Fault>,
    },
    /// The soak: moderate load for a long time, sampled; needs what `faults` needs.
    Soak {
        /// Minutes the load runs.
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// Seconds between samples.
        #[arg(long, default_value_t = 60)]
        every: u64,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Each client's rest between rounds, in milliseconds.
        #[arg(long, default_value_t = 250)]
        pause_ms: u64,
    },
    /// Resident memory one project's write-side fold (what the command bus caches) holds per
    /// model and version; no server, no database.
    Fold {
        /// Model and version creates folded.
        #[arg(long, default_value_t = 100_000)]
        rounds: usize,
    },
    /// The first command on a big project in a process that has nothing cached: from the
    /// stored snapshot (and the events after it) beside the fold of the whole stream, in the
    /// same run; and what taking and storing a snapshot costs.
    FirstCommand {
        /// Project sizes, in versions.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
        sizes: Vec<usize>,
        /// Events appended after the snapshot (as when a process starts between two).
        #[arg(long, default_value_t = 500)]
        behind: usize,
        /// Fresh processes measured per case.
        #[arg(long, default_value_t = 5)]
        runs: usize,
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
    // Sessions as the API's pool sets them up (`schema::session`), with the plan cache mode
    // `--plan-cache-mode` names (the API's default when it names none).
    let options = schema::session::options(scoped.parse()?, args.plan_cache_mode);
    PLAN_CACHE_MODE.get_or_init(|| args.plan_cache_mode);
    println!("sessions: plan_cache_mode={}", args.plan_cache_mode);
    let pool = PgPoolOptions::new()
        .max_connections(40)
        .connect_with(options)
        .await?;
    schema::migrate(&pool).await?;
    print_settings(&pool).await?;
    let result = match args.bench {
        Bench::Append {
            seconds,
            read_events,
        } => append_bench(&pool, seconds, read_events).await,
        Bench::Race { writers, rounds } => race_bench(&pool, writers, rounds).await,
        Bench::Fold { rounds } => fold_bench(rounds),
        Bench::FirstCommand {
            sizes,
            behind,
            runs,
        } => first_command_bench(&pool, &sizes, behind, runs).await,
        Bench::Faults {
            outage,
            long_outage,
            clients,
            only,
        } => faults_bench(outage, long_outage, clients, only).await,
        Bench::Soak {
            minutes,
            every,
            clients,
            pause_ms,
        } => soak_bench(minutes, every, clients, pause_ms).await,
        Bench::Audit {
            events,
            reads,
            verify_events,
        } => audit_bench(&pool, &scoped, events, reads, verify_events).await,
        Bench::Commands {
            ops,
            sizes,
            state_cache_streams,
        } => commands_bench(&pool, &scoped, ops, &sizes, state_cache_streams).await,
        Bench::Graphql { seconds } => graphql_bench(&pool, &scoped, seconds).await,
        Bench::Pages { requests } => pages_bench(&pool, &scoped, requests).await,
        Bench::Projections { events, seconds } => projections_bench(&pool, events, seconds).await,
        Bench::Subscriptions {
            subscribers,
            mutations,
        } => subscriptions_bench(&pool, &scoped, subscribers, mutations).await,
        Bench::Objects {
            objects,
            batch,
            clients,
        } => objects_bench(&pool, &scoped, objects, batch, clients).await,
        Bench::Webhooks {
            backlog,
            latency_events,
        } => webhooks_bench(&pool, backlog, latency_events).await,
    };
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA {schema_name} CASCADE"
    )))
    .execute(&admin)
    .await?;
    result
}

async fn faults_bench(
    outage: u64,
    long_outage: u64,
    clients: usize,
    only: Vec<tests::faults::Fault>,
) -> anyhow::Result<()> {
    use tests::faults::{self, Fault};
    let faults = if only.is_empty() {
        Fault::ALL.to_vec()
    } else {
        only
    };
    let base = faults::Config {
        outage: Duration::from_secs(outage),
        recover_bound: Duration::from_secs(long_outage.max(outage) + 120),
        ..suite_config(clients)?
    };
    println!(
        "\nfaults: {clients} clients; PostgreSQL and Redis down {outage} s, S3 and SMTP \
         {long_outage} s, all at once {outage} s; durable PostgreSQL of the suite's own"
    );
    // S3 and SMTP stay down longer: they run apart from the others, in runs of their own.
    let (long, short): (Vec<Fault>, Vec<Fault>) = faults
        .into_iter()
        .partition(|f| matches!(f, Fault::S3Stop | Fault::SmtpStop));
    let mut report = faults::Report::default();
    for (group, seconds) in [(short, outage), (long, long_outage)] {
        if group.is_empty() {
            continue;
        }
        let config = faults::Config {
            faults: group,
            outage: Duration::from_secs(seconds),
            ..base.clone()
        };
        let part = faults::run(&config).await;
        report.rows.extend(part.rows);
        for (p, d) in part.rebuild_differences {
            *report.rebuild_differences.entry(p).or_default() += d;
        }
    }
    println!("{}", report.table());
    anyhow::ensure!(
        report.clean(),
        "the fault suite found lost, doubled or unclear results"
    );
    Ok(())
}

/// The fault suite's settings for this machine: the release `strata` beside this binary, the
/// dev stack's S3 and SMTP (`.local/strata.env`).
fn suite_config(clients: usize) -> anyhow::Result<tests::faults::Config> {
    let env = |name: &str| {
        std::env::var(name).with_context(|| format!("{name} (load .local/strata.env)"))
    };
    let strata = std::env::current_exe()?
        .parent()
        .map(|dir| dir.join("strata"))
        .context("the bench's directory")?;
    anyhow::ensure!(
        strata.exists(),
        "{} is missing: cargo build --release -p command-service --bin strata",
        strata.display()
    );
    Ok(tests::faults::Config {
        strata,
        faults: Vec::new(),
        outage: Duration::ZERO,
        clients,
        ops_around: 40,
        hang_bound: Duration::from_secs(20),
        recover_bound: Duration::from_secs(120),
        s3: tests::faults::S3 {
            endpoint: env("STRATA_S3_ENDPOINT")?,
            access_key: env("STRATA_S3_ACCESS_KEY_ID")?,
            secret_key: env("STRATA_S3_SECRET_ACCESS_KEY")?,
            bucket: env("STRATA_S3_BUCKET").unwrap_or_else(|_| "strata".into()),
        },
        smtp: format!("{}:{}", env("STRATA_SMTP_HOST")?, env("STRATA_SMTP_PORT")?),
        mail_api: env("STRATA_MAIL_API_URL")?,
    })
}

/// Folds `rounds` model and version creates into one project, as the command bus's state cache
/// holds them, and prints the growth of this process's anonymous resident memory per round
/// beside the text those events carry (ids, name, author, root object, message).
fn fold_bench(rounds: usize) -> anyhow::Result<()> {
    use domain::policy::Visibility;
    use domain::project::evolve;
    use domain::{ProjectEvent, ProjectState};
    let rss = || tests::faults::soak::status_kib(std::process::id(), "RssAnon");
    let hex = |n: usize, width: usize| format!("{n:0width$x}");
    let project_id = hex(1, 10);
    let author_id = hex(2, 10);
    let before = rss();
    let mut state = evolve(
        ProjectState::default(),
        &ProjectEvent::ProjectCreated {
            project_id: project_id.clone(),
            name: "soak".into(),
            description: String::new(),
            visibility: Visibility::Private,
            allow_public_comments: false,
            owner_id: author_id.clone(),
        },
    );
    let mut text = 0;
    for round in 0..rounds {
        let model_id = hex(0x10_0000_0000 + round, 10);
        let created = ProjectEvent::ModelCreated {
            project_id: project_id.clone(),
            model_id: model_id.clone(),
            name: format!("soak/model {round}"),
            description: None,
            author_id: author_id.clone(),
        };
        let version = ProjectEvent::VersionCreated {
            project_id: project_id.clone(),
            version_id: hex(0x20_0000_0000 + round, 10),
            model_id,
            object_id: hex(round, 32),
            message: Some("soak".into()),
            source_application: Some("strata-bench".into()),
            total_children_count: 0,
            parents: Vec::new(),
            author_id: author_id.clone(),
        };
        for event in [&created, &version] {
            text += serde_json::to_string(event)?.len();
            state = evolve(state, event);
        }
    }
    let after = rss();
    let models = state.project().map_or(0, |p| p.models.len());
    anyhow::ensure!(models == rounds, "folded {models} models of {rounds}");
    let per_round = (after.saturating_sub(before) * 1024) as f64 / rounds as f64;
    // What the command bus's state cache counts this state as, against its byte budget.
    let estimate = <command_service::commands::ProjectAggregate as command_service::commands::Aggregate>::weight(&state);
    println!(
        "fold: {rounds} model + version creates, {per_round:.0} B resident per round \
         ({:.1} MiB); the two events' JSON: {:.0} B per round; the state cache's estimate: \
         {:.0} B per round ({:.1} MiB)",
        (after.saturating_sub(before)) as f64 / 1024.0,
        text as f64 / rounds as f64,
        estimate as f64 / rounds as f64,
        estimate as f64 / (1024.0 * 1024.0)
    );
    drop(state);
    Ok(())
}

async fn soak_bench(minutes: u64, every: u64, clients: usize, pause_ms: u64) -> anyhow::Result<()> {
    let config = suite_config(clients)?;
    let options = tests::faults::soak::Options {
        duration: Duration::from_secs(minutes * 60),
        every: Duration::from_secs(every),
        pause: Duration::from_millis(pause_ms),
    };
    println!(
        "\nsoak: {minutes} min, {clients} clients resting {pause_ms} ms between rounds, a sample \
         every {every} s; release strata all, durable PostgreSQL of the suite's own"
    );
    let report = tests::faults::soak::soak(&config, &options).await;
    println!("{}", report.table());
    anyhow::ensure!(
        report.clean(),
        "the soak found lost, doubled or unclear results, or growth"
    );
    Ok(())
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
            .append(&counted(
                StreamId::new("ryw", "one")?,
                ExpectedVersion::Any,
                i,
            ))
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
                    .append(&counted(
                        StreamId::new("lag", &format!("s{}", i % 16))?,
                        ExpectedVersion::Any,
                        i,
                    ))
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

/// What the GraphQL bench checks in every answer: data and no errors.
#[derive(serde::Deserialize)]
struct GraphqlAnswer {
    data: Option<serde::de::IgnoredAny>,
    errors: Option<serde::de::IgnoredAny>,
}

/// Registers a bench account; its web app token.
async fn bench_token(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
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
    Ok(tokens["token"].as_str().context("no token")?.to_owned())
}

async fn pages_bench(pool: &PgPool, scoped_url: &str, requests: usize) -> anyhow::Result<()> {
    let (app, cancel, running, _) = bench_stack(pool, scoped_url, |_| {}).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = app.base_url.clone();
    let token = bench_token(&http, &base).await?;
    let gql = |query: &'static str, variables: serde_json::Value| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
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
            anyhow::Ok(body["data"].clone())
        }
    };
    let mut big = String::new();
    for p in 0..20 {
        let data = gql(
            "mutation($n: String!) { projectMutations { create(input: {name: $n}) { id } } }",
            json!({"n": format!("project {p}")}),
        )
        .await?;
        big = data["projectMutations"]["create"]["id"]
            .as_str()
            .context("no project")?
            .to_owned();
    }
    let object = "0123456789abcdef0123456789abcdef";
    tests::store_object(&base, &token, &big, object).await;
    for m in 0..50 {
        let data = gql(
            "mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }",
            json!({"p": big, "n": format!("building {}/level {m}", m % 5)}),
        )
        .await?;
        let model = data["modelMutations"]["create"]["id"]
            .as_str()
            .context("no model")?
            .to_owned();
        gql(
            "mutation($p: String!, $m: String!, $o: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: $o, message: \"v\"}) { id } } }",
            json!({"p": big, "m": model, "o": object}),
        )
        .await?;
    }
    let cookie = format!("strata_session={token}");
    println!("\npages: one client, {requests} requests each, every answer checked");
    println!(
        "{:>34} {:>10} {:>10} {:>10} {:>10}",
        "page", "req/s", "p50 ms", "p99 ms", "KiB"
    );
    let project_page = format!("/projects/{big}");
    for (label, path, expect) in [
        ("GET /api/ping (floor)", "/api/ping", "pong"),
        ("projects page (20 projects)", "/projects", "project 19"),
        (
            "project page (50 models)",
            project_page.as_str(),
            "level 49",
        ),
    ] {
        let mut latencies = Vec::with_capacity(requests);
        let mut size = 0;
        let start = Instant::now();
        for _ in 0..requests {
            let t = Instant::now();
            let res = http
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            anyhow::ensure!(res.status() == 200, "{path} answered {}", res.status());
            let body = res.text().await?;
            anyhow::ensure!(body.contains(expect), "{path} lacks {expect}");
            size = body.len();
            latencies.push(t.elapsed());
        }
        let rate = requests as f64 / start.elapsed().as_secs_f64();
        latencies.sort();
        println!(
            "{label:>34} {rate:>10.0} {:>10.2} {:>10.2} {:>10.1}",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            size as f64 / 1024.0
        );
    }
    cancel.cancel();
    running.await?;
    Ok(())
}

async fn graphql_bench(pool: &PgPool, scoped_url: &str, seconds: u64) -> anyhow::Result<()> {
    let (app, cancel, running, _) = bench_stack(pool, scoped_url, |_| {}).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = app.base_url.clone();
    let token = bench_token(&http, &base).await?;
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
    // Every version points at this root object, stored once: the server refuses a version
    // whose object the project does not hold.
    tests::store_object(&base, &token, &pid, "0123456789abcdef0123456789abcdef").await;
    for m in 0..10 {
        let model = gql(
            "mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }".into(),
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
    // The same server with the response cache off, on the same database, for the reference
    // row; both must give the same answer.
    let uncached = tests::TestApp::spawn(command_service::config::Settings {
        graphql_cache_bytes: 0,
        ..app.state.settings().clone()
    })
    .await;
    let base_uncached = uncached.base_url.clone();
    let mut answers = Vec::new();
    for b in [&base, &base, &base_uncached] {
        let body: serde_json::Value = http
            .post(format!("{b}/graphql"))
            .bearer_auth(&token)
            .json(&json!({"query": project_query, "variables": {"id": pid}}))
            .send()
            .await?
            .json()
            .await?;
        answers.push(body);
    }
    anyhow::ensure!(
        answers[0] == answers[1] && answers[1] == answers[2],
        "cached and uncached answers differ: {answers:?}"
    );
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
            ("project 10x5, cache off", 3),
        ] {
            let window = Duration::from_secs(seconds);
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let http = http.clone();
                let base = base.clone();
                let token = token.clone();
                let pid = pid.clone();
                let base_uncached = base_uncached.clone();
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let target = if kind == 3 { &base_uncached } else { &base };
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
                                let bytes = http
                                    .post(format!("{target}/graphql"))
                                    .bearer_auth(&token)
                                    .json(&body)
                                    .send()
                                    .await?
                                    .bytes()
                                    .await?;
                                // Parsed in full, but without building a tree: the load
                                // generator shares the cores with the server.
                                let res: GraphqlAnswer = serde_json::from_slice(&bytes)?;
                                anyhow::ensure!(
                                    res.errors.is_none() && res.data.is_some(),
                                    "bad response {}",
                                    String::from_utf8_lossy(&bytes)
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

async fn objects_bench(
    pool: &PgPool,
    scoped_url: &str,
    count: usize,
    batch: usize,
    clients: usize,
) -> anyhow::Result<()> {
    use std::io::Write;

    let (app, cancel, projecting, _) = bench_stack(pool, scoped_url, |_| {}).await?;
    let token = tests::register(&app.base_url, "bench@example.com").await;
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&token)
        .json(&json!({"query": "mutation { projectMutations { create(input: {name: \"objects\"}) { id } } }"}))
        .send()
        .await?
        .json()
        .await?;
    let project = created["data"]["projectMutations"]["create"]["id"]
        .as_str()
        .context("no project")?
        .to_owned();

    // The tree: `count` small children and one root whose closure lists them.
    let id = |n: usize| format!("{n:032x}");
    let children: Vec<String> = (1..=count)
        .map(|n| {
            format!(
                r#"{{"id":"{}","speckle_type":"Objects.Geometry.Point","x":{n}.5,"y":{},"z":0.25,"units":"m","applicationId":null}}"#,
                id(n),
                n * 3
            )
        })
        .collect();
    let closure: Vec<String> = (1..=count).map(|n| format!(r#""{}":1"#, id(n))).collect();
    let root_id = id(count + 1);
    let root = format!(
        r#"{{"id":"{root_id}","speckle_type":"Base","@elements":[],"__closure":{{{}}}}}"#,
        closure.join(",")
    );
    let raw_bytes: usize = children.iter().map(String::len).sum::<usize>() + root.len();
    let mut bodies = Vec::new();
    for chunk in children.chunks(batch) {
        let json = format!("[{}]", chunk.join(","));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(json.as_bytes())?;
        bodies.push(gz.finish()?);
    }
    bodies.push({
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(format!("[{root}]").as_bytes())?;
        gz.finish()?
    });
    let gz_bytes: usize = bodies.iter().map(Vec::len).sum();
    println!(
        "\nobjects: {count} objects + root, {:.1} MB of JSON ({:.1} MB gzipped) in {} batches; {clients} concurrent uploads",
        raw_bytes as f64 / 1e6,
        gz_bytes as f64 / 1e6,
        bodies.len()
    );

    // Reference: COPY of the same rows into an equivalent table (same columns and keys).
    sqlx::query("CREATE TABLE objects_copy_ref (LIKE objects INCLUDING ALL)")
        .execute(pool)
        .await?;
    let escape = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    let mut rows = String::with_capacity(raw_bytes * 2);
    for (n, child) in children.iter().enumerate() {
        rows.push_str(&format!(
            "{project}\t{}\tObjects.Geometry.Point\t\\N\t\\N\t{}\n",
            id(n + 1),
            escape(child)
        ));
    }
    rows.push_str(&format!(
        "{project}\t{root_id}\tBase\t{count}\t{{{}}}\t{}\n",
        escape(&closure.join(",")),
        escape(&root)
    ));
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw(
            "COPY objects_copy_ref (project_id, id, speckle_type, total_children_count, closure, data) FROM STDIN",
        )
        .await?;
    for piece in rows.as_bytes().chunks(1 << 20) {
        copy.send(piece).await?;
    }
    copy.finish().await?;
    drop(conn);
    let copy_time = started.elapsed();
    let per_s = |n: usize, t: Duration| n as f64 / t.as_secs_f64();
    println!(
        "reference COPY:   {:>9.0} objects/s {:>7.1} MB/s ({:.2} s)",
        per_s(count + 1, copy_time),
        per_s(raw_bytes, copy_time) / 1e6,
        copy_time.as_secs_f64()
    );

    // The server: multipart POST /objects/:projectId, `clients` at a time.
    let url = format!("{}/objects/{project}", app.base_url);
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, token, queue) = (http.clone(), url.clone(), token.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop()
                else {
                    break;
                };
                let form = reqwest::multipart::Form::new().part(
                    "batch",
                    reqwest::multipart::Part::bytes(body)
                        .file_name("batch")
                        .mime_str("application/gzip")?,
                );
                let res = http
                    .post(&url)
                    .bearer_auth(&token)
                    .multipart(form)
                    .send()
                    .await?;
                anyhow::ensure!(res.status() == 201, "upload answered {}", res.status());
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let ingest_time = started.elapsed();
    println!(
        "server ingest:    {:>9.0} objects/s {:>7.1} MB/s ({:.2} s) = {:.0} % of COPY",
        per_s(count + 1, ingest_time),
        per_s(raw_bytes, ingest_time) / 1e6,
        ingest_time.as_secs_f64(),
        100.0 * copy_time.as_secs_f64() / ingest_time.as_secs_f64()
    );

    // Download of the whole tree, gzipped on the fly, as connectors ask for it.
    let started = Instant::now();
    let res = http
        .get(format!("{url}/{root_id}"))
        .bearer_auth(&token)
        .header("accept", "text/plain")
        .send()
        .await?;
    anyhow::ensure!(res.status() == 200, "download answered {}", res.status());
    let body = res.bytes().await?;
    let download_time = started.elapsed();
    let lines = body.iter().filter(|b| **b == b'\n').count();
    anyhow::ensure!(lines == count + 1, "downloaded {lines} objects");
    println!(
        "server download:  {:>9.0} objects/s {:>7.1} MB/s ({:.2} s, {lines} objects)",
        per_s(lines, download_time),
        per_s(body.len(), download_time) / 1e6,
        download_time.as_secs_f64()
    );
    cancel.cancel();
    projecting.await?;
    Ok(())
}

async fn subscriptions_bench(
    pool: &PgPool,
    scoped_url: &str,
    subscribers: usize,
    mutations: usize,
) -> anyhow::Result<()> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let (app, cancel, projecting, redis) =
        bench_stack(pool, scoped_url, |s| s.subscription_buffer_events = 4096).await?;
    let publisher = command_service::realtime::Publisher::new(
        pool.clone(),
        command_service::app::redis_client(
            &command_service::config::Secret::new(redis),
            app.state.settings().redis_reconnect_max_ms,
        )?,
    );
    let publishing = tokio::spawn(publisher.run(cancel.clone()));
    let token = tests::register(&app.base_url, "bench@example.com").await;
    let http = reqwest::Client::new();
    let gql = |query: &'static str, variables: serde_json::Value| {
        let http = http.clone();
        let url = format!("{}/graphql", app.base_url);
        let token = token.clone();
        async move {
            let body: serde_json::Value = http
                .post(url)
                .bearer_auth(token)
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
        "mutation { projectMutations { create(input: {name: \"live\"}) { id } } }",
        json!({}),
    )
    .await?["data"]["projectMutations"]["create"]["id"]
        .as_str()
        .context("no project")?
        .to_owned();
    let (arrivals_tx, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let ws_url = app.base_url.replace("http://", "ws://") + "/graphql";
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut request = ws_url.as_str().into_client_request()?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "graphql-ws".parse()?);
        let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
        socket
            .send(Message::Text(
                json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}})
                    .to_string()
                    .into(),
            ))
            .await?;
        socket
            .send(Message::Text(
                json!({"id": "1", "type": "start", "payload": {
                    "query": "subscription($id: String!) { projectUpdated(id: $id) { id type project { name } } }",
                    "variables": {"id": project}}})
                .to_string()
                .into(),
            ))
            .await?;
        let tx = arrivals_tx.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(message)) = socket.next().await {
                if let Message::Text(text) = message {
                    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    if let Some(name) =
                        value["payload"]["data"]["projectUpdated"]["project"]["name"].as_str()
                    {
                        let _ = tx.send((name.to_owned(), Instant::now()));
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while app.state.hub().active() < subscribers as i64 {
        anyhow::ensure!(Instant::now() < deadline, "subscribers never became live");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "\nsubscriptions: {subscribers} graphql-ws subscribers on one project, `projectUpdated {{ id type project {{ name }} }}`"
    );
    let mut mutation_latencies = Vec::new();
    let mut delivery = Vec::new();
    for i in 0..mutations {
        let name = format!("round {i}");
        let sent = Instant::now();
        gql(
            "mutation($p: ID!, $n: String!) { projectMutations { update(update: {id: $p, name: $n}) { id } } }",
            json!({"p": project, "n": name}),
        )
        .await?;
        let answered = Instant::now();
        mutation_latencies.push(answered - sent);
        let mut got = 0;
        while got < subscribers {
            let (arrived_name, at) = tokio::time::timeout(Duration::from_secs(60), arrivals.recv())
                .await?
                .context("subscribers gone")?;
            anyhow::ensure!(
                arrived_name == name,
                "out of round: {arrived_name} in {name}"
            );
            delivery.push(at.saturating_duration_since(sent));
            got += 1;
        }
    }
    mutation_latencies.sort();
    delivery.sort();
    println!(
        "reference: the mutation's own round trip p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&mutation_latencies, 0.5)),
        ms(percentile(&mutation_latencies, 0.99))
    );
    println!(
        "mutation sent -> message at each subscriber: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} deliveries)",
        ms(percentile(&delivery, 0.5)),
        ms(percentile(&delivery, 0.99)),
        ms(*delivery.last().unwrap_or(&Duration::ZERO)),
        delivery.len()
    );
    for r in readers {
        r.abort();
    }
    cancel.cancel();
    projecting.await?;
    publishing.await?;
    Ok(())
}

async fn webhooks_bench(
    pool: &PgPool,
    backlog: usize,
    latency_events: usize,
) -> anyhow::Result<()> {
    use command_service::commands::{CommandBus, ProjectAggregate, UserAggregate, new_id};
    use domain::project::webhook::WebhookConfig;
    use domain::{ProjectCommand, UserCommand};
    use tests::receiver::WebhookReceiver;

    projections::install(pool, &projections::registry()).await?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let runtime = projections::ProjectorRuntime::new(
        pool.clone(),
        projections::registry(),
        projections::RuntimeOptions::default(),
    );
    let projecting = tokio::spawn(runtime.run(cancel.clone()));
    // No read-your-writes wait: the bench measures from the append.
    let bus = CommandBus::new(EventLog::new(pool.clone()), &[], Duration::from_secs(10));
    let meta = EventMetadata::default();
    let user = new_id();
    let create_user = UserCommand::Create {
        id: user.clone(),
        email: "bench@example.com".into(),
        name: "Bench".into(),
        company: None,
        server_role: domain::ServerRole::Admin,
    };
    bus.execute::<UserAggregate, _>(&user, &meta, |_| Ok(create_user.clone()))
        .await?;
    let receiver = WebhookReceiver::start().await;
    let mut projects = Vec::new();
    for i in 0..11 {
        let id = new_id();
        let create = ProjectCommand::Create {
            id: id.clone(),
            name: format!("bench {i}"),
            description: None,
            visibility: domain::Visibility::Private,
            owner_user_id: user.clone(),
            default_model_id: None,
        };
        bus.execute::<ProjectAggregate, _>(&id, &meta, |_| Ok(create.clone()))
            .await?;
        let webhook_id = new_id();
        sqlx::query("INSERT INTO webhook_secrets (webhook_id, secret) VALUES ($1, 'bench-secret')")
            .bind(&webhook_id)
            .execute(pool)
            .await?;
        let hook = ProjectCommand::CreateWebhook {
            webhook_id,
            config: WebhookConfig {
                url: receiver.url.clone(),
                description: String::new(),
                triggers: vec!["stream_update".into()],
                enabled: true,
                has_secret: true,
            },
            max_per_project: 100,
        };
        bus.execute::<ProjectAggregate, _>(&id, &meta, |_| Ok(hook.clone()))
            .await?;
        projects.push(id);
    }
    let rename = |project: String, name: String| {
        let bus = bus.clone();
        async move {
            let cmd = ProjectCommand::Update {
                name: Some(name),
                description: None,
                visibility: None,
                allow_public_comments: None,
            };
            bus.execute::<ProjectAggregate, _>(&project, &EventMetadata::default(), |_| {
                Ok(cmd.clone())
            })
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
        }
    };
    let name_of = |r: &tests::receiver::Received| {
        r.json()["payload"]["event"]["data"]["event"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // The floor: the same receiver, plain POSTs of a body of the same size.
    let sample_body = "x".repeat(1500);
    let http = reqwest::Client::new();
    let floor_url = receiver.url.clone();
    let post_floor = |concurrency: usize, total: usize| {
        let http = http.clone();
        let url = floor_url.clone();
        let body = sample_body.clone();
        async move {
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (http, url, body) = (http.clone(), url.clone(), body.clone());
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    for _ in 0..total / concurrency {
                        let t = Instant::now();
                        http.post(&url).body(body.clone()).send().await?;
                        latencies.push(t.elapsed());
                    }
                    anyhow::Ok(latencies)
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await??);
            }
            all.sort();
            anyhow::Ok((all.len() as f64 / start.elapsed().as_secs_f64(), all))
        }
    };
    println!("\nwebhooks: receiver on loopback answering 200; worker concurrency 8");
    let (floor_one, lat) = post_floor(1, 500).await?;
    let (floor_eight, _) = post_floor(8, 2000).await?;
    println!(
        "floor: plain POSTs {floor_one:.0}/s sequential (p50 {:.2} ms, p99 {:.2} ms), {floor_eight:.0}/s with 8 at once",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99))
    );
    let floor_requests = receiver.received().len();

    let settings = command_service::config::Settings {
        webhook_allow_private_targets: true,
        ..Default::default()
    };
    let drain = |label: &'static str, targets: Vec<String>| {
        let rename = &rename;
        let receiver = receiver.clone();
        let settings = settings.clone();
        async move {
            let before = receiver.received().len();
            for i in 0..backlog {
                for p in &targets {
                    rename(p.clone(), format!("{label} {i}")).await?;
                }
            }
            let expected = backlog * targets.len();
            // Wait for the projector to enqueue the whole backlog before starting the worker.
            loop {
                let queued: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM jobs WHERE kind = 'webhook.deliver' AND status = 'pending'",
                )
                .fetch_one(pool)
                .await?;
                if queued as usize >= expected {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let worker_cancel = tokio_util::sync::CancellationToken::new();
            let runner = command_service::app::job_runner(&settings, pool.clone())?;
            let start = Instant::now();
            let working = tokio::spawn(runner.run(worker_cancel.clone()));
            receiver
                .wait_for(before + expected, Duration::from_secs(600))
                .await;
            let elapsed = start.elapsed();
            worker_cancel.cancel();
            working.await?;
            let got = receiver.received();
            let mut in_order = true;
            for p in &targets {
                let names: Vec<String> = got[before..]
                    .iter()
                    .filter(|r| r.json()["payload"]["streamId"] == p.as_str())
                    .map(name_of)
                    .collect();
                let expected: Vec<String> = (0..backlog).map(|i| format!("{label} {i}")).collect();
                in_order &= names == expected;
            }
            println!(
                "backlog of {expected} deliveries to {} webhook(s): {:.0} deliveries/s ({:.1} s), each webhook's in event order: {in_order}",
                targets.len(),
                expected as f64 / elapsed.as_secs_f64(),
                elapsed.as_secs_f64()
            );
            anyhow::Ok(())
        }
    };
    drain("one", vec![projects[10].clone()]).await?;
    drain("ten", projects[..10].to_vec()).await?;

    // Latency at a steady rate, worker running.
    let worker_cancel = tokio_util::sync::CancellationToken::new();
    let runner = command_service::app::job_runner(&settings, pool.clone())?;
    let working = tokio::spawn(runner.run(worker_cancel.clone()));
    let before = receiver.received().len();
    let mut sent = std::collections::HashMap::new();
    let pace = Duration::from_millis(20);
    let started = Instant::now();
    for i in 0..latency_events {
        let name = format!("lat {i}");
        rename(projects[i % 10].clone(), name.clone()).await?;
        sent.insert(name, Instant::now());
        let next = started + pace * u32::try_from(i + 1)?;
        tokio::time::sleep_until(next.into()).await;
    }
    let got = receiver
        .wait_for(before + latency_events, Duration::from_secs(120))
        .await;
    let mut latencies: Vec<Duration> = got[before..]
        .iter()
        .filter_map(|r| {
            sent.get(&name_of(r))
                .map(|t| r.at.saturating_duration_since(*t))
        })
        .collect();
    latencies.sort();
    println!(
        "append -> receipt at {:.0} events/s over 10 webhooks: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        1.0 / pace.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO)),
        latencies.len()
    );
    let _ = floor_requests;
    worker_cancel.cancel();
    working.await?;
    cancel.cancel();
    projecting.await?;
    Ok(())
}

/// The API on a random port and the projectors, over the bench's schema; returns the app, the
/// token that stops the projectors, their task, and the Redis URL. Rate limits are off: the
/// benches measure the API, not the limiter.
async fn bench_stack(
    pool: &PgPool,
    scoped_url: &str,
    tweak: impl FnOnce(&mut command_service::config::Settings),
) -> anyhow::Result<(
    tests::TestApp,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
    String,
)> {
    projections::install(pool, &projections::registry()).await?;
    let redis = std::env::var("STRATA_REDIS_URL")
        .or_else(|_| std::env::var("STRATA_TEST_REDIS_URL"))
        .context("set STRATA_REDIS_URL (deploy/dev up writes it)")?;
    let mut settings = command_service::config::Settings {
        port: 0,
        database_url: Some(command_service::config::Secret::new(scoped_url)),
        redis_url: Some(command_service::config::Secret::new(redis.clone())),
        token_pepper: Some(command_service::config::Secret::new(
            "bench-pepper-bench-pepper-bench-pepper-00",
        )),
        database_max_connections: 40,
        database_plan_cache_mode: PLAN_CACHE_MODE.get().copied().unwrap_or_default(),
        rate_limits_enabled: false,
        ..Default::default()
    };
    tweak(&mut settings);
    let app = tests::TestApp::spawn(settings).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let runtime = projections::ProjectorRuntime::new(
        pool.clone(),
        projections::registry(),
        projections::RuntimeOptions::default(),
    );
    let projecting = tokio::spawn(runtime.run(cancel.clone()));
    Ok((app, cancel, projecting, redis))
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

/// One GraphQL request with a token; fails on errors.
async fn gql_ok(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    variables: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let res: serde_json::Value = http
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&serde_json::json!({"query": query, "variables": variables}))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(res["errors"].is_null(), "GraphQL errors: {res}");
    Ok(res["data"].clone())
}

/// One `Counted` event carrying `n`, appended to `stream` expecting `expected`.
fn counted(stream: StreamId, expected: ExpectedVersion, n: u64) -> AppendRequest {
    AppendRequest {
        stream,
        expected,
        events: vec![NewEvent {
            event_type: "Counted".into(),
            schema_version: 1,
            payload: json!({ "n": n }),
        }],
        metadata: EventMetadata::default(),
        command_id: None,
    }
}

/// Appends `count` version creates to `project`'s stream in batches of 1,000, as history.
async fn seed_versions(
    log: &EventLog,
    project: &str,
    model: &str,
    author: &str,
    ids: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    use domain::project::ProjectEvent;
    for chunk in ids.collect::<Vec<_>>().chunks(1000) {
        let events = chunk
            .iter()
            .map(|i| {
                ProjectEvent::VersionCreated {
                    project_id: project.to_owned(),
                    version_id: format!("{:010x}", 0xb0_0000_0000u64 + *i as u64),
                    model_id: model.to_owned(),
                    object_id: "0123456789abcdef0123456789abcdef".into(),
                    message: Some(format!("seed {i}")),
                    source_application: Some("bench".into()),
                    total_children_count: 0,
                    parents: vec![],
                    author_id: author.to_owned(),
                }
                .to_new_event()
            })
            .collect::<Result<Vec<_>, _>>()?;
        log.append(&AppendRequest {
            stream: StreamId::new("project", project)?,
            expected: ExpectedVersion::Any,
            events,
            metadata: EventMetadata::default(),
            command_id: None,
        })
        .await?;
    }
    Ok(())
}

async fn first_command_bench(
    pool: &PgPool,
    sizes: &[usize],
    behind: usize,
    runs: usize,
) -> anyhow::Result<()> {
    use command_service::commands::{CommandBus, ProjectAggregate};
    use domain::policy::Visibility;
    use domain::project::ProjectCommand;
    let log = EventLog::new(pool.clone());
    // A fresh process: a bus with nothing cached; `every` 0 reads no snapshots.
    let fresh = |every: u64| {
        CommandBus::new(log.clone(), &[], Duration::from_secs(10)).with_snapshots(every)
    };
    let author = "b000000001";
    println!(
        "\nfirst command per process and project: a model create through a bus with nothing \
         cached, {runs} fresh processes per case, {behind} events after the snapshot"
    );
    let mut next_model = 0x1000u64;
    let mut seeded = 0usize;
    for (n, &size) in sizes.iter().enumerate() {
        let project = format!("{:010x}", 0xa0_0000_0000u64 + n as u64);
        let model = format!("{:010x}", 0xc0_0000_0000u64 + n as u64);
        let create = |command: ProjectCommand| {
            let bus = fresh(0);
            let project = project.clone();
            async move {
                bus.execute::<ProjectAggregate, _>(&project, &EventMetadata::default(), |_| {
                    Ok(command.clone())
                })
                .await
            }
        };
        create(ProjectCommand::Create {
            id: project.clone(),
            name: "bench".into(),
            description: None,
            visibility: Visibility::Private,
            owner_user_id: author.into(),
            default_model_id: Some(model.clone()),
        })
        .await?;
        seed_versions(&log, &project, &model, author, seeded..seeded + size).await?;
        seeded += size;
        // One process takes and stores the snapshot; then the stream moves on without it.
        let started = Instant::now();
        fresh(1)
            .read::<ProjectAggregate, _>(&project, |_| ())
            .await?;
        let fold_and_store = started.elapsed();
        let (bytes, at): (i64, i64) = sqlx::query_as(
            "SELECT length(state)::bigint, stream_version FROM aggregate_snapshots \
             WHERE stream_id = $1",
        )
        .bind(format!("project:{project}"))
        .fetch_one(pool)
        .await?;
        seed_versions(&log, &project, &model, author, seeded..seeded + behind).await?;
        seeded += behind;
        let (mut whole, mut from_snapshot) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            for (every, into) in [(0, &mut whole), (u64::MAX, &mut from_snapshot)] {
                next_model += 1;
                let model_id = format!("{next_model:010x}");
                let bus = fresh(every);
                let started = Instant::now();
                bus.execute::<ProjectAggregate, _>(&project, &EventMetadata::default(), |_| {
                    Ok(ProjectCommand::CreateModel {
                        model_id: model_id.clone(),
                        name: format!("first {model_id}"),
                        description: None,
                        author_id: author.into(),
                    })
                })
                .await?;
                into.push(started.elapsed());
            }
        }
        println!(
            "  {size} versions: {}; {}; taking and storing the snapshot at version {at}: \
             {:.1} ms with the whole fold, {:.1} MiB of text",
            latency_row("whole stream folded (reference)", whole),
            latency_row("from the snapshot", from_snapshot),
            ms(fold_and_store),
            bytes as f64 / (1024.0 * 1024.0),
        );
    }
    Ok(())
}

/// Where the server's write-ahead log is: with [`wal_since`], the WAL a stretch of commands
/// wrote, full-page images included (they grow with the pages a command touches after a
/// checkpoint, so with the size of its indexes).
async fn wal_lsn(pool: &PgPool) -> anyhow::Result<String> {
    Ok(
        sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
            .fetch_one(pool)
            .await?,
    )
}

/// Bytes of WAL written since `lsn` (from [`wal_lsn`]).
async fn wal_since(pool: &PgPool, lsn: &str) -> anyhow::Result<f64> {
    Ok(sqlx::query_scalar(
        "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1::pg_lsn)::float8",
    )
    .bind(lsn)
    .fetch_one(pool)
    .await?)
}

fn latency_row(label: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "{label}: p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99))
    )
}

async fn audit_bench(
    pool: &PgPool,
    scoped_url: &str,
    events: usize,
    reads: usize,
    verify_events: usize,
) -> anyhow::Result<()> {
    use domain::project::ProjectEvent;
    let (app, cancel, projecting, _) = bench_stack(pool, scoped_url, |_| {}).await?;
    let base = app.base_url.clone();
    let http = reqwest::Client::new();
    let token = tests::register(&base, "audit@example.com").await;
    let (project, model) = app.project_with_model(&token, "seed").await;
    let me = gql_ok(&http, &base, &token, "{ activeUser { id } }", json!({})).await?["activeUser"]
        ["id"]
        .as_str()
        .context("user id")?
        .to_owned();
    let log = EventLog::new(pool.clone());
    // The history: versions created and renamed, appended in batches.
    let seeded = Instant::now();
    let mut n = 0usize;
    while n < events {
        let batch: Vec<NewEvent> = (n..(n + 1000).min(events))
            .map(|i| {
                let version_id = format!("{:010x}", 0xc0_0000_0000u64 + (i / 2) as u64);
                if i % 2 == 0 {
                    ProjectEvent::VersionCreated {
                        project_id: project.clone(),
                        version_id,
                        model_id: model.clone(),
                        object_id: "0123456789abcdef0123456789abcdef".into(),
                        message: Some(format!("v{i}")),
                        source_application: Some("bench".into()),
                        total_children_count: 0,
                        parents: vec![],
                        author_id: me.clone(),
                    }
                } else {
                    ProjectEvent::VersionUpdated {
                        project_id: project.clone(),
                        version_id,
                        message: format!("renamed {i}"),
                    }
                }
                .to_new_event()
            })
            .collect::<Result<_, _>>()?;
        n += batch.len();
        log.append(&AppendRequest {
            stream: StreamId::new("project", &project)?,
            expected: ExpectedVersion::Any,
            events: batch,
            metadata: EventMetadata::default(),
            command_id: None,
        })
        .await?;
    }
    let head = log.readable_head().await?;
    projections::wait_for(
        pool,
        &[projections::speckle::NAME],
        head,
        Duration::from_secs(600),
    )
    .await?;
    let positions: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events WHERE stream_id = $1 ORDER BY position")
            .bind(format!("project:{project}"))
            .fetch_all(pool)
            .await?;
    println!(
        "\naudit: one project of {} events (seeded in {:.1} s)",
        positions.len(),
        seeded.elapsed().as_secs_f64()
    );
    let mut current = Vec::with_capacity(reads);
    let mut as_of = Vec::with_capacity(reads);
    let mut folded = Vec::with_capacity(reads);
    let mut first = None;
    for i in 0..reads {
        let started = Instant::now();
        let row = projections::speckle::query::project_with_role(pool, &project, Some(&me)).await?;
        let versions = projections::speckle::query::versions_count(
            pool,
            projections::speckle::query::VersionsOf::Project,
            &project,
        )
        .await?;
        std::hint::black_box((row, versions));
        current.push(started.elapsed());
        // Spread over the history, the newest (the whole stream) included.
        let at = if i == 0 {
            positions[positions.len() - 1]
        } else {
            positions[(i * 7919) % positions.len()]
        };
        let moment = command_service::audit::AsOf::Position(at);
        let started = Instant::now();
        let whole = command_service::audit::replay_with(
            &log,
            &project,
            moment,
            command_service::audit::Snapshots::Ignore,
        )
        .await?
        .context("the project existed")?;
        folded.push(started.elapsed());
        let started = Instant::now();
        let view = command_service::audit::replay(&log, &project, moment)
            .await?
            .context("the project existed")?;
        let took = started.elapsed();
        // The first replay folds the whole stream and stores its snapshots.
        if i == 0 {
            first = Some(took);
        } else {
            as_of.push(took);
        }
        anyhow::ensure!(view == whole, "a snapshot replay differs at {at}");
    }
    println!(
        "  {}",
        latency_row(
            "reference: current state from the read model (project + version count)",
            current
        )
    );
    println!(
        "  {}",
        latency_row(
            "as-of replay without snapshots (read, upcast, fold from the first event)",
            folded
        )
    );
    println!(
        "  first as-of replay (whole stream, storing a snapshot every {} events): {:.1} ms",
        domain::audit::SNAPSHOT_EVERY,
        first.unwrap_or_default().as_secs_f64() * 1000.0
    );
    println!(
        "  {}",
        latency_row(
            "as-of replay from the nearest snapshot (every later read)",
            as_of
        )
    );
    cancel.cancel();
    let _ = projecting.await;

    // A large log, exported and verified offline.
    let started = Instant::now();
    let mut appended = 0usize;
    let mut stream = 0usize;
    while appended < verify_events {
        let batch: Vec<NewEvent> = (0..1000.min(verify_events - appended))
            .map(|i| NewEvent {
                event_type: "Counted".into(),
                schema_version: 1,
                payload: json!({"n": appended + i, "note": "audit bench"}),
            })
            .collect();
        appended += batch.len();
        log.append(&AppendRequest {
            stream: StreamId::new("bench", &format!("{:010x}", stream % 1000))?,
            expected: ExpectedVersion::Any,
            events: batch,
            metadata: EventMetadata::default(),
            command_id: None,
        })
        .await?;
        stream += 1;
    }
    println!(
        "  a log of {appended} more events appended in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let key = schema::audit::SigningKey::from_hex(&"5a".repeat(32))?;
    let started = Instant::now();
    schema::audit::seal(pool, &key).await?;
    let sealed = started.elapsed();
    let file =
        std::env::temp_dir().join(format!("strata-audit-bench-{}.jsonl", std::process::id()));
    let started = Instant::now();
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        schema::audit::export(pool, None, &mut out).await?;
    }
    let exported = started.elapsed();
    let bytes = std::fs::metadata(&file)?.len();
    let started = Instant::now();
    let online = log.verify_chains(None).await?;
    let online_time = started.elapsed();
    let trusted = hex::decode(key.public_key_hex())?;
    let started = Instant::now();
    let report = schema::audit::verify_file(
        std::io::BufReader::new(std::fs::File::open(&file)?),
        &trusted,
    )?;
    let offline = started.elapsed();
    let _ = std::fs::remove_file(&file);
    anyhow::ensure!(
        report.ok() && online.breaks.is_empty(),
        "verification failed: {report:?}"
    );
    println!(
        "  seal {:.2} s; export of {} events ({:.0} MB) {:.1} s; \
         offline verify (chains + seal, no database) {:.1} s = {:.0} events/s; \
         reference: online chain verification in the database {:.1} s",
        sealed.as_secs_f64(),
        report.chains.events,
        bytes as f64 / 1e6,
        exported.as_secs_f64(),
        offline.as_secs_f64(),
        report.chains.events as f64 / offline.as_secs_f64(),
        online_time.as_secs_f64()
    );
    Ok(())
}

async fn commands_bench(
    pool: &PgPool,
    scoped_url: &str,
    ops: usize,
    sizes: &[usize],
    state_cache_streams: usize,
) -> anyhow::Result<()> {
    let (app, cancel, projecting, _) = bench_stack(pool, scoped_url, |s| {
        s.command_state_cache_streams = state_cache_streams;
    })
    .await?;
    let base = app.base_url.clone();
    let http = reqwest::Client::new();
    let token = tests::register(&base, "bench@example.com").await;
    let me = gql_ok(
        &http,
        &base,
        &token,
        "{ activeUser { id } }",
        serde_json::json!({}),
    )
    .await?["activeUser"]["id"]
        .as_str()
        .context("user id")?
        .to_owned();
    const OBJECT: &str = "0123456789abcdef0123456789abcdef";
    const CREATE_MODEL: &str =
        "mutation($i: CreateModelInput!) { modelMutations { create(input: $i) { id } } }";
    const CREATE_VERSION: &str =
        "mutation($i: CreateVersionInput!) { versionMutations { create(input: $i) { id } } }";
    let log = EventLog::new(pool.clone());
    let mut ping = Vec::with_capacity(ops);
    for _ in 0..ops {
        let started = Instant::now();
        http.get(format!("{base}/api/ping"))
            .send()
            .await?
            .text()
            .await?;
        ping.push(started.elapsed());
    }
    // Where a command's milliseconds go: an authenticated GraphQL request that reads, a
    // one-event append straight to the log, and that append plus the wait for the read models
    // a command waits for (no HTTP, no GraphQL).
    let mut query = Vec::with_capacity(ops);
    for _ in 0..ops {
        let started = Instant::now();
        gql_ok(&http, &base, &token, "{ activeUser { id } }", json!({})).await?;
        query.push(started.elapsed());
    }
    let (mut append, mut append_wait) = (Vec::with_capacity(ops), Vec::with_capacity(ops));
    let waiter = projections::Waiter::default();
    for i in 0..2 * ops as u64 {
        let started = Instant::now();
        let appended = log
            .append(&counted(
                StreamId::new("benchref", "append")?,
                ExpectedVersion::Exact(i),
                i,
            ))
            .await?;
        if i % 2 == 0 {
            append.push(started.elapsed());
        } else {
            waiter
                .wait_for(
                    pool,
                    &[
                        projections::speckle::NAME,
                        projections::webhooks::NAME,
                        projections::mail::NAME,
                    ],
                    appended.last,
                    Duration::from_secs(10),
                )
                .await?;
            append_wait.push(started.elapsed());
        }
    }
    println!(
        "\ncommands (state cache: {state_cache_streams} streams): {ops} sequential creates per \
         kind, then {ops} creates by 16 clients at once, each answered after its read models \
         (read-your-writes)\n  references: {}; {}; {}; {}",
        latency_row("GET /api/ping", ping),
        latency_row("GraphQL {activeUser{id}}", query),
        latency_row("1-event append", append),
        latency_row("append + read-model wait", append_wait),
    );
    // Seeded version ids are unique across every size of the run.
    let mut seeded_ids = 0usize;
    for &size in sizes {
        let project = gql_ok(
            &http,
            &base,
            &token,
            "mutation { projectMutations { create(input: {name: \"bench\"}) { id } } }",
            serde_json::json!({}),
        )
        .await?["projectMutations"]["create"]["id"]
            .as_str()
            .context("project id")?
            .to_owned();
        let model = gql_ok(
            &http,
            &base,
            &token,
            CREATE_MODEL,
            serde_json::json!({"i": {"projectId": project, "name": "seed"}}),
        )
        .await?["modelMutations"]["create"]["id"]
            .as_str()
            .context("model id")?
            .to_owned();
        tests::store_object(&base, &token, &project, OBJECT).await;
        // History, appended straight to the log in batches (the commands under test come after).
        let seeded = Instant::now();
        seed_versions(&log, &project, &model, &me, seeded_ids..seeded_ids + size).await?;
        seeded_ids += size;
        // The alias keeps ORDER BY on the xid8, not on its text.
        let head: (String, i64) = sqlx::query_as(
            "SELECT transaction_id::text AS xid, position FROM events \
             ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .fetch_one(pool)
        .await?;
        // Every read model, not only the one commands wait for: one still folding the seed
        // would compete with the commands measured (seen: `webhooks` catching up on 50,000
        // versions during the first seconds of the measurement).
        let names: Vec<&str> = projections::registry().iter().map(|p| p.name()).collect();
        projections::wait_for(
            pool,
            &names,
            LogCursor {
                transaction_id: head.0.parse()?,
                position: head.1,
            },
            Duration::from_secs(600),
        )
        .await?;
        // Tables as autovacuum leaves them after a bulk load: statistics, so no plan is chosen
        // for the log as it was before the seed, and the dead rows of the rows the seed
        // updated once per version (its model, its project) gone. Otherwise autovacuum does
        // it during the measurement, on the same cores.
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_all(pool)
        .await?;
        for table in tables {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "VACUUM (ANALYZE) \"{}\"",
                table.replace('"', "\"\"")
            )))
            .execute(pool)
            .await?;
        }
        let seed_time = seeded.elapsed();
        // The first command folds whatever it has to; it is reported on its own.
        let started = Instant::now();
        gql_ok(
            &http,
            &base,
            &token,
            CREATE_MODEL,
            serde_json::json!({"i": {"projectId": project, "name": "first"}}),
        )
        .await?;
        let first = started.elapsed();
        let wal_before = wal_lsn(pool).await?;
        let mut models = Vec::with_capacity(ops);
        for i in 0..ops {
            let started = Instant::now();
            gql_ok(
                &http,
                &base,
                &token,
                CREATE_MODEL,
                serde_json::json!({"i": {"projectId": project, "name": format!("m{i}")}}),
            )
            .await?;
            models.push(started.elapsed());
        }
        let model_wal = wal_since(pool, &wal_before).await? / ops as f64;
        let wal_before = wal_lsn(pool).await?;
        let mut versions = Vec::with_capacity(ops);
        for _ in 0..ops {
            let started = Instant::now();
            gql_ok(
                &http,
                &base,
                &token,
                CREATE_VERSION,
                serde_json::json!({"i": {"projectId": project, "modelId": model, "objectId": OBJECT}}),
            )
            .await?;
            versions.push(started.elapsed());
        }
        let version_wal = wal_since(pool, &wal_before).await? / ops as f64;
        let next = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let concurrent = Arc::new(std::sync::Mutex::new(Vec::with_capacity(ops)));
        let mut clients = Vec::new();
        for _ in 0..16 {
            let (http, base, token, project, model) = (
                http.clone(),
                base.clone(),
                token.clone(),
                project.clone(),
                model.clone(),
            );
            let (next, failures, concurrent) = (next.clone(), failures.clone(), concurrent.clone());
            clients.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::SeqCst) < ops as u64 {
                    let started = Instant::now();
                    let ok = gql_ok(
                        &http,
                        &base,
                        &token,
                        CREATE_VERSION,
                        serde_json::json!({"i": {"projectId": project, "modelId": model, "objectId": OBJECT}}),
                    )
                    .await;
                    if let Err(e) = ok {
                        eprintln!("concurrent create failed: {e}");
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    if let Ok(mut samples) = concurrent.lock() {
                        samples.push(started.elapsed());
                    }
                }
            }));
        }
        for client in clients {
            client.await?;
        }
        let concurrent = concurrent.lock().map(|s| s.clone()).unwrap_or_default();
        println!(
            "{size:>6} versions (seeded in {:.1} s; first command {:.1} ms): {} ({:.1} kB WAL each); \
             {} ({:.1} kB WAL each); 16 clients {}, {} failed",
            seed_time.as_secs_f64(),
            ms(first),
            latency_row("model create", models),
            model_wal / 1024.0,
            latency_row("version create", versions),
            version_wal / 1024.0,
            latency_row("version create", concurrent),
            failures.load(Ordering::SeqCst)
        );
    }
    cancel.cancel();
    let _ = projecting.await;
    Ok(())
}

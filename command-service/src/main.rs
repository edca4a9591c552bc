//! `strata`: one binary, one subcommand per process kind.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use command_service::{app, config::Settings, telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A Speckle-compatible data server, event-sourced.
#[derive(Parser)]
#[command(name = "strata", version)]
struct Cli {
    /// TOML config file (also `STRATA_CONFIG`); `STRATA_*` variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API.
    Serve,
    /// Run the projectors (one active runner per projection across all processes).
    Project,
    /// Run the workers (reaction jobs).
    Work,
    /// Migrate, then run the API, projectors and workers in one process: the local default.
    All,
    /// Apply database migrations, install new projections' tables, and exit.
    Migrate,
    /// Rebuild projections into fresh tables and swap them in atomically.
    Rebuild {
        /// The projection to rebuild.
        #[arg(required_unless_present = "all")]
        projection: Option<String>,
        /// Rebuild every projection.
        #[arg(long)]
        all: bool,
        /// Compare rebuilt and live tables at the same position, report every difference,
        /// and keep the live tables.
        #[arg(long)]
        verify: bool,
        /// Events per batch.
        #[arg(long, default_value_t = 10_000)]
        batch_size: i64,
    },
    /// Projection state.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Operator's audit tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Preview images.
    Previews {
        #[command(subcommand)]
        command: PreviewsCommand,
    },
}

#[derive(Subcommand)]
enum PreviewsCommand {
    /// Render the previews of a project's versions again (or one version's, or every
    /// project's), waiting with a progress bar until the workers are through.
    Regenerate {
        /// The project.
        #[arg(long, required_unless_present = "all")]
        project: Option<String>,
        /// Only this version of the project.
        #[arg(long, requires = "project")]
        version: Option<String>,
        /// Every version of every project.
        #[arg(long, conflicts_with = "project")]
        all: bool,
        /// Enqueue and return without waiting.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Checkpoint, lag and errors of every projection, as JSON.
    Status,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every stream's hash chain (or one stream's) and check every seal; exits 1 on
    /// any break. With `--file` and `--key`: the same for an export, offline, with no database.
    Verify {
        /// Only this stream (`category:id`).
        #[arg(long, conflicts_with = "file")]
        stream: Option<String>,
        /// An export made by `strata audit export`.
        #[arg(long, requires = "key")]
        file: Option<PathBuf>,
        /// The trusted public key, hex (`strata audit key`).
        #[arg(long)]
        key: Option<String>,
    },
    /// Every change to a project, in order: time, position, actor, client, request, summary.
    History {
        /// The project.
        project: String,
        /// Not before (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Not after (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Only this user's changes.
        #[arg(long)]
        actor: Option<String>,
        /// Only these event types (repeatable).
        #[arg(long = "type")]
        types: Vec<String>,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The project as it was at a moment, folded from its events alone.
    Replay {
        /// The project.
        project: String,
        /// The moment (RFC 3339).
        #[arg(
            long,
            required_unless_present = "at_position",
            conflicts_with = "at_position"
        )]
        as_of: Option<String>,
        /// Or the last global log position to include.
        #[arg(long)]
        at_position: Option<i64>,
    },
    /// The events (one project's, or all) with their chain hashes and every seal, as JSON lines
    /// on standard output.
    Export {
        /// The project.
        #[arg(required_unless_present = "all")]
        project: Option<String>,
        /// The whole log (needed to check seals offline).
        #[arg(long, conflicts_with = "project")]
        all: bool,
    },
    /// Seal the log now: sign every stream's head up to the readable horizon.
    Seal,
    /// Print the seals' public key (or, with `--generate`, a new signing key to configure).
    Key {
        /// Print a fresh `STRATA_AUDIT_SIGNING_KEY` instead.
        #[arg(long)]
        generate: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (settings, unknown) = match Settings::load(cli.config.as_deref(), std::env::vars()) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("strata: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings, unknown)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    command: Command,
    settings: Settings,
    unknown: Vec<String>,
) -> anyhow::Result<ExitCode> {
    // Both ring and aws-lc-rs are in the tree; rustls needs one chosen before any TLS client.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _guard = telemetry::init(&settings)?;
    if !unknown.is_empty() {
        tracing::warn!(variables = ?unknown, "ignoring STRATA_ variables that match no setting");
    }
    match command {
        Command::Migrate => {
            app::migrate(&settings).await?;
            tracing::info!("migrations applied");
        }
        Command::Serve => run_processes(settings, true, false, false).await?,
        Command::Project => run_processes(settings, false, true, false).await?,
        Command::Work => run_processes(settings, false, false, true).await?,
        Command::All => {
            app::migrate(&settings).await?;
            run_processes(settings, true, true, true).await?;
        }
        Command::Rebuild {
            projection,
            all,
            verify,
            batch_size,
        } => {
            return rebuild(&settings, projection, all, verify, batch_size).await;
        }
        Command::Projections {
            command: ProjectionsCommand::Status,
        } => {
            let pool = runtime_pool(&settings, "status reads the checkpoints")?;
            let status = projections::status(&pool).await?;
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        Command::Previews {
            command:
                PreviewsCommand::Regenerate {
                    project,
                    version,
                    all: _,
                    no_wait,
                },
        } => {
            let pool = runtime_pool(&settings, "regenerating previews enqueues jobs")?;
            return command_service::previews::regenerate(
                &pool,
                project.as_deref(),
                version.as_deref(),
                !no_wait,
            )
            .await;
        }
        Command::Audit { command } => return audit(&settings, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `strata audit …`.
async fn audit(settings: &Settings, command: AuditCommand) -> anyhow::Result<ExitCode> {
    use command_service::audit as history;
    use schema::audit;
    let signing_key = || -> anyhow::Result<audit::SigningKey> {
        let seed = settings.audit_signing_key.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "STRATA_AUDIT_SIGNING_KEY is not set (make one with `strata audit key --generate`)"
            )
        })?;
        Ok(audit::SigningKey::from_hex(seed.expose())?)
    };
    let ok = |good: bool| {
        if good {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    match command {
        AuditCommand::Verify {
            file: Some(file),
            key,
            ..
        } => {
            let key = hex::decode(key.unwrap_or_default().trim()).context("--key is not hex")?;
            let whole = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let report = audit::verify_file(std::io::BufReader::new(whole), &key)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ok(report.ok()))
        }
        AuditCommand::Verify { stream, .. } => {
            let stream = stream
                .map(|s| domain::StreamId::parse(&s))
                .transpose()
                .context("--stream")?;
            let pool = runtime_pool(settings, "audit reads the event log")?;
            let report = schema::EventLog::new(pool.clone())
                .verify_chains(stream.as_ref())
                .await?;
            let trusted = match &settings.audit_signing_key {
                Some(seed) => Some(hex::decode(
                    audit::SigningKey::from_hex(seed.expose())?.public_key_hex(),
                )?),
                None => None,
            };
            let seals = if stream.is_none() {
                audit::verify_seals(&pool, trusted.as_deref()).await?
            } else {
                Vec::new()
            };
            let good = report.breaks.is_empty() && seals.iter().all(|s| s.ok);
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "streams": report.streams, "events": report.events,
                    "breaks": report.breaks, "seals": seals,
                }))?
            );
            Ok(ok(good))
        }
        AuditCommand::History {
            project,
            since,
            until,
            actor,
            types,
            json,
        } => {
            let filter = history::HistoryFilter {
                since: since.as_deref().map(history::parse_time).transpose()?,
                until: until.as_deref().map(history::parse_time).transpose()?,
                actor,
                types,
            };
            let log = schema::EventLog::new(runtime_pool(settings, "audit reads the event log")?);
            let entries = history::history(&log, &project, &filter).await?;
            if json {
                for e in &entries {
                    println!("{}", serde_json::to_string(e)?);
                }
            } else {
                print!("{}", history::history_table(&entries));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Replay {
            project,
            as_of,
            at_position,
        } => {
            let at = match (as_of, at_position) {
                (_, Some(p)) => history::AsOf::Position(p),
                (Some(t), None) => history::AsOf::Time(history::parse_time(&t)?),
                (None, None) => anyhow::bail!("--as-of or --at-position"),
            };
            let log = schema::EventLog::new(runtime_pool(settings, "audit reads the event log")?);
            match history::replay(&log, &project, at).await? {
                Some((view, position)) => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"position": position, "project": view})
                        )?
                    );
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("project {project} did not exist then");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::Export { project, all: _ } => {
            let pool = runtime_pool(settings, "audit reads the event log")?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let summary = audit::export(&pool, project.as_deref(), &mut out).await?;
            eprintln!(
                "exported {} events and {} seals",
                summary.events, summary.seals
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Seal => {
            let key = signing_key()?;
            let pool = runtime_pool(settings, "sealing reads the event log")?;
            match audit::seal(&pool, &key).await? {
                Some(seal) => println!("{}", serde_json::to_string_pretty(&seal)?),
                None => eprintln!("nothing new to seal"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Key { generate: true } => {
            println!("{}", audit::SigningKey::generate_seed_hex());
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Key { generate: false } => {
            println!("{}", signing_key()?.public_key_hex());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime_pool(settings: &Settings, why: &str) -> anyhow::Result<sqlx::PgPool> {
    app::pg_pool(settings, settings.require_database_url(why)?)
}

/// Runs the chosen process kinds until SIGINT or SIGTERM.
async fn run_processes(
    settings: Settings,
    api: bool,
    projectors: bool,
    workers: bool,
) -> anyhow::Result<()> {
    let pool = runtime_pool(&settings, "every process reads the event log")?;
    tokio::spawn({
        let pool = pool.clone();
        async move { app::warn_if_not_durable(&pool).await }
    });
    if api && let Some(options) = app::blob_options(&settings) {
        // The bundle rail needs its bucket; a store that is down is reported, not fatal (the
        // rail answers 503 until it is back).
        tokio::spawn(async move {
            let store = workers::blobs::BlobStore::new(&options);
            if let Err(e) = store.ensure_bucket().await {
                tracing::warn!(error = %e, bucket = %options.bucket, "the S3 bucket could not be checked or created");
            }
        });
    }
    let cancel = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    if projectors {
        let runtime = app::projector_runtime(&settings, pool.clone());
        let stop = cancel.clone();
        tasks.spawn(async move {
            runtime.run(stop).await;
            anyhow::Ok(())
        });
        // Subscriptions' live events, published once the read model has them.
        let redis = app::redis_client(
            settings.require_redis_url("projectors publish live events through Redis")?,
            settings.redis_reconnect_max_ms,
        )?;
        let publisher = command_service::realtime::Publisher::new(pool.clone(), redis);
        let stop = cancel.clone();
        tasks.spawn(async move {
            publisher.run(stop).await;
            anyhow::Ok(())
        });
        // Periodic seals of the log (every projectors' process may seal; a seal with nothing
        // new since the last is skipped).
        if let Some(seed) = &settings.audit_signing_key
            && settings.audit_seal_interval_seconds > 0
        {
            let key = schema::audit::SigningKey::from_hex(seed.expose())
                .context("STRATA_AUDIT_SIGNING_KEY")?;
            let every = Duration::from_secs(settings.audit_seal_interval_seconds);
            let (pool, stop) = (pool.clone(), cancel.clone());
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return anyhow::Ok(()),
                        () = tokio::time::sleep(every) => {}
                    }
                    match schema::audit::seal(&pool, &key).await {
                        Ok(Some(seal)) => {
                            tracing::info!(id = seal.id, cursor = %seal.cursor, "log sealed")
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "sealing the log failed"),
                    }
                }
            });
        }
    }
    if workers {
        let runner = app::job_runner(&settings, pool.clone())?;
        let cancel = cancel.clone();
        tasks.spawn(async move {
            runner.run(cancel).await;
            anyhow::Ok(())
        });
    }
    if api {
        let redis = app::redis_client(
            settings.require_redis_url("the API fans out subscriptions through Redis")?,
            settings.redis_reconnect_max_ms,
        )?;
        let addr = (settings.bind_address, settings.port);
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!(
                "binding {}:{} (STRATA_BIND_ADDRESS, STRATA_PORT)",
                addr.0, addr.1
            )
        })?;
        let state = app::AppState::new(settings.clone(), pool.clone(), redis)?;
        let cancel = cancel.clone();
        tasks.spawn(async move {
            app::serve(state, listener, async move { cancel.cancelled().await }).await
        });
    }
    shutdown_signal().await;
    cancel.cancel();
    let grace = Duration::from_secs(settings.shutdown_timeout_seconds);
    let drained = tokio::time::timeout(grace, async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "a process part failed"),
                Err(e) => tracing::error!(error = %e, "a process part panicked"),
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown grace period over; stopping anyway");
    }
    Ok(())
}

async fn rebuild(
    settings: &Settings,
    name: Option<String>,
    all: bool,
    verify: bool,
    batch_size: i64,
) -> anyhow::Result<ExitCode> {
    let pool = app::admin_pool(settings, "a rebuild creates tables").await?;
    let registry = projections::registry();
    let chosen: Vec<_> = if all {
        registry
    } else {
        let name = name.unwrap_or_default();
        let found: Vec<_> = registry.into_iter().filter(|p| p.name() == name).collect();
        if found.is_empty() {
            let known: Vec<_> = projections::registry().iter().map(|p| p.name()).collect();
            anyhow::bail!("no projection named {name:?}; known: {}", known.join(", "));
        }
        found
    };
    let mut differences = 0;
    for projection in chosen {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:40}] {pos}/{len} events {per_sec} eta {eta}",
            )?
            .progress_chars("=> "),
        );
        bar.set_prefix(projection.name());
        let options = projections::RebuildOptions {
            batch_size,
            verify,
            ..Default::default()
        };
        let report = projections::rebuild(&pool, projection.as_ref(), &options, &|done, total| {
            bar.set_length(total);
            bar.set_position(done);
        })
        .await?;
        bar.finish();
        differences += report.difference_count;
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if differences > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => tracing::error!(error = %e, "cannot listen for SIGTERM"),
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

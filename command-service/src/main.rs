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
    /// Recompute every stream's hash chain (or one stream's) and report breaks; exits 1 on any.
    Verify {
        /// Only this stream (`category:id`).
        #[arg(long)]
        stream: Option<String>,
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
        Command::Audit {
            command: AuditCommand::Verify { stream },
        } => {
            let stream = stream
                .map(|s| domain::StreamId::parse(&s))
                .transpose()
                .context("--stream")?;
            let log = schema::EventLog::new(runtime_pool(&settings, "audit reads the event log")?);
            let report = log.verify_chains(stream.as_ref()).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.breaks.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
        )?;
        let publisher = command_service::realtime::Publisher::new(pool.clone(), redis);
        let stop = cancel.clone();
        tasks.spawn(async move {
            publisher.run(stop).await;
            anyhow::Ok(())
        });
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

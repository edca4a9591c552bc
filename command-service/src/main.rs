//! `strata`: one binary, one subcommand per process kind.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use command_service::{app, config::Settings, telemetry};
use tokio::net::TcpListener;

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
    /// Apply database migrations and exit.
    Migrate,
    /// Migrate, then run everything in one process: the local default.
    All,
    /// Operator's audit tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
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
        Command::Serve => serve(settings).await?,
        Command::All => {
            app::migrate(&settings).await?;
            serve(settings).await?;
        }
        Command::Audit {
            command: AuditCommand::Verify { stream },
        } => {
            let stream = stream
                .map(|s| domain::StreamId::parse(&s))
                .transpose()
                .context("--stream")?;
            let url = settings.require_database_url("audit reads the event log")?;
            let log = schema::EventLog::new(app::pg_pool(&settings, url)?);
            let report = log.verify_chains(stream.as_ref()).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !report.breaks.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let pool = app::pg_pool(
        &settings,
        settings.require_database_url("the API reads and appends events")?,
    )?;
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
    let state = app::AppState::new(settings, pool, redis)?;
    app::serve(state, listener, shutdown_signal()).await
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

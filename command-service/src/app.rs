//! The application's shared state and how each process mode runs.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fred::prelude::{Builder as RedisBuilder, ClientLike, Config as RedisConfig, ReconnectPolicy};
use schema::{AppendLimits, EventLog};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;

use crate::config::{Secret, Settings};
use crate::metrics::Metrics;

/// Everything a request handler may reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Arc<Settings>,
    pool: PgPool,
    redis: fred::clients::Client,
    metrics: Metrics,
    event_log: EventLog,
    schema: std::sync::OnceLock<crate::graphql::StrataSchema>,
    response_cache: Option<crate::graphql::cache::ResponseCache>,
    bus: crate::commands::CommandBus,
    accounts: crate::accounts::Accounts,
    hub: crate::realtime::Hub,
    limiter: crate::ratelimit::Limiter,
    db_gate: crate::dbgate::DbGate,
    blobs: Option<workers::blobs::BlobStore>,
}

impl AppState {
    /// Builds the state. Connections are made lazily, so the API starts (and reports
    /// not-ready) while a dependency is down.
    pub fn new(
        settings: Settings,
        pool: PgPool,
        redis: fred::clients::Client,
    ) -> anyhow::Result<Self> {
        let event_log = EventLog::new(pool.clone()).with_limits(AppendLimits {
            max_events: settings.append_max_events,
            max_payload_bytes: settings.append_max_payload_bytes,
            head_cache_streams: settings.append_head_cache_streams,
            ..AppendLimits::default()
        });
        let pepper = settings
            .require_token_pepper("tokens are verified with it")?
            .clone();
        let bus = command_bus(&settings, event_log.clone());
        let accounts =
            crate::accounts::Accounts::new(pool.clone(), bus.clone(), pepper, settings.invite_only)
                .with_token_cache(
                    redis.clone(),
                    Duration::from_secs(settings.token_cache_seconds),
                )
                .with_origin(settings.origin())
                .with_mail(
                    settings.smtp_host.is_some(),
                    Duration::from_secs(settings.email_verification_timeout_minutes * 60),
                    Duration::from_secs(settings.password_reset_timeout_minutes * 60),
                );
        let hub = crate::realtime::Hub::start(
            &settings,
            pool.clone(),
            settings.subscription_buffer_events,
        );
        let rate_limits = crate::ratelimit::parse(&settings.rate_limits)
            .map_err(|e| anyhow::anyhow!("STRATA_RATE_LIMITS: {e}"))?;
        let response_cache = crate::graphql::cache::ResponseCache::new(
            pool.clone(),
            settings.graphql_cache_bytes,
            settings.graphql_cache_entry_max_bytes,
        );
        let blobs = blob_options(&settings).map(|o| workers::blobs::BlobStore::new(&o));
        let metrics = Metrics::new().context("registering metrics")?;
        let limiter = crate::ratelimit::Limiter::new(
            settings.rate_limits_enabled,
            rate_limits,
            redis.clone(),
            pool.clone(),
            metrics.rate_limit_failures.clone(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                blobs,
                db_gate: crate::dbgate::DbGate::default(),
                limiter,
                hub,
                settings: Arc::new(settings),
                pool,
                redis,
                metrics,
                event_log,
                schema: std::sync::OnceLock::new(),
                response_cache,
                bus: bus.clone(),
                accounts,
            }),
        })
    }

    /// The settings the process started with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The settings, shared (what a GraphQL request's data holds).
    pub fn shared_settings(&self) -> Arc<Settings> {
        self.inner.settings.clone()
    }

    /// The runtime database pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The event log.
    pub fn event_log(&self) -> &EventLog {
        &self.inner.event_log
    }

    /// The GraphQL schema, built on first use. Its operations need this state in their data
    /// (`graphql::request_data`); the schema itself holds none.
    pub fn schema(&self) -> &crate::graphql::StrataSchema {
        self.inner
            .schema
            .get_or_init(|| crate::graphql::build(self.settings(), self.response_cache().is_some()))
    }

    /// The cache of read-only GraphQL answers; `None` when turned off.
    pub fn response_cache(&self) -> Option<&crate::graphql::cache::ResponseCache> {
        self.inner.response_cache.as_ref()
    }

    /// The command bus.
    pub fn bus(&self) -> &crate::commands::CommandBus {
        &self.inner.bus
    }

    /// The account service.
    pub fn accounts(&self) -> &crate::accounts::Accounts {
        &self.inner.accounts
    }

    /// The Redis client (rate limits, readiness).
    pub fn redis(&self) -> &fred::clients::Client {
        &self.inner.redis
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &crate::ratelimit::Limiter {
        &self.inner.limiter
    }

    /// This process's live events, for subscriptions.
    pub fn hub(&self) -> &crate::realtime::Hub {
        &self.inner.hub
    }

    /// The public origin, without a trailing slash.
    pub fn public_url(&self) -> String {
        self.inner.settings.origin()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The S3 file store, when one is configured.
    pub fn blobs(&self) -> Option<&workers::blobs::BlobStore> {
        self.inner.blobs.as_ref()
    }

    /// Whether PostgreSQL answered its last probe (`dbgate`).
    pub fn db_gate(&self) -> &crate::dbgate::DbGate {
        &self.inner.db_gate
    }

    /// Checks that Postgres answers a query.
    pub async fn ping_postgres(&self) -> Result<(), String> {
        sqlx::query("SELECT 1")
            .execute(&self.inner.pool)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Checks that Redis answers PING.
    pub async fn ping_redis(&self) -> Result<(), String> {
        self.inner
            .redis
            .ping::<String>(None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// A lazily connecting pool for `url`.
pub fn pg_pool(settings: &Settings, url: &Secret) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .expose()
        .parse()
        .context("STRATA_DATABASE_URL is not a valid PostgreSQL URL")?;
    Ok(PgPoolOptions::new()
        .max_connections(settings.database_max_connections)
        .acquire_timeout(Duration::from_millis(settings.database_acquire_timeout_ms))
        .connect_lazy_with(schema::session::options(
            options.application_name("strata"),
            settings.database_plan_cache_mode,
        )))
}

/// The database settings under which an acknowledged write can be lost (`fsync=off`,
/// `synchronous_commit=off`, `full_page_writes=off`), as this pool's sessions see them.
pub async fn undurable_settings(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings \
         WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes') ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    Ok(settings
        .into_iter()
        .filter(|(_, value)| value == "off")
        .map(|(name, value)| format!("{name}={value}"))
        .collect())
}

/// Logs a loud warning for each database setting that can lose acknowledged writes.
pub async fn warn_if_not_durable(pool: &PgPool) {
    match undurable_settings(pool).await {
        Ok(settings) => {
            for setting in settings {
                tracing::warn!(
                    %setting,
                    "PostgreSQL runs with {setting}: writes strata acknowledged can be lost in a crash \
                     (fine for tests, never for people's data)"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read PostgreSQL's durability settings"),
    }
}

/// A Redis client that connects in the background and keeps reconnecting, waiting at most
/// `reconnect_max_ms` between attempts (`STRATA_REDIS_RECONNECT_MAX_MS`).
pub fn redis_client(url: &Secret, reconnect_max_ms: u64) -> anyhow::Result<fred::clients::Client> {
    let config =
        RedisConfig::from_url(url.expose()).context("STRATA_REDIS_URL is not a valid Redis URL")?;
    let client = RedisBuilder::from_config(config)
        .set_policy(reconnect_policy(reconnect_max_ms))
        .build()
        .context("building the Redis client")?;
    // The returned task ends only when the client quits; readiness reports its state.
    drop(client.connect());
    Ok(client)
}

/// Unlimited attempts, 100 ms apart at first, doubling up to `max_ms` (at least 100 ms).
pub fn reconnect_policy(max_ms: u64) -> ReconnectPolicy {
    let max = u32::try_from(max_ms.max(100)).unwrap_or(u32::MAX);
    ReconnectPolicy::new_exponential(0, 100, max, 2)
}

/// A pool of the owning role, for DDL: migrations and rebuilds.
pub async fn admin_pool(settings: &Settings, why: &str) -> anyhow::Result<PgPool> {
    let url = settings.require_admin_database_url(why)?;
    let options: PgConnectOptions = url
        .expose()
        .parse()
        .context("STRATA_ADMIN_DATABASE_URL is not a valid PostgreSQL URL")?;
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL with STRATA_ADMIN_DATABASE_URL")
}

/// Applies migrations and installs the tables of projections new to this database.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let pool = admin_pool(settings, "migrations need the owning role").await?;
    schema::migrate(&pool)
        .await
        .context("applying migrations")?;
    projections::install(&pool, &projections::registry())
        .await
        .context("installing projection tables")?;
    // A projection whose definition changed (new tables, new columns, a new fold version) is
    // rebuilt, so its tables hold all of history in the new shape.
    for projection in projections::registry() {
        if let Some(reason) = projections::needs_rebuild(&pool, projection.as_ref()).await? {
            tracing::info!(projection = projection.name(), %reason, "rebuilding");
            projections::rebuild(
                &pool,
                projection.as_ref(),
                &projections::RebuildOptions::default(),
                &|_, _| {},
            )
            .await
            .with_context(|| format!("rebuilding {}", projection.name()))?;
        }
    }
    pool.close().await;
    Ok(())
}

/// The live projector runtime over every registered projection.
pub fn projector_runtime(settings: &Settings, pool: PgPool) -> projections::ProjectorRuntime {
    projections::ProjectorRuntime::new(
        pool,
        projections::registry(),
        projections::RuntimeOptions {
            batch_size: settings.projection_batch_size,
            poll_interval: Duration::from_millis(settings.projection_poll_interval_ms),
            retry_after: Duration::from_secs(settings.projection_retry_seconds),
            linger: Duration::from_millis(settings.projection_linger_ms),
            ..projections::RuntimeOptions::default()
        },
    )
}

/// The command bus: every command waits for the read models the API answers from.
pub fn command_bus(settings: &Settings, event_log: EventLog) -> crate::commands::CommandBus {
    crate::commands::CommandBus::new(
        event_log,
        &[
            projections::speckle::NAME,
            projections::webhooks::NAME,
            projections::mail::NAME,
        ],
        Duration::from_millis(settings.read_your_writes_timeout_ms),
    )
    .with_state_cache(
        settings.command_state_cache_streams,
        settings.command_state_cache_bytes,
    )
    .with_snapshots(settings.command_snapshot_every)
}

/// The S3 file store's options, when `STRATA_S3_ENDPOINT` is set.
pub fn blob_options(settings: &Settings) -> Option<workers::blobs::BlobOptions> {
    let endpoint = settings.s3_endpoint.clone()?;
    let secret = |s: &Option<Secret>| {
        s.as_ref()
            .map(|s| s.expose().to_owned())
            .unwrap_or_default()
    };
    Some(workers::blobs::BlobOptions {
        endpoint,
        public_endpoint: settings.s3_public_endpoint.clone(),
        bucket: settings.s3_bucket.clone(),
        region: settings.s3_region.clone(),
        access_key_id: secret(&settings.s3_access_key_id),
        secret_access_key: secret(&settings.s3_secret_access_key),
        presign_expiry: Duration::from_secs(settings.s3_presign_expiry_seconds),
        timeout: Duration::from_secs(settings.s3_request_timeout_seconds),
    })
}

/// The job runner over every registered handler.
pub fn job_runner(settings: &Settings, pool: PgPool) -> anyhow::Result<workers::JobRunner> {
    let bus = command_bus(settings, EventLog::new(pool.clone()));
    let handlers = workers::registry(workers::Dependencies {
        pool: pool.clone(),
        webhooks: crate::webhooks::delivery_options(settings),
        webhook_control: std::sync::Arc::new(crate::webhooks::BusWebhookControl::new(bus.clone())),
        ingestion_control: std::sync::Arc::new(crate::ingestion::BusIngestionControl::new(bus)),
        blobs: blob_options(settings).map(|o| workers::blobs::BlobStore::new(&o)),
        bundle_objects_max_bytes: settings.ingestion_objects_max_bundle_bytes,
        import_time_limit: Duration::from_secs(settings.file_import_time_limit_seconds),
        import_memory_limit_bytes: settings
            .file_import_memory_limit_mb
            .saturating_mul(1024 * 1024),
        mail: mail_options(settings),
        previews: match crate::previews::preview_options(settings) {
            Some(options) => Some((
                options,
                crate::previews::LivePreviewControl::new(settings, pool.clone())?
                    as std::sync::Arc<dyn workers::preview::PreviewControl>,
            )),
            None => None,
        },
    })
    .context("building the job handlers")?;
    Ok(workers::JobRunner::new(
        pool,
        handlers,
        workers::RunnerOptions {
            concurrency: settings.worker_concurrency,
            lease: Duration::from_secs(settings.job_lease_seconds),
            // Jobs get most of the shutdown grace to finish; the rest is for handing back.
            drain: Duration::from_secs(settings.shutdown_timeout_seconds).mul_f64(0.8),
            ..workers::RunnerOptions::default()
        },
    ))
}

/// The mail worker's settings; none when no SMTP host is set (email disabled).
pub fn mail_options(settings: &Settings) -> Option<workers::email::MailOptions> {
    let host = settings.smtp_host.clone()?;
    Some(workers::email::MailOptions {
        host,
        port: settings.smtp_port,
        // Validated when the settings were loaded.
        security: settings
            .smtp_tls
            .parse()
            .unwrap_or(workers::email::SmtpSecurity::StartTls),
        credentials: settings.smtp_username.as_ref().map(|u| {
            (
                u.expose().to_owned(),
                settings
                    .smtp_password
                    .as_ref()
                    .map(|p| p.expose().to_owned())
                    .unwrap_or_default(),
            )
        }),
        from: settings.email_from.clone(),
        timeout: Duration::from_secs(30),
        public_url: settings.origin(),
        server_name: settings.server_name.clone(),
        verification_minutes: settings.email_verification_timeout_minutes,
        reset_minutes: settings.password_reset_timeout_minutes,
    })
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "API listening");
    let settings = state.settings();
    let probe = tokio::spawn(state.db_gate().clone().watch(
        state.pool().clone(),
        Duration::from_millis(settings.database_probe_interval_ms),
        Duration::from_millis(settings.database_probe_timeout_ms),
    ));
    let _stop_probe = AbortOnDrop(probe);
    let header_timeout = Duration::from_secs(settings.http_header_read_timeout_seconds);
    connections(
        listener,
        crate::http::router(state),
        header_timeout,
        shutdown,
    )
    .await;
    Ok(())
}

/// The accept loop: each connection is served (HTTP/1 with upgrades for WebSockets, or HTTP/2)
/// with a deadline on every request head, which `axum::serve` cannot set. Once `shutdown`
/// resolves, no connection is accepted and each open one finishes its request in flight and
/// closes; this returns when all have.
async fn connections(
    listener: TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // CONNECT protocol for WebSockets over HTTP/2.
    builder.http2().enable_connect_protocol();
    let builder = std::sync::Arc::new(builder);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut open = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = open.join_next(), if !open.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Without TCP_NODELAY the small last write of a response (a chunked body's terminator)
        // waits for the client's delayed ACK: about 40 ms per streamed object download.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = router.clone().map_request(
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(remote));
                request
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(service);
        let builder = std::sync::Arc::clone(&builder);
        let stop = stop.clone();
        open.spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = stop.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.cancel();
    while open.join_next().await.is_some() {}
}

/// Aborts a background task when the scope that started it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

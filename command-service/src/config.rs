//! Layered configuration: built-in defaults, then an optional TOML file, then `STRATA_*`
//! environment variables. Every setting is listed in the README with its default.
//!
//! A setting that is missing where a command needs it, or that does not parse, stops the
//! process at start with a message naming the setting. Secrets are wrapped in [`Secret`], whose
//! `Debug` and `Display` never show the value, so they cannot reach a log by accident.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

/// A value that must never be logged: credentials, and URLs that may embed them.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pretty" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?} is not one of pretty, json")),
        }
    }
}

/// Every setting of the `strata` process. Field names are the TOML keys; the environment
/// variable is `STRATA_` plus the upper-cased name.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// HTTP port of the API.
    pub port: u16,
    /// Address the API binds to.
    pub bind_address: IpAddr,
    /// PostgreSQL URL the running processes use (the runtime role).
    pub database_url: Option<Secret>,
    /// PostgreSQL URL for migrations and rebuilds (the owning role); defaults to `database_url`.
    pub admin_database_url: Option<Secret>,
    /// Connection pool size per process.
    pub database_max_connections: u32,
    /// How long a request waits for a pooled connection before failing, in milliseconds.
    pub database_acquire_timeout_ms: u64,
    /// Redis URL (subscription fan-out, rate limits, caches).
    pub redis_url: Option<Secret>,
    /// Log line format.
    pub log_format: LogFormat,
    /// Log filter, in `tracing` env-filter syntax (e.g. `info,sqlx=warn`).
    pub log_level: String,
    /// OTLP/HTTP endpoint for traces (e.g. `http://127.0.0.1:4318/v1/traces`); none = no export.
    pub otlp_endpoint: Option<String>,
    /// The service name in traces.
    pub service_name: String,
    /// How long each `/readiness` dependency check may take, in milliseconds.
    pub readiness_timeout_ms: u64,
    /// How long to wait for in-flight requests on shutdown, in seconds.
    pub shutdown_timeout_seconds: u64,
    /// Most events one command may append.
    pub append_max_events: usize,
    /// Largest payload of one event, in bytes.
    pub append_max_payload_bytes: usize,
    /// Most events a projector folds in one transaction.
    pub projection_batch_size: i64,
    /// How often projectors look for new events without a notification, in milliseconds.
    pub projection_poll_interval_ms: u64,
    /// How long a halted projection waits before retrying its failing event, in seconds.
    pub projection_retry_seconds: u64,
    /// How long a mutation waits for the read models it affects, in milliseconds, before
    /// answering `PROJECTION_LAG` (the write itself is kept).
    pub read_your_writes_timeout_ms: u64,
    /// Jobs one worker process runs at once.
    pub worker_concurrency: usize,
    /// How long a worker's claim on a job lasts without renewal, in seconds.
    pub job_lease_seconds: u64,
    /// The server's name in `serverInfo`.
    pub server_name: String,
    /// The operating company, shown in `serverInfo`.
    pub server_company: Option<String>,
    /// A description, shown in `serverInfo`.
    pub server_description: Option<String>,
    /// Whom to contact, shown in `serverInfo`.
    pub admin_contact: Option<String>,
    /// The public origin clients and links use (`serverInfo.canonicalUrl`, preview URLs);
    /// defaults to `http://BIND_ADDRESS:PORT`.
    pub public_url: Option<String>,
    /// The Speckle server version whose API this server speaks, reported as
    /// `serverInfo.version` (clients gate features on it).
    pub speckle_version: String,
    /// Whether registering needs an invite.
    pub invite_only: bool,
    /// Largest single object accepted, in bytes (`serverInfo.configuration`).
    pub object_size_limit_bytes: usize,
    /// Largest multipart object upload, in bytes.
    pub object_multipart_upload_size_limit_bytes: usize,
    /// Target size of one piece of a streamed object download, after gzip: large pieces keep
    /// clients that re-split pending lines per piece (Python's requests) linear.
    pub object_download_chunk_bytes: usize,
    /// Gzip object downloads for clients that accept it. On for networks; off trades
    /// bandwidth for the client's decompression time (on loopback, specklepy's gunzip alone
    /// takes about twice its serialisation of the same tree).
    pub object_download_gzip: bool,
    /// Largest blob (file) upload, in bytes.
    pub blob_size_limit_bytes: usize,
    /// Deepest GraphQL query accepted.
    pub graphql_max_depth: usize,
    /// Most complex GraphQL query accepted (async-graphql's complexity: one per field).
    pub graphql_max_complexity: usize,
    /// Bytes the per-process cache of read-only GraphQL answers may hold (0 turns it off);
    /// answers are exact against the read model's checkpoint (`graphql::cache`).
    pub graphql_cache_bytes: usize,
    /// Largest single GraphQL answer the cache keeps.
    pub graphql_cache_entry_max_bytes: usize,
    /// Key of the HMAC that token digests are made with (at least 32 characters). Changing it
    /// invalidates every token.
    pub token_pepper: Option<Secret>,
    /// S3-compatible endpoint for uploaded files and previews (used by workers).
    pub s3_endpoint: Option<String>,
    /// S3 bucket.
    pub s3_bucket: String,
    /// S3 region.
    pub s3_region: String,
    /// S3 access key id.
    pub s3_access_key_id: Option<Secret>,
    /// S3 secret access key.
    pub s3_secret_access_key: Option<Secret>,
    /// SMTP host for transactional email (used by workers); none = email disabled.
    pub smtp_host: Option<String>,
    /// SMTP port.
    pub smtp_port: u16,
    /// SMTP user name.
    pub smtp_username: Option<Secret>,
    /// SMTP password.
    pub smtp_password: Option<Secret>,
    /// Sender address of outgoing email.
    pub email_from: String,
    /// How the SMTP connection is secured: `starttls`, `tls` or `none`.
    pub smtp_tls: String,
    /// How long an email verification code is valid.
    pub email_verification_timeout_minutes: u64,
    /// How long a password reset link is valid.
    pub password_reset_timeout_minutes: u64,
    /// Most webhooks one project may have.
    pub webhooks_max_per_project: usize,
    /// How long one webhook delivery attempt may take.
    pub webhook_timeout_seconds: u64,
    /// Delays before each retry of a failed delivery, comma-separated seconds.
    pub webhook_retry_schedule_seconds: String,
    /// Whether webhooks may target loopback, private and link-local addresses.
    pub webhook_allow_private_targets: bool,
    /// A webhook failing without a success for this long is switched off.
    pub webhook_disable_after_seconds: u64,
    /// Most response-body bytes kept per delivery attempt.
    pub webhook_response_body_limit_bytes: usize,
    /// Live events one subscriber may fall behind before its connection is closed.
    pub subscription_buffer_events: usize,
    /// Interval of the `ka` keep-alive on `graphql-ws` connections.
    pub subscription_keepalive_seconds: u64,
    /// How long a send to a subscriber may block before its connection is closed.
    pub subscription_send_timeout_seconds: u64,
    /// How long a verified token is trusted without the database (0 = never); revocations
    /// still apply at once on every replica.
    pub token_cache_seconds: u64,
    /// Whether rate limits apply.
    pub rate_limits_enabled: bool,
    /// Overrides of the default limits: `ACTION=regular/seconds,burst/seconds;…`.
    pub rate_limits: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 3000,
            bind_address: IpAddr::from([127, 0, 0, 1]),
            database_url: None,
            admin_database_url: None,
            database_max_connections: 20,
            database_acquire_timeout_ms: 5_000,
            redis_url: None,
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
            otlp_endpoint: None,
            service_name: "strata".to_owned(),
            readiness_timeout_ms: 2_000,
            shutdown_timeout_seconds: 30,
            append_max_events: 1_000,
            append_max_payload_bytes: 1024 * 1024,
            projection_batch_size: 500,
            projection_poll_interval_ms: 500,
            projection_retry_seconds: 5,
            read_your_writes_timeout_ms: 5_000,
            worker_concurrency: 8,
            job_lease_seconds: 60,
            server_name: "strata".to_owned(),
            server_company: None,
            server_description: None,
            admin_contact: None,
            public_url: None,
            speckle_version: "2.31.14".to_owned(),
            invite_only: false,
            object_size_limit_bytes: 100 * 1024 * 1024,
            object_multipart_upload_size_limit_bytes: 100 * 1024 * 1024,
            blob_size_limit_bytes: 100 * 1024 * 1024,
            object_download_chunk_bytes: 512 * 1024,
            object_download_gzip: true,
            graphql_max_depth: 24,
            graphql_max_complexity: 5_000,
            graphql_cache_bytes: 64 * 1024 * 1024,
            graphql_cache_entry_max_bytes: 1024 * 1024,
            token_pepper: None,
            s3_endpoint: None,
            s3_bucket: "strata".to_owned(),
            s3_region: "us-east-1".to_owned(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            smtp_host: None,
            smtp_port: 587,
            smtp_username: None,
            smtp_password: None,
            email_from: "strata@localhost".to_owned(),
            smtp_tls: "starttls".to_owned(),
            email_verification_timeout_minutes: 5,
            password_reset_timeout_minutes: 60,
            webhooks_max_per_project: 100,
            webhook_timeout_seconds: 10,
            webhook_retry_schedule_seconds: "5,300,1800,7200,18000,36000,36000".to_owned(),
            webhook_allow_private_targets: false,
            webhook_disable_after_seconds: 5 * 24 * 3600,
            webhook_response_body_limit_bytes: 4096,
            subscription_buffer_events: 1024,
            subscription_keepalive_seconds: 30,
            subscription_send_timeout_seconds: 10,
            token_cache_seconds: 10,
            rate_limits_enabled: true,
            rate_limits: String::new(),
        }
    }
}

/// Why the configuration is unusable. Each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    File {
        /// Path.
        path: String,
        /// Cause.
        reason: String,
    },
    /// A value does not parse.
    #[error("invalid setting {key}: {reason}")]
    Invalid {
        /// `STRATA_…` name or TOML key.
        key: String,
        /// Cause (never the value of a secret).
        reason: String,
    },
    /// A needed setting is absent.
    #[error("missing setting {env} (or `{key}` in the config file): {why}")]
    Missing {
        /// Environment variable.
        env: String,
        /// TOML key.
        key: String,
        /// What needs it.
        why: String,
    },
}

/// Environment variables with the prefix that are read by the scripts or tests, not the process.
const NOT_SETTINGS: &[&str] = &[
    "CONFIG",
    "PG_PORT",
    "REDIS_PORT",
    "S3_PORT",
    "MAIL_WEB_PORT",
    "MAIL_API_URL",
    "TOOLS_DIR",
];

fn parse_value<T: FromStr>(key: &str, raw: &str, secret: bool) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    raw.parse().map_err(|e: T::Err| ConfigError::Invalid {
        key: format!("STRATA_{}", key.to_uppercase()),
        reason: if secret {
            "does not parse".to_owned()
        } else {
            format!("{raw:?}: {e}")
        },
    })
}

fn set<T: FromStr>(
    env: &BTreeMap<String, String>,
    key: &str,
    slot: &mut T,
    secret: bool,
) -> Result<(), ConfigError>
where
    T::Err: fmt::Display,
{
    if let Some(raw) = env.get(key) {
        *slot = parse_value(key, raw, secret)?;
    }
    Ok(())
}

/// Like [`set`]; an empty value clears an optional setting.
fn set_opt<T: FromStr>(
    env: &BTreeMap<String, String>,
    key: &str,
    slot: &mut Option<T>,
    secret: bool,
) -> Result<(), ConfigError>
where
    T::Err: fmt::Display,
{
    match env.get(key).map(String::as_str) {
        None => {}
        Some("") => *slot = None,
        Some(raw) => *slot = Some(parse_value(key, raw, secret)?),
    }
    Ok(())
}

impl Settings {
    /// Loads settings: defaults, then the TOML file named by `file` or `STRATA_CONFIG`, then
    /// `STRATA_*` variables from `vars`. Returns the settings and the names of `STRATA_*`
    /// variables that match no setting (worth a warning: probably a typo).
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let env: BTreeMap<String, String> = vars
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("STRATA_").map(|k| (k.to_lowercase(), v)))
            .collect();
        let path = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("config").map(Into::into));
        let mut settings = match path {
            None => Settings::default(),
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::File {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?
            }
        };
        let s = &mut settings;
        set(&env, "port", &mut s.port, false)?;
        set(&env, "bind_address", &mut s.bind_address, false)?;
        set_opt(&env, "database_url", &mut s.database_url, true)?;
        set_opt(&env, "admin_database_url", &mut s.admin_database_url, true)?;
        set(
            &env,
            "database_max_connections",
            &mut s.database_max_connections,
            false,
        )?;
        set(
            &env,
            "database_acquire_timeout_ms",
            &mut s.database_acquire_timeout_ms,
            false,
        )?;
        set_opt(&env, "redis_url", &mut s.redis_url, true)?;
        set(&env, "log_format", &mut s.log_format, false)?;
        set(&env, "log_level", &mut s.log_level, false)?;
        set_opt(&env, "otlp_endpoint", &mut s.otlp_endpoint, false)?;
        set(&env, "service_name", &mut s.service_name, false)?;
        set(
            &env,
            "readiness_timeout_ms",
            &mut s.readiness_timeout_ms,
            false,
        )?;
        set(
            &env,
            "shutdown_timeout_seconds",
            &mut s.shutdown_timeout_seconds,
            false,
        )?;
        set(&env, "append_max_events", &mut s.append_max_events, false)?;
        set(
            &env,
            "append_max_payload_bytes",
            &mut s.append_max_payload_bytes,
            false,
        )?;
        set(
            &env,
            "projection_batch_size",
            &mut s.projection_batch_size,
            false,
        )?;
        set(
            &env,
            "projection_poll_interval_ms",
            &mut s.projection_poll_interval_ms,
            false,
        )?;
        set(
            &env,
            "projection_retry_seconds",
            &mut s.projection_retry_seconds,
            false,
        )?;
        set(
            &env,
            "read_your_writes_timeout_ms",
            &mut s.read_your_writes_timeout_ms,
            false,
        )?;
        set(&env, "worker_concurrency", &mut s.worker_concurrency, false)?;
        set(&env, "job_lease_seconds", &mut s.job_lease_seconds, false)?;
        set(&env, "server_name", &mut s.server_name, false)?;
        set_opt(&env, "server_company", &mut s.server_company, false)?;
        set_opt(&env, "server_description", &mut s.server_description, false)?;
        set_opt(&env, "admin_contact", &mut s.admin_contact, false)?;
        set_opt(&env, "public_url", &mut s.public_url, false)?;
        set(&env, "speckle_version", &mut s.speckle_version, false)?;
        set(&env, "invite_only", &mut s.invite_only, false)?;
        set(
            &env,
            "object_size_limit_bytes",
            &mut s.object_size_limit_bytes,
            false,
        )?;
        set(
            &env,
            "object_multipart_upload_size_limit_bytes",
            &mut s.object_multipart_upload_size_limit_bytes,
            false,
        )?;
        set(
            &env,
            "object_download_gzip",
            &mut s.object_download_gzip,
            false,
        )?;
        set(
            &env,
            "object_download_chunk_bytes",
            &mut s.object_download_chunk_bytes,
            false,
        )?;
        set(
            &env,
            "blob_size_limit_bytes",
            &mut s.blob_size_limit_bytes,
            false,
        )?;
        set(&env, "graphql_max_depth", &mut s.graphql_max_depth, false)?;
        set(
            &env,
            "graphql_max_complexity",
            &mut s.graphql_max_complexity,
            false,
        )?;
        set(
            &env,
            "graphql_cache_bytes",
            &mut s.graphql_cache_bytes,
            false,
        )?;
        set(
            &env,
            "graphql_cache_entry_max_bytes",
            &mut s.graphql_cache_entry_max_bytes,
            false,
        )?;
        set_opt(&env, "token_pepper", &mut s.token_pepper, true)?;
        set_opt(&env, "s3_endpoint", &mut s.s3_endpoint, false)?;
        set(&env, "s3_bucket", &mut s.s3_bucket, false)?;
        set(&env, "s3_region", &mut s.s3_region, false)?;
        set_opt(&env, "s3_access_key_id", &mut s.s3_access_key_id, true)?;
        set_opt(
            &env,
            "s3_secret_access_key",
            &mut s.s3_secret_access_key,
            true,
        )?;
        set_opt(&env, "smtp_host", &mut s.smtp_host, false)?;
        set(&env, "smtp_port", &mut s.smtp_port, false)?;
        set_opt(&env, "smtp_username", &mut s.smtp_username, true)?;
        set_opt(&env, "smtp_password", &mut s.smtp_password, true)?;
        set(&env, "email_from", &mut s.email_from, false)?;
        set(&env, "smtp_tls", &mut s.smtp_tls, false)?;
        set(
            &env,
            "email_verification_timeout_minutes",
            &mut s.email_verification_timeout_minutes,
            false,
        )?;
        set(
            &env,
            "password_reset_timeout_minutes",
            &mut s.password_reset_timeout_minutes,
            false,
        )?;
        set(
            &env,
            "webhooks_max_per_project",
            &mut s.webhooks_max_per_project,
            false,
        )?;
        set(
            &env,
            "webhook_timeout_seconds",
            &mut s.webhook_timeout_seconds,
            false,
        )?;
        set(
            &env,
            "webhook_retry_schedule_seconds",
            &mut s.webhook_retry_schedule_seconds,
            false,
        )?;
        set(
            &env,
            "webhook_allow_private_targets",
            &mut s.webhook_allow_private_targets,
            false,
        )?;
        set(
            &env,
            "webhook_disable_after_seconds",
            &mut s.webhook_disable_after_seconds,
            false,
        )?;
        set(
            &env,
            "webhook_response_body_limit_bytes",
            &mut s.webhook_response_body_limit_bytes,
            false,
        )?;
        set(
            &env,
            "subscription_buffer_events",
            &mut s.subscription_buffer_events,
            false,
        )?;
        set(
            &env,
            "subscription_keepalive_seconds",
            &mut s.subscription_keepalive_seconds,
            false,
        )?;
        set(
            &env,
            "subscription_send_timeout_seconds",
            &mut s.subscription_send_timeout_seconds,
            false,
        )?;
        set(
            &env,
            "rate_limits_enabled",
            &mut s.rate_limits_enabled,
            false,
        )?;
        set(&env, "rate_limits", &mut s.rate_limits, false)?;
        settings.validate()?;
        let known = Self::keys();
        let unknown = env
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .filter(|k| !NOT_SETTINGS.contains(&k.to_uppercase().as_str()))
            .filter(|k| !k.starts_with("test_"))
            .map(|k| format!("STRATA_{}", k.to_uppercase()))
            .collect();
        Ok((settings, unknown))
    }

    /// Every setting's key, in README order.
    pub fn keys() -> &'static [&'static str] {
        &[
            "port",
            "bind_address",
            "database_url",
            "admin_database_url",
            "database_max_connections",
            "database_acquire_timeout_ms",
            "redis_url",
            "log_format",
            "log_level",
            "otlp_endpoint",
            "service_name",
            "readiness_timeout_ms",
            "shutdown_timeout_seconds",
            "append_max_events",
            "append_max_payload_bytes",
            "s3_endpoint",
            "s3_bucket",
            "s3_region",
            "s3_access_key_id",
            "s3_secret_access_key",
            "smtp_host",
            "smtp_port",
            "smtp_username",
            "smtp_password",
            "email_from",
            "smtp_tls",
            "email_verification_timeout_minutes",
            "password_reset_timeout_minutes",
            "webhooks_max_per_project",
            "webhook_timeout_seconds",
            "webhook_retry_schedule_seconds",
            "webhook_allow_private_targets",
            "webhook_disable_after_seconds",
            "webhook_response_body_limit_bytes",
            "subscription_buffer_events",
            "subscription_keepalive_seconds",
            "subscription_send_timeout_seconds",
            "token_cache_seconds",
            "rate_limits_enabled",
            "rate_limits",
        ]
    }

    /// The public origin without a trailing slash (`public_url`, else the bind address).
    pub fn origin(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", self.bind_address, self.port))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The webhook retry delays, parsed (validated at load time).
    pub fn webhook_retry_schedule(&self) -> Result<Vec<std::time::Duration>, String> {
        self.webhook_retry_schedule_seconds
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<u64>()
                    .map(std::time::Duration::from_secs)
                    .map_err(|_| format!("{s:?} is not a number of seconds"))
            })
            .collect()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: format!("STRATA_{}", key.to_uppercase()),
            reason: reason.to_owned(),
        };
        for (key, url) in [
            ("database_url", &self.database_url),
            ("admin_database_url", &self.admin_database_url),
        ] {
            if let Some(url) = url
                && !(url.expose().starts_with("postgres://")
                    || url.expose().starts_with("postgresql://"))
            {
                return Err(invalid(key, "must start with postgres:// or postgresql://"));
            }
        }
        if let Some(url) = &self.redis_url
            && !(url.expose().starts_with("redis://") || url.expose().starts_with("rediss://"))
        {
            return Err(invalid(
                "redis_url",
                "must start with redis:// or rediss://",
            ));
        }
        if let Some(pepper) = &self.token_pepper
            && pepper.expose().len() < 32
        {
            return Err(invalid("token_pepper", "must be at least 32 characters"));
        }
        if let Err(reason) = self.smtp_tls.parse::<workers::email::SmtpSecurity>() {
            return Err(invalid("smtp_tls", &reason));
        }
        if self.email_verification_timeout_minutes == 0 {
            return Err(invalid(
                "email_verification_timeout_minutes",
                "must be at least 1",
            ));
        }
        if self.password_reset_timeout_minutes == 0 {
            return Err(invalid(
                "password_reset_timeout_minutes",
                "must be at least 1",
            ));
        }
        if let Err(reason) = self.webhook_retry_schedule() {
            return Err(invalid("webhook_retry_schedule_seconds", &reason));
        }
        if let Err(reason) = crate::ratelimit::parse(&self.rate_limits) {
            return Err(invalid("rate_limits", &reason));
        }
        if self.webhook_timeout_seconds == 0 {
            return Err(invalid("webhook_timeout_seconds", "must be at least 1"));
        }
        if self.database_max_connections == 0 {
            return Err(invalid("database_max_connections", "must be at least 1"));
        }
        if self.projection_batch_size < 1 {
            return Err(invalid("projection_batch_size", "must be at least 1"));
        }
        if self.worker_concurrency == 0 {
            return Err(invalid("worker_concurrency", "must be at least 1"));
        }
        if self.job_lease_seconds < 3 {
            return Err(invalid("job_lease_seconds", "must be at least 3"));
        }
        if self.append_max_events == 0 {
            return Err(invalid("append_max_events", "must be at least 1"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(invalid("log_level", &e.to_string()));
        }
        Ok(())
    }

    /// The runtime database URL, or a [`ConfigError::Missing`] naming who needs it.
    pub fn require_database_url(&self, why: &str) -> Result<&Secret, ConfigError> {
        self.database_url
            .as_ref()
            .ok_or_else(|| missing("database_url", why))
    }

    /// The admin database URL, falling back to the runtime one.
    pub fn require_admin_database_url(&self, why: &str) -> Result<&Secret, ConfigError> {
        self.admin_database_url
            .as_ref()
            .or(self.database_url.as_ref())
            .ok_or_else(|| missing("admin_database_url", why))
    }

    /// The token pepper, or a [`ConfigError::Missing`].
    pub fn require_token_pepper(&self, why: &str) -> Result<&Secret, ConfigError> {
        self.token_pepper
            .as_ref()
            .ok_or_else(|| missing("token_pepper", why))
    }

    /// The Redis URL, or a [`ConfigError::Missing`].
    pub fn require_redis_url(&self, why: &str) -> Result<&Secret, ConfigError> {
        self.redis_url
            .as_ref()
            .ok_or_else(|| missing("redis_url", why))
    }
}

fn missing(key: &str, why: &str) -> ConfigError {
    ConfigError::Missing {
        env: format!("STRATA_{}", key.to_uppercase()),
        key: key.to_owned(),
        why: why.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_then_env_overrides() {
        let (s, unknown) = Settings::load(
            None,
            vars(&[
                ("STRATA_PORT", "4000"),
                ("STRATA_DATABASE_URL", "postgres://u:p@h/d"),
                ("STRATA_SMTP_HOST", ""),
                ("STRATA_PORTT", "1"),
                ("STRATA_PG_PORT", "55432"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.port, 4000);
        assert_eq!(s.database_max_connections, 20);
        assert_eq!(
            s.database_url.as_ref().map(Secret::expose),
            Some("postgres://u:p@h/d")
        );
        assert_eq!(s.smtp_host, None);
        assert_eq!(unknown, vec!["STRATA_PORTT".to_owned()]);
        assert!(s.require_redis_url("x").is_err());
        assert_eq!(
            s.require_admin_database_url("x").unwrap().expose(),
            "postgres://u:p@h/d"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let (s, _) = Settings::load(
            None,
            vars(&[
                ("STRATA_DATABASE_URL", "postgres://u:hunter2@h/d"),
                ("STRATA_SMTP_PASSWORD", "pw9"),
            ]),
        )
        .unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("pw9"),
            "{shown}"
        );
    }

    #[test]
    fn every_key_is_documented_in_the_readme() {
        let readme = include_str!("../../README.md");
        for key in Settings::keys() {
            let env = format!("STRATA_{}", key.to_uppercase());
            assert!(readme.contains(&env), "README does not document {env}");
        }
    }
}

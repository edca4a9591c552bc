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

/// A type a setting may have: how its `STRATA_*` variable parses, and whether its value must
/// never be shown.
pub trait SettingValue: Sized {
    /// Secret values are never echoed, not even in a parse error.
    const SECRET: bool = false;
    /// Parses the variable's text.
    fn parse_setting(raw: &str) -> Result<Self, String>;
}

macro_rules! from_str_settings {
    ($($ty:ty),* $(,)?) => {$(
        impl SettingValue for $ty {
            fn parse_setting(raw: &str) -> Result<Self, String> {
                raw.parse().map_err(|e| format!("{raw:?}: {e}"))
            }
        }
    )*};
}

from_str_settings!(
    u16,
    u32,
    u64,
    usize,
    i64,
    bool,
    String,
    IpAddr,
    LogFormat,
    schema::session::PlanCacheMode,
);

impl SettingValue for Secret {
    const SECRET: bool = true;
    fn parse_setting(raw: &str) -> Result<Self, String> {
        Ok(Self::new(raw))
    }
}

/// An optional setting: an empty variable clears it.
impl<T: SettingValue> SettingValue for Option<T> {
    const SECRET: bool = T::SECRET;
    fn parse_setting(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            Ok(None)
        } else {
            T::parse_setting(raw).map(Some)
        }
    }
}

/// Declares every setting once: its doc, type and default. The struct, its `Default`, the key
/// list (unknown-variable warnings, the README check) and the environment layer all follow
/// from this one list, so a setting cannot be declared and then not read.
macro_rules! settings {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty = $default:expr ),* $(,)?) => {
        /// Every setting of the `strata` process. Field names are the TOML keys; the
        /// environment variable is `STRATA_` plus the upper-cased name.
        #[derive(Clone, Debug, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Settings {
            $( $(#[$doc])* pub $name: $ty, )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        impl Settings {
            /// Every setting's key (the TOML key; `STRATA_` plus upper case is the variable).
            pub fn keys() -> &'static [&'static str] {
                &[ $( stringify!($name), )* ]
            }

            /// Applies the `STRATA_*` variables (keys lower-cased, prefix stripped).
            fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
                $(
                    if let Some(raw) = env.get(stringify!($name)) {
                        self.$name = <$ty as SettingValue>::parse_setting(raw).map_err(|reason| {
                            ConfigError::Invalid {
                                key: env_name(stringify!($name)),
                                reason: if <$ty as SettingValue>::SECRET {
                                    "does not parse".to_owned()
                                } else {
                                    reason
                                },
                            }
                        })?;
                    }
                )*
                Ok(())
            }
        }
    };
}

fn env_name(key: &str) -> String {
    format!("STRATA_{}", key.to_uppercase())
}

settings! {
    /// HTTP port of the API.
    port: u16 = 3000,
    /// Address the API binds to.
    bind_address: IpAddr = IpAddr::from([127, 0, 0, 1]),
    /// Origins whose web pages may call the API (CORS): `*` for any (as the original), or a
    /// comma-separated list such as `https://app.example.com,http://localhost:8080`.
    cors_allowed_origins: String = "*".to_owned(),
    /// PostgreSQL URL the running processes use (the runtime role).
    database_url: Option<Secret> = None,
    /// PostgreSQL URL for migrations and rebuilds (the owning role); defaults to `database_url`.
    admin_database_url: Option<Secret> = None,
    /// Connection pool size per process.
    database_max_connections: u32 = 20,
    /// How long a request waits for a pooled connection before failing, in milliseconds.
    database_acquire_timeout_ms: u64 = 5_000,
    /// How database sessions plan prepared statements (PostgreSQL's `plan_cache_mode`):
    /// `force_generic_plan` plans each statement once per connection; `auto` lets PostgreSQL
    /// plan again per call, as it chooses.
    database_plan_cache_mode: schema::session::PlanCacheMode =
        schema::session::PlanCacheMode::ForceGenericPlan,
    /// How often each API process checks that PostgreSQL answers, in milliseconds; while it
    /// does not, requests are refused at once (`SERVICE_UNAVAILABLE`, 503).
    database_probe_interval_ms: u64 = 500,
    /// How long one such check may take, in milliseconds.
    database_probe_timeout_ms: u64 = 1_000,
    /// The `Retry-After` given to requests refused while PostgreSQL is down, in seconds.
    database_retry_after_seconds: u64 = 5,
    /// Redis URL (subscription fan-out, rate limits, caches).
    redis_url: Option<Secret> = None,
    /// Longest wait between attempts to reconnect to a lost Redis, in milliseconds (attempts
    /// start at 100 ms and double). Live subscriptions are refused while Redis is lost, so
    /// this bounds how long they stay refused after it is back.
    redis_reconnect_max_ms: u64 = 1_000,
    /// Log line format.
    log_format: LogFormat = LogFormat::Pretty,
    /// Log filter, in `tracing` env-filter syntax (e.g. `info,sqlx=warn`).
    log_level: String = "info".to_owned(),
    /// OTLP/HTTP endpoint for traces (e.g. `http://127.0.0.1:4318/v1/traces`); none = no export.
    otlp_endpoint: Option<String> = None,
    /// The service name in traces.
    service_name: String = "strata".to_owned(),
    /// How long each `/readiness` dependency check may take, in milliseconds.
    readiness_timeout_ms: u64 = 2_000,
    /// How long to wait for in-flight requests on shutdown, in seconds.
    shutdown_timeout_seconds: u64 = 30,
    /// Most events one command may append.
    append_max_events: usize = 1_000,
    /// Largest payload of one event, in bytes.
    append_max_payload_bytes: usize = 1024 * 1024,
    /// Streams whose head each API process remembers from its own appends, so its next
    /// one-event append there needs no head lookup and no hashing in the database.
    append_head_cache_streams: usize = 10_000,
    /// Most events a projector folds in one transaction.
    projection_batch_size: i64 = 500,
    /// How often projectors look for new events without a notification, in milliseconds.
    projection_poll_interval_ms: u64 = 500,
    /// How long a projector that no command waits for (`stream_heads`) lets pass after a
    /// wake-up before it folds, in milliseconds, so the events of that time share one batch.
    projection_linger_ms: u64 = 20,
    /// How long a halted projection waits before retrying its failing event, in seconds.
    projection_retry_seconds: u64 = 5,
    /// How long a mutation waits for the read models it affects, in milliseconds, before
    /// answering `PROJECTION_LAG` (the write itself is kept).
    read_your_writes_timeout_ms: u64 = 5_000,
    /// How many aggregates' states each API process keeps between commands, so a command
    /// costs the same in a long-lived project as in a new one (0 folds every stream anew).
    command_state_cache_streams: usize = 10_000,
    /// How many bytes (estimated) those states may hold together in each API process: a
    /// project's fold grows with its models and versions (≈ 700 B a model and version). Over
    /// it, the least recently used go; a state larger than it is folded anew by every command.
    command_state_cache_bytes: usize = 256 * 1024 * 1024,
    /// How many events a project's stream grows by (and at least a sixteenth of its length)
    /// before its folded state is stored again as a snapshot, from which a process that has
    /// none cached starts (0: no snapshots are stored or read).
    command_snapshot_every: u64 = 1_000,
    /// Jobs one worker process runs at once.
    worker_concurrency: usize = 8,
    /// How long a worker's claim on a job lasts without renewal, in seconds.
    job_lease_seconds: u64 = 60,
    /// The server's name in `serverInfo`.
    server_name: String = "strata".to_owned(),
    /// The operating company, shown in `serverInfo`.
    server_company: Option<String> = None,
    /// A description, shown in `serverInfo`.
    server_description: Option<String> = None,
    /// Whom to contact, shown in `serverInfo`.
    admin_contact: Option<String> = None,
    /// The public origin clients and links use (`serverInfo.canonicalUrl`, preview URLs);
    /// defaults to `http://BIND_ADDRESS:PORT`.
    public_url: Option<String> = None,
    /// The Speckle server version whose API this server speaks, reported as
    /// `serverInfo.version` (clients gate features on it).
    speckle_version: String = "2.31.14".to_owned(),
    /// Whether registering needs an invite.
    invite_only: bool = false,
    /// Whether server guests may create projects (they may not in the original).
    guests_may_create_projects: bool = false,
    /// Largest single object accepted, in bytes (`serverInfo.configuration`).
    object_size_limit_bytes: usize = 100 * 1024 * 1024,
    /// Largest multipart object upload, in bytes.
    object_multipart_upload_size_limit_bytes: usize = 100 * 1024 * 1024,
    /// Target size of one piece of a streamed object download, after gzip: large pieces keep
    /// clients that re-split pending lines per piece (Python's requests) linear.
    object_download_chunk_bytes: usize = 512 * 1024,
    /// Gzip object downloads for clients that accept it. On for networks; off trades
    /// bandwidth for the client's decompression time (on loopback, specklepy's gunzip alone
    /// takes about twice its serialisation of the same tree).
    object_download_gzip: bool = true,
    /// Largest blob (file) upload, in bytes.
    blob_size_limit_bytes: usize = 100 * 1024 * 1024,
    /// Deepest GraphQL query accepted.
    graphql_max_depth: usize = 24,
    /// Most complex GraphQL query accepted (async-graphql's complexity: one per field).
    graphql_max_complexity: usize = 5_000,
    /// Most operations in one batched GraphQL request (a JSON array); a larger batch is
    /// refused whole (400) before any of it runs.
    graphql_max_batch_operations: usize = 32,
    /// Largest GraphQL request body in bytes; a larger one is refused (413
    /// `PAYLOAD_TOO_LARGE`) before it is read whole, and before authentication.
    graphql_body_limit_bytes: usize = 10 * 1024 * 1024,
    /// Seconds a client may take to send a GraphQL request's whole body; a slower one is
    /// answered 408 `REQUEST_TIMEOUT` and disconnected (a slow-body slowloris).
    graphql_body_read_timeout_seconds: u64 = 30,
    /// Seconds a connection may take to deliver a request's whole head (request line and
    /// headers), waiting between keep-alive requests included; a slower client is
    /// disconnected (slowloris).
    http_header_read_timeout_seconds: u64 = 30,
    /// Bytes the per-process cache of read-only GraphQL answers may hold (0 turns it off);
    /// answers are exact against the read model's checkpoint (`graphql::cache`).
    graphql_cache_bytes: usize = 64 * 1024 * 1024,
    /// Largest single GraphQL answer the cache keeps.
    graphql_cache_entry_max_bytes: usize = 1024 * 1024,
    /// Key of the HMAC that token digests are made with (at least 32 characters). Changing it
    /// invalidates every token.
    token_pepper: Option<Secret> = None,
    /// S3-compatible endpoint for uploaded files (model ingestion bundles, imports, previews);
    /// none = the `/api/v2` bundle rail answers 503.
    s3_endpoint: Option<String> = None,
    /// The S3 endpoint as clients reach it: presigned upload and download URLs are signed for
    /// it (none = `STRATA_S3_ENDPOINT`).
    s3_public_endpoint: Option<String> = None,
    /// How long a presigned upload or download URL works.
    s3_presign_expiry_seconds: u64 = 3600,
    /// How long one request to S3 may take.
    s3_request_timeout_seconds: u64 = 30,
    /// S3 bucket.
    s3_bucket: String = "strata".to_owned(),
    /// S3 region.
    s3_region: String = "us-east-1".to_owned(),
    /// S3 access key id.
    s3_access_key_id: Option<Secret> = None,
    /// S3 secret access key.
    s3_secret_access_key: Option<Secret> = None,
    /// Idle timeout of a model ingestion whose client sends none: it fails when no progress
    /// is reported for this long.
    ingestion_default_idle_timeout_seconds: u32 = 1800,
    /// Most files one bundle upload may sign or complete.
    ingestion_max_files: usize = 1000,
    /// Largest bundle (all its files) a worker turns into Speckle objects for the viewer and
    /// older clients; larger bundles keep only their files (a worker holds one bundle in
    /// memory while converting it).
    ingestion_objects_max_bundle_bytes: u64 = 1024 * 1024 * 1024,
    /// The longest one file import's conversion may take before its ingestion fails.
    file_import_time_limit_seconds: u64 = 600,
    /// The most memory one file import may be estimated to need (file size x the format's
    /// measured peak factor: IFC 16, OBJ and STL 6), in MiB; larger files fail at once.
    file_import_memory_limit_mb: u64 = 4096,
    /// The built viewer page (`deploy/build-viewer` prints it), served at `/_strata/viewer/`;
    /// none = this process neither serves the page nor renders previews (their jobs wait).
    preview_viewer_dir: Option<String> = None,
    /// The chromedriver binary the preview worker starts.
    preview_chromedriver: String = "chromedriver".to_owned(),
    /// The Chromium binary; none = chromedriver's default.
    preview_chromium: Option<String> = None,
    /// The origin the preview browser loads the viewer page and objects from (this server or
    /// any replica); none = the public URL.
    preview_server_url: Option<String> = None,
    /// The longest one preview render may take (load, draw, every angle).
    preview_render_timeout_seconds: u64 = 120,
    /// Renders before the preview browser is restarted.
    preview_max_renders_per_browser: u32 = 200,
    /// The preview browser's process tree is restarted past this memory (PSS: shared pages
    /// counted once).
    preview_max_browser_rss_mb: u64 = 1536,
    /// Angles rendered around each model (the original: 24; the web app scrubs them).
    preview_angles: u32 = 24,
    /// How long the page's read grant for a project's objects lasts.
    preview_grant_seconds: u64 = 600,
    /// How long the web viewer page's read grant for one project's objects lasts.
    web_viewer_grant_seconds: u64 = 3600,
    /// The Ed25519 key seals of the event log are signed with: 64 hex characters (a 32-byte
    /// seed; `strata audit key --generate` makes one). None = no seals.
    audit_signing_key: Option<Secret> = None,
    /// How often the projectors' process seals the log (0 = only `strata audit seal`).
    audit_seal_interval_seconds: u64 = 3600,
    /// SMTP host for transactional email (used by workers); none = email disabled.
    smtp_host: Option<String> = None,
    /// SMTP port.
    smtp_port: u16 = 587,
    /// SMTP user name.
    smtp_username: Option<Secret> = None,
    /// SMTP password.
    smtp_password: Option<Secret> = None,
    /// Sender address of outgoing email.
    email_from: String = "strata@localhost".to_owned(),
    /// How the SMTP connection is secured: `starttls`, `tls` or `none`.
    smtp_tls: String = "starttls".to_owned(),
    /// How long an email verification code is valid.
    email_verification_timeout_minutes: u64 = 5,
    /// How long a password reset link is valid.
    password_reset_timeout_minutes: u64 = 60,
    /// Most webhooks one project may have.
    webhooks_max_per_project: usize = 100,
    /// How long one webhook delivery attempt may take.
    webhook_timeout_seconds: u64 = 10,
    /// Delays before each retry of a failed delivery, comma-separated seconds.
    webhook_retry_schedule_seconds: String = "5,300,1800,7200,18000,36000,36000".to_owned(),
    /// Whether webhooks may target loopback, private and link-local addresses.
    webhook_allow_private_targets: bool = false,
    /// A webhook failing without a success for this long is switched off.
    webhook_disable_after_seconds: u64 = 5 * 24 * 3600,
    /// Most response-body bytes kept per delivery attempt.
    webhook_response_body_limit_bytes: usize = 4096,
    /// Live events one subscriber may fall behind before its connection is closed.
    subscription_buffer_events: usize = 1024,
    /// Interval of the `ka` keep-alive on `graphql-ws` connections.
    subscription_keepalive_seconds: u64 = 30,
    /// How long a send to a subscriber may block before its connection is closed.
    subscription_send_timeout_seconds: u64 = 10,
    /// Most subscription connections one user may hold open on one API process; the next
    /// `connection_init` is refused with close code 4429.
    subscription_max_connections_per_user: usize = 100,
    /// How long a verified token is trusted without the database (0 = never); revocations
    /// still apply at once on every replica.
    token_cache_seconds: u64 = 10,
    /// Whether rate limits apply.
    rate_limits_enabled: bool = true,
    /// Overrides of the default limits: `ACTION=regular/seconds,burst/seconds;…`.
    rate_limits: String = String::new(),
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
        settings.apply_env(&env)?;
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

    /// The public origin without a trailing slash (`public_url`, else the bind address).
    pub fn origin(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", self.bind_address, self.port))
            .trim_end_matches('/')
            .to_owned()
    }

    /// The CORS origins: `None` for any origin, else the listed ones (validated at load time).
    pub fn cors_origins(&self) -> Result<Option<Vec<String>>, String> {
        let raw = self.cors_allowed_origins.trim();
        if raw == "*" {
            return Ok(None);
        }
        let origins: Vec<String> = raw
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        if origins.is_empty() {
            return Err("must be * or a comma-separated list of origins".to_owned());
        }
        for origin in &origins {
            let rest = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .ok_or_else(|| format!("{origin:?} must start with http:// or https://"))?;
            if rest.is_empty() || rest.contains('/') || !origin.is_ascii() {
                return Err(format!(
                    "{origin:?} is not an origin (scheme://host[:port])"
                ));
            }
        }
        Ok(Some(origins))
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
        if let Err(reason) = crate::ratelimit::limits::parse(&self.rate_limits) {
            return Err(invalid("rate_limits", &reason));
        }
        if self.webhook_timeout_seconds == 0 {
            return Err(invalid("webhook_timeout_seconds", "must be at least 1"));
        }
        if self.database_probe_interval_ms == 0 {
            return Err(invalid("database_probe_interval_ms", "must be at least 1"));
        }
        if self.database_probe_timeout_ms == 0 {
            return Err(invalid("database_probe_timeout_ms", "must be at least 1"));
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
        if self.graphql_body_read_timeout_seconds == 0 {
            return Err(invalid(
                "graphql_body_read_timeout_seconds",
                "must be at least 1",
            ));
        }
        if self.graphql_body_limit_bytes == 0 {
            return Err(invalid("graphql_body_limit_bytes", "must be at least 1"));
        }
        if self.append_max_events == 0 {
            return Err(invalid("append_max_events", "must be at least 1"));
        }
        if let Err(reason) = self.cors_origins() {
            return Err(invalid("cors_allowed_origins", &reason));
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

    /// Each declared setting is read from its variable: a probe value either changes the
    /// loaded settings or is refused naming that very variable.
    #[test]
    fn every_setting_is_read_from_the_environment() {
        let defaults = format!("{:?}", Settings::default());
        for key in Settings::keys() {
            let env = format!("STRATA_{}", key.to_uppercase());
            match Settings::load(None, vars(&[(&env, "zz-probe-1")])) {
                Ok((s, unknown)) => {
                    assert!(unknown.is_empty(), "{env}: {unknown:?}");
                    assert_ne!(format!("{s:?}"), defaults, "{env} is not read");
                }
                Err(e) => assert!(e.to_string().contains(&env), "{env}: {e}"),
            }
        }
        let (s, _) = Settings::load(None, vars(&[("STRATA_TOKEN_CACHE_SECONDS", "0")])).unwrap();
        assert_eq!(s.token_cache_seconds, 0);
    }

    /// The README's table names only real settings (or the scripts' own variables).
    #[test]
    fn every_readme_setting_is_a_key() {
        let readme = include_str!("../../README.md");
        for line in readme.lines() {
            let Some(rest) = line.strip_prefix("| `STRATA_") else {
                continue;
            };
            let name = rest.split('`').next().unwrap_or_default();
            assert!(
                Settings::keys().contains(&name.to_lowercase().as_str())
                    || NOT_SETTINGS.contains(&name),
                "README lists STRATA_{name}, which is no setting"
            );
        }
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

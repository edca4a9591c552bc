//! Accounts: registration, sign-in, the access-code flow, and personal/app tokens.
//!
//! Secrets never enter the event log: password hashes (argon2id) and token digests
//! (HMAC-SHA-256 keyed with the server's pepper) live in the credential store
//! (`schema/migrations/*_credentials.sql`). Tokens are high-entropy, so a fast keyed hash with a
//! constant-time comparison is as safe as bcrypt and costs microseconds instead of ~85 ms.

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use domain::policy::{Principal, Scope, ServerRole};
use domain::user::UserCommand;
use domain::{Email, EventMetadata, UserName};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use crate::commands::{CommandBus, CommandError, UserAggregate, new_id};

mod apps;
mod email;
mod erasure;

pub use erasure::Deletion;

use crate::config::Secret;
pub use apps::{AppFields, AppInfo, ResolvedApp};

/// An application that may exchange access codes for tokens (the original's default apps;
/// their secret equals their id, as there).
#[derive(Clone, Copy, Debug)]
pub struct App {
    /// Id and secret.
    pub id: &'static str,
    /// Name; tokens are called `<name>-token`.
    pub name: &'static str,
    /// Whether it gets every scope, or the connector set.
    pub all_scopes: bool,
    /// Where the browser goes after the person decides (the original's, e.g. a connector's
    /// local listener); `None`: this server's own address.
    pub redirect_url: Option<&'static str>,
}

/// The default apps.
pub const DEFAULT_APPS: &[App] = &[
    App {
        id: "spklwebapp",
        name: "Speckle Web Manager",
        all_scopes: true,
        redirect_url: None,
    },
    App {
        id: "explorer",
        name: "Speckle Explorer",
        all_scopes: true,
        redirect_url: None,
    },
    App {
        id: "sdm",
        name: "Speckle Desktop Manager",
        all_scopes: false,
        redirect_url: Some("speckle://account"),
    },
    App {
        id: "sdui",
        name: "Speckle DUI",
        all_scopes: false,
        redirect_url: Some("https://dui.speckle.systems/authn/callback"),
    },
    App {
        id: "sca",
        name: "Speckle Connector",
        all_scopes: false,
        redirect_url: Some("http://localhost:29363"),
    },
    App {
        id: "sdas",
        name: "Speckle Connector (desktop auth service)",
        all_scopes: false,
        redirect_url: Some("http://localhost:29364"),
    },
    App {
        id: "connectrV3",
        name: "Desktop Connectors",
        all_scopes: false,
        redirect_url: Some("http://localhost:29355"),
    },
    App {
        id: "spklexcel",
        name: "Speckle Connector For Excel",
        all_scopes: false,
        redirect_url: Some("https://speckle-excel.netlify.app"),
    },
];

impl App {
    /// The scopes its tokens carry.
    pub fn scopes(&self) -> Vec<Scope> {
        if self.all_scopes {
            Scope::KNOWN.to_vec()
        } else {
            vec![
                Scope::STREAMS_READ,
                Scope::STREAMS_WRITE,
                Scope::PROFILE_READ,
                Scope::PROFILE_EMAIL,
                Scope::USERS_READ,
                Scope::USERS_INVITE,
            ]
        }
    }
}

/// Explicit limits of the account flows.
#[derive(Clone, Debug)]
pub struct AccountLimits {
    /// Shortest password accepted.
    pub min_password_chars: usize,
    /// Longest password accepted (argon2 input is bounded on purpose).
    pub max_password_chars: usize,
    /// How long an access code may be exchanged.
    pub access_code_ttl: Duration,
    /// Lifespan of tokens issued to apps.
    pub app_token_ttl: Duration,
    /// Lifespan of refresh tokens.
    pub refresh_token_ttl: Duration,
    /// Default lifespan of personal tokens.
    pub personal_token_ttl: Duration,
    /// How long an email verification code is valid.
    pub verification_code_ttl: Duration,
    /// Wrong guesses one verification code survives.
    pub verification_code_attempts: i32,
    /// How long a password reset link is valid.
    pub password_reset_ttl: Duration,
}

impl Default for AccountLimits {
    fn default() -> Self {
        Self {
            min_password_chars: 8,
            max_password_chars: 256,
            access_code_ttl: Duration::from_secs(600),
            app_token_ttl: Duration::from_secs(90 * 24 * 3600),
            refresh_token_ttl: Duration::from_secs(180 * 24 * 3600),
            personal_token_ttl: Duration::from_secs(100 * 365 * 24 * 3600),
            verification_code_ttl: Duration::from_secs(5 * 60),
            verification_code_attempts: 5,
            password_reset_ttl: Duration::from_secs(3600),
        }
    }
}

/// Why an account operation failed; each maps to the original's status and message.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Bad input (400).
    #[error("{0}")]
    Invalid(String),
    /// The email is taken (400).
    #[error("That email is already in use.")]
    EmailTaken,
    /// Registration is closed without an invite (403).
    #[error("This server is invite only.")]
    InviteOnly,
    /// Wrong email or password (401).
    #[error("Invalid credentials.")]
    BadCredentials,
    /// An access code, refresh token or app did not check out (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Not allowed (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// A command failed.
    #[error("{0}")]
    Command(#[from] CommandError),
    /// Our failure (500); the cause chain is kept for the log.
    #[error("account store error: {0:#}")]
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

/// A presented token that is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidToken;

/// Why a presented token was not taken.
#[derive(Debug)]
pub enum TokenError {
    /// Unknown, revoked, expired or malformed: the caller's token is bad (403).
    Invalid,
    /// The credential store could not be asked (the database is down, say): nothing is known
    /// about the token, so it must not be answered as invalid (a client would drop it).
    Unavailable(sqlx::Error),
}

impl From<InvalidToken> for TokenError {
    fn from(_: InvalidToken) -> Self {
        Self::Invalid
    }
}

/// The account service.
#[derive(Clone)]
pub struct Accounts {
    pool: PgPool,
    bus: CommandBus,
    pepper: Secret,
    limits: AccountLimits,
    invite_only: bool,
    tokens: std::sync::Arc<TokenCache>,
    email_enabled: bool,
    origin: String,
}

/// Verified tokens, kept briefly so most requests skip the database. Every entry carries the
/// revocation epoch (a Redis counter every revocation increments) it was verified under; an
/// entry from an older epoch is not trusted, so a revocation on any replica is honoured by all
/// at once. Without Redis, nothing is cached.
struct TokenCache {
    redis: Option<fred::clients::Client>,
    ttl: std::time::Duration,
    key: std::sync::Arc<tokio::sync::OnceCell<String>>,
    /// The epoch, read once per wave of requests (each still sees a read begun after it
    /// arrived, so a revocation that finished before a request is honoured for it).
    epoch: Option<std::sync::Arc<crate::coalesce::SharedRead<Option<i64>>>>,
    entries: std::sync::Mutex<std::collections::HashMap<String, CachedToken>>,
}

struct CachedToken {
    digest: Vec<u8>,
    principal: Principal,
    epoch: i64,
    until: std::time::Instant,
}

/// The Redis key of the revocation epoch (per database schema, so test schemas never share
/// one), looked up once.
async fn epoch_key<'a>(
    pool: &sqlx::PgPool,
    key: &'a tokio::sync::OnceCell<String>,
) -> Option<&'a str> {
    key.get_or_try_init(|| async {
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(pool)
            .await?;
        Ok::<_, sqlx::Error>(format!("strata:{schema}:token-epoch"))
    })
    .await
    .ok()
    .map(String::as_str)
}

/// Most tokens kept in one process's cache.
const TOKEN_CACHE_MAX: usize = 100_000;

/// How long the epoch check may take before the cache is bypassed.
const EPOCH_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

impl Accounts {
    /// The service over `pool`, issuing commands through `bus`.
    pub fn new(pool: PgPool, bus: CommandBus, pepper: Secret, invite_only: bool) -> Self {
        Self {
            pool,
            bus,
            pepper,
            limits: AccountLimits::default(),
            invite_only,
            tokens: std::sync::Arc::new(TokenCache {
                redis: None,
                ttl: std::time::Duration::ZERO,
                key: std::sync::Arc::default(),
                epoch: None,
                entries: std::sync::Mutex::default(),
            }),
            email_enabled: false,
            origin: String::new(),
        }
    }

    /// The public origin, where the default apps send users back with their access code.
    pub fn with_origin(mut self, origin: String) -> Self {
        self.origin = origin;
        self
    }

    /// Caches verified tokens for `ttl`, checking the revocation epoch in `redis`.
    pub fn with_token_cache(
        mut self,
        redis: fred::clients::Client,
        ttl: std::time::Duration,
    ) -> Self {
        let key: std::sync::Arc<tokio::sync::OnceCell<String>> = std::sync::Arc::default();
        let epoch = {
            let (redis, pool, key) = (redis.clone(), self.pool.clone(), key.clone());
            crate::coalesce::SharedRead::new(move || {
                let (redis, pool, key) = (redis.clone(), pool.clone(), key.clone());
                Box::pin(async move {
                    use fred::prelude::KeysInterface;
                    let key = epoch_key(&pool, &key).await?;
                    match tokio::time::timeout(EPOCH_TIMEOUT, redis.get::<Option<i64>, _>(key))
                        .await
                    {
                        Ok(Ok(epoch)) => Some(epoch.unwrap_or(0)), // no key yet: nothing revoked
                        _ => None,
                    }
                })
            })
        };
        self.tokens = std::sync::Arc::new(TokenCache {
            redis: Some(redis),
            ttl,
            key,
            epoch: Some(epoch),
            entries: std::sync::Mutex::default(),
        });
        self
    }

    async fn epoch_key(&self) -> Option<&str> {
        epoch_key(&self.pool, &self.tokens.key).await
    }

    /// The current revocation epoch, or `None` (cache bypassed) when Redis cannot say.
    async fn token_epoch(&self) -> Option<i64> {
        if self.tokens.ttl.is_zero() {
            return None;
        }
        self.tokens.epoch.as_ref()?.get().await
    }

    /// Forgets cached tokens everywhere: bumps the epoch and clears this process's entries.
    async fn invalidate_tokens(&self) {
        use fred::prelude::KeysInterface;
        if let Ok(mut entries) = self.tokens.entries.lock() {
            entries.clear();
        }
        if let (Some(redis), Some(key)) = (self.tokens.redis.as_ref(), self.epoch_key().await)
            && let Err(e) = redis.incr::<i64, _>(key).await
        {
            // Other replicas may then trust the token until their entries expire (the TTL).
            tracing::error!(error = %e, "cannot bump the token revocation epoch");
        }
    }

    fn digest(&self, secret: &str) -> Result<Vec<u8>, AccountError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.pepper.expose().as_bytes())
            .map_err(|e| AccountError::Internal(anyhow::anyhow!("{e}")))?;
        mac.update(secret.as_bytes());
        Ok(mac.finalize().into_bytes().to_vec())
    }

    fn verify_digest(&self, secret: &str, stored: &[u8]) -> bool {
        match Hmac::<Sha256>::new_from_slice(self.pepper.expose().as_bytes()) {
            Ok(mut mac) => {
                mac.update(secret.as_bytes());
                mac.verify_slice(stored).is_ok()
            }
            Err(_) => false,
        }
    }

    /// A read grant for `project_id`'s objects until `expires_unix` (seconds), for the preview
    /// renderer's page: `spg1.<project>.<expiry>.<tag>`, the tag keyed with the pepper. Never
    /// stored: it proves itself, and it only reads objects (`policy::can_read_objects_with_grant`).
    pub fn preview_grant(pepper: &Secret, project_id: &str, expires_unix: i64) -> String {
        format!(
            "{PREVIEW_GRANT_PREFIX}{project_id}.{expires_unix}.{}",
            preview_grant_tag(pepper, project_id, expires_unix)
        )
    }

    /// The project a presented preview grant reads, if its tag checks out and it has not
    /// expired at `now_unix`; `None` for anything else (including tokens of other kinds).
    pub fn preview_grant_project(pepper: &Secret, token: &str, now_unix: i64) -> Option<String> {
        let mut parts = token.strip_prefix(PREVIEW_GRANT_PREFIX)?.split('.');
        let (project_id, expires, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let expires_unix: i64 = expires.parse().ok()?;
        let expected = preview_grant_tag(pepper, project_id, expires_unix);
        let same = !expected.is_empty()
            && expected.len() == tag.len()
            && expected
                .bytes()
                .zip(tag.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        (same && now_unix < expires_unix).then(|| project_id.to_owned())
    }

    /// The token of invite `invite_id`: the id and a keyed tag, so only whoever received the
    /// invite can use it (a bare invite id is guessable from activity).
    pub fn invite_token(&self, invite_id: &str) -> Result<String, AccountError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.pepper.expose().as_bytes())
            .map_err(|e| AccountError::Internal(anyhow::anyhow!("{e}")))?;
        mac.update(b"invite:");
        mac.update(invite_id.as_bytes());
        let tag = hex::encode(mac.finalize().into_bytes());
        Ok(format!("{invite_id}{}", &tag[..22]))
    }

    /// The invite id a presented invite token stands for, if its tag checks out.
    pub fn invite_id_of(&self, token: &str) -> Option<String> {
        let id = token.get(..10)?;
        let expected = self.invite_token(id).ok()?;
        let same = expected.len() == token.len()
            && expected
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        same.then(|| id.to_owned())
    }

    /// Whether `token` is a pending invite addressed to `email`: what lets someone register on
    /// an invite-only server.
    async fn invited(&self, token: Option<&str>, email: &str) -> Result<bool, AccountError> {
        let Some(invite_id) = token.and_then(|t| self.invite_id_of(t)) else {
            return Ok(false);
        };
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM project_invites WHERE id = $1 AND status = 'pending' \
             AND lower(target_email) = $2)",
        )
        .bind(&invite_id)
        .bind(email)
        .fetch_one(&self.pool)
        .await?)
    }

    fn check_password(&self, password: &str) -> Result<(), AccountError> {
        let chars = password.chars().count();
        if chars < self.limits.min_password_chars || chars > self.limits.max_password_chars {
            return Err(AccountError::Invalid(format!(
                "Password must be between {} and {} characters long.",
                self.limits.min_password_chars, self.limits.max_password_chars
            )));
        }
        Ok(())
    }

    /// Registers a local account. The first account becomes server admin. On an invite-only
    /// server everyone after it needs `invite`: the token of a pending invite to that email.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: &str,
        company: Option<String>,
        invite: Option<&str>,
        metadata: &EventMetadata,
    ) -> Result<String, AccountError> {
        let email =
            String::from(Email::parse(email).map_err(|e| AccountError::Invalid(e.to_string()))?);
        let invited = self.invite_only && self.invited(invite, &email).await?;
        let name =
            String::from(UserName::parse(name).map_err(|e| AccountError::Invalid(e.to_string()))?);
        self.check_password(password)?;
        let user_id = new_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':register'))")
            .execute(&mut *tx)
            .await?;
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM user_emails")
            .fetch_one(&mut *tx)
            .await?;
        if existing > 0 && self.invite_only && !invited {
            return Err(AccountError::InviteOnly);
        }
        let claimed = sqlx::query(
            "INSERT INTO user_emails (email, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&email)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return Err(AccountError::EmailTaken);
        }
        let hash = hash_password(password.to_owned()).await?;
        sqlx::query("INSERT INTO user_passwords (user_id, password_hash) VALUES ($1, $2)")
            .bind(&user_id)
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let role = if existing == 0 {
            ServerRole::Admin
        } else {
            ServerRole::User
        };
        let command = UserCommand::Create {
            id: user_id.clone(),
            email: email.clone(),
            name,
            company,
            server_role: role,
        };
        let mut metadata = metadata.clone();
        metadata.actor_user_id = Some(user_id.clone());
        if let Err(e) = self
            .bus
            .execute::<UserAggregate, _>(&user_id, &metadata, |_| Ok(command.clone()))
            .await
        {
            // Nothing was recorded: give the email back.
            if !matches!(e, CommandError::Lag(_)) {
                sqlx::query("DELETE FROM user_passwords WHERE user_id = $1")
                    .bind(&user_id)
                    .execute(&self.pool)
                    .await?;
                sqlx::query("DELETE FROM user_emails WHERE user_id = $1")
                    .bind(&user_id)
                    .execute(&self.pool)
                    .await?;
            }
            return Err(e.into());
        }
        Ok(user_id)
    }

    /// Checks an email and password; returns the user id.
    pub async fn login(&self, email: &str, password: &str) -> Result<String, AccountError> {
        let email = email.trim().to_lowercase();
        let row = sqlx::query(
            "SELECT e.user_id, p.password_hash FROM user_emails e JOIN user_passwords p USING (user_id) WHERE e.email = $1",
        )
        .bind(&email)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // Spend what a real check costs, so timing does not reveal who has an account.
            let _ = hash_password(password.to_owned()).await;
            return Err(AccountError::BadCredentials);
        };
        let hash: String = row.try_get("password_hash")?;
        if verify_password(password.to_owned(), hash).await? {
            Ok(row.try_get("user_id")?)
        } else {
            Err(AccountError::BadCredentials)
        }
    }

    /// Issues a single-use access code for `app_id`, bound to `challenge`.
    pub async fn issue_access_code(
        &self,
        app_id: &str,
        user_id: &str,
        challenge: &str,
    ) -> Result<String, AccountError> {
        let code = random_hex(21);
        sqlx::query(
            "INSERT INTO auth_access_codes (code, app_id, user_id, challenge, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        )
        .bind(&code)
        .bind(app_id)
        .bind(user_id)
        .bind(challenge)
        .bind(self.limits.access_code_ttl.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(code)
    }

    /// Exchanges an access code for a token and a refresh token.
    pub async fn exchange_code(
        &self,
        app_id: &str,
        app_secret: &str,
        code: &str,
        challenge: &str,
    ) -> Result<(String, String), AccountError> {
        let app = self.resolve_app(app_id, app_secret).await?;
        let row = sqlx::query(
            "DELETE FROM auth_access_codes WHERE code = $1 RETURNING app_id, user_id, challenge, expires_at > now() AS fresh",
        )
        .bind(code)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| AccountError::Unauthorized("Access code not found.".into()))?;
        let fresh: bool = row.try_get("fresh")?;
        let stored_app: String = row.try_get("app_id")?;
        let stored_challenge: String = row.try_get("challenge")?;
        if !fresh || stored_app != app.id || stored_challenge != challenge {
            return Err(AccountError::Unauthorized(
                "Invalid access code or challenge.".into(),
            ));
        }
        let user_id: String = row.try_get("user_id")?;
        self.issue_app_tokens(&app, &user_id).await
    }

    /// Trades a refresh token for a new token and a new refresh token; the old one stops working.
    pub async fn refresh(
        &self,
        app_id: &str,
        app_secret: &str,
        refresh_token: &str,
    ) -> Result<(String, String), AccountError> {
        let app = self.resolve_app(app_id, app_secret).await?;
        let (id, secret) = split_token(refresh_token)
            .ok_or_else(|| AccountError::Unauthorized("Invalid refresh token.".into()))?;
        let row = sqlx::query(
            "UPDATE refresh_tokens SET used_at = now() WHERE id = $1 AND used_at IS NULL AND expires_at > now() \
             RETURNING digest, app_id, user_id",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| AccountError::Unauthorized("Invalid refresh token.".into()))?;
        let digest: Vec<u8> = row.try_get("digest")?;
        let stored_app: String = row.try_get("app_id")?;
        if !self.verify_digest(secret, &digest) || stored_app != app.id {
            return Err(AccountError::Unauthorized("Invalid refresh token.".into()));
        }
        let user_id: String = row.try_get("user_id")?;
        self.issue_app_tokens(&app, &user_id).await
    }

    async fn issue_app_tokens(
        &self,
        app: &ResolvedApp,
        user_id: &str,
    ) -> Result<(String, String), AccountError> {
        let token = self
            .create_token(
                user_id,
                &format!("{}-token", app.name),
                &app.scopes,
                Some(self.limits.app_token_ttl),
                Some(&app.id),
            )
            .await?;
        let (id, secret) = (random_hex(5), random_hex(16));
        sqlx::query(
            "INSERT INTO refresh_tokens (id, digest, app_id, user_id, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        )
        .bind(&id)
        .bind(self.digest(&secret)?)
        .bind(&app.id)
        .bind(user_id)
        .bind(self.limits.refresh_token_ttl.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok((token, format!("{id}{secret}")))
    }

    /// A web app session for `user_id`: a token of the web app (`spklwebapp`), listed with the
    /// person's authorized apps and revoked by signing out. Returns it with its lifespan.
    pub async fn web_session(&self, user_id: &str) -> Result<(String, Duration), AccountError> {
        let app = DEFAULT_APPS
            .iter()
            .find(|a| a.id == "spklwebapp")
            .ok_or_else(|| {
                AccountError::Internal(anyhow::anyhow!("the web app is not registered"))
            })?;
        let lifespan = self.limits.app_token_ttl;
        let token = self
            .create_token(
                user_id,
                &format!("{}-token", app.name),
                &app.scopes(),
                Some(lifespan),
                Some(app.id),
            )
            .await?;
        Ok((token, lifespan))
    }

    /// Creates a token for `user_id`; returns it whole (the only time it is visible).
    pub async fn create_token(
        &self,
        user_id: &str,
        name: &str,
        scopes: &[Scope],
        lifespan: Option<Duration>,
        app_id: Option<&str>,
    ) -> Result<String, AccountError> {
        let (id, secret) = (random_hex(5), random_hex(16));
        // No lifespan asked for: the configured default.
        let lifespan = lifespan.unwrap_or(self.limits.personal_token_ttl);
        let scopes: Vec<&str> = scopes.iter().map(Scope::as_str).collect();
        sqlx::query(
            "INSERT INTO api_tokens (id, digest, user_id, name, scopes, last_chars, app_id, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(secs => $8))",
        )
        .bind(&id)
        .bind(self.digest(&secret)?)
        .bind(user_id)
        .bind(name)
        .bind(&scopes)
        .bind(&secret[secret.len() - 6..])
        .bind(app_id)
        .bind(lifespan.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(format!("{id}{secret}"))
    }

    /// Changes `user_id`'s server role, then makes every replica forget its cached tokens: a
    /// cached principal carries its role, and an archived or demoted user must lose access at
    /// once, not when the cache entry runs out.
    pub async fn change_server_role(
        &self,
        user_id: &str,
        role: ServerRole,
        guest_role_enabled: bool,
        metadata: &EventMetadata,
    ) -> Result<(), AccountError> {
        let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE role = $1")
            .bind(ServerRole::Admin.as_str())
            .fetch_one(&self.pool)
            .await?;
        // count(*) is never negative; saturating keeps the last-admin check right.
        let admin_count = u32::try_from(admins).unwrap_or(u32::MAX);
        self.bus
            .execute::<UserAggregate, _>(user_id, metadata, |_| {
                Ok(UserCommand::ChangeRole {
                    role,
                    guest_role_enabled,
                    admin_count,
                })
            })
            .await?;
        self.invalidate_tokens().await;
        Ok(())
    }

    /// Revokes one of `user_id`'s tokens, given the token or its id. Returns whether one was.
    pub async fn revoke_token(&self, user_id: &str, token: &str) -> Result<bool, AccountError> {
        // A bare token is accepted too; shorter than an id, it matches no token.
        let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
        let id = token.get(..10).unwrap_or(token);
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 1 {
            self.invalidate_tokens().await;
        }
        Ok(done.rows_affected() == 1)
    }

    /// The principal a token stands for; any token that is not valid is refused.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, TokenError> {
        let (id, secret) = split_token(token).ok_or(InvalidToken)?;
        let epoch = self.token_epoch().await;
        if let Some(epoch) = epoch
            && let Ok(entries) = self.tokens.entries.lock()
            && let Some(hit) = entries.get(id)
            && hit.epoch == epoch
            && hit.until > std::time::Instant::now()
            && self.verify_digest(secret, &hit.digest)
        {
            return Ok(hit.principal.clone());
        }
        let principal = self.authenticate_in_database(id, secret).await?;
        if let Some(epoch) = epoch
            && let Ok(mut entries) = self.tokens.entries.lock()
        {
            if entries.len() >= TOKEN_CACHE_MAX {
                entries.clear();
            }
            entries.insert(
                id.to_owned(),
                CachedToken {
                    digest: principal.1.clone(),
                    principal: principal.0.clone(),
                    epoch,
                    until: std::time::Instant::now() + self.tokens.ttl,
                },
            );
        }
        Ok(principal.0)
    }

    async fn authenticate_in_database(
        &self,
        id: &str,
        secret: &str,
    ) -> Result<(Principal, Vec<u8>), TokenError> {
        let row = sqlx::query(
            "SELECT t.digest, t.user_id, t.scopes, u.role FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.id = $1 AND t.revoked_at IS NULL AND t.expires_at > now()",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(TokenError::Unavailable)?
        .ok_or(InvalidToken)?;
        let digest: Vec<u8> = row.try_get("digest").map_err(|_| InvalidToken)?;
        if !self.verify_digest(secret, &digest) {
            return Err(TokenError::Invalid);
        }
        let user_id: String = row.try_get("user_id").map_err(|_| InvalidToken)?;
        let role: String = row.try_get("role").map_err(|_| InvalidToken)?;
        let scopes: Vec<String> = row.try_get("scopes").map_err(|_| InvalidToken)?;
        let role: ServerRole = role.parse().map_err(|_| InvalidToken)?;
        Ok((
            Principal::user(user_id, role)
                .with_scopes(scopes.iter().filter_map(|s| Scope::parse(s).ok())),
            digest,
        ))
    }

    /// The tokens of `user_id` (never their secrets).
    pub async fn tokens_of(&self, user_id: &str) -> Result<Vec<TokenInfo>, AccountError> {
        Ok(sqlx::query_as(
            "SELECT id, name, last_chars, scopes, created_at, expires_at, last_used_at FROM api_tokens \
             WHERE user_id = $1 AND revoked_at IS NULL AND app_id IS NULL ORDER BY created_at",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// A token as its owner sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenInfo {
    /// Id (first 10 characters of the token).
    pub id: String,
    /// Name.
    pub name: String,
    /// Last 6 characters.
    pub last_chars: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Expires.
    pub expires_at: OffsetDateTime,
    /// Last used.
    pub last_used_at: Option<OffsetDateTime>,
}

/// Splits a 42-character token into its 10-character id and 32-character secret.
pub fn split_token(token: &str) -> Option<(&str, &str)> {
    let token = token.trim();
    if token.len() != 42 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(token.split_at(10))
}

async fn hash_password(password: String) -> Result<String, AccountError> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| AccountError::Internal(anyhow::anyhow!("{e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AccountError::Internal(anyhow::anyhow!("{e}")))
    })
    .await
    .map_err(|e| AccountError::Internal(anyhow::anyhow!("{e}")))?
}

async fn verify_password(password: String, hash: String) -> Result<bool, AccountError> {
    tokio::task::spawn_blocking(move || {
        let parsed =
            PasswordHash::new(&hash).map_err(|e| AccountError::Internal(anyhow::anyhow!("{e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| AccountError::Internal(anyhow::anyhow!("{e}")))?
}

/// How a preview grant starts (it is not a token the credential store knows).
pub const PREVIEW_GRANT_PREFIX: &str = "spg1.";

fn preview_grant_tag(pepper: &Secret, project_id: &str, expires_unix: i64) -> String {
    match Hmac::<Sha256>::new_from_slice(pepper.expose().as_bytes()) {
        Ok(mut mac) => {
            mac.update(b"preview-grant:");
            mac.update(project_id.as_bytes());
            mac.update(b":");
            mac.update(expires_unix.to_string().as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; unreachable, and an empty tag never matches.
        Err(_) => String::new(),
    }
}

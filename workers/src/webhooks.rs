//! Webhook delivery: the `webhook.deliver` jobs the webhooks projection enqueues.
//!
//! - The first attempt freezes the body (`webhook_deliveries.body`); every retry and a manual
//!   redelivery send exactly those bytes, so signatures and the `webhook-id` stay the same and
//!   a receiver can drop duplicates (delivery is at least once).
//! - Signatures: the original's `X-WEBHOOK-SIGNATURE` (hex HMAC-SHA256 of the body with the
//!   webhook's secret, or an empty key when it has none) and the Standard Webhooks headers
//!   `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
//!   `id.timestamp.body`, keyed with the secret's bytes).
//! - Only a 2xx counts. Anything else is retried on [`DeliveryOptions::retry_schedule`]; when
//!   the schedule is spent the delivery is failed, and a webhook whose deliveries have failed
//!   without a success for [`DeliveryOptions::disable_after`] is switched off by a command.
//! - SSRF guard: unless allowed, targets resolving to loopback, private, link-local or other
//!   non-public addresses are refused, checked on the addresses actually connected to (a DNS
//!   answer cannot swap in a private address after the check). Redirects are not followed.
//! - Ordering: jobs of one webhook share an ordering key, so deliveries go out in event order,
//!   except that a delivery waiting for a retry does not hold back later ones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::FutureExt;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use schema::jobs::ClaimedJob;
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::runner::{JobError, JobHandler};

/// The job kind this handles (the webhooks projection's `DELIVER_JOB`).
pub const KIND: &str = "webhook.deliver";

/// Switches a webhook off through the command path (workers never write the log directly).
pub trait WebhookControl: Send + Sync + 'static {
    /// Disables `webhook_id` of `project_id`, recording `reason`.
    fn disable<'a>(
        &'a self,
        project_id: &'a str,
        webhook_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Delivery settings; every value explicit and configurable.
#[derive(Clone, Debug)]
pub struct DeliveryOptions {
    /// How long one HTTP attempt may take.
    pub timeout: Duration,
    /// Delays before the 2nd, 3rd, … attempt; when spent, the delivery fails.
    pub retry_schedule: Vec<Duration>,
    /// Whether loopback, private and link-local targets are allowed.
    pub allow_private_targets: bool,
    /// A webhook failing without a success for this long is disabled.
    pub disable_after: Duration,
    /// Most response-body bytes kept per attempt.
    pub response_body_limit: usize,
    /// The `server` section of every payload (the public server info).
    pub server: Value,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_schedule: default_schedule(),
            allow_private_targets: false,
            disable_after: Duration::from_secs(5 * 24 * 3600),
            response_body_limit: 4096,
            server: json!({}),
        }
    }
}

/// A Svix-like schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about 28 h in all).
pub fn default_schedule() -> Vec<Duration> {
    [5, 300, 1800, 7200, 18000, 36000, 36000]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}

/// The delivery handler.
pub struct WebhookDeliverer {
    pool: PgPool,
    http: reqwest::Client,
    options: DeliveryOptions,
    control: Arc<dyn WebhookControl>,
}

impl WebhookDeliverer {
    /// A deliverer over `pool`, disabling webhooks through `control`.
    pub fn new(
        pool: PgPool,
        options: DeliveryOptions,
        control: Arc<dyn WebhookControl>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("strata-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: options.allow_private_targets,
            }))
            .build()?;
        Ok(Self {
            pool,
            http,
            options,
            control,
        })
    }
}

impl JobHandler for WebhookDeliverer {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, job: &'a ClaimedJob) -> BoxFuture<'a, Result<(), JobError>> {
        self.deliver(job).boxed()
    }
}

/// What the job says.
struct Job {
    webhook_id: String,
    project_id: String,
    delivery_id: String,
    redelivery: bool,
}

fn field(payload: &Value, name: &str) -> Result<String, JobError> {
    payload
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| JobError::permanent(format!("job payload lacks {name}")))
}

fn db(e: sqlx::Error) -> JobError {
    JobError::retry(format!("database: {e}"))
}

/// The original's status codes.
const PENDING: i16 = 0;
const IN_FLIGHT: i16 = 1;
const DELIVERED: i16 = 2;
const FAILED: i16 = 3;

struct Target {
    url: String,
    enabled: bool,
}

impl WebhookDeliverer {
    async fn deliver(&self, claimed: &ClaimedJob) -> Result<(), JobError> {
        let p = &claimed.payload;
        let job = Job {
            webhook_id: field(p, "webhookId")?,
            project_id: field(p, "projectId")?,
            delivery_id: field(p, "deliveryId")?,
            redelivery: p.get("redelivery").and_then(Value::as_bool) == Some(true),
        };
        let target = sqlx::query("SELECT url, enabled FROM webhooks WHERE id = $1")
            .bind(&job.webhook_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(|r| -> Result<Target, sqlx::Error> {
                Ok(Target {
                    url: r.try_get("url")?,
                    enabled: r.try_get("enabled")?,
                })
            })
            .transpose()
            .map_err(db)?;
        let body = if job.redelivery {
            let body: Option<String> =
                sqlx::query_scalar("SELECT body FROM webhook_deliveries WHERE id = $1")
                    .bind(&job.delivery_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
            body.ok_or_else(|| JobError::permanent("no such delivery to send again"))?
        } else {
            self.freeze_body(&job, claimed, target.as_ref()).await?
        };
        let Some(target) = target.filter(|t| t.enabled) else {
            // Deleted or switched off: a disabled webhook sends nothing.
            self.set_status(
                &job.delivery_id,
                FAILED,
                "Webhook disabled or deleted; not sent",
            )
            .await?;
            return Ok(());
        };
        let secret = schema::webhooks::secret(&self.pool, &job.webhook_id)
            .await
            .map_err(db)?;
        self.set_status(&job.delivery_id, IN_FLIGHT, "Sending")
            .await?;
        let outcome = self
            .post(&target.url, &job.delivery_id, &body, secret.as_deref())
            .await;
        sqlx::query(
            "INSERT INTO webhook_delivery_attempts \
               (delivery_id, latency_ms, response_status, response_body, error, succeeded) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&job.delivery_id)
        // Saturates at the int column; never reached.
        .bind(i32::try_from(outcome.latency.as_millis()).unwrap_or(i32::MAX))
        .bind(outcome.status.map(i32::from))
        .bind(&outcome.body)
        .bind(&outcome.error)
        .bind(outcome.succeeded())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if outcome.succeeded() {
            return self
                .set_status(&job.delivery_id, DELIVERED, "Webhook called")
                .await;
        }
        let problem = outcome.describe();
        if outcome.refused {
            self.set_status(&job.delivery_id, FAILED, &problem).await?;
            return Err(JobError::permanent(problem));
        }
        let next = usize::try_from(claimed.attempt.saturating_sub(1))
            .ok()
            .and_then(|i| self.options.retry_schedule.get(i).copied());
        match next {
            Some(delay) => {
                self.set_status(
                    &job.delivery_id,
                    PENDING,
                    &format!("{problem}; retrying in {} s", delay.as_secs()),
                )
                .await?;
                Err(JobError::retry_after(problem, delay))
            }
            None => {
                self.set_status(&job.delivery_id, FAILED, &problem).await?;
                self.maybe_disable(&job, &problem).await?;
                Err(JobError::permanent(problem))
            }
        }
    }

    /// Builds the body on the first attempt and stores it; later attempts read it back.
    async fn freeze_body(
        &self,
        job: &Job,
        claimed: &ClaimedJob,
        target: Option<&Target>,
    ) -> Result<String, JobError> {
        if let Some(body) =
            sqlx::query_scalar::<_, String>("SELECT body FROM webhook_deliveries WHERE id = $1")
                .bind(&job.delivery_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
        {
            return Ok(body);
        }
        let p = &claimed.payload;
        let event_name = field(p, "eventName")?;
        let actor = p.get("actorUserId").and_then(Value::as_str);
        let stream = self
            .json_row(
                "SELECT id, name, description, visibility, allow_public_comments, created_at, \
                 updated_at FROM projects WHERE id = $1",
                &job.project_id,
                |r| {
                    let visibility: String = r.try_get("visibility")?;
                    Ok(json!({
                        "id": r.try_get::<String, _>("id")?,
                        "name": r.try_get::<String, _>("name")?,
                        "description": r.try_get::<String, _>("description")?,
                        "isPublic": visibility != "PRIVATE",
                        "visibility": visibility,
                        "allowPublicComments": r.try_get::<bool, _>("allow_public_comments")?,
                        "createdAt": rfc3339(r.try_get("created_at")?),
                        "updatedAt": rfc3339(r.try_get("updated_at")?),
                    }))
                },
            )
            .await?
            .unwrap_or_else(|| json!({ "id": job.project_id }));
        let user = match actor {
            Some(id) => {
                self.json_row(
                    "SELECT id, name, company, bio, avatar FROM users WHERE id = $1",
                    id,
                    |r| {
                        Ok(json!({
                            "id": r.try_get::<String, _>("id")?,
                            "name": r.try_get::<String, _>("name")?,
                            "company": r.try_get::<Option<String>, _>("company")?,
                            "bio": r.try_get::<Option<String>, _>("bio")?,
                            "avatar": r.try_get::<Option<String>, _>("avatar")?,
                        }))
                    },
                )
                .await?
            }
            None => None,
        };
        let webhook = self
            .json_row(
                "SELECT id, project_id, url, description, triggers, enabled FROM webhooks \
                 WHERE id = $1",
                &job.webhook_id,
                |r| {
                    Ok(json!({
                        "id": r.try_get::<String, _>("id")?,
                        "streamId": r.try_get::<String, _>("project_id")?,
                        "url": r.try_get::<String, _>("url")?,
                        "description": r.try_get::<String, _>("description")?,
                        "triggers": r.try_get::<Vec<String>, _>("triggers")?,
                        "enabled": r.try_get::<bool, _>("enabled")?,
                    }))
                },
            )
            .await?
            .unwrap_or_else(
                || json!({ "id": job.webhook_id, "url": target.map(|t| t.url.clone()) }),
            );
        let body = json!({
            "payload": {
                "streamId": job.project_id,
                "projectId": job.project_id,
                "userId": actor,
                "activityMessage": p.get("message"),
                "event": {
                    "event_name": event_name,
                    "data": {
                        "id": p.get("resourceId"),
                        "resourceType": p.get("resourceType"),
                        "eventType": p.get("eventType"),
                        "event": p.get("data"),
                    },
                },
                "server": self.options.server,
                "stream": stream,
                "project": stream,
                "user": user,
                "webhook": webhook,
            }
        })
        .to_string();
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, webhook_id, project_id, event_name, source_position, body) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&job.delivery_id)
        .bind(&job.webhook_id)
        .bind(&job.project_id)
        .bind(&event_name)
        .bind(p.get("position").and_then(Value::as_i64))
        .bind(&body)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        // Another attempt may have stored it first: theirs wins, so every send is identical.
        sqlx::query_scalar("SELECT body FROM webhook_deliveries WHERE id = $1")
            .bind(&job.delivery_id)
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    /// Row `id` of `sql` (a one-row query with the id as `$1`) as `to_json` renders it, if
    /// there is one.
    async fn json_row(
        &self,
        sql: &'static str,
        id: &str,
        to_json: impl FnOnce(&PgRow) -> Result<Value, sqlx::Error>,
    ) -> Result<Option<Value>, JobError> {
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(to_json).transpose().map_err(db)
    }

    async fn set_status(&self, delivery_id: &str, status: i16, info: &str) -> Result<(), JobError> {
        let bump = i32::from(status == IN_FLIGHT);
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, status_info = $3, \
                    attempts = attempts + $4, last_update = now() WHERE id = $1",
        )
        .bind(delivery_id)
        .bind(status)
        .bind(info)
        .bind(bump)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// Disables the webhook when it has failed, without a success, for `disable_after`.
    async fn maybe_disable(&self, job: &Job, problem: &str) -> Result<(), JobError> {
        let failing_since: Option<time::OffsetDateTime> = sqlx::query_scalar(
            "WITH a AS (SELECT a.started_at, a.succeeded FROM webhook_delivery_attempts a \
                        JOIN webhook_deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1), \
                  last_ok AS (SELECT max(started_at) AS at FROM a WHERE succeeded) \
             SELECT min(a.started_at) FROM a, last_ok \
             WHERE NOT a.succeeded AND (last_ok.at IS NULL OR a.started_at > last_ok.at)",
        )
        .bind(&job.webhook_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let Some(since) = failing_since else {
            return Ok(());
        };
        let failing_for = time::OffsetDateTime::now_utc() - since;
        if failing_for < self.options.disable_after {
            return Ok(());
        }
        let reason = format!(
            "Disabled automatically: deliveries failing since {} (last error: {problem})",
            rfc3339(since)
        );
        tracing::warn!(webhook = %job.webhook_id, %reason, "disabling webhook");
        self.control
            .disable(&job.project_id, &job.webhook_id, &reason)
            .await
            .map_err(JobError::retry)
    }

    #[tracing::instrument(name = "webhook.post", skip_all, fields(delivery = delivery_id))]
    async fn post(
        &self,
        url: &str,
        delivery_id: &str,
        body: &str,
        secret: Option<&str>,
    ) -> Outcome {
        let started = Instant::now();
        let mut outcome = Outcome::default();
        if let Err(e) = check_literal_target(url, self.options.allow_private_targets) {
            outcome.error = Some(e);
            outcome.refused = true;
            return outcome;
        }
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let key = secret.unwrap_or_default().as_bytes();
        let legacy = hex::encode(hmac(key, &[body.as_bytes()]));
        let standard = base64::engine::general_purpose::STANDARD.encode(hmac(
            key,
            &[
                delivery_id.as_bytes(),
                b".",
                timestamp.as_bytes(),
                b".",
                body.as_bytes(),
            ],
        ));
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", legacy)
            .header("webhook-id", delivery_id)
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", format!("v1,{standard}"));
        // The receiver may join the trace this delivery belongs to.
        let sent = match schema::trace::current_traceparent() {
            Some(traceparent) => sent.header("traceparent", traceparent),
            None => sent,
        };
        let sent = sent.body(body.to_owned()).send().await;
        match sent {
            Ok(mut response) => {
                outcome.status = Some(response.status().as_u16());
                let mut kept = Vec::new();
                loop {
                    match response.chunk().await {
                        Ok(Some(chunk)) if kept.len() < self.options.response_body_limit => {
                            let room = self.options.response_body_limit - kept.len();
                            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                        }
                        Ok(Some(_)) | Ok(None) | Err(_) => break,
                    }
                }
                outcome.body = Some(String::from_utf8_lossy(&kept).into_owned());
            }
            Err(e) => {
                outcome.refused = is_guard_refusal(&e);
                outcome.error = Some(describe_error(&e));
            }
        }
        outcome.latency = started.elapsed();
        outcome
    }
}

#[derive(Default)]
struct Outcome {
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
    latency: Duration,
    /// The target is not allowed: retrying cannot help.
    refused: bool,
}

impl Outcome {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn describe(&self) -> String {
        match (&self.status, &self.error) {
            (_, Some(e)) => e.clone(),
            (Some(s), None) => format!("HTTP {s}"),
            (None, None) => "no response".to_owned(),
        }
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn describe_error(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

use domain::project::webhook::REFUSED_TARGET as REFUSED;

fn is_guard_refusal(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.to_string().contains(REFUSED) {
            return true;
        }
        source = s.source();
    }
    false
}

pub use domain::project::webhook::{check_literal_target, is_internal};

/// Resolves names and refuses internal addresses, so the check holds for the address the
/// connection actually uses.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allow_private || !is_internal(a.ip()))
                .collect();
            if allowed.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = if found.is_empty() {
                    format!("{host} has no address").into()
                } else {
                    format!("{REFUSED}: {host} resolves to an internal address").into()
                };
                return Err(err);
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn literal_targets_are_checked_unless_allowed() {
        assert!(check_literal_target("http://127.0.0.1:8080/x", false).is_err());
        assert!(check_literal_target("http://[::1]/x", false).is_err());
        assert!(check_literal_target("http://127.0.0.1:8080/x", true).is_ok());
        assert!(check_literal_target("https://hooks.example.com/x", false).is_ok());
    }

    #[test]
    fn signatures_match_their_definitions() {
        // RFC 4231 test case 2.
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

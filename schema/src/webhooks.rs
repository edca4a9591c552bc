//! Webhooks' operational stores: signing secrets (credentials, kept out of the event log) and
//! the delivery records the delivery worker writes. The webhook configurations themselves are a
//! read model (`projections::webhooks`).

use sqlx::{PgExecutor, PgPool};
use time::OffsetDateTime;

/// Sets (or replaces) the signing secret of `webhook_id`.
pub async fn store_secret(
    db: impl PgExecutor<'_>,
    webhook_id: &str,
    secret: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_secrets (webhook_id, secret) VALUES ($1, $2) \
         ON CONFLICT (webhook_id) DO UPDATE SET secret = $2, updated_at = now()",
    )
    .bind(webhook_id)
    .bind(secret)
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes the signing secret of `webhook_id`, if it has one.
pub async fn forget_secret(db: impl PgExecutor<'_>, webhook_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM webhook_secrets WHERE webhook_id = $1")
        .bind(webhook_id)
        .execute(db)
        .await?;
    Ok(())
}

/// The signing secret of `webhook_id`, if it has one.
pub async fn secret(pool: &PgPool, webhook_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT secret FROM webhook_secrets WHERE webhook_id = $1")
        .bind(webhook_id)
        .fetch_optional(pool)
        .await
}

/// One delivery of one event to one webhook.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DeliveryRow {
    /// Id (stable across retries and redeliveries).
    pub id: String,
    /// The webhook.
    pub webhook_id: String,
    /// 0 pending, 1 in flight, 2 delivered, 3 failed (the original's codes).
    pub status: i32,
    /// The status in words.
    pub status_info: String,
    /// HTTP attempts so far.
    pub attempts: i32,
    /// When the status last changed.
    pub last_update: OffsetDateTime,
    /// The exact body sent.
    pub body: String,
    /// The activity action type that fired it.
    pub event_name: String,
}

/// How many deliveries `webhook_id` has.
pub async fn deliveries_count(pool: &PgPool, webhook_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1")
        .bind(webhook_id)
        .fetch_one(pool)
        .await
}

/// The newest `limit` deliveries of `webhook_id`, newest first.
pub async fn deliveries_page(
    pool: &PgPool,
    webhook_id: &str,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, webhook_id, status::int AS status, status_info, attempts, last_update, \
                body, event_name \
         FROM webhook_deliveries WHERE webhook_id = $1 \
         ORDER BY last_update DESC, id LIMIT $2",
    )
    .bind(webhook_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The webhook that delivery `delivery_id` of project `project_id` went to, if it exists.
pub async fn delivery_webhook(
    pool: &PgPool,
    project_id: &str,
    delivery_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT webhook_id FROM webhook_deliveries WHERE id = $1 AND project_id = $2",
    )
    .bind(delivery_id)
    .bind(project_id)
    .fetch_optional(pool)
    .await
}

/// One HTTP attempt of a delivery.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AttemptRow {
    /// When it started.
    pub started_at: OffsetDateTime,
    /// How long the receiver took.
    pub latency_ms: i32,
    /// The receiver's status, if it answered.
    pub response_status: Option<i32>,
    /// The start of the response body.
    pub response_body: Option<String>,
    /// Why it failed without an answer.
    pub error: Option<String>,
    /// Whether it counted as delivered.
    pub succeeded: bool,
}

/// Every attempt of `delivery_id`, oldest first.
pub async fn delivery_attempts(
    pool: &PgPool,
    delivery_id: &str,
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT started_at, latency_ms, response_status, response_body, error, succeeded \
         FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY id",
    )
    .bind(delivery_id)
    .fetch_all(pool)
    .await
}

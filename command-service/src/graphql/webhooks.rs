//! Webhooks on the GraphQL API: `project.webhooks` with each webhook's delivery history, and
//! `webhookCreate`, `webhookUpdate`, `webhookDelete` (the original's names and shapes), plus
//! `webhookRedeliver`, which the original lacks. Only owners see or manage webhooks.

use async_graphql::{ComplexObject, Context, InputObject, SimpleObject};
use domain::ProjectCommand;
use domain::policy;
use domain::project::webhook::{WebhookChanges, WebhookConfig};
use projections::webhooks::query::{WebhookRow, webhooks_of};
use schema::webhooks::{self as deliveries, AttemptRow, DeliveryRow};
use sqlx::PgPool;
use time::OffsetDateTime;

use super::errors::{ErrorCode, denied, gql_error};
use super::idempotency::new_id;
use super::mutations::{run, signed_in};
use super::project::Project;
use super::services::{self, pool};
use crate::error::{ApiResult, AppError};

/// A page of webhooks.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct WebhookCollection {
    total_count: i64,
    items: Vec<Webhook>,
}

/// A webhook (its secret is never shown).
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct Webhook {
    id: String,
    #[graphql(name = "streamId")]
    stream_id: String,
    project_id: String,
    has_secret: bool,
    url: String,
    description: Option<String>,
    triggers: Vec<String>,
    enabled: bool,
    /// Why it was switched off automatically (null when enabled or switched off by hand).
    disabled_reason: Option<String>,
}

/// Deliveries, newest first.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct WebhookEventCollection {
    total_count: i64,
    items: Vec<WebhookEvent>,
}

/// One delivery of one event: status 0 pending, 1 sending, 2 delivered, 3 failed.
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct WebhookEvent {
    id: String,
    webhook_id: String,
    status: i32,
    status_info: String,
    #[graphql(skip)]
    attempts: i32,
    last_update: OffsetDateTime,
    /// The exact body sent.
    payload: String,
    /// The activity action type that fired it.
    event_name: String,
}

/// One HTTP attempt of a delivery.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct WebhookDeliveryAttempt {
    started_at: OffsetDateTime,
    latency_ms: i32,
    response_status: Option<i32>,
    /// The start of the response body.
    response_body: Option<String>,
    error: Option<String>,
    succeeded: bool,
}

impl From<WebhookRow> for Webhook {
    fn from(r: WebhookRow) -> Self {
        Self {
            id: r.id,
            stream_id: r.project_id.clone(),
            project_id: r.project_id,
            has_secret: r.has_secret,
            url: r.url,
            description: r.description,
            triggers: r.triggers,
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
        }
    }
}

impl From<DeliveryRow> for WebhookEvent {
    fn from(r: DeliveryRow) -> Self {
        Self {
            id: r.id,
            webhook_id: r.webhook_id,
            status: r.status,
            status_info: r.status_info,
            attempts: r.attempts,
            last_update: r.last_update,
            payload: r.body,
            event_name: r.event_name,
        }
    }
}

impl From<AttemptRow> for WebhookDeliveryAttempt {
    fn from(r: AttemptRow) -> Self {
        Self {
            started_at: r.started_at,
            latency_ms: r.latency_ms,
            response_status: r.response_status,
            response_body: r.response_body,
            error: r.error,
            succeeded: r.succeeded,
        }
    }
}

#[ComplexObject]
impl Webhook {
    /// Its deliveries, newest first.
    async fn history(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 25)] limit: i32,
    ) -> ApiResult<WebhookEventCollection> {
        let pool = pool(ctx)?;
        let limit = i64::from(limit.clamp(0, 1000));
        let total_count = deliveries::deliveries_count(pool, &self.id).await?;
        let items = deliveries::deliveries_page(pool, &self.id, limit)
            .await?
            .into_iter()
            .map(WebhookEvent::from)
            .collect();
        Ok(WebhookEventCollection { total_count, items })
    }
}

#[ComplexObject]
impl WebhookEvent {
    /// Attempts after the first.
    async fn retry_count(&self) -> i32 {
        (self.attempts - 1).max(0)
    }

    /// Every HTTP attempt, oldest first.
    async fn attempts(&self, ctx: &Context<'_>) -> ApiResult<Vec<WebhookDeliveryAttempt>> {
        let rows = deliveries::delivery_attempts(pool(ctx)?, &self.id).await?;
        Ok(rows.into_iter().map(WebhookDeliveryAttempt::from).collect())
    }
}

/// `project.webhooks`.
pub(crate) async fn list(
    ctx: &Context<'_>,
    project: &Project,
    id: Option<&str>,
) -> ApiResult<WebhookCollection> {
    let principal = ctx.data::<domain::Principal>()?;
    policy::can_manage_webhooks(principal, &project.access())?;
    let items: Vec<Webhook> = webhooks_of(pool(ctx)?, project.project_id(), id)
        .await?
        .into_iter()
        .map(Webhook::from)
        .collect();
    Ok(WebhookCollection {
        total_count: i64::try_from(items.len()).unwrap_or(i64::MAX), // a length fits i64
        items,
    })
}

/// `webhookCreate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct WebhookCreateInput {
    stream_id: String,
    url: String,
    description: Option<String>,
    triggers: Vec<String>,
    secret: Option<String>,
    enabled: Option<bool>,
}

/// `webhookUpdate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct WebhookUpdateInput {
    id: String,
    stream_id: String,
    url: Option<String>,
    description: Option<String>,
    secret: Option<String>,
    enabled: Option<bool>,
    triggers: Option<Vec<String>>,
}

/// `webhookDelete` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct WebhookDeleteInput {
    id: String,
    stream_id: String,
}

/// `webhookRedeliver` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct WebhookRedeliverInput {
    /// The project.
    stream_id: String,
    /// The webhook.
    webhook_id: String,
    /// The delivery (a `history` item's id).
    delivery_id: String,
}

/// Longest accepted secret.
const MAX_SECRET_CHARS: usize = 1024;

fn checked_secret(secret: Option<String>) -> ApiResult<Option<String>> {
    match secret {
        Some(s) if s.chars().count() > MAX_SECRET_CHARS => Err(gql_error(
            ErrorCode::BadRequest,
            format!("invalid secret: at most {MAX_SECRET_CHARS} characters"),
        )),
        other => Ok(other),
    }
}

fn check_target(ctx: &Context<'_>, url: &str) -> ApiResult<()> {
    domain::project::webhook::check_literal_target(
        url.trim(),
        services::settings(ctx)?.webhook_allow_private_targets,
    )
    .map_err(|e| gql_error(ErrorCode::BadRequest, format!("invalid url: {e}")))
}

async fn store_secret(pool: &PgPool, webhook_id: &str, secret: &str) -> ApiResult<()> {
    deliveries::store_secret(pool, webhook_id, secret)
        .await
        .map_err(AppError::internal)
}

async fn forget_secret(pool: &PgPool, webhook_id: &str) -> ApiResult<()> {
    deliveries::forget_secret(pool, webhook_id)
        .await
        .map_err(AppError::internal)
}

/// Runs a webhook command as the project's owner.
async fn as_owner(ctx: &Context<'_>, project_id: &str, command: ProjectCommand) -> ApiResult<()> {
    run(
        ctx,
        project_id,
        |p, a, _| policy::can_manage_webhooks(p, a),
        move |_| Ok(command.clone()),
    )
    .await
}

/// `webhookCreate`: returns the new id. The secret is stored before the event is appended, so
/// no delivery is ever sent unsigned by a race; a failed command leaves an unused secret row
/// under an id nothing refers to.
pub(crate) async fn create(ctx: &Context<'_>, input: WebhookCreateInput) -> ApiResult<String> {
    signed_in(ctx)?;
    check_target(ctx, &input.url)?;
    let secret = checked_secret(input.secret)?.filter(|s| !s.is_empty());
    let webhook_id = new_id(ctx);
    let config = WebhookConfig {
        url: input.url,
        description: input.description.unwrap_or_default(),
        triggers: input.triggers,
        enabled: input.enabled.unwrap_or(true), // unset: enabled
        has_secret: secret.is_some(),
    };
    if let Some(secret) = &secret {
        store_secret(services::pool(ctx)?, &webhook_id, secret).await?;
    }
    let command = ProjectCommand::CreateWebhook {
        webhook_id: webhook_id.clone(),
        config,
        max_per_project: services::settings(ctx)?.webhooks_max_per_project,
    };
    as_owner(ctx, &input.stream_id, command).await?;
    Ok(webhook_id)
}

/// `webhookUpdate`: an empty secret removes it; switching `enabled` on re-enables a webhook
/// that was disabled for failing.
pub(crate) async fn update(ctx: &Context<'_>, input: WebhookUpdateInput) -> ApiResult<String> {
    signed_in(ctx)?;
    if let Some(url) = &input.url {
        check_target(ctx, url)?;
    }
    let secret = checked_secret(input.secret)?;
    let webhook_id = input.id.clone();
    let changes = WebhookChanges {
        url: input.url,
        description: input.description,
        triggers: input.triggers,
        enabled: input.enabled,
        has_secret: secret.as_ref().map(|s| !s.is_empty()),
    };
    // Check the webhook exists in this project (and the caller owns it) before touching the
    // secret: nobody may plant a secret on someone else's webhook.
    ensure_owned(ctx, &input.stream_id, &webhook_id).await?;
    match secret.as_deref() {
        Some("") => forget_secret(services::pool(ctx)?, &webhook_id).await?,
        Some(s) => store_secret(services::pool(ctx)?, &webhook_id, s).await?,
        None => {}
    }
    let command = ProjectCommand::UpdateWebhook {
        webhook_id: webhook_id.clone(),
        changes,
    };
    as_owner(ctx, &input.stream_id, command).await?;
    Ok(webhook_id)
}

/// Checks the caller owns the project and the webhook is in it; errors as the command would.
async fn ensure_owned(ctx: &Context<'_>, project_id: &str, webhook_id: &str) -> ApiResult<()> {
    let (principal, user) = signed_in(ctx)?;
    let (project_state, _) = services::bus(ctx)?
        .load::<crate::commands::ProjectAggregate>(project_id)
        .await?;
    let Some(project) = project_state.project() else {
        return Err(denied(&policy::Denied::project_not_found()));
    };
    let access = project.access_for(Some(&user));
    policy::can_read_project(&principal, &access)?;
    policy::can_manage_webhooks(&principal, &access)?;
    if !project.webhooks.contains_key(webhook_id) {
        return Err(gql_error(
            ErrorCode::NotFound,
            format!("webhook {webhook_id} not found"),
        ));
    }
    Ok(())
}

/// `webhookDelete`: returns the id.
pub(crate) async fn delete(ctx: &Context<'_>, input: WebhookDeleteInput) -> ApiResult<String> {
    let command = ProjectCommand::DeleteWebhook {
        webhook_id: input.id.clone(),
    };
    as_owner(ctx, &input.stream_id, command).await?;
    forget_secret(services::pool(ctx)?, &input.id).await?;
    Ok(input.id)
}

/// `webhookRedeliver`: sends a recorded delivery again, with the same id and body.
pub(crate) async fn redeliver(ctx: &Context<'_>, input: WebhookRedeliverInput) -> ApiResult<bool> {
    // Owners only, before anything about deliveries is revealed.
    ensure_owned(ctx, &input.stream_id, &input.webhook_id).await?;
    let known =
        deliveries::delivery_webhook(services::pool(ctx)?, &input.stream_id, &input.delivery_id)
            .await?;
    if known.as_deref() != Some(input.webhook_id.as_str()) {
        return Err(gql_error(
            ErrorCode::NotFound,
            format!(
                "delivery {} of webhook {} not found",
                input.delivery_id, input.webhook_id
            ),
        ));
    }
    let command = ProjectCommand::RedeliverWebhook {
        webhook_id: input.webhook_id,
        delivery_id: input.delivery_id,
    };
    as_owner(ctx, &input.stream_id, command).await?;
    Ok(true)
}

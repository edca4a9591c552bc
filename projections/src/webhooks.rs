//! The `webhooks` projection: webhook configurations as the API reads them, and the outbox of
//! deliveries. For each project event, every enabled webhook of the project whose triggers
//! include the event's activity action type gets one `webhook.deliver` job, enqueued in the
//! same transaction as the checkpoint, so an event is never delivered to a webhook twice by
//! the projector nor lost by it. Jobs for one webhook share an ordering key, so they go out
//! in event order (see `schema::jobs::NewJob::ordering_key`).

use domain::project::ProjectEvent;
use domain::project::webhook::WebhookConfig;
use futures::FutureExt;
use schema::RecordedEvent;
use schema::jobs::NewJob;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::projection::{Applied, Batch, Projection, TableDef, sql};

/// The projection.
pub struct WebhooksProjection;

/// Its name, for `wait_for`.
pub const NAME: &str = "webhooks";

/// The job kind of one delivery.
pub const DELIVER_JOB: &str = "webhook.deliver";

/// Attempts the queue allows a delivery job; the worker's own schedule decides when to stop
/// well before this.
pub const MAX_DELIVERY_JOB_ATTEMPTS: i32 = 1_000;

const TABLES: &[TableDef] = &[TableDef {
    name: "webhooks",
    create: "CREATE TABLE {table} (
        id text PRIMARY KEY, project_id text NOT NULL, url text NOT NULL,
        description text NOT NULL, triggers text[] NOT NULL, enabled boolean NOT NULL,
        has_secret boolean NOT NULL, disabled_reason text,
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)",
    indexes: &["CREATE INDEX {table}_project ON {table} (project_id, created_at)"],
}];

impl Projection for WebhooksProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[domain::project::STREAM_CATEGORY])
    }

    fn apply<'a>(&'a self, batch: &'a mut Batch<'_>, events: &'a [RecordedEvent]) -> Applied<'a> {
        async move {
            let table = batch.table("webhooks");
            for e in events {
                if e.stream_id.split_once(':').map(|(c, _)| c)
                    != Some(domain::project::STREAM_CATEGORY)
                {
                    continue;
                }
                let event = crate::projection::project_event(e)?;
                enqueue_deliveries(batch, &table, e, &event).await?;
                apply_config(batch, &table, e, &event).await?;
            }
            Ok(())
        }
        .boxed()
    }
}

/// A delivery's id: 20 hex characters like the original's webhook event ids, derived from
/// the webhook and the event so it is the same however often the event is projected.
pub fn delivery_id(webhook_id: &str, position: i64, action_type: &str) -> String {
    let digest = Sha256::digest(format!("{webhook_id}:{position}:{action_type}"));
    hex::encode(&digest[..10])
}

/// The ordering key shared by one webhook's deliveries.
pub fn ordering_key(webhook_id: &str) -> String {
    format!("webhook:{webhook_id}")
}

async fn enqueue_deliveries(
    batch: &mut Batch<'_>,
    table: &str,
    e: &RecordedEvent,
    event: &ProjectEvent,
) -> Result<(), sqlx::Error> {
    let project_id = event.project_id();
    if let ProjectEvent::WebhookRedeliveryRequested {
        webhook_id,
        delivery_id,
        ..
    } = event
    {
        return batch
            .enqueue(&NewJob {
                kind: DELIVER_JOB.into(),
                payload: serde_json::json!({
                    "webhookId": webhook_id,
                    "projectId": project_id,
                    "deliveryId": delivery_id,
                    "redelivery": true,
                }),
                dedupe_key: Some(format!("webhook-redelivery:{}", e.cursor.position)),
                max_attempts: MAX_DELIVERY_JOB_ATTEMPTS,
                source_position: Some(e.cursor.position),
                ordering_key: Some(ordering_key(webhook_id)),
                run_at: None,
            })
            .await;
    }
    for activity in domain::activity::of_project_event(event) {
        let rows = sqlx::query(sql(format!(
            "SELECT id FROM {table} WHERE project_id = $1 AND enabled AND $2 = ANY(triggers) \
             ORDER BY created_at, id"
        )))
        .bind(project_id)
        .bind(activity.action_type)
        .fetch_all(&mut *batch.conn)
        .await?;
        for row in rows {
            let webhook_id: String = row.try_get("id")?;
            let id = delivery_id(&webhook_id, e.cursor.position, activity.action_type);
            batch
                .enqueue(&NewJob {
                    kind: DELIVER_JOB.into(),
                    payload: serde_json::json!({
                        "webhookId": webhook_id,
                        "projectId": project_id,
                        "deliveryId": id,
                        "eventName": activity.action_type,
                        "position": e.cursor.position,
                        "recordedAt": e.recorded_at.unix_timestamp(),
                        "actorUserId": e.metadata.actor_user_id,
                        "resourceType": activity.resource_type.as_str(),
                        "resourceId": activity.resource_id,
                        "message": activity.message,
                        "eventType": e.event_type,
                        "data": domain::personal::without_personal(&e.event_type, &e.payload),
                    }),
                    dedupe_key: Some(format!("webhook:{id}")),
                    max_attempts: MAX_DELIVERY_JOB_ATTEMPTS,
                    source_position: Some(e.cursor.position),
                    ordering_key: Some(ordering_key(&webhook_id)),
                    run_at: None,
                })
                .await?;
        }
    }
    Ok(())
}

async fn apply_config(
    batch: &mut Batch<'_>,
    table: &str,
    e: &RecordedEvent,
    event: &ProjectEvent,
) -> Result<(), sqlx::Error> {
    let at = e.recorded_at;
    let upsert = |webhook_id: &str, project_id: &str, c: &WebhookConfig| {
        sqlx::query(sql(format!(
            "INSERT INTO {table} (id, project_id, url, description, triggers, enabled, has_secret, \
                                  disabled_reason, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $8) \
             ON CONFLICT (id) DO UPDATE SET url = $3, description = $4, triggers = $5, \
                 enabled = $6, has_secret = $7, updated_at = $8, \
                 disabled_reason = CASE WHEN $6 THEN NULL ELSE {table}.disabled_reason END"
        )))
        .bind(webhook_id.to_owned())
        .bind(project_id.to_owned())
        .bind(c.url.clone())
        .bind(c.description.clone())
        .bind(c.triggers.clone())
        .bind(c.enabled)
        .bind(c.has_secret)
        .bind(at)
    };
    match event {
        ProjectEvent::WebhookCreated {
            project_id,
            webhook_id,
            config,
        }
        | ProjectEvent::WebhookUpdated {
            project_id,
            webhook_id,
            config,
        } => {
            upsert(webhook_id, project_id, config)
                .execute(&mut *batch.conn)
                .await?;
        }
        ProjectEvent::WebhookDisabled {
            webhook_id, reason, ..
        } => {
            sqlx::query(sql(format!(
                "UPDATE {table} SET enabled = false, disabled_reason = $2, updated_at = $3 \
                 WHERE id = $1"
            )))
            .bind(webhook_id)
            .bind(reason)
            .bind(at)
            .execute(&mut *batch.conn)
            .await?;
        }
        ProjectEvent::WebhookDeleted { webhook_id, .. } => {
            sqlx::query(sql(format!("DELETE FROM {table} WHERE id = $1")))
                .bind(webhook_id)
                .execute(&mut *batch.conn)
                .await?;
        }
        // A deleted project's webhooks got its `stream_delete` above; then they go.
        ProjectEvent::ProjectDeleted { project_id } => {
            sqlx::query(sql(format!("DELETE FROM {table} WHERE project_id = $1")))
                .bind(project_id)
                .execute(&mut *batch.conn)
                .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Whether `event` changes what readers of this read model see (the webhook configurations
/// `project.webhooks` answers from). A command waits for this projection only after such an
/// event: the deliveries every other project event queues here are read by the delivery
/// worker, which no client waits for, so waiting for them put a whole batch on most
/// commands' critical path for nothing. Exhaustive on purpose: a new event type must be
/// decided here, next to [`apply_config`].
pub fn changes_what_readers_see(event: &ProjectEvent) -> bool {
    use ProjectEvent as E;
    match event {
        E::WebhookCreated { .. }
        | E::WebhookUpdated { .. }
        | E::WebhookDisabled { .. }
        | E::WebhookDeleted { .. }
        | E::ProjectDeleted { .. } => true,
        E::ProjectCreated { .. }
        | E::ProjectUpdated { .. }
        | E::ProjectMemberRoleSet { .. }
        | E::ProjectMemberRemoved { .. }
        | E::ProjectInviteCreated { .. }
        | E::ProjectInviteAccepted { .. }
        | E::ProjectInviteDeclined { .. }
        | E::ProjectInviteCancelled { .. }
        | E::ModelCreated { .. }
        | E::ModelUpdated { .. }
        | E::ModelDeleted { .. }
        | E::VersionCreated { .. }
        | E::VersionUpdated { .. }
        | E::VersionMoved { .. }
        | E::VersionDeleted { .. }
        | E::VersionReceived { .. }
        | E::ProjectFavoriteSet { .. }
        | E::WebhookRedeliveryRequested { .. } => false,
    }
}

/// Typed reads of the `webhooks` read model, for the API.
pub mod query {
    use sqlx::PgPool;

    /// A webhook's configuration (its secret is never read here).
    #[derive(Clone, Debug, sqlx::FromRow)]
    pub struct WebhookRow {
        /// Id.
        pub id: String,
        /// Its project.
        pub project_id: String,
        /// Whether a signing secret is set.
        pub has_secret: bool,
        /// Where deliveries go.
        pub url: String,
        /// Free text.
        pub description: Option<String>,
        /// Activity action types that fire it.
        pub triggers: Vec<String>,
        /// Whether it sends.
        pub enabled: bool,
        /// Why it was switched off automatically.
        pub disabled_reason: Option<String>,
    }

    /// The webhooks of `project_id` (only `id` when given), oldest first.
    pub async fn webhooks_of(
        pool: &PgPool,
        project_id: &str,
        id: Option<&str>,
    ) -> Result<Vec<WebhookRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT id, project_id, has_secret, url, description, triggers, enabled, \
                    disabled_reason \
             FROM webhooks WHERE project_id = $1 AND ($2::text IS NULL OR id = $2) \
             ORDER BY created_at, id",
        )
        .bind(project_id)
        .bind(id)
        .fetch_all(pool)
        .await
    }
}

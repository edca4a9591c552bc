//! Reactions to events: webhook delivery (and, as they land, previews, file imports, email).
//!
//! Architecture invariant: workers change domain state only by sending commands (through a
//! trait the application wires, e.g. [`webhooks::WebhookControl`]); they never write
//! read-model tables or the event log directly. They take their work from the job table that
//! projectors fill (the outbox), so nothing is lost when a worker dies mid-job, and they keep
//! their own operational records (attempts, delivery logs) in tables of their own.

pub mod runner;
pub mod webhooks;

use std::sync::Arc;

pub use runner::{JobError, JobHandler, JobRunner, RunnerOptions};

/// What the handlers need from the application.
pub struct Dependencies {
    /// The runtime pool.
    pub pool: sqlx::PgPool,
    /// Webhook delivery settings.
    pub webhooks: webhooks::DeliveryOptions,
    /// How webhooks get switched off.
    pub webhook_control: Arc<dyn webhooks::WebhookControl>,
}

/// Every job handler the product runs, by kind.
pub fn registry(deps: Dependencies) -> Result<Vec<Arc<dyn JobHandler>>, reqwest::Error> {
    Ok(vec![Arc::new(webhooks::WebhookDeliverer::new(
        deps.pool,
        deps.webhooks,
        deps.webhook_control,
    )?)])
}

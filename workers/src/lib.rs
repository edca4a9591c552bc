//! Reactions to events: webhook delivery, transactional mail, model ingestions' idle clock
//! and finishing, file imports, previews (`preview`: the viewer in headless Chromium), and the S3 file store
//! ([`blobs`]) they and the API share.
//!
//! Architecture invariant: workers change domain state only by sending commands (through a
//! trait the application wires, e.g. [`webhooks::WebhookControl`]); they never write
//! read-model tables or the event log directly. They take their work from the job table that
//! projectors fill (the outbox), so nothing is lost when a worker dies mid-job, and they keep
//! their own operational records (attempts, delivery logs) in tables of their own.

pub mod blobs;
pub mod bundle;
pub mod email;
pub mod import;
pub mod ingestion;
pub mod preview;
pub mod runner;
pub mod speckle;
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
    /// How ingestions are timed out and finished.
    pub ingestion_control: Arc<dyn ingestion::IngestionControl>,
    /// The file store (bundles); none = bundles are not converted to objects.
    pub blobs: Option<blobs::BlobStore>,
    /// The largest bundle converted to objects, in bytes.
    pub bundle_objects_max_bytes: u64,
    /// The longest one file import's conversion may take.
    pub import_time_limit: std::time::Duration,
    /// The most memory one file import's conversion may be estimated to need, in bytes.
    pub import_memory_limit_bytes: u64,
    /// SMTP settings; none = email disabled (no mail job is ever enqueued then).
    pub mail: Option<email::MailOptions>,
    /// The preview renderer's settings and wiring; none = this process renders no previews
    /// (their jobs wait for a process that does). Needs the file store.
    pub previews: Option<(preview::PreviewOptions, Arc<dyn preview::PreviewControl>)>,
}

/// Why the handlers could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The webhook HTTP client.
    #[error("building the webhook HTTP client: {0}")]
    Webhooks(#[from] reqwest::Error),
    /// The mailer.
    #[error("building the mailer: {0}")]
    Mail(#[from] email::MailSetupError),
}

/// Every job handler the product runs, by kind.
pub fn registry(deps: Dependencies) -> Result<Vec<Arc<dyn JobHandler>>, SetupError> {
    let mut handlers: Vec<Arc<dyn JobHandler>> = vec![Arc::new(webhooks::WebhookDeliverer::new(
        deps.pool.clone(),
        deps.webhooks,
        deps.webhook_control,
    )?)];
    handlers.push(Arc::new(ingestion::IdleClock::new(
        deps.ingestion_control.clone(),
    )));
    handlers.push(Arc::new(ingestion::Finisher::new(
        deps.ingestion_control.clone(),
    )));
    handlers.push(Arc::new(import::FileImporter::new(
        deps.pool.clone(),
        deps.blobs.clone(),
        deps.ingestion_control.clone(),
        deps.import_time_limit,
        deps.import_memory_limit_bytes,
    )));
    if let (Some((options, control)), Some(blobs)) = (deps.previews, deps.blobs.clone()) {
        handlers.push(Arc::new(preview::Renderer::new(
            deps.pool.clone(),
            blobs,
            control,
            options,
        )));
    }
    handlers.push(Arc::new(ingestion::BundleObjects::new(
        deps.pool.clone(),
        deps.blobs,
        deps.bundle_objects_max_bytes,
        deps.ingestion_control,
    )));
    if let Some(mail) = deps.mail {
        handlers.push(Arc::new(email::Mailer::new(deps.pool, mail)?));
    }
    Ok(handlers)
}

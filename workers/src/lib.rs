//! Reactions to events: webhook delivery, previews, file imports, email.
//!
//! Architecture invariant: workers change state only by sending commands; they never write
//! read-model tables or the event log directly. They take their work from the job table that
//! projectors fill (the outbox), so nothing is lost when a worker dies mid-job.

pub mod runner;

pub use runner::{JobError, JobHandler, JobRunner, RunnerOptions};

/// Every job handler the product runs, by kind. Empty until the first reaction lands
/// (webhooks, email, previews, imports add theirs here).
pub fn registry() -> Vec<std::sync::Arc<dyn JobHandler>> {
    Vec::new()
}

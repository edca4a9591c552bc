//! Model ingestion reactions: the idle clock (`ingestion.idle_timeout`, due when an
//! ingestion's idle timeout would run out after one of its events) and finishing an accepted
//! upload whose completing request died (`ingestion.finish`). Both only send commands, which
//! the domain decides on the ingestion's current state: a timeout that something overtook
//! (a later report, an accepted upload, a finish) does nothing, so two workers, a retried job
//! or a job that outlived its reason never fail or finish an ingestion twice.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use schema::jobs::ClaimedJob;
use serde::{Deserialize, Serialize};

use crate::runner::{JobError, JobHandler};

/// Kind of the idle-clock job.
pub const IDLE_TIMEOUT: &str = "ingestion.idle_timeout";
/// Kind of the finishing job.
pub const FINISH: &str = "ingestion.finish";

/// The idle-clock job's input.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdleTimeout {
    /// The ingestion.
    pub ingestion_id: String,
    /// How many events it had when the clock started.
    pub after_events: u64,
}

/// The finishing job's input.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finish {
    /// The ingestion.
    pub ingestion_id: String,
}

/// What the handlers ask of ingestions, through the command path (wired by the application).
pub trait IngestionControl: Send + Sync + 'static {
    /// Fails the ingestion if nothing happened since its `after_events`th event.
    fn time_out<'a>(
        &'a self,
        ingestion_id: &'a str,
        after_events: u64,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Makes the version of an accepted upload and marks the ingestion a success.
    fn finish<'a>(&'a self, ingestion_id: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// Runs `ingestion.idle_timeout`.
pub struct IdleClock {
    control: Arc<dyn IngestionControl>,
}

impl IdleClock {
    /// A handler sending its commands through `control`.
    pub fn new(control: Arc<dyn IngestionControl>) -> Self {
        Self { control }
    }
}

impl JobHandler for IdleClock {
    fn kind(&self) -> &'static str {
        IDLE_TIMEOUT
    }

    fn run<'a>(&'a self, job: &'a ClaimedJob) -> BoxFuture<'a, Result<(), JobError>> {
        async move {
            let input: IdleTimeout = serde_json::from_value(job.payload.clone())
                .map_err(|e| JobError::permanent(format!("malformed job: {e}")))?;
            self.control
                .time_out(&input.ingestion_id, input.after_events)
                .await
                .map_err(JobError::retry)
        }
        .boxed()
    }
}

/// Runs `ingestion.finish`.
pub struct Finisher {
    control: Arc<dyn IngestionControl>,
}

impl Finisher {
    /// A handler sending its commands through `control`.
    pub fn new(control: Arc<dyn IngestionControl>) -> Self {
        Self { control }
    }
}

impl JobHandler for Finisher {
    fn kind(&self) -> &'static str {
        FINISH
    }

    fn run<'a>(&'a self, job: &'a ClaimedJob) -> BoxFuture<'a, Result<(), JobError>> {
        async move {
            let input: Finish = serde_json::from_value(job.payload.clone())
                .map_err(|e| JobError::permanent(format!("malformed job: {e}")))?;
            self.control
                .finish(&input.ingestion_id)
                .await
                .map_err(JobError::retry)
        }
        .boxed()
    }
}

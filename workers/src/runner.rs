//! The job runner: claims due jobs with `FOR UPDATE SKIP LOCKED` under a lease, runs their
//! handlers with bounded concurrency, records every attempt, retries with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng;
use schema::jobs::{self, ClaimedJob};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// A handler's failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// What went wrong (recorded with the attempt).
    pub message: String,
    /// Whether trying again may help.
    pub retryable: bool,
    /// When to try again, if the handler keeps its own schedule (else the runner's backoff).
    pub retry_in: Option<Duration>,
}

impl JobError {
    /// A failure worth retrying (a timeout, a 5xx).
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            retry_in: None,
        }
    }

    /// A failure worth retrying after `delay` (a handler with its own retry schedule).
    pub fn retry_after(message: impl Into<String>, delay: Duration) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            retry_in: Some(delay),
        }
    }

    /// A failure that will not go away (a malformed job).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
            retry_in: None,
        }
    }
}

/// The input of `job`: its payload as `T`; a payload that does not parse fails the job for good.
pub fn job_input<T: serde::de::DeserializeOwned>(job: &ClaimedJob) -> Result<T, JobError> {
    serde_json::from_value(job.payload.clone())
        .map_err(|e| JobError::permanent(format!("malformed job: {e}")))
}

/// Carries out one kind of job. Must be idempotent: a job may run again after a worker died
/// between doing the work and recording it.
pub trait JobHandler: Send + Sync + 'static {
    /// The kind it handles.
    fn kind(&self) -> &'static str;
    /// Does the work.
    fn run<'a>(&'a self, job: &'a ClaimedJob) -> BoxFuture<'a, Result<(), JobError>>;
}

/// Tuning; every value explicit and configurable.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    /// This worker's name in attempt records.
    pub worker_id: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long a claim lasts; a job whose worker died is retried after it.
    pub lease: Duration,
    /// How often to look for due jobs when no notification arrives.
    pub poll_interval: Duration,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// After `run` is cancelled, how long in-flight jobs may go on to finish; those still
    /// running then are stopped and handed back (due again at once, for another worker).
    pub drain: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            worker_id: format!("worker-{}", std::process::id()),
            concurrency: 8,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            drain: Duration::from_secs(20),
        }
    }
}

/// The delay before attempt `attempt + 1`: exponential from `base`, capped, with jitter
/// between half and the whole of it (so retries of many jobs spread out).
pub fn backoff(options: &RunnerOptions, attempt: i32) -> Duration {
    // Attempt 0 or less: no doubling.
    let exp = options
        .backoff_base
        .saturating_mul(2u32.saturating_pow(u32::try_from(attempt.saturating_sub(1)).unwrap_or(0)));
    let capped = exp.min(options.backoff_max);
    capped.mul_f64(rand::rng().random_range(0.5..=1.0))
}

/// Runs handlers for their kinds until cancelled.
pub struct JobRunner {
    pool: PgPool,
    handlers: HashMap<&'static str, Arc<dyn JobHandler>>,
    options: RunnerOptions,
}

impl JobRunner {
    /// A runner over `handlers`.
    pub fn new(pool: PgPool, handlers: Vec<Arc<dyn JobHandler>>, options: RunnerOptions) -> Self {
        let handlers = handlers.into_iter().map(|h| (h.kind(), h)).collect();
        Self {
            pool,
            handlers,
            options,
        }
    }

    /// Claims and runs jobs until `cancel` fires; in-flight jobs then have
    /// [`RunnerOptions::drain`] to finish, and those that do not are handed back.
    pub async fn run(self, cancel: CancellationToken) {
        if self.handlers.is_empty() {
            tracing::info!("no job handlers registered; the worker idles");
            cancel.cancelled().await;
            return;
        }
        let kinds: Vec<String> = self.handlers.keys().map(|k| (*k).to_owned()).collect();
        let slots = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        // Owned by this future: aborting the runner aborts its jobs, as a crash would.
        let mut running = tokio::task::JoinSet::new();
        let (wake_tx, mut wake_rx) = tokio::sync::watch::channel(0u64);
        // A finished job frees a slot and may unblock the next job of its ordering key.
        let finished = Arc::new(tokio::sync::Notify::new());
        // What each running task holds now, to hand back what is left when draining ends.
        let held: Arc<std::sync::Mutex<HashMap<tokio::task::Id, ClaimedJob>>> = Arc::default();
        let listener = tokio::spawn(schema::wakeups::listen(
            self.pool.clone(),
            schema::wakeups::JOBS_CHANNEL,
            wake_tx,
            cancel.clone(),
        ));
        while !cancel.is_cancelled() {
            let free = slots.available_permits();
            let claimed = if free == 0 {
                Ok(Vec::new())
            } else {
                jobs::claim(
                    &self.pool,
                    &self.options.worker_id,
                    &kinds,
                    free as i64,
                    self.options.lease,
                )
                .await
            };
            match claimed {
                Ok(batch) if !batch.is_empty() => {
                    for job in batch {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            break;
                        };
                        let Some(handler) = self.handlers.get(job.kind.as_str()).cloned() else {
                            continue;
                        };
                        let pool = self.pool.clone();
                        let options = self.options.clone();
                        let finished = finished.clone();
                        let kinds = kinds.clone();
                        let cancel = cancel.clone();
                        let held = held.clone();
                        running.spawn(async move {
                            let mut job = job;
                            loop {
                                hold(&held, Some(&job));
                                execute(&pool, &options, handler.as_ref(), &job).await;
                                hold(&held, None);
                                // Run the key's next job at once, in this slot.
                                let Some(key) = job.ordering_key.as_deref() else { break };
                                if cancel.is_cancelled() {
                                    break;
                                }
                                match jobs::claim_next_in_order(
                                    &pool,
                                    &options.worker_id,
                                    &kinds,
                                    key,
                                    options.lease,
                                )
                                .await
                                {
                                    Ok(Some(next)) => job = next,
                                    Ok(None) => break,
                                    Err(e) => {
                                        tracing::warn!(error = %e, "claiming the next ordered job failed");
                                        break;
                                    }
                                }
                            }
                            drop(permit);
                            finished.notify_one();
                        });
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
            }
            while running.try_join_next().is_some() {}
            tokio::select! {
                _ = wake_rx.changed() => {}
                () = finished.notified() => {}
                () = tokio::time::sleep(self.options.poll_interval) => {}
                () = cancel.cancelled() => {}
            }
        }
        // Let in-flight jobs finish and record their outcome, for as long as draining allows.
        let drained = tokio::time::timeout(self.options.drain, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        listener.abort();
        if drained.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
            let left: Vec<ClaimedJob> = held
                .lock()
                .map(|mut h| h.drain().map(|(_, job)| job).collect())
                .unwrap_or_default();
            for job in left {
                match jobs::hand_back(&self.pool, &self.options.worker_id, &job).await {
                    Ok(true) => {
                        tracing::info!(job = job.id, kind = %job.kind, "job handed back at shutdown")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(job = job.id, error = %e, "cannot hand the job back; it is retried when its lease runs out")
                    }
                }
            }
        }
    }
}

/// Records the job the current task holds (`None`: it holds none).
fn hold(held: &std::sync::Mutex<HashMap<tokio::task::Id, ClaimedJob>>, job: Option<&ClaimedJob>) {
    let Some(task) = tokio::task::try_id() else {
        return;
    };
    if let Ok(mut held) = held.lock() {
        match job {
            Some(job) => {
                held.insert(task, job.clone());
            }
            None => {
                held.remove(&task);
            }
        }
    }
}

async fn execute(
    pool: &PgPool,
    options: &RunnerOptions,
    handler: &dyn JobHandler,
    job: &ClaimedJob,
) {
    let worker = options.worker_id.as_str();
    // The job continues the trace of the command whose event caused it.
    let span = tracing::info_span!(
        "job",
        kind = %job.kind,
        job = job.id,
        attempt = job.attempt
    );
    schema::trace::continue_trace(&span, job.traceparent.as_deref());
    // Extend the lease while the handler runs, so only a dead worker loses its job.
    let outcome = {
        let run = tracing::Instrument::instrument(handler.run(job), span.clone());
        tokio::pin!(run);
        let mut beat = tokio::time::interval(options.lease / 3);
        beat.tick().await;
        loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                _ = beat.tick() => {
                    if let Err(e) = jobs::extend_lease(pool, worker, job, options.lease).await {
                        tracing::warn!(job = job.id, error = %e, "cannot extend the job lease");
                    }
                }
            }
        }
    };
    let recorded = match &outcome {
        Ok(()) => jobs::succeed(pool, worker, job).await,
        Err(e) => {
            let retry_in = e
                .retryable
                .then(|| e.retry_in.unwrap_or_else(|| backoff(options, job.attempt)));
            tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempt, error = %e.message, "job failed");
            jobs::fail(pool, worker, job, &e.message, retry_in).await
        }
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => tracing::warn!(job = job.id, "lease lost before the outcome was recorded"),
        Err(e) => {
            tracing::error!(job = job.id, error = %e, "cannot record the job outcome; it will be retried")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let options = RunnerOptions {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
            ..RunnerOptions::default()
        };
        for _ in 0..100 {
            let first = backoff(&options, 1);
            assert!(
                first >= Duration::from_secs(1) && first <= Duration::from_secs(2),
                "{first:?}"
            );
            let fourth = backoff(&options, 4);
            assert!(
                fourth >= Duration::from_secs(8) && fourth <= Duration::from_secs(16),
                "{fourth:?}"
            );
            let late = backoff(&options, 30);
            assert!(
                late >= Duration::from_secs(30) && late <= Duration::from_secs(60),
                "{late:?}"
            );
        }
    }
}

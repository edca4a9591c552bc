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

use crate::runner::{JobError, JobHandler, job_input};
use domain::ingestion::IngestionCommand;

/// Kind of the idle-clock job.
pub const IDLE_TIMEOUT: &str = "ingestion.idle_timeout";
/// Kind of the finishing job.
pub const FINISH: &str = "ingestion.finish";
/// Kind of the job turning a successful bundle into Speckle objects.
pub const BUNDLE_OBJECTS: &str = "ingestion.bundle_objects";

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

/// Why a command a handler sent did not take effect.
#[derive(Debug, Clone)]
pub enum CommandFailure {
    /// The ingestion refused it (finished, cancelled, unknown): nothing to retry.
    Refused(String),
    /// It could not be carried out now (the database): worth retrying.
    Failed(String),
}

/// What the handlers ask of ingestions, through the command path (wired by the application).
pub trait IngestionControl: Send + Sync + 'static {
    /// Runs `command` on the ingestion as the system; returns the ingestion after it.
    fn command<'a>(
        &'a self,
        ingestion_id: &'a str,
        command: domain::ingestion::IngestionCommand,
    ) -> BoxFuture<'a, Result<Option<domain::ingestion::Ingestion>, CommandFailure>>;
    /// Makes the version of an accepted upload and marks the ingestion a success.
    fn finish<'a>(&'a self, ingestion_id: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// A command's outcome as a job's: refused (the ingestion moved on) is done too.
pub(crate) fn done<T>(outcome: Result<T, CommandFailure>) -> Result<(), JobError> {
    match outcome {
        Ok(_) | Err(CommandFailure::Refused(_)) => Ok(()),
        Err(CommandFailure::Failed(m)) => Err(JobError::retry(m)),
    }
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
            let input: IdleTimeout = job_input(job)?;
            let command = IngestionCommand::TimeOut {
                after_events: input.after_events,
            };
            done(self.control.command(&input.ingestion_id, command).await)
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
            let input: Finish = job_input(job)?;
            self.control
                .finish(&input.ingestion_id)
                .await
                .map_err(JobError::retry)
        }
        .boxed()
    }
}

/// The bundle-objects job's input.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleObjectsJob {
    /// The ingestion.
    pub ingestion_id: String,
    /// Its project.
    pub project_id: String,
    /// The version.
    pub version_id: String,
    /// The version's bundle reference: the root object is stored under it.
    pub root_id: String,
    /// The model's name (the root collection's name).
    pub model_name: String,
    /// The bundle's file names.
    pub files: Vec<String>,
}

/// Runs `ingestion.bundle_objects`: reads the bundle from the file store, converts it
/// ([`crate::bundle`]), stores the objects (idempotent: first write wins) with the root under
/// the bundle reference, and records the outcome. A bundle that cannot be converted is
/// recorded as such and the job ends: the version and its bundle are not affected.
pub struct BundleObjects {
    pool: sqlx::PgPool,
    store: Option<crate::blobs::BlobStore>,
    max_bytes: u64,
    control: Arc<dyn IngestionControl>,
}

impl BundleObjects {
    /// A handler storing into `pool`, reading from `store`, converting bundles of at most
    /// `max_bytes`.
    pub fn new(
        pool: sqlx::PgPool,
        store: Option<crate::blobs::BlobStore>,
        max_bytes: u64,
        control: Arc<dyn IngestionControl>,
    ) -> Self {
        Self {
            pool,
            store,
            max_bytes,
            control,
        }
    }

    async fn convert(&self, input: &BundleObjectsJob) -> Result<Result<String, String>, JobError> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| JobError::retry("no file store is configured"))?;
        let mut files = Vec::with_capacity(input.files.len());
        let mut total: u64 = 0;
        for name in &input.files {
            let key = format!("versions/{}/{name}", input.version_id);
            let Some(bytes) = store
                .get(&key)
                .await
                .map_err(|e| JobError::retry(e.to_string()))?
            else {
                return Ok(Err(format!("bundle file {name} is missing from the store")));
            };
            total += bytes.len() as u64;
            if total > self.max_bytes {
                return Ok(Err(format!(
                    "the bundle is larger than {} bytes, the most converted to objects",
                    self.max_bytes
                )));
            }
            files.push(crate::bundle::BundleFile {
                name: name.clone(),
                bytes,
            });
        }
        let converted = match crate::bundle::objects_from_bundle(&files, &input.model_name) {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("the bundle could not be read: {e}"))),
        };
        drop(files);
        let objects = with_root_id(converted, &input.root_id)
            .map_err(|e| JobError::permanent(e.to_string()))?;
        for chunk in objects.chunks(500) {
            schema::objects::insert_batch(&self.pool, &input.project_id, chunk)
                .await
                .map_err(|e| JobError::retry(e.to_string()))?;
        }
        Ok(Ok(input.root_id.clone()))
    }
}

impl JobHandler for BundleObjects {
    fn kind(&self) -> &'static str {
        BUNDLE_OBJECTS
    }

    fn run<'a>(&'a self, job: &'a ClaimedJob) -> BoxFuture<'a, Result<(), JobError>> {
        async move {
            let input: BundleObjectsJob = job_input(job)?;
            let outcome = self.convert(&input).await?;
            if let Err(reason) = &outcome {
                tracing::warn!(ingestion = %input.ingestion_id, %reason, "bundle not converted to objects");
            }
            let command = IngestionCommand::RecordObjects { outcome };
            done(self.control.command(&input.ingestion_id, command).await)
        }
        .boxed()
    }
}

/// The converted objects with the root stored under `root_id` (the version's bundle
/// reference), so the version's `referencedObject` names a stored object: the viewer, GraphQL
/// `object` and the object routes then need nothing special for bundle-born versions. Nothing
/// refers to the root, so only its own id changes.
fn with_root_id(
    converted: crate::bundle::ConvertedBundle,
    root_id: &str,
) -> Result<Vec<schema::objects::NewObject>, serde_json::Error> {
    let mut objects = converted.objects;
    for o in &mut objects {
        if o.id == converted.root_id {
            let mut data: serde_json::Value = serde_json::from_str(&o.data)?;
            if let Some(map) = data.as_object_mut() {
                map.insert("id".into(), serde_json::Value::String(root_id.to_owned()));
            }
            o.data = serde_json::to_string(&data)?;
            root_id.clone_into(&mut o.id);
        }
    }
    Ok(objects)
}

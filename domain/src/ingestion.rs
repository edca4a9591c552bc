//! The ModelIngestion aggregate: one send of a model, from its first report to its version.
//!
//! A client (specklepy's `send3`, a connector, a file-import worker) creates an ingestion on a
//! model, reports progress while it builds and uploads, and the server turns the upload into a
//! version whose id was reserved when the ingestion was created. Each ingestion has its own
//! stream (`ingestion:<id>`): progress reports are chatty (every few seconds for hours), and on
//! the project's stream they would make every model, version and member command of a busy
//! project conflict with them and grow the stream it folds. What spans both streams is checked
//! by the caller with the project's state (the model exists, the caller may create versions)
//! and by the project's own `CreateVersion` (the reserved id is unused), so the ingestion's
//! stream needs no project fact to decide.
//!
//! Statuses on the wire are the five specklepy parses: `queued`, `processing`, `success`,
//! `failed`, `cancelled`. An idle timeout is `failed` with `cancellationRequested` set (as the
//! original's 3.0 line does), never a sixth status.

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Entity};
use crate::event::{EventCodecError, NewEvent};
use crate::ids::{StreamId, StreamIdError, check_entity_id};
use crate::names::{MAX_MESSAGE_CHARS, MAX_SOURCE_APPLICATION_CHARS, check_len};
use crate::upcast::Upcasters;

/// The stream category of ingestion streams.
pub const STREAM_CATEGORY: &str = "ingestion";

/// The longest idle timeout a client may ask for: a week.
pub const MAX_IDLE_TIMEOUT_SECONDS: u32 = 7 * 24 * 3600;

/// The longest stack trace kept with a failure.
pub const MAX_STACKTRACE_CHARS: usize = 262_144;

/// The event stream of ingestion `ingestion_id`.
pub fn stream_id(ingestion_id: &str) -> Result<StreamId, StreamIdError> {
    StreamId::new(STREAM_CATEGORY, ingestion_id)
}

/// The reference a bundle version's `referencedObject` holds:
/// `bundle.<projectId>.<modelId>.<versionId>` (ids never contain a dot).
pub fn bundle_reference(project_id: &str, model_id: &str, version_id: &str) -> String {
    format!("bundle.{project_id}.{model_id}.{version_id}")
}

/// Where an ingestion is. Serialised in the wire's lower case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum IngestionStatus {
    /// Waiting for a worker.
    Queued,
    /// Being built, uploaded or turned into a version.
    Processing,
    /// The version exists.
    Success,
    /// Given up: an error, or no report within the idle timeout.
    Failed,
    /// Cancelled by whoever did the work.
    Cancelled,
}

impl IngestionStatus {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a wire value.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Processing,
            Self::Success,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Whether nothing can change it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::Cancelled)
    }
}

/// What produced the data: the application and, for file imports, the file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceData {
    /// The producing application's slug, e.g. `rhino`, `ifc`, `pytest`.
    pub source_application_slug: String,
    /// Its version.
    pub source_application_version: String,
    /// The imported file's name, if any.
    #[serde(default)]
    pub file_name: Option<String>,
    /// The imported file's size, if any.
    #[serde(default)]
    pub file_size_bytes: Option<u64>,
}

/// One uploaded bundle file: its bare name and the ETag the store gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedFile {
    /// Bare file name (no `/`, `\` or `:`).
    pub name: String,
    /// The store's ETag, quotes included.
    pub etag: String,
}

/// An uploaded file an ingestion imports (file import): the worker converts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportFile {
    /// The stored file's id (its key is `assets/<projectId>/<fileId>`).
    pub file_id: String,
    /// The name it was uploaded with.
    pub file_name: String,
    /// Its lower-case extension, which picks the importer (`ifc`, `obj`, `stl`).
    pub file_type: String,
    /// Bytes.
    pub file_size: u64,
}

/// Whether `name` is a bare file name: not empty, not `.` or `..`, without `/`, `\` or `:`.
pub fn is_bare_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.contains(['/', '\\', ':'])
        && !name.chars().any(char::is_control)
}

/// Everything one may ask of an ingestion.
// A command lives for one decision; boxing its largest variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum IngestionCommand {
    /// Start an ingestion on a model (the caller checked the model and the caller's rights).
    Create {
        /// New ingestion id.
        ingestion_id: String,
        /// The project.
        project_id: String,
        /// The model the version will belong to.
        model_id: String,
        /// The user who owns it.
        user_id: String,
        /// The id the version will get, reserved now.
        version_id: String,
        /// `queued` for a file waiting for a worker, `processing` for a client's own send.
        queued: bool,
        /// The first progress message.
        progress_message: String,
        /// What produces the data.
        source: SourceData,
        /// Seconds without a report after which the ingestion fails.
        max_idle_timeout_seconds: u32,
        /// The uploaded file to import, for a file import.
        file: Option<ImportFile>,
    },
    /// A worker took a queued ingestion (also accepted on a processing one).
    StartProcessing {
        /// Progress message.
        progress_message: String,
        /// The worker's own source data.
        source: SourceData,
    },
    /// Put it back in the queue (a worker shutting down).
    Requeue {
        /// Progress message.
        progress_message: String,
    },
    /// Report progress.
    UpdateProgress {
        /// Progress message.
        progress_message: String,
        /// Fraction done, if known.
        progress: Option<f64>,
    },
    /// Ask whoever does the work to stop (cooperative).
    RequestCancellation {
        /// Why, if given.
        message: Option<String>,
    },
    /// The work failed.
    FailWithError {
        /// Why.
        error_reason: String,
        /// Where, if known.
        error_stacktrace: Option<String>,
    },
    /// The work was cancelled (repeats are answered with the cancelled ingestion).
    FailWithCancel {
        /// Why, if given.
        message: Option<String>,
    },
    /// The upload is complete and verified: the server owns the ingestion from now on, and the
    /// idle clock stops. Repeating the same completion changes nothing.
    AcceptUpload {
        /// The version's root: the bundle reference, or a stored root object's id.
        root_object_id: String,
        /// The version's object count.
        total_children_count: u32,
        /// The version message, if given.
        message: Option<String>,
        /// The bundle's files (empty for a root object already in the object store).
        files: Vec<UploadedFile>,
    },
    /// The reserved version exists now.
    Succeed,
    /// The server could not make the version from an accepted upload (its model or project
    /// was deleted meanwhile): the ingestion fails with the reason.
    Reject {
        /// Why.
        reason: String,
    },
    /// The objects made from a successful ingestion's bundle (a reaction: the bundle as
    /// Speckle objects, for the viewer and older clients), or why they could not be made.
    /// Recorded once; a repeat changes nothing.
    RecordObjects {
        /// The stored root object's id, or the reason the bundle could not be converted.
        outcome: Result<String, String>,
    },
    /// The idle timeout ran out since the ingestion's `after_events`th event (scheduled by a
    /// reaction when that event was recorded); does nothing if anything happened since.
    TimeOut {
        /// The number of events the ingestion had when the clock started.
        after_events: u64,
    },
}

/// Something that happened to an ingestion. Payloads are camelCase JSON; each carries the
/// project and ingestion ids so readers can route it without folding the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all_fields = "camelCase")]
pub enum IngestionEvent {
    /// An ingestion began.
    IngestionCreated {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// Model.
        model_id: String,
        /// Owner.
        user_id: String,
        /// Reserved version id.
        version_id: String,
        /// `queued` or `processing`.
        status: IngestionStatus,
        /// First message.
        progress_message: String,
        /// Producer.
        source_data: SourceData,
        /// Idle timeout.
        max_idle_timeout_seconds: u32,
        /// The uploaded file to import (file imports only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<ImportFile>,
    },
    /// A worker started on it.
    IngestionProcessingStarted {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// Message.
        progress_message: String,
        /// The worker's source data.
        source_data: SourceData,
    },
    /// It went back to the queue.
    IngestionRequeued {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// Message.
        progress_message: String,
    },
    /// Progress was reported.
    IngestionProgressUpdated {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// Message.
        progress_message: String,
        /// Fraction done.
        progress: Option<f64>,
    },
    /// Someone asked the worker to stop.
    IngestionCancellationRequested {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// Why.
        message: Option<String>,
    },
    /// The upload was verified; the version is being made.
    IngestionUploadCompleted {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// The version's root.
        root_object_id: String,
        /// Object count.
        total_children_count: u32,
        /// Version message.
        message: Option<String>,
        /// Bundle files.
        files: Vec<UploadedFile>,
    },
    /// The version exists.
    IngestionSucceeded {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// The version.
        version_id: String,
    },
    /// It failed.
    IngestionFailed {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// Why.
        error_reason: String,
        /// Where.
        error_stacktrace: Option<String>,
        /// Whether the idle timeout ran out (the server then also requests cancellation).
        timed_out: bool,
    },
    /// The bundle of a successful ingestion was stored as Speckle objects too.
    IngestionObjectsBuilt {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// The root object (stored under the version's bundle reference).
        root_object_id: String,
    },
    /// The bundle could not be turned into Speckle objects (the version and its bundle stay).
    IngestionObjectsFailed {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// Why.
        reason: String,
    },
    /// It was cancelled.
    IngestionCancelled {
        /// Ingestion id.
        ingestion_id: String,
        /// Project.
        project_id: String,
        /// Why.
        message: Option<String>,
    },
}

impl IngestionEvent {
    /// Version of every payload shape.
    pub const SCHEMA_VERSION: u32 = 1;

    /// Every event type.
    pub const EVENT_TYPES: [&'static str; 11] = [
        "IngestionCreated",
        "IngestionProcessingStarted",
        "IngestionRequeued",
        "IngestionProgressUpdated",
        "IngestionCancellationRequested",
        "IngestionUploadCompleted",
        "IngestionSucceeded",
        "IngestionFailed",
        "IngestionCancelled",
        "IngestionObjectsBuilt",
        "IngestionObjectsFailed",
    ];

    /// The ingestion it is about.
    pub fn ingestion_id(&self) -> &str {
        match self {
            Self::IngestionCreated { ingestion_id, .. }
            | Self::IngestionProcessingStarted { ingestion_id, .. }
            | Self::IngestionRequeued { ingestion_id, .. }
            | Self::IngestionProgressUpdated { ingestion_id, .. }
            | Self::IngestionCancellationRequested { ingestion_id, .. }
            | Self::IngestionUploadCompleted { ingestion_id, .. }
            | Self::IngestionSucceeded { ingestion_id, .. }
            | Self::IngestionFailed { ingestion_id, .. }
            | Self::IngestionCancelled { ingestion_id, .. }
            | Self::IngestionObjectsBuilt { ingestion_id, .. }
            | Self::IngestionObjectsFailed { ingestion_id, .. } => ingestion_id,
        }
    }

    /// The project it belongs to.
    pub fn project_id(&self) -> &str {
        match self {
            Self::IngestionCreated { project_id, .. }
            | Self::IngestionProcessingStarted { project_id, .. }
            | Self::IngestionRequeued { project_id, .. }
            | Self::IngestionProgressUpdated { project_id, .. }
            | Self::IngestionCancellationRequested { project_id, .. }
            | Self::IngestionUploadCompleted { project_id, .. }
            | Self::IngestionSucceeded { project_id, .. }
            | Self::IngestionFailed { project_id, .. }
            | Self::IngestionCancelled { project_id, .. }
            | Self::IngestionObjectsBuilt { project_id, .. }
            | Self::IngestionObjectsFailed { project_id, .. } => project_id,
        }
    }

    crate::event::event_codec!("ingestion");
}

/// An ingestion, as decisions and the idle clock need it.
#[derive(Clone, Debug, PartialEq)]
pub struct Ingestion {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Model.
    pub model_id: String,
    /// Owner.
    pub user_id: String,
    /// Reserved version id.
    pub version_id: String,
    /// Status.
    pub status: IngestionStatus,
    /// Whether cancellation was requested.
    pub cancellation_requested: bool,
    /// Producer.
    pub source: SourceData,
    /// Idle timeout.
    pub max_idle_timeout_seconds: u32,
    /// The accepted upload, once `complete` was accepted.
    pub upload: Option<AcceptedUpload>,
    /// Events folded so far (the stream version).
    pub events: u64,
    /// Whether the bundle's objects were recorded (made, or failed).
    pub objects_recorded: bool,
}

/// A verified upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedUpload {
    /// The version's root.
    pub root_object_id: String,
    /// Object count.
    pub total_children_count: u32,
    /// Version message.
    pub message: Option<String>,
    /// Bundle files.
    pub files: Vec<UploadedFile>,
}

impl Ingestion {
    /// Whether the idle clock runs: not finished, and no upload accepted yet.
    pub fn idle_clock_running(&self) -> bool {
        !self.status.is_terminal() && self.upload.is_none()
    }
}

/// The folded state of an ingestion stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum IngestionState {
    /// Nothing yet.
    #[default]
    Initial,
    /// Created.
    Active(Box<Ingestion>),
}

impl IngestionState {
    /// The ingestion, once created.
    pub fn ingestion(&self) -> Option<&Ingestion> {
        match self {
            Self::Initial => None,
            Self::Active(i) => Some(i),
        }
    }
}

fn check_message(field: &'static str, message: Option<&str>) -> Result<(), DomainError> {
    message.map_or(Ok(()), |m| check_len(field, m, MAX_MESSAGE_CHARS))
}

fn check_source(source: &SourceData) -> Result<(), DomainError> {
    check_len(
        "sourceApplicationSlug",
        &source.source_application_slug,
        MAX_SOURCE_APPLICATION_CHARS,
    )?;
    check_len(
        "sourceApplicationVersion",
        &source.source_application_version,
        MAX_SOURCE_APPLICATION_CHARS,
    )?;
    if let Some(name) = &source.file_name {
        check_len("fileName", name, MAX_SOURCE_APPLICATION_CHARS)?;
    }
    Ok(())
}

fn refuse(i: &Ingestion, action: &'static str) -> DomainError {
    let status = if i.upload.is_some() && !i.status.is_terminal() {
        "completing"
    } else {
        i.status.as_str()
    };
    DomainError::InvalidTransition {
        kind: Entity::Ingestion,
        status,
        action,
    }
}

fn create(command: IngestionCommand) -> Result<Vec<IngestionEvent>, DomainError> {
    let IngestionCommand::Create {
        ingestion_id,
        project_id,
        model_id,
        user_id,
        version_id,
        queued,
        progress_message,
        source,
        max_idle_timeout_seconds,
        file,
    } = command
    else {
        // The stream does not know its id before creation; the caller does.
        return Err(DomainError::not_found(Entity::Ingestion, ""));
    };
    check_entity_id("ingestionId", &ingestion_id)?;
    check_entity_id("projectId", &project_id)?;
    check_entity_id("modelId", &model_id)?;
    check_entity_id("userId", &user_id)?;
    check_entity_id("versionId", &version_id)?;
    check_message("progressMessage", Some(&progress_message))?;
    check_source(&source)?;
    if max_idle_timeout_seconds == 0 || max_idle_timeout_seconds > MAX_IDLE_TIMEOUT_SECONDS {
        return Err(DomainError::invalid(
            "maxIdleTimeoutSeconds",
            format!("must be 1 to {MAX_IDLE_TIMEOUT_SECONDS} seconds"),
        ));
    }
    Ok(vec![IngestionEvent::IngestionCreated {
        ingestion_id,
        project_id,
        model_id,
        user_id,
        version_id,
        status: if queued {
            IngestionStatus::Queued
        } else {
            IngestionStatus::Processing
        },
        progress_message,
        source_data: source,
        max_idle_timeout_seconds,
        file,
    }])
}

/// Decides what `command` does to the ingestion in `state`.
pub fn decide(
    state: &IngestionState,
    command: IngestionCommand,
) -> Result<Vec<IngestionEvent>, DomainError> {
    let i = match state {
        IngestionState::Initial => return create(command),
        IngestionState::Active(i) => i,
    };
    let ingestion_id = i.id.clone();
    let project_id = i.project_id.clone();
    // Reports are taken while the client or worker owns the ingestion.
    let open = !i.status.is_terminal() && i.upload.is_none();
    match command {
        IngestionCommand::Create { ingestion_id, .. } => Err(DomainError::AlreadyExists {
            kind: Entity::Ingestion,
            id: ingestion_id,
        }),
        IngestionCommand::StartProcessing {
            progress_message,
            source,
        } => {
            if !open {
                return Err(refuse(i, "startProcessing"));
            }
            check_message("progressMessage", Some(&progress_message))?;
            check_source(&source)?;
            Ok(vec![IngestionEvent::IngestionProcessingStarted {
                ingestion_id,
                project_id,
                progress_message,
                source_data: source,
            }])
        }
        IngestionCommand::Requeue { progress_message } => {
            if !open {
                return Err(refuse(i, "requeue"));
            }
            check_message("progressMessage", Some(&progress_message))?;
            Ok(vec![IngestionEvent::IngestionRequeued {
                ingestion_id,
                project_id,
                progress_message,
            }])
        }
        IngestionCommand::UpdateProgress {
            progress_message,
            progress,
        } => {
            if !open {
                return Err(refuse(i, "updateProgress"));
            }
            check_message("progressMessage", Some(&progress_message))?;
            if progress.is_some_and(|p| !p.is_finite()) {
                return Err(DomainError::invalid("progress", "must be a finite number"));
            }
            Ok(vec![IngestionEvent::IngestionProgressUpdated {
                ingestion_id,
                project_id,
                progress_message,
                progress,
            }])
        }
        IngestionCommand::RequestCancellation { message } => {
            if i.status.is_terminal() {
                return Err(refuse(i, "requestCancellation"));
            }
            if i.cancellation_requested {
                return Ok(vec![]);
            }
            check_message("cancellationMessage", message.as_deref())?;
            Ok(vec![IngestionEvent::IngestionCancellationRequested {
                ingestion_id,
                project_id,
                message,
            }])
        }
        IngestionCommand::FailWithError {
            error_reason,
            error_stacktrace,
        } => {
            if i.status == IngestionStatus::Failed {
                // A repeat: the ingestion already failed.
                return Ok(vec![]);
            }
            if !open {
                return Err(refuse(i, "failWithError"));
            }
            check_message("errorReason", Some(&error_reason))?;
            if let Some(trace) = &error_stacktrace {
                check_len("errorStacktrace", trace, MAX_STACKTRACE_CHARS)?;
            }
            Ok(vec![IngestionEvent::IngestionFailed {
                ingestion_id,
                project_id,
                error_reason,
                error_stacktrace,
                timed_out: false,
            }])
        }
        IngestionCommand::FailWithCancel { message } => {
            if i.status == IngestionStatus::Cancelled {
                return Ok(vec![]);
            }
            if !open {
                return Err(refuse(i, "failWithCancel"));
            }
            check_message("cancellationMessage", message.as_deref())?;
            Ok(vec![IngestionEvent::IngestionCancelled {
                ingestion_id,
                project_id,
                message,
            }])
        }
        IngestionCommand::AcceptUpload {
            root_object_id,
            total_children_count,
            message,
            files,
        } => {
            if let Some(upload) = &i.upload {
                // The same completion again (a client retrying) changes nothing; another one
                // cannot replace it.
                return if upload.root_object_id == root_object_id {
                    Ok(vec![])
                } else {
                    Err(refuse(i, "complete"))
                };
            }
            if i.status.is_terminal() {
                return Err(refuse(i, "complete"));
            }
            check_message("message", message.as_deref())?;
            if let Some(bad) = files.iter().find(|f| !is_bare_file_name(&f.name)) {
                return Err(DomainError::invalid(
                    "files",
                    format!("{:?} is not a bare file name", bad.name),
                ));
            }
            Ok(vec![IngestionEvent::IngestionUploadCompleted {
                ingestion_id,
                project_id,
                root_object_id,
                total_children_count,
                message,
                files,
            }])
        }
        IngestionCommand::Succeed => match (i.status, &i.upload) {
            (IngestionStatus::Success, _) => Ok(vec![]),
            (status, Some(_)) if !status.is_terminal() => {
                Ok(vec![IngestionEvent::IngestionSucceeded {
                    ingestion_id,
                    project_id,
                    version_id: i.version_id.clone(),
                }])
            }
            _ => Err(refuse(i, "succeed")),
        },
        IngestionCommand::Reject { reason } => {
            if i.status.is_terminal() {
                return Err(refuse(i, "reject"));
            }
            Ok(vec![IngestionEvent::IngestionFailed {
                ingestion_id,
                project_id,
                error_reason: reason,
                error_stacktrace: None,
                timed_out: false,
            }])
        }
        IngestionCommand::RecordObjects { outcome } => {
            let has_bundle = i.upload.as_ref().is_some_and(|u| !u.files.is_empty());
            if i.status != IngestionStatus::Success || !has_bundle {
                return Err(refuse(i, "recordObjects"));
            }
            if i.objects_recorded {
                return Ok(vec![]);
            }
            Ok(vec![match outcome {
                Ok(root_object_id) => IngestionEvent::IngestionObjectsBuilt {
                    ingestion_id,
                    project_id,
                    root_object_id,
                },
                Err(reason) => IngestionEvent::IngestionObjectsFailed {
                    ingestion_id,
                    project_id,
                    reason,
                },
            }])
        }
        IngestionCommand::TimeOut { after_events } => {
            if !i.idle_clock_running() || i.events != after_events {
                return Ok(vec![]);
            }
            Ok(vec![IngestionEvent::IngestionFailed {
                ingestion_id,
                project_id,
                error_reason: format!(
                    "No progress was reported for {} seconds: the ingestion timed out.",
                    i.max_idle_timeout_seconds
                ),
                error_stacktrace: None,
                timed_out: true,
            }])
        }
    }
}

/// Folds one event.
pub fn evolve(state: IngestionState, event: &IngestionEvent) -> IngestionState {
    use IngestionEvent as E;
    let mut i = match (state, event) {
        (
            IngestionState::Initial,
            E::IngestionCreated {
                ingestion_id,
                project_id,
                model_id,
                user_id,
                version_id,
                status,
                source_data,
                max_idle_timeout_seconds,
                ..
            },
        ) => {
            return IngestionState::Active(Box::new(Ingestion {
                id: ingestion_id.clone(),
                project_id: project_id.clone(),
                model_id: model_id.clone(),
                user_id: user_id.clone(),
                version_id: version_id.clone(),
                status: *status,
                cancellation_requested: false,
                source: source_data.clone(),
                max_idle_timeout_seconds: *max_idle_timeout_seconds,
                upload: None,
                events: 1,
                objects_recorded: false,
            }));
        }
        (IngestionState::Active(i), _) => i,
        (state @ IngestionState::Initial, _) => return state,
    };
    i.events += 1;
    match event {
        E::IngestionCreated { .. } => {}
        E::IngestionProcessingStarted { source_data, .. } => {
            i.status = IngestionStatus::Processing;
            i.source = source_data.clone();
        }
        E::IngestionRequeued { .. } => i.status = IngestionStatus::Queued,
        E::IngestionProgressUpdated { .. } => {}
        E::IngestionCancellationRequested { .. } => i.cancellation_requested = true,
        E::IngestionUploadCompleted {
            root_object_id,
            total_children_count,
            message,
            files,
            ..
        } => {
            i.upload = Some(AcceptedUpload {
                root_object_id: root_object_id.clone(),
                total_children_count: *total_children_count,
                message: message.clone(),
                files: files.clone(),
            });
        }
        E::IngestionSucceeded { .. } => i.status = IngestionStatus::Success,
        E::IngestionFailed { timed_out, .. } => {
            i.status = IngestionStatus::Failed;
            if *timed_out {
                i.cancellation_requested = true;
            }
        }
        E::IngestionCancelled { .. } => i.status = IngestionStatus::Cancelled,
        E::IngestionObjectsBuilt { .. } | E::IngestionObjectsFailed { .. } => {
            i.objects_recorded = true;
        }
    }
    IngestionState::Active(i)
}

/// Folds a whole stream.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a IngestionEvent>) -> IngestionState {
    events.into_iter().fold(IngestionState::default(), evolve)
}

#[cfg(test)]
mod tests;

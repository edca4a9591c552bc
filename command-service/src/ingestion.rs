//! Model ingestion: the operations both the GraphQL API (`graphql::ingestion`) and the
//! `/api/v2` bundle rail (`ingestion::rest`) run, and the finishing step the idle-clock and
//! recovery jobs run through [`BusIngestionControl`].
//!
//! An ingestion lives on its own stream; what it needs of its project (the model exists, the
//! caller may create versions) is checked on the project's current write-side state
//! ([`crate::commands::CommandBus::current`]) just before the ingestion's command is decided.
//! Completing one spans both streams, in an order that a crash at any point can resume:
//! 1. `AcceptUpload` on the ingestion (the idle clock stops; a repeat is a no-op),
//! 2. `CreateVersion` on the project with the reserved id (skipped when it exists),
//! 3. `Succeed` on the ingestion.
//!
//! The projection enqueues `ingestion.finish` for every accepted upload, so an ingestion whose
//! completing request died between the steps is finished by a worker, never left processing.

pub mod rest;

use domain::error::{DomainError, Entity};
use domain::ingestion::{
    Ingestion, IngestionCommand, IngestionState, SourceData, UploadedFile, bundle_reference,
};
use domain::policy::{self, Principal};
use domain::project::{Project, ProjectState};
use domain::{EventMetadata, ProjectCommand};
use futures::FutureExt;
use futures::future::BoxFuture;

use crate::commands::{CommandBus, CommandError, IngestionAggregate, ProjectAggregate, new_id};

/// Who asks, as every ingestion operation needs it.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The authenticated principal.
    pub principal: Principal,
    /// Event metadata for the commands it causes.
    pub metadata: EventMetadata,
}

/// What `look` sees in project `project_id` as the write side has it now, if `caller` may
/// ingest into it (a project they may not read is "not found").
pub async fn project_for_ingest<R>(
    bus: &CommandBus,
    caller: &Caller,
    project_id: &str,
    look: impl FnOnce(&Project) -> R,
) -> Result<R, CommandError> {
    if caller.principal.user_id.is_none() {
        // Anonymous callers hear "sign in", whatever the project (the policy says so first).
        let any = policy::ProjectAccess {
            visibility: policy::Visibility::Public,
            role_of_principal: None,
        };
        policy::can_ingest(&caller.principal, &any).map_err(CommandError::Denied)?;
    }
    readable_project(bus, &caller.principal, project_id, |project| {
        let access = project.access_for(caller.principal.user_id.as_deref());
        policy::can_ingest(&caller.principal, &access).map(|()| look(project))
    })
    .await?
    .map_err(CommandError::Denied)
}

/// What `look` sees in project `project_id` if `principal` may read it (else the read
/// policy's refusal, as every project operation answers). The project is lent, not copied.
pub async fn readable_project<R>(
    bus: &CommandBus,
    principal: &Principal,
    project_id: &str,
    look: impl FnOnce(&Project) -> R,
) -> Result<R, CommandError> {
    let not_found = || CommandError::Denied(policy::Denied::project_not_found());
    if !domain::is_entity_id(project_id) {
        return Err(not_found());
    }
    bus.read::<ProjectAggregate, _>(project_id, |state| {
        let ProjectState::Active(project) = state else {
            return Err(not_found());
        };
        let access = project.access_for(principal.user_id.as_deref());
        policy::can_read_project(principal, &access).map_err(CommandError::Denied)?;
        Ok(look(project))
    })
    .await?
}

/// Creates the model `name` for an import into a model that does not exist yet (as the
/// original's upload routes do); returns its id, or the id of a model of that name made
/// meanwhile.
pub async fn create_model(
    bus: &CommandBus,
    caller: &Caller,
    project_id: &str,
    name: &str,
) -> Result<String, CommandError> {
    let model_id = new_id();
    let author = caller.principal.user_id.clone().unwrap_or_default();
    let created = bus
        .execute::<ProjectAggregate, _>(project_id, &caller.metadata, |s| {
            let project = s
                .project()
                .ok_or_else(|| CommandError::Denied(policy::Denied::project_not_found()))?;
            let access = project.access_for(Some(&author));
            policy::can_create_model(&caller.principal, &access).map_err(CommandError::Denied)?;
            Ok(ProjectCommand::CreateModel {
                model_id: model_id.clone(),
                name: name.to_owned(),
                description: None,
                author_id: author.clone(),
            })
        })
        .await;
    match created {
        Ok(_) => Ok(model_id),
        Err(CommandError::Domain(DomainError::NameTaken { .. })) => {
            bus.read::<ProjectAggregate, _>(project_id, |state| match state {
                ProjectState::Active(p) => p
                    .model_by_name(name)
                    .map(|(id, _)| id.to_owned())
                    .ok_or_else(|| DomainError::not_found(Entity::Model, name).into()),
                _ => Err(CommandError::Denied(policy::Denied::project_not_found())),
            })
            .await?
        }
        Err(e) => Err(e),
    }
}

/// What a client asks for when it starts an ingestion.
#[derive(Clone, Debug)]
pub struct NewIngestion {
    /// Project.
    pub project_id: String,
    /// Model.
    pub model_id: String,
    /// First message.
    pub progress_message: String,
    /// Producer.
    pub source: SourceData,
    /// Idle timeout (the server's default when absent).
    pub max_idle_timeout_seconds: Option<i64>,
    /// The uploaded file to import: the ingestion is then queued for the importer.
    pub file: Option<domain::ingestion::ImportFile>,
}

/// Starts an ingestion; returns its id. `default_idle_timeout_seconds` applies when the
/// client names none.
pub async fn create(
    bus: &CommandBus,
    default_idle_timeout_seconds: u32,
    caller: &Caller,
    input: NewIngestion,
) -> Result<String, CommandError> {
    let has_model = project_for_ingest(bus, caller, &input.project_id, |p| {
        p.models.contains_key(&input.model_id)
    })
    .await?;
    // `can_ingest` admits signed-in users only.
    let user = caller.principal.user_id.clone().unwrap_or_default();
    if !has_model {
        return Err(DomainError::not_found(Entity::Model, input.model_id).into());
    }
    let timeout = match input.max_idle_timeout_seconds {
        None => default_idle_timeout_seconds,
        Some(s) => u32::try_from(s).map_err(|_| {
            DomainError::invalid(
                "maxIdleTimeoutSeconds",
                format!(
                    "must be 1 to {} seconds",
                    domain::ingestion::MAX_IDLE_TIMEOUT_SECONDS
                ),
            )
        })?,
    };
    let ingestion_id = new_id();
    let command = IngestionCommand::Create {
        ingestion_id: ingestion_id.clone(),
        project_id: input.project_id,
        model_id: input.model_id,
        user_id: user,
        version_id: new_id(),
        queued: input.file.is_some(),
        progress_message: input.progress_message,
        source: input.source,
        max_idle_timeout_seconds: timeout,
        file: input.file,
    };
    bus.execute::<IngestionAggregate, _>(&ingestion_id, &caller.metadata, |_| Ok(command.clone()))
        .await?;
    Ok(ingestion_id)
}

/// The ingestion `ingestion_id` of `project_id`, or "not found".
fn of_project<'a>(
    s: &'a IngestionState,
    project_id: &str,
    ingestion_id: &str,
) -> Result<&'a Ingestion, CommandError> {
    s.ingestion()
        .filter(|i| i.project_id == project_id)
        .ok_or_else(|| DomainError::not_found(Entity::Ingestion, ingestion_id).into())
}

/// Runs `command` on ingestion `ingestion_id` of `project_id` for `caller`.
pub async fn act(
    bus: &CommandBus,
    caller: &Caller,
    project_id: &str,
    ingestion_id: &str,
    command: IngestionCommand,
) -> Result<(), CommandError> {
    project_for_ingest(bus, caller, project_id, |_| ()).await?;
    if !domain::is_entity_id(ingestion_id) {
        return Err(DomainError::not_found(Entity::Ingestion, ingestion_id).into());
    }
    bus.execute::<IngestionAggregate, _>(ingestion_id, &caller.metadata, |s| {
        of_project(s, project_id, ingestion_id)?;
        Ok(command.clone())
    })
    .await?;
    Ok(())
}

/// The ingestion's write-side state, if it belongs to `project_id`.
pub async fn load(
    bus: &CommandBus,
    project_id: &str,
    ingestion_id: &str,
) -> Result<Ingestion, CommandError> {
    if !domain::is_entity_id(ingestion_id) {
        return Err(DomainError::not_found(Entity::Ingestion, ingestion_id).into());
    }
    bus.read::<IngestionAggregate, _>(ingestion_id, |s| {
        of_project(s, project_id, ingestion_id).cloned()
    })
    .await?
}

/// A verified upload to complete an ingestion with.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The version's root.
    pub root_object_id: String,
    /// Object count.
    pub total_children_count: u32,
    /// Version message.
    pub message: Option<String>,
    /// Bundle files (empty for a stored root object).
    pub files: Vec<UploadedFile>,
}

/// Accepts `completion` for the ingestion and makes its version; returns the version id. A
/// repeat answers the same id and creates nothing.
pub async fn complete(
    bus: &CommandBus,
    caller: &Caller,
    project_id: &str,
    ingestion_id: &str,
    completion: Completion,
) -> Result<String, CommandError> {
    act(
        bus,
        caller,
        project_id,
        ingestion_id,
        IngestionCommand::AcceptUpload {
            root_object_id: completion.root_object_id,
            total_children_count: completion.total_children_count,
            message: completion.message,
            files: completion.files,
        },
    )
    .await?;
    finish(bus, &caller.metadata, ingestion_id).await
}

/// Steps 2 and 3 of completing (see the module): makes the reserved version from the accepted
/// upload unless it exists, then marks the ingestion a success. Returns the version id.
/// Idempotent; run by `complete` and by the `ingestion.finish` job.
pub async fn finish(
    bus: &CommandBus,
    metadata: &EventMetadata,
    ingestion_id: &str,
) -> Result<String, CommandError> {
    let current = bus
        .read::<IngestionAggregate, _>(ingestion_id, |s| s.ingestion().cloned())
        .await?;
    let Some(i) = current else {
        return Err(DomainError::not_found(Entity::Ingestion, ingestion_id).into());
    };
    if i.status == domain::ingestion::IngestionStatus::Success {
        return Ok(i.version_id);
    }
    let Some(upload) = i.upload.clone() else {
        return Err(DomainError::InvalidTransition {
            kind: Entity::Ingestion,
            status: i.status.as_str(),
            action: "finish",
        }
        .into());
    };
    if !version_exists(bus, &i).await? {
        let created = bus
            .execute::<ProjectAggregate, _>(&i.project_id, metadata, |_| {
                Ok(ProjectCommand::CreateVersion {
                    version_id: i.version_id.clone(),
                    model_id: i.model_id.clone(),
                    object_id: upload.root_object_id.clone(),
                    // The files (or the stored root object) were verified before the upload
                    // was accepted.
                    root_object_stored: true,
                    message: upload.message.clone(),
                    source_application: Some(i.source.source_application_slug.clone())
                        .filter(|s| !s.is_empty()),
                    total_children_count: upload.total_children_count,
                    parents: Vec::new(),
                    author_id: i.user_id.clone(),
                })
            })
            .await;
        match created {
            // Made meanwhile by a concurrent finisher.
            Ok(_)
            | Err(CommandError::Domain(DomainError::AlreadyExists {
                kind: Entity::Version,
                ..
            })) => {}
            Err(e @ (CommandError::Domain(_) | CommandError::Denied(_))) => {
                // The project refuses the version (its model or the project was deleted
                // meanwhile): the ingestion fails with the reason instead of waiting forever.
                let reason = format!("The version could not be created: {e}");
                bus.execute::<IngestionAggregate, _>(ingestion_id, metadata, |_| {
                    Ok(IngestionCommand::Reject {
                        reason: reason.clone(),
                    })
                })
                .await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
    bus.execute::<IngestionAggregate, _>(ingestion_id, metadata, |_| Ok(IngestionCommand::Succeed))
        .await?;
    Ok(i.version_id)
}

async fn version_exists(bus: &CommandBus, i: &Ingestion) -> Result<bool, CommandError> {
    bus.read::<ProjectAggregate, _>(&i.project_id, |state| match state {
        ProjectState::Active(p) => p.versions.contains_key(&i.version_id),
        _ => false,
    })
    .await
}

/// The bundle reference an ingestion's upload must name as its root.
pub fn expected_root(i: &Ingestion) -> String {
    bundle_reference(&i.project_id, &i.model_id, &i.version_id)
}

/// The storage key of a bundle file of version `version_id`.
pub fn bundle_key(version_id: &str, name: &str) -> String {
    format!("versions/{version_id}/{name}")
}

/// What the workers ask of ingestions, through the command bus.
pub struct BusIngestionControl {
    bus: CommandBus,
}

impl BusIngestionControl {
    /// Control through `bus`.
    pub fn new(bus: CommandBus) -> Self {
        Self { bus }
    }
}

fn system_metadata(ingestion_id: &str) -> EventMetadata {
    EventMetadata {
        causation_id: Some(format!("ingestion:{ingestion_id}")),
        client_name: Some("strata".to_owned()),
        ..EventMetadata::default()
    }
}

impl workers::ingestion::IngestionControl for BusIngestionControl {
    fn command<'a>(
        &'a self,
        ingestion_id: &'a str,
        command: IngestionCommand,
    ) -> BoxFuture<'a, Result<Option<Ingestion>, workers::ingestion::CommandFailure>> {
        use workers::ingestion::CommandFailure;
        async move {
            let result = self
                .bus
                .execute::<IngestionAggregate, _>(
                    ingestion_id,
                    &system_metadata(ingestion_id),
                    |_| Ok(command.clone()),
                )
                .await;
            match result {
                Ok(_) | Err(CommandError::Lag(_)) => {}
                Err(e @ (CommandError::Domain(_) | CommandError::Denied(_))) => {
                    return Err(CommandFailure::Refused(e.to_string()));
                }
                Err(e) => return Err(CommandFailure::Failed(e.to_string())),
            }
            self.bus
                .read::<IngestionAggregate, _>(ingestion_id, |s| s.ingestion().cloned())
                .await
                .map_err(|e| CommandFailure::Failed(e.to_string()))
        }
        .boxed()
    }

    fn finish<'a>(&'a self, ingestion_id: &'a str) -> BoxFuture<'a, Result<(), String>> {
        async move {
            match finish(&self.bus, &system_metadata(ingestion_id), ingestion_id).await {
                // Refused for good (the ingestion then failed with the reason): nothing to
                // retry.
                Ok(_) | Err(CommandError::Domain(_) | CommandError::Denied(_)) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        }
        .boxed()
    }
}

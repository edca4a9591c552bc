//! Model ingestion on the wire: `project.ingestion(id)`, `projectMutations.
//! modelIngestionMutations.*` and the `projectModelIngestionUpdated` subscription, with the
//! types specklepy 2026.9.1 selects (`shared/speckle-ingestion-wire.md` §2). The operations
//! themselves are `crate::ingestion`'s, shared with the `/api/v2` rail.

use async_graphql::futures_util::{Stream, StreamExt};
use async_graphql::{Context, Enum, ID, InputObject, Interface, Object, OneofObject, SimpleObject};
use domain::ingestion::{IngestionCommand, IngestionStatus, SourceData};
use domain::policy::Principal;
use projections::speckle::query::{self, IngestionRow};
use time::OffsetDateTime;

use super::errors::{ErrorCode, gql_error};
use super::mutations::{metadata, signed_in};
use super::services;
use super::wire::BigInt;
use crate::error::{ApiResult, AppError};
use crate::ingestion::{self as service, Caller, Completion, NewIngestion};

/// An ingestion's status, in the wire's lower case.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(rename_items = "camelCase")]
pub enum ModelIngestionStatus {
    /// Waiting for a worker.
    Queued,
    /// Being built, uploaded or turned into a version.
    Processing,
    /// The version exists.
    Success,
    /// Given up.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl From<IngestionStatus> for ModelIngestionStatus {
    fn from(s: IngestionStatus) -> Self {
        match s {
            IngestionStatus::Queued => Self::Queued,
            IngestionStatus::Processing => Self::Processing,
            IngestionStatus::Success => Self::Success,
            IngestionStatus::Failed => Self::Failed,
            IngestionStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// Waiting for a worker.
#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionQueuedStatus {
    status: ModelIngestionStatus,
    progress_message: Option<String>,
}

/// Being worked on.
#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionProcessingStatus {
    status: ModelIngestionStatus,
    progress_message: Option<String>,
    /// Fraction done, as last reported.
    progress: Option<f64>,
}

/// The version exists.
#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionSuccessStatus {
    status: ModelIngestionStatus,
    version_id: String,
}

/// Given up.
#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionFailedStatus {
    status: ModelIngestionStatus,
    error_reason: String,
}

/// Cancelled by whoever did the work.
#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionCancelledStatus {
    status: ModelIngestionStatus,
    cancellation_message: Option<String>,
}

/// Every status variant has its status.
#[derive(Interface, Clone)]
#[graphql(field(name = "status", ty = "&ModelIngestionStatus"))]
pub enum HasModelIngestionStatus {
    /// Queued.
    Queued(ModelIngestionQueuedStatus),
    /// Processing.
    Processing(ModelIngestionProcessingStatus),
    /// Success.
    Success(ModelIngestionSuccessStatus),
    /// Failed.
    Failed(ModelIngestionFailedStatus),
    /// Cancelled.
    Cancelled(ModelIngestionCancelledStatus),
}

/// The statuses that carry the worker's last message.
#[derive(Interface, Clone)]
#[graphql(field(name = "progress_message", ty = "&Option<String>"))]
pub enum HasProgressMessage {
    /// Queued.
    Queued(ModelIngestionQueuedStatus),
    /// Processing.
    Processing(ModelIngestionProcessingStatus),
}

/// One send of a model, from its first report to its version.
#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestion {
    id: ID,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    model_id: String,
    project_id: String,
    user_id: String,
    cancellation_requested: bool,
    /// The id the version gets, reserved when the ingestion was created.
    version_id: Option<String>,
    /// The status and what goes with it.
    status_data: HasModelIngestionStatus,
}

impl From<IngestionRow> for ModelIngestion {
    fn from(row: IngestionRow) -> Self {
        // A status this build does not know reads as failed.
        let status = IngestionStatus::parse(&row.status).unwrap_or(IngestionStatus::Failed);
        let wire = ModelIngestionStatus::from(status);
        let status_data = match status {
            IngestionStatus::Queued => {
                HasModelIngestionStatus::Queued(ModelIngestionQueuedStatus {
                    status: wire,
                    progress_message: row.progress_message.clone(),
                })
            }
            IngestionStatus::Processing => {
                HasModelIngestionStatus::Processing(ModelIngestionProcessingStatus {
                    status: wire,
                    progress_message: row.progress_message.clone(),
                    progress: row.progress,
                })
            }
            IngestionStatus::Success => {
                HasModelIngestionStatus::Success(ModelIngestionSuccessStatus {
                    status: wire,
                    version_id: row.version_id.clone(),
                })
            }
            IngestionStatus::Failed => {
                HasModelIngestionStatus::Failed(ModelIngestionFailedStatus {
                    status: wire,
                    error_reason: row.error_reason.clone().unwrap_or_default(),
                })
            }
            IngestionStatus::Cancelled => {
                HasModelIngestionStatus::Cancelled(ModelIngestionCancelledStatus {
                    status: wire,
                    cancellation_message: row.cancellation_message.clone(),
                })
            }
        };
        Self {
            id: ID(row.id),
            created_at: row.created_at,
            updated_at: row.updated_at,
            model_id: row.model_id,
            project_id: row.project_id,
            user_id: row.user_id,
            cancellation_requested: row.cancellation_requested,
            version_id: Some(row.version_id),
            status_data,
        }
    }
}

fn not_found() -> AppError {
    gql_error(ErrorCode::NotFound, "Model ingestion not found")
}

/// Ingestion `id` of a project the caller may read (the caller checked that).
pub(crate) async fn by_id(
    ctx: &Context<'_>,
    project_id: &str,
    id: &str,
) -> ApiResult<ModelIngestion> {
    query::ingestion(services::pool(ctx)?, project_id, id)
        .await?
        .map(ModelIngestion::from)
        .ok_or_else(not_found)
}

/// What a client sends about the producer.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct SourceDataInput {
    source_application_slug: String,
    source_application_version: String,
    file_name: Option<String>,
    /// Bytes; a 64-bit integer (files pass 2 GiB).
    file_size_bytes: Option<BigInt>,
}

impl From<SourceDataInput> for SourceData {
    fn from(s: SourceDataInput) -> Self {
        Self {
            source_application_slug: s.source_application_slug,
            source_application_version: s.source_application_version,
            file_name: s.file_name,
            file_size_bytes: s.file_size_bytes.and_then(|b| u64::try_from(b.0).ok()),
        }
    }
}

/// `create`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionCreateInput {
    model_id: String,
    project_id: String,
    progress_message: String,
    source_data: SourceDataInput,
    /// Seconds without a report before the ingestion fails (the server's default if null).
    max_idle_timeout_seconds: Option<i64>,
}

/// `startProcessing`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionStartProcessingInput {
    ingestion_id: ID,
    project_id: String,
    progress_message: String,
    source_data: SourceDataInput,
}

/// `requeue`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionRequeueInput {
    ingestion_id: ID,
    project_id: String,
    progress_message: String,
}

/// `updateProgress`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionUpdateInput {
    ingestion_id: ID,
    project_id: String,
    progress_message: String,
    progress: Option<f64>,
}

/// `completeWithVersion`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionSuccessInput {
    ingestion_id: ID,
    project_id: String,
    root_object_id: String,
    version_message: Option<String>,
}

/// `failWithError`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionFailedInput {
    ingestion_id: ID,
    project_id: String,
    error_reason: String,
    error_stacktrace: Option<String>,
}

/// `failWithCancel`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionCancelledInput {
    ingestion_id: ID,
    project_id: String,
    cancellation_message: Option<String>,
}

/// `requestCancellation`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelIngestionRequestCancellationInput {
    ingestion_id: ID,
    project_id: String,
    cancellation_message: Option<String>,
}

fn caller(ctx: &Context<'_>) -> ApiResult<Caller> {
    let (principal, user) = signed_in(ctx)?;
    Ok(Caller {
        metadata: metadata(ctx, &user),
        principal,
    })
}

/// Runs `command` on the ingestion and answers it as the read model has it now.
async fn act(
    ctx: &Context<'_>,
    project_id: &str,
    ingestion_id: &ID,
    command: IngestionCommand,
) -> ApiResult<ModelIngestion> {
    let bus = services::bus(ctx)?;
    service::act(bus, &caller(ctx)?, project_id, ingestion_id, command).await?;
    by_id(ctx, project_id, ingestion_id).await
}

/// `projectMutations.modelIngestionMutations`.
pub struct ModelIngestionMutations;

#[Object]
impl ModelIngestionMutations {
    /// Starts an ingestion on a model, `processing`, with its version id reserved.
    async fn create(
        &self,
        ctx: &Context<'_>,
        input: ModelIngestionCreateInput,
    ) -> ApiResult<ModelIngestion> {
        let bus = services::bus(ctx)?;
        let project_id = input.project_id.clone();
        let id = service::create(
            bus,
            services::settings(ctx)?.ingestion_default_idle_timeout_seconds,
            &caller(ctx)?,
            NewIngestion {
                project_id: input.project_id,
                model_id: input.model_id,
                progress_message: input.progress_message,
                source: input.source_data.into(),
                max_idle_timeout_seconds: input.max_idle_timeout_seconds,
                file: None,
            },
        )
        .await?;
        by_id(ctx, &project_id, &id).await
    }

    /// A worker took the ingestion.
    async fn start_processing(
        &self,
        ctx: &Context<'_>,
        input: ModelIngestionStartProcessingInput,
    ) -> ApiResult<ModelIngestion> {
        let command = IngestionCommand::StartProcessing {
            progress_message: input.progress_message,
            source: input.source_data.into(),
        };
        act(ctx, &input.project_id, &input.ingestion_id, command).await
    }

    /// Puts the ingestion back in the queue.
    async fn requeue(
        &self,
        ctx: &Context<'_>,
        input: ModelIngestionRequeueInput,
    ) -> ApiResult<ModelIngestion> {
        let command = IngestionCommand::Requeue {
            progress_message: input.progress_message,
        };
        act(ctx, &input.project_id, &input.ingestion_id, command).await
    }

    /// Reports progress (and restarts the idle clock).
    async fn update_progress(
        &self,
        ctx: &Context<'_>,
        input: ModelIngestionUpdateInput,
    ) -> ApiResult<ModelIngestion> {
        let command = IngestionCommand::UpdateProgress {
            progress_message: input.progress_message,
            progress: input.progress,
        };
        act(ctx, &input.project_id, &input.ingestion_id, command).await
    }

    /// Makes the reserved version from a root object already in the project's object store
    /// (deprecated by specklepy in favour of the `/api/v2` rail, still served). The version
    /// exists when this answers: the status is `success`.
    async fn complete_with_version(
        &self,
        ctx: &Context<'_>,
        input: ModelIngestionSuccessInput,
    ) -> ApiResult<ModelIngestion> {
        let bus = services::bus(ctx)?;
        let caller = caller(ctx)?;
        service::project_for_ingest(bus, &caller, &input.project_id, |_| ()).await?;
        let root =
            super::mutations::root_object(ctx, &input.project_id, &input.root_object_id).await?;
        if !root.stored {
            return Err(AppError::from(crate::commands::CommandError::from(
                domain::DomainError::RootObjectMissing {
                    object_id: input.root_object_id,
                },
            )));
        }
        service::complete(
            bus,
            &caller,
            &input.project_id,
            &input.ingestion_id,
            Completion {
                total_children_count: root.children_count(None),
                root_object_id: input.root_object_id,
                message: input.version_message,
                files: Vec::new(),
            },
        )
        .await?;
        by_id(ctx, &input.project_id, &input.ingestion_id).await
    }

    /// The work failed (a repeat answers the failed ingestion).
    async fn fail_with_error(
        &self,
        ctx: &Context<'_>,
        input: ModelIngestionFailedInput,
    ) -> ApiResult<ModelIngestion> {
        let command = IngestionCommand::FailWithError {
            error_reason: input.error_reason,
            error_stacktrace: input.error_stacktrace,
        };
        act(ctx, &input.project_id, &input.ingestion_id, command).await
    }

    /// The work was cancelled (a repeat answers the cancelled ingestion).
    async fn fail_with_cancel(
        &self,
        ctx: &Context<'_>,
        input: ModelIngestionCancelledInput,
    ) -> ApiResult<ModelIngestion> {
        let command = IngestionCommand::FailWithCancel {
            message: input.cancellation_message,
        };
        act(ctx, &input.project_id, &input.ingestion_id, command).await
    }

    /// Asks whoever does the work to stop; they answer with `failWithCancel`.
    async fn request_cancellation(
        &self,
        ctx: &Context<'_>,
        input: ModelIngestionRequestCancellationInput,
    ) -> ApiResult<ModelIngestion> {
        let command = IngestionCommand::RequestCancellation {
            message: input.cancellation_message,
        };
        act(ctx, &input.project_id, &input.ingestion_id, command).await
    }
}

/// Which ingestions a subscription follows: one, or every one of a model (`@oneOf`).
#[derive(OneofObject)]
#[graphql(rename_fields = "camelCase")]
pub enum ModelIngestionReference {
    /// One ingestion.
    IngestionId(ID),
    /// Every ingestion of a model.
    ModelId(String),
}

/// What happened to an ingestion.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(rename_items = "camelCase")]
pub enum ProjectModelIngestionUpdatedMessageType {
    /// Someone asked the worker to stop.
    CancellationRequested,
    /// It began.
    Created,
    /// It was removed (with its project).
    Deleted,
    /// Anything else changed.
    Updated,
}

/// `projectModelIngestionUpdated`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectModelIngestionSubscriptionInput {
    project_id: String,
    ingestion_reference: ModelIngestionReference,
    /// Only this kind of message.
    message_type: Option<ProjectModelIngestionUpdatedMessageType>,
}

/// One message of `projectModelIngestionUpdated`.
#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectModelIngestionUpdatedMessage {
    model_ingestion: ModelIngestion,
    #[graphql(name = "type")]
    kind: ProjectModelIngestionUpdatedMessageType,
}

fn message_type(event: &domain::IngestionEvent) -> ProjectModelIngestionUpdatedMessageType {
    use domain::IngestionEvent as E;
    match event {
        E::IngestionCreated { .. } => ProjectModelIngestionUpdatedMessageType::Created,
        E::IngestionCancellationRequested { .. } => {
            ProjectModelIngestionUpdatedMessageType::CancellationRequested
        }
        _ => ProjectModelIngestionUpdatedMessageType::Updated,
    }
}

/// The subscription: each change of the referenced ingestions, as the read model has the
/// ingestion right after it, while the caller may read the project.
pub(crate) async fn updates(
    ctx: &Context<'_>,
    input: ProjectModelIngestionSubscriptionInput,
) -> ApiResult<impl Stream<Item = ProjectModelIngestionUpdatedMessage> + use<>> {
    let (principal, _) = signed_in(ctx)?;
    let (bus, pool) = (services::bus(ctx)?.clone(), services::pool(ctx)?.clone());
    let events = super::subscriptions::ingestion_events(ctx, &input.project_id).await?;
    let project_id = input.project_id;
    let reference = input.ingestion_reference;
    let only = input.message_type;
    Ok(events.filter_map(move |event| {
        let (bus, pool) = (bus.clone(), pool.clone());
        let principal = principal.clone();
        let project_id = project_id.clone();
        let wanted = match &reference {
            ModelIngestionReference::IngestionId(id) => (Some(id.0.clone()), None),
            ModelIngestionReference::ModelId(m) => (None, Some(m.clone())),
        };
        async move {
            if wanted
                .0
                .as_deref()
                .is_some_and(|id| id != event.ingestion_id())
            {
                return None;
            }
            let kind = message_type(&event);
            if only.is_some_and(|o| o != kind) {
                return None;
            }
            message(
                &bus,
                &pool,
                &principal,
                &project_id,
                event.ingestion_id(),
                kind,
                wanted.1,
            )
            .await
        }
    }))
}

async fn message(
    bus: &crate::commands::CommandBus,
    pool: &sqlx::PgPool,
    principal: &Principal,
    project_id: &str,
    ingestion_id: &str,
    kind: ProjectModelIngestionUpdatedMessageType,
    model_id: Option<String>,
) -> Option<ProjectModelIngestionUpdatedMessage> {
    // Access may have changed since the subscription began.
    service::readable_project(bus, principal, project_id, |_| ())
        .await
        .ok()?;
    let row = query::ingestion(pool, project_id, ingestion_id)
        .await
        .ok()??;
    if model_id.is_some_and(|m| m != row.model_id) {
        return None;
    }
    Some(ProjectModelIngestionUpdatedMessage {
        model_ingestion: row.into(),
        kind,
    })
}

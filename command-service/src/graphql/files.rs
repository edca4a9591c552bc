//! File import's current flow (`shared/speckle-ingestion-wire.md` §6):
//! `fileUploadMutations.generateUploadUrl` hands out a presigned PUT for a new file id,
//! the client uploads, and `startFileIngestion` checks the stored file (ETag exactly, size
//! limit) and starts a `queued` ingestion that the importer (`workers::import`) carries out.

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject};
use domain::ingestion::{ImportFile, IngestionCommand, SourceData};
use projections::speckle::query::{self, FileImportRow, FileImportsFilter};
use time::OffsetDateTime;

use super::errors::{ErrorCode, gql_error};
use super::idempotency::new_id;
use super::ingestion::{ModelIngestion, by_id};
use super::mutations::{metadata, signed_in};
use super::services;
use crate::error::{ApiResult, AppError};
use crate::ingestion::{self as service, Caller, NewIngestion};

/// `generateUploadUrl`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct GenerateFileUploadUrlInput {
    project_id: String,
    file_name: String,
}

/// Where to upload a file.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct GenerateFileUploadUrlOutput {
    /// A presigned `PUT` URL.
    url: String,
    /// The file's id, for `startFileIngestion`.
    file_id: String,
}

/// `startFileIngestion`'s input (the same type as the original's legacy `startFileImport`).
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct StartFileImportInput {
    project_id: String,
    model_id: String,
    file_id: String,
    /// The upload's `ETag` header, verbatim (quotes included).
    etag: String,
}

/// An import's result as an external importer reports it (the original's worker protocol).
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct FileImportResultInput {
    /// Seconds from pick-up to the end (fractions accepted: specklepy sends floats).
    duration_seconds: f64,
    /// Seconds downloading.
    download_duration_seconds: f64,
    /// Seconds converting.
    parse_duration_seconds: f64,
    /// The parser.
    parser: String,
    /// The version made, if any.
    version_id: Option<String>,
}

/// How an external importer's job ended.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(rename_items = "camelCase")]
pub enum JobResultStatus {
    /// It made a version.
    Success,
    /// It failed.
    Error,
}

/// `finishFileImport`'s input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct FinishFileImportInput {
    project_id: String,
    /// The uploaded file's id.
    job_id: String,
    status: JobResultStatus,
    reason: Option<String>,
    warnings: Option<Vec<String>>,
    result: FileImportResultInput,
}

/// A file import as the 2.31 API shows it (`Model.uploads`, `startFileImport`): a view of its
/// ingestion.
#[derive(SimpleObject, Clone)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct FileUpload {
    /// The uploaded file's id.
    id: String,
    project_id: String,
    /// Alias of `projectId`.
    stream_id: String,
    model_id: Option<String>,
    /// The model's name (empty once it is deleted).
    model_name: String,
    /// Alias of `modelName`.
    branch_name: String,
    /// The version made, once there is one.
    converted_version_id: Option<String>,
    /// Alias of `convertedVersionId`.
    converted_commit_id: Option<String>,
    user_id: String,
    /// 0 queued, 1 processing, 2 success, 3 error.
    converted_status: i32,
    /// Progress, or why it failed.
    converted_message: Option<String>,
    file_name: String,
    file_type: String,
    file_size: i32,
    upload_complete: bool,
    upload_date: OffsetDateTime,
    converted_last_update: OffsetDateTime,
    updated_at: OffsetDateTime,
}

#[ComplexObject]
impl FileUpload {
    /// The model, while it exists.
    async fn model(&self, ctx: &Context<'_>) -> ApiResult<Option<super::project::Model>> {
        match &self.model_id {
            Some(id) => super::project::model_in(ctx, &self.project_id, id).await,
            None => Ok(None),
        }
    }
}

impl From<FileImportRow> for FileUpload {
    fn from(row: FileImportRow) -> Self {
        let i = row.ingestion;
        let file: Option<ImportFile> = serde_json::from_value(row.import_file).ok();
        let (status, message, version) = match i.status.as_str() {
            "queued" => (0, i.progress_message.clone(), None),
            "processing" => (1, i.progress_message.clone(), None),
            "success" => (2, None, Some(i.version_id.clone())),
            _ => (
                3,
                i.error_reason.clone().or(i.cancellation_message.clone()),
                None,
            ),
        };
        let model_name = row.model_name.unwrap_or_default();
        Self {
            id: file.as_ref().map(|f| f.file_id.clone()).unwrap_or_default(),
            stream_id: i.project_id.clone(),
            project_id: i.project_id,
            model_id: Some(i.model_id),
            branch_name: model_name.clone(),
            model_name,
            converted_commit_id: version.clone(),
            converted_version_id: version,
            user_id: i.user_id,
            converted_status: status,
            converted_message: message,
            file_name: file
                .as_ref()
                .map(|f| f.file_name.clone())
                .unwrap_or_default(),
            file_type: file
                .as_ref()
                .map(|f| f.file_type.clone())
                .unwrap_or_default(),
            // Sizes past GraphQL's Int read as its largest.
            file_size: file
                .as_ref()
                .map_or(0, |f| i32::try_from(f.file_size).unwrap_or(i32::MAX)),
            upload_complete: true,
            upload_date: i.created_at,
            converted_last_update: i.updated_at,
            updated_at: i.updated_at,
        }
    }
}

/// A page of file uploads.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct FileUploadCollection {
    total_count: i64,
    cursor: Option<String>,
    items: Vec<FileUpload>,
}

/// `Model.uploads`' input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct GetModelUploadsInput {
    /// Page size (25 when absent).
    limit: Option<i32>,
    cursor: Option<String>,
}

/// The file upload `file_id` of a project the caller may read.
async fn file_upload(ctx: &Context<'_>, project_id: &str, file_id: &str) -> ApiResult<FileUpload> {
    query::file_import_by_file(services::pool(ctx)?, project_id, file_id)
        .await?
        .map(FileUpload::from)
        .ok_or_else(|| gql_error(ErrorCode::NotFound, "File upload not found"))
}

/// `Model.uploads`: every import into a model, newest first.
pub(crate) async fn model_uploads(
    ctx: &Context<'_>,
    project_id: &str,
    model_id: &str,
    input: Option<GetModelUploadsInput>,
) -> ApiResult<FileUploadCollection> {
    let (limit, cursor) = input.map_or((None, None), |i| (i.limit, i.cursor));
    // The original's default page size.
    let limit = super::project::page_limit(Some(limit.unwrap_or(25)))?;
    let after = cursor
        .as_deref()
        .map(super::project::decode_cursor)
        .transpose()?;
    let filter = FileImportsFilter {
        model_id: Some(model_id),
        pending_only: false,
    };
    let (total_count, rows) =
        query::file_imports(services::pool(ctx)?, project_id, filter, after, limit).await?;
    let cursor =
        super::project::next_cursor(&rows, limit, |r| (r.ingestion.created_at, &r.ingestion.id));
    Ok(FileUploadCollection {
        total_count,
        cursor,
        items: rows.into_iter().map(FileUpload::from).collect(),
    })
}

/// Imports still queued or processing: a project's (`pendingImportedModels`) or a model's
/// (`pendingImportedVersions`).
pub(crate) async fn pending(
    ctx: &Context<'_>,
    project_id: &str,
    model_id: Option<&str>,
    limit: Option<i32>,
) -> ApiResult<Vec<FileUpload>> {
    // The original's default page size.
    let limit = super::project::page_limit(Some(limit.unwrap_or(25)))?;
    let filter = FileImportsFilter {
        model_id,
        pending_only: true,
    };
    let (_, rows) =
        query::file_imports(services::pool(ctx)?, project_id, filter, None, limit).await?;
    Ok(rows.into_iter().map(FileUpload::from).collect())
}

/// What happened to a file import, as the 2.31 subscriptions say it.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(
    name = "ProjectPendingVersionsUpdatedMessageType",
    rename_items = "SCREAMING_SNAKE_CASE"
)]
pub enum PendingVersionsMessageType {
    /// It started.
    Created,
    /// It changed.
    Updated,
}

/// The 2.31 message type of `projectPendingModelsUpdated`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(
    name = "ProjectPendingModelsUpdatedMessageType",
    rename_items = "SCREAMING_SNAKE_CASE"
)]
pub enum PendingModelsMessageType {
    /// It started.
    Created,
    /// It changed.
    Updated,
}

/// The 2.31 message type of `projectFileImportUpdated`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(
    name = "ProjectFileImportUpdatedMessageType",
    rename_items = "SCREAMING_SNAKE_CASE"
)]
pub enum FileImportMessageType {
    /// It started.
    Created,
    /// It changed.
    Updated,
}

/// `projectPendingVersionsUpdated`'s message.
#[derive(SimpleObject, Clone)]
pub struct ProjectPendingVersionsUpdatedMessage {
    #[graphql(name = "type")]
    kind: PendingVersionsMessageType,
    /// The upload's id.
    id: String,
    version: FileUpload,
}

/// `projectPendingModelsUpdated`'s message.
#[derive(SimpleObject, Clone)]
pub struct ProjectPendingModelsUpdatedMessage {
    #[graphql(name = "type")]
    kind: PendingModelsMessageType,
    /// The upload's id.
    id: String,
    model: FileUpload,
}

/// `projectFileImportUpdated`'s message.
#[derive(SimpleObject, Clone)]
pub struct ProjectFileImportUpdatedMessage {
    #[graphql(name = "type")]
    kind: FileImportMessageType,
    /// The upload's id.
    id: String,
    upload: FileUpload,
}

/// Each change of a project's file imports: whether it began, and the upload as the read
/// model has it right after, while the caller may read the project.
async fn import_changes(
    ctx: &Context<'_>,
    project_id: &str,
) -> ApiResult<futures::stream::BoxStream<'static, (bool, FileUpload)>> {
    use futures::StreamExt;
    let (principal, _) = super::mutations::signed_in(ctx)?;
    let (bus, pool) = (services::bus(ctx)?.clone(), services::pool(ctx)?.clone());
    let events = super::subscriptions::ingestion_events(ctx, project_id).await?;
    let project_id = project_id.to_owned();
    Ok(events
        .filter_map(move |event| {
            let (bus, pool, principal, project_id) = (
                bus.clone(),
                pool.clone(),
                principal.clone(),
                project_id.clone(),
            );
            async move {
                service::readable_project(&bus, &principal, &project_id, |_| ())
                    .await
                    .ok()?;
                let row = query::file_import_of(&pool, &project_id, event.ingestion_id())
                    .await
                    .ok()??;
                let created = matches!(event, domain::IngestionEvent::IngestionCreated { .. });
                Some((created, FileUpload::from(row)))
            }
        })
        .boxed())
}

/// `projectPendingVersionsUpdated`.
pub(crate) async fn pending_versions_updates(
    ctx: &Context<'_>,
    project_id: &str,
) -> ApiResult<impl futures::Stream<Item = ProjectPendingVersionsUpdatedMessage> + use<>> {
    use futures::StreamExt;
    Ok(import_changes(ctx, project_id)
        .await?
        .map(|(created, upload)| ProjectPendingVersionsUpdatedMessage {
            kind: if created {
                PendingVersionsMessageType::Created
            } else {
                PendingVersionsMessageType::Updated
            },
            id: upload.id.clone(),
            version: upload,
        }))
}

/// `projectFileImportUpdated`.
pub(crate) async fn file_import_updates(
    ctx: &Context<'_>,
    project_id: &str,
) -> ApiResult<impl futures::Stream<Item = ProjectFileImportUpdatedMessage> + use<>> {
    use futures::StreamExt;
    Ok(import_changes(ctx, project_id)
        .await?
        .map(|(created, upload)| ProjectFileImportUpdatedMessage {
            kind: if created {
                FileImportMessageType::Created
            } else {
                FileImportMessageType::Updated
            },
            id: upload.id.clone(),
            upload,
        }))
}

/// The file's lower-case extension: what picks its importer.
fn extension(file_name: &str) -> Option<String> {
    let (stem, ext) = file_name.rsplit_once('.')?;
    let ok = !stem.is_empty()
        && !ext.is_empty()
        && ext.len() <= 16
        && ext.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then(|| ext.to_ascii_lowercase())
}

fn caller(ctx: &Context<'_>) -> ApiResult<Caller> {
    let (principal, user) = signed_in(ctx)?;
    Ok(Caller {
        metadata: metadata(ctx, &user),
        principal,
    })
}

fn no_store() -> AppError {
    gql_error(
        ErrorCode::BadRequest,
        "This server has no file store (STRATA_S3_ENDPOINT): file uploads are not available.",
    )
}

/// `fileUploadMutations`.
pub struct FileUploadMutations;

#[Object]
impl FileUploadMutations {
    /// A presigned URL to `PUT` a file to, and the file's id. The name must have an extension.
    async fn generate_upload_url(
        &self,
        ctx: &Context<'_>,
        input: GenerateFileUploadUrlInput,
    ) -> ApiResult<GenerateFileUploadUrlOutput> {
        let bus = services::bus(ctx)?;
        let caller = caller(ctx)?;
        service::project_for_ingest(bus, &caller, &input.project_id, |_| ()).await?;
        let name = input.file_name.trim();
        if name.is_empty() || name.len() > 1024 || !domain::ingestion::is_bare_file_name(name) {
            return Err(gql_error(ErrorCode::BadRequest, "Invalid file name"));
        }
        let Some(file_type) = extension(name) else {
            return Err(gql_error(
                ErrorCode::BadRequest,
                "File name must have a valid extension",
            ));
        };
        let store = services::blobs(ctx)?.ok_or_else(no_store)?;
        let file_id = new_id(ctx);
        let user = caller.principal.user_id.clone().unwrap_or_default();
        schema::files::insert_pending(
            services::pool(ctx)?,
            &file_id,
            &input.project_id,
            &user,
            name,
            &file_type,
        )
        .await?;
        let url = store
            .presign_put(&schema::files::key(&input.project_id, &file_id))
            .await?;
        Ok(GenerateFileUploadUrlOutput { url, file_id })
    }

    /// Checks the uploaded file (its ETag exactly, the size limit) and starts its import: a
    /// `queued` ingestion with a reserved version id, carried out by the importer.
    async fn start_file_ingestion(
        &self,
        ctx: &Context<'_>,
        input: StartFileImportInput,
    ) -> ApiResult<ModelIngestion> {
        let project_id = input.project_id.clone();
        let id = start(ctx, input).await?;
        by_id(ctx, &project_id, &id).await
    }

    /// The 2.31 flow's name for `startFileIngestion`, answered as the original's `FileUpload`.
    async fn start_file_import(
        &self,
        ctx: &Context<'_>,
        input: StartFileImportInput,
    ) -> ApiResult<FileUpload> {
        let (project_id, file_id) = (input.project_id.clone(), input.file_id.clone());
        start(ctx, input).await?;
        file_upload(ctx, &project_id, &file_id).await
    }

    /// An external importer's report (the original's worker protocol). strata imports files
    /// itself: an `error` report fails the import with its reason; a `success` report is
    /// accepted only for an import that already made its version.
    async fn finish_file_import(
        &self,
        ctx: &Context<'_>,
        input: FinishFileImportInput,
    ) -> ApiResult<bool> {
        let bus = services::bus(ctx)?;
        let caller = caller(ctx)?;
        service::project_for_ingest(bus, &caller, &input.project_id, |_| ()).await?;
        let row =
            query::file_import_by_file(services::pool(ctx)?, &input.project_id, &input.job_id)
                .await?
                .ok_or_else(|| gql_error(ErrorCode::NotFound, "File import not found"))?;
        let ingestion = row.ingestion;
        match input.status {
            JobResultStatus::Error => {
                let reason = input
                    .reason
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "The importer reported an error.".to_owned());
                service::act(
                    bus,
                    &caller,
                    &input.project_id,
                    &ingestion.id,
                    IngestionCommand::FailWithError {
                        error_reason: reason,
                        error_stacktrace: None,
                    },
                )
                .await?;
                Ok(true)
            }
            JobResultStatus::Success if ingestion.status == "success" => Ok(true),
            JobResultStatus::Success => Err(gql_error(
                ErrorCode::BadRequest,
                format!(
                    "strata imports files itself; this import is {} and makes its own version",
                    ingestion.status
                ),
            )),
        }
    }
}

/// Checks the uploaded file and starts its import; returns the ingestion's id.
async fn start(ctx: &Context<'_>, input: StartFileImportInput) -> ApiResult<String> {
    let bus = services::bus(ctx)?;
    let caller = caller(ctx)?;
    let has_model = service::project_for_ingest(bus, &caller, &input.project_id, |p| {
        p.models.contains_key(&input.model_id)
    })
    .await?;
    if !has_model {
        return Err(gql_error(ErrorCode::NotFound, "Model not found"));
    }
    let pool = services::pool(ctx)?;
    let file = schema::files::get(pool, &input.project_id, &input.file_id)
        .await?
        .ok_or_else(|| gql_error(ErrorCode::NotFound, "File not found"))?;
    if file.upload_status != "pending" {
        return Err(gql_error(
            ErrorCode::BadRequest,
            format!("This file upload is already {}.", file.upload_status),
        ));
    }
    let store = services::blobs(ctx)?.ok_or_else(no_store)?;
    let stored = store
        .stat(&schema::files::key(&input.project_id, &input.file_id))
        .await?
        .ok_or_else(|| gql_error(ErrorCode::BadRequest, "The file was not uploaded."))?;
    if stored.etag != input.etag {
        return Err(gql_error(
            ErrorCode::BadRequest,
            format!("ETag mismatch: expected {}", input.etag),
        ));
    }
    // usize fits in u64 on our targets.
    let limit = u64::try_from(services::settings(ctx)?.blob_size_limit_bytes).unwrap_or(u64::MAX);
    if stored.size > limit {
        let reason = format!(
            "[FILE_SIZE_EXCEEDED] The file is {} bytes; the limit is {limit} bytes.",
            stored.size
        );
        schema::files::fail(pool, &input.file_id, &reason).await?;
        return Err(gql_error(ErrorCode::BadRequest, reason));
    }
    // At most the limit, checked above.
    let size = i64::try_from(stored.size).unwrap_or(i64::MAX);
    if !schema::files::complete(pool, &input.file_id, size, &stored.etag).await? {
        return Err(gql_error(
            ErrorCode::BadRequest,
            "This file upload was already started.",
        ));
    }
    let id = service::create(
        bus,
        services::settings(ctx)?.ingestion_default_idle_timeout_seconds,
        &caller,
        NewIngestion {
            project_id: input.project_id.clone(),
            model_id: input.model_id,
            progress_message: format!("Waiting to import {}", file.file_name),
            source: SourceData {
                source_application_slug: file.file_type.clone(),
                source_application_version: env!("CARGO_PKG_VERSION").to_owned(),
                file_name: Some(file.file_name.clone()),
                file_size_bytes: Some(stored.size),
            },
            max_idle_timeout_seconds: None,
            file: Some(ImportFile {
                file_id: file.id,
                file_name: file.file_name,
                file_type: file.file_type,
                file_size: stored.size,
            }),
        },
    )
    .await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::extension;

    #[test]
    fn a_file_name_needs_an_extension() {
        for (name, ext) in [
            ("house.ifc", Some("ifc")),
            ("House.IFC", Some("ifc")),
            ("a.b.obj", Some("obj")),
            ("noext", None),
            (".ifc", None),
            ("trailing.", None),
            ("weird.i f c", None),
        ] {
            assert_eq!(extension(name).as_deref(), ext, "{name}");
        }
    }
}

//! File import's current flow (`shared/speckle-ingestion-wire.md` §6):
//! `fileUploadMutations.generateUploadUrl` hands out a presigned PUT for a new file id,
//! the client uploads, and `startFileIngestion` checks the stored file (ETag exactly, size
//! limit) and starts a `queued` ingestion that the importer (`workers::import`) carries out.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use domain::ingestion::{ImportFile, SourceData};

use super::errors::{ErrorCode, gql_error, internal};
use super::ingestion::{ModelIngestion, by_id};
use super::mutations::{command_error, metadata, signed_in};
use crate::app::AppState;
use crate::commands::new_id;
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

/// The file's lower-case extension: what picks its importer.
fn extension(file_name: &str) -> Option<String> {
    let (stem, ext) = file_name.rsplit_once('.')?;
    let ok = !stem.is_empty()
        && !ext.is_empty()
        && ext.len() <= 16
        && ext.chars().all(|c| c.is_ascii_alphanumeric());
    ok.then(|| ext.to_ascii_lowercase())
}

fn caller(ctx: &Context<'_>) -> async_graphql::Result<Caller> {
    let (principal, user) = signed_in(ctx)?;
    Ok(Caller {
        metadata: metadata(ctx, &user),
        principal,
    })
}

fn no_store() -> async_graphql::Error {
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
    ) -> async_graphql::Result<GenerateFileUploadUrlOutput> {
        let state = ctx.data::<AppState>()?;
        let caller = caller(ctx)?;
        service::project_for_ingest(state, &caller, &input.project_id)
            .await
            .map_err(command_error)?;
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
        let store = state.blobs().ok_or_else(no_store)?;
        let file_id = new_id();
        let user = caller.principal.user_id.clone().unwrap_or_default();
        schema::files::insert_pending(
            state.pool(),
            &file_id,
            &input.project_id,
            &user,
            name,
            &file_type,
        )
        .await
        .map_err(internal)?;
        let url = store
            .presign_put(&schema::files::key(&input.project_id, &file_id))
            .await
            .map_err(internal)?;
        Ok(GenerateFileUploadUrlOutput { url, file_id })
    }

    /// Checks the uploaded file (its ETag exactly, the size limit) and starts its import: a
    /// `queued` ingestion with a reserved version id, carried out by the importer.
    async fn start_file_ingestion(
        &self,
        ctx: &Context<'_>,
        input: StartFileImportInput,
    ) -> async_graphql::Result<ModelIngestion> {
        let state = ctx.data::<AppState>()?;
        let caller = caller(ctx)?;
        let project = service::project_for_ingest(state, &caller, &input.project_id)
            .await
            .map_err(command_error)?;
        if !project.models.contains_key(&input.model_id) {
            return Err(gql_error(ErrorCode::NotFound, "Model not found"));
        }
        let pool = state.pool();
        let file = schema::files::get(pool, &input.project_id, &input.file_id)
            .await
            .map_err(internal)?
            .ok_or_else(|| gql_error(ErrorCode::NotFound, "File not found"))?;
        if file.upload_status != "pending" {
            return Err(gql_error(
                ErrorCode::BadRequest,
                format!("This file upload is already {}.", file.upload_status),
            ));
        }
        let store = state.blobs().ok_or_else(no_store)?;
        let stored = store
            .stat(&schema::files::key(&input.project_id, &input.file_id))
            .await
            .map_err(internal)?
            .ok_or_else(|| gql_error(ErrorCode::BadRequest, "The file was not uploaded."))?;
        if stored.etag != input.etag {
            return Err(gql_error(
                ErrorCode::BadRequest,
                format!("ETag mismatch: expected {}", input.etag),
            ));
        }
        let limit = u64::try_from(state.settings().blob_size_limit_bytes).unwrap_or(u64::MAX);
        if stored.size > limit {
            let reason = format!(
                "[FILE_SIZE_EXCEEDED] The file is {} bytes; the limit is {limit} bytes.",
                stored.size
            );
            schema::files::fail(pool, &input.file_id, &reason)
                .await
                .map_err(internal)?;
            return Err(gql_error(ErrorCode::BadRequest, reason));
        }
        let size = i64::try_from(stored.size).unwrap_or(i64::MAX);
        if !schema::files::complete(pool, &input.file_id, size, &stored.etag)
            .await
            .map_err(internal)?
        {
            return Err(gql_error(
                ErrorCode::BadRequest,
                "This file upload was already started.",
            ));
        }
        let id = service::create(
            state,
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
        .await
        .map_err(command_error)?;
        by_id(ctx, &input.project_id, &id).await
    }
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

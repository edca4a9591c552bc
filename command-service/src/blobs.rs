//! The original's blob API (binary attachments, and the files older clients import):
//! `POST /api/stream/:projectId/blob` (multipart, any number of files), `…/blob/diff`,
//! `GET`/`DELETE …/blob/:blobId`, `GET …/blobs?fileName=`, and the deprecated
//! `POST /api/file/:fileType/:projectId/:modelName?` upload that starts an import. Files go to
//! the S3 store under `assets/<projectId>/<blobId>`, indexed in `file_uploads`
//! (`schema::files`) like the presigned uploads of `generateUploadUrl`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::ingestion::{ImportFile, SourceData};
use domain::policy::Principal;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::commands::new_id;
use crate::context::RequestContext;
use crate::error::AppError;
use crate::ingestion::rest::as_caller;
use crate::ingestion::{self as service, NewIngestion};

/// The S3 file store.
pub type Store = workers::blobs::BlobStore;

/// The file store as a GraphQL request holds it (none when S3 is not configured).
#[derive(Clone)]
pub struct FileStore(pub Option<Store>);

fn store_error(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "the file store failed");
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "FILE_STORE_UNAVAILABLE",
        "The file store is not answering; try again.",
    )
}

/// The file's lower-case extension (empty when it has none).
fn file_type(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .filter(|ext| !ext.is_empty() && ext.len() <= 16)
        .unwrap_or_default()
}

/// One stored upload, as the original answers it.
struct Stored {
    blob_id: String,
    file_name: String,
    file_size: u64,
    form_key: String,
}

/// Stores every file part of `multipart` (each at most the blob size limit).
async fn store_parts(
    state: &AppState,
    project_id: &str,
    user_id: &str,
    mut multipart: Multipart,
) -> Result<Vec<Stored>, AppError> {
    let store = state.blobs().ok_or_else(|| {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "FILE_STORE_NOT_CONFIGURED",
            "This server has no file store (STRATA_S3_ENDPOINT).",
        )
    })?;
    let limit = state.settings().blob_size_limit_bytes;
    let bad = |m: String| AppError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST_ERROR", m);
    let mut stored = Vec::new();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("Upload request error: {e}")))?
    {
        let form_key = field.name().unwrap_or_default().to_owned();
        let Some(file_name) = field.file_name().map(str::to_owned) else {
            continue;
        };
        if !domain::ingestion::is_bare_file_name(&file_name) {
            return Err(bad(format!("{file_name:?} is not a valid file name")));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| bad(format!("Upload request error: {e}")))?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "FILE_SIZE_EXCEEDED",
                    format!("{file_name} is larger than {limit} bytes, the limit"),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let blob_id = new_id();
        let pool = state.pool();
        schema::files::insert_pending(
            pool,
            &blob_id,
            project_id,
            user_id,
            &file_name,
            &file_type(&file_name),
        )
        .await
        .map_err(AppError::internal)?;
        let size = bytes.len() as u64;
        let etag = store
            .put(&schema::files::key(project_id, &blob_id), bytes)
            .await
            .map_err(store_error)?;
        schema::files::complete(
            pool,
            &blob_id,
            i64::try_from(size).unwrap_or(i64::MAX), // at most the limit, checked above
            &etag,
        )
        .await
        .map_err(AppError::internal)?;
        stored.push(Stored {
            blob_id,
            file_name,
            file_size: size,
            form_key,
        });
    }
    Ok(stored)
}

fn upload_results(stored: &[Stored]) -> Value {
    json!({
        "uploadResults": stored.iter().map(|s| json!({
            "blobId": s.blob_id,
            "fileName": s.file_name,
            "fileSize": s.file_size,
            "uploadStatus": 1,
            "uploadError": "",
            "formKey": s.form_key,
        })).collect::<Vec<_>>()
    })
}

/// `POST /api/stream/:projectId/blob`: stores each file part; 201 with the upload results.
pub async fn upload(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    context: RequestContext,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    as_caller(state, &headers, &context, |state, caller| async move {
        service::project_for_ingest(state.bus(), &caller, &project_id, |_| ()).await?;
        let user = caller.principal.user_id.clone().unwrap_or_default();
        let stored = store_parts(&state, &project_id, &user, multipart).await?;
        Ok::<_, AppError>((StatusCode::CREATED, Json(upload_results(&stored))).into_response())
    })
    .await
}

/// `POST /api/file/:fileType/:projectId/:modelName?` (deprecated by the original, still used by
/// older clients): stores the files and imports each into the named model (created when it
/// does not exist; `main` when no name is given).
pub async fn upload_and_import(
    State(state): State<AppState>,
    Path(params): Path<Vec<String>>,
    context: RequestContext,
    headers: HeaderMap,
    multipart: Multipart,
) -> Response {
    as_caller(state, &headers, &context, |state, caller| async move {
        let [_, project_id, rest @ ..] = params.as_slice() else {
            return Err(AppError::not_found("no such route"));
        };
        let model_name = rest.first().map_or("main", String::as_str);
        let existing = service::project_for_ingest(state.bus(), &caller, project_id, |p| {
            p.model_by_name(model_name).map(|(id, _)| id.to_owned())
        })
        .await
        .map_err(AppError::from)?;
        let model_id = match existing {
            Some(id) => id,
            None => service::create_model(state.bus(), &caller, project_id, model_name)
                .await
                .map_err(AppError::from)?,
        };
        let user = caller.principal.user_id.clone().unwrap_or_default();
        let stored = store_parts(&state, project_id, &user, multipart).await?;
        for s in &stored {
            service::create(
                state.bus(),
                state.settings().ingestion_default_idle_timeout_seconds,
                &caller,
                NewIngestion {
                    project_id: project_id.clone(),
                    model_id: model_id.clone(),
                    progress_message: format!("Waiting to import {}", s.file_name),
                    source: SourceData {
                        source_application_slug: file_type(&s.file_name),
                        source_application_version: env!("CARGO_PKG_VERSION").to_owned(),
                        file_name: Some(s.file_name.clone()),
                        file_size_bytes: Some(s.file_size),
                    },
                    max_idle_timeout_seconds: None,
                    file: Some(ImportFile {
                        file_id: s.blob_id.clone(),
                        file_name: s.file_name.clone(),
                        file_type: file_type(&s.file_name),
                        file_size: s.file_size,
                    }),
                },
            )
            .await
            .map_err(AppError::from)?;
        }
        let mut response =
            (StatusCode::CREATED, Json(upload_results(&stored))).into_response();
        response.headers_mut().insert(
            header::WARNING,
            header::HeaderValue::from_static(
                "299 - \"Deprecated: upload through fileUploadMutations.generateUploadUrl and startFileIngestion\"",
            ),
        );
        Ok(response)
    })
    .await
}

/// The completed blob `blob_id` of a project `principal` may read.
async fn readable_blob(
    state: &AppState,
    principal: &Principal,
    project_id: &str,
    blob_id: &str,
) -> Result<schema::files::FileUpload, AppError> {
    service::readable_project(state.bus(), principal, project_id, |_| ())
        .await
        .map_err(AppError::from)?;
    schema::files::get(state.pool(), project_id, blob_id)
        .await
        .map_err(AppError::internal)?
        .filter(|f| f.upload_status == "completed")
        .ok_or_else(|| AppError::not_found("Blob not found"))
}

/// `GET /api/stream/:projectId/blob/:blobId`: the file, as an attachment.
pub async fn download(
    State(state): State<AppState>,
    Path((project_id, blob_id)): Path<(String, String)>,
    context: RequestContext,
    headers: HeaderMap,
) -> Response {
    as_caller(state, &headers, &context, |state, caller| async move {
        let blob = readable_blob(&state, &caller.principal, &project_id, &blob_id).await?;
        let store = state
            .blobs()
            .ok_or_else(|| store_error("no file store is configured"))?;
        let bytes = store
            .get(&schema::files::key(&project_id, &blob_id))
            .await
            .map_err(store_error)?
            .ok_or_else(|| AppError::not_found("Blob not found"))?;
        let disposition = format!(
            "attachment; filename=\"{}\"",
            blob.file_name.replace(['"', '\\'], "_")
        );
        Ok::<_, AppError>(
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                Body::from(bytes),
            )
                .into_response(),
        )
    })
    .await
}

/// `DELETE /api/stream/:projectId/blob/:blobId`: 204.
pub async fn delete(
    State(state): State<AppState>,
    Path((project_id, blob_id)): Path<(String, String)>,
    context: RequestContext,
    headers: HeaderMap,
) -> Response {
    as_caller(state, &headers, &context, |state, caller| async move {
        service::project_for_ingest(state.bus(), &caller, &project_id, |_| ()).await?;
        readable_blob(&state, &caller.principal, &project_id, &blob_id).await?;
        if let Some(store) = state.blobs() {
            store
                .delete(&schema::files::key(&project_id, &blob_id))
                .await
                .map_err(store_error)?;
        }
        schema::files::delete(state.pool(), &project_id, &blob_id)
            .await
            .map_err(AppError::internal)?;
        Ok::<_, AppError>(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `POST /api/stream/:projectId/blob/diff`: which of the ids the project does not hold.
pub async fn diff(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    context: RequestContext,
    headers: HeaderMap,
    Json(ids): Json<Vec<String>>,
) -> Response {
    as_caller(state, &headers, &context, |state, caller| async move {
        service::readable_project(state.bus(), &caller.principal, &project_id, |_| ())
            .await
            .map_err(AppError::from)?;
        let known = schema::files::completed_ids(state.pool(), &project_id, &ids)
            .await
            .map_err(AppError::internal)?;
        let unknown: Vec<&String> = ids.iter().filter(|id| !known.contains(id)).collect();
        Ok::<_, AppError>(Json(json!(unknown)).into_response())
    })
    .await
}

/// `GET /api/stream/:projectId/blobs` query.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    file_name: Option<String>,
}

/// `GET /api/stream/:projectId/blobs?fileName=`: the project's stored files' metadata.
pub async fn list(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    Query(query): Query<ListQuery>,
    context: RequestContext,
    headers: HeaderMap,
) -> Response {
    as_caller(state, &headers, &context, |state, caller| async move {
        service::readable_project(state.bus(), &caller.principal, &project_id, |_| ())
            .await
            .map_err(AppError::from)?;
        let files =
            schema::files::list_completed(state.pool(), &project_id, query.file_name.as_deref())
                .await
                .map_err(AppError::internal)?;
        let blobs: Vec<Value> = files
            .iter()
            .map(|f| {
                json!({
                    "id": f.id,
                    "streamId": f.project_id,
                    "userId": f.user_id,
                    "fileName": f.file_name,
                    "fileType": f.file_type,
                    "fileSize": f.file_size,
                    "uploadStatus": 1,
                    "uploadError": null,
                    "createdAt": f.created_at,
                    "fileHash": f.etag.as_deref().map(|e| e.trim_matches('"')),
                })
            })
            .collect();
        Ok::<_, AppError>(
            Json(json!({"blobs": blobs, "totalCount": blobs.len(), "cursor": null}))
                .into_response(),
        )
    })
    .await
}

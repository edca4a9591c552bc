//! The `/api/v2` bundle rail specklepy's `send3`/`receive3` use (wire contract:
//! `shared/speckle-ingestion-wire.md` §3):
//! - `POST /api/v2/projects/{p}/modelingestion/{i}/uploads/sign` → a presigned PUT per name,
//! - `POST …/uploads/complete` → ETags checked against the store, the version made,
//! - `GET /api/v2/projects/{p}/models/{m}/versions/{v}/artifacts` → presigned GETs.
//!
//! The bytes go between the client and S3 directly; strata only signs and checks.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::error::{DomainError, Entity};
use domain::ingestion::{IngestionStatus, UploadedFile, is_bare_file_name};
use serde::Deserialize;
use serde_json::json;

use super::{Caller, Completion, bundle_key, expected_root};
use crate::app::AppState;
use crate::commands::CommandError;
use crate::context::RequestContext;
use crate::error::AppError;

fn bad_request(message: impl Into<String>) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST_ERROR", message)
}

fn no_store() -> AppError {
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "FILE_STORE_NOT_CONFIGURED",
        "This server has no file store (STRATA_S3_ENDPOINT): bundle uploads are not available.",
    )
}

fn store_failed(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "the file store failed");
    AppError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "FILE_STORE_UNAVAILABLE",
        "The file store is not answering; try again.",
    )
}

/// Authenticates the request, then answers it with `answer`.
pub(crate) async fn as_caller<F, Fut>(
    state: AppState,
    headers: &HeaderMap,
    context: &RequestContext,
    answer: F,
) -> Response
where
    F: FnOnce(AppState, Caller) -> Fut,
    Fut: std::future::Future<Output = Result<Response, AppError>>,
{
    let principal = match crate::auth::authenticate(&state, headers).await {
        Ok(p) => p,
        Err(refused) => return refused.into_response(),
    };
    let metadata = context.metadata(principal.user_id.clone(), None);
    let caller = Caller {
        principal,
        metadata,
    };
    answer(state, caller)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `sign`'s body.
#[derive(Deserialize)]
pub struct SignRequest {
    files: Vec<String>,
}

/// Ingestion `ingestion_id` of `project_id`, if `caller` may upload into the project.
async fn ingestion_to_upload(
    state: &AppState,
    caller: &Caller,
    project_id: &str,
    ingestion_id: &str,
) -> Result<domain::ingestion::Ingestion, AppError> {
    super::project_for_ingest(state.bus(), caller, project_id, |_| ()).await?;
    Ok(super::load(state.bus(), project_id, ingestion_id).await?)
}

/// `POST /api/v2/projects/{project_id}/modelingestion/{ingestion_id}/uploads/sign`.
pub async fn sign(
    State(state): State<AppState>,
    Path((project_id, ingestion_id)): Path<(String, String)>,
    context: RequestContext,
    headers: HeaderMap,
    Json(body): Json<SignRequest>,
) -> Response {
    as_caller(state, &headers, &context, |state, caller| async move {
        sign_files(&state, &caller, &project_id, &ingestion_id, body.files).await
    })
    .await
}

async fn sign_files(
    state: &AppState,
    caller: &Caller,
    project_id: &str,
    ingestion_id: &str,
    files: Vec<String>,
) -> Result<Response, AppError> {
    let ingestion = ingestion_to_upload(state, caller, project_id, ingestion_id).await?;
    if !ingestion.idle_clock_running() {
        return Err(AppError::from(CommandError::Domain(
            DomainError::InvalidTransition {
                kind: Entity::Ingestion,
                status: ingestion.status.as_str(),
                action: "sign",
            },
        )));
    }
    check_names(state, files.iter())?;
    let store = state.blobs().ok_or_else(no_store)?;
    let mut uploads = serde_json::Map::new();
    for name in files {
        let key = bundle_key(&ingestion.version_id, &name);
        let url = store.presign_put(&key).await.map_err(store_failed)?;
        uploads.insert(name, json!({ "url": url, "key": key }));
    }
    Ok(Json(json!({ "uploads": uploads })).into_response())
}

fn check_names<'a>(
    state: &AppState,
    mut names: impl ExactSizeIterator<Item = &'a String>,
) -> Result<(), AppError> {
    let max = state.settings().ingestion_max_files;
    if names.len() == 0 {
        return Err(bad_request("No files were named."));
    }
    if names.len() > max {
        return Err(bad_request(format!(
            "At most {max} files may be uploaded for one version."
        )));
    }
    match names.find(|n| !is_bare_file_name(n)) {
        Some(bad) => Err(bad_request(format!(
            "{bad:?} is not a bare file name (no paths, no '/', '\\' or ':')."
        ))),
        None => Ok(()),
    }
}

/// `complete`'s body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteRequest {
    etags: BTreeMap<String, String>,
    root_id: String,
    #[serde(default)]
    total_children_count: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

/// `POST /api/v2/projects/{project_id}/modelingestion/{ingestion_id}/uploads/complete`.
pub async fn complete(
    State(state): State<AppState>,
    Path((project_id, ingestion_id)): Path<(String, String)>,
    context: RequestContext,
    headers: HeaderMap,
    Json(body): Json<CompleteRequest>,
) -> Response {
    as_caller(state, &headers, &context, |state, caller| async move {
        complete_upload(&state, &caller, &project_id, &ingestion_id, body).await
    })
    .await
}

async fn complete_upload(
    state: &AppState,
    caller: &Caller,
    project_id: &str,
    ingestion_id: &str,
    body: CompleteRequest,
) -> Result<Response, AppError> {
    let ingestion = ingestion_to_upload(state, caller, project_id, ingestion_id).await?;
    let answer = |version_id: &str| Json(json!({ "versionId": version_id })).into_response();
    if ingestion.status == IngestionStatus::Success {
        return Ok(answer(&ingestion.version_id));
    }
    let expected = expected_root(&ingestion);
    if body.root_id != expected {
        return Err(bad_request(format!(
            "rootId must be this ingestion's bundle reference, {expected}."
        )));
    }
    // Absent: no children counted.
    let total = u32::try_from(body.total_children_count.unwrap_or(0))
        .map_err(|_| bad_request("totalChildrenCount must be a count of objects."))?;
    check_names(state, body.etags.keys())?;
    if ingestion.upload.is_none() {
        // Every named file must be stored with exactly the ETag the client got for it.
        let store = state.blobs().ok_or_else(no_store)?;
        for (name, etag) in &body.etags {
            let key = bundle_key(&ingestion.version_id, name);
            match store.etag(&key).await.map_err(store_failed)? {
                None => return Err(bad_request(format!("File {name} was not uploaded."))),
                Some(stored) if stored != *etag => {
                    return Err(bad_request(format!("ETag mismatch: expected {etag}")));
                }
                Some(_) => {}
            }
        }
    }
    let files = body
        .etags
        .into_iter()
        .map(|(name, etag)| UploadedFile { name, etag })
        .collect();
    let version_id = super::complete(
        state.bus(),
        caller,
        project_id,
        ingestion_id,
        Completion {
            root_object_id: body.root_id,
            total_children_count: total,
            message: body.message,
            files,
        },
    )
    .await
    .map_err(AppError::from)?;
    Ok(answer(&version_id))
}

/// `GET /api/v2/projects/{project_id}/models/{model_id}/versions/{version_id}/artifacts`.
/// The model in the path is not checked: a bundle reference keeps the model the version was
/// sent to, and the version may have moved since.
pub async fn artifacts(
    State(state): State<AppState>,
    Path((project_id, _model_id, version_id)): Path<(String, String, String)>,
    context: RequestContext,
    headers: HeaderMap,
) -> Response {
    as_caller(state, &headers, &context, |state, caller| async move {
        list_artifacts(&state, &caller, &project_id, &version_id).await
    })
    .await
}

async fn list_artifacts(
    state: &AppState,
    caller: &Caller,
    project_id: &str,
    version_id: &str,
) -> Result<Response, AppError> {
    let no_bundle = || AppError::not_found("This version has no bundle.");
    // Whoever may not read the project hears the same as for a version without a bundle.
    super::readable_project(state.bus(), &caller.principal, project_id, |_| ())
        .await
        .map_err(|e| match e {
            CommandError::Denied(_) => no_bundle(),
            other => AppError::from(other),
        })?;
    let files = projections::speckle::query::bundle_files(state.pool(), project_id, version_id)
        .await
        .map_err(AppError::internal)?;
    if files.is_empty() {
        return Err(no_bundle());
    }
    let store = state.blobs().ok_or_else(no_store)?;
    let mut listed = Vec::with_capacity(files.len());
    for name in files {
        let url = store
            .presign_get(&bundle_key(version_id, &name))
            .await
            .map_err(store_failed)?;
        listed.push(json!({ "name": name, "url": url }));
    }
    Ok(Json(json!({ "files": listed })).into_response())
}

//! The Speckle object API: upload (multipart batches, gzip or plain JSON), diff, download with
//! children, single objects and batch fetch — the paths every connector's send and receive use.
//!
//! Failure statuses follow the original: 401 with an empty body when the caller may not, 404
//! when the project or object does not exist, 400/413 with a message for bad input. A batch is
//! validated whole before any of it is stored, so a bad batch stores nothing of itself.
//! Downloads stream from a database cursor (`stream`).

use std::io::Read;

use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::policy::{self, Principal};
use projections::speckle::query;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::app::AppState;
use crate::auth;
use schema::objects::{self, NewObject};

pub mod stream;

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// Ours (500, the cause logged), or 503 `SERVICE_UNAVAILABLE` when the database went away
/// before the gate noticed: the one rule of `AppError::internal`.
fn internal(e: impl Into<anyhow::Error>) -> Response {
    crate::error::AppError::internal(e).into_response()
}

/// Who is calling and what they may do with the project, or the response refusing them.
/// Reads also accept the preview renderer's grant for the project
/// (`Accounts::preview_grant`).
async fn access(
    state: &AppState,
    headers: &HeaderMap,
    project_id: &str,
    write: bool,
) -> Result<(), Response> {
    if !write && let Some(decision) = crate::previews::grant_decision(state, headers, project_id) {
        return decision.map_err(|_| StatusCode::UNAUTHORIZED.into_response());
    }
    let principal: Principal = auth::authenticate(state, headers)
        .await
        .map_err(IntoResponse::into_response)?;
    let project = query::project_with_role(state.pool(), project_id, principal.user_id.as_deref())
        .await
        .map_err(internal)?;
    let Some(project) = project else {
        return Err(text(StatusCode::NOT_FOUND, "Project not found."));
    };
    let access = crate::graphql::project::access_of(&project.visibility, project.role.as_deref());
    let decision = if write {
        policy::can_create_version(&principal, &access)
    } else {
        policy::can_read_project(&principal, &access)
    };
    decision.map_err(|_| StatusCode::UNAUTHORIZED.into_response())
}

#[derive(Deserialize)]
struct Head {
    id: Option<String>,
    hash: Option<String>,
    speckle_type: Option<String>,
    #[serde(rename = "__closure")]
    closure: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(rename = "totalChildrenCount")]
    total_children_count: Option<i64>,
}

/// Parses one batch: a JSON array of objects, each with a 32-character id.
pub fn parse_batch(json: &str, max_object_bytes: usize) -> Result<Vec<NewObject>, String> {
    let raw: Vec<&RawValue> = serde_json::from_str(json).map_err(|e| {
        if json.trim_start().starts_with('[') {
            format!("Failed to parse data: {e}")
        } else {
            "Failed to parse data. Batch is expected to be wrapped in a JSON array.".to_owned()
        }
    })?;
    raw.into_iter()
        .map(|object| {
            let data = object.get();
            let head: Head = serde_json::from_str(data).map_err(|e| {
                format!("Failed to parse data: each object must be a JSON object ({e})")
            })?;
            let id = head.hash.or(head.id).unwrap_or_default();
            if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!(
                    "Error inserting object in the database: Invalid object ID {id:?}"
                ));
            }
            if data.len() > max_object_bytes {
                return Err(format!(
                    "Error inserting object in the database: Object too large. Object ID: {id}"
                ));
            }
            // The column is an i32; larger counts saturate.
            let total = head
                .total_children_count
                .or_else(|| head.closure.as_ref().map(|c| c.len() as i64))
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
            Ok(NewObject {
                id,
                speckle_type: head.speckle_type.unwrap_or_else(|| "Base".to_owned()),
                total_children_count: total,
                closure: head.closure.map(serde_json::Value::Object),
                data: data.to_owned(),
            })
        })
        .collect()
}

/// One part of an object upload, as its `Content-Type` says it is (gzip, or plain JSON text),
/// turned into the objects of its batch: a gzip part is inflated up to `part_limit` bytes (a
/// decompression bomb is refused once it passes that), then read by [`parse_batch`]. A refusal
/// carries the status to answer with (400, or 413 for a part past its limit).
pub fn decode_part(
    content_type: &str,
    received: Vec<u8>,
    part_limit: usize,
    object_limit: usize,
) -> Result<Vec<NewObject>, (StatusCode, String)> {
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_owned());
    let json = match content_type {
        "application/gzip" => {
            let mut out = Vec::new();
            let mut reader =
                flate2::read::GzDecoder::new(received.as_slice()).take(part_limit as u64 + 1);
            if reader.read_to_end(&mut out).is_err() {
                return Err(bad(
                    "Failed to parse data: the part is labelled application/gzip but is not gzip.",
                ));
            }
            if out.len() > part_limit {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("File size too large: more than {part_limit} bytes once decompressed"),
                ));
            }
            out
        }
        "text/plain" | "application/json" | "application/octet-stream" => received,
        _ => {
            return Err(bad(
                "Invalid ContentType header. This route only accepts \"application/gzip\", \"text/plain\" or \"application/json\".",
            ));
        }
    };
    let Ok(json) = String::from_utf8(json) else {
        return Err(bad("Failed to parse data: the batch is not UTF-8."));
    };
    parse_batch(&json, object_limit).map_err(|m| (StatusCode::BAD_REQUEST, m))
}

/// `POST /objects/:projectId`.
pub async fn upload(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    mut multipart: Multipart,
) -> Response {
    if let Err(refused) = access(&state, &headers, &project_id, true).await {
        return refused;
    }
    let part_limit = state.settings().object_multipart_upload_size_limit_bytes;
    let object_limit = state.settings().object_size_limit_bytes;
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("Request too large: {e}"),
                );
            }
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "Failed to parse request headers and body content as valid multipart/form-data: {e}"
                    ),
                );
            }
        };
        if field.file_name().is_none() {
            continue;
        }
        // No Content-Type: opaque bytes.
        let content_type = field
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_owned();
        let mut received = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if received.len() + chunk.len() > part_limit {
                        return text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("File size too large (> {part_limit})"),
                        );
                    }
                    received.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "Upload request error: the body ended early.",
                    );
                }
            }
        }
        let batch = match decode_part(&content_type, received, part_limit, object_limit) {
            Ok(b) => b,
            Err((status, m)) => return text(status, m),
        };
        for chunk in batch.chunks(500) {
            if let Err(e) = objects::insert_batch(state.pool(), &project_id, chunk).await {
                return internal(e);
            }
        }
    }
    StatusCode::CREATED.into_response()
}

/// The ids a `diff` or `getobjects` body asks about (form or JSON, an `objects` field holding a
/// JSON array of ids).
pub fn requested_ids(headers: &HeaderMap, body: &Bytes) -> Result<Vec<String>, String> {
    let fields = auth::fields(headers, body)?;
    let raw = fields
        .get("objects")
        .ok_or("The body needs an `objects` field.")?;
    serde_json::from_str(raw).map_err(|_| "`objects` must be a JSON array of ids.".to_owned())
}

/// The ids of a `diff` (`write`) or `getobjects` body, if the caller may use the project that
/// way; else the refusal, or 400.
async fn permitted_ids(
    state: &AppState,
    headers: &HeaderMap,
    project_id: &str,
    write: bool,
    body: &Bytes,
) -> Result<Vec<String>, Response> {
    access(state, headers, project_id, write).await?;
    requested_ids(headers, body).map_err(|m| text(StatusCode::BAD_REQUEST, m))
}

/// Stored object `object_id` of `project_id` (its JSON), if the caller may read the project;
/// else the refusal, 404 or 500.
async fn readable_object(
    state: &AppState,
    headers: &HeaderMap,
    project_id: &str,
    object_id: &str,
) -> Result<String, Response> {
    access(state, headers, project_id, false).await?;
    match objects::get(state.pool(), project_id, object_id).await {
        Ok(Some(data)) => Ok(data),
        Ok(None) => Err(text(StatusCode::NOT_FOUND, "Failed to find object.")),
        Err(e) => Err(internal(e)),
    }
}

/// `POST /api/diff/:projectId`: which of the ids the project already holds.
pub async fn diff(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ids = match permitted_ids(&state, &headers, &project_id, true, &body).await {
        Ok(ids) => ids,
        Err(refused) => return refused,
    };
    let mut found = std::collections::HashSet::new();
    match objects::existing(state.pool(), &project_id, &ids).await {
        Ok(hit) => found.extend(hit),
        Err(e) => return internal(e),
    }
    let answer: serde_json::Map<String, serde_json::Value> = ids
        .into_iter()
        .map(|id| {
            let has = found.contains(&id);
            (id, serde_json::Value::Bool(has))
        })
        .collect();
    axum::Json(answer).into_response()
}

/// A streamed object body, framed and encoded as the request and the settings say.
fn stream_rows(
    state: &AppState,
    headers: &HeaderMap,
    project_id: String,
    rows: stream::Rows,
    lines: bool,
    transform: Option<stream::Transform>,
) -> Response {
    let settings = state.settings();
    let framing = stream::Framing::for_request(
        headers,
        lines,
        settings.object_download_gzip,
        settings.object_download_chunk_bytes,
    );
    stream::respond(state.pool().clone(), project_id, rows, framing, transform)
}

fn wants_lines(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) == Some("text/plain")
}

/// `GET /objects/:projectId/:objectId`: the root, then every object of its closure by id,
/// streamed (`stream`).
pub async fn download(
    State(state): State<AppState>,
    Path((project_id, object_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let root = match readable_object(&state, &headers, &project_id, &object_id).await {
        Ok(root) => root,
        Err(refused) => return refused,
    };
    let lines = wants_lines(&headers);
    let rows = stream::Rows::Closure {
        root_id: object_id,
        root,
    };
    stream_rows(&state, &headers, project_id, rows, lines, None)
}

/// `GET /objects/:projectId/:objectId/single`.
pub async fn single(
    State(state): State<AppState>,
    Path((project_id, object_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match readable_object(&state, &headers, &project_id, &object_id).await {
        Ok(data) => (
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            data,
        )
            .into_response(),
        Err(refused) => refused,
    }
}

/// `POST /api/getobjects/:projectId`: the stored objects among the ids, by id within chunks.
pub async fn get_objects(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ids = match permitted_ids(&state, &headers, &project_id, false, &body).await {
        Ok(ids) => ids,
        Err(refused) => return refused,
    };
    let lines = wants_lines(&headers);
    stream_rows(
        &state,
        &headers,
        project_id,
        stream::Rows::Ids(ids),
        lines,
        None,
    )
}

/// The body of `POST /api/v2/projects/:projectId/object-stream`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectStreamRequest {
    object_ids: Vec<String>,
    #[serde(default)]
    attribute_mask: Option<AttributeMask>,
}

/// Top-level keys to keep or drop from each object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum AttributeMask {
    /// Keep only these keys.
    Include(Vec<String>),
    /// Drop these keys.
    Exclude(Vec<String>),
}

impl ObjectStreamRequest {
    /// Reads a body: the ids to send (at least one) and any mask (a mask's list is not empty).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let request: Self =
            serde_json::from_slice(body).map_err(|e| format!("Invalid request body: {e}"))?;
        let mask_is_empty = matches!(&request.attribute_mask, Some(AttributeMask::Include(k) | AttributeMask::Exclude(k)) if k.is_empty());
        if request.object_ids.is_empty() || mask_is_empty {
            return Err("objectIds and any attributeMask list need at least one entry".to_owned());
        }
        Ok(request)
    }

    /// The ids asked for.
    pub fn object_ids(&self) -> &[String] {
        &self.object_ids
    }

    /// The keys to keep or drop, if any.
    pub fn attribute_mask(&self) -> Option<&AttributeMask> {
        self.attribute_mask.as_ref()
    }
}

impl AttributeMask {
    /// Stored object `id` (its JSON `data`) with only the top-level keys the mask lets through.
    pub fn apply(&self, id: &str, data: &str) -> Result<String, String> {
        let Ok(serde_json::Value::Object(mut object)) =
            serde_json::from_str::<serde_json::Value>(data)
        else {
            return Err(format!("stored object {id} is not a JSON object"));
        };
        match self {
            Self::Include(keys) => object.retain(|k, _| keys.contains(k)),
            Self::Exclude(keys) => object.retain(|k, _| !keys.contains(k)),
        }
        Ok(serde_json::Value::Object(object).to_string())
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": message}))).into_response()
}

/// `POST /api/v2/projects/:projectId/object-stream`: what `@speckle/viewer` loads objects with.
/// Lines `id\tjson`, by id within chunks of 1,000, optionally masked to some top-level keys.
pub async fn object_stream(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = access(&state, &headers, &project_id, false).await {
        // The v2 route answers with a JSON error body.
        let status = refused.status();
        return json_error(
            status,
            if status == StatusCode::NOT_FOUND {
                "Project not found"
            } else {
                "You do not have access to this project"
            },
        );
    }
    let request = match ObjectStreamRequest::parse(&body) {
        Ok(r) => r,
        Err(m) => return json_error(StatusCode::BAD_REQUEST, &m),
    };
    let transform: Option<stream::Transform> = request.attribute_mask.map(|mask| {
        Box::new(move |id: &str, data: String| mask.apply(id, &data)) as stream::Transform
    });
    let rows = stream::Rows::Ids(request.object_ids);
    stream_rows(&state, &headers, project_id, rows, true, transform)
}

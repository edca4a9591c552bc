//! Preview jobs: every created version, whichever API made it, gets its preview rendered
//! ahead of the first request (the original renders lazily, on the first image request).

use schema::jobs::NewJob;

use crate::projection::Batch;

/// The job kind `workers::preview::Renderer` handles.
pub const PREVIEW_JOB: &str = "preview.render";
/// Attempts before a preview is marked failed.
pub const PREVIEW_MAX_ATTEMPTS: i32 = 4;

/// The job rendering the preview of `object_id` in `project_id`. One per (project, object):
/// versions sharing a root object share its images, as in the original. `generation` tells a
/// requested re-render apart from the first (`None`: the first, from the version's event).
pub fn job(
    project_id: &str,
    object_id: &str,
    source_position: Option<i64>,
    generation: Option<&str>,
) -> NewJob {
    let dedupe = match generation {
        None => format!("{PREVIEW_JOB}:{project_id}:{object_id}"),
        Some(g) => format!("{PREVIEW_JOB}:{project_id}:{object_id}:{g}"),
    };
    NewJob {
        kind: PREVIEW_JOB.to_owned(),
        payload: serde_json::json!({"projectId": project_id, "objectId": object_id}),
        dedupe_key: Some(dedupe),
        max_attempts: PREVIEW_MAX_ATTEMPTS,
        source_position,
        ordering_key: None,
        run_at: None,
    }
}

/// Enqueues the preview of a version's root object, in the batch's transaction.
pub async fn enqueue(
    batch: &mut Batch<'_>,
    project_id: &str,
    object_id: &str,
    position: i64,
) -> Result<(), sqlx::Error> {
    batch
        .enqueue(&job(project_id, object_id, Some(position), None))
        .await
        .map(|_| ())
}

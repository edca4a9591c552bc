//! The `model_ingestions` table of the `speckle` read model, and the ingestion reactions its
//! events schedule (the idle clock, the finishing of accepted uploads).

use domain::ingestion::{IngestionEvent, IngestionStatus};
use schema::RecordedEvent;
use schema::jobs::NewJob;
use time::Duration;

use crate::projection::{Batch, ProjectionError, sql};

/// The idle clock's job kind, as `workers::ingestion` handles it.
pub const IDLE_TIMEOUT_JOB: &str = "ingestion.idle_timeout";
/// The finishing job's kind, as `workers::ingestion` handles it.
pub const FINISH_JOB: &str = "ingestion.finish";
/// The kind of the job turning a successful bundle into Speckle objects, as
/// `workers::ingestion` handles it.
pub const BUNDLE_OBJECTS_JOB: &str = "ingestion.bundle_objects";

/// The file importer's job kind, as `workers::import` handles it.
pub const IMPORT_JOB: &str = "ingestion.import_file";

/// How long after an accepted upload the finishing job runs: the completing request normally
/// finishes within milliseconds, and the job then finds nothing to do.
const FINISH_AFTER: Duration = Duration::seconds(10);

/// The table, in `speckle`'s table list.
pub(super) const TABLE: crate::projection::TableDef = crate::projection::TableDef {
    name: "model_ingestions",
    create: "CREATE TABLE {table} (
        id text PRIMARY KEY, project_id text NOT NULL, model_id text NOT NULL,
        user_id text NOT NULL, version_id text NOT NULL, status text NOT NULL,
        progress_message text, progress double precision, cancellation_requested boolean NOT NULL,
        error_reason text, cancellation_message text, source_data jsonb NOT NULL,
        max_idle_timeout_seconds integer NOT NULL, upload_accepted boolean NOT NULL,
        files jsonb, objects_root text, objects_error text, import_file jsonb,
        events bigint NOT NULL,
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)",
    indexes: &[
        "CREATE INDEX {table}_model ON {table} (project_id, model_id, created_at DESC, id)",
        "CREATE INDEX {table}_version ON {table} (version_id)",
    ],
};

/// Folds one ingestion event and schedules what it calls for.
pub(super) async fn apply(
    batch: &mut Batch<'_>,
    e: &RecordedEvent,
    event: &IngestionEvent,
) -> Result<(), ProjectionError> {
    use IngestionEvent as E;
    let table = batch.table(TABLE.name);
    let at = e.recorded_at;
    let id = event.ingestion_id();
    // Every change but creation: one UPDATE of the ingestion's row with these columns set
    // (`$4`… bound by the caller), counting the event and stamping its time.
    let update = |set: &str| {
        sqlx::query(sql(format!(
            "UPDATE {table} SET {set}, events = $2, updated_at = $3 WHERE id = $1"
        )))
        .bind(id)
        .bind(e.stream_version)
        .bind(at)
    };
    // The one statement that folds the event.
    let statement = match event {
        E::IngestionCreated {
            ingestion_id,
            project_id,
            model_id,
            user_id,
            version_id,
            status,
            progress_message,
            source_data,
            max_idle_timeout_seconds,
            file,
        } => sqlx::query(sql(format!(
            "INSERT INTO {table} (id, project_id, model_id, user_id, version_id, status, \
             progress_message, cancellation_requested, source_data, max_idle_timeout_seconds, \
             upload_accepted, events, created_at, updated_at, import_file) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8, $9, false, $10, $11, $11, $12)"
        )))
        .bind(ingestion_id)
        .bind(project_id)
        .bind(model_id)
        .bind(user_id)
        .bind(version_id)
        .bind(status.as_str())
        .bind(progress_message)
        .bind(source_json(e, source_data)?)
        // Saturates at the int column; never reached.
        .bind(i32::try_from(*max_idle_timeout_seconds).unwrap_or(i32::MAX))
        .bind(e.stream_version)
        .bind(at)
        .bind(file.as_ref().map(|f| serde_json::json!(f))),
        E::IngestionProcessingStarted {
            progress_message,
            source_data,
            ..
        } => update(
            "status = 'processing', progress_message = $4, progress = NULL, source_data = $5",
        )
        .bind(progress_message)
        .bind(source_json(e, source_data)?),
        E::IngestionRequeued {
            progress_message, ..
        } => update("status = 'queued', progress_message = $4, progress = NULL")
            .bind(progress_message),
        E::IngestionProgressUpdated {
            progress_message,
            progress,
            ..
        } => update("progress_message = $4, progress = $5")
            .bind(progress_message)
            .bind(progress),
        E::IngestionCancellationRequested { message, .. } => {
            update("cancellation_requested = true, cancellation_message = $4").bind(message)
        }
        E::IngestionUploadCompleted { files, .. } => {
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            update("upload_accepted = true, files = $4").bind(serde_json::json!(names))
        }
        E::IngestionSucceeded { .. } => {
            update("status = 'success', progress_message = NULL, progress = NULL")
        }
        E::IngestionFailed {
            error_reason,
            timed_out,
            ..
        } => update(
            "status = 'failed', progress_message = NULL, progress = NULL, error_reason = $4, \
             cancellation_requested = cancellation_requested OR $5",
        )
        .bind(error_reason)
        .bind(timed_out),
        E::IngestionObjectsBuilt { root_object_id, .. } => {
            update("objects_root = $4, objects_error = NULL").bind(root_object_id)
        }
        E::IngestionObjectsFailed { reason, .. } => update("objects_error = $4").bind(reason),
        E::IngestionCancelled { message, .. } => update(
            "status = 'cancelled', progress_message = NULL, progress = NULL, \
             cancellation_message = COALESCE($4, cancellation_message)",
        )
        .bind(message),
    };
    statement.execute(&mut *batch.conn).await?;
    schedule(batch, &table, e, event).await
}

/// An ingestion's producer as the `source_data` column stores it.
fn source_json(
    e: &RecordedEvent,
    source_data: &domain::ingestion::SourceData,
) -> Result<serde_json::Value, ProjectionError> {
    serde_json::to_value(source_data).map_err(|err| ProjectionError::Handler {
        position: Some(e.cursor.position),
        message: err.to_string(),
    })
}

/// A created file import is handed to the importer; the idle clock restarts at every event
/// while it runs; an accepted upload is finished by a worker should its request have died.
async fn schedule(
    batch: &mut Batch<'_>,
    table: &str,
    e: &RecordedEvent,
    event: &IngestionEvent,
) -> Result<(), ProjectionError> {
    let id = event.ingestion_id();
    if let IngestionEvent::IngestionCreated {
        project_id,
        file: Some(file),
        ..
    } = event
    {
        batch
            .enqueue(&NewJob {
                kind: IMPORT_JOB.to_owned(),
                payload: serde_json::json!({
                    "ingestionId": id,
                    "projectId": project_id,
                    "file": file,
                }),
                dedupe_key: Some(format!("{IMPORT_JOB}:{id}")),
                max_attempts: 3,
                source_position: Some(e.cursor.position),
                ordering_key: None,
                run_at: None,
            })
            .await?;
    }
    if let IngestionEvent::IngestionUploadCompleted { .. } = event {
        return Ok(batch
            .enqueue(&NewJob {
                kind: FINISH_JOB.to_owned(),
                payload: serde_json::json!({ "ingestionId": id }),
                dedupe_key: Some(format!("{}:{id}", FINISH_JOB)),
                max_attempts: 20,
                source_position: Some(e.cursor.position),
                ordering_key: None,
                run_at: Some(e.recorded_at + FINISH_AFTER),
            })
            .await?);
    }
    if let IngestionEvent::IngestionSucceeded { .. } = event {
        return schedule_objects(batch, table, e, id).await;
    }
    let row: Option<(String, bool, i32)> = sqlx::query_as(sql(format!(
        "SELECT status, upload_accepted, max_idle_timeout_seconds FROM {table} WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *batch.conn)
    .await?;
    let Some((status, upload_accepted, timeout)) = row else {
        return Ok(());
    };
    let running =
        !upload_accepted && IngestionStatus::parse(&status).is_some_and(|s| !s.is_terminal());
    if running {
        batch
            .enqueue(&NewJob {
                kind: IDLE_TIMEOUT_JOB.to_owned(),
                payload: serde_json::json!({
                    "ingestionId": id,
                    "afterEvents": e.stream_version,
                }),
                dedupe_key: Some(format!("{}:{id}:{}", IDLE_TIMEOUT_JOB, e.stream_version)),
                max_attempts: 20,
                source_position: Some(e.cursor.position),
                ordering_key: None,
                run_at: Some(e.recorded_at + Duration::seconds(i64::from(timeout))),
            })
            .await?;
    }
    Ok(())
}

/// Project, model, version, bundle files and model name of a successful ingestion.
type SucceededBundle = (
    String,
    String,
    String,
    Option<serde_json::Value>,
    Option<String>,
);

/// A successful bundle is turned into Speckle objects by a worker.
async fn schedule_objects(
    batch: &mut Batch<'_>,
    table: &str,
    e: &RecordedEvent,
    id: &str,
) -> Result<(), ProjectionError> {
    let models = batch.table("models");
    let row: Option<SucceededBundle> = sqlx::query_as(sql(format!(
        "SELECT i.project_id, i.model_id, i.version_id, i.files, m.name FROM {table} i \
             LEFT JOIN {models} m ON m.id = i.model_id WHERE i.id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *batch.conn)
    .await?;
    let Some((project_id, model_id, version_id, Some(files), model_name)) = row else {
        return Ok(());
    };
    if files.as_array().is_none_or(Vec::is_empty) {
        return Ok(());
    }
    batch
        .enqueue(&NewJob {
            kind: BUNDLE_OBJECTS_JOB.to_owned(),
            payload: serde_json::json!({
                "ingestionId": id,
                "projectId": project_id,
                "versionId": version_id,
                "rootId": domain::ingestion::bundle_reference(&project_id, &model_id, &version_id),
                "modelName": model_name.unwrap_or_default(),
                "files": files,
            }),
            dedupe_key: Some(format!("{BUNDLE_OBJECTS_JOB}:{id}")),
            max_attempts: 10,
            source_position: Some(e.cursor.position),
            ordering_key: None,
            run_at: None,
        })
        .await?;
    Ok(())
}

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
        files jsonb, events bigint NOT NULL,
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
    // Every change but creation: one UPDATE with these columns set.
    let update =
        |set: &str| format!("UPDATE {table} SET {set}, events = $2, updated_at = $3 WHERE id = $1");
    let conn = &mut *batch.conn;
    match event {
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
        } => {
            let source =
                serde_json::to_value(source_data).map_err(|err| ProjectionError::Handler {
                    position: Some(e.cursor.position),
                    message: err.to_string(),
                })?;
            sqlx::query(sql(format!(
                "INSERT INTO {table} (id, project_id, model_id, user_id, version_id, status, \
                 progress_message, cancellation_requested, source_data, max_idle_timeout_seconds, \
                 upload_accepted, events, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8, $9, false, $10, $11, $11)"
            )))
            .bind(ingestion_id)
            .bind(project_id)
            .bind(model_id)
            .bind(user_id)
            .bind(version_id)
            .bind(status.as_str())
            .bind(progress_message)
            .bind(source)
            .bind(i32::try_from(*max_idle_timeout_seconds).unwrap_or(i32::MAX))
            .bind(e.stream_version)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        E::IngestionProcessingStarted {
            progress_message,
            source_data,
            ..
        } => {
            let source =
                serde_json::to_value(source_data).map_err(|err| ProjectionError::Handler {
                    position: Some(e.cursor.position),
                    message: err.to_string(),
                })?;
            sqlx::query(sql(update(
                "status = 'processing', progress_message = $4, progress = NULL, source_data = $5",
            )))
            .bind(id)
            .bind(e.stream_version)
            .bind(at)
            .bind(progress_message)
            .bind(source)
            .execute(&mut *conn)
            .await?;
        }
        E::IngestionRequeued {
            progress_message, ..
        } => {
            sqlx::query(sql(update(
                "status = 'queued', progress_message = $4, progress = NULL",
            )))
            .bind(id)
            .bind(e.stream_version)
            .bind(at)
            .bind(progress_message)
            .execute(&mut *conn)
            .await?;
        }
        E::IngestionProgressUpdated {
            progress_message,
            progress,
            ..
        } => {
            sqlx::query(sql(update("progress_message = $4, progress = $5")))
                .bind(id)
                .bind(e.stream_version)
                .bind(at)
                .bind(progress_message)
                .bind(progress)
                .execute(&mut *conn)
                .await?;
        }
        E::IngestionCancellationRequested { message, .. } => {
            sqlx::query(sql(update(
                "cancellation_requested = true, cancellation_message = $4",
            )))
            .bind(id)
            .bind(e.stream_version)
            .bind(at)
            .bind(message)
            .execute(&mut *conn)
            .await?;
        }
        E::IngestionUploadCompleted { files, .. } => {
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            sqlx::query(sql(update("upload_accepted = true, files = $4")))
                .bind(id)
                .bind(e.stream_version)
                .bind(at)
                .bind(serde_json::json!(names))
                .execute(&mut *conn)
                .await?;
        }
        E::IngestionSucceeded { .. } => {
            sqlx::query(sql(update(
                "status = 'success', progress_message = NULL, progress = NULL",
            )))
            .bind(id)
            .bind(e.stream_version)
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        E::IngestionFailed {
            error_reason,
            timed_out,
            ..
        } => {
            sqlx::query(sql(update(
                "status = 'failed', progress_message = NULL, progress = NULL, error_reason = $4, \
                 cancellation_requested = cancellation_requested OR $5",
            )))
            .bind(id)
            .bind(e.stream_version)
            .bind(at)
            .bind(error_reason)
            .bind(timed_out)
            .execute(&mut *conn)
            .await?;
        }
        E::IngestionCancelled { message, .. } => {
            sqlx::query(sql(update(
                "status = 'cancelled', progress_message = NULL, progress = NULL, \
                 cancellation_message = COALESCE($4, cancellation_message)",
            )))
            .bind(id)
            .bind(e.stream_version)
            .bind(at)
            .bind(message)
            .execute(&mut *conn)
            .await?;
        }
    }
    schedule(batch, &table, e, event).await
}

/// The idle clock restarts at every event while it runs; an accepted upload is finished by a
/// worker should its request have died.
async fn schedule(
    batch: &mut Batch<'_>,
    table: &str,
    e: &RecordedEvent,
    event: &IngestionEvent,
) -> Result<(), ProjectionError> {
    let id = event.ingestion_id();
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

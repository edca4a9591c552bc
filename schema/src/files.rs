//! The index of uploaded files: one row per file handed an upload URL, keyed by its id; the
//! bytes live in S3 under [`key`].

use sqlx::PgPool;
use time::OffsetDateTime;

/// The S3 key of uploaded file `id` of `project_id`.
pub fn key(project_id: &str, id: &str) -> String {
    format!("assets/{project_id}/{id}")
}

/// An uploaded file's record.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct FileUpload {
    /// Id (10 hex).
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Uploader.
    pub user_id: String,
    /// The name it was uploaded with.
    pub file_name: String,
    /// Lower-case extension.
    pub file_type: String,
    /// Bytes, once checked.
    pub file_size: Option<i64>,
    /// The store's ETag, once checked.
    pub etag: Option<String>,
    /// `pending`, `completed` or `error`.
    pub upload_status: String,
    /// Why it is `error`.
    pub upload_error: Option<String>,
    /// Created.
    pub created_at: OffsetDateTime,
}

/// Records a file about to be uploaded.
pub async fn insert_pending(
    pool: &PgPool,
    id: &str,
    project_id: &str,
    user_id: &str,
    file_name: &str,
    file_type: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO file_uploads (id, project_id, user_id, file_name, file_type) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(project_id)
    .bind(user_id)
    .bind(file_name)
    .bind(file_type)
    .execute(pool)
    .await
    .map(|_| ())
}

/// File `id` of `project_id`.
pub async fn get(
    pool: &PgPool,
    project_id: &str,
    id: &str,
) -> Result<Option<FileUpload>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, project_id, user_id, file_name, file_type, file_size, etag, upload_status, \
         upload_error, created_at FROM file_uploads WHERE project_id = $1 AND id = $2",
    )
    .bind(project_id)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Marks a pending file completed with its checked size and ETag; false if it was not pending
/// (a concurrent completion won).
pub async fn complete(pool: &PgPool, id: &str, size: i64, etag: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE file_uploads SET upload_status = 'completed', file_size = $2, etag = $3, \
         updated_at = now() WHERE id = $1 AND upload_status = 'pending'",
    )
    .bind(id)
    .bind(size)
    .bind(etag)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks a pending file failed with `reason`.
pub async fn fail(pool: &PgPool, id: &str, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE file_uploads SET upload_status = 'error', upload_error = $2, updated_at = now() \
         WHERE id = $1 AND upload_status = 'pending'",
    )
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await
    .map(|_| ())
}

/// The id of the newest completed upload named `file_name` in `project_id` (an OBJ's MTL is
/// uploaded beside it).
pub async fn latest_completed_by_name(
    pool: &PgPool,
    project_id: &str,
    file_name: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM file_uploads WHERE project_id = $1 AND file_name = $2 \
         AND upload_status = 'completed' ORDER BY created_at DESC LIMIT 1",
    )
    .bind(project_id)
    .bind(file_name)
    .fetch_optional(pool)
    .await
}

/// Forgets file `id` of `project_id` (its bytes are deleted from the store by the caller).
pub async fn delete(pool: &PgPool, project_id: &str, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM file_uploads WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ())
}

/// Which of `ids` are completed uploads of `project_id`.
pub async fn completed_ids(
    pool: &PgPool,
    project_id: &str,
    ids: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM file_uploads WHERE project_id = $1 AND id = ANY($2) \
         AND upload_status = 'completed'",
    )
    .bind(project_id)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// The completed uploads of `project_id`, newest first, only those named `file_name` when
/// given.
pub async fn list_completed(
    pool: &PgPool,
    project_id: &str,
    file_name: Option<&str>,
) -> Result<Vec<FileUpload>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, project_id, user_id, file_name, file_type, file_size, etag, upload_status, \
         upload_error, created_at FROM file_uploads \
         WHERE project_id = $1 AND upload_status = 'completed' \
           AND ($2::text IS NULL OR file_name = $2) \
         ORDER BY created_at DESC, id LIMIT 1000",
    )
    .bind(project_id)
    .bind(file_name)
    .fetch_all(pool)
    .await
}

//! Typed queries over the `speckle` read model: the API, pages and workers read models through
//! these functions and row types, never through their own SQL against these tables.

use sqlx::PgPool;
use time::OffsetDateTime;

/// A case-insensitive `LIKE` pattern matching `q` anywhere, with its wildcards escaped: the one
/// pattern every search uses.
pub fn like_pattern(q: &str) -> String {
    format!(
        "%{}%",
        q.trim()
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// A model as the read model stores it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ModelRow {
    /// Id.
    pub id: String,
    /// Canonical (lower-case) full name, `a/b/c`.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Who created it.
    pub author_id: String,
    /// Its project.
    pub project_id: String,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed, or last given a version.
    pub updated_at: OffsetDateTime,
}

/// Which of a project's models to list (`Project.models(filter:)`), with the original's
/// meaning: `search` matches the full name anywhere, case-insensitively; `contributors` and
/// `source_apps` keep models with at least one version by one of those authors and from an
/// application whose name contains one of those (the same version must match both);
/// `only_with_versions` drops empty models; `ids` keeps only those (an empty list keeps none),
/// `exclude_ids` drops those. `globals` is never listed, nor an empty `main`.
#[derive(Clone, Debug, Default)]
pub struct ModelsFilter {
    /// Part of the name.
    pub search: Option<String>,
    /// Application names (substrings, case-insensitive).
    pub source_apps: Option<Vec<String>>,
    /// Version author ids.
    pub contributors: Option<Vec<String>>,
    /// Only models with versions.
    pub only_with_versions: bool,
    /// Only these models.
    pub ids: Option<Vec<String>>,
    /// Not these models.
    pub exclude_ids: Option<Vec<String>>,
}

/// A page of models, most recently updated first.
#[derive(Debug)]
pub struct ModelsPage {
    /// How many models match the filter in all (whatever the cursor).
    pub total_count: i64,
    /// The page.
    pub items: Vec<ModelRow>,
}

/// The filtered set, as `filtered`: parameters `$1` project, `$2` name pattern, `$3` source
/// application patterns, `$4` contributors, `$5` only with versions, `$6` ids, `$7` excluded ids.
const FILTERED: &str = "WITH filtered AS MATERIALIZED ( \
    SELECT m.id, m.name, m.description, m.author_id, m.project_id, m.created_at, m.updated_at \
    FROM models m \
    WHERE m.project_id = $1 AND m.name <> 'globals' \
      AND ($2::text IS NULL OR m.name ILIKE $2) \
      AND ($6::text[] IS NULL OR m.id = ANY($6)) \
      AND ($7::text[] IS NULL OR NOT (m.id = ANY($7))) \
      AND CASE \
        WHEN $3::text[] IS NOT NULL OR $4::text[] IS NOT NULL THEN EXISTS ( \
          SELECT 1 FROM versions v WHERE v.model_id = m.id \
            AND ($4::text[] IS NULL OR v.author_id = ANY($4)) \
            AND ($3::text[] IS NULL OR EXISTS ( \
              SELECT 1 FROM unnest($3::text[]) AS app(pattern) \
              WHERE v.source_application ILIKE app.pattern))) \
        WHEN $5 THEN EXISTS (SELECT 1 FROM versions v WHERE v.model_id = m.id) \
        ELSE m.name <> 'main' \
          OR EXISTS (SELECT 1 FROM versions v WHERE v.model_id = m.id) \
      END) ";

/// One page of a project's models matching `filter`, after the model `(updated_at, id)` of
/// `after` when given.
pub async fn models_page(
    pool: &PgPool,
    project_id: &str,
    filter: &ModelsFilter,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<ModelsPage, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Counted {
        #[sqlx(flatten)]
        model: ModelRow,
        total_count: i64,
    }
    let search = filter.search.as_deref().filter(|s| !s.trim().is_empty());
    let apps: Option<Vec<String>> = filter
        .source_apps
        .as_ref()
        .filter(|a| !a.is_empty())
        .map(|a| a.iter().map(|s| like_pattern(s)).collect());
    let contributors = filter.contributors.as_ref().filter(|c| !c.is_empty());
    // The page and the total in one round trip; a page past the end has no row to carry the
    // total, so only then is it asked for alone.
    // The filter's parameters, `$1` to `$7` of [`FILTERED`], in either query.
    macro_rules! filtered {
        ($query:expr) => {
            $query
                .bind(project_id)
                .bind(search.map(like_pattern))
                .bind(apps.as_ref())
                .bind(contributors)
                .bind(filter.only_with_versions)
                .bind(filter.ids.as_ref())
                .bind(filter.exclude_ids.as_ref())
        };
    }
    let rows: Vec<Counted> = filtered!(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{FILTERED} SELECT f.*, (SELECT count(*) FROM filtered) AS total_count FROM filtered f \
         WHERE $8::timestamptz IS NULL OR (f.updated_at, f.id) < ($8, $9) \
         ORDER BY f.updated_at DESC, f.id DESC LIMIT $10"
    ))))
    .bind(after.as_ref().map(|a| a.0))
    .bind(after.as_ref().map(|a| a.1.as_str()).unwrap_or_default())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let total_count = match rows.first() {
        Some(row) => row.total_count,
        None => {
            filtered!(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "{FILTERED} SELECT count(*) FROM filtered"
            ))))
            .fetch_one(pool)
            .await?
        }
    };
    Ok(ModelsPage {
        total_count,
        items: rows.into_iter().map(|r| r.model).collect(),
    })
}

/// A pending project invite.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct InviteRow {
    /// Invite id (the first part of its token).
    pub id: String,
    /// The project.
    pub project_id: String,
    /// The project's name.
    pub project_name: String,
    /// The invited user, when invited by account.
    pub target_user_id: Option<String>,
    /// The invited address, when invited by email.
    pub target_email: Option<String>,
    /// The role on accepting, e.g. `stream:contributor`.
    pub role: String,
    /// Who invited.
    pub invited_by: String,
}

/// The oldest pending invite to `project_id` that is `invite_id` (when given) and addressed to
/// `addressee` (a user id and that user's email, when given).
pub async fn pending_invite(
    pool: &PgPool,
    project_id: &str,
    invite_id: Option<&str>,
    addressee: Option<(&str, &str)>,
) -> Result<Option<InviteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.id, i.project_id, p.name AS project_name, i.target_user_id, i.target_email, \
                i.role, i.invited_by \
         FROM project_invites i JOIN projects p ON p.id = i.project_id \
         WHERE i.project_id = $1 AND i.status = 'pending' \
           AND ($2::text IS NULL OR i.id = $2) \
           AND ($3::text IS NULL OR i.target_user_id = $3 OR i.target_email = $4) \
         ORDER BY i.updated_at, i.id LIMIT 1",
    )
    .bind(project_id)
    .bind(invite_id)
    .bind(addressee.map(|a| a.0))
    .bind(addressee.map(|a| a.1))
    .fetch_optional(pool)
    .await
}

/// A user's email address, if the user exists.
pub async fn user_email(pool: &PgPool, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

/// A user's display name, if the user exists.
pub async fn user_name(pool: &PgPool, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

/// A model ingestion as the read model stores it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct IngestionRow {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Model.
    pub model_id: String,
    /// Owner.
    pub user_id: String,
    /// Reserved version id.
    pub version_id: String,
    /// `queued`, `processing`, `success`, `failed` or `cancelled`.
    pub status: String,
    /// Last progress message (none once finished).
    pub progress_message: Option<String>,
    /// Last reported fraction.
    pub progress: Option<f64>,
    /// Whether cancellation was requested.
    pub cancellation_requested: bool,
    /// Why it failed.
    pub error_reason: Option<String>,
    /// Why it was cancelled.
    pub cancellation_message: Option<String>,
    /// The producer (`domain::ingestion::SourceData` as JSON).
    pub source_data: serde_json::Value,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// Ingestion `id` of project `project_id`.
pub async fn ingestion(
    pool: &PgPool,
    project_id: &str,
    id: &str,
) -> Result<Option<IngestionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, project_id, model_id, user_id, version_id, status, progress_message, progress, \
         cancellation_requested, error_reason, cancellation_message, source_data, created_at, \
         updated_at FROM model_ingestions WHERE id = $1 AND project_id = $2",
    )
    .bind(id)
    .bind(project_id)
    .fetch_optional(pool)
    .await
}

/// The names of the bundle files of version `version_id` of `project_id`, sorted; empty when
/// the version does not exist (any more) or was not made from a bundle.
pub async fn bundle_files(
    pool: &PgPool,
    project_id: &str,
    version_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let files: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT i.files FROM model_ingestions i \
         JOIN versions v ON v.id = i.version_id AND v.project_id = i.project_id \
         WHERE i.project_id = $1 AND i.version_id = $2 AND i.status = 'success' \
           AND v.referenced_object LIKE 'bundle.%'",
    )
    .bind(project_id)
    .bind(version_id)
    .fetch_optional(pool)
    .await?
    .flatten();
    let mut names: Vec<String> = files
        .and_then(|f| serde_json::from_value(f).ok())
        .unwrap_or_default();
    names.sort();
    Ok(names)
}

/// A file import (an ingestion carrying an uploaded file), with its model's name.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct FileImportRow {
    /// The ingestion.
    #[sqlx(flatten)]
    pub ingestion: IngestionRow,
    /// The file (`domain::ingestion::ImportFile` as JSON).
    pub import_file: serde_json::Value,
    /// The model's name, while the model exists.
    pub model_name: Option<String>,
}

/// Which file imports to list.
#[derive(Clone, Copy, Debug, Default)]
pub struct FileImportsFilter<'a> {
    /// Only this model's.
    pub model_id: Option<&'a str>,
    /// Only those still queued or processing.
    pub pending_only: bool,
}

/// A page of a project's file imports, newest first, after `(created_at, id)` when given, and
/// how many match in all.
pub async fn file_imports(
    pool: &PgPool,
    project_id: &str,
    filter: FileImportsFilter<'_>,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<(i64, Vec<FileImportRow>), sqlx::Error> {
    const MATCHING: &str = "i.project_id = $1 AND i.import_file IS NOT NULL \
        AND ($2::text IS NULL OR i.model_id = $2) \
        AND (NOT $3 OR i.status IN ('queued', 'processing'))";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM model_ingestions i WHERE {MATCHING}"
    )))
    .bind(project_id)
    .bind(filter.model_id)
    .bind(filter.pending_only)
    .fetch_one(pool)
    .await?;
    let (after_at, after_id) = after.unzip();
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT i.id, i.project_id, i.model_id, i.user_id, i.version_id, i.status, \
         i.progress_message, i.progress, i.cancellation_requested, i.error_reason, \
         i.cancellation_message, i.source_data, i.created_at, i.updated_at, i.import_file, \
         m.name AS model_name \
         FROM model_ingestions i LEFT JOIN models m ON m.id = i.model_id \
         WHERE {MATCHING} AND ($4::timestamptz IS NULL OR (i.created_at, i.id) < ($4, $5)) \
         ORDER BY i.created_at DESC, i.id DESC LIMIT $6"
    )))
    .bind(project_id)
    .bind(filter.model_id)
    .bind(filter.pending_only)
    .bind(after_at)
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok((total, rows))
}

/// The file import of uploaded file `file_id` in `project_id`.
pub async fn file_import_by_file(
    pool: &PgPool,
    project_id: &str,
    file_id: &str,
) -> Result<Option<FileImportRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.id, i.project_id, i.model_id, i.user_id, i.version_id, i.status, \
         i.progress_message, i.progress, i.cancellation_requested, i.error_reason, \
         i.cancellation_message, i.source_data, i.created_at, i.updated_at, i.import_file, \
         m.name AS model_name \
         FROM model_ingestions i LEFT JOIN models m ON m.id = i.model_id \
         WHERE i.project_id = $1 AND i.import_file->>'fileId' = $2",
    )
    .bind(project_id)
    .bind(file_id)
    .fetch_optional(pool)
    .await
}

/// The file import that is ingestion `ingestion_id` of `project_id` (none for a client's own
/// send).
pub async fn file_import_of(
    pool: &PgPool,
    project_id: &str,
    ingestion_id: &str,
) -> Result<Option<FileImportRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.id, i.project_id, i.model_id, i.user_id, i.version_id, i.status, \
         i.progress_message, i.progress, i.cancellation_requested, i.error_reason, \
         i.cancellation_message, i.source_data, i.created_at, i.updated_at, i.import_file, \
         m.name AS model_name \
         FROM model_ingestions i LEFT JOIN models m ON m.id = i.model_id \
         WHERE i.project_id = $1 AND i.id = $2 AND i.import_file IS NOT NULL",
    )
    .bind(project_id)
    .bind(ingestion_id)
    .fetch_optional(pool)
    .await
}

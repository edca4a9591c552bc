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

/// A project as the read model stores it, with one user's role on it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ProjectRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// `PRIVATE`, `UNLISTED` or `PUBLIC`.
    pub visibility: String,
    /// Whether non-members may comment.
    pub allow_public_comments: bool,
    /// The user's role, e.g. `stream:owner`; none when not a member.
    pub role: Option<String>,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// Project `project_id` with the role of `user_id` (when given) on it, in one round trip.
pub async fn project_with_role(
    pool: &PgPool,
    project_id: &str,
    user_id: Option<&str>,
) -> Result<Option<ProjectRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.name, p.description, p.visibility, p.allow_public_comments, p.created_at, \
                p.updated_at, m.role \
         FROM projects p LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $2 \
         WHERE p.id = $1",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// The ids of the projects `user_id` is a member of.
pub async fn member_project_ids(pool: &PgPool, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar::<_, String>("SELECT project_id FROM project_members WHERE user_id = $1")
        .bind(user_id)
        .fetch_all(pool)
        .await
}

/// The applications the versions of `project_id` were sent from, distinct and sorted.
pub async fn project_source_apps(
    pool: &PgPool,
    project_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT source_application FROM versions \
         WHERE project_id = $1 AND source_application IS NOT NULL ORDER BY 1",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}

/// A pending invite as the project's team lists it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TeamInviteRow {
    /// Invite id.
    pub id: String,
    /// The invited user, when invited by account.
    pub target_user_id: Option<String>,
    /// The role on accepting, e.g. `stream:contributor`.
    pub role: String,
    /// Who invited.
    pub invited_by: String,
}

/// The pending invites to `project_id`, oldest first.
pub async fn project_pending_invites(
    pool: &PgPool,
    project_id: &str,
) -> Result<Vec<TeamInviteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, target_user_id, role, invited_by FROM project_invites \
         WHERE project_id = $1 AND status = 'pending' ORDER BY created_at",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}

/// A user as others see them.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LimitedUserRow {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Bio.
    pub bio: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// Avatar.
    pub avatar: Option<String>,
    /// Whether one of the user's addresses is verified.
    pub verified: bool,
    /// Server role, e.g. `server:user`.
    pub role: String,
}

/// User `user_id` as others see them, if the user exists.
pub async fn limited_user(
    pool: &PgPool,
    user_id: &str,
) -> Result<Option<LimitedUserRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, bio, company, avatar, EXISTS (SELECT 1 FROM email_verifications v WHERE v.user_id = users.id) AS verified, role FROM users WHERE id = $1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// The users of `user_ids` that exist, as others see them, in no particular order.
pub async fn limited_users(
    pool: &PgPool,
    user_ids: &[String],
) -> Result<Vec<LimitedUserRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, bio, company, avatar, EXISTS (SELECT 1 FROM email_verifications v WHERE v.user_id = users.id) AS verified, role FROM users WHERE id = ANY($1)",
    )
    .bind(user_ids)
    .fetch_all(pool)
    .await
}

/// A member of a project and their role on it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MemberRow {
    /// The role, e.g. `stream:owner`.
    pub member_role: String,
    /// The member.
    #[sqlx(flatten)]
    pub user: LimitedUserRow,
}

/// The members of `project_id`: owners first, then contributors, then the rest, each in the
/// order they joined.
pub async fn project_team(pool: &PgPool, project_id: &str) -> Result<Vec<MemberRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.role AS member_role, u.id, u.name, u.bio, u.company, u.avatar, EXISTS (SELECT 1 FROM email_verifications v WHERE v.user_id = u.id) AS verified, u.role \
         FROM project_members m JOIN users u ON u.id = m.user_id \
         WHERE m.project_id = $1 \
         ORDER BY CASE m.role WHEN 'stream:owner' THEN 0 WHEN 'stream:contributor' THEN 1 ELSE 2 END, m.created_at",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}

/// Model `model_id`, if it exists.
pub async fn model_by_id(pool: &PgPool, model_id: &str) -> Result<Option<ModelRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, description, author_id, project_id, created_at, updated_at FROM models \
         WHERE id = $1",
    )
    .bind(model_id)
    .fetch_optional(pool)
    .await
}

/// Model `model_id` of `project_id`, if it exists.
pub async fn model_in_project(
    pool: &PgPool,
    project_id: &str,
    model_id: &str,
) -> Result<Option<ModelRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, description, author_id, project_id, created_at, updated_at FROM models \
         WHERE project_id = $1 AND id = $2",
    )
    .bind(project_id)
    .bind(model_id)
    .fetch_optional(pool)
    .await
}

/// The model of `project_id` whose full name is `name` (trimmed and lower-cased here), if it
/// exists.
pub async fn model_by_name(
    pool: &PgPool,
    project_id: &str,
    name: &str,
) -> Result<Option<ModelRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, description, author_id, project_id, created_at, updated_at FROM models \
         WHERE project_id = $1 AND name = lower(trim($2))",
    )
    .bind(project_id)
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// The full name of model `model_id`, if it exists.
pub async fn model_name(pool: &PgPool, model_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM models WHERE id = $1")
        .bind(model_id)
        .fetch_optional(pool)
        .await
}

/// A version as the read model stores it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct VersionRow {
    /// Id.
    pub id: String,
    /// Id of its root object.
    pub referenced_object: String,
    /// Message.
    pub message: Option<String>,
    /// The application it was sent from.
    pub source_application: Option<String>,
    /// Number of objects under the root, as sent.
    pub total_children_count: Option<i32>,
    /// Parent version ids.
    pub parents: Option<Vec<String>>,
    /// Who sent it.
    pub author_id: String,
    /// Its model.
    pub model_id: String,
    /// Its project.
    pub project_id: String,
    /// Created.
    pub created_at: OffsetDateTime,
}

/// Version `version_id`, if it exists.
pub async fn version_by_id(
    pool: &PgPool,
    version_id: &str,
) -> Result<Option<VersionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, referenced_object, message, source_application, total_children_count, parents, \
         author_id, model_id, project_id, created_at FROM versions WHERE id = $1",
    )
    .bind(version_id)
    .fetch_optional(pool)
    .await
}

/// Version `version_id` of `project_id`, if it exists.
pub async fn version_in_project(
    pool: &PgPool,
    project_id: &str,
    version_id: &str,
) -> Result<Option<VersionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, referenced_object, message, source_application, total_children_count, parents, \
         author_id, model_id, project_id, created_at FROM versions WHERE project_id = $1 AND id = $2",
    )
    .bind(project_id)
    .bind(version_id)
    .fetch_optional(pool)
    .await
}

/// The id of the newest version of `model_id`, if it has any.
pub async fn latest_version_id(
    pool: &PgPool,
    model_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM versions WHERE model_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(model_id)
    .fetch_optional(pool)
    .await
}

/// Whose versions a listing covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionsOf {
    /// A project's, every model's.
    Project,
    /// One model's.
    Model,
}

/// How many versions the project or model `id` has.
pub async fn versions_count(pool: &PgPool, of: VersionsOf, id: &str) -> Result<i64, sqlx::Error> {
    let sql = match of {
        VersionsOf::Project => "SELECT count(*) FROM versions WHERE project_id = $1",
        VersionsOf::Model => "SELECT count(*) FROM versions WHERE model_id = $1",
    };
    sqlx::query_scalar(sql).bind(id).fetch_one(pool).await
}

/// One page of the versions of the project or model `id`, newest first, after the version
/// `(created_at, id)` of `after` when given.
pub async fn versions_page(
    pool: &PgPool,
    of: VersionsOf,
    id: &str,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<Vec<VersionRow>, sqlx::Error> {
    let sql = match of {
        VersionsOf::Project => {
            "SELECT id, referenced_object, message, source_application, total_children_count, \
             parents, author_id, model_id, project_id, created_at FROM versions \
             WHERE project_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        }
        VersionsOf::Model => {
            "SELECT id, referenced_object, message, source_application, total_children_count, \
             parents, author_id, model_id, project_id, created_at FROM versions \
             WHERE model_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        }
    };
    sqlx::query_as(sql)
        .bind(id)
        .bind(after.as_ref().map(|a| a.0))
        .bind(after.as_ref().map(|a| a.1.as_str()).unwrap_or_default())
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// The versions of `model_id` among `ids`, newest first, at most `limit`.
pub async fn versions_by_ids(
    pool: &PgPool,
    model_id: &str,
    ids: &[String],
    limit: i64,
) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, referenced_object, message, source_application, total_children_count, parents, \
         author_id, model_id, project_id, created_at FROM versions \
         WHERE model_id = $1 AND id = ANY($2) ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(model_id)
    .bind(ids)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One page of the versions of `model_id` not among `excluded`, newest first, after the
/// version `(created_at, id)` of `after` when given.
pub async fn versions_excluding(
    pool: &PgPool,
    model_id: &str,
    excluded: &[String],
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<Vec<VersionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, referenced_object, message, source_application, total_children_count, \
         parents, author_id, model_id, project_id, created_at FROM versions \
         WHERE model_id = $1 AND NOT (id = ANY($2)) \
         AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) \
         ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(model_id)
    .bind(excluded)
    .bind(after.as_ref().map(|a| a.0))
    .bind(after.as_ref().map(|a| a.1.as_str()).unwrap_or_default())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A version with the number of versions in its model.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CountedVersionRow {
    /// The version.
    #[sqlx(flatten)]
    pub version: VersionRow,
    /// Versions in its model.
    pub total_count: i64,
}

/// The newest `limit` versions of each model of `model_ids`, each with its model's version
/// count, in one round trip; a model without versions has no row.
pub async fn first_versions_of_models(
    pool: &PgPool,
    model_ids: &[&str],
    limit: i64,
) -> Result<Vec<CountedVersionRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT v.id, v.referenced_object, v.message, v.source_application, v.total_children_count, \
                v.parents, v.author_id, v.model_id, v.project_id, v.created_at, \
                (SELECT count(*) FROM versions c WHERE c.model_id = m.id) AS total_count \
         FROM unnest($1::text[]) AS m(id) \
         CROSS JOIN LATERAL (SELECT * FROM versions WHERE model_id = m.id \
                             ORDER BY created_at DESC, id DESC LIMIT $2) v",
    )
    .bind(model_ids)
    .bind(limit)
    .fetch_all(pool)
    .await
}

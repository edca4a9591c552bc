//! Typed queries over the `speckle` read model: the API, pages and workers read models through
//! these functions and row types, never through their own SQL against these tables.

use std::collections::HashMap;

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

/// The columns `$col`, comma-separated, each after `$p`.
macro_rules! columns {
    ($p:literal; $first:literal $(, $col:literal)*) => {
        concat!($p, $first $(, ", ", $p, $col)*)
    };
}

/// The columns of a [`ModelRow`], each after `$p` (a table alias and a dot) when given.
macro_rules! model_columns {
    () => {
        model_columns!("")
    };
    ($p:literal) => {
        columns!(
            $p;
            "id", "name", "description", "author_id", "project_id", "created_at", "updated_at"
        )
    };
}

/// The columns of a [`VersionRow`], each after `$p` (a table alias and a dot) when given.
macro_rules! version_columns {
    () => {
        version_columns!("")
    };
    ($p:literal) => {
        columns!(
            $p;
            "id", "referenced_object", "message", "source_application", "total_children_count",
            "parents", "author_id", "model_id", "project_id", "created_at"
        )
    };
}

/// The columns of an [`IngestionRow`], each after `$p` (a table alias and a dot) when given.
macro_rules! ingestion_columns {
    () => {
        ingestion_columns!("")
    };
    ($p:literal) => {
        columns!(
            $p;
            "id", "project_id", "model_id", "user_id", "version_id", "status", "progress_message",
            "progress", "cancellation_requested", "error_reason", "cancellation_message",
            "source_data", "created_at", "updated_at"
        )
    };
}

/// The `SELECT` of [`ModelRow`]s from `models`, then `$rest` (a `WHERE` clause).
macro_rules! select_models {
    ($rest:literal) => {
        concat!("SELECT ", model_columns!(), " FROM models ", $rest)
    };
}

/// The `SELECT` of [`VersionRow`]s from `versions`, then `$rest` (a `WHERE` clause).
macro_rules! select_versions {
    ($rest:literal) => {
        concat!("SELECT ", version_columns!(), " FROM versions ", $rest)
    };
}

/// A [`FileImportRow`]'s columns and joins (ingestion `i`, model `m`); a `WHERE` clause follows.
macro_rules! file_import_select {
    () => {
        concat!(
            "SELECT ",
            ingestion_columns!("i."),
            ", i.import_file, m.name AS model_name \
             FROM model_ingestions i LEFT JOIN models m ON m.id = i.model_id "
        )
    };
}

/// Column `verified`: whether user `$user` (a reference to a `users` row) has a verified
/// address.
macro_rules! verified {
    ($user:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM email_verifications v WHERE v.user_id = ",
            $user,
            ".id) AS verified"
        )
    };
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

/// Which models an unfiltered list shows, of a model `m` already known not to be `globals`:
/// every one but an empty `main` (the original hides it).
macro_rules! listed_by_default {
    () => {
        "(m.name <> 'main' OR EXISTS (SELECT 1 FROM versions v WHERE v.model_id = m.id))"
    };
}

/// The filtered set, as `filtered`: parameters `$1` project, `$2` name pattern, `$3` source
/// application patterns, `$4` contributors, `$5` only with versions, `$6` ids, `$7` excluded ids.
const FILTERED: &str = concat!(
    "WITH filtered AS MATERIALIZED ( SELECT ",
    model_columns!("m."),
    " FROM models m \
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
        ELSE ",
    listed_by_default!(),
    " END) "
);

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

/// The first page of each project's unfiltered model list (newest `limit`, as [`models_page`]
/// with no filter and no cursor) and the count of that list, for each of `project_ids`, in at
/// most two round trips; a project with no listed model has an empty page and a count of 0.
pub async fn first_models_of_projects(
    pool: &PgPool,
    project_ids: &[&str],
    limit: i64,
) -> Result<HashMap<String, ModelsPage>, sqlx::Error> {
    let counts: Vec<(String, i64)> = sqlx::query_as(concat!(
        "SELECT p.id, (SELECT count(*) FROM models m WHERE m.project_id = p.id \
           AND m.name <> 'globals' AND ",
        listed_by_default!(),
        ") FROM unnest($1::text[]) AS p(id)"
    ))
    .bind(project_ids)
    .fetch_all(pool)
    .await?;
    let mut pages: HashMap<String, ModelsPage> = counts
        .into_iter()
        .map(|(id, total_count)| {
            let page = ModelsPage {
                total_count,
                items: Vec::new(),
            };
            (id, page)
        })
        .collect();
    if limit > 0 {
        let rows: Vec<ModelRow> = sqlx::query_as(concat!(
            "SELECT m.* FROM unnest($1::text[]) AS p(id) CROSS JOIN LATERAL ( SELECT ",
            model_columns!("m."),
            " FROM models m WHERE m.project_id = p.id AND m.name <> 'globals' AND ",
            listed_by_default!(),
            " ORDER BY m.updated_at DESC, m.id DESC LIMIT $2) m"
        ))
        .bind(project_ids)
        .bind(limit)
        .fetch_all(pool)
        .await?;
        for row in rows {
            if let Some(page) = pages.get_mut(&row.project_id) {
                page.items.push(row);
            }
        }
    }
    Ok(pages)
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
    sqlx::query_as(concat!(
        "SELECT ",
        ingestion_columns!(),
        " FROM model_ingestions WHERE id = $1 AND project_id = $2"
    ))
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
        "{} WHERE {MATCHING} \
         AND ($4::timestamptz IS NULL OR (i.created_at, i.id) < ($4, $5)) \
         ORDER BY i.created_at DESC, i.id DESC LIMIT $6",
        file_import_select!()
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
    sqlx::query_as(concat!(
        file_import_select!(),
        "WHERE i.project_id = $1 AND i.import_file->>'fileId' = $2"
    ))
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
    sqlx::query_as(concat!(
        file_import_select!(),
        "WHERE i.project_id = $1 AND i.id = $2 AND i.import_file IS NOT NULL"
    ))
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
    /// The user's role, e.g. `stream:owner`; none when not a member, or when the query does
    /// not ask for one ([`admin_projects_page`]).
    #[sqlx(default)]
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
    sqlx::query_as(concat!(
        "SELECT id, name, bio, company, avatar, ",
        verified!("users"),
        ", role FROM users WHERE id = $1"
    ))
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// The users of `user_ids` that exist, as others see them, in no particular order.
pub async fn limited_users(
    pool: &PgPool,
    user_ids: &[String],
) -> Result<Vec<LimitedUserRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT id, name, bio, company, avatar, ",
        verified!("users"),
        ", role FROM users WHERE id = ANY($1)"
    ))
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
    sqlx::query_as(concat!(
        "SELECT m.role AS member_role, u.id, u.name, u.bio, u.company, u.avatar, ",
        verified!("u"),
        ", u.role \
         FROM project_members m JOIN users u ON u.id = m.user_id \
         WHERE m.project_id = $1 \
         ORDER BY CASE m.role WHEN 'stream:owner' THEN 0 WHEN 'stream:contributor' THEN 1 \
                  ELSE 2 END, m.created_at"
    ))
    .bind(project_id)
    .fetch_all(pool)
    .await
}

/// Model `model_id`, if it exists.
pub async fn model_by_id(pool: &PgPool, model_id: &str) -> Result<Option<ModelRow>, sqlx::Error> {
    sqlx::query_as(select_models!("WHERE id = $1"))
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
    sqlx::query_as(select_models!("WHERE project_id = $1 AND id = $2"))
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
    sqlx::query_as(select_models!(
        "WHERE project_id = $1 AND name = lower(trim($2))"
    ))
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
    sqlx::query_as(select_versions!("WHERE id = $1"))
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
    sqlx::query_as(select_versions!("WHERE project_id = $1 AND id = $2"))
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

/// The root object of `project_id`'s newest version outside the `globals` model (the model
/// the original keeps project-wide settings in), if any.
pub async fn latest_project_object(
    pool: &PgPool,
    project_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT v.referenced_object FROM versions v JOIN models m ON m.id = v.model_id \
         WHERE v.project_id = $1 AND m.name <> 'globals' \
         ORDER BY v.created_at DESC, v.id DESC LIMIT 1",
    )
    .bind(project_id)
    .fetch_optional(pool)
    .await
}

/// The root object of the newest version of the model named `model_name`, if any.
pub async fn latest_model_object(
    pool: &PgPool,
    project_id: &str,
    model_name: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT v.referenced_object FROM versions v JOIN models m ON m.id = v.model_id \
         WHERE m.project_id = $1 AND m.name = $2 \
         ORDER BY v.created_at DESC, v.id DESC LIMIT 1",
    )
    .bind(project_id)
    .bind(model_name)
    .fetch_optional(pool)
    .await
}

/// The ids of `project_id`'s versions whose root object is `object_id`.
pub async fn versions_with_object(
    pool: &PgPool,
    project_id: &str,
    object_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM versions WHERE project_id = $1 AND referenced_object = $2 ORDER BY created_at, id",
    )
    .bind(project_id)
    .bind(object_id)
    .fetch_all(pool)
    .await
}

/// The distinct (project, root object) pairs of the chosen versions: one version of a project,
/// a project's, or every project's (`project_id` none).
pub async fn version_objects(
    pool: &PgPool,
    project_id: Option<&str>,
    version_id: Option<&str>,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT DISTINCT project_id, referenced_object FROM versions \
         WHERE ($1::text IS NULL OR project_id = $1) AND ($2::text IS NULL OR id = $2) \
         ORDER BY project_id, referenced_object",
    )
    .bind(project_id)
    .bind(version_id)
    .fetch_all(pool)
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
    let column = match of {
        VersionsOf::Project => "project_id",
        VersionsOf::Model => "model_id",
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM versions \
         WHERE {column} = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4",
        version_columns!()
    )))
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
    sqlx::query_as(select_versions!(
        "WHERE model_id = $1 AND id = ANY($2) ORDER BY created_at DESC, id DESC LIMIT $3"
    ))
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
    sqlx::query_as(select_versions!(
        "WHERE model_id = $1 AND NOT (id = ANY($2)) \
         AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) \
         ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
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
    sqlx::query_as(concat!(
        "SELECT ",
        version_columns!("v."),
        ", (SELECT count(*) FROM versions c WHERE c.model_id = m.id) AS total_count \
         FROM unnest($1::text[]) AS m(id) \
         CROSS JOIN LATERAL (SELECT * FROM versions WHERE model_id = m.id \
                             ORDER BY created_at DESC, id DESC LIMIT $2) v"
    ))
    .bind(model_ids)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A user as they see themselves, with their email.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserRow {
    /// Id.
    pub id: String,
    /// Email address.
    pub email_address: String,
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
    /// Created.
    pub created_at: OffsetDateTime,
}

/// User `user_id` with their email, if the user exists.
pub async fn user_by_id(pool: &PgPool, user_id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT id, email AS email_address, name, bio, company, avatar, ",
        verified!("users"),
        ", role, created_at FROM users WHERE id = $1"
    ))
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// A user's server role, e.g. `server:user`, if the user exists.
pub async fn user_role(pool: &PgPool, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT role FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

/// A user's email address and server role, if the user exists.
pub async fn user_email_and_role(
    pool: &PgPool,
    user_id: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT email, role FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}

/// How many projects `user_id` is a member of whose name contains `search` (when given;
/// case-insensitive, its wildcards not escaped) and on which the user has one of `roles` (when
/// given).
pub async fn user_projects_count(
    pool: &PgPool,
    user_id: &str,
    search: Option<&str>,
    roles: Option<&[String]>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM project_members m JOIN projects p ON p.id = m.project_id \
         WHERE m.user_id = $1 AND ($2::text IS NULL OR p.name ILIKE '%' || $2 || '%') \
         AND ($3::text[] IS NULL OR m.role = ANY($3))",
    )
    .bind(user_id)
    .bind(search)
    .bind(roles)
    .fetch_one(pool)
    .await
}

/// One page of the projects of [`user_projects_count`], most recently updated first, after the
/// project `(updated_at, id)` of `after` when given, each with the role of `viewer` on it (as
/// [`project_with_role`]), in one round trip.
pub async fn user_projects_page(
    pool: &PgPool,
    user_id: &str,
    viewer: Option<&str>,
    search: Option<&str>,
    roles: Option<&[String]>,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<Vec<ProjectRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.name, p.description, p.visibility, p.allow_public_comments, p.created_at, \
                p.updated_at, v.role \
         FROM projects p JOIN project_members m ON m.project_id = p.id \
         LEFT JOIN project_members v ON v.project_id = p.id AND v.user_id = $7 \
         WHERE m.user_id = $1 AND ($2::timestamptz IS NULL OR (p.updated_at, p.id) < ($2, $3)) \
         AND ($5::text IS NULL OR p.name ILIKE '%' || $5 || '%') \
         AND ($6::text[] IS NULL OR m.role = ANY($6)) \
         ORDER BY p.updated_at DESC, p.id DESC LIMIT $4",
    )
    .bind(user_id)
    .bind(after.as_ref().map(|a| a.0))
    .bind(after.as_ref().map(|a| a.1.as_str()).unwrap_or_default())
    .bind(limit)
    .bind(search)
    .bind(roles)
    .bind(viewer)
    .fetch_all(pool)
    .await
}

/// A pending invite as its addressee lists it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AddresseeInviteRow {
    /// Invite id (the first part of its token).
    pub id: String,
    /// The project.
    pub project_id: String,
    /// The project's name.
    #[sqlx(rename = "name")]
    pub project_name: String,
    /// The role on accepting, e.g. `stream:contributor`.
    pub role: String,
    /// Who invited.
    pub invited_by: String,
}

/// The pending invites addressed to user `user_id` or to `email`, oldest first.
pub async fn invites_addressed_to(
    pool: &PgPool,
    user_id: &str,
    email: &str,
) -> Result<Vec<AddresseeInviteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.id, i.project_id, p.name, i.role, i.invited_by FROM project_invites i \
         JOIN projects p ON p.id = i.project_id \
         WHERE i.status = 'pending' AND (i.target_user_id = $1 OR i.target_email = $2) \
         ORDER BY i.created_at",
    )
    .bind(user_id)
    .bind(email)
    .fetch_all(pool)
    .await
}

/// One page of users, as `(id, created_at)`, newest first, after the user `(created_at, id)` of
/// `after` when given: those whose email is `query`, or (unless `email_only`) whose lower-cased
/// name contains it; archived users only with `archived`. `query` comes trimmed and lower-cased.
pub async fn users_search_page(
    pool: &PgPool,
    query: &str,
    email_only: bool,
    archived: bool,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<Vec<(String, OffsetDateTime)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, created_at FROM users \
         WHERE (CASE WHEN $2 THEN email = $1 ELSE (email = $1 OR lower(name) LIKE $3) END) \
           AND ($4 OR role <> $8) \
           AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6)) \
         ORDER BY created_at DESC, id DESC LIMIT $7",
    )
    .bind(query)
    .bind(email_only)
    .bind(like_pattern(query))
    .bind(archived)
    .bind(after.as_ref().map(|a| a.0))
    .bind(after.as_ref().map(|a| a.1.as_str()).unwrap_or_default())
    .bind(limit)
    .bind(domain::policy::ServerRole::ArchivedUser.as_str())
    .fetch_all(pool)
    .await
}

/// How many projects, users and pending invites the server holds.
#[derive(Clone, Copy, Debug)]
pub struct ServerCounts {
    /// Projects.
    pub projects: i64,
    /// Users.
    pub users: i64,
    /// Pending project invites.
    pub pending_invites: i64,
}

/// How many projects, users and pending invites the server holds, in one round trip.
pub async fn server_counts(pool: &PgPool) -> Result<ServerCounts, sqlx::Error> {
    let (projects, users, pending_invites): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM users), \
         (SELECT count(*) FROM project_invites WHERE status = 'pending')",
    )
    .fetch_one(pool)
    .await?;
    Ok(ServerCounts {
        projects,
        users,
        pending_invites,
    })
}

/// The admin project list: `$1` a `LIKE` pattern on the name, `$2` a visibility.
const ADMIN_PROJECTS: &str = "projects WHERE ($1::text IS NULL OR lower(name) LIKE $1) \
    AND ($2::text IS NULL OR visibility = $2)";

/// The admin invite list: pending invites to an email, `$1` a `LIKE` pattern on it.
const ADMIN_INVITES: &str = "project_invites WHERE status = 'pending' \
    AND target_email IS NOT NULL AND ($1::text IS NULL OR target_email LIKE $1)";

/// The admin user list: `$1` a `LIKE` pattern on name or email, `$2` a role.
const ADMIN_USERS: &str = "users WHERE ($1::text IS NULL OR lower(name) LIKE $1 OR email LIKE $1) \
    AND ($2::text IS NULL OR role = $2)";

/// One page of an admin list, newest first, after the row `(created_at, id)` of `after` when
/// given, and how many rows `source` (a table and a `WHERE` filter whose parameters `$1..$n` are
/// `binds`) holds. Every admin list is this shape; only the columns and the filter differ.
async fn newest_first<T>(
    pool: &PgPool,
    columns: &str,
    source: &str,
    binds: &[Option<String>],
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<(i64, Vec<T>), sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let mut total = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {source}"
    )));
    for bind in binds {
        total = total.bind(bind);
    }
    let total = total.fetch_one(pool).await?;
    let n = binds.len();
    let mut page = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM {source} \
         AND (${at}::timestamptz IS NULL OR (created_at, id) < (${at}, ${id})) \
         ORDER BY created_at DESC, id DESC LIMIT ${limit}",
        at = n + 1,
        id = n + 2,
        limit = n + 3,
    )));
    for bind in binds {
        page = page.bind(bind);
    }
    let items = page
        .bind(after.as_ref().map(|a| a.0))
        .bind(after.as_ref().map(|a| a.1.as_str()).unwrap_or_default())
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok((total, items))
}

/// One page of every project on the server, newest first, after the project `(created_at, id)`
/// of `after` when given, and how many match in all: those whose name contains `search` (when
/// given, case-insensitively) and of `visibility` as stored (when given, e.g. `PUBLIC`). The
/// rows carry no role.
pub async fn admin_projects_page(
    pool: &PgPool,
    search: Option<&str>,
    visibility: Option<&str>,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<(i64, Vec<ProjectRow>), sqlx::Error> {
    newest_first(
        pool,
        "id, name, description, visibility, allow_public_comments, created_at, updated_at",
        ADMIN_PROJECTS,
        &[search.map(like_pattern), visibility.map(str::to_owned)],
        after,
        limit,
    )
    .await
}

/// A pending invite to someone without an account, as an admin lists it.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AdminInviteRow {
    /// Invite id.
    pub id: String,
    /// The invited address.
    pub email: String,
    /// Who invited.
    pub invited_by: String,
    /// Created.
    pub created_at: OffsetDateTime,
}

/// One page of the pending invites to an email address, newest first, after the invite
/// `(created_at, id)` of `after` when given, and how many match in all: those whose address
/// contains `search` (when given, case-insensitively).
pub async fn admin_invites_page(
    pool: &PgPool,
    search: Option<&str>,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<(i64, Vec<AdminInviteRow>), sqlx::Error> {
    newest_first(
        pool,
        "id, target_email AS email, invited_by, created_at",
        ADMIN_INVITES,
        &[search.map(like_pattern)],
        after,
        limit,
    )
    .await
}

/// A user as an admin lists them, with the email.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AdminUserRow {
    /// Id.
    pub id: String,
    /// Email address.
    pub email: Option<String>,
    /// Display name.
    pub name: String,
    /// Bio.
    pub bio: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// Avatar.
    pub avatar: Option<String>,
    /// Whether one of the user's addresses is verified.
    pub verified: Option<bool>,
    /// Server role, e.g. `server:user`.
    pub role: Option<String>,
    /// Created.
    pub created_at: Option<OffsetDateTime>,
}

/// One page of every user, newest first, after the user `(created_at, id)` of `after` when
/// given, and how many match in all: those whose name or email contains `search` (when given,
/// case-insensitively) and who hold server role `role` (when given, e.g. `server:admin`).
pub async fn admin_users_page(
    pool: &PgPool,
    search: Option<&str>,
    role: Option<&str>,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<(i64, Vec<AdminUserRow>), sqlx::Error> {
    newest_first(
        pool,
        concat!(
            "id, email, name, bio, company, avatar, ",
            verified!("users"),
            ", role, created_at"
        ),
        ADMIN_USERS,
        &[search.map(like_pattern), role.map(str::to_owned)],
        after,
        limit,
    )
    .await
}

/// A project as the legacy API shows it (a stream).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StreamRow {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Whether it is not private.
    pub is_public: bool,
    /// Whether non-members may comment.
    pub allow_public_comments: bool,
    /// How many users hold it among their favourites.
    pub favorites_count: i32,
    /// Created.
    pub created_at: OffsetDateTime,
    /// Last changed.
    pub updated_at: OffsetDateTime,
}

/// Project `project_id` as a stream, if it exists.
pub async fn stream_by_id(
    pool: &PgPool,
    project_id: &str,
) -> Result<Option<StreamRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, description, visibility <> 'PRIVATE' AS is_public, \
         allow_public_comments, favorites_count, \
         created_at, updated_at FROM projects WHERE id = $1",
    )
    .bind(project_id)
    .fetch_optional(pool)
    .await
}

/// When `user_id` marked project `project_id` as a favourite, if they hold it as one.
pub async fn favorited_at(
    pool: &PgPool,
    project_id: &str,
    user_id: &str,
) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT created_at FROM project_favorites WHERE project_id = $1 AND user_id = $2",
    )
    .bind(project_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

/// A member of a project as the legacy API lists them.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StreamCollaboratorRow {
    /// The member's id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The role on the project, e.g. `stream:owner`.
    pub role: String,
    /// Company.
    pub company: Option<String>,
    /// Avatar.
    pub avatar: Option<String>,
    /// Server role, e.g. `server:user`.
    pub server_role: String,
}

/// The members of `project_id` in the order they joined (then by id).
pub async fn stream_collaborators(
    pool: &PgPool,
    project_id: &str,
) -> Result<Vec<StreamCollaboratorRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT u.id, u.name, m.role, u.company, u.avatar, u.role AS server_role \
         FROM project_members m JOIN users u ON u.id = m.user_id \
         WHERE m.project_id = $1 ORDER BY m.created_at, u.id",
    )
    .bind(project_id)
    .fetch_all(pool)
    .await
}

/// A model as the legacy API shows it (a branch).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct BranchRow {
    /// Id.
    pub id: String,
    /// Canonical (lower-case) full name, `a/b/c`.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Who created it.
    pub author_id: String,
    /// Created.
    pub created_at: OffsetDateTime,
}

/// How many models `project_id` has, every one counted (`globals` and an empty `main` too).
pub async fn models_count(pool: &PgPool, project_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM models WHERE project_id = $1")
        .bind(project_id)
        .fetch_one(pool)
        .await
}

/// One page of the models of `project_id` as branches, newest first, after the model
/// `(created_at, id)` of `after` when given.
pub async fn branches_page(
    pool: &PgPool,
    project_id: &str,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<Vec<BranchRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, description, author_id, project_id, created_at FROM models \
         WHERE project_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4",
    )
    .bind(project_id)
    .bind(after.as_ref().map(|a| a.0))
    .bind(after.as_ref().map(|a| a.1.as_str()).unwrap_or_default())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The model of `project_id` whose full name is `name` (trimmed and lower-cased here) as a
/// branch, if it exists.
pub async fn branch_by_name(
    pool: &PgPool,
    project_id: &str,
    name: &str,
) -> Result<Option<BranchRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, description, author_id, project_id, created_at FROM models \
         WHERE project_id = $1 AND name = lower(trim($2))",
    )
    .bind(project_id)
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// Model `model_id` as a branch, if it exists.
pub async fn branch_by_id(pool: &PgPool, model_id: &str) -> Result<Option<BranchRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, description, author_id, project_id, created_at FROM models WHERE id = $1",
    )
    .bind(model_id)
    .fetch_optional(pool)
    .await
}

/// A version as the legacy API shows it (a commit), with the names of its model, author and
/// project while they exist.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CommitRow {
    /// The version.
    #[sqlx(flatten)]
    pub version: VersionRow,
    /// Its model's full name.
    pub branch_name: Option<String>,
    /// Its author's display name.
    pub author_name: Option<String>,
    /// Its author's avatar.
    pub author_avatar: Option<String>,
    /// Its project's name.
    pub stream_name: Option<String>,
}

/// A commit's columns and joins; a `WHERE` clause follows.
const COMMIT_SELECT: &str = "SELECT v.id, v.referenced_object, v.message, v.source_application, \
    v.total_children_count, v.parents, m.name AS branch_name, v.author_id, u.name AS author_name, \
    u.avatar AS author_avatar, v.project_id, p.name AS stream_name, v.created_at, \
    v.model_id \
    FROM versions v LEFT JOIN models m ON m.id = v.model_id \
    LEFT JOIN users u ON u.id = v.author_id \
    LEFT JOIN projects p ON p.id = v.project_id ";

/// Version `version_id` of `project_id` as a commit, or without an id the project's newest, if
/// there is one.
pub async fn commit_in_stream(
    pool: &PgPool,
    project_id: &str,
    version_id: Option<&str>,
) -> Result<Option<CommitRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{COMMIT_SELECT} WHERE ($1::text IS NULL OR v.id = $1) AND v.project_id = $2 \
         ORDER BY v.created_at DESC, v.id DESC LIMIT 1"
    )))
    .bind(version_id)
    .bind(project_id)
    .fetch_optional(pool)
    .await
}

/// One page of the versions of the project or model `id` as commits, newest first, after the
/// version `(created_at, id)` of `after` when given, and how many versions it has in all.
pub async fn commits_page(
    pool: &PgPool,
    of: VersionsOf,
    id: &str,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<(i64, Vec<CommitRow>), sqlx::Error> {
    let column = match of {
        VersionsOf::Project => "v.project_id",
        VersionsOf::Model => "v.model_id",
    };
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM versions v WHERE {column} = $1"
    )))
    .bind(id)
    .fetch_one(pool)
    .await?;
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{COMMIT_SELECT} WHERE {column} = $1 \
         AND ($2::timestamptz IS NULL OR (v.created_at, v.id) < ($2, $3)) \
         ORDER BY v.created_at DESC, v.id DESC LIMIT $4"
    )))
    .bind(id)
    .bind(after.as_ref().map(|a| a.0))
    .bind(after.as_ref().map(|a| a.1.as_str()).unwrap_or_default())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok((total, items))
}

/// One page of the projects `user_id` is a member of, as `(id, updated_at)`, most recently
/// updated first, after the project `(updated_at, id)` of `after` when given, and how many match
/// in all: those whose name contains `search` (when given; case-insensitive, its wildcards not
/// escaped) and, unless `own` (the viewer is `user_id`), that are not private or have `viewer` as
/// a member too.
pub async fn user_streams_page(
    pool: &PgPool,
    user_id: &str,
    search: Option<&str>,
    own: bool,
    viewer: &str,
    after: Option<(OffsetDateTime, String)>,
    limit: i64,
) -> Result<(i64, Vec<(String, OffsetDateTime)>), sqlx::Error> {
    let filter = "FROM projects p JOIN project_members m ON m.project_id = p.id AND m.user_id = $1 \
         WHERE ($2::text IS NULL OR p.name ILIKE '%' || $2 || '%') \
         AND ($5 OR p.visibility <> 'PRIVATE' \
              OR EXISTS (SELECT 1 FROM project_members o \
                         WHERE o.project_id = p.id AND o.user_id = $6))";
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) {filter} AND $3::timestamptz IS NULL AND $4::text IS NOT NULL"
    )))
    .bind(user_id)
    .bind(search)
    .bind(None::<OffsetDateTime>)
    .bind("")
    .bind(own)
    .bind(viewer)
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT p.id, p.updated_at {filter} \
         AND ($3::timestamptz IS NULL OR (p.updated_at, p.id) < ($3, $4)) \
         ORDER BY p.updated_at DESC, p.id DESC LIMIT $7"
    )))
    .bind(user_id)
    .bind(search)
    .bind(after.as_ref().map(|a| a.0))
    .bind(after.as_ref().map(|a| a.1.as_str()).unwrap_or_default())
    .bind(own)
    .bind(viewer)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok((total, rows))
}

/// Whose activity a listing covers.
#[derive(Clone, Copy, Debug)]
pub enum ActivityOf<'a> {
    /// A stream's (project's).
    Stream(&'a str),
    /// One resource's, e.g. a branch's or a commit's.
    Resource(&'a str),
    /// A user's, in the streams the viewer may read.
    User(&'a str),
}

/// Which activity entries to list.
#[derive(Clone, Copy, Debug)]
pub struct ActivityFilter<'a> {
    /// Whose.
    pub of: ActivityOf<'a>,
    /// Only of this action type, e.g. `commit_create`.
    pub action_type: Option<&'a str>,
    /// Only later than this.
    pub after: Option<OffsetDateTime>,
    /// Only earlier than this.
    pub before: Option<OffsetDateTime>,
    /// The user looking (empty when signed out): a user's feed shows only streams that are not
    /// private or that the viewer is a member of.
    pub viewer: &'a str,
    /// Whether the viewer is a server admin, to whom a user's feed shows every stream.
    pub viewer_is_admin: bool,
}

/// An activity entry (the original's `stream_activity`).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ActivityRow {
    /// Id.
    pub id: String,
    /// What happened, e.g. `commit_create`.
    pub action_type: String,
    /// What the event recorded.
    pub info_value: serde_json::Value,
    /// Who did it.
    pub user_id: Option<String>,
    /// The stream (project).
    pub stream_id: String,
    /// What it happened to.
    pub resource_id: String,
    /// The kind of that, e.g. `commit`.
    pub resource_type: String,
    /// When.
    pub time: OffsetDateTime,
    /// A summary.
    pub message: String,
}

/// One page of the activity matching `filter`, newest first, earlier than `cursor` when given,
/// and how many entries match in all (whatever the cursor).
pub async fn activity_page(
    pool: &PgPool,
    filter: ActivityFilter<'_>,
    cursor: Option<OffsetDateTime>,
    limit: i64,
) -> Result<(i64, Vec<ActivityRow>), sqlx::Error> {
    let (column, key) = match filter.of {
        ActivityOf::Stream(id) => ("stream_id", id),
        ActivityOf::Resource(id) => ("resource_id", id),
        ActivityOf::User(id) => ("user_id", id),
    };
    // A user's feed shows only streams the viewer may read.
    let visible = match filter.of {
        ActivityOf::User(_) => {
            " AND (stream_id IN (SELECT id FROM projects WHERE visibility <> 'PRIVATE') \
               OR stream_id IN (SELECT project_id FROM project_members WHERE user_id = $7) \
               OR $8)"
        }
        _ => "",
    };
    let matching = format!(
        "FROM activity WHERE {column} = $1 AND ($2::text IS NULL OR action_type = $2) \
         AND ($3::timestamptz IS NULL OR time > $3) AND ($4::timestamptz IS NULL OR time < $4) \
         AND ($5::timestamptz IS NULL OR time < $5){visible}"
    );
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) {matching} AND $6::bigint IS NOT NULL"
    )))
    .bind(key)
    .bind(filter.action_type)
    .bind(filter.after)
    .bind(filter.before)
    .bind(None::<OffsetDateTime>)
    .bind(limit)
    .bind(filter.viewer)
    .bind(filter.viewer_is_admin)
    .fetch_one(pool)
    .await?;
    let items = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, action_type, info AS info_value, user_id, stream_id, resource_id, \
         resource_type, \
         time, message {matching} ORDER BY time DESC, id DESC LIMIT $6"
    )))
    .bind(key)
    .bind(filter.action_type)
    .bind(filter.after)
    .bind(filter.before)
    .bind(cursor)
    .bind(limit)
    .bind(filter.viewer)
    .bind(filter.viewer_is_admin)
    .fetch_all(pool)
    .await?;
    Ok((total, items))
}

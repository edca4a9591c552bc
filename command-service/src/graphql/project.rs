//! `project(id)` and what hangs off it, read from the `speckle` read model.

use async_graphql::{ComplexObject, Context, Enum, InputObject, SimpleObject};
use domain::policy::{self, Principal, ProjectAccess, ProjectRole, Visibility, can_read_project};
use sqlx::PgPool;
use time::OffsetDateTime;

use async_graphql::dataloader::DataLoader;

use projections::speckle::query::{self, VersionsOf};

use super::errors::{ErrorCode, denied, gql_error};
use super::loaders::{FirstPage, ModelVersionsLoader, Prefetched, UserLoader, first_page_limits};
use super::services::{self, pool};
use crate::error::{ApiResult, AppError};

/// Project visibility on the wire.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub enum ProjectVisibility {
    /// Members only.
    Private,
    /// Anyone with the link.
    Unlisted,
    /// Anyone.
    Public,
    /// Members of the project's workspace (workspaces are not enabled here: never stored).
    Workspace,
}

/// The policy facts of a project row: its stored visibility and the caller's stored role. A
/// stored value this build does not know reads as the most restrictive (private, no role).
pub(crate) fn access_of(visibility: &str, role: Option<&str>) -> ProjectAccess {
    ProjectAccess {
        visibility: visibility.parse().unwrap_or(Visibility::Private),
        role_of_principal: role.and_then(|r| r.parse().ok()),
    }
}

/// Where a version's preview stands.
#[derive(async_graphql::Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub enum PreviewState {
    /// Waiting for a worker.
    Queued,
    /// A worker is rendering it (or retrying).
    Rendering,
    /// Its images are served.
    Done,
    /// The model has nothing to draw; the empty-model image is served.
    Empty,
    /// Every attempt failed; `error` says why.
    Failed,
}

/// A version's preview rendering.
#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct VersionPreview {
    /// Where it stands.
    status: PreviewState,
    /// Attempts so far.
    attempts: i32,
    /// Why the last attempt failed.
    error: Option<String>,
    /// How long the stored render took.
    render_duration_ms: Option<i32>,
    /// Last change.
    updated_at: Option<OffsetDateTime>,
}

/// A project.
#[derive(SimpleObject, sqlx::FromRow, Clone)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct Project {
    #[graphql(skip)]
    pub(crate) id: String,
    name: String,
    description: Option<String>,
    #[graphql(skip)]
    visibility: String,
    allow_public_comments: bool,
    /// The caller's role, e.g. `stream:owner`.
    // Filled where the query joins the membership (`load`); other reads leave it empty.
    #[sqlx(default)]
    role: Option<String>,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) updated_at: OffsetDateTime,
}

/// A user as others see them.
#[derive(SimpleObject, sqlx::FromRow, Clone)]
#[graphql(complex)]
pub struct LimitedUser {
    #[graphql(skip)]
    pub(crate) id: String,
    name: String,
    bio: Option<String>,
    company: Option<String>,
    avatar: Option<String>,
    verified: bool,
    role: String,
}

#[ComplexObject]
impl LimitedUser {
    /// Its id.
    #[graphql(name = "id")]
    async fn wire_id(&self) -> async_graphql::ID {
        async_graphql::ID(self.id.clone())
    }
}

/// A member and their role.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ProjectCollaborator {
    #[graphql(skip)]
    id: String,
    role: String,
    user: LimitedUser,
}

#[ComplexObject]
impl ProjectCollaborator {
    /// Its id.
    #[graphql(name = "id")]
    async fn wire_id(&self) -> async_graphql::ID {
        async_graphql::ID(self.id.clone())
    }
}

/// A model.
#[derive(SimpleObject, sqlx::FromRow)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct Model {
    #[graphql(skip)]
    id: String,
    name: String,
    description: Option<String>,
    #[graphql(skip)]
    author_id: String,
    #[graphql(skip)]
    project_id: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

/// A version.
#[derive(SimpleObject, sqlx::FromRow, Clone)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct Version {
    #[graphql(skip)]
    id: String,
    referenced_object: String,
    message: Option<String>,
    source_application: Option<String>,
    total_children_count: Option<i32>,
    parents: Option<Vec<String>>,
    #[graphql(skip)]
    author_id: String,
    #[graphql(skip)]
    model_id: String,
    #[graphql(skip)]
    project_id: String,
    created_at: OffsetDateTime,
}

/// Filters of `Model.versions`.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelVersionsFilter {
    /// Versions to put first (or alone, with `priorityIdsOnly`).
    priority_ids: Option<Vec<String>>,
    /// Only the priority versions.
    priority_ids_only: Option<bool>,
}

/// Filters of `Project.models`, as the original's.
#[derive(InputObject, Default)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectModelsFilter {
    /// Part of the model's full name, case-insensitive.
    search: Option<String>,
    /// Only models with a version sent from one of these applications (substring match).
    source_apps: Option<Vec<String>>,
    /// Only models with a version by one of these users.
    contributors: Option<Vec<String>>,
    /// Only models that have versions.
    only_with_versions: Option<bool>,
    /// Only these models (an empty list matches none).
    ids: Option<Vec<String>>,
    /// Not these models.
    exclude_ids: Option<Vec<String>>,
}

impl From<ProjectModelsFilter> for query::ModelsFilter {
    fn from(f: ProjectModelsFilter) -> Self {
        Self {
            search: f.search,
            source_apps: f.source_apps,
            contributors: f.contributors,
            only_with_versions: f.only_with_versions.unwrap_or(false), // unset: every model
            ids: f.ids,
            exclude_ids: f.exclude_ids,
        }
    }
}

impl From<query::ModelRow> for Model {
    fn from(r: query::ModelRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            author_id: r.author_id,
            project_id: r.project_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl From<query::ProjectRow> for Project {
    fn from(r: query::ProjectRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            visibility: r.visibility,
            allow_public_comments: r.allow_public_comments,
            role: r.role,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl From<query::LimitedUserRow> for LimitedUser {
    fn from(r: query::LimitedUserRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            bio: r.bio,
            company: r.company,
            avatar: r.avatar,
            verified: r.verified,
            role: r.role,
        }
    }
}

impl From<query::VersionRow> for Version {
    fn from(r: query::VersionRow) -> Self {
        Self {
            id: r.id,
            referenced_object: r.referenced_object,
            message: r.message,
            source_application: r.source_application,
            total_children_count: r.total_children_count,
            parents: r.parents,
            author_id: r.author_id,
            model_id: r.model_id,
            project_id: r.project_id,
            created_at: r.created_at,
        }
    }
}

/// Most models one page of `Project.models` may hold (the original's default maximum).
const MAX_MODELS_PAGE: i64 = 500;

fn models_page_limit(limit: Option<i32>) -> ApiResult<i64> {
    let limit = i64::from(limit.unwrap_or(25)); // the original's default page size
    if !(0..=MAX_MODELS_PAGE).contains(&limit) {
        return Err(gql_error(
            ErrorCode::BadRequest,
            format!("limit must be between 0 and {MAX_MODELS_PAGE}"),
        ));
    }
    Ok(limit)
}

/// A pending invite as the project's team sees it.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct PendingStreamCollaborator {
    id: String,
    invite_id: String,
    project_id: String,
    project_name: String,
    title: String,
    role: String,
    token: Option<String>,
    user: Option<LimitedUser>,
    invited_by: Option<LimitedUser>,
}

/// The outcome of one permission check, as clients read it: `OK` when authorized, else the
/// original's policy code (e.g. `ProjectNoAccess`) and a message.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct PermissionCheckResult {
    authorized: bool,
    code: String,
    message: String,
    /// Details of some refusals; none of strata's checks has any.
    payload: Option<async_graphql::Json<serde_json::Value>>,
}

#[ComplexObject]
impl PermissionCheckResult {
    /// The message when refused, null when authorized.
    async fn error_message(&self) -> Option<&str> {
        (!self.authorized).then_some(self.message.as_str())
    }
}

impl PermissionCheckResult {
    /// A refusal with the original's `code`.
    pub(crate) fn refused(code: &str, message: impl Into<String>) -> Self {
        Self {
            authorized: false,
            code: code.to_owned(),
            message: message.into(),
            payload: None,
        }
    }
}

impl From<policy::Decision> for PermissionCheckResult {
    fn from(d: policy::Decision) -> Self {
        match d {
            Ok(()) => Self {
                authorized: true,
                code: "OK".into(),
                message: "OK".into(),
                payload: None,
            },
            Err(denied) => Self::refused(denied.reason.as_str(), denied.message),
        }
    }
}

/// What the caller may do with a model.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelPermissionChecks {
    can_update: PermissionCheckResult,
    can_delete: PermissionCheckResult,
    can_create_version: PermissionCheckResult,
    can_create_ingestion: PermissionCheckResult,
}

/// What the caller may do with a version.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct VersionPermissionChecks {
    can_update: PermissionCheckResult,
    can_receive: PermissionCheckResult,
}

/// What the caller may do with a project.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectPermissionChecks {
    can_create_model: PermissionCheckResult,
    can_read: PermissionCheckResult,
    can_update: PermissionCheckResult,
    can_delete: PermissionCheckResult,
    can_publish: PermissionCheckResult,
    can_load: PermissionCheckResult,
    can_invite: PermissionCheckResult,
    can_read_webhooks: PermissionCheckResult,
    can_leave: PermissionCheckResult,
}

impl PendingStreamCollaborator {
    /// An invite as the original's `projectInvite` answers it: titled with the invited user's
    /// name or address, `token` only for its addressee.
    pub(crate) async fn from_invite(
        row: query::InviteRow,
        token: Option<String>,
        ctx: &Context<'_>,
    ) -> ApiResult<Self> {
        let user = match &row.target_user_id {
            Some(id) => load_user(ctx, id).await?,
            None => None,
        };
        let title = match (&row.target_user_id, &row.target_email) {
            (Some(id), _) => user
                .as_ref()
                .map_or_else(|| format!("#{id}"), |u| u.name.clone()),
            (None, Some(email)) => email.clone(),
            (None, None) => String::new(),
        };
        Ok(Self {
            id: format!("invite:{}", row.id),
            invite_id: row.id,
            project_id: row.project_id,
            project_name: row.project_name,
            title,
            role: row.role,
            token,
            user,
            invited_by: load_user(ctx, &row.invited_by).await?,
        })
    }

    /// An invite as its addressee sees it, token included.
    pub(crate) async fn for_invitee(
        id: String,
        project_id: String,
        project_name: String,
        role: String,
        token: String,
        invited_by: String,
        ctx: &Context<'_>,
    ) -> ApiResult<Self> {
        Ok(Self {
            invite_id: id.clone(),
            id,
            project_id,
            title: project_name.clone(),
            project_name,
            role,
            token: Some(token),
            user: None,
            invited_by: load_user(ctx, &invited_by).await?,
        })
    }
}

/// A page of models.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelCollection {
    total_count: i64,
    cursor: Option<String>,
    items: Vec<Model>,
}

/// A page of versions.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct VersionCollection {
    total_count: i64,
    cursor: Option<String>,
    items: Vec<Version>,
}

/// Most items one page may hold.
const MAX_PAGE: i64 = 100;

pub(crate) fn page_limit(limit: Option<i32>) -> ApiResult<i64> {
    let limit = i64::from(limit.unwrap_or(25)); // the original's default page size
    if !(0..=MAX_PAGE).contains(&limit) {
        return Err(gql_error(
            ErrorCode::BadRequest,
            format!("limit must be between 0 and {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// Cursors are opaque to clients: `<rfc3339 time>|<id>` of the last item, hex-encoded.
pub(crate) fn encode_cursor(at: OffsetDateTime, id: &str) -> String {
    let raw = format!(
        "{}|{id}",
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The cursor of the next page: the last item's, when the page is full; `None` ends paging.
pub(crate) fn next_cursor<T>(
    items: &[T],
    limit: i64,
    key: impl Fn(&T) -> (OffsetDateTime, &String),
) -> Option<String> {
    if items.len() as i64 != limit {
        return None;
    }
    items.last().map(|item| {
        let (at, id) = key(item);
        encode_cursor(at, id)
    })
}

pub(crate) fn decode_cursor(cursor: &str) -> ApiResult<(OffsetDateTime, String)> {
    let bad = || gql_error(ErrorCode::BadRequest, "invalid cursor");
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|i| {
            cursor
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    let raw = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = raw.split_once('|').ok_or_else(bad)?;
    let at = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad())?;
    Ok((at, id.to_owned()))
}

/// Loads a project the caller may read.
pub async fn load(ctx: &Context<'_>, id: &str) -> ApiResult<Project> {
    let principal = ctx.data::<Principal>()?;
    let pool = pool(ctx)?;
    // One round trip: the project and the caller's membership together.
    let project = query::project_with_role(pool, id, principal.user_id.as_deref()).await?;
    let Some(project) = project else {
        return Err(denied(&domain::policy::Denied::project_not_found()));
    };
    readable(principal, project)
}

/// A project read with the caller's role on it ([`query::project_with_role`]), when the caller
/// may read it.
pub fn readable(principal: &Principal, row: query::ProjectRow) -> ApiResult<Project> {
    let project = Project::from(row);
    can_read_project(principal, &project.access())?;
    Ok(project)
}

impl Project {
    /// A project from a live event's row snapshot (`to_jsonb` of a `projects` row), as seen
    /// by a caller with `role`.
    pub(crate) fn from_snapshot(
        row: &serde_json::Value,
        role: Option<ProjectRole>,
    ) -> Option<Self> {
        let text = |k: &str| row.get(k).and_then(serde_json::Value::as_str);
        let at = |k: &str| {
            text(k).and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
        };
        Some(Self {
            id: text("id")?.to_owned(),
            name: text("name")?.to_owned(),
            description: text("description").map(str::to_owned),
            visibility: text("visibility")?.to_owned(),
            allow_public_comments: row.get("allow_public_comments")?.as_bool()?,
            role: role.map(|r| r.as_str().to_owned()),
            created_at: at("created_at")?,
            updated_at: at("updated_at")?,
        })
    }

    /// The policy facts for the caller who loaded it.
    pub(crate) fn access(&self) -> ProjectAccess {
        access_of(&self.visibility, self.role.as_deref())
    }

    /// Its id.
    pub(crate) fn project_id(&self) -> &str {
        &self.id
    }
}

#[ComplexObject]
impl Project {
    /// Its id.
    #[graphql(name = "id")]
    async fn wire_id(&self) -> async_graphql::ID {
        async_graphql::ID(self.id.clone())
    }

    /// Every change to the project from its event log, oldest first, paged by log position
    /// (owners and server admins; strata's addition for auditors).
    #[allow(clippy::too_many_arguments)]
    async fn history(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<i32>,
        actor: Option<String>,
        types: Option<Vec<String>>,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
    ) -> ApiResult<super::history::ProjectHistoryCollection> {
        let filter = crate::audit::HistoryFilter {
            since,
            until,
            actor,
            types: types.unwrap_or_default(),
        };
        super::history::history(ctx, self, cursor, limit, filter).await
    }

    /// The project as it was at `time` or after log `position`, folded from its events alone
    /// (owners and server admins); null before it existed.
    async fn as_of(
        &self,
        ctx: &Context<'_>,
        time: Option<OffsetDateTime>,
        position: Option<String>,
    ) -> ApiResult<Option<super::history::ProjectAsOf>> {
        super::history::as_of(ctx, self, time, position).await
    }

    /// Its webhooks (owners only), or the one with `id`.
    async fn webhooks(
        &self,
        ctx: &Context<'_>,
        id: Option<String>,
    ) -> ApiResult<super::webhooks::WebhookCollection> {
        super::webhooks::list(ctx, self, id.as_deref()).await
    }

    /// `PRIVATE`, `UNLISTED` or `PUBLIC`.
    async fn visibility(&self) -> ProjectVisibility {
        match self.access().visibility {
            Visibility::Public => ProjectVisibility::Public,
            Visibility::Unlisted => ProjectVisibility::Unlisted,
            Visibility::Private => ProjectVisibility::Private,
        }
    }

    /// The applications its versions were sent from.
    async fn source_apps(&self, ctx: &Context<'_>) -> ApiResult<Vec<String>> {
        query::project_source_apps(pool(ctx)?, &self.id)
            .await
            .map_err(AppError::internal)
    }

    /// What the caller may do here, decided by the same policy the mutations use.
    async fn permissions(&self, ctx: &Context<'_>) -> ApiResult<ProjectPermissionChecks> {
        let p = ctx.data::<Principal>()?;
        let a = self.access();
        Ok(ProjectPermissionChecks {
            can_create_model: policy::can_create_model(p, &a).into(),
            can_read: policy::can_read_project(p, &a).into(),
            can_update: policy::can_update_project(p, &a).into(),
            can_delete: policy::can_delete_project(p, &a).into(),
            can_publish: policy::can_create_version(p, &a).into(),
            can_load: policy::can_read_project(p, &a).into(),
            can_invite: policy::can_invite(p, &a).into(),
            can_read_webhooks: policy::can_manage_webhooks(p, &a).into(),
            can_leave: policy::can_leave_project(p, &a).into(),
        })
    }

    /// One object of the project, or null.
    async fn object(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> ApiResult<Option<super::object::SpeckleObject>> {
        super::object::load(ctx, &self.id, &id).await
    }

    /// Workspaces are not offered: always null.
    async fn workspace_id(&self) -> Option<String> {
        None
    }

    /// Pending invites.
    async fn invited_team(&self, ctx: &Context<'_>) -> ApiResult<Vec<PendingStreamCollaborator>> {
        let rows = query::project_pending_invites(pool(ctx)?, &self.id).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let user = match row.target_user_id {
                Some(t) => load_user(ctx, &t).await?,
                None => None,
            };
            out.push(PendingStreamCollaborator {
                invite_id: row.id.clone(),
                id: row.id,
                project_id: self.id.clone(),
                project_name: self.name.clone(),
                title: self.name.clone(),
                role: row.role,
                token: None,
                user,
                invited_by: load_user(ctx, &row.invited_by).await?,
            });
        }
        Ok(out)
    }

    /// Members, owners first.
    async fn team(&self, ctx: &Context<'_>) -> ApiResult<Vec<ProjectCollaborator>> {
        let rows = query::project_team(pool(ctx)?, &self.id).await?;
        Ok(rows
            .into_iter()
            .map(|r| ProjectCollaborator {
                id: r.user.id.clone(),
                role: r.member_role,
                user: r.user.into(),
            })
            .collect())
    }

    /// Models, most recently updated first, optionally filtered (the original's
    /// `ProjectModelsFilter`; `globals` and an empty `main` are never listed).
    async fn models(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 25)] limit: Option<i32>,
        cursor: Option<String>,
        filter: Option<ProjectModelsFilter>,
    ) -> ApiResult<ModelCollection> {
        let limit = models_page_limit(limit)?;
        // The unfiltered first page is what a list of projects asks of each: the list
        // fetched it for all its projects at once.
        let first = if cursor.is_none() && filter.is_none() {
            prefetched(ctx).and_then(|p| p.take_models(&self.id, limit))
        } else {
            None
        };
        let (total_count, items) = match first {
            Some(p) => {
                let items: Vec<Model> = p.items.iter().cloned().map(Model::from).collect();
                (p.total_count, items)
            }
            None => {
                let after = cursor.as_deref().map(decode_cursor).transpose()?;
                let filter = filter.map(Into::into).unwrap_or_default();
                let page = query::models_page(pool(ctx)?, &self.id, &filter, after, limit).await?;
                let items: Vec<Model> = page.items.into_iter().map(Model::from).collect();
                (page.total_count, items)
            }
        };
        prefetch_versions(ctx, &items).await?;
        let cursor = next_cursor(&items, limit, |m| (m.updated_at, &m.id));
        Ok(ModelCollection {
            total_count,
            cursor,
            items,
        })
    }

    /// One model: `NOT_FOUND_ERROR` when it is not in this project.
    async fn model(&self, ctx: &Context<'_>, id: String) -> ApiResult<Model> {
        query::model_in_project(pool(ctx)?, &self.id, &id)
            .await?
            .map(Model::from)
            .ok_or_else(|| gql_error(ErrorCode::NotFound, "Model not found"))
    }

    /// One model by its full name, case-insensitively.
    async fn model_by_name(&self, ctx: &Context<'_>, name: String) -> ApiResult<Model> {
        query::model_by_name(pool(ctx)?, &self.id, &name)
            .await?
            .map(Model::from)
            .ok_or_else(|| gql_error(ErrorCode::NotFound, "Model not found"))
    }

    /// Versions of every model, newest first.
    async fn versions(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        cursor: Option<String>,
    ) -> ApiResult<VersionCollection> {
        versions_page(pool(ctx)?, VersionsOf::Project, &self.id, limit, cursor).await
    }

    /// File imports into this project still queued or processing.
    async fn pending_imported_models(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 25)] limit: Option<i32>,
    ) -> ApiResult<Vec<super::files::FileUpload>> {
        super::files::pending(ctx, &self.id, None, limit).await
    }

    /// One model ingestion: `NOT_FOUND_ERROR` when it is not in this project.
    async fn ingestion(
        &self,
        ctx: &Context<'_>,
        id: async_graphql::ID,
    ) -> ApiResult<super::ingestion::ModelIngestion> {
        super::ingestion::by_id(ctx, &self.id, &id).await
    }

    /// One version.
    async fn version(&self, ctx: &Context<'_>, id: String) -> ApiResult<Version> {
        query::version_in_project(pool(ctx)?, &self.id, &id)
            .await?
            .map(Version::from)
            .ok_or_else(|| gql_error(ErrorCode::NotFound, "Version not found"))
    }
}

/// The request's [`Prefetched`] pages, when it has them.
fn prefetched<'c>(ctx: &'c Context<'_>) -> Option<&'c Prefetched> {
    ctx.data::<std::sync::Arc<Prefetched>>()
        .ok()
        .map(std::sync::Arc::as_ref)
}

/// Fetches, in one query, the first versions every model of a list will be asked for, when
/// the document asks each for a plain first page of its versions.
async fn prefetch_versions(ctx: &Context<'_>, models: &[Model]) -> ApiResult<()> {
    let Some(prefetched) = prefetched(ctx).filter(|_| models.len() > 1) else {
        return Ok(());
    };
    let limits = first_page_limits(ctx.look_ahead().field("items").field("versions"), |l| {
        page_limit(l).ok()
    });
    let ids: Vec<String> = models.iter().map(|m| m.id.clone()).collect();
    prefetched
        .versions_of(pool(ctx)?, &ids, &limits)
        .await
        .map_err(AppError::internal)
}

/// The same for the first models of a list of projects.
pub(crate) async fn prefetch_models(ctx: &Context<'_>, projects: &[Project]) -> ApiResult<()> {
    let Some(prefetched) = prefetched(ctx).filter(|_| projects.len() > 1) else {
        return Ok(());
    };
    let limits = first_page_limits(ctx.look_ahead().field("items").field("models"), |l| {
        models_page_limit(l).ok()
    });
    let ids: Vec<String> = projects.iter().map(|p| p.id.clone()).collect();
    prefetched
        .models_of(pool(ctx)?, &ids, &limits)
        .await
        .map_err(AppError::internal)
}

/// A model's versions with `priority` first (on the first page), then the rest newest first;
/// later pages hold only the rest.
async fn prioritised_versions(
    pool: &PgPool,
    model_id: &str,
    priority: &[String],
    limit: Option<i32>,
    cursor: Option<String>,
) -> ApiResult<VersionCollection> {
    let limit = page_limit(limit)?;
    let total_count = query::versions_count(pool, VersionsOf::Model, model_id).await?;
    let mut items: Vec<Version> = Vec::new();
    if cursor.is_none() {
        items = query::versions_by_ids(pool, model_id, priority, limit)
            .await?
            .into_iter()
            .map(Version::from)
            .collect();
    }
    let after = cursor.as_deref().map(decode_cursor).transpose()?;
    let room = limit - items.len() as i64;
    let rest: Vec<Version> = query::versions_excluding(pool, model_id, priority, after, room)
        .await?
        .into_iter()
        .map(Version::from)
        .collect();
    let cursor = if room == 0 {
        // The priority versions filled the page: the next one starts at the newest of the rest.
        (total_count > items.len() as i64)
            .then(|| encode_cursor(time::macros::datetime!(9999-12-31 0:00 UTC), ""))
    } else {
        next_cursor(&rest, room, |v| (v.created_at, &v.id))
    };
    items.extend(rest);
    Ok(VersionCollection {
        total_count,
        cursor,
        items,
    })
}

async fn versions_page(
    pool: &PgPool,
    of: VersionsOf,
    owner_id: &str,
    limit: Option<i32>,
    cursor: Option<String>,
) -> ApiResult<VersionCollection> {
    let limit = page_limit(limit)?;
    let total_count = query::versions_count(pool, of, owner_id).await?;
    let after = cursor.as_deref().map(decode_cursor).transpose()?;
    let items: Vec<Version> = query::versions_page(pool, of, owner_id, after, limit)
        .await?
        .into_iter()
        .map(Version::from)
        .collect();
    let cursor = next_cursor(&items, limit, |v| (v.created_at, &v.id));
    Ok(VersionCollection {
        total_count,
        cursor,
        items,
    })
}

pub(crate) async fn load_user(ctx: &Context<'_>, id: &str) -> ApiResult<Option<LimitedUser>> {
    match ctx.data::<std::sync::Arc<DataLoader<UserLoader>>>() {
        Ok(loader) => loader
            .load_one(id.to_owned())
            .await
            .map_err(AppError::internal),
        Err(_) => limited_user(pool(ctx)?, id).await,
    }
}

async fn limited_user(pool: &PgPool, id: &str) -> ApiResult<Option<LimitedUser>> {
    Ok(query::limited_user(pool, id).await?.map(LimitedUser::from))
}

#[ComplexObject]
impl Model {
    /// Its id.
    #[graphql(name = "id")]
    async fn wire_id(&self) -> async_graphql::ID {
        async_graphql::ID(self.id.clone())
    }

    /// The last path segment of the name.
    async fn display_name(&self) -> String {
        domain::ModelName::display_name_of(&self.name).to_owned()
    }

    /// Who created it.
    async fn author(&self, ctx: &Context<'_>) -> ApiResult<Option<LimitedUser>> {
        load_user(ctx, &self.author_id).await
    }

    /// The preview of its latest version; null before any version.
    async fn preview_url(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let latest = query::latest_version_id(pool(ctx)?, &self.id).await?;
        let origin = services::settings(ctx)?.origin();
        Ok(latest.map(|v| format!("{origin}/preview/{}/commits/{v}", self.project_id)))
    }

    /// Its versions, newest first. With `filter.priorityIdsOnly`, only the listed versions.
    async fn versions(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        cursor: Option<String>,
        filter: Option<ModelVersionsFilter>,
    ) -> ApiResult<VersionCollection> {
        if let Some(ModelVersionsFilter {
            priority_ids,
            priority_ids_only: Some(true),
        }) = filter
        {
            let ids = priority_ids.unwrap_or_default();
            let limit = page_limit(limit)?;
            let items: Vec<Version> = query::versions_by_ids(pool(ctx)?, &self.id, &ids, limit)
                .await?
                .into_iter()
                .map(Version::from)
                .collect();
            return Ok(VersionCollection {
                total_count: items.len() as i64,
                cursor: None,
                items,
            });
        }
        if let Some(priority) = filter
            .and_then(|f| f.priority_ids)
            .filter(|ids| !ids.is_empty())
        {
            return prioritised_versions(pool(ctx)?, &self.id, &priority, limit, cursor).await;
        }
        if cursor.is_none()
            && let Ok(loader) = ctx.data::<std::sync::Arc<DataLoader<ModelVersionsLoader>>>()
        {
            let limit = page_limit(limit)?;
            let page = match prefetched(ctx).and_then(|p| p.take_versions(&self.id, limit)) {
                Some(page) => Some(page),
                None => loader.load_one((self.id.clone(), limit)).await?,
            };
            // The loader answers every key; none reads as an empty page.
            let page = page.unwrap_or(FirstPage {
                total_count: 0,
                items: Vec::new(),
            });
            let items: Vec<Version> = page.items.iter().map(|v| v.as_ref().clone()).collect();
            let cursor = next_cursor(&items, limit, |v| (v.created_at, &v.id))
                .filter(|_| page.total_count > limit);
            return Ok(VersionCollection {
                total_count: page.total_count,
                cursor,
                items,
            });
        }
        versions_page(pool(ctx)?, VersionsOf::Model, &self.id, limit, cursor).await
    }

    /// The project it belongs to.
    async fn project_id(&self) -> &str {
        &self.project_id
    }

    /// What the caller may do with this model, decided by the policy the mutations use.
    async fn permissions(&self, ctx: &Context<'_>) -> ApiResult<ModelPermissionChecks> {
        let p = ctx.data::<Principal>()?;
        let a = load(ctx, &self.project_id).await?.access();
        let can_delete = match policy::can_delete_model(p, &a, Some(&self.author_id)) {
            Ok(()) if domain::ModelName::RESERVED.contains(&self.name.as_str()) => {
                PermissionCheckResult::refused(
                    "ReservedModelNotDeletable",
                    domain::DomainError::ReservedModel {
                        name: self.name.clone(),
                    }
                    .to_string(),
                )
            }
            decision => decision.into(),
        };
        Ok(ModelPermissionChecks {
            can_update: policy::can_update_model(p, &a).into(),
            can_delete,
            can_create_version: policy::can_create_version(p, &a).into(),
            can_create_ingestion: policy::can_ingest(p, &a).into(),
        })
    }

    /// Every file imported into this model, newest first.
    async fn uploads(
        &self,
        ctx: &Context<'_>,
        input: Option<super::files::GetModelUploadsInput>,
    ) -> ApiResult<super::files::FileUploadCollection> {
        super::files::model_uploads(ctx, &self.project_id, &self.id, input).await
    }

    /// Imports into this model still queued or processing.
    async fn pending_imported_versions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 25)] limit: Option<i32>,
    ) -> ApiResult<Vec<super::files::FileUpload>> {
        super::files::pending(ctx, &self.project_id, Some(&self.id), limit).await
    }
}

impl Version {
    /// The model it belongs to.
    pub(crate) fn model_id(&self) -> &str {
        &self.model_id
    }
}

#[ComplexObject]
impl Version {
    /// Its id.
    #[graphql(name = "id")]
    async fn wire_id(&self) -> async_graphql::ID {
        async_graphql::ID(self.id.clone())
    }

    /// Where its preview image is served.
    async fn preview_url(&self, ctx: &Context<'_>) -> ApiResult<String> {
        Ok(format!(
            "{}/preview/{}/commits/{}",
            services::settings(ctx)?.origin(),
            self.project_id,
            self.id
        ))
    }

    /// Where rendering its preview stands (strata's addition: the original shows only the
    /// image). `QUEUED` until a worker takes it up.
    async fn preview(&self, ctx: &Context<'_>) -> ApiResult<VersionPreview> {
        let record =
            schema::previews::get(pool(ctx)?, &self.project_id, &self.referenced_object).await?;
        Ok(match record {
            None => VersionPreview {
                status: PreviewState::Queued,
                attempts: 0,
                error: None,
                render_duration_ms: None,
                updated_at: None,
            },
            Some(r) => VersionPreview {
                status: match r.status {
                    schema::previews::PreviewStatus::Rendering => PreviewState::Rendering,
                    schema::previews::PreviewStatus::Done => PreviewState::Done,
                    schema::previews::PreviewStatus::Empty => PreviewState::Empty,
                    schema::previews::PreviewStatus::Failed => PreviewState::Failed,
                },
                attempts: r.attempts,
                error: r.error,
                render_duration_ms: r.duration_ms,
                updated_at: Some(r.updated_at),
            },
        })
    }

    /// Who sent it.
    async fn author_user(&self, ctx: &Context<'_>) -> ApiResult<Option<LimitedUser>> {
        load_user(ctx, &self.author_id).await
    }

    /// The model it is in.
    async fn model(&self, ctx: &Context<'_>) -> ApiResult<Model> {
        query::model_by_id(pool(ctx)?, &self.model_id)
            .await?
            .map(Model::from)
            .ok_or_else(|| gql_error(ErrorCode::NotFound, "Model not found"))
    }

    /// What the caller may do with this version, decided by the policy the mutations use
    /// (`canReceive` is `versionMutations.markReceived`).
    async fn permissions(&self, ctx: &Context<'_>) -> ApiResult<VersionPermissionChecks> {
        let p = ctx.data::<Principal>()?;
        let a = load(ctx, &self.project_id).await?.access();
        Ok(VersionPermissionChecks {
            can_update: policy::can_update_version(p, &a, &self.author_id).into(),
            can_receive: policy::can_mark_received(p, &a).into(),
        })
    }
}

/// A model by id (the caller's right to read its project was checked by the mutation).
pub async fn model_by_id(ctx: &Context<'_>, id: &str) -> ApiResult<Model> {
    query::model_by_id(pool(ctx)?, id)
        .await?
        .map(Model::from)
        .ok_or_else(|| gql_error(ErrorCode::NotFound, "Model not found"))
}

/// A model by its project and name.
/// Model `id` of `project_id`, if it exists.
pub(crate) async fn model_in(
    ctx: &Context<'_>,
    project_id: &str,
    id: &str,
) -> ApiResult<Option<Model>> {
    Ok(query::model_in_project(pool(ctx)?, project_id, id)
        .await?
        .map(Model::from))
}

pub async fn model_by_name_in(ctx: &Context<'_>, project_id: &str, name: &str) -> ApiResult<Model> {
    query::model_by_name(pool(ctx)?, project_id, &domain::ModelName::tidy(name))
        .await?
        .map(Model::from)
        .ok_or_else(|| gql_error(ErrorCode::NotFound, "Model not found"))
}

/// A version by id.
pub async fn version_by_id(ctx: &Context<'_>, id: &str) -> ApiResult<Version> {
    query::version_by_id(pool(ctx)?, id)
        .await?
        .map(Version::from)
        .ok_or_else(|| gql_error(ErrorCode::NotFound, "Version not found"))
}

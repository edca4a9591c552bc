//! The legacy stream/branch/commit API, served from the same commands and read models as the
//! current one (a stream is a project, a branch a model, a commit a version), with the
//! original's names, shapes and defaults. A project made through either API is visible and
//! editable through the other; events do not record which API made them.

use async_graphql::{ComplexObject, Context, InputObject, Object, SimpleObject};
use domain::ProjectCommand;
use domain::policy::{self, Visibility};
use projections::speckle::query::{self, ActivityOf, VersionsOf};
use time::OffsetDateTime;

use super::errors::{ErrorCode, denied, gql_error};
use super::idempotency::new_id;
use super::mutations::{self as ops, metadata, rate_limited, run, signed_in};
use super::object::JsonObject;
use super::project::{self as read, decode_cursor, encode_cursor, page_limit};
use super::services::{self, pool};
use crate::commands::ProjectAggregate;
use crate::error::{ApiResult, AppError};

/// A stream (project).
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct Stream {
    id: String,
    name: String,
    description: Option<String>,
    is_public: bool,
    allow_public_comments: bool,
    /// The caller's role, e.g. `stream:owner`.
    role: Option<String>,
    /// How many users hold it among their favourites.
    favorites_count: i32,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

/// The stream without the caller's role, which `load` fills in.
impl From<query::StreamRow> for Stream {
    fn from(r: query::StreamRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            is_public: r.is_public,
            allow_public_comments: r.allow_public_comments,
            role: None,
            favorites_count: r.favorites_count,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A stream's member.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct StreamCollaborator {
    id: String,
    name: String,
    role: String,
    company: Option<String>,
    avatar: Option<String>,
    server_role: String,
}

impl From<query::StreamCollaboratorRow> for StreamCollaborator {
    fn from(r: query::StreamCollaboratorRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            role: r.role,
            company: r.company,
            avatar: r.avatar,
            server_role: r.server_role,
        }
    }
}

/// A page of streams.
#[derive(SimpleObject)]
pub struct UserStreamCollection {
    #[graphql(name = "totalCount")]
    total_count: i64,
    cursor: Option<String>,
    items: Vec<Stream>,
}

/// A branch (model).
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct Branch {
    id: String,
    name: String,
    description: Option<String>,
    #[graphql(skip)]
    author_id: String,
    created_at: OffsetDateTime,
}

impl From<query::BranchRow> for Branch {
    fn from(r: query::BranchRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            description: r.description,
            author_id: r.author_id,
            created_at: r.created_at,
        }
    }
}

/// A page of branches.
#[derive(SimpleObject)]
pub struct BranchCollection {
    #[graphql(name = "totalCount")]
    total_count: i64,
    cursor: Option<String>,
    items: Vec<Branch>,
}

/// A commit (version).
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct Commit {
    id: String,
    referenced_object: String,
    message: Option<String>,
    source_application: Option<String>,
    total_children_count: Option<i32>,
    parents: Option<Vec<String>>,
    branch_name: Option<String>,
    author_id: String,
    author_name: Option<String>,
    author_avatar: Option<String>,
    stream_id: String,
    stream_name: Option<String>,
    created_at: OffsetDateTime,
    #[graphql(skip)]
    model_id: String,
}

impl From<query::CommitRow> for Commit {
    fn from(r: query::CommitRow) -> Self {
        let v = r.version;
        Self {
            id: v.id,
            referenced_object: v.referenced_object,
            message: v.message,
            source_application: v.source_application,
            total_children_count: v.total_children_count,
            parents: v.parents,
            branch_name: r.branch_name,
            author_id: v.author_id,
            author_name: r.author_name,
            author_avatar: r.author_avatar,
            stream_id: v.project_id,
            stream_name: r.stream_name,
            created_at: v.created_at,
            model_id: v.model_id,
        }
    }
}

/// A page of commits.
#[derive(SimpleObject)]
pub struct CommitCollection {
    #[graphql(name = "totalCount")]
    total_count: i64,
    cursor: Option<String>,
    items: Vec<Commit>,
}

/// One activity entry (`stream_activity` in the original).
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct Activity {
    #[graphql(skip)]
    id: String,
    action_type: String,
    #[graphql(skip)]
    info_value: serde_json::Value,
    user_id: Option<String>,
    stream_id: String,
    resource_id: String,
    resource_type: String,
    time: OffsetDateTime,
    message: String,
}

impl From<query::ActivityRow> for Activity {
    fn from(r: query::ActivityRow) -> Self {
        Self {
            id: r.id,
            action_type: r.action_type,
            info_value: r.info_value,
            user_id: r.user_id,
            stream_id: r.stream_id,
            resource_id: r.resource_id,
            resource_type: r.resource_type,
            time: r.time,
            message: r.message,
        }
    }
}

/// A page of activity, newest first; `cursor` is the last item's time.
#[derive(SimpleObject)]
pub struct ActivityCollection {
    #[graphql(name = "totalCount")]
    total_count: i64,
    cursor: Option<OffsetDateTime>,
    items: Vec<Activity>,
}

#[ComplexObject]
impl Activity {
    /// Its id.
    #[graphql(name = "id")]
    async fn wire_id(&self) -> async_graphql::ID {
        async_graphql::ID(self.id.clone())
    }

    /// What the event recorded.
    async fn info(&self) -> JsonObject {
        JsonObject(self.info_value.clone())
    }
}

async fn activity(
    ctx: &Context<'_>,
    of: ActivityOf<'_>,
    action_type: Option<String>,
    after: Option<OffsetDateTime>,
    before: Option<OffsetDateTime>,
    cursor: Option<OffsetDateTime>,
    limit: Option<i32>,
) -> ApiResult<ActivityCollection> {
    let limit = page_limit(limit)?;
    let principal = ctx.data::<domain::Principal>()?;
    let filter = query::ActivityFilter {
        of,
        action_type: action_type.as_deref(),
        after,
        before,
        viewer: principal.user_id.as_deref().unwrap_or_default(),
        viewer_is_admin: principal.server_role == Some(domain::ServerRole::Admin),
    };
    let (total_count, rows) = query::activity_page(pool(ctx)?, filter, cursor, limit).await?;
    let items: Vec<Activity> = rows.into_iter().map(Activity::from).collect();
    let cursor = (items.len() as i64 == limit)
        .then(|| items.last().map(|a| a.time))
        .flatten();
    Ok(ActivityCollection {
        total_count,
        cursor,
        items,
    })
}

/// Loads a stream the caller may read (errors as `project(id)`).
pub async fn load(ctx: &Context<'_>, id: &str) -> ApiResult<Stream> {
    let project = read::load(ctx, id).await?;
    let mut stream: Stream = query::stream_by_id(pool(ctx)?, id)
        .await?
        .map(Stream::from)
        .ok_or_else(|| denied(&policy::Denied::project_not_found()))?;
    stream.role = project
        .access()
        .role_of_principal
        .map(|r| r.as_str().to_owned());
    Ok(stream)
}

#[ComplexObject]
impl Stream {
    /// Deprecated in the original; the same as `isPublic` here.
    async fn is_discoverable(&self) -> bool {
        self.is_public
    }

    /// Members with their roles.
    async fn collaborators(&self, ctx: &Context<'_>) -> ApiResult<Vec<StreamCollaborator>> {
        let rows = query::stream_collaborators(pool(ctx)?, &self.id).await?;
        Ok(rows.into_iter().map(StreamCollaborator::from).collect())
    }

    /// Its webhooks (owners only), or the one with `id`.
    async fn webhooks(
        &self,
        ctx: &Context<'_>,
        id: Option<String>,
    ) -> ApiResult<super::webhooks::WebhookCollection> {
        let project = read::load(ctx, &self.id).await?;
        super::webhooks::list(ctx, &project, id.as_deref()).await
    }

    /// When the signed-in user marked it as a favourite; null when it is not one of theirs.
    async fn favorited_date(&self, ctx: &Context<'_>) -> ApiResult<Option<OffsetDateTime>> {
        let Some(user) = ctx.data::<domain::Principal>()?.user_id.as_deref() else {
            return Ok(None);
        };
        query::favorited_at(pool(ctx)?, &self.id, user)
            .await
            .map_err(AppError::internal)
    }

    /// Branches, newest first.
    async fn branches(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        cursor: Option<String>,
    ) -> ApiResult<BranchCollection> {
        let limit = page_limit(limit)?;
        let after = cursor.as_deref().map(decode_cursor).transpose()?;
        let total_count = query::models_count(pool(ctx)?, &self.id).await?;
        let items: Vec<Branch> = query::branches_page(pool(ctx)?, &self.id, after, limit)
            .await?
            .into_iter()
            .map(Branch::from)
            .collect();
        let cursor = read::next_cursor(&items, limit, |b| (b.created_at, &b.id));
        Ok(BranchCollection {
            total_count,
            cursor,
            items,
        })
    }

    /// One branch by name (lower-cased, as stored), `main` by default.
    async fn branch(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(String::from(\"main\"))")] name: Option<String>,
    ) -> ApiResult<Option<Branch>> {
        let name = name.as_deref().unwrap_or("main"); // explicit null: the schema default
        Ok(
            query::branch_by_name(pool(ctx)?, &self.id, &domain::ModelName::tidy(name))
                .await?
                .map(Branch::from),
        )
    }

    /// Commits, newest first.
    async fn commits(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        cursor: Option<String>,
    ) -> ApiResult<CommitCollection> {
        commits(ctx, VersionsOf::Project, &self.id, limit, cursor).await
    }

    /// One commit.
    async fn commit(&self, ctx: &Context<'_>, id: Option<String>) -> ApiResult<Option<Commit>> {
        // Without an id, the latest commit (as the original).
        Ok(query::commit_in_stream(pool(ctx)?, &self.id, id.as_deref())
            .await?
            .map(Commit::from))
    }

    /// One object of the stream.
    async fn object(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> ApiResult<Option<super::object::SpeckleObject>> {
        super::object::load(ctx, &self.id, &id).await
    }

    /// The stream's activity, newest first.
    async fn activity(
        &self,
        ctx: &Context<'_>,
        action_type: Option<String>,
        after: Option<OffsetDateTime>,
        before: Option<OffsetDateTime>,
        cursor: Option<OffsetDateTime>,
        limit: Option<i32>,
    ) -> ApiResult<ActivityCollection> {
        activity(
            ctx,
            ActivityOf::Stream(&self.id),
            action_type,
            after,
            before,
            cursor,
            limit,
        )
        .await
    }
}

async fn commits(
    ctx: &Context<'_>,
    of: VersionsOf,
    id: &str,
    limit: Option<i32>,
    cursor: Option<String>,
) -> ApiResult<CommitCollection> {
    let limit = page_limit(limit)?;
    let after = cursor.as_deref().map(decode_cursor).transpose()?;
    let (total_count, rows) = query::commits_page(pool(ctx)?, of, id, after, limit).await?;
    let items: Vec<Commit> = rows.into_iter().map(Commit::from).collect();
    let cursor = super::project::next_cursor(&items, limit, |c| (c.created_at, &c.id));
    Ok(CommitCollection {
        total_count,
        cursor,
        items,
    })
}

#[ComplexObject]
impl Branch {
    /// Its author.
    async fn author(&self, ctx: &Context<'_>) -> ApiResult<Option<read::LimitedUser>> {
        super::user::other_user(ctx, &self.author_id).await
    }

    /// Its commits, newest first.
    async fn commits(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        cursor: Option<String>,
    ) -> ApiResult<CommitCollection> {
        commits(ctx, VersionsOf::Model, &self.id, limit, cursor).await
    }

    /// Its activity, newest first.
    async fn activity(
        &self,
        ctx: &Context<'_>,
        action_type: Option<String>,
        after: Option<OffsetDateTime>,
        before: Option<OffsetDateTime>,
        cursor: Option<OffsetDateTime>,
        limit: Option<i32>,
    ) -> ApiResult<ActivityCollection> {
        activity(
            ctx,
            ActivityOf::Resource(&self.id),
            action_type,
            after,
            before,
            cursor,
            limit,
        )
        .await
    }
}

#[ComplexObject]
impl Commit {
    /// Its branch.
    async fn branch(&self, ctx: &Context<'_>) -> ApiResult<Option<Branch>> {
        Ok(query::branch_by_id(pool(ctx)?, &self.model_id)
            .await?
            .map(Branch::from))
    }

    /// Its stream.
    async fn stream(&self, ctx: &Context<'_>) -> ApiResult<Stream> {
        load(ctx, &self.stream_id).await
    }

    /// Its activity, newest first.
    async fn activity(
        &self,
        ctx: &Context<'_>,
        action_type: Option<String>,
        after: Option<OffsetDateTime>,
        before: Option<OffsetDateTime>,
        cursor: Option<OffsetDateTime>,
        limit: Option<i32>,
    ) -> ApiResult<ActivityCollection> {
        activity(
            ctx,
            ActivityOf::Resource(&self.id),
            action_type,
            after,
            before,
            cursor,
            limit,
        )
        .await
    }
}

/// `streams`: the signed-in user's streams, most recently updated first.
pub async fn user_streams(
    ctx: &Context<'_>,
    user_id: &str,
    query: Option<String>,
    limit: Option<i32>,
    cursor: Option<String>,
) -> ApiResult<UserStreamCollection> {
    let limit = page_limit(limit)?;
    let after = cursor.as_deref().map(decode_cursor).transpose()?;
    let principal = ctx.data::<domain::Principal>()?;
    // Another user's streams: only those the caller may see.
    let mine = principal.user_id.as_deref() == Some(user_id);
    let me = principal.user_id.as_deref().unwrap_or_default();
    let (total_count, rows) = query::user_streams_page(
        pool(ctx)?,
        user_id,
        query.as_deref(),
        mine,
        me,
        after,
        limit,
    )
    .await?;
    let cursor = rows
        .last()
        .filter(|_| rows.len() as i64 == limit)
        .map(|(id, at)| encode_cursor(*at, id));
    let mut items = Vec::with_capacity(rows.len());
    for (id, _) in rows {
        items.push(load(ctx, &id).await?);
    }
    Ok(UserStreamCollection {
        total_count,
        cursor,
        items,
    })
}

/// `user.activity`.
pub async fn user_activity(
    ctx: &Context<'_>,
    user_id: &str,
    action_type: Option<String>,
    after: Option<OffsetDateTime>,
    before: Option<OffsetDateTime>,
    cursor: Option<OffsetDateTime>,
    limit: Option<i32>,
) -> ApiResult<ActivityCollection> {
    activity(
        ctx,
        ActivityOf::User(user_id),
        action_type,
        after,
        before,
        cursor,
        limit,
    )
    .await
}

/// `streamCreate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct StreamCreateInput {
    name: Option<String>,
    description: Option<String>,
    is_public: Option<bool>,
    is_discoverable: Option<bool>,
    with_contributors: Option<Vec<String>>,
}

/// `streamUpdate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct StreamUpdateInput {
    id: String,
    name: Option<String>,
    description: Option<String>,
    is_public: Option<bool>,
    is_discoverable: Option<bool>,
    allow_public_comments: Option<bool>,
}

/// `streamUpdatePermission` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct StreamUpdatePermissionInput {
    stream_id: String,
    user_id: String,
    role: String,
}

/// `streamRevokePermission` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct StreamRevokePermissionInput {
    stream_id: String,
    user_id: String,
}

/// `branchCreate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct BranchCreateInput {
    stream_id: String,
    name: String,
    description: Option<String>,
}

/// `branchUpdate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct BranchUpdateInput {
    stream_id: String,
    id: String,
    name: Option<String>,
    description: Option<String>,
}

/// `branchDelete` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct BranchDeleteInput {
    stream_id: String,
    id: String,
}

/// `commitCreate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct CommitCreateInput {
    stream_id: String,
    branch_name: String,
    object_id: String,
    message: Option<String>,
    source_application: Option<String>,
    total_children_count: Option<i32>,
    parents: Option<Vec<Option<String>>>,
    /// Deprecated in the original; ignored.
    previous_commit_ids: Option<Vec<Option<String>>>,
}

/// `commitUpdate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct CommitUpdateInput {
    stream_id: String,
    id: String,
    message: Option<String>,
    new_branch_name: Option<String>,
}

/// `commitReceive` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct CommitReceivedInput {
    stream_id: String,
    commit_id: String,
    source_application: String,
    message: Option<String>,
}

/// `commitDelete` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct CommitDeleteInput {
    stream_id: String,
    id: String,
}

/// `objectCreate` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ObjectCreateInput {
    stream_id: String,
    objects: Vec<Option<JsonObject>>,
}

/// The legacy mutations, merged into the root.
#[derive(Default)]
pub struct LegacyMutation;

#[Object]
impl LegacyMutation {
    /// Creates a stream: public unless told otherwise, with a `main` branch ("default model").
    async fn stream_create(
        &self,
        ctx: &Context<'_>,
        stream: StreamCreateInput,
    ) -> ApiResult<Option<String>> {
        let (principal, user) = signed_in(ctx)?;
        let guests_may = services::settings(ctx)?.guests_may_create_projects;
        policy::can_create_project(&principal, guests_may)?;
        rate_limited(ctx, "STREAM_CREATE", &user).await?;
        let id = new_id(ctx);
        let through = domain::project::CreatedThrough::Legacy;
        let command = ProjectCommand::Create {
            id: id.clone(),
            name: through.name_or_default(stream.name, &id),
            description: stream.description,
            visibility: stream
                .is_public
                .map_or(through.default_visibility(), Visibility::from_is_public),
            owner_user_id: user.clone(),
            default_model_id: Some(new_id(ctx)),
        };
        services::bus(ctx)?
            .execute_once::<ProjectAggregate, _>(
                &id,
                super::idempotency::command_id(ctx),
                &metadata(ctx, &user),
                |_| Ok(command.clone()),
            )
            .await?;
        Ok(Some(id))
    }

    /// Changes a stream's settings (owners).
    async fn stream_update(&self, ctx: &Context<'_>, stream: StreamUpdateInput) -> ApiResult<bool> {
        let _ = stream.is_discoverable;
        ops::update_project(
            ctx,
            &stream.id,
            stream.name,
            stream.description,
            stream.is_public.map(Visibility::from_is_public),
            stream.allow_public_comments,
        )
        .await?;
        Ok(true)
    }

    /// Marks the stream as one of the signed-in user's favourites, or unmarks it (anyone who
    /// can read it).
    async fn stream_favorite(
        &self,
        ctx: &Context<'_>,
        stream_id: String,
        favorited: bool,
    ) -> ApiResult<Option<Stream>> {
        let (_, user) = signed_in(ctx)?;
        run(
            ctx,
            &stream_id,
            |p, a, _| policy::can_favorite_project(p, a),
            |_| {
                Ok(ProjectCommand::SetFavorite {
                    user_id: user.clone(),
                    favorited,
                })
            },
        )
        .await?;
        load(ctx, &stream_id).await.map(Some)
    }

    /// Deletes a stream (owners; admins).
    async fn stream_delete(&self, ctx: &Context<'_>, id: String) -> ApiResult<bool> {
        run(
            ctx,
            &id,
            |p, a, _| policy::can_delete_project(p, a),
            |_| Ok(ProjectCommand::Delete),
        )
        .await?;
        Ok(true)
    }

    /// Gives a user a role on a stream (owners).
    async fn stream_update_permission(
        &self,
        ctx: &Context<'_>,
        permission_params: StreamUpdatePermissionInput,
    ) -> ApiResult<Option<bool>> {
        let role = ops::project_role(&permission_params.role)?;
        ops::set_member_role(
            ctx,
            &permission_params.stream_id,
            &permission_params.user_id,
            Some(role),
        )
        .await?;
        Ok(Some(true))
    }

    /// Removes a user from a stream (owners).
    async fn stream_revoke_permission(
        &self,
        ctx: &Context<'_>,
        permission_params: StreamRevokePermissionInput,
    ) -> ApiResult<Option<bool>> {
        ops::set_member_role(
            ctx,
            &permission_params.stream_id,
            &permission_params.user_id,
            None,
        )
        .await?;
        Ok(Some(true))
    }

    /// Creates a branch; returns its id. Names are lower-cased, as the original does.
    async fn branch_create(
        &self,
        ctx: &Context<'_>,
        branch: BranchCreateInput,
    ) -> ApiResult<String> {
        let name = domain::ModelName::tidy(&branch.name).to_lowercase();
        let model_id = ops::create_model(ctx, &branch.stream_id, name, branch.description).await?;
        Ok(model_id)
    }

    /// Renames or re-describes a branch.
    async fn branch_update(&self, ctx: &Context<'_>, branch: BranchUpdateInput) -> ApiResult<bool> {
        ops::update_model(
            ctx,
            &branch.stream_id,
            &branch.id,
            branch
                .name
                .as_deref()
                .map(|n| domain::ModelName::tidy(n).to_lowercase()),
            branch.description,
        )
        .await?;
        Ok(true)
    }

    /// Deletes a branch and its commits (its author, or an owner).
    async fn branch_delete(&self, ctx: &Context<'_>, branch: BranchDeleteInput) -> ApiResult<bool> {
        ops::delete_model(ctx, &branch.stream_id, &branch.id).await?;
        Ok(true)
    }

    /// Creates a commit on the branch named `branchName` (lower-cased; else taken as a branch
    /// id); returns its id.
    async fn commit_create(
        &self,
        ctx: &Context<'_>,
        commit: CommitCreateInput,
    ) -> ApiResult<String> {
        let (_, user) = signed_in(ctx)?;
        let root = ops::version_root(ctx, &user, &commit.stream_id, &commit.object_id).await?;
        let _ = &commit.previous_commit_ids;
        let version_id = new_id(ctx);
        let count = root.children_count(commit.total_children_count);
        // The original drops null parents.
        let parents: Vec<String> = commit
            .parents
            .clone()
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect();
        run(
            ctx,
            &commit.stream_id,
            |p, a, _| policy::can_create_version(p, a),
            |project| {
                let model_id = project
                    .model_by_name(&commit.branch_name.to_lowercase())
                    .map(|(id, _)| id.to_owned())
                    .or_else(|| {
                        project
                            .models
                            .contains_key(&commit.branch_name)
                            .then(|| commit.branch_name.clone())
                    })
                    .ok_or_else(|| {
                        crate::commands::CommandError::Domain(domain::DomainError::not_found(
                            domain::Entity::Model,
                            commit.branch_name.clone(),
                        ))
                    })?;
                Ok(ProjectCommand::CreateVersion {
                    version_id: version_id.clone(),
                    model_id,
                    object_id: commit.object_id.clone(),
                    root_object_stored: root.stored,
                    message: commit.message.clone(),
                    source_application: commit.source_application.clone(),
                    total_children_count: count,
                    parents: parents.clone(),
                    author_id: user.clone(),
                })
            },
        )
        .await?;
        Ok(version_id)
    }

    /// Changes a commit's message and/or moves it to the branch `newBranchName` (its author,
    /// or an owner).
    async fn commit_update(&self, ctx: &Context<'_>, commit: CommitUpdateInput) -> ApiResult<bool> {
        if commit.message.is_none() && commit.new_branch_name.is_none() {
            // Never a success without the access check the changes below make.
            return Err(gql_error(ErrorCode::BadRequest, "Nothing to update"));
        }
        if let Some(message) = commit.message {
            ops::update_version_message(ctx, &commit.stream_id, &commit.id, message).await?;
        }
        if let Some(branch) = commit.new_branch_name {
            ops::move_versions(
                ctx,
                &commit.stream_id,
                vec![commit.id.clone()],
                &branch.to_lowercase(),
            )
            .await?;
        }
        Ok(true)
    }

    /// Records that the caller received a commit.
    async fn commit_receive(
        &self,
        ctx: &Context<'_>,
        input: CommitReceivedInput,
    ) -> ApiResult<bool> {
        ops::mark_received(
            ctx,
            &input.stream_id,
            &input.commit_id,
            &input.source_application,
            input.message,
        )
        .await?;
        Ok(true)
    }

    /// Deletes a commit (its author, or an owner).
    async fn commit_delete(&self, ctx: &Context<'_>, commit: CommitDeleteInput) -> ApiResult<bool> {
        ops::delete_versions(ctx, &commit.stream_id, vec![commit.id]).await?;
        Ok(true)
    }

    /// Stores objects in a stream (contributors); returns their ids. An object without an id
    /// gets one: the hex of the first 16 bytes of the SHA-256 of its JSON. `totalChildrenCount`
    /// comes from `__closure` when absent.
    async fn object_create(
        &self,
        ctx: &Context<'_>,
        object_input: ObjectCreateInput,
    ) -> ApiResult<Vec<Option<String>>> {
        let (principal, user) = signed_in(ctx)?;
        let (project_state, _) = services::bus(ctx)?
            .load::<ProjectAggregate>(&object_input.stream_id)
            .await?;
        let project = project_state
            .project()
            .ok_or_else(|| denied(&policy::Denied::project_not_found()))?;
        let access = project.access_for(Some(&user));
        policy::can_read_project(&principal, &access)?;
        policy::can_create_version(&principal, &access)?;
        let mut texts = Vec::with_capacity(object_input.objects.len());
        for object in object_input.objects.into_iter().flatten() {
            let mut value = object.0;
            let map = value.as_object_mut().ok_or_else(|| {
                gql_error(ErrorCode::BadRequest, "each object must be a JSON object")
            })?;
            if !map.get("id").is_some_and(serde_json::Value::is_string) {
                use sha2::Digest;
                let digest =
                    sha2::Sha256::digest(serde_json::Value::Object(map.clone()).to_string());
                map.insert("id".into(), hex::encode(&digest[..16]).into());
            }
            texts.push(serde_json::Value::Object(map.clone()).to_string());
        }
        let batch = format!("[{}]", texts.join(","));
        let objects =
            crate::objects::parse_batch(&batch, services::settings(ctx)?.object_size_limit_bytes)
                .map_err(|m| gql_error(ErrorCode::BadRequest, m))?;
        schema::objects::insert_batch(services::pool(ctx)?, &object_input.stream_id, &objects)
            .await?;
        Ok(objects.into_iter().map(|o| Some(o.id)).collect())
    }
}

/// The legacy queries, merged into the root.
#[derive(Default)]
pub struct LegacyQuery;

#[Object]
impl LegacyQuery {
    /// A stream, if the caller may read it.
    async fn stream(&self, ctx: &Context<'_>, id: String) -> ApiResult<Stream> {
        load(ctx, &id).await
    }

    /// The signed-in user's streams.
    async fn streams(
        &self,
        ctx: &Context<'_>,
        query: Option<String>,
        limit: Option<i32>,
        cursor: Option<String>,
    ) -> ApiResult<Option<UserStreamCollection>> {
        let (_, user) = signed_in(ctx)?;
        user_streams(ctx, &user, query, limit, cursor)
            .await
            .map(Some)
    }

    /// Deprecated in the original: a user by id, or the signed-in user.
    async fn user(
        &self,
        ctx: &Context<'_>,
        id: Option<String>,
    ) -> ApiResult<Option<super::user::User>> {
        match id {
            None => super::user::active_user(ctx).await,
            Some(id) => super::user::user_by_id(ctx, &id).await,
        }
    }
}

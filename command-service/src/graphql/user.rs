//! `activeUser`, `otherUser` and personal access tokens.

use async_graphql::ID;
use async_graphql::{ComplexObject, Context, InputObject, SimpleObject};
use domain::policy::{self, Principal, Scope};
use projections::speckle::query;
use time::OffsetDateTime;

use super::errors::{ErrorCode, denied, gql_error};
use super::mutations::signed_in;
use super::project::{LimitedUser, Project};
use super::services;
use crate::error::{ApiResult, AppError};

/// The signed-in user.
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct User {
    #[graphql(skip)]
    id: String,
    #[graphql(skip)]
    email_address: String,
    name: String,
    bio: Option<String>,
    company: Option<String>,
    avatar: Option<String>,
    verified: bool,
    role: String,
    created_at: OffsetDateTime,
}

impl From<query::UserRow> for User {
    fn from(r: query::UserRow) -> Self {
        Self {
            id: r.id,
            email_address: r.email_address,
            name: r.name,
            bio: r.bio,
            company: r.company,
            avatar: r.avatar,
            verified: r.verified,
            role: r.role,
            created_at: r.created_at,
        }
    }
}

/// Filters of `User.projects`.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct UserProjectsFilter {
    /// Part of the project name, case-insensitively.
    search: Option<String>,
    /// Only projects where the user has one of these roles.
    only_with_roles: Option<Vec<String>>,
    /// Workspaces are not offered: ignored.
    workspace_id: Option<ID>,
    /// Workspaces are not offered: every project is personal.
    personal_only: Option<bool>,
    /// Accepted for compatibility; membership is always explicit here.
    include_implicit_access: Option<bool>,
}

/// A page of the user's projects.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct UserProjectCollection {
    total_count: i64,
    cursor: Option<String>,
    items: Vec<Project>,
}

/// A personal access token, never with its secret.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ApiToken {
    id: String,
    name: String,
    last_chars: String,
    scopes: Vec<String>,
    created_at: OffsetDateTime,
    lifespan: super::wire::BigInt,
    last_used: Option<OffsetDateTime>,
}

/// `apiTokenCreate` input; `lifespan` in milliseconds.
#[derive(InputObject)]
pub struct ApiTokenCreateInput {
    scopes: Vec<String>,
    name: String,
    lifespan: Option<super::wire::BigInt>,
    /// Projects the token is limited to. strata's tokens are not resource-limited yet, so a
    /// non-empty list is refused rather than silently widened.
    limit_resources: Option<Vec<TokenResourceIdentifierInput>>,
}

/// A resource a token may be limited to.
#[derive(InputObject)]
pub struct TokenResourceIdentifierInput {
    id: String,
    #[graphql(name = "type")]
    kind: TokenResourceIdentifierType,
}

/// The kinds of resource a token may be limited to.
#[derive(async_graphql::Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(rename_items = "lowercase")]
pub enum TokenResourceIdentifierType {
    /// A project.
    Project,
    /// A workspace.
    Workspace,
}

async fn user_row(ctx: &Context<'_>, id: &str) -> ApiResult<Option<User>> {
    Ok(query::user_by_id(services::pool(ctx)?, id)
        .await?
        .map(User::from))
}

/// The signed-in user's record, if any.
pub async fn active_user(ctx: &Context<'_>) -> ApiResult<Option<User>> {
    let principal = ctx.data::<Principal>()?;
    let Some(id) = &principal.user_id else {
        return Ok(None);
    };
    policy::can_read_own_profile(principal)?;
    user_row(ctx, id).await
}

/// A user's record by id (the legacy `user(id)`); the email stays guarded by its resolver.
pub async fn user_by_id(ctx: &Context<'_>, id: &str) -> ApiResult<Option<User>> {
    signed_in(ctx)?;
    user_row(ctx, id).await
}

/// Another user's public profile.
pub async fn other_user(ctx: &Context<'_>, id: &str) -> ApiResult<Option<LimitedUser>> {
    signed_in(ctx)?;
    Ok(query::limited_user(services::pool(ctx)?, id)
        .await?
        .map(LimitedUser::from))
}

/// What the caller may do outside any project (`User.permissions`).
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct RootPermissionChecks {
    can_create_personal_project: super::project::PermissionCheckResult,
    can_create_workspace: super::project::PermissionCheckResult,
}

impl User {
    /// The original's `@isOwner`: fields only the user themself (or an admin) may read.
    fn only_owner(&self, ctx: &Context<'_>, field: &str) -> ApiResult<()> {
        let principal = ctx.data::<Principal>()?;
        policy::can_read_user_private(principal, &self.id, field).map_err(|d| denied(&d))
    }
}

#[ComplexObject]
impl User {
    /// Its id.
    #[graphql(name = "id")]
    async fn wire_id(&self) -> async_graphql::ID {
        async_graphql::ID(self.id.clone())
    }

    /// What the caller may do outside any project, decided by the policy the mutations use.
    async fn permissions(&self, ctx: &Context<'_>) -> ApiResult<RootPermissionChecks> {
        self.only_owner(ctx, "permissions")?;
        let principal = ctx.data::<Principal>()?;
        let guests_may = services::settings(ctx)?.guests_may_create_projects;
        Ok(RootPermissionChecks {
            can_create_personal_project: domain::policy::can_create_project(principal, guests_may)
                .into(),
            can_create_workspace: super::project::PermissionCheckResult::refused(
                "WorkspacesNotEnabled",
                "This server does not support workspaces",
            ),
        })
    }

    /// The user's workspaces: `WORKSPACES_MODULE_DISABLED_ERROR`, there are none here.
    async fn workspaces(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "limit", default = 25)] _limit: i32,
        #[graphql(name = "cursor")] _cursor: Option<String>,
        #[graphql(name = "filter")] _filter: Option<super::workspaces::UserWorkspacesFilter>,
    ) -> ApiResult<super::workspaces::WorkspaceCollection> {
        self.only_owner(ctx, "workspaces")?;
        Err(super::workspaces::disabled())
    }

    /// The workspace the user works in: always null, there are none here.
    async fn active_workspace(
        &self,
        ctx: &Context<'_>,
    ) -> ApiResult<Option<super::workspaces::LimitedWorkspace>> {
        self.only_owner(ctx, "activeWorkspace")?;
        Ok(None)
    }

    /// Legacy: the user's streams (only those the caller may see).
    async fn streams(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        cursor: Option<String>,
    ) -> ApiResult<super::legacy::UserStreamCollection> {
        super::legacy::user_streams(ctx, &self.id, None, limit, cursor).await
    }

    /// Legacy: what the user did, in streams the caller may see, newest first.
    async fn activity(
        &self,
        ctx: &Context<'_>,
        action_type: Option<String>,
        after: Option<OffsetDateTime>,
        before: Option<OffsetDateTime>,
        cursor: Option<OffsetDateTime>,
        limit: Option<i32>,
    ) -> ApiResult<super::legacy::ActivityCollection> {
        super::legacy::user_activity(ctx, &self.id, action_type, after, before, cursor, limit).await
    }

    /// The apps the user registered (only to the user themself, with `apps:read`).
    async fn created_apps(
        &self,
        ctx: &Context<'_>,
    ) -> ApiResult<Option<Vec<super::apps::ServerApp>>> {
        if policy::can_read_own_account(ctx.data::<Principal>()?, &self.id, "apps").is_err() {
            return Ok(None);
        }
        super::apps::created(ctx, &self.id).await.map(Some)
    }

    /// The apps holding a live token of the user (only to the user themself, with `apps:read`).
    async fn authorized_apps(
        &self,
        ctx: &Context<'_>,
    ) -> ApiResult<Option<Vec<super::apps::ServerAppListItem>>> {
        if policy::can_read_own_account(ctx.data::<Principal>()?, &self.id, "apps").is_err() {
            return Ok(None);
        }
        super::apps::authorized(ctx, &self.id).await.map(Some)
    }

    /// Whether a verification code is waiting to be entered; only to the user themself.
    async fn has_pending_verification(&self, ctx: &Context<'_>) -> ApiResult<Option<bool>> {
        let principal = ctx.data::<Principal>()?;
        if policy::can_read_own_account(principal, &self.id, "verification").is_err() {
            return Ok(None);
        }
        services::accounts(ctx)?
            .has_pending_verification(&self.id)
            .await
            .map(Some)
            .map_err(AppError::internal)
    }

    /// The email: only to the user themself (with `profile:email`) or an admin.
    async fn email(&self, ctx: &Context<'_>) -> ApiResult<Option<String>> {
        let principal = ctx.data::<Principal>()?;
        Ok(policy::can_read_user_email(principal, &self.id)
            .is_ok()
            .then(|| self.email_address.clone()))
    }

    /// Projects the user is a member of, most recently updated first.
    async fn projects(
        &self,
        ctx: &Context<'_>,
        limit: Option<i32>,
        cursor: Option<String>,
        filter: Option<UserProjectsFilter>,
    ) -> ApiResult<UserProjectCollection> {
        self.only_owner(ctx, "projects")?;
        let search = filter
            .as_ref()
            .and_then(|f| f.search.clone())
            .filter(|s| !s.is_empty());
        let roles = filter.as_ref().and_then(|f| f.only_with_roles.clone());
        let limit = i64::from(limit.unwrap_or(25)); // the original's default page size
        if !(0..=100).contains(&limit) {
            return Err(gql_error(
                ErrorCode::BadRequest,
                "limit must be between 0 and 100",
            ));
        }
        let pool = services::pool(ctx)?;
        let total_count =
            query::user_projects_count(pool, &self.id, search.as_deref(), roles.as_deref()).await?;
        let after = cursor
            .as_deref()
            .map(super::project::decode_cursor)
            .transpose()?;
        let principal = ctx.data::<Principal>()?;
        let rows = query::user_projects_page(
            pool,
            &self.id,
            principal.user_id.as_deref(),
            search.as_deref(),
            roles.as_deref(),
            after,
            limit,
        )
        .await?;
        let items = rows
            .into_iter()
            .map(|row| super::project::readable(principal, row))
            .collect::<ApiResult<Vec<_>>>()?;
        super::project::prefetch_models(ctx, &items).await?;
        let cursor = super::project::next_cursor(&items, limit, |p| (p.updated_at, &p.id));
        Ok(UserProjectCollection {
            total_count,
            cursor,
            items,
        })
    }

    /// Pending invites addressed to the user, with the token to answer them.
    async fn project_invites(
        &self,
        ctx: &Context<'_>,
    ) -> ApiResult<Vec<super::project::PendingStreamCollaborator>> {
        let principal = ctx.data::<Principal>()?;
        policy::can_read_own_account(principal, &self.id, "invites")?;
        let rows = query::invites_addressed_to(services::pool(ctx)?, &self.id, &self.email_address)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let token = super::team::invite_token(ctx, &row.id)?;
            out.push(
                super::project::PendingStreamCollaborator::for_invitee(
                    row.id,
                    row.project_id,
                    row.project_name,
                    row.role,
                    token,
                    row.invited_by,
                    ctx,
                )
                .await?,
            );
        }
        Ok(out)
    }

    /// The user's personal access tokens (`tokens:read`).
    async fn api_tokens(&self, ctx: &Context<'_>) -> ApiResult<Vec<ApiToken>> {
        let principal = ctx.data::<Principal>()?;
        policy::can_read_own_tokens(principal, &self.id)?;
        let tokens = services::accounts(ctx)?.tokens_of(&self.id).await?;
        Ok(tokens
            .into_iter()
            .map(|t| ApiToken {
                lifespan: super::wire::BigInt(
                    i64::try_from((t.expires_at - t.created_at).whole_milliseconds())
                        .unwrap_or(i64::MAX), // saturates; never reached
                ),
                id: t.id,
                name: t.name,
                last_chars: t.last_chars,
                scopes: t.scopes,
                created_at: t.created_at,
                last_used: t.last_used_at,
            })
            .collect())
    }
}

/// Creates a personal token carrying at most the caller's own scopes.
pub async fn create_token(ctx: &Context<'_>, input: ApiTokenCreateInput) -> ApiResult<String> {
    // A new token each time, outside the log.
    crate::commands::refuse_keyed()?;
    let (principal, user) = signed_in(ctx)?;
    policy::can_manage_own_tokens(&principal)?;
    if input.name.trim().is_empty() || input.name.len() > 512 {
        return Err(gql_error(
            ErrorCode::BadRequest,
            "A token needs a name of at most 512 characters.",
        ));
    }
    let mut scopes = Vec::with_capacity(input.scopes.len());
    for raw in &input.scopes {
        let scope =
            Scope::parse(raw).map_err(|e| gql_error(ErrorCode::BadRequest, e.to_string()))?;
        policy::can_grant_scope(&principal, &scope)?;
        scopes.push(scope);
    }
    if scopes.is_empty() {
        return Err(gql_error(
            ErrorCode::BadRequest,
            "A token needs at least one scope.",
        ));
    }
    if let Some(limited) = input.limit_resources.as_ref().and_then(|list| list.first()) {
        tracing::debug!(id = %limited.id, kind = ?limited.kind, "refusing a resource-limited token");
        return Err(gql_error(
            ErrorCode::BadRequest,
            "Tokens limited to resources (limitResources) are not supported by this server.",
        ));
    }
    let lifespan = input
        .lifespan
        .map(|l| l.0)
        .filter(|ms| *ms > 0)
        // ms > 0 here, so it converts.
        .map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)));
    services::accounts(ctx)?
        .create_token(&user, input.name.trim(), &scopes, lifespan, None)
        .await
        .map_err(AppError::internal)
}

/// Revokes one of the caller's tokens, given the token or its id.
pub async fn revoke_token(ctx: &Context<'_>, token: &str) -> ApiResult<bool> {
    let (principal, user) = signed_in(ctx)?;
    policy::can_manage_own_tokens(&principal)?;
    services::accounts(ctx)?
        .revoke_token(&user, token)
        .await
        .map_err(AppError::internal)
}

/// A page of users found by a search.
#[derive(SimpleObject)]
pub struct UserSearchResultCollection {
    cursor: Option<String>,
    items: Vec<LimitedUser>,
}

/// `users` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct UsersRetrievalInput {
    query: String,
    limit: Option<i32>,
    cursor: Option<String>,
    email_only: Option<bool>,
}

impl From<UsersRetrievalInput> for UserSearch {
    fn from(i: UsersRetrievalInput) -> Self {
        Self {
            query: i.query,
            limit: i.limit,
            cursor: i.cursor,
            archived: false,
            email_only: i.email_only.unwrap_or(false), // unset: names and emails
        }
    }
}

/// What `userSearch` and `users` look for.
pub struct UserSearch {
    /// At least 3 characters of a name or email (the whole email with `email_only`).
    pub query: String,
    /// Page size.
    pub limit: Option<i32>,
    /// Where the previous page ended.
    pub cursor: Option<String>,
    /// Include archived users.
    pub archived: bool,
    /// Match the email exactly, and nothing else.
    pub email_only: bool,
}

/// Least characters a search needs, as the original.
const MIN_SEARCH_CHARS: usize = 3;

/// Searches users by name or email, newest first.
pub async fn search(
    ctx: &Context<'_>,
    search: UserSearch,
) -> ApiResult<UserSearchResultCollection> {
    let principal = ctx.data::<Principal>()?;
    domain::policy::can_search_users(principal).map_err(|d| super::errors::denied(&d))?;
    let query = search.query.trim().to_lowercase();
    if query.chars().count() < MIN_SEARCH_CHARS {
        return Err(gql_error(
            ErrorCode::BadRequest,
            format!("Search query must be at least {MIN_SEARCH_CHARS} characters."),
        ));
    }
    let limit = super::project::page_limit(search.limit)?;
    let after = search
        .cursor
        .as_deref()
        .map(super::project::decode_cursor)
        .transpose()?;
    let rows = query::users_search_page(
        services::pool(ctx)?,
        &query,
        search.email_only,
        search.archived,
        after,
        limit,
    )
    .await?;
    let cursor = rows
        .last()
        .filter(|_| rows.len() as i64 == limit)
        .map(|(id, at)| super::project::encode_cursor(*at, id));
    let mut items = Vec::with_capacity(rows.len());
    for (id, _) in rows {
        if let Some(user) = other_user(ctx, &id).await? {
            items.push(user);
        }
    }
    Ok(UserSearchResultCollection { cursor, items })
}

/// `userDelete` and `adminDeleteUser` input: the account's email, as the original asks for a
/// confirmation; deleting one's own account also takes its password.
#[derive(InputObject)]
pub struct UserDeleteInput {
    email: Option<String>,
    password: Option<String>,
}

/// `userDelete`: the signed-in person deletes their own account, confirming with its email and
/// password, and is erased (see `accounts::erasure`).
pub async fn delete_self(ctx: &Context<'_>, input: UserDeleteInput) -> ApiResult<bool> {
    let (principal, user) = super::mutations::signed_in(ctx)?;
    policy::can_delete_account(&principal, &user)?;
    let accounts = services::accounts(ctx)?;
    let confirmed = match input.email.as_deref() {
        Some(email) => accounts.user_id_by_email(email).await?,
        None => None,
    };
    if confirmed.as_deref() != Some(user.as_str()) {
        return Err(gql_error(
            ErrorCode::BadRequest,
            "The email does not match your account.",
        ));
    }
    let password = input.password.unwrap_or_default();
    if !accounts.check_user_password(&user, &password).await? {
        return Err(gql_error(
            ErrorCode::BadRequest,
            "The password does not match your account.",
        ));
    }
    accounts
        .delete_user(&user, &super::mutations::metadata(ctx, &user))
        .await?;
    Ok(true)
}

/// `adminDeleteUser`: a server admin deletes the account with `email`, and it is erased.
pub async fn delete_other(ctx: &Context<'_>, input: UserDeleteInput) -> ApiResult<bool> {
    let (principal, actor) = super::mutations::signed_in(ctx)?;
    let accounts = services::accounts(ctx)?;
    let target = match input.email.as_deref() {
        Some(email) => accounts.user_id_by_email(email).await?,
        None => None,
    };
    // The policy first, so a non-admin cannot learn which addresses have accounts.
    // An unknown address is checked as id "", which no one has.
    policy::can_delete_account(&principal, target.as_deref().unwrap_or(""))?;
    let target = target.ok_or_else(|| gql_error(ErrorCode::NotFound, "User not found."))?;
    accounts
        .delete_user(&target, &super::mutations::metadata(ctx, &actor))
        .await?;
    Ok(true)
}

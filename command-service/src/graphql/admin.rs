//! The admin queries (`admin { serverStatistics, userList, projectList, inviteList }`), for
//! server admins, with the original's names and shapes.

use async_graphql::{ComplexObject, Context, Object, SimpleObject};
use domain::policy::{self, Principal, Scope};
use projections::speckle::query;
use time::OffsetDateTime;

use super::errors::{denied, internal};
use super::project::{LimitedUser, Project, decode_cursor, load_user, next_cursor, page_limit};
use super::services;
use crate::error::{ApiResult, AppError};

/// Counts over the whole server.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ServerStatistics {
    total_project_count: i32,
    total_user_count: i32,
    total_pending_invites: i32,
}

/// One user as an admin sees it (with the email).
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct AdminUserListItem {
    #[graphql(skip)]
    id: String,
    email: Option<String>,
    name: String,
    bio: Option<String>,
    company: Option<String>,
    avatar: Option<String>,
    verified: Option<bool>,
    role: Option<String>,
    created_at: Option<OffsetDateTime>,
}

impl From<query::AdminUserRow> for AdminUserListItem {
    fn from(r: query::AdminUserRow) -> Self {
        Self {
            id: r.id,
            email: r.email,
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

#[ComplexObject]
impl AdminUserListItem {
    /// Its id.
    #[graphql(name = "id")]
    async fn wire_id(&self) -> async_graphql::ID {
        async_graphql::ID(self.id.clone())
    }
}

/// A page of users, newest first.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct AdminUserList {
    items: Vec<AdminUserListItem>,
    cursor: Option<String>,
    total_count: i32,
}

/// A page of projects, newest first (`admin.projectList`, `Workspace.projects`).
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectCollection {
    total_count: i32,
    cursor: Option<String>,
    items: Vec<Project>,
}

/// Someone invited who has no account yet: a pending project invite to an email address, which
/// is what the original keeps as a server invite.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ServerInvite {
    id: String,
    email: String,
    #[graphql(skip)]
    invited_by: String,
    #[graphql(skip)]
    created_at: OffsetDateTime,
}

impl From<query::AdminInviteRow> for ServerInvite {
    fn from(r: query::AdminInviteRow) -> Self {
        Self {
            id: r.id,
            email: r.email,
            invited_by: r.invited_by,
            created_at: r.created_at,
        }
    }
}

#[ComplexObject]
impl ServerInvite {
    /// Who sent it.
    async fn invited_by(&self, ctx: &Context<'_>) -> ApiResult<LimitedUser> {
        load_user(ctx, &self.invited_by)
            .await?
            .ok_or_else(|| internal(anyhow::anyhow!("inviter {} not found", self.invited_by)))
    }
}

/// A page of pending invites, newest first (`admin.inviteList`).
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct AdminInviteList {
    total_count: i32,
    cursor: Option<String>,
    items: Vec<ServerInvite>,
}

/// The admin queries.
pub struct AdminQueries;

fn check(ctx: &Context<'_>, scope: &Scope) -> ApiResult<()> {
    policy::can_administer(ctx.data::<Principal>()?, scope).map_err(|d| denied(&d))
}

/// An admin list's page size and where it starts: after the row `cursor` names, when given.
fn page_bounds(
    limit: i32,
    cursor: Option<&str>,
) -> ApiResult<(i64, Option<(OffsetDateTime, String)>)> {
    Ok((
        page_limit(Some(limit))?,
        cursor.map(decode_cursor).transpose()?,
    ))
}

fn count(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX) // past GraphQL's Int: its largest
}

#[Object]
impl AdminQueries {
    /// Projects, users and pending invites on the server (`server:stats`).
    async fn server_statistics(&self, ctx: &Context<'_>) -> ApiResult<ServerStatistics> {
        check(ctx, &Scope::SERVER_STATS)?;
        let counts = query::server_counts(services::pool(ctx)?).await?;
        Ok(ServerStatistics {
            total_project_count: count(counts.projects),
            total_user_count: count(counts.users),
            total_pending_invites: count(counts.pending_invites),
        })
    }

    /// Every project on the server, newest first, optionally those whose name contains
    /// `query` or of one `visibility` (`PRIVATE`, `PUBLIC`, `UNLISTED`); `users:read`, as the
    /// admin section of the original's web app asks.
    async fn project_list(
        &self,
        ctx: &Context<'_>,
        query: Option<String>,
        visibility: Option<String>,
        #[graphql(default = 25)] limit: i32,
        cursor: Option<String>,
    ) -> ApiResult<ProjectCollection> {
        check(ctx, &Scope::USERS_READ)?;
        let (limit, after) = page_bounds(limit, cursor.as_deref())?;
        let visibility = visibility.map(|v| v.to_uppercase());
        let (total, rows) = query::admin_projects_page(
            services::pool(ctx)?,
            query.as_deref(),
            visibility.as_deref(),
            after,
            limit,
        )
        .await?;
        let items: Vec<Project> = rows.into_iter().map(Project::from).collect();
        Ok(ProjectCollection {
            total_count: count(total),
            cursor: next_cursor(&items, limit, |p| (p.created_at, &p.id)),
            items,
        })
    }

    /// Pending invites of people without an account, newest first, optionally those whose
    /// email contains `query` (`users:read`).
    async fn invite_list(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 25)] limit: i32,
        cursor: Option<String>,
        query: Option<String>,
    ) -> ApiResult<AdminInviteList> {
        check(ctx, &Scope::USERS_READ)?;
        let (limit, after) = page_bounds(limit, cursor.as_deref())?;
        let (total, rows) =
            query::admin_invites_page(services::pool(ctx)?, query.as_deref(), after, limit).await?;
        let items: Vec<ServerInvite> = rows.into_iter().map(ServerInvite::from).collect();
        Ok(AdminInviteList {
            total_count: count(total),
            cursor: next_cursor(&items, limit, |i| (i.created_at, &i.id)),
            items,
        })
    }

    /// Every user, newest first, optionally those whose name or email contains `query` or
    /// who hold `role` (`users:read`).
    async fn user_list(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 25)] limit: i32,
        cursor: Option<String>,
        query: Option<String>,
        role: Option<super::wire::ServerRoleWire>,
    ) -> ApiResult<AdminUserList> {
        check(ctx, &Scope::USERS_READ)?;
        let role = role.map(|r| domain::policy::ServerRole::from(r).as_str().to_owned());
        let (limit, after) = page_bounds(limit, cursor.as_deref())?;
        let (total, rows) = query::admin_users_page(
            services::pool(ctx)?,
            query.as_deref(),
            role.as_deref(),
            after,
            limit,
        )
        .await?;
        let items: Vec<AdminUserListItem> = rows.into_iter().map(AdminUserListItem::from).collect();
        let cursor = next_cursor(&items, limit, |u| {
            // Always set (the column is NOT NULL).
            (u.created_at.unwrap_or(OffsetDateTime::UNIX_EPOCH), &u.id)
        });
        Ok(AdminUserList {
            items,
            cursor,
            total_count: count(total),
        })
    }
}

/// `userRoleChange` input: a user and a server role's wire name (`server:admin`, …).
#[derive(async_graphql::InputObject)]
pub struct UserRoleInput {
    id: String,
    role: String,
}

/// Changes a user's server role (server admins, as the original). Guest mode is off on this
/// server, so the guest role is refused.
pub async fn change_role(ctx: &Context<'_>, input: UserRoleInput) -> ApiResult<bool> {
    let principal = ctx.data::<Principal>()?;
    policy::can_administer(principal, &Scope::USERS_READ)?;
    let role: policy::ServerRole = input.role.parse().map_err(|_| {
        super::errors::gql_error(
            super::errors::ErrorCode::BadRequest,
            format!("{} is not a server role", input.role),
        )
    })?;
    let actor = principal.user_id.clone().unwrap_or_default();
    services::accounts(ctx)?
        .change_server_role(
            &input.id,
            role,
            false,
            &super::mutations::metadata(ctx, &actor),
        )
        .await
        .map_err(|e| match e {
            crate::accounts::AccountError::Command(c) => AppError::from(c),
            other => internal(other),
        })?;
    Ok(true)
}

//! The admin queries (`admin { serverStatistics, userList, projectList, inviteList }`), for
//! server admins, with the original's names and shapes.

use async_graphql::{ComplexObject, Context, Object, SimpleObject};
use domain::policy::{self, Principal, Scope};
use time::OffsetDateTime;

use super::errors::{denied, internal};
use super::project::{LimitedUser, Project, decode_cursor, load_user, next_cursor, page_limit};
use crate::app::AppState;

/// Counts over the whole server.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ServerStatistics {
    total_project_count: i32,
    total_user_count: i32,
    total_pending_invites: i32,
}

/// One user as an admin sees it (with the email).
#[derive(SimpleObject, sqlx::FromRow)]
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
#[derive(SimpleObject, sqlx::FromRow)]
#[graphql(complex)]
pub struct ServerInvite {
    id: String,
    email: String,
    #[graphql(skip)]
    invited_by: String,
    #[graphql(skip)]
    created_at: OffsetDateTime,
}

#[ComplexObject]
impl ServerInvite {
    /// Who sent it.
    async fn invited_by(&self, ctx: &Context<'_>) -> async_graphql::Result<LimitedUser> {
        load_user(ctx, &self.invited_by)
            .await?
            .ok_or_else(|| internal(format!("inviter {} not found", self.invited_by)))
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

/// The project list's filter: `$1` a LIKE pattern on the name, `$2` a visibility.
macro_rules! project_filter {
    () => {
        "($1::text IS NULL OR lower(name) LIKE $1) AND ($2::text IS NULL OR visibility = $2)"
    };
}

/// The invite list's filter: pending invites to an email, `$1` a LIKE pattern on it.
macro_rules! invite_filter {
    () => {
        "status = 'pending' AND target_email IS NOT NULL AND ($1::text IS NULL OR target_email LIKE $1)"
    };
}

/// The user list's filter: `$1` a LIKE pattern on name or email, `$2` a role.
macro_rules! user_filter {
    () => {
        "($1::text IS NULL OR lower(name) LIKE $1 OR email LIKE $1) AND ($2::text IS NULL OR role = $2)"
    };
}

fn check(ctx: &Context<'_>, scope: &Scope) -> async_graphql::Result<()> {
    policy::can_administer(ctx.data::<Principal>()?, scope).map_err(|d| denied(&d))
}

pub(crate) use projections::speckle::query::like_pattern;

/// One page of an admin list, newest first: how many rows `source` (a table and a `WHERE`
/// filter whose parameters `$1..$n` are `binds`) holds, the page's cursor, and the rows after
/// `cursor`. Every admin list is this shape; only the columns and the filter differ.
async fn newest_first<T>(
    ctx: &Context<'_>,
    columns: &'static str,
    source: &'static str,
    binds: &[Option<String>],
    cursor: Option<&str>,
    limit: i32,
    key: impl Fn(&T) -> (OffsetDateTime, &String),
) -> async_graphql::Result<(i32, Option<String>, Vec<T>)>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let limit = page_limit(Some(limit))?;
    let after = cursor.map(decode_cursor).transpose()?;
    let pool = ctx.data::<AppState>()?.pool();
    let mut total = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {source}"
    )));
    for bind in binds {
        total = total.bind(bind);
    }
    let total = total.fetch_one(pool).await.map_err(internal)?;
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
        .bind(after.as_ref().map(|a| a.1.clone()).unwrap_or_default())
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(internal)?;
    let cursor = next_cursor(&items, limit, key);
    Ok((count(total), cursor, items))
}

fn count(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[Object]
impl AdminQueries {
    /// Projects, users and pending invites on the server (`server:stats`).
    async fn server_statistics(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<ServerStatistics> {
        check(ctx, &Scope::SERVER_STATS)?;
        let (projects, users, invites): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM users), \
             (SELECT count(*) FROM project_invites WHERE status = 'pending')",
        )
        .fetch_one(ctx.data::<AppState>()?.pool())
        .await
        .map_err(internal)?;
        Ok(ServerStatistics {
            total_project_count: count(projects),
            total_user_count: count(users),
            total_pending_invites: count(invites),
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
    ) -> async_graphql::Result<ProjectCollection> {
        check(ctx, &Scope::USERS_READ)?;
        let binds = [
            query.as_deref().map(like_pattern),
            visibility.map(|v| v.to_uppercase()),
        ];
        let (total_count, cursor, items) = newest_first(
            ctx,
            "id, name, description, visibility, allow_public_comments, created_at, updated_at",
            concat!("projects WHERE ", project_filter!()),
            &binds,
            cursor.as_deref(),
            limit,
            |p: &Project| (p.created_at, &p.id),
        )
        .await?;
        Ok(ProjectCollection {
            total_count,
            cursor,
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
    ) -> async_graphql::Result<AdminInviteList> {
        check(ctx, &Scope::USERS_READ)?;
        let (total_count, cursor, items) = newest_first(
            ctx,
            "id, target_email AS email, invited_by, created_at",
            concat!("project_invites WHERE ", invite_filter!()),
            &[query.as_deref().map(like_pattern)],
            cursor.as_deref(),
            limit,
            |i: &ServerInvite| (i.created_at, &i.id),
        )
        .await?;
        Ok(AdminInviteList {
            total_count,
            cursor,
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
    ) -> async_graphql::Result<AdminUserList> {
        check(ctx, &Scope::USERS_READ)?;
        let role = role.map(|r| domain::policy::ServerRole::from(r).as_str().to_owned());
        let (total_count, cursor, items) = newest_first(
            ctx,
            "id, email, name, bio, company, avatar, \
             EXISTS (SELECT 1 FROM email_verifications v WHERE v.user_id = users.id) AS verified, \
             role, created_at",
            concat!("users WHERE ", user_filter!()),
            &[query.as_deref().map(like_pattern), role],
            cursor.as_deref(),
            limit,
            |u: &AdminUserListItem| (u.created_at.unwrap_or(OffsetDateTime::UNIX_EPOCH), &u.id),
        )
        .await?;
        Ok(AdminUserList {
            items,
            cursor,
            total_count,
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
pub async fn change_role(ctx: &Context<'_>, input: UserRoleInput) -> async_graphql::Result<bool> {
    let principal = ctx.data::<Principal>()?;
    policy::can_administer(principal, &Scope::USERS_READ).map_err(|d| denied(&d))?;
    let role: policy::ServerRole = input.role.parse().map_err(|_| {
        super::errors::gql_error(
            super::errors::ErrorCode::BadRequest,
            format!("{} is not a server role", input.role),
        )
    })?;
    let actor = principal.user_id.clone().unwrap_or_default();
    ctx.data::<AppState>()?
        .accounts()
        .change_server_role(
            &input.id,
            role,
            false,
            &super::mutations::metadata(ctx, &actor),
        )
        .await
        .map_err(|e| match e {
            crate::accounts::AccountError::Command(c) => super::mutations::command_error(c),
            other => internal(other),
        })?;
    Ok(true)
}

//! Invites, leaving a project, and profile updates.

use async_graphql::ID;
use async_graphql::{Context, InputObject, Object};
use domain::policy::{self, ProjectRole, ServerRole};
use domain::project::{InviteTarget, Invitee, ProjectCommand};
use domain::user::UserCommand;

use super::errors::{ErrorCode, gql_error, internal};
use super::mutations::{run, signed_in};
use projections::speckle::query;

use super::idempotency::{self, new_id};
use super::project::{self as read, PendingStreamCollaborator, Project};
use super::services;
use super::user::User;
use crate::commands::{CommandError, UserAggregate};
use crate::error::{ApiResult, AppError};

/// The invite token (see `Accounts::invite_token`).
pub(crate) fn invite_token(ctx: &Context<'_>, invite_id: &str) -> ApiResult<String> {
    services::accounts(ctx)?
        .invite_token(invite_id)
        .map_err(AppError::internal)
}

/// `projectInvite(projectId, token)`: the caller's own pending invite to the project, or the one
/// `token` answers (for a signed-in caller, only if addressed to them); null when there is none.
/// The token is shown back only to the invite's addressee.
pub(crate) async fn project_invite(
    ctx: &Context<'_>,
    project_id: &str,
    token: Option<&str>,
) -> ApiResult<Option<PendingStreamCollaborator>> {
    let principal = ctx.data::<policy::Principal>()?;
    let pool = services::pool(ctx)?;
    let invite_id = match token {
        None if principal.user_id.is_none() => return Ok(None),
        None => None,
        Some(token) => {
            let id = token.get(..10).unwrap_or_default();
            if token.len() != 32 || invite_token(ctx, id)? != token {
                return Ok(None);
            }
            Some(id)
        }
    };
    let email = match principal.user_id.as_deref() {
        Some(user) => query::user_email(pool, user).await?,
        None => None,
    };
    let addressee = principal.user_id.as_deref().zip(email.as_deref());
    let Some(row) = query::pending_invite(pool, project_id, invite_id, addressee).await? else {
        return Ok(None);
    };
    let token = match addressee {
        Some(_) => Some(invite_token(ctx, &row.id)?),
        None => None,
    };
    PendingStreamCollaborator::from_invite(row, token, ctx)
        .await
        .map(Some)
}

/// An invite's role: as asked, else the domain's default.
fn parse_role(raw: Option<&str>) -> ApiResult<ProjectRole> {
    raw.map_or(
        Ok(domain::project::DEFAULT_INVITE_ROLE),
        super::mutations::project_role,
    )
}

/// `invites.create` input: an email or a user id.
#[derive(InputObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectInviteCreateInput {
    email: Option<String>,
    user_id: Option<String>,
    role: Option<String>,
    server_role: Option<String>,
}

/// `invites.use` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectInviteUseInput {
    project_id: ID,
    token: String,
    accept: bool,
}

/// Invite mutations.
pub struct InviteMutations;

async fn invite(
    ctx: &Context<'_>,
    project_id: &str,
    input: ProjectInviteCreateInput,
) -> ApiResult<()> {
    let (_, user) = signed_in(ctx)?;
    let role = parse_role(input.role.as_deref())?;
    let (target, target_role) = match (input.user_id, input.email) {
        (Some(id), _) => {
            let role = query::user_role(services::pool(ctx)?, &id)
                .await?
                .and_then(|r| r.parse::<ServerRole>().ok())
                .ok_or_else(|| gql_error(ErrorCode::NotFound, "User not found"))?;
            (InviteTarget::UserId(id), Some(role))
        }
        (None, Some(email)) => (InviteTarget::Email(email), None),
        (None, None) => {
            return Err(gql_error(
                ErrorCode::BadRequest,
                "An invite needs an email or a user id.",
            ));
        }
    };
    let invite_id = new_id(ctx);
    run(
        ctx,
        project_id,
        |p, a, _| policy::can_invite(p, a),
        |_| {
            Ok(ProjectCommand::CreateInvite {
                invite_id: invite_id.clone(),
                target: target.clone(),
                role,
                invited_by: user.clone(),
                target_server_role: target_role,
            })
        },
    )
    .await
}

#[Object(name = "ProjectInviteMutations")]
impl InviteMutations {
    /// Invites a user (by id) or an email address to the project (owners, with `users:invite`).
    async fn create(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        input: ProjectInviteCreateInput,
    ) -> ApiResult<Project> {
        invite(ctx, &project_id, input).await?;
        read::load(ctx, &project_id).await
    }

    /// Several invites at once.
    async fn batch_create(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        input: Vec<ProjectInviteCreateInput>,
    ) -> ApiResult<Project> {
        for one in input {
            invite(ctx, &project_id, one).await?;
        }
        read::load(ctx, &project_id).await
    }

    /// Accepts or declines an invite addressed to the caller.
    #[graphql(name = "use")]
    async fn use_invite(&self, ctx: &Context<'_>, input: ProjectInviteUseInput) -> ApiResult<bool> {
        let (principal, user) = signed_in(ctx)?;
        policy::can_use_invite(&principal).map_err(|d| super::errors::denied(&d))?;
        let invite_id = input.token.get(..10).unwrap_or_default().to_owned();
        if input.token.len() != 32 || invite_token(ctx, &invite_id)? != input.token {
            return Err(gql_error(ErrorCode::NotFound, "Invite not found"));
        }
        let (email, role) = query::user_email_and_role(services::pool(ctx)?, &user)
            .await?
            .ok_or_else(|| gql_error(ErrorCode::NotFound, "User not found"))?;
        let invitee = Invitee {
            user_id: user.clone(),
            emails: vec![email],
            server_role: role.parse().map_err(internal)?,
        };
        let accept = input.accept;
        services::bus(ctx)?
            .execute_once::<crate::commands::ProjectAggregate, _>(
                &input.project_id,
                idempotency::command_id(ctx),
                &super::mutations::metadata(ctx, &user),
                |s| {
                    s.project()
                        .ok_or_else(|| CommandError::Denied(policy::Denied::project_not_found()))?;
                    Ok(if accept {
                        ProjectCommand::AcceptInvite {
                            invite_id: invite_id.clone(),
                            invitee: invitee.clone(),
                        }
                    } else {
                        ProjectCommand::DeclineInvite {
                            invite_id: invite_id.clone(),
                            invitee: invitee.clone(),
                        }
                    })
                },
            )
            .await?;
        Ok(true)
    }

    /// Withdraws a pending invite (owners).
    async fn cancel(
        &self,
        ctx: &Context<'_>,
        project_id: ID,
        invite_id: String,
    ) -> ApiResult<Project> {
        run(
            ctx,
            &project_id,
            |p, a, _| policy::can_invite(p, a),
            |_| {
                Ok(ProjectCommand::CancelInvite {
                    invite_id: invite_id.clone(),
                })
            },
        )
        .await?;
        read::load(ctx, &project_id).await
    }
}

/// Leaves a project (the last owner cannot).
pub async fn leave(ctx: &Context<'_>, id: &str) -> ApiResult<bool> {
    let (_, user) = signed_in(ctx)?;
    run(
        ctx,
        id,
        |p, a, _| policy::can_leave_project(p, a),
        |_| {
            Ok(ProjectCommand::RemoveMember {
                user_id: user.clone(),
            })
        },
    )
    .await?;
    Ok(true)
}

/// `activeUserMutations.update` input.
#[derive(InputObject)]
pub struct UserUpdateInput {
    name: Option<String>,
    company: Option<String>,
    bio: Option<String>,
    avatar: Option<String>,
}

/// The signed-in user's own mutations.
pub struct ActiveUserMutations;

#[Object]
impl ActiveUserMutations {
    /// Email verification.
    async fn email_mutations(&self) -> super::email::ActiveUserEmailMutations {
        super::email::ActiveUserEmailMutations
    }

    /// Changes the caller's profile (`profile:write`).
    async fn update(&self, ctx: &Context<'_>, user: UserUpdateInput) -> ApiResult<User> {
        let (principal, id) = signed_in(ctx)?;
        policy::can_update_own_profile(&principal)?;
        let command = UserCommand::UpdateProfile {
            name: user.name,
            company: user.company,
            bio: user.bio,
            avatar: user.avatar,
        };
        services::bus(ctx)?
            .execute_once::<UserAggregate, _>(
                &id,
                idempotency::command_id(ctx),
                &super::mutations::metadata(ctx, &id),
                |_| Ok(command.clone()),
            )
            .await?;
        super::user::active_user(ctx)
            .await?
            .ok_or_else(|| gql_error(ErrorCode::NotFound, "User not found"))
    }
}

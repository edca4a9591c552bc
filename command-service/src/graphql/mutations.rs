//! Mutations: each builds a command, checks the policy on the state it is decided on, runs it
//! through the command bus (which waits for the read model), and answers from the read model.

use async_graphql::ID;
use async_graphql::{Context, InputObject, Object};
use domain::policy::{self, Principal, ProjectRole, Visibility};
use domain::project::ProjectState;
use domain::{EventMetadata, ProjectCommand};

use super::errors::{ErrorCode, gql_error};
use super::idempotency::{self, new_id};
use super::project::{self as read, Model, Project, ProjectVisibility, Version};
use super::services;
use crate::commands::{CommandError, ProjectAggregate};
use crate::context::RequestContext;
use crate::error::{ApiResult, AppError};

/// Refuses with `RATE_LIMIT_ERROR` when `user` is over `action`'s limit.
pub(crate) async fn rate_limited(ctx: &Context<'_>, action: &str, user: &str) -> ApiResult<()> {
    match services::limiter(ctx)?
        .check(action, &format!("u:{user}"))
        .await
    {
        crate::ratelimit::Verdict::Limited { reset_in } => Err(AppError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_ERROR",
            format!(
                "You are doing this too often. Try again in {} s.",
                reset_in.as_secs().max(1)
            ),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn signed_in(ctx: &Context<'_>) -> ApiResult<(Principal, String)> {
    let principal = ctx.data::<Principal>()?.clone();
    let user = principal
        .user_id
        .clone()
        .ok_or_else(|| gql_error(ErrorCode::Unauthorized, "You must be signed in to do this."))?;
    Ok((principal, user))
}

pub(crate) fn metadata(ctx: &Context<'_>, user: &str) -> EventMetadata {
    ctx.data::<RequestContext>()
        .map(|c| c.metadata(Some(user.to_owned()), None))
        .unwrap_or_default()
}

/// Runs a project command after `check` passes on the state it is decided on.
pub(crate) async fn run(
    ctx: &Context<'_>,
    project_id: &str,
    check: impl Fn(&Principal, &policy::ProjectAccess, &domain::project::Project) -> policy::Decision,
    command: impl Fn(&domain::project::Project) -> Result<ProjectCommand, CommandError>,
) -> ApiResult<()> {
    let (principal, user) = signed_in(ctx)?;
    services::bus(ctx)?
        .execute_once::<ProjectAggregate, _>(
            project_id,
            idempotency::command_id(ctx),
            &metadata(ctx, &user),
            |s: &ProjectState| {
                let project = s
                    .project()
                    .ok_or_else(|| CommandError::Denied(policy::Denied::project_not_found()))?;
                let access = project.access_for(Some(&user));
                if let Err(d) = policy::can_read_project(&principal, &access) {
                    // Do not reveal a private project to those who may not read it.
                    return Err(CommandError::Denied(d));
                }
                check(&principal, &access, project).map_err(CommandError::Denied)?;
                command(project)
            },
        )
        .await?;
    Ok(())
}

fn ids(ids: &[ID]) -> Vec<String> {
    ids.iter().map(|id| id.0.clone()).collect()
}

fn visibility_in(v: Option<ProjectVisibility>) -> ApiResult<Option<Visibility>> {
    v.map(|v| match v {
        ProjectVisibility::Private => Ok(Visibility::Private),
        ProjectVisibility::Unlisted => Ok(Visibility::Unlisted),
        ProjectVisibility::Public => Ok(Visibility::Public),
        ProjectVisibility::Workspace => Err(super::workspaces::disabled()),
    })
    .transpose()
}

/// Each version may be changed by its author or an owner.
fn can_change_versions(
    p: &Principal,
    a: &policy::ProjectAccess,
    project: &domain::project::Project,
    ids: &[String],
) -> policy::Decision {
    ids.iter().try_for_each(|id| {
        let author = project
            .versions
            .get(id)
            .map(|v| v.author_id.as_str())
            .unwrap_or_default();
        policy::can_update_version(p, a, author)
    })
}

/// `projectMutations.create` input.
#[derive(InputObject)]
pub struct ProjectCreateInput {
    name: Option<String>,
    description: Option<String>,
    visibility: Option<ProjectVisibility>,
}

/// `projectMutations.update` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectUpdateInput {
    id: ID,
    name: Option<String>,
    description: Option<String>,
    visibility: Option<ProjectVisibility>,
    allow_public_comments: Option<bool>,
}

/// `projectMutations.updateRole` input: a null role removes the member.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectUpdateRoleInput {
    project_id: String,
    user_id: String,
    role: Option<String>,
}

/// Project mutations.
pub struct ProjectMutations;

#[Object]
impl ProjectMutations {
    /// Creates a private project (unless told otherwise) owned by the caller.
    async fn create(
        &self,
        ctx: &Context<'_>,
        input: Option<ProjectCreateInput>,
    ) -> ApiResult<Project> {
        let (principal, user) = signed_in(ctx)?;
        policy::can_create_project(
            &principal,
            services::settings(ctx)?.guests_may_create_projects,
        )?;
        rate_limited(ctx, "STREAM_CREATE", &user).await?;
        let id = new_id(ctx);
        // No input: every field takes its default.
        let input = input.unwrap_or(ProjectCreateInput {
            name: None,
            description: None,
            visibility: None,
        });
        let through = domain::project::CreatedThrough::Current;
        let command = ProjectCommand::Create {
            id: id.clone(),
            name: through.name_or_default(input.name, &id),
            description: input.description,
            // Not given: the API's default visibility.
            visibility: visibility_in(input.visibility)?.unwrap_or(through.default_visibility()),
            owner_user_id: user.clone(),
            default_model_id: None,
        };
        services::bus(ctx)?
            .execute_once::<ProjectAggregate, _>(
                &id,
                idempotency::command_id(ctx),
                &metadata(ctx, &user),
                |_| Ok(command.clone()),
            )
            .await?;
        read::load(ctx, &id).await
    }

    /// Changes name, description, visibility or comment settings (owners).
    async fn update(&self, ctx: &Context<'_>, update: ProjectUpdateInput) -> ApiResult<Project> {
        update_project(
            ctx,
            &update.id,
            update.name.clone(),
            update.description.clone(),
            visibility_in(update.visibility)?,
            update.allow_public_comments,
        )
        .await?;
        read::load(ctx, &update.id).await
    }

    /// Deletes the project and everything in it (owners; admins).
    async fn delete(&self, ctx: &Context<'_>, id: String) -> ApiResult<bool> {
        delete_project(ctx, &id).await?;
        Ok(true)
    }

    /// Invite mutations.
    async fn model_ingestion_mutations(&self) -> super::ingestion::ModelIngestionMutations {
        super::ingestion::ModelIngestionMutations
    }

    /// Invite mutations.
    async fn invites(&self) -> super::team::InviteMutations {
        super::team::InviteMutations
    }

    /// Leaves the project (the last owner cannot).
    async fn leave(&self, ctx: &Context<'_>, id: String) -> ApiResult<bool> {
        super::team::leave(ctx, &id).await
    }

    /// Gives a user a role in the project, or removes them with a null role (owners).
    async fn update_role(
        &self,
        ctx: &Context<'_>,
        input: ProjectUpdateRoleInput,
    ) -> ApiResult<Project> {
        let role = input.role.as_deref().map(project_role).transpose()?;
        set_member_role(ctx, &input.project_id, &input.user_id, role).await?;
        read::load(ctx, &input.project_id).await
    }
}

/// `modelMutations.create` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct CreateModelInput {
    project_id: ID,
    name: String,
    description: Option<String>,
}

/// `modelMutations.update` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct UpdateModelInput {
    project_id: ID,
    id: ID,
    name: Option<String>,
    description: Option<String>,
}

/// `modelMutations.delete` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct DeleteModelInput {
    project_id: ID,
    id: ID,
}

/// Model mutations.
pub struct ModelMutations;

#[Object]
impl ModelMutations {
    /// Creates a model; names are tidied (`a / b` → `a/b`) and unique per project, whatever the case.
    async fn create(&self, ctx: &Context<'_>, input: CreateModelInput) -> ApiResult<Model> {
        let name = domain::ModelName::tidy(&input.name);
        let model_id =
            create_model(ctx, &input.project_id, name, input.description.clone()).await?;
        read::model_by_id(ctx, &model_id).await
    }

    /// Renames or re-describes a model.
    async fn update(&self, ctx: &Context<'_>, input: UpdateModelInput) -> ApiResult<Model> {
        update_model(
            ctx,
            &input.project_id,
            &input.id,
            input.name.clone(),
            input.description.clone(),
        )
        .await?;
        read::model_by_id(ctx, &input.id).await
    }

    /// Deletes a model with its versions (its author, or an owner).
    async fn delete(&self, ctx: &Context<'_>, input: DeleteModelInput) -> ApiResult<bool> {
        delete_model(ctx, &input.project_id, &input.id).await?;
        Ok(true)
    }
}

/// `versionMutations.create` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct CreateVersionInput {
    project_id: String,
    model_id: String,
    object_id: String,
    message: Option<String>,
    source_application: Option<String>,
    total_children_count: Option<i32>,
    parents: Option<Vec<String>>,
}

/// `versionMutations.update` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct UpdateVersionInput {
    project_id: ID,
    version_id: ID,
    message: Option<String>,
}

/// `versionMutations.delete` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct DeleteVersionsInput {
    project_id: ID,
    version_ids: Vec<ID>,
}

/// `versionMutations.moveToModel` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct MoveVersionsInput {
    project_id: ID,
    version_ids: Vec<ID>,
    target_model_name: String,
}

/// `versionMutations.markReceived` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct MarkReceivedVersionInput {
    project_id: String,
    version_id: String,
    source_application: String,
    message: Option<String>,
}

/// Version mutations.
pub struct VersionMutations;

#[Object]
impl VersionMutations {
    /// Records a version of a model pointing at a root object.
    async fn create(&self, ctx: &Context<'_>, input: CreateVersionInput) -> ApiResult<Version> {
        let (_, user) = signed_in(ctx)?;
        let root = version_root(ctx, &user, &input.project_id, &input.object_id).await?;
        let version_id = new_id(ctx);
        let count = root.children_count(input.total_children_count);
        run(
            ctx,
            &input.project_id,
            |p, a, _| policy::can_create_version(p, a),
            |_| {
                Ok(ProjectCommand::CreateVersion {
                    version_id: version_id.clone(),
                    model_id: input.model_id.clone(),
                    object_id: input.object_id.clone(),
                    root_object_stored: root.stored,
                    message: input.message.clone(),
                    source_application: input.source_application.clone(),
                    total_children_count: count,
                    parents: input.parents.clone().unwrap_or_default(),
                    author_id: user.clone(),
                })
            },
        )
        .await?;
        read::version_by_id(ctx, &version_id).await
    }

    /// Changes a version's message (its author, or an owner).
    async fn update(&self, ctx: &Context<'_>, input: UpdateVersionInput) -> ApiResult<Version> {
        let version_id = input.version_id.0.clone();
        let Some(message) = input.message.clone().filter(|m| !m.is_empty()) else {
            return Err(gql_error(ErrorCode::BadRequest, "Nothing to update"));
        };
        update_version_message(ctx, &input.project_id, &version_id, message).await?;
        read::version_by_id(ctx, &version_id).await
    }

    /// Deletes versions (each by its author, or an owner).
    async fn delete(&self, ctx: &Context<'_>, input: DeleteVersionsInput) -> ApiResult<bool> {
        delete_versions(ctx, &input.project_id, ids(&input.version_ids)).await?;
        Ok(true)
    }

    /// Moves versions to the model of that name (tidied as in `modelMutations.create`),
    /// creating it when absent.
    async fn move_to_model(&self, ctx: &Context<'_>, input: MoveVersionsInput) -> ApiResult<Model> {
        // Tidied as `modelMutations.create` tidies, so the model it may create is the one
        // read back (and the one a later create of the same name would find).
        let name = domain::ModelName::tidy(&input.target_model_name);
        move_versions(ctx, &input.project_id, ids(&input.version_ids), &name).await?;
        read::model_by_name_in(ctx, &input.project_id, &name).await
    }

    /// Records that the caller received a version in an application.
    async fn mark_received(
        &self,
        ctx: &Context<'_>,
        input: MarkReceivedVersionInput,
    ) -> ApiResult<bool> {
        mark_received(
            ctx,
            &input.project_id,
            &input.version_id,
            &input.source_application,
            input.message.clone(),
        )
        .await?;
        Ok(true)
    }
}

// Operations both APIs issue (the current API's resolvers and `graphql::legacy` map their
// wire inputs onto these).

/// What the object store says about a version's root object.
pub(crate) struct RootObject {
    /// Whether the project holds it.
    pub(crate) stored: bool,
    /// Its closure's size, when stored.
    closure_size: Option<i64>,
}

impl RootObject {
    /// A version's `totalChildrenCount` ([`domain::project::total_children_count`]).
    pub(crate) fn children_count(&self, given: Option<i32>) -> u32 {
        domain::project::total_children_count(given, self.closure_size)
    }
}

/// Looks the root object up in the project's object store (the source of truth: objects always
/// arrive before the version that points at them). The domain refuses a version whose root is
/// not stored, after the caller's rights were checked, so nothing leaks to outsiders.
/// The root object of a version `user` is about to create, looked up while the caller's
/// `COMMIT_CREATE` rate is checked: neither needs the other, so the command waits for one
/// round trip instead of two. A caller over the rate is refused whatever the lookup found.
pub(crate) async fn version_root(
    ctx: &Context<'_>,
    user: &str,
    project_id: &str,
    object_id: &str,
) -> ApiResult<RootObject> {
    let (limited, root) = tokio::join!(
        rate_limited(ctx, "COMMIT_CREATE", user),
        root_object(ctx, project_id, object_id)
    );
    limited?;
    root
}

pub(crate) async fn root_object(
    ctx: &Context<'_>,
    project_id: &str,
    object_id: &str,
) -> ApiResult<RootObject> {
    let closure_size =
        schema::objects::children_count(services::pool(ctx)?, project_id, object_id).await?;
    Ok(RootObject {
        stored: closure_size.is_some(),
        closure_size,
    })
}

/// Changes a project's settings (owners).
pub(crate) async fn update_project(
    ctx: &Context<'_>,
    id: &str,
    name: Option<String>,
    description: Option<String>,
    visibility: Option<Visibility>,
    allow_public_comments: Option<bool>,
) -> ApiResult<()> {
    run(
        ctx,
        id,
        |p, a, _| policy::can_update_project(p, a),
        |_| {
            Ok(ProjectCommand::Update {
                name: name.clone(),
                description: description.clone(),
                visibility,
                allow_public_comments,
            })
        },
    )
    .await
}

/// Deletes a project (owners; admins).
pub(crate) async fn delete_project(ctx: &Context<'_>, id: &str) -> ApiResult<()> {
    run(
        ctx,
        id,
        |p, a, _| policy::can_delete_project(p, a),
        |_| Ok(ProjectCommand::Delete),
    )
    .await
}

/// Gives `user_id` a role, or removes them with `None` (owners).
pub(crate) async fn set_member_role(
    ctx: &Context<'_>,
    project_id: &str,
    user_id: &str,
    role: Option<ProjectRole>,
) -> ApiResult<()> {
    let target_role = projections::speckle::query::user_role(services::pool(ctx)?, user_id).await?;
    let target_role: domain::policy::ServerRole = target_role
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| gql_error(ErrorCode::NotFound, "User not found"))?;
    run(
        ctx,
        project_id,
        |p, a, _| policy::can_set_member_role(p, a, user_id),
        |_| {
            Ok(match role {
                Some(role) => ProjectCommand::SetMemberRole {
                    user_id: user_id.to_owned(),
                    role,
                    user_server_role: target_role,
                },
                None => ProjectCommand::RemoveMember {
                    user_id: user_id.to_owned(),
                },
            })
        },
    )
    .await
}

/// A project role from its wire name (`stream:owner`, …).
pub(crate) fn project_role(role: &str) -> ApiResult<ProjectRole> {
    role.parse()
        .map_err(|e: domain::policy::UnknownRole| gql_error(ErrorCode::BadRequest, e.to_string()))
}

/// Creates a model named `name` (already tidied); returns its id.
pub(crate) async fn create_model(
    ctx: &Context<'_>,
    project_id: &str,
    name: String,
    description: Option<String>,
) -> ApiResult<String> {
    let (_, user) = signed_in(ctx)?;
    let model_id = new_id(ctx);
    run(
        ctx,
        project_id,
        |p, a, _| policy::can_create_model(p, a),
        |_| {
            Ok(ProjectCommand::CreateModel {
                model_id: model_id.clone(),
                name: name.clone(),
                description: description.clone(),
                author_id: user.clone(),
            })
        },
    )
    .await?;
    Ok(model_id)
}

/// Renames or re-describes a model.
pub(crate) async fn update_model(
    ctx: &Context<'_>,
    project_id: &str,
    model_id: &str,
    name: Option<String>,
    description: Option<String>,
) -> ApiResult<()> {
    run(
        ctx,
        project_id,
        |p, a, _| policy::can_update_model(p, a),
        |_| {
            Ok(ProjectCommand::UpdateModel {
                model_id: model_id.to_owned(),
                name: name.clone(),
                description: description.clone(),
            })
        },
    )
    .await
}

/// Deletes a model with its versions (its author, or an owner).
pub(crate) async fn delete_model(
    ctx: &Context<'_>,
    project_id: &str,
    model_id: &str,
) -> ApiResult<()> {
    run(
        ctx,
        project_id,
        |p, a, project| {
            policy::can_delete_model(
                p,
                a,
                project.models.get(model_id).map(|m| m.author_id.as_str()),
            )
        },
        |_| {
            Ok(ProjectCommand::DeleteModel {
                model_id: model_id.to_owned(),
            })
        },
    )
    .await
}

/// Changes a version's message (its author, or an owner).
pub(crate) async fn update_version_message(
    ctx: &Context<'_>,
    project_id: &str,
    version_id: &str,
    message: String,
) -> ApiResult<()> {
    let ids = [version_id.to_owned()];
    run(
        ctx,
        project_id,
        |p, a, project| can_change_versions(p, a, project, &ids),
        |_| {
            Ok(ProjectCommand::UpdateVersion {
                version_id: version_id.to_owned(),
                message: message.clone(),
            })
        },
    )
    .await
}

/// Deletes versions (each by its author, or an owner).
pub(crate) async fn delete_versions(
    ctx: &Context<'_>,
    project_id: &str,
    ids: Vec<String>,
) -> ApiResult<()> {
    run(
        ctx,
        project_id,
        |p, a, project| can_change_versions(p, a, project, &ids),
        |_| {
            Ok(ProjectCommand::DeleteVersions {
                version_ids: ids.clone(),
            })
        },
    )
    .await
}

/// Moves versions to the model named `target` (created when absent).
pub(crate) async fn move_versions(
    ctx: &Context<'_>,
    project_id: &str,
    ids: Vec<String>,
    target: &str,
) -> ApiResult<()> {
    let (_, user) = signed_in(ctx)?;
    let new_model_id = new_id(ctx);
    run(
        ctx,
        project_id,
        |p, a, project| can_change_versions(p, a, project, &ids),
        |_| {
            Ok(ProjectCommand::MoveVersions {
                version_ids: ids.clone(),
                target_model_name: target.to_owned(),
                new_model_id: new_model_id.clone(),
                author_id: user.clone(),
            })
        },
    )
    .await
}

/// Records that the caller received a version.
pub(crate) async fn mark_received(
    ctx: &Context<'_>,
    project_id: &str,
    version_id: &str,
    source_application: &str,
    message: Option<String>,
) -> ApiResult<()> {
    let (_, user) = signed_in(ctx)?;
    run(
        ctx,
        project_id,
        |p, a, _| policy::can_mark_received(p, a),
        |_| {
            Ok(ProjectCommand::MarkVersionReceived {
                version_id: version_id.to_owned(),
                user_id: user.clone(),
                source_application: source_application.to_owned(),
                message: message.clone(),
            })
        },
    )
    .await
}

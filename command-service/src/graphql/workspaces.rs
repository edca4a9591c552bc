//! Workspaces, as the original answers with its workspaces module off: the types exist so every
//! client's documents validate, and each entry point answers cleanly. `workspace(id)`,
//! `User.workspaces` and project creation in a workspace raise
//! `WORKSPACES_MODULE_DISABLED_ERROR`; `User.activeWorkspace` is null.
//!
//! No workspace value is ever built: each type wraps [`Infallible`], so the compiler proves the
//! field resolvers unreachable.

// The derive wraps each resolver's (uninhabited) body in code the compiler then calls
// unreachable: that is the point of these types.
#![allow(unreachable_code)]

use std::convert::Infallible;

use async_graphql::{Context, ErrorExtensions, ID, InputObject, Object};
use time::OffsetDateTime;

use super::admin::ProjectCollection;
use super::project::{PermissionCheckResult, Project, ProjectVisibility};
use crate::error::{ApiResult, AppError};

/// The original's code and message for any use of workspaces on a server without them.
pub(crate) fn disabled() -> AppError {
    AppError::from(
        async_graphql::Error::new("Workspaces are not enabled on this server").extend_with(
            |_, e| {
                e.set("code", "WORKSPACES_MODULE_DISABLED_ERROR");
                e.set("statusCode", 403);
            },
        ),
    )
}

/// `workspace(id)`: always refused here.
pub(crate) fn workspace(_id: &str) -> ApiResult<Workspace> {
    Err(disabled())
}

/// A workspace (never served).
pub struct Workspace(Infallible);

#[Object]
impl Workspace {
    async fn id(&self) -> ID {
        match self.0 {}
    }
    async fn name(&self) -> String {
        match self.0 {}
    }
    async fn slug(&self) -> String {
        match self.0 {}
    }
    async fn description(&self) -> Option<String> {
        match self.0 {}
    }
    async fn created_at(&self) -> OffsetDateTime {
        match self.0 {}
    }
    async fn updated_at(&self) -> OffsetDateTime {
        match self.0 {}
    }
    async fn logo(&self) -> Option<String> {
        match self.0 {}
    }
    async fn role(&self) -> Option<String> {
        match self.0 {}
    }
    async fn read_only(&self) -> bool {
        match self.0 {}
    }
    async fn creation_state(&self) -> Option<WorkspaceCreationState> {
        match self.0 {}
    }
    async fn permissions(&self) -> WorkspacePermissionChecks {
        match self.0 {}
    }
    async fn projects(
        &self,
        #[graphql(name = "limit", default = 25)] _limit: i32,
        #[graphql(name = "cursor")] _cursor: Option<String>,
        #[graphql(name = "filter")] _filter: Option<WorkspaceProjectsFilter>,
    ) -> ProjectCollection {
        match self.0 {}
    }
}

/// A workspace as people outside it see it (never served).
pub struct LimitedWorkspace(Infallible);

#[Object]
impl LimitedWorkspace {
    async fn id(&self) -> ID {
        match self.0 {}
    }
    async fn name(&self) -> String {
        match self.0 {}
    }
    async fn slug(&self) -> String {
        match self.0 {}
    }
    async fn description(&self) -> Option<String> {
        match self.0 {}
    }
    async fn role(&self) -> Option<String> {
        match self.0 {}
    }
    async fn logo(&self) -> Option<String> {
        match self.0 {}
    }
}

/// A page of workspaces (never served).
pub struct WorkspaceCollection(Infallible);

#[Object]
impl WorkspaceCollection {
    async fn total_count(&self) -> i32 {
        match self.0 {}
    }
    async fn cursor(&self) -> Option<String> {
        match self.0 {}
    }
    async fn items(&self) -> Vec<Workspace> {
        match self.0 {}
    }
}

/// Whether a workspace finished its setup (never served).
pub struct WorkspaceCreationState(Infallible);

#[Object]
impl WorkspaceCreationState {
    async fn completed(&self) -> bool {
        match self.0 {}
    }
}

/// What the caller may do in a workspace (never served).
pub struct WorkspacePermissionChecks(Infallible);

#[Object]
impl WorkspacePermissionChecks {
    async fn can_create_project(&self) -> PermissionCheckResult {
        match self.0 {}
    }
}

/// Filters of `User.workspaces`.
#[derive(InputObject)]
pub struct UserWorkspacesFilter {
    /// Part of the name.
    pub search: Option<String>,
    /// Only workspaces whose setup is (not) complete.
    pub completed: Option<bool>,
}

/// Filters of `Workspace.projects`.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct WorkspaceProjectsFilter {
    /// Part of the project name.
    pub search: Option<String>,
    /// Only projects the caller has a role in.
    pub with_project_role_only: Option<bool>,
}

/// `workspaceMutations.projects.create` input.
#[derive(InputObject)]
#[graphql(rename_fields = "camelCase")]
pub struct WorkspaceProjectCreateInput {
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Visibility.
    pub visibility: Option<ProjectVisibility>,
    /// The workspace.
    pub workspace_id: String,
}

/// `workspaceMutations`: present, as in the original; every operation in it is refused.
pub struct WorkspaceMutations;

#[Object]
impl WorkspaceMutations {
    /// Projects in workspaces.
    async fn projects(&self) -> WorkspaceProjectMutations {
        WorkspaceProjectMutations
    }
}

/// `workspaceMutations.projects`.
pub struct WorkspaceProjectMutations;

#[Object]
impl WorkspaceProjectMutations {
    /// Creating a project in a workspace: refused, there are no workspaces. (The original's
    /// disabled module fails here with a null-propagation `INTERNAL_SERVER_ERROR`; this says why.)
    async fn create(
        &self,
        _ctx: &Context<'_>,
        input: WorkspaceProjectCreateInput,
    ) -> ApiResult<Project> {
        tracing::debug!(workspace = %input.workspace_id, "workspace project create refused");
        Err(disabled())
    }
}

//! The one authorization policy: who may do what to a project, decided from facts.
//!
//! Every GraphQL resolver and REST route asks this module, so the rules live in one place and
//! one exhaustive test covers them. Functions take facts the caller has already loaded (the
//! [`Principal`] from the request, the [`ProjectAccess`] from the project) and return
//! `Ok(())` or a [`Denied`] carrying the wire error code.
//!
//! The rules follow the original (speckle-server `packages/shared/src/authz`, snapshot
//! 51d43b91c4), without its workspace parts:
//! - token scopes are checked only when the request carries a token (`scopes: Some`), as
//!   `@hasScope` does; reads need `streams:read`, writes `streams:write`;
//! - a public (or unlisted) project is readable by anyone, anonymous included;
//! - otherwise a caller needs a server role of at least guest (so archived users can read
//!   nothing but public projects) and a project role;
//! - writes need contributor (models, versions) or owner (project settings, members); owner-level
//!   writes also need server role user or above, as in the original;
//! - server admins are not implicit project members: they can read every project and delete
//!   any project (the original's `canDeleteProjectPolicy`), nothing else;
//! - deleting a model or changing a version needs its author or a project owner.
//!
//! Codes: `UNAUTHORIZED` for an anonymous caller where a user is needed, `FORBIDDEN` for any
//! other refusal (including a non-member of a private project: the original says FORBIDDEN,
//! which reveals only that the id exists), and `STREAM_NOT_FOUND` via
//! [`Denied::project_not_found`] when the project does not exist or was deleted.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `Display` and `FromStr` by wire name for `$ty`, an enum with `ALL` and `as_str`; an unknown
/// name is an `$unknown`.
macro_rules! wire_name_traits {
    ($ty:ty, $unknown:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = $unknown;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $unknown(s.to_owned()))
            }
        }
    };
}

/// A user's role on the whole server; decides what they may do outside any project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ServerRole {
    /// `server:admin`: administers the server; the first registered user.
    #[serde(rename = "server:admin")]
    Admin,
    /// `server:user`: a regular account.
    #[serde(rename = "server:user")]
    User,
    /// `server:guest`: invited with limited rights (cannot create or own projects).
    #[serde(rename = "server:guest")]
    Guest,
    /// `server:archived-user`: a disabled account that can only read public projects.
    #[serde(rename = "server:archived-user")]
    ArchivedUser,
}

impl ServerRole {
    /// Every role, strongest first.
    pub const ALL: [ServerRole; 4] = [Self::Admin, Self::User, Self::Guest, Self::ArchivedUser];

    /// The wire name, e.g. `server:admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "server:admin",
            Self::User => "server:user",
            Self::Guest => "server:guest",
            Self::ArchivedUser => "server:archived-user",
        }
    }

    /// The original's weight; a role satisfies any requirement of lower or equal weight.
    pub fn weight(self) -> u32 {
        match self {
            Self::Admin => 1000,
            Self::User => 100,
            Self::Guest => 50,
            Self::ArchivedUser => 10,
        }
    }

    /// Whether this role meets a minimum of `min`.
    pub fn at_least(self, min: ServerRole) -> bool {
        self.weight() >= min.weight()
    }
}

wire_name_traits!(ServerRole, UnknownRole);

/// A user's role in one project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProjectRole {
    /// `stream:owner`: settings, members, everything.
    #[serde(rename = "stream:owner")]
    Owner,
    /// `stream:contributor`: creates models and versions.
    #[serde(rename = "stream:contributor")]
    Contributor,
    /// `stream:reviewer`: reads (and comments).
    #[serde(rename = "stream:reviewer")]
    Reviewer,
}

impl ProjectRole {
    /// Every role, strongest first.
    pub const ALL: [ProjectRole; 3] = [Self::Owner, Self::Contributor, Self::Reviewer];

    /// The wire name, e.g. `stream:owner`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "stream:owner",
            Self::Contributor => "stream:contributor",
            Self::Reviewer => "stream:reviewer",
        }
    }

    /// The original's weight.
    pub fn weight(self) -> u32 {
        match self {
            Self::Owner => 1000,
            Self::Contributor => 500,
            Self::Reviewer => 100,
        }
    }

    /// Whether this role meets a minimum of `min`.
    pub fn at_least(self, min: ProjectRole) -> bool {
        self.weight() >= min.weight()
    }
}

wire_name_traits!(ProjectRole, UnknownRole);

/// A role name that is not one of the known wire names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

/// Who may see a project without being a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Visibility {
    /// Members only.
    Private,
    /// Anyone with the link. The original stores it as public and reads it back as `PUBLIC`;
    /// the project aggregate does the same (see [`Visibility::effective`]).
    Unlisted,
    /// Anyone, anonymous included.
    Public,
}

impl Visibility {
    /// Every visibility.
    pub const ALL: [Visibility; 3] = [Self::Private, Self::Unlisted, Self::Public];

    /// Maps the legacy `isPublic` flag.
    pub fn from_is_public(is_public: bool) -> Self {
        if is_public {
            Self::Public
        } else {
            Self::Private
        }
    }

    /// The legacy `isPublic` flag.
    pub fn is_public(self) -> bool {
        !matches!(self, Self::Private)
    }

    /// What the original stores: `UNLISTED` becomes `PUBLIC`.
    pub fn effective(self) -> Self {
        match self {
            Self::Unlisted => Self::Public,
            other => other,
        }
    }

    /// The wire name, e.g. `PRIVATE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "PRIVATE",
            Self::Unlisted => "UNLISTED",
            Self::Public => "PUBLIC",
        }
    }
}

wire_name_traits!(Visibility, UnknownVisibility);

/// A visibility name that is not one of the known wire names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown visibility {0:?}")]
pub struct UnknownVisibility(pub String);

/// A token scope, e.g. `streams:read`: what a token may be used for, whatever its user may do.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(Cow<'static, str>);

/// A string that is not a well-formed scope name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid scope: use 1-100 characters a-z, 0-9, ':', '-', '_' (or \"*\")")]
pub struct InvalidScope(pub String);

impl Scope {
    /// Read projects, models, versions and objects.
    pub const STREAMS_READ: Scope = Scope(Cow::Borrowed("streams:read"));
    /// Create and change projects, models and versions.
    pub const STREAMS_WRITE: Scope = Scope(Cow::Borrowed("streams:write"));
    /// Read one's own profile.
    pub const PROFILE_READ: Scope = Scope(Cow::Borrowed("profile:read"));
    /// Change one's own profile.
    pub const PROFILE_WRITE: Scope = Scope(Cow::Borrowed("profile:write"));
    /// Read one's own email address.
    pub const PROFILE_EMAIL: Scope = Scope(Cow::Borrowed("profile:email"));
    /// Delete one's own account.
    pub const PROFILE_DELETE: Scope = Scope(Cow::Borrowed("profile:delete"));
    /// Read other users' public profiles.
    pub const USERS_READ: Scope = Scope(Cow::Borrowed("users:read"));
    /// Read other users' email addresses (admins only).
    pub const USERS_EMAIL: Scope = Scope(Cow::Borrowed("users:email"));
    /// Invite people to the server and to projects.
    pub const USERS_INVITE: Scope = Scope(Cow::Borrowed("users:invite"));
    /// Read server statistics.
    pub const SERVER_STATS: Scope = Scope(Cow::Borrowed("server:stats"));
    /// Change server settings.
    pub const SERVER_SETUP: Scope = Scope(Cow::Borrowed("server:setup"));
    /// List one's tokens.
    pub const TOKENS_READ: Scope = Scope(Cow::Borrowed("tokens:read"));
    /// Create and revoke tokens.
    pub const TOKENS_WRITE: Scope = Scope(Cow::Borrowed("tokens:write"));
    /// List applications.
    pub const APPS_READ: Scope = Scope(Cow::Borrowed("apps:read"));
    /// Create and change applications.
    pub const APPS_WRITE: Scope = Scope(Cow::Borrowed("apps:write"));
    /// Automate: report function results.
    pub const AUTOMATE_REPORT_RESULTS: Scope = Scope(Cow::Borrowed("automate:report-results"));
    /// Automate: read functions.
    pub const AUTOMATE_FUNCTIONS_READ: Scope = Scope(Cow::Borrowed("automate-functions:read"));
    /// Automate: change functions.
    pub const AUTOMATE_FUNCTIONS_WRITE: Scope = Scope(Cow::Borrowed("automate-functions:write"));
    /// Workspaces: create.
    pub const WORKSPACE_CREATE: Scope = Scope(Cow::Borrowed("workspace:create"));
    /// Workspaces: read.
    pub const WORKSPACE_READ: Scope = Scope(Cow::Borrowed("workspace:read"));
    /// Workspaces: update.
    pub const WORKSPACE_UPDATE: Scope = Scope(Cow::Borrowed("workspace:update"));
    /// Workspaces: delete.
    pub const WORKSPACE_DELETE: Scope = Scope(Cow::Borrowed("workspace:delete"));
    /// Workspaces: billing.
    pub const WORKSPACE_BILLING: Scope = Scope(Cow::Borrowed("workspace:billing"));
    /// Every scope at once; the original's scope check accepts it.
    pub const WILDCARD: Scope = Scope(Cow::Borrowed("*"));

    /// Every scope the original registers at startup (§3.2 of the wire notes).
    pub const KNOWN: [Scope; 23] = [
        Self::STREAMS_READ,
        Self::STREAMS_WRITE,
        Self::PROFILE_READ,
        Self::PROFILE_WRITE,
        Self::PROFILE_EMAIL,
        Self::PROFILE_DELETE,
        Self::USERS_READ,
        Self::USERS_EMAIL,
        Self::USERS_INVITE,
        Self::SERVER_STATS,
        Self::SERVER_SETUP,
        Self::TOKENS_READ,
        Self::TOKENS_WRITE,
        Self::APPS_READ,
        Self::APPS_WRITE,
        Self::AUTOMATE_REPORT_RESULTS,
        Self::AUTOMATE_FUNCTIONS_READ,
        Self::AUTOMATE_FUNCTIONS_WRITE,
        Self::WORKSPACE_CREATE,
        Self::WORKSPACE_READ,
        Self::WORKSPACE_UPDATE,
        Self::WORKSPACE_DELETE,
        Self::WORKSPACE_BILLING,
    ];

    /// Validates a scope name: 1 to 100 of `a-z 0-9 : - _`, or exactly `*`. Unknown but
    /// well-formed names are accepted, so a token minted by a newer client still parses.
    pub fn parse(raw: &str) -> Result<Self, InvalidScope> {
        let ok = raw == "*"
            || (!raw.is_empty()
                && raw.len() <= 100
                && raw.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b':' | b'-' | b'_')
                }));
        if ok {
            Ok(Self(Cow::Owned(raw.to_owned())))
        } else {
            Err(InvalidScope(raw.to_owned()))
        }
    }

    /// The scope name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether third-party apps may request it (the original marks these `public`).
    pub fn is_public(&self) -> bool {
        [
            Self::STREAMS_READ,
            Self::STREAMS_WRITE,
            Self::PROFILE_READ,
            Self::PROFILE_WRITE,
            Self::PROFILE_EMAIL,
            Self::USERS_READ,
            Self::SERVER_STATS,
        ]
        .contains(self)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Scope {
    type Error = InvalidScope;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Scope> for String {
    fn from(value: Scope) -> Self {
        value.0.into_owned()
    }
}

/// Who is asking: the facts about the caller that every decision needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The authenticated user; `None` for an anonymous request.
    pub user_id: Option<String>,
    /// The user's server role; `None` when anonymous, or when the user has no role (treated
    /// as having no access to the server).
    pub server_role: Option<ServerRole>,
    /// The token's scopes. `None` means the request is not limited by a token's scopes (an
    /// anonymous request or a first-party session) and passes every scope check.
    pub scopes: Option<BTreeSet<Scope>>,
}

impl Principal {
    /// An unauthenticated caller.
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// A user acting without token-scope limits.
    pub fn user(user_id: impl Into<String>, server_role: ServerRole) -> Self {
        Self {
            user_id: Some(user_id.into()),
            server_role: Some(server_role),
            scopes: None,
        }
    }

    /// The same caller, limited to `scopes` (a request made with a token).
    pub fn with_scopes(mut self, scopes: impl IntoIterator<Item = Scope>) -> Self {
        self.scopes = Some(scopes.into_iter().collect());
        self
    }

    /// Whether the request's token (if any) grants `scope`.
    pub fn has_scope(&self, scope: &Scope) -> bool {
        match &self.scopes {
            None => true,
            Some(s) => s.contains(scope) || s.contains(&Scope::WILDCARD),
        }
    }

    /// Whether `user_id` is the caller.
    pub fn is(&self, user_id: &str) -> bool {
        self.user_id.as_deref() == Some(user_id)
    }
}

/// Facts about a project as seen by one principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProjectAccess {
    /// The project's visibility.
    pub visibility: Visibility,
    /// The principal's explicit role in the project, if a member.
    pub role_of_principal: Option<ProjectRole>,
}

/// The wire error code of a refusal (`extensions.code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyCode {
    /// `UNAUTHORIZED`: the caller must sign in.
    Unauthorized,
    /// `FORBIDDEN`: the caller may not do this.
    Forbidden,
    /// `STREAM_NOT_FOUND`: the project does not exist (or no longer does).
    StreamNotFound,
}

impl DenyCode {
    /// The code as clients see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::StreamNotFound => "STREAM_NOT_FOUND",
        }
    }
}

/// The finer reason, named like the original's policy error codes, which Speckle exposes in
/// permission checks (`Project.permissions.canUpdate.code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// Anonymous where a user is needed.
    ServerNoSession,
    /// The user has no (usable) server role, e.g. archived.
    ServerNoAccess,
    /// The server role is too weak, e.g. a guest creating a project.
    ServerNotEnoughPermissions,
    /// Not a member of the project.
    ProjectNoAccess,
    /// A member, but the role is too weak.
    ProjectNotEnoughPermissions,
    /// No such project.
    ProjectNotFound,
    /// The request's token lacks a scope.
    MissingScope,
    /// A rule about the specific target, e.g. changing one's own role.
    NotAllowed,
}

impl DenyReason {
    /// The reason's code string, e.g. `ProjectNoAccess`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServerNoSession => "ServerNoSession",
            Self::ServerNoAccess => "ServerNoAccess",
            Self::ServerNotEnoughPermissions => "ServerNotEnoughPermissions",
            Self::ProjectNoAccess => "ProjectNoAccess",
            Self::ProjectNotEnoughPermissions => "ProjectNotEnoughPermissions",
            Self::ProjectNotFound => "ProjectNotFound",
            Self::MissingScope => "MissingScope",
            Self::NotAllowed => "NotAllowed",
        }
    }
}

/// A refusal: the wire code, a finer reason and a message fit for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    /// What clients match on.
    pub code: DenyCode,
    /// Why, in the original's policy vocabulary.
    pub reason: DenyReason,
    /// Human-readable explanation.
    pub message: String,
}

impl Denied {
    fn new(code: DenyCode, reason: DenyReason, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
        }
    }

    fn forbidden(reason: DenyReason, message: impl Into<String>) -> Self {
        Self::new(DenyCode::Forbidden, reason, message)
    }

    /// The refusal for a project that does not exist or was deleted.
    pub fn project_not_found() -> Self {
        Self::new(
            DenyCode::StreamNotFound,
            DenyReason::ProjectNotFound,
            "Project not found",
        )
    }
}

/// The result of every check.
pub type Decision = Result<(), Denied>;

fn need_scope(p: &Principal, scope: &Scope) -> Decision {
    if p.has_scope(scope) {
        Ok(())
    } else {
        Err(Denied::forbidden(
            DenyReason::MissingScope,
            format!("Your auth token does not have the required scope: {scope}."),
        ))
    }
}

/// The caller's user id and server role, or the refusal for an anonymous or role-less caller.
fn need_user(p: &Principal) -> Result<(&str, ServerRole), Denied> {
    let Some(user_id) = p.user_id.as_deref() else {
        return Err(Denied::new(
            DenyCode::Unauthorized,
            DenyReason::ServerNoSession,
            "You must be signed in to do this",
        ));
    };
    let Some(role) = p.server_role else {
        return Err(Denied::forbidden(
            DenyReason::ServerNoAccess,
            "You do not have access to this server",
        ));
    };
    Ok((user_id, role))
}

/// Archived users fail every requirement with `ServerNoAccess`; others fail with
/// `ServerNotEnoughPermissions` when below `min`.
fn need_server_role(role: ServerRole, min: ServerRole) -> Decision {
    if role == ServerRole::ArchivedUser {
        return Err(Denied::forbidden(
            DenyReason::ServerNoAccess,
            "Your account is archived",
        ));
    }
    if role.at_least(min) {
        Ok(())
    } else {
        Err(Denied::forbidden(
            DenyReason::ServerNotEnoughPermissions,
            format!("You need the {min} server role or above to do this"),
        ))
    }
}

fn need_project_role(a: &ProjectAccess, min: ProjectRole) -> Decision {
    match a.role_of_principal {
        Some(role) if role.at_least(min) => Ok(()),
        Some(_) => Err(Denied::forbidden(
            DenyReason::ProjectNotEnoughPermissions,
            "You do not have enough permissions in the project to perform this action",
        )),
        None => Err(Denied::forbidden(
            DenyReason::ProjectNoAccess,
            "You do not have access to the project",
        )),
    }
}

/// A write needing `min` in the project: signed in, `streams:write`, a server role of at least
/// guest (user for owner-level writes), and the project role.
fn write_access(p: &Principal, a: &ProjectAccess, min: ProjectRole) -> Decision {
    let (_, role) = need_user(p)?;
    need_scope(p, &Scope::STREAMS_WRITE)?;
    let min_server = if min == ProjectRole::Owner {
        ServerRole::User
    } else {
        ServerRole::Guest
    };
    need_server_role(role, min_server)?;
    need_project_role(a, min)
}

/// Read access without the scope check, shared by reads and `markReceived`.
fn read_access(p: &Principal, a: &ProjectAccess) -> Decision {
    if a.visibility.is_public() {
        return Ok(());
    }
    let (_, role) = need_user(p)?;
    need_server_role(role, ServerRole::Guest)?;
    if role == ServerRole::Admin {
        return Ok(());
    }
    need_project_role(a, ProjectRole::Reviewer)
}

/// Seeing a project and everything in it (models, versions, objects).
pub fn can_read_project(p: &Principal, a: &ProjectAccess) -> Decision {
    need_scope(p, &Scope::STREAMS_READ)?;
    read_access(p, a)
}

/// A read grant the server mints for its own preview renderer (a browser page that must load
/// one project's objects and nothing else): it reads the objects of the project it names,
/// whatever the project's visibility, and no other project. Its signature and expiry are
/// checked where it is decoded (`None`: it did not check out); this is what it allows.
pub fn can_read_objects_with_grant(granted_project_id: Option<&str>, project_id: &str) -> Decision {
    match granted_project_id {
        Some(granted) if granted == project_id => Ok(()),
        Some(_) => Err(Denied::forbidden(
            DenyReason::ProjectNoAccess,
            "You do not have access to the project",
        )),
        None => Err(Denied::forbidden(
            DenyReason::ProjectNoAccess,
            "The grant is not valid or has expired",
        )),
    }
}

/// Changing a project's name, description, visibility or comment setting: owners.
pub fn can_update_project(p: &Principal, a: &ProjectAccess) -> Decision {
    write_access(p, a, ProjectRole::Owner)
}

/// Deleting a project: owners, and server admins (as in the original).
pub fn can_delete_project(p: &Principal, a: &ProjectAccess) -> Decision {
    let (_, role) = need_user(p)?;
    need_scope(p, &Scope::STREAMS_WRITE)?;
    if role == ServerRole::Admin {
        return Ok(());
    }
    write_access(p, a, ProjectRole::Owner)
}

/// Searching users (`userSearch`, `users`): signed-in guests and up with `users:read`.
pub fn can_search_users(p: &Principal) -> Decision {
    let (_, role) = need_user(p)?;
    need_scope(p, &Scope::USERS_READ)?;
    need_server_role(role, ServerRole::Guest)
}

/// The admin queries (`admin { … }`): server admins holding `scope` (`users:read` for the
/// user list, `server:stats` for the statistics), as the original's directives require.
pub fn can_administer(p: &Principal, scope: &Scope) -> Decision {
    let (_, role) = need_user(p)?;
    need_server_role(role, ServerRole::Admin)?;
    need_scope(p, scope)
}

/// Deleting an account (`userDelete` for one's own, `adminDeleteUser` for anyone's): the
/// person themselves, or a server admin, with `profile:delete` (the original's scope for it).
pub fn can_delete_account(p: &Principal, target_user_id: &str) -> Decision {
    let (user, role) = need_user(p)?;
    if user != target_user_id {
        need_server_role(role, ServerRole::Admin)?;
    }
    need_scope(p, &Scope::PROFILE_DELETE)
}

/// Registering third-party apps, and changing or deleting one's own (`appCreate`,
/// `appUpdate`, `appDelete`, `appRevokeAccess`): signed-in users with `apps:write`.
pub fn can_write_apps(p: &Principal) -> Decision {
    let (_, role) = need_user(p)?;
    need_server_role(role, ServerRole::User)?;
    need_scope(p, &Scope::APPS_WRITE)
}

/// Seeing the apps one made or authorized: signed-in users with `apps:read`.
pub fn can_read_own_apps(p: &Principal) -> Decision {
    let (_, role) = need_user(p)?;
    need_server_role(role, ServerRole::User)?;
    need_scope(p, &Scope::APPS_READ)
}

/// Seeing and managing a project's webhooks (their URLs and delivery logs are an owner's
/// business, as in the original's `canReadWebhooks`): owners with `streams:write`.
pub fn can_manage_webhooks(p: &Principal, a: &ProjectAccess) -> Decision {
    write_access(p, a, ProjectRole::Owner)
}

/// A project's full history and its past states (team, webhooks, every change with its
/// actor): its owners, and server admins (who audit the server), with `streams:read`.
pub fn can_audit_project(p: &Principal, a: &ProjectAccess) -> Decision {
    let (_, role) = need_user(p)?;
    need_scope(p, &Scope::STREAMS_READ)?;
    if role == ServerRole::Admin {
        return Ok(());
    }
    need_server_role(role, ServerRole::Guest)?;
    need_project_role(a, ProjectRole::Owner)
}

/// Adding, changing or removing other members: owners.
pub fn can_manage_members(p: &Principal, a: &ProjectAccess) -> Decision {
    write_access(p, a, ProjectRole::Owner)
}

/// `projectMutations.updateRole` on `target_user_id`: owners, but never on themselves (the
/// original refuses "User cannot change their own stream access level"; leaving is separate).
pub fn can_set_member_role(p: &Principal, a: &ProjectAccess, target_user_id: &str) -> Decision {
    can_manage_members(p, a)?;
    if p.is(target_user_id) {
        return Err(Denied::forbidden(
            DenyReason::NotAllowed,
            "You cannot change your own project role",
        ));
    }
    Ok(())
}

/// Creating or cancelling project invites: owners whose token (if any) also has
/// `users:invite`.
pub fn can_invite(p: &Principal, a: &ProjectAccess) -> Decision {
    can_manage_members(p, a)?;
    need_scope(p, &Scope::USERS_INVITE)
}

/// Accepting or declining an invite addressed to oneself: any signed-in, non-archived user
/// (whether the invite is theirs is a domain rule).
pub fn can_use_invite(p: &Principal) -> Decision {
    let (_, role) = need_user(p)?;
    need_scope(p, &Scope::STREAMS_WRITE)?;
    need_server_role(role, ServerRole::Guest)
}

/// Leaving a project (`projectMutations.leave`): any member; the last owner is refused by the
/// domain, not here.
pub fn can_leave_project(p: &Principal, a: &ProjectAccess) -> Decision {
    let (_, role) = need_user(p)?;
    need_scope(p, &Scope::STREAMS_WRITE)?;
    need_server_role(role, ServerRole::Guest)?;
    need_project_role(a, ProjectRole::Reviewer)
}

/// Creating a model: contributors and owners.
pub fn can_create_model(p: &Principal, a: &ProjectAccess) -> Decision {
    write_access(p, a, ProjectRole::Contributor)
}

/// Renaming or re-describing a model: contributors and owners.
pub fn can_update_model(p: &Principal, a: &ProjectAccess) -> Decision {
    write_access(p, a, ProjectRole::Contributor)
}

/// Deleting a model: contributors who authored it, and owners (the original's
/// `canDeleteModelPolicy`). `model_author_id` is `None` when the author is unknown.
pub fn can_delete_model(
    p: &Principal,
    a: &ProjectAccess,
    model_author_id: Option<&str>,
) -> Decision {
    write_access(p, a, ProjectRole::Contributor)?;
    author_or_owner(p, a, model_author_id, "models")
}

/// Creating a version: contributors and owners.
pub fn can_create_version(p: &Principal, a: &ProjectAccess) -> Decision {
    write_access(p, a, ProjectRole::Contributor)
}

/// Starting a model ingestion, reporting on it and uploading its bundle: whoever may create
/// the version it ends in.
pub fn can_ingest(p: &Principal, a: &ProjectAccess) -> Decision {
    can_create_version(p, a)
}

/// Changing a version's message, moving it to another model or deleting it: contributors who
/// authored it, and owners (the original's `canUpdateProjectVersionPolicy` and batch rules).
/// Batch operations check every version.
pub fn can_update_version(p: &Principal, a: &ProjectAccess, version_author_id: &str) -> Decision {
    write_access(p, a, ProjectRole::Contributor)?;
    author_or_owner(p, a, Some(version_author_id), "versions")
}

fn author_or_owner(p: &Principal, a: &ProjectAccess, author: Option<&str>, what: &str) -> Decision {
    if author.is_some_and(|author| p.is(author)) {
        return Ok(());
    }
    need_project_role(a, ProjectRole::Owner).map_err(|mut denied| {
        denied.message =
            format!("Only project owners can change {what} created by other contributors");
        denied
    })
}

/// Recording that a version was received (`markReceived`): any signed-in, non-archived user
/// who can read the project, with `streams:read`.
pub fn can_mark_received(p: &Principal, a: &ProjectAccess) -> Decision {
    let (_, role) = need_user(p)?;
    need_scope(p, &Scope::STREAMS_READ)?;
    need_server_role(role, ServerRole::Guest)?;
    read_access(p, a)
}

/// Marking a project as a favourite or unmarking it (the legacy `streamFavorite`): any
/// signed-in, non-archived user who can read the project, with `streams:read`, as the original
/// (a favourite changes nothing anyone else sees but a count).
pub fn can_favorite_project(p: &Principal, a: &ProjectAccess) -> Decision {
    let (_, role) = need_user(p)?;
    need_scope(p, &Scope::STREAMS_READ)?;
    need_server_role(role, ServerRole::Guest)?;
    read_access(p, a)
}

/// Creating a project: server users and admins; guests only where the server allows it
/// (`guests_may_create`); never archived users. Needs `streams:write`.
pub fn can_create_project(p: &Principal, guests_may_create: bool) -> Decision {
    let (_, role) = need_user(p)?;
    need_scope(p, &Scope::STREAMS_WRITE)?;
    let min = if guests_may_create {
        ServerRole::Guest
    } else {
        ServerRole::User
    };
    need_server_role(role, min)
}

/// The original's `@isOwner` fields of a user (their projects, invites, apps, tokens, pending
/// verification): the user themself or a server admin. Anyone else, anonymous included, is
/// refused with FORBIDDEN, as the original does; `field` names what was asked for.
pub fn can_read_user_private(p: &Principal, user_id: &str, field: &str) -> Decision {
    match (p.user_id.as_deref(), p.server_role) {
        (None, _) => Err(Denied::forbidden(
            DenyReason::ServerNoSession,
            "You must be authenticated to access this data",
        )),
        (Some(me), _) if me == user_id => Ok(()),
        (_, Some(ServerRole::Admin)) => Ok(()),
        _ => Err(Denied::forbidden(
            DenyReason::NotAllowed,
            format!(
                "You must be authenticated as the user whose '{field}' value you wish to retrieve"
            ),
        )),
    }
}

/// What only the user themself sees of their account, admins not included: the invites
/// addressed to them (with their tokens), their registered and authorized apps, a pending
/// verification; `what` names it for the refusal.
pub fn can_read_own_account(p: &Principal, user_id: &str, what: &str) -> Decision {
    if p.is(user_id) {
        Ok(())
    } else {
        Err(Denied::forbidden(
            DenyReason::NotAllowed,
            format!("Only the user may see their {what}."),
        ))
    }
}

/// A user's personal access tokens: the user themself, with `tokens:read`.
pub fn can_read_own_tokens(p: &Principal, user_id: &str) -> Decision {
    can_read_own_account(p, user_id, "tokens")?;
    need_scope(p, &Scope::TOKENS_READ)
}

/// Putting `scope` on a token or an app one creates: only a scope the caller's own token holds.
pub fn can_grant_scope(p: &Principal, scope: &Scope) -> Decision {
    if p.has_scope(scope) {
        Ok(())
    } else {
        Err(Denied::forbidden(
            DenyReason::MissingScope,
            format!("You cannot grant the {scope} scope you do not hold."),
        ))
    }
}

/// Creating and revoking one's personal access tokens: signed in, with `tokens:write`.
pub fn can_manage_own_tokens(p: &Principal) -> Decision {
    need_user(p)?;
    need_scope(p, &Scope::TOKENS_WRITE)
}

/// Reading one's own profile (`activeUser`): `profile:read`.
pub fn can_read_own_profile(p: &Principal) -> Decision {
    need_scope(p, &Scope::PROFILE_READ)
}

/// Changing one's own profile: signed in, with `profile:write`.
pub fn can_update_own_profile(p: &Principal) -> Decision {
    need_user(p)?;
    need_scope(p, &Scope::PROFILE_WRITE)
}

/// Seeing an app's secret, and changing or deleting the app: its author or a server admin; a
/// default app (the server's own) is never changed, whoever asks.
pub fn can_manage_app(p: &Principal, author_id: Option<&str>, default_app: bool) -> Decision {
    if default_app {
        return Err(Denied::forbidden(
            DenyReason::NotAllowed,
            "The default apps cannot be changed.",
        ));
    }
    can_read_app_secret(p, author_id)
}

/// Seeing an app's secret: its author or a server admin.
pub fn can_read_app_secret(p: &Principal, author_id: Option<&str>) -> Decision {
    let mine = author_id.is_some_and(|a| p.is(a));
    if mine || p.server_role == Some(ServerRole::Admin) {
        Ok(())
    } else {
        Err(Denied::forbidden(
            DenyReason::NotAllowed,
            "Only the app's author or a server admin may do this.",
        ))
    }
}

/// Seeing a user's email address: the user themself (token scope `profile:email`), or a
/// server admin (token scope `users:email`). The original answers `null` rather than an
/// error; the API layer decides how to show the refusal.
pub fn can_read_user_email(p: &Principal, user_id: &str) -> Decision {
    let (_, role) = need_user(p)?;
    if p.is(user_id) {
        return need_scope(p, &Scope::PROFILE_EMAIL);
    }
    if role != ServerRole::Admin {
        return Err(Denied::forbidden(
            DenyReason::ServerNotEnoughPermissions,
            "Only admins can see other users' email addresses",
        ));
    }
    need_scope(p, &Scope::USERS_EMAIL)
}

#[cfg(test)]
mod tests;

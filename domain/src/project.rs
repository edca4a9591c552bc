//! The Project aggregate: one event stream per project (`project:<id>`), holding its members,
//! pending invites, models and versions, so every rule that spans them (unique model names,
//! at least one owner, versions pointing at existing models) is checked in one decision.
//!
//! `decide` checks domain rules only; who may issue a command is [`crate::policy`]'s job,
//! asked by the caller with facts from [`Project::access_for`] and the state's authors.
//! Ids are chosen by the caller and only checked here; nothing reads the clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Entity};
use crate::event::{EventCodecError, NewEvent};
use crate::ids::{StreamId, StreamIdError, check_entity_id};
use crate::names::{
    Email, MAX_DESCRIPTION_CHARS, MAX_MESSAGE_CHARS, MAX_OBJECT_ID_CHARS,
    MAX_SOURCE_APPLICATION_CHARS, ModelName, ProjectName, check_len,
};
use crate::policy::{ProjectAccess, ProjectRole, ServerRole, Visibility};
use crate::upcast::Upcasters;

/// The stream category of project streams.
pub const STREAM_CATEGORY: &str = "project";

/// Which API asked for a new project: the current one and the legacy (`streamCreate`) differ
/// in their defaults, as in the original.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreatedThrough {
    /// `projectMutations.create`: private, "Project abcde".
    Current,
    /// `streamCreate`: public, "Stream abcde", with a `main` model.
    Legacy,
}

impl CreatedThrough {
    /// The name of a new project `id`: as given unless blank, else the API's default from the
    /// first five characters of its id.
    pub fn name_or_default(self, given: Option<String>, id: &str) -> String {
        given.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
            let prefix: String = id.chars().take(5).collect();
            match self {
                Self::Current => format!("Project {prefix}"),
                Self::Legacy => format!("Stream {prefix}"),
            }
        })
    }

    /// The visibility of a new project that asks for none.
    pub fn default_visibility(self) -> Visibility {
        match self {
            Self::Current => Visibility::Private,
            Self::Legacy => Visibility::Public,
        }
    }
}

/// A new version's `totalChildrenCount`, one rule for both APIs: the client's count when it
/// gives one (a negative count reads as 0), else the size of the stored root object's closure.
pub fn total_children_count(given: Option<i32>, closure_size: Option<i64>) -> u32 {
    match given {
        Some(n) => u32::try_from(n).unwrap_or(0),
        // No closure stored: no children; a larger one saturates.
        None => u32::try_from(closure_size.unwrap_or(0)).unwrap_or(u32::MAX),
    }
}

/// The role an invite gives when it names none.
pub const DEFAULT_INVITE_ROLE: ProjectRole = ProjectRole::Contributor;

/// Name and description of the model the legacy `streamCreate` adds to every new project.
pub const DEFAULT_MODEL: (&str, &str) = ("main", "default model");

/// The event stream of project `project_id`.
pub fn stream_id(project_id: &str) -> Result<StreamId, StreamIdError> {
    StreamId::new(STREAM_CATEGORY, project_id)
}

/// Whom an invite is addressed to: a registered user, or an email address (which may belong to
/// no account yet). Serialised as `{"userId": …}` or `{"email": …}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InviteTarget {
    /// A registered user's id.
    UserId(String),
    /// An email address (normalised to lower case by `decide`).
    Email(String),
}

/// Facts about the user answering an invite, loaded by the caller from the user's account, so
/// the project can check the invite is theirs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invitee {
    /// The answering user.
    pub user_id: String,
    /// Their email addresses (an email invite matches any of them).
    pub emails: Vec<String>,
    /// Their server role (guests may not become owners).
    pub server_role: ServerRole,
}

/// Everything one may ask of a project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectCommand {
    /// Create the project with its first owner. The legacy `streamCreate` passes
    /// `default_model_id` to get a `main` model; the current API passes `None`.
    Create {
        /// New project id.
        id: String,
        /// Name; the caller substitutes a generated one when the client sent none.
        name: String,
        /// Description (`None` is stored as empty, like the original).
        description: Option<String>,
        /// Visibility; the caller applies the default (private, or public for legacy).
        visibility: Visibility,
        /// The creating user, who becomes owner.
        owner_user_id: String,
        /// Id for the `main` model, if one should be created.
        default_model_id: Option<String>,
    },
    /// Change settings; fields left `None` stay as they are.
    Update {
        /// New name.
        name: Option<String>,
        /// New description (`Some("")` clears it).
        description: Option<String>,
        /// New visibility.
        visibility: Option<Visibility>,
        /// Whether non-members may comment on a public project.
        allow_public_comments: Option<bool>,
    },
    /// Delete the project; the stream then refuses every command.
    Delete,
    /// Add a member or change a member's role.
    SetMemberRole {
        /// The member.
        user_id: String,
        /// The new role.
        role: ProjectRole,
        /// The member's server role (guests may not own projects).
        user_server_role: ServerRole,
    },
    /// Remove a member (also how a member leaves).
    RemoveMember {
        /// The member.
        user_id: String,
    },
    /// Invite someone; a pending invite for the same target is replaced.
    CreateInvite {
        /// New invite id.
        invite_id: String,
        /// Whom to invite.
        target: InviteTarget,
        /// The role they get on accepting.
        role: ProjectRole,
        /// The inviting user.
        invited_by: String,
        /// The target's server role, when the target is a known user.
        target_server_role: Option<ServerRole>,
    },
    /// Accept a pending invite and become a member.
    AcceptInvite {
        /// The invite.
        invite_id: String,
        /// Who answers.
        invitee: Invitee,
    },
    /// Decline a pending invite.
    DeclineInvite {
        /// The invite.
        invite_id: String,
        /// Who answers.
        invitee: Invitee,
    },
    /// Withdraw a pending invite.
    CancelInvite {
        /// The invite.
        invite_id: String,
    },
    /// Create a model.
    CreateModel {
        /// New model id.
        model_id: String,
        /// Name (see [`ModelName`] for the rules).
        name: String,
        /// Optional description.
        description: Option<String>,
        /// The creating user.
        author_id: String,
    },
    /// Rename or re-describe a model; at least one field must be given.
    UpdateModel {
        /// The model.
        model_id: String,
        /// New name.
        name: Option<String>,
        /// New description (`Some("")` clears it).
        description: Option<String>,
    },
    /// Delete a model and its versions.
    DeleteModel {
        /// The model.
        model_id: String,
    },
    /// Record a version: a root object sent to a model.
    CreateVersion {
        /// New version id.
        version_id: String,
        /// The model it belongs to.
        model_id: String,
        /// The root object's id.
        object_id: String,
        /// Whether the project's object store holds the root object, as the command handler
        /// found it (objects always arrive before the version that points at them).
        root_object_stored: bool,
        /// Commit message.
        message: Option<String>,
        /// The sending application, e.g. `Rhino`.
        source_application: Option<String>,
        /// Number of child objects; the caller fills it from the object store when absent.
        total_children_count: u32,
        /// Parent version ids, as the client sent them.
        parents: Vec<String>,
        /// The sending user.
        author_id: String,
    },
    /// Change a version's message.
    UpdateVersion {
        /// The version.
        version_id: String,
        /// New message.
        message: String,
    },
    /// Move versions to the model named `target_model_name` (`moveToModel`), creating it with
    /// `new_model_id` when no model has that name.
    MoveVersions {
        /// The versions.
        version_ids: Vec<String>,
        /// Target model name, matched case-insensitively.
        target_model_name: String,
        /// Id for the target model if it must be created (unused otherwise).
        new_model_id: String,
        /// The acting user, author of a created model.
        author_id: String,
    },
    /// Delete versions.
    DeleteVersions {
        /// The versions.
        version_ids: Vec<String>,
    },
    /// Record that a user received (loaded) a version.
    MarkVersionReceived {
        /// The version.
        version_id: String,
        /// The receiving user.
        user_id: String,
        /// The receiving application.
        source_application: String,
        /// Optional message.
        message: Option<String>,
    },
    /// Mark the project as one of a user's favourites, or unmark it (the legacy
    /// `streamFavorite`). Setting what is already so records nothing.
    SetFavorite {
        /// The user whose favourite it is.
        user_id: String,
        /// Favourite or not.
        favorited: bool,
    },
    /// Register a webhook (see [`webhook`] for the rules).
    CreateWebhook {
        /// New webhook id.
        webhook_id: String,
        /// Configuration.
        config: webhook::WebhookConfig,
        /// The configured per-project limit.
        max_per_project: usize,
    },
    /// Change a webhook; fields left `None` stay as they are.
    UpdateWebhook {
        /// The webhook.
        webhook_id: String,
        /// Changes.
        changes: webhook::WebhookChanges,
    },
    /// Remove a webhook.
    DeleteWebhook {
        /// The webhook.
        webhook_id: String,
    },
    /// Switch a webhook off because its deliveries keep failing (the delivery worker asks).
    DisableWebhook {
        /// The webhook.
        webhook_id: String,
        /// Why, shown to owners.
        reason: String,
    },
    /// Send one delivery again, by hand.
    RedeliverWebhook {
        /// The webhook.
        webhook_id: String,
        /// The delivery to send again.
        delivery_id: String,
    },
}

/// Something that happened to a project. The durable contract: names and payload shapes never
/// change in place (see [`crate::upcast`]). Payloads are JSON objects with camelCase fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all_fields = "camelCase")]
pub enum ProjectEvent {
    /// A project was created. Its owner arrives in the following `ProjectMemberRoleSet`.
    ProjectCreated {
        /// Project id.
        project_id: String,
        /// Name.
        name: String,
        /// Description (may be empty).
        description: String,
        /// Visibility (never `UNLISTED`: stored as `PUBLIC`, like the original).
        visibility: Visibility,
        /// Whether non-members may comment.
        allow_public_comments: bool,
        /// The creating user.
        owner_id: String,
    },
    /// Settings changed; carries every setting's value after the change.
    ProjectUpdated {
        /// Project id.
        project_id: String,
        /// Name.
        name: String,
        /// Description.
        description: String,
        /// Visibility.
        visibility: Visibility,
        /// Whether non-members may comment.
        allow_public_comments: bool,
    },
    /// The project was deleted, with everything in it.
    ProjectDeleted {
        /// Project id.
        project_id: String,
    },
    /// A user became a member or changed role.
    ProjectMemberRoleSet {
        /// Project id.
        project_id: String,
        /// The member.
        user_id: String,
        /// The new role.
        role: ProjectRole,
        /// The role before, if they were a member.
        previous_role: Option<ProjectRole>,
    },
    /// A member was removed or left.
    ProjectMemberRemoved {
        /// Project id.
        project_id: String,
        /// The former member.
        user_id: String,
        /// Their role until now.
        previous_role: ProjectRole,
    },
    /// An invite was sent.
    ProjectInviteCreated {
        /// Project id.
        project_id: String,
        /// Invite id.
        invite_id: String,
        /// Whom it is for.
        target: InviteTarget,
        /// The role on accepting.
        role: ProjectRole,
        /// The inviting user.
        invited_by: String,
    },
    /// An invite was accepted; a `ProjectMemberRoleSet` follows when the role changes.
    ProjectInviteAccepted {
        /// Project id.
        project_id: String,
        /// Invite id.
        invite_id: String,
        /// The accepting user.
        user_id: String,
        /// The invite's role.
        role: ProjectRole,
    },
    /// An invite was declined.
    ProjectInviteDeclined {
        /// Project id.
        project_id: String,
        /// Invite id.
        invite_id: String,
        /// The declining user.
        user_id: String,
    },
    /// An invite was withdrawn, or replaced by a newer one to the same target.
    ProjectInviteCancelled {
        /// Project id.
        project_id: String,
        /// Invite id.
        invite_id: String,
    },
    /// A model was created.
    ModelCreated {
        /// Project id.
        project_id: String,
        /// Model id.
        model_id: String,
        /// Canonical (lower-case) full name.
        name: String,
        /// Description.
        description: Option<String>,
        /// The creating user.
        author_id: String,
    },
    /// A model was renamed or re-described; carries both values after the change.
    ModelUpdated {
        /// Project id.
        project_id: String,
        /// Model id.
        model_id: String,
        /// Name.
        name: String,
        /// Description.
        description: Option<String>,
    },
    /// A model was deleted together with its versions.
    ModelDeleted {
        /// Project id.
        project_id: String,
        /// Model id.
        model_id: String,
        /// Its name, for activity feeds.
        name: String,
        /// The versions deleted with it.
        version_ids: Vec<String>,
    },
    /// A version was created.
    VersionCreated {
        /// Project id.
        project_id: String,
        /// Version id.
        version_id: String,
        /// Model id.
        model_id: String,
        /// Root object id (`referencedObject`).
        object_id: String,
        /// Message.
        message: Option<String>,
        /// Sending application.
        source_application: Option<String>,
        /// Number of child objects.
        total_children_count: u32,
        /// Parent version ids.
        parents: Vec<String>,
        /// The sending user.
        author_id: String,
    },
    /// A version's message changed.
    VersionUpdated {
        /// Project id.
        project_id: String,
        /// Version id.
        version_id: String,
        /// New message.
        message: String,
    },
    /// A version moved to another model.
    VersionMoved {
        /// Project id.
        project_id: String,
        /// Version id.
        version_id: String,
        /// Previous model.
        from_model_id: String,
        /// New model.
        to_model_id: String,
    },
    /// A version was deleted.
    VersionDeleted {
        /// Project id.
        project_id: String,
        /// Version id.
        version_id: String,
        /// The model it was in.
        model_id: String,
    },
    /// A user received a version.
    VersionReceived {
        /// Project id.
        project_id: String,
        /// Version id.
        version_id: String,
        /// The receiving user.
        user_id: String,
        /// The receiving application.
        source_application: String,
        /// Optional message.
        message: Option<String>,
    },
    /// A user marked the project as a favourite, or unmarked it.
    ProjectFavoriteSet {
        /// Project id.
        project_id: String,
        /// The user.
        user_id: String,
        /// Favourite or not.
        favorited: bool,
    },
    /// A webhook was registered. Its secret is not an event: it lives in the credential store.
    WebhookCreated {
        /// Project id.
        project_id: String,
        /// Webhook id.
        webhook_id: String,
        /// Configuration.
        #[serde(flatten)]
        config: webhook::WebhookConfig,
    },
    /// A webhook's configuration changed; carries the whole configuration after the change.
    WebhookUpdated {
        /// Project id.
        project_id: String,
        /// Webhook id.
        webhook_id: String,
        /// Configuration.
        #[serde(flatten)]
        config: webhook::WebhookConfig,
    },
    /// A webhook was removed.
    WebhookDeleted {
        /// Project id.
        project_id: String,
        /// Webhook id.
        webhook_id: String,
    },
    /// A webhook was switched off after failing deliveries.
    WebhookDisabled {
        /// Project id.
        project_id: String,
        /// Webhook id.
        webhook_id: String,
        /// Why.
        reason: String,
    },
    /// Someone asked for a delivery to be sent again.
    WebhookRedeliveryRequested {
        /// Project id.
        project_id: String,
        /// Webhook id.
        webhook_id: String,
        /// The delivery.
        delivery_id: String,
    },
}

impl ProjectEvent {
    /// Payload shape version of every project event type.
    pub const SCHEMA_VERSION: u32 = 1;

    /// Every project event type name.
    pub const EVENT_TYPES: [&'static str; 23] = [
        "ProjectCreated",
        "ProjectUpdated",
        "ProjectDeleted",
        "ProjectMemberRoleSet",
        "ProjectMemberRemoved",
        "ProjectInviteCreated",
        "ProjectInviteAccepted",
        "ProjectInviteDeclined",
        "ProjectInviteCancelled",
        "ModelCreated",
        "ModelUpdated",
        "ModelDeleted",
        "VersionCreated",
        "VersionUpdated",
        "VersionMoved",
        "VersionDeleted",
        "VersionReceived",
        "ProjectFavoriteSet",
        "WebhookCreated",
        "WebhookUpdated",
        "WebhookDeleted",
        "WebhookDisabled",
        "WebhookRedeliveryRequested",
    ];

    /// The stable type name stored in the log.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::ProjectCreated { .. } => "ProjectCreated",
            Self::ProjectUpdated { .. } => "ProjectUpdated",
            Self::ProjectDeleted { .. } => "ProjectDeleted",
            Self::ProjectMemberRoleSet { .. } => "ProjectMemberRoleSet",
            Self::ProjectMemberRemoved { .. } => "ProjectMemberRemoved",
            Self::ProjectInviteCreated { .. } => "ProjectInviteCreated",
            Self::ProjectInviteAccepted { .. } => "ProjectInviteAccepted",
            Self::ProjectInviteDeclined { .. } => "ProjectInviteDeclined",
            Self::ProjectInviteCancelled { .. } => "ProjectInviteCancelled",
            Self::ModelCreated { .. } => "ModelCreated",
            Self::ModelUpdated { .. } => "ModelUpdated",
            Self::ModelDeleted { .. } => "ModelDeleted",
            Self::VersionCreated { .. } => "VersionCreated",
            Self::VersionUpdated { .. } => "VersionUpdated",
            Self::VersionMoved { .. } => "VersionMoved",
            Self::VersionDeleted { .. } => "VersionDeleted",
            Self::VersionReceived { .. } => "VersionReceived",
            Self::ProjectFavoriteSet { .. } => "ProjectFavoriteSet",
            Self::WebhookCreated { .. } => "WebhookCreated",
            Self::WebhookUpdated { .. } => "WebhookUpdated",
            Self::WebhookDeleted { .. } => "WebhookDeleted",
            Self::WebhookDisabled { .. } => "WebhookDisabled",
            Self::WebhookRedeliveryRequested { .. } => "WebhookRedeliveryRequested",
        }
    }

    /// The project the event belongs to.
    pub fn project_id(&self) -> &str {
        match self {
            Self::ProjectCreated { project_id, .. }
            | Self::ProjectUpdated { project_id, .. }
            | Self::ProjectDeleted { project_id }
            | Self::ProjectMemberRoleSet { project_id, .. }
            | Self::ProjectMemberRemoved { project_id, .. }
            | Self::ProjectInviteCreated { project_id, .. }
            | Self::ProjectInviteAccepted { project_id, .. }
            | Self::ProjectInviteDeclined { project_id, .. }
            | Self::ProjectInviteCancelled { project_id, .. }
            | Self::ModelCreated { project_id, .. }
            | Self::ModelUpdated { project_id, .. }
            | Self::ModelDeleted { project_id, .. }
            | Self::VersionCreated { project_id, .. }
            | Self::VersionUpdated { project_id, .. }
            | Self::VersionMoved { project_id, .. }
            | Self::VersionDeleted { project_id, .. }
            | Self::VersionReceived { project_id, .. }
            | Self::ProjectFavoriteSet { project_id, .. }
            | Self::WebhookCreated { project_id, .. }
            | Self::WebhookUpdated { project_id, .. }
            | Self::WebhookDeleted { project_id, .. }
            | Self::WebhookDisabled { project_id, .. }
            | Self::WebhookRedeliveryRequested { project_id, .. } => project_id,
        }
    }

    /// `user`'s access facts after this event, for readers that follow a project live (GraphQL
    /// subscriptions re-check access on every event). Every event is listed, so a new event
    /// type has to say here whether it changes who may read the project.
    pub fn access_after(
        &self,
        mut access: crate::policy::ProjectAccess,
        user: &str,
    ) -> crate::policy::ProjectAccess {
        match self {
            Self::ProjectCreated { visibility, .. } | Self::ProjectUpdated { visibility, .. } => {
                access.visibility = *visibility;
            }
            Self::ProjectMemberRoleSet { user_id, role, .. } if user_id == user => {
                access.role_of_principal = Some(*role);
            }
            Self::ProjectMemberRemoved { user_id, .. } if user_id == user => {
                access.role_of_principal = None;
            }
            // Other members' roles, and everything below, leave this user's access as it was
            // (an accepted invite grants its role through the `ProjectMemberRoleSet` after it;
            // a deleted project ends the subscription).
            Self::ProjectMemberRoleSet { .. }
            | Self::ProjectMemberRemoved { .. }
            | Self::ProjectDeleted { .. }
            | Self::ProjectInviteCreated { .. }
            | Self::ProjectInviteAccepted { .. }
            | Self::ProjectInviteDeclined { .. }
            | Self::ProjectInviteCancelled { .. }
            | Self::ModelCreated { .. }
            | Self::ModelUpdated { .. }
            | Self::ModelDeleted { .. }
            | Self::VersionCreated { .. }
            | Self::VersionUpdated { .. }
            | Self::VersionMoved { .. }
            | Self::VersionDeleted { .. }
            | Self::VersionReceived { .. }
            | Self::ProjectFavoriteSet { .. }
            | Self::WebhookCreated { .. }
            | Self::WebhookUpdated { .. }
            | Self::WebhookDeleted { .. }
            | Self::WebhookDisabled { .. }
            | Self::WebhookRedeliveryRequested { .. } => {}
        }
        access
    }

    crate::event::event_codec!("project", from_stored);
}

/// A pending invite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// Whom it is for.
    pub target: InviteTarget,
    /// The role on accepting.
    pub role: ProjectRole,
    /// The inviting user.
    pub invited_by: String,
}

/// A model, as far as decisions need it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    /// Canonical (lower-case) full name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// The creating user (may delete it without being owner).
    pub author_id: String,
}

/// A version, as far as decisions need it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The model it is in.
    pub model_id: String,
    /// The sending user (may change it without being owner).
    pub author_id: String,
}

/// A live project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Project id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Visibility.
    pub visibility: Visibility,
    /// Whether non-members may comment.
    pub allow_public_comments: bool,
    /// Members and their roles.
    pub members: BTreeMap<String, ProjectRole>,
    /// Pending invites by id.
    pub invites: BTreeMap<String, Invite>,
    /// Models by id.
    pub models: BTreeMap<String, Model>,
    /// Versions by id.
    pub versions: BTreeMap<String, Version>,
    /// Webhooks by id.
    pub webhooks: BTreeMap<String, webhook::Webhook>,
    /// Every model, version and invite id ever used here: ids are never reused, so read models
    /// never see one id mean two things.
    pub used_ids: BTreeSet<String>,
    /// The users who hold the project among their favourites.
    pub favorited_by: BTreeSet<String>,
}

impl Project {
    /// The role of `user_id`, if a member.
    pub fn role_of(&self, user_id: &str) -> Option<ProjectRole> {
        self.members.get(user_id).copied()
    }

    /// How many owners the project has.
    pub fn owner_count(&self) -> usize {
        self.members
            .values()
            .filter(|r| **r == ProjectRole::Owner)
            .count()
    }

    /// What deleting `user_id`'s account does to this project, as the original: a project they
    /// alone own is deleted with them (other members included); otherwise they stop being a
    /// member. `None` when they are not one.
    pub fn on_account_deleted(&self, user_id: &str) -> Option<ProjectCommand> {
        match self.role_of(user_id)? {
            ProjectRole::Owner if self.owner_count() <= 1 => Some(ProjectCommand::Delete),
            _ => Some(ProjectCommand::RemoveMember {
                user_id: user_id.to_owned(),
            }),
        }
    }

    /// The policy facts for `user_id` (`None` for an anonymous caller).
    pub fn access_for(&self, user_id: Option<&str>) -> ProjectAccess {
        ProjectAccess {
            visibility: self.visibility,
            role_of_principal: user_id.and_then(|u| self.role_of(u)),
        }
    }

    /// The model called `name`, compared as the original does: case-insensitively, after
    /// trimming. Invalid names match nothing.
    pub fn model_by_name(&self, name: &str) -> Option<(&str, &Model)> {
        let name = ModelName::parse(name).ok()?;
        self.models
            .iter()
            .find(|(_, m)| m.name == name.as_str())
            .map(|(id, m)| (id.as_str(), m))
    }

    fn model(&self, model_id: &str) -> Result<&Model, DomainError> {
        self.models
            .get(model_id)
            .ok_or_else(|| DomainError::not_found(Entity::Model, model_id))
    }

    fn version(&self, version_id: &str) -> Result<&Version, DomainError> {
        self.versions
            .get(version_id)
            .ok_or_else(|| DomainError::not_found(Entity::Version, version_id))
    }

    fn invite(&self, invite_id: &str) -> Result<&Invite, DomainError> {
        self.invites
            .get(invite_id)
            .ok_or_else(|| DomainError::not_found(Entity::Invite, invite_id))
    }

    fn check_new_id(&self, field: &'static str, id: &str, kind: Entity) -> Result<(), DomainError> {
        check_entity_id(field, id)?;
        if self.used_ids.contains(id) {
            return Err(DomainError::AlreadyExists {
                kind,
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    fn check_name_free(&self, name: &ModelName, except: Option<&str>) -> Result<(), DomainError> {
        if let Some((id, _)) = self.model_by_name(name.as_str())
            && Some(id) != except
        {
            return Err(DomainError::NameTaken {
                name: name.to_string(),
            });
        }
        Ok(())
    }
}

/// A project stream folded so far.
// One state per stream, kept whole in the command bus's cache (boxed there): boxing the
// active variant would only add an indirection to every fold step.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProjectState {
    /// No events yet.
    #[default]
    Initial,
    /// Created and not deleted.
    Active(Project),
    /// Deleted; refuses every command.
    Deleted {
        /// The former project's id.
        id: String,
    },
}

impl ProjectState {
    /// The live project, if any.
    pub fn project(&self) -> Option<&Project> {
        match self {
            Self::Active(p) => Some(p),
            _ => None,
        }
    }
}

fn check_object_id(id: &str) -> Result<(), DomainError> {
    if id.is_empty() || id.len() > MAX_OBJECT_ID_CHARS || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(DomainError::invalid(
            "objectId",
            format!("must be 1 to {MAX_OBJECT_ID_CHARS} visible ASCII characters"),
        ));
    }
    Ok(())
}

fn check_opt_len(field: &'static str, value: Option<&str>, max: usize) -> Result<(), DomainError> {
    value.map_or(Ok(()), |v| check_len(field, v, max))
}

/// The distinct ids of `ids`, in first-seen order; refuses an empty list.
fn distinct_ids(field: &'static str, ids: Vec<String>) -> Result<Vec<String>, DomainError> {
    if ids.is_empty() {
        return Err(DomainError::invalid(field, "no versions specified"));
    }
    let mut seen = BTreeSet::new();
    Ok(ids
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect())
}

fn invite_is_for(target: &InviteTarget, invitee: &Invitee) -> bool {
    match target {
        InviteTarget::UserId(id) => *id == invitee.user_id,
        InviteTarget::Email(email) => invitee
            .emails
            .iter()
            .filter_map(|e| Email::parse(e).ok())
            .any(|e| e.as_str() == email),
    }
}

/// Decides what `command` does to the project in `state`: the events to append, or why not.
pub fn decide(
    state: &ProjectState,
    command: ProjectCommand,
) -> Result<Vec<ProjectEvent>, DomainError> {
    match (state, command) {
        (ProjectState::Deleted { .. }, _) => Err(DomainError::Deleted(Entity::Project)),
        (
            ProjectState::Initial,
            ProjectCommand::Create {
                id,
                name,
                description,
                visibility,
                owner_user_id,
                default_model_id,
            },
        ) => create(
            id,
            &name,
            description,
            visibility,
            owner_user_id,
            default_model_id,
        ),
        // The stream does not know its id before creation; the caller does.
        (ProjectState::Initial, _) => Err(DomainError::not_found(Entity::Project, "")),
        (ProjectState::Active(p), command) => decide_active(p, command),
    }
}

fn create(
    id: String,
    name: &str,
    description: Option<String>,
    visibility: Visibility,
    owner_user_id: String,
    default_model_id: Option<String>,
) -> Result<Vec<ProjectEvent>, DomainError> {
    check_entity_id("id", &id)?;
    let name = ProjectName::parse(name)?;
    let description = description.unwrap_or_default();
    check_len("description", &description, MAX_DESCRIPTION_CHARS)?;
    check_entity_id("ownerId", &owner_user_id)?;
    if let Some(model_id) = &default_model_id {
        check_entity_id("defaultModelId", model_id)?;
    }
    let mut events = vec![
        ProjectEvent::ProjectCreated {
            project_id: id.clone(),
            name: name.into(),
            description,
            visibility: visibility.effective(),
            allow_public_comments: false,
            owner_id: owner_user_id.clone(),
        },
        ProjectEvent::ProjectMemberRoleSet {
            project_id: id.clone(),
            user_id: owner_user_id.clone(),
            role: ProjectRole::Owner,
            previous_role: None,
        },
    ];
    if let Some(model_id) = default_model_id {
        let (name, description) = DEFAULT_MODEL;
        events.push(ProjectEvent::ModelCreated {
            project_id: id,
            model_id,
            name: name.into(),
            description: Some(description.into()),
            author_id: owner_user_id,
        });
    }
    Ok(events)
}

fn decide_active(p: &Project, command: ProjectCommand) -> Result<Vec<ProjectEvent>, DomainError> {
    let project_id = p.id.clone();
    match command {
        ProjectCommand::Create { .. } => Err(DomainError::AlreadyExists {
            kind: Entity::Project,
            id: project_id,
        }),
        command @ (ProjectCommand::CreateWebhook { .. }
        | ProjectCommand::UpdateWebhook { .. }
        | ProjectCommand::DeleteWebhook { .. }
        | ProjectCommand::DisableWebhook { .. }
        | ProjectCommand::RedeliverWebhook { .. }) => webhook::decide(p, command),
        ProjectCommand::Update {
            name,
            description,
            visibility,
            allow_public_comments,
        } => {
            if name.is_none()
                && description.is_none()
                && visibility.is_none()
                && allow_public_comments.is_none()
            {
                return Ok(vec![]);
            }
            let name = match name {
                Some(n) => ProjectName::parse(&n)?.into(),
                None => p.name.clone(),
            };
            if let Some(d) = &description {
                check_len("description", d, MAX_DESCRIPTION_CHARS)?;
            }
            Ok(vec![ProjectEvent::ProjectUpdated {
                project_id,
                name,
                description: description.unwrap_or_else(|| p.description.clone()),
                visibility: visibility.map_or(p.visibility, Visibility::effective),
                // Not given: unchanged.
                allow_public_comments: allow_public_comments.unwrap_or(p.allow_public_comments),
            }])
        }
        ProjectCommand::Delete => Ok(vec![ProjectEvent::ProjectDeleted { project_id }]),
        ProjectCommand::SetMemberRole {
            user_id,
            role,
            user_server_role,
        } => {
            check_entity_id("userId", &user_id)?;
            if role == ProjectRole::Owner && user_server_role == ServerRole::Guest {
                return Err(DomainError::GuestCannotOwn);
            }
            let previous_role = p.role_of(&user_id);
            if previous_role == Some(role) {
                return Ok(vec![]);
            }
            if previous_role == Some(ProjectRole::Owner) && p.owner_count() <= 1 {
                return Err(DomainError::LastOwner);
            }
            Ok(vec![ProjectEvent::ProjectMemberRoleSet {
                project_id,
                user_id,
                role,
                previous_role,
            }])
        }
        ProjectCommand::RemoveMember { user_id } => {
            let previous_role = p
                .role_of(&user_id)
                .ok_or_else(|| DomainError::not_found(Entity::Member, &user_id))?;
            if previous_role == ProjectRole::Owner && p.owner_count() <= 1 {
                return Err(DomainError::LastOwner);
            }
            Ok(vec![ProjectEvent::ProjectMemberRemoved {
                project_id,
                user_id,
                previous_role,
            }])
        }
        ProjectCommand::CreateInvite {
            invite_id,
            target,
            role,
            invited_by,
            target_server_role,
        } => {
            p.check_new_id("inviteId", &invite_id, Entity::Invite)?;
            check_entity_id("invitedBy", &invited_by)?;
            let target = match target {
                InviteTarget::UserId(user_id) => {
                    check_entity_id("userId", &user_id)?;
                    if p.members.contains_key(&user_id) {
                        return Err(DomainError::AlreadyMember { user_id });
                    }
                    InviteTarget::UserId(user_id)
                }
                InviteTarget::Email(email) => InviteTarget::Email(Email::parse(&email)?.into()),
            };
            if role == ProjectRole::Owner && target_server_role == Some(ServerRole::Guest) {
                return Err(DomainError::GuestCannotOwn);
            }
            let mut events: Vec<ProjectEvent> = p
                .invites
                .iter()
                .filter(|(_, i)| i.target == target)
                .map(|(id, _)| ProjectEvent::ProjectInviteCancelled {
                    project_id: project_id.clone(),
                    invite_id: id.clone(),
                })
                .collect();
            events.push(ProjectEvent::ProjectInviteCreated {
                project_id,
                invite_id,
                target,
                role,
                invited_by,
            });
            Ok(events)
        }
        ProjectCommand::AcceptInvite { invite_id, invitee } => {
            let invite = p.invite(&invite_id)?;
            if !invite_is_for(&invite.target, &invitee) {
                return Err(DomainError::InviteNotForUser {
                    user_id: invitee.user_id,
                });
            }
            check_entity_id("userId", &invitee.user_id)?;
            if invite.role == ProjectRole::Owner && invitee.server_role == ServerRole::Guest {
                return Err(DomainError::GuestCannotOwn);
            }
            let previous_role = p.role_of(&invitee.user_id);
            let mut events = vec![ProjectEvent::ProjectInviteAccepted {
                project_id: project_id.clone(),
                invite_id,
                user_id: invitee.user_id.clone(),
                role: invite.role,
            }];
            // Accepting never demotes an existing member.
            if previous_role.is_none_or(|r| !r.at_least(invite.role)) {
                events.push(ProjectEvent::ProjectMemberRoleSet {
                    project_id,
                    user_id: invitee.user_id,
                    role: invite.role,
                    previous_role,
                });
            }
            Ok(events)
        }
        ProjectCommand::DeclineInvite { invite_id, invitee } => {
            let invite = p.invite(&invite_id)?;
            if !invite_is_for(&invite.target, &invitee) {
                return Err(DomainError::InviteNotForUser {
                    user_id: invitee.user_id,
                });
            }
            Ok(vec![ProjectEvent::ProjectInviteDeclined {
                project_id,
                invite_id,
                user_id: invitee.user_id,
            }])
        }
        ProjectCommand::CancelInvite { invite_id } => {
            p.invite(&invite_id)?;
            Ok(vec![ProjectEvent::ProjectInviteCancelled {
                project_id,
                invite_id,
            }])
        }
        ProjectCommand::CreateModel {
            model_id,
            name,
            description,
            author_id,
        } => {
            p.check_new_id("id", &model_id, Entity::Model)?;
            let name = ModelName::parse(&name)?;
            check_opt_len("description", description.as_deref(), MAX_DESCRIPTION_CHARS)?;
            check_entity_id("authorId", &author_id)?;
            p.check_name_free(&name, None)?;
            Ok(vec![ProjectEvent::ModelCreated {
                project_id,
                model_id,
                name: name.into(),
                description,
                author_id,
            }])
        }
        ProjectCommand::UpdateModel {
            model_id,
            name,
            description,
        } => {
            let model = p.model(&model_id)?;
            if name.is_none() && description.is_none() {
                return Err(DomainError::invalid(
                    "input",
                    "specify a name or a description to update",
                ));
            }
            let name = match name {
                Some(n) => {
                    let n = ModelName::parse(&n)?;
                    p.check_name_free(&n, Some(&model_id))?;
                    n.into()
                }
                None => model.name.clone(),
            };
            check_opt_len("description", description.as_deref(), MAX_DESCRIPTION_CHARS)?;
            Ok(vec![ProjectEvent::ModelUpdated {
                project_id,
                model_id,
                name,
                description: description.or_else(|| model.description.clone()),
            }])
        }
        ProjectCommand::DeleteModel { model_id } => {
            let model = p.model(&model_id)?;
            if ModelName::RESERVED.contains(&model.name.as_str()) {
                return Err(DomainError::ReservedModel {
                    name: model.name.clone(),
                });
            }
            let version_ids = p
                .versions
                .iter()
                .filter(|(_, v)| v.model_id == model_id)
                .map(|(id, _)| id.clone())
                .collect();
            Ok(vec![ProjectEvent::ModelDeleted {
                project_id,
                name: model.name.clone(),
                model_id,
                version_ids,
            }])
        }
        ProjectCommand::CreateVersion {
            version_id,
            model_id,
            object_id,
            root_object_stored,
            message,
            source_application,
            total_children_count,
            parents,
            author_id,
        } => {
            p.check_new_id("id", &version_id, Entity::Version)?;
            check_object_id(&object_id)?;
            if !root_object_stored {
                return Err(DomainError::RootObjectMissing { object_id });
            }
            p.model(&model_id)?;
            check_opt_len("message", message.as_deref(), MAX_MESSAGE_CHARS)?;
            check_opt_len(
                "sourceApplication",
                source_application.as_deref(),
                MAX_SOURCE_APPLICATION_CHARS,
            )?;
            if parents
                .iter()
                .any(|id| id.is_empty() || id.len() > MAX_OBJECT_ID_CHARS)
            {
                return Err(DomainError::invalid(
                    "parents",
                    format!("each parent must be 1 to {MAX_OBJECT_ID_CHARS} bytes"),
                ));
            }
            check_entity_id("authorId", &author_id)?;
            Ok(vec![ProjectEvent::VersionCreated {
                project_id,
                version_id,
                model_id,
                object_id,
                message,
                source_application,
                total_children_count,
                parents,
                author_id,
            }])
        }
        ProjectCommand::UpdateVersion {
            version_id,
            message,
        } => {
            p.version(&version_id)?;
            check_len("message", &message, MAX_MESSAGE_CHARS)?;
            Ok(vec![ProjectEvent::VersionUpdated {
                project_id,
                version_id,
                message,
            }])
        }
        ProjectCommand::MoveVersions {
            version_ids,
            target_model_name,
            new_model_id,
            author_id,
        } => {
            let version_ids = distinct_ids("versionIds", version_ids)?;
            for id in &version_ids {
                p.version(id)?;
            }
            let name = ModelName::parse(&target_model_name)?;
            let mut events = Vec::new();
            let target = match p.model_by_name(name.as_str()) {
                Some((id, _)) => id.to_owned(),
                None => {
                    p.check_new_id("newModelId", &new_model_id, Entity::Model)?;
                    check_entity_id("authorId", &author_id)?;
                    events.push(ProjectEvent::ModelCreated {
                        project_id: project_id.clone(),
                        model_id: new_model_id.clone(),
                        name: name.into(),
                        description: None,
                        author_id,
                    });
                    new_model_id
                }
            };
            for version_id in version_ids {
                let from = p.version(&version_id)?.model_id.clone();
                if from != target {
                    events.push(ProjectEvent::VersionMoved {
                        project_id: project_id.clone(),
                        version_id,
                        from_model_id: from,
                        to_model_id: target.clone(),
                    });
                }
            }
            Ok(events)
        }
        ProjectCommand::DeleteVersions { version_ids } => {
            let version_ids = distinct_ids("versionIds", version_ids)?;
            version_ids
                .into_iter()
                .map(|version_id| {
                    let model_id = p.version(&version_id)?.model_id.clone();
                    Ok(ProjectEvent::VersionDeleted {
                        project_id: project_id.clone(),
                        version_id,
                        model_id,
                    })
                })
                .collect()
        }
        ProjectCommand::MarkVersionReceived {
            version_id,
            user_id,
            source_application,
            message,
        } => {
            p.version(&version_id)?;
            check_entity_id("userId", &user_id)?;
            check_len(
                "sourceApplication",
                &source_application,
                MAX_SOURCE_APPLICATION_CHARS,
            )?;
            check_opt_len("message", message.as_deref(), MAX_MESSAGE_CHARS)?;
            Ok(vec![ProjectEvent::VersionReceived {
                project_id,
                version_id,
                user_id,
                source_application,
                message,
            }])
        }
        ProjectCommand::SetFavorite { user_id, favorited } => {
            check_entity_id("userId", &user_id)?;
            if p.favorited_by.contains(&user_id) == favorited {
                return Ok(vec![]);
            }
            Ok(vec![ProjectEvent::ProjectFavoriteSet {
                project_id,
                user_id,
                favorited,
            }])
        }
    }
}

/// The version of the project fold as a stored snapshot holds it: [`ProjectState`]'s layout and
/// what [`evolve`] makes of each event. Bump it with any change to either; the test
/// `snapshots_of_the_every_event_scenario_are_as_recorded` fails until it is bumped and the
/// recorded snapshots (`project/snapshots.jsonl`) are written again.
pub const SNAPSHOT_FOLD_VERSION: u32 = 1;

/// The shape of a stored project snapshot: the fold's version and the events' schema version
/// (a new upcaster bumps it, and may change what old events fold to). A snapshot of another
/// shape is ignored.
pub fn snapshot_shape() -> String {
    format!(
        "project/fold-{SNAPSHOT_FOLD_VERSION}/events-{}",
        ProjectEvent::SCHEMA_VERSION
    )
}

/// `state` as a stored snapshot holds it.
pub fn to_snapshot(state: &ProjectState) -> Result<String, serde_json::Error> {
    serde_json::to_string(state)
}

/// The state a stored snapshot of [`snapshot_shape`] holds.
pub fn from_snapshot(text: &str) -> Result<ProjectState, serde_json::Error> {
    serde_json::from_str(text)
}

/// Applies one event. Total: an event that does not fit the state (which `decide` never
/// produces) leaves it unchanged rather than panicking.
pub fn evolve(state: ProjectState, event: &ProjectEvent) -> ProjectState {
    match (state, event) {
        (
            ProjectState::Initial,
            ProjectEvent::ProjectCreated {
                project_id,
                name,
                description,
                visibility,
                allow_public_comments,
                ..
            },
        ) => ProjectState::Active(Project {
            id: project_id.clone(),
            name: name.clone(),
            description: description.clone(),
            visibility: *visibility,
            allow_public_comments: *allow_public_comments,
            members: BTreeMap::new(),
            invites: BTreeMap::new(),
            models: BTreeMap::new(),
            versions: BTreeMap::new(),
            webhooks: BTreeMap::new(),
            used_ids: BTreeSet::new(),
            favorited_by: BTreeSet::new(),
        }),
        (ProjectState::Active(p), ProjectEvent::ProjectDeleted { .. }) => {
            ProjectState::Deleted { id: p.id }
        }
        (ProjectState::Active(mut p), event) => {
            apply(&mut p, event);
            ProjectState::Active(p)
        }
        (state, _) => state,
    }
}

fn apply(p: &mut Project, event: &ProjectEvent) {
    match event {
        ProjectEvent::ProjectCreated { .. } | ProjectEvent::ProjectDeleted { .. } => {}
        ProjectEvent::ProjectUpdated {
            name,
            description,
            visibility,
            allow_public_comments,
            ..
        } => {
            p.name.clone_from(name);
            p.description.clone_from(description);
            p.visibility = *visibility;
            p.allow_public_comments = *allow_public_comments;
        }
        ProjectEvent::ProjectMemberRoleSet { user_id, role, .. } => {
            p.members.insert(user_id.clone(), *role);
        }
        ProjectEvent::ProjectMemberRemoved { user_id, .. } => {
            p.members.remove(user_id);
        }
        ProjectEvent::ProjectInviteCreated {
            invite_id,
            target,
            role,
            invited_by,
            ..
        } => {
            p.used_ids.insert(invite_id.clone());
            p.invites.insert(
                invite_id.clone(),
                Invite {
                    target: target.clone(),
                    role: *role,
                    invited_by: invited_by.clone(),
                },
            );
        }
        ProjectEvent::ProjectInviteAccepted { invite_id, .. }
        | ProjectEvent::ProjectInviteDeclined { invite_id, .. }
        | ProjectEvent::ProjectInviteCancelled { invite_id, .. } => {
            p.invites.remove(invite_id);
        }
        ProjectEvent::ModelCreated {
            model_id,
            name,
            description,
            author_id,
            ..
        } => {
            p.used_ids.insert(model_id.clone());
            p.models.insert(
                model_id.clone(),
                Model {
                    name: name.clone(),
                    description: description.clone(),
                    author_id: author_id.clone(),
                },
            );
        }
        ProjectEvent::ModelUpdated {
            model_id,
            name,
            description,
            ..
        } => {
            if let Some(m) = p.models.get_mut(model_id) {
                m.name.clone_from(name);
                m.description.clone_from(description);
            }
        }
        ProjectEvent::ModelDeleted { model_id, .. } => {
            p.models.remove(model_id);
            p.versions.retain(|_, v| v.model_id != *model_id);
        }
        ProjectEvent::VersionCreated {
            version_id,
            model_id,
            author_id,
            ..
        } => {
            p.used_ids.insert(version_id.clone());
            p.versions.insert(
                version_id.clone(),
                Version {
                    model_id: model_id.clone(),
                    author_id: author_id.clone(),
                },
            );
        }
        ProjectEvent::VersionMoved {
            version_id,
            to_model_id,
            ..
        } => {
            if let Some(v) = p.versions.get_mut(version_id) {
                v.model_id.clone_from(to_model_id);
            }
        }
        ProjectEvent::VersionDeleted { version_id, .. } => {
            p.versions.remove(version_id);
        }
        ProjectEvent::VersionUpdated { .. } | ProjectEvent::VersionReceived { .. } => {}
        ProjectEvent::ProjectFavoriteSet {
            user_id, favorited, ..
        } => {
            if *favorited {
                p.favorited_by.insert(user_id.clone());
            } else {
                p.favorited_by.remove(user_id);
            }
        }
        ProjectEvent::WebhookCreated { .. }
        | ProjectEvent::WebhookUpdated { .. }
        | ProjectEvent::WebhookDeleted { .. }
        | ProjectEvent::WebhookDisabled { .. }
        | ProjectEvent::WebhookRedeliveryRequested { .. } => webhook::apply(p, event),
    }
}

/// Folds a stream's events, oldest first, into its state.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a ProjectEvent>) -> ProjectState {
    events.into_iter().fold(ProjectState::default(), evolve)
}

pub mod samples;
pub mod webhook;

#[cfg(test)]
mod tests;

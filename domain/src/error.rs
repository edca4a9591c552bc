//! Why a decision refused a command.
//!
//! Every variant is a distinct, typed reason so that the API layer can map it to a wire error
//! code without parsing messages. Authorization is not decided here but in [`crate::policy`];
//! these are the rules that hold whoever asks.

use std::fmt;

/// The kind of thing a [`DomainError`] is about, so one error variant can serve every entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entity {
    /// A project (Speckle's stream).
    Project,
    /// A model (Speckle's branch).
    Model,
    /// A version (Speckle's commit).
    Version,
    /// A pending project invite.
    Invite,
    /// A project membership.
    Member,
    /// A user account.
    User,
    /// A project webhook.
    Webhook,
    /// A model ingestion.
    Ingestion,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Project => "project",
            Self::Model => "model",
            Self::Version => "version",
            Self::Invite => "invite",
            Self::Member => "member",
            Self::User => "user",
            Self::Webhook => "webhook",
            Self::Ingestion => "ingestion",
        })
    }
}

/// A command broke a domain rule. Suggested wire mapping (the API layer owns it):
/// `NotFound` → `STREAM_NOT_FOUND` for projects, `NOT_FOUND_ERROR` otherwise; `Deleted` of a
/// project → `STREAM_NOT_FOUND`; everything else → `BAD_REQUEST_ERROR`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The addressed entity does not exist (or never did in this aggregate).
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for.
        kind: Entity,
        /// The id that was not found.
        id: String,
    },
    /// A new entity's id is already in use; ids are never reused, even after deletion.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// What was being created.
        kind: Entity,
        /// The clashing id.
        id: String,
    },
    /// A model name is already used in the project (names compare case-insensitively).
    #[error("a model named {name:?} already exists in this project")]
    NameTaken {
        /// The normalised name that clashed.
        name: String,
    },
    /// A field's value breaks a format or length rule.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending input field, in the wire's camelCase.
        field: &'static str,
        /// What is wrong, fit to show to a user.
        reason: String,
    },
    /// The change would leave the project without an owner.
    #[error("a project must keep at least one owner")]
    LastOwner,
    /// The change would leave the server without an admin.
    #[error("the server must keep at least one admin")]
    LastAdmin,
    /// The aggregate was deleted and accepts no further commands.
    #[error("this {0} has been deleted")]
    Deleted(Entity),
    /// A version points at a root object the project does not hold (the original's
    /// `COMMIT_CREATE_ERROR`).
    #[error("Couldn't find commit object")]
    RootObjectMissing {
        /// The missing object's id.
        object_id: String,
    },
    /// `main` and `globals` are reserved model names that cannot be deleted (as in Speckle).
    #[error("the {name:?} model is reserved and cannot be deleted")]
    ReservedModel {
        /// The reserved name.
        name: String,
    },
    /// The user is already a member, so an invite makes no sense.
    #[error("user {user_id} is already a member of this project")]
    AlreadyMember {
        /// The member's id.
        user_id: String,
    },
    /// Speckle does not let server guests own projects.
    #[error("server guests cannot be project owners")]
    GuestCannotOwn,
    /// The invite is addressed to someone else.
    #[error("this invite is not addressed to user {user_id}")]
    InviteNotForUser {
        /// The user who tried to use it.
        user_id: String,
    },
    /// The server does not allow the guest role.
    #[error("the guest role is not enabled on this server")]
    GuestRoleDisabled,
    /// The entity's status does not allow the action (e.g. progress on a finished ingestion).
    #[error("this {kind} is {status}: {action} is not possible any more")]
    InvalidTransition {
        /// What was acted on.
        kind: Entity,
        /// Its status.
        status: &'static str,
        /// The refused action, as the wire names it.
        action: &'static str,
    },
    /// A per-project limit (e.g. webhooks) is reached.
    #[error("this project already has the maximum of {max} {what}")]
    LimitReached {
        /// What is counted.
        what: &'static str,
        /// The configured limit.
        max: usize,
    },
}

impl DomainError {
    /// Shorthand for [`DomainError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`DomainError::NotFound`].
    pub fn not_found(kind: Entity, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }
}

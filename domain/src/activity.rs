//! Speckle's activity vocabulary, derived from project events.
//!
//! The original writes a `stream_activity` row beside every change, and its webhooks fire on
//! those rows' action types. Here the events are the record, so the activity feed and the
//! webhook triggers are both one pure mapping of the log: whatever API made the change (the
//! current one, where a model is a branch and a version a commit, or the legacy one), the
//! same event yields the same action type.

use crate::project::ProjectEvent;

/// What kind of thing an activity is about (`resourceType` on the wire).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    /// A project (`stream`).
    Stream,
    /// A model (`branch`).
    Branch,
    /// A version (`commit`).
    Commit,
    /// A user.
    User,
}

impl ResourceType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Branch => "branch",
            Self::Commit => "commit",
            Self::User => "user",
        }
    }
}

/// One activity entry an event stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activity {
    /// The original's `actionType`, e.g. `commit_create`; also the webhook trigger name.
    pub action_type: &'static str,
    /// What it is about.
    pub resource_type: ResourceType,
    /// The id of what it is about.
    pub resource_id: String,
    /// A short human message, as the original's feed shows.
    pub message: String,
}

/// Every action type a project event can produce: the webhook triggers a client may pick,
/// beyond which the original also accepts its comment triggers (kept valid, never fired:
/// strata has no comments yet).
pub const ACTION_TYPES: [&str; 16] = [
    "stream_create",
    "stream_update",
    "stream_delete",
    "stream_permissions_add",
    "stream_permissions_remove",
    "stream_invite_sent",
    "stream_permissions_invite_accepted",
    "stream_invite_declined",
    "branch_create",
    "branch_update",
    "branch_delete",
    "commit_create",
    "commit_update",
    "commit_move",
    "commit_delete",
    "commit_receive",
];

/// Trigger names the original accepts that strata never fires (comments do not exist yet).
pub const DORMANT_TRIGGERS: [&str; 3] = ["comment_created", "comment_archived", "comment_replied"];

/// Whether `trigger` names something a webhook may subscribe to.
pub fn is_trigger(trigger: &str) -> bool {
    ACTION_TYPES.contains(&trigger) || DORMANT_TRIGGERS.contains(&trigger)
}

/// Who acted, when the event itself says (for events appended without an actor in their
/// metadata, e.g. by tools).
pub fn actor_hint(event: &ProjectEvent) -> Option<&str> {
    use ProjectEvent as E;
    match event {
        E::ProjectCreated { owner_id, .. } => Some(owner_id),
        E::ModelCreated { author_id, .. } | E::VersionCreated { author_id, .. } => Some(author_id),
        E::ProjectInviteCreated { invited_by, .. } => Some(invited_by),
        E::ProjectInviteAccepted { user_id, .. }
        | E::ProjectInviteDeclined { user_id, .. }
        | E::VersionReceived { user_id, .. }
        | E::ProjectFavoriteSet { user_id, .. } => Some(user_id),
        _ => None,
    }
}

/// The activity entries `event` stands for (none for bookkeeping events such as webhook
/// configuration or a cancelled invite, which the original does not record either).
pub fn of_project_event(event: &ProjectEvent) -> Vec<Activity> {
    use ProjectEvent as E;
    let entry = |resource_type, action_type, id: &str, message| Activity {
        action_type,
        resource_type,
        resource_id: id.to_owned(),
        message,
    };
    let stream = |action, id: &str, message| entry(ResourceType::Stream, action, id, message);
    let branch = |action, id: &str, message| entry(ResourceType::Branch, action, id, message);
    let commit = |action, id: &str, message| entry(ResourceType::Commit, action, id, message);
    match event {
        E::ProjectCreated {
            project_id, name, ..
        } => vec![stream(
            "stream_create",
            project_id,
            format!("Stream '{name}' created"),
        )],
        E::ProjectUpdated { project_id, .. } => vec![stream(
            "stream_update",
            project_id,
            "Stream metadata changed".into(),
        )],
        E::ProjectDeleted { project_id } => {
            vec![stream("stream_delete", project_id, "Stream deleted".into())]
        }
        E::ProjectMemberRoleSet {
            project_id,
            user_id,
            role,
            ..
        } => vec![stream(
            "stream_permissions_add",
            project_id,
            format!("Permission granted to user {user_id} ({})", role.as_str()),
        )],
        E::ProjectMemberRemoved {
            project_id,
            user_id,
            ..
        } => vec![stream(
            "stream_permissions_remove",
            project_id,
            format!("Permission revoked for user {user_id}"),
        )],
        E::ProjectInviteCreated { project_id, .. } => vec![stream(
            "stream_invite_sent",
            project_id,
            "User invited to the stream".into(),
        )],
        E::ProjectInviteAccepted {
            project_id,
            user_id,
            role,
            ..
        } => vec![stream(
            "stream_permissions_invite_accepted",
            project_id,
            format!("User {user_id} accepted an invite ({})", role.as_str()),
        )],
        E::ProjectInviteDeclined {
            project_id,
            user_id,
            ..
        } => vec![stream(
            "stream_invite_declined",
            project_id,
            format!("User {user_id} declined an invite"),
        )],
        E::ProjectInviteCancelled { .. }
        | E::WebhookCreated { .. }
        | E::WebhookUpdated { .. }
        | E::WebhookDeleted { .. }
        | E::WebhookDisabled { .. }
        | E::WebhookRedeliveryRequested { .. }
        // A favourite is a user's bookmark; the original records no activity for it.
        | E::ProjectFavoriteSet { .. } => Vec::new(),
        E::ModelCreated { model_id, name, .. } => vec![branch(
            "branch_create",
            model_id,
            format!("Branch created: {name}"),
        )],
        E::ModelUpdated { model_id, name, .. } => vec![branch(
            "branch_update",
            model_id,
            format!("Branch metadata changed for branch {name}"),
        )],
        E::ModelDeleted { model_id, name, .. } => vec![branch(
            "branch_delete",
            model_id,
            format!("Branch deleted: {name}"),
        )],
        E::VersionCreated {
            version_id,
            message,
            ..
        } => vec![commit(
            "commit_create",
            version_id,
            format!(
                "Commit created: {version_id} ({})",
                message.as_deref().unwrap_or_default()
            ),
        )],
        E::VersionUpdated { version_id, .. } => vec![commit(
            "commit_update",
            version_id,
            format!("Commit updated: {version_id}"),
        )],
        E::VersionMoved {
            version_id,
            to_model_id,
            ..
        } => vec![commit(
            "commit_move",
            version_id,
            format!("Commit {version_id} moved to branch {to_model_id}"),
        )],
        E::VersionDeleted { version_id, .. } => vec![commit(
            "commit_delete",
            version_id,
            format!("Commit deleted: {version_id}"),
        )],
        E::VersionReceived {
            version_id,
            user_id,
            ..
        } => vec![commit(
            "commit_receive",
            version_id,
            format!("Commit {version_id} received by user {user_id}"),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_type_is_a_trigger_and_comment_triggers_stay_valid() {
        for a in ACTION_TYPES {
            assert!(is_trigger(a), "{a}");
        }
        assert!(is_trigger("comment_created"));
        assert!(!is_trigger("commit_created"));
        assert!(!is_trigger(""));
    }

    #[test]
    fn versions_map_to_commits_and_models_to_branches() {
        let created = ProjectEvent::VersionCreated {
            project_id: "p".into(),
            version_id: "v".into(),
            model_id: "m".into(),
            object_id: "o".into(),
            message: Some("hi".into()),
            source_application: None,
            total_children_count: 0,
            parents: vec![],
            author_id: "u".into(),
        };
        let a = of_project_event(&created);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].action_type, "commit_create");
        assert_eq!(a[0].resource_type, ResourceType::Commit);
        assert_eq!(a[0].resource_id, "v");
        let deleted = ProjectEvent::ModelDeleted {
            project_id: "p".into(),
            model_id: "m".into(),
            name: "main".into(),
            version_ids: vec![],
        };
        assert_eq!(of_project_event(&deleted)[0].action_type, "branch_delete");
        assert!(
            of_project_event(&ProjectEvent::ProjectInviteCancelled {
                project_id: "p".into(),
                invite_id: "i".into()
            })
            .is_empty()
        );
    }
}

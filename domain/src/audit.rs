//! A project's history for auditors: the project as it was after any event (a fold of its
//! events alone, richer than the write side's state: messages, objects, webhook settings) and
//! a readable line for each change ("model renamed from A to B").
//!
//! Pure: the caller reads the events and passes each one's recorded time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::{ProjectRole, Visibility};
use crate::project::{InviteTarget, ProjectEvent};

/// The version of [`ProjectView::apply`]'s fold. Stored snapshots of views (`audit_snapshots`)
/// are used only by a fold of the same version: raise it whenever `apply` or the views change
/// what they keep, and older snapshots are ignored (and rebuilt on the next replays).
pub const FOLD_VERSION: i32 = 1;

/// Every how many events of a project a replay stores a snapshot of the view, so a later
/// replay folds at most this many events after the nearest one.
pub const SNAPSHOT_EVERY: i64 = 500;

/// A project as it was.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Visibility.
    pub visibility: Option<Visibility>,
    /// Whether non-members may comment.
    pub allow_public_comments: bool,
    /// Deleted by then.
    pub deleted: bool,
    /// When it was created (the first event's time).
    pub created_at: String,
    /// Members and their roles.
    pub team: BTreeMap<String, ProjectRole>,
    /// Pending invites: id → (target, role).
    pub invites: BTreeMap<String, InviteView>,
    /// Models by id.
    pub models: BTreeMap<String, ModelView>,
    /// Versions by id.
    pub versions: BTreeMap<String, VersionView>,
    /// Webhooks by id (their secrets are never events).
    pub webhooks: BTreeMap<String, WebhookView>,
}

/// A pending invite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteView {
    /// Who: a user id or an email.
    pub target: String,
    /// The role offered.
    pub role: ProjectRole,
}

/// A model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Author.
    pub author_id: String,
    /// Created.
    pub created_at: String,
}

/// A version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    /// Its model.
    pub model_id: String,
    /// Root object.
    pub referenced_object: String,
    /// Message.
    pub message: Option<String>,
    /// Sending application.
    pub source_application: Option<String>,
    /// Author.
    pub author_id: String,
    /// Created.
    pub created_at: String,
}

/// A webhook's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    /// Target URL.
    pub url: String,
    /// Description.
    pub description: String,
    /// Triggers.
    pub triggers: Vec<String>,
    /// Enabled.
    pub enabled: bool,
}

fn target(t: &InviteTarget) -> String {
    match t {
        InviteTarget::UserId(u) | InviteTarget::Email(u) => u.clone(),
    }
}

impl ProjectView {
    /// The view after `event`, recorded at `at` (RFC 3339).
    pub fn apply(&mut self, event: &ProjectEvent, at: &str) {
        use ProjectEvent as E;
        match event {
            E::ProjectCreated {
                project_id,
                name,
                description,
                visibility,
                allow_public_comments,
                owner_id,
            } => {
                self.id = project_id.clone();
                self.name = name.clone();
                self.description = description.clone();
                self.visibility = Some(*visibility);
                self.allow_public_comments = *allow_public_comments;
                self.created_at = at.to_owned();
                self.team.insert(owner_id.clone(), ProjectRole::Owner);
            }
            E::ProjectUpdated {
                name,
                description,
                visibility,
                allow_public_comments,
                ..
            } => {
                self.name = name.clone();
                self.description = description.clone();
                self.visibility = Some(*visibility);
                self.allow_public_comments = *allow_public_comments;
            }
            E::ProjectDeleted { .. } => self.deleted = true,
            E::ProjectMemberRoleSet { user_id, role, .. } => {
                self.team.insert(user_id.clone(), *role);
            }
            E::ProjectMemberRemoved { user_id, .. } => {
                self.team.remove(user_id);
            }
            E::ProjectInviteCreated {
                invite_id,
                target: t,
                role,
                ..
            } => {
                self.invites.insert(
                    invite_id.clone(),
                    InviteView {
                        target: target(t),
                        role: *role,
                    },
                );
            }
            E::ProjectInviteAccepted {
                invite_id,
                user_id,
                role,
                ..
            } => {
                self.invites.remove(invite_id);
                self.team.insert(user_id.clone(), *role);
            }
            E::ProjectInviteDeclined { invite_id, .. }
            | E::ProjectInviteCancelled { invite_id, .. } => {
                self.invites.remove(invite_id);
            }
            E::ModelCreated {
                model_id,
                name,
                description,
                author_id,
                ..
            } => {
                self.models.insert(
                    model_id.clone(),
                    ModelView {
                        name: name.clone(),
                        description: description.clone(),
                        author_id: author_id.clone(),
                        created_at: at.to_owned(),
                    },
                );
            }
            E::ModelUpdated {
                model_id,
                name,
                description,
                ..
            } => {
                if let Some(m) = self.models.get_mut(model_id) {
                    m.name = name.clone();
                    m.description = description.clone();
                }
            }
            E::ModelDeleted {
                model_id,
                version_ids,
                ..
            } => {
                self.models.remove(model_id);
                for v in version_ids {
                    self.versions.remove(v);
                }
            }
            E::VersionCreated {
                version_id,
                model_id,
                object_id,
                message,
                source_application,
                author_id,
                ..
            } => {
                self.versions.insert(
                    version_id.clone(),
                    VersionView {
                        model_id: model_id.clone(),
                        referenced_object: object_id.clone(),
                        message: message.clone(),
                        source_application: source_application.clone(),
                        author_id: author_id.clone(),
                        created_at: at.to_owned(),
                    },
                );
            }
            E::VersionUpdated {
                version_id,
                message,
                ..
            } => {
                if let Some(v) = self.versions.get_mut(version_id) {
                    v.message = Some(message.clone());
                }
            }
            E::VersionMoved {
                version_id,
                to_model_id,
                ..
            } => {
                if let Some(v) = self.versions.get_mut(version_id) {
                    v.model_id = to_model_id.clone();
                }
            }
            E::VersionDeleted { version_id, .. } => {
                self.versions.remove(version_id);
            }
            // A favourite is a user's bookmark, not part of the project's state.
            E::VersionReceived { .. }
            | E::WebhookRedeliveryRequested { .. }
            | E::ProjectFavoriteSet { .. } => {}
            E::WebhookCreated {
                webhook_id, config, ..
            }
            | E::WebhookUpdated {
                webhook_id, config, ..
            } => {
                self.webhooks.insert(
                    webhook_id.clone(),
                    WebhookView {
                        url: config.url.clone(),
                        description: config.description.clone(),
                        triggers: config.triggers.clone(),
                        enabled: config.enabled,
                    },
                );
            }
            E::WebhookDeleted { webhook_id, .. } => {
                self.webhooks.remove(webhook_id);
            }
            E::WebhookDisabled { webhook_id, .. } => {
                if let Some(w) = self.webhooks.get_mut(webhook_id) {
                    w.enabled = false;
                }
            }
        }
    }

    fn model_name(&self, model_id: &str) -> String {
        self.models
            .get(model_id)
            .map_or_else(|| format!("model {model_id}"), |m| format!("{:?}", m.name))
    }

    /// A readable line for `event`, given the view before it.
    pub fn describe(&self, event: &ProjectEvent) -> String {
        use ProjectEvent as E;
        let role = |r: &ProjectRole| r.as_str().to_owned();
        match event {
            E::ProjectCreated { name, .. } => format!("project {name:?} created"),
            E::ProjectUpdated {
                name,
                description,
                visibility,
                allow_public_comments,
                ..
            } => {
                let mut changes = Vec::new();
                if *name != self.name {
                    changes.push(format!("renamed from {:?} to {name:?}", self.name));
                }
                if *description != self.description {
                    changes.push("description changed".to_owned());
                }
                if Some(*visibility) != self.visibility {
                    changes.push(format!(
                        "visibility {} → {}",
                        self.visibility.map_or("none", |v| v.as_str()),
                        visibility.as_str()
                    ));
                }
                if *allow_public_comments != self.allow_public_comments {
                    changes.push(format!("public comments {allow_public_comments}"));
                }
                if changes.is_empty() {
                    "project updated (no change)".to_owned()
                } else {
                    format!("project {}", changes.join(", "))
                }
            }
            E::ProjectDeleted { .. } => format!("project {:?} deleted", self.name),
            E::ProjectMemberRoleSet {
                user_id,
                role: r,
                previous_role,
                ..
            } => match previous_role {
                Some(p) => format!("member {user_id} role {} → {}", role(p), role(r)),
                None => format!("member {user_id} added as {}", role(r)),
            },
            E::ProjectMemberRemoved {
                user_id,
                previous_role,
                ..
            } => format!("member {user_id} ({}) removed", role(previous_role)),
            E::ProjectInviteCreated {
                target: t,
                role: r,
                invited_by,
                ..
            } => format!("{invited_by} invited {} as {}", target(t), role(r)),
            E::ProjectInviteAccepted {
                user_id, role: r, ..
            } => format!("{user_id} accepted an invite as {}", role(r)),
            E::ProjectInviteDeclined { user_id, .. } => format!("{user_id} declined an invite"),
            E::ProjectInviteCancelled { invite_id, .. } => {
                let who = self
                    .invites
                    .get(invite_id)
                    .map_or_else(|| invite_id.clone(), |i| i.target.clone());
                format!("invite for {who} cancelled")
            }
            E::ModelCreated { name, .. } => format!("model {name:?} created"),
            E::ModelUpdated {
                model_id,
                name,
                description,
                ..
            } => {
                let before = self.models.get(model_id);
                let mut changes = Vec::new();
                if before.is_some_and(|m| m.name != *name) {
                    changes.push(format!(
                        "renamed from {} to {name:?}",
                        self.model_name(model_id)
                    ));
                }
                if before.is_some_and(|m| m.description != *description) {
                    changes.push("description changed".to_owned());
                }
                if changes.is_empty() {
                    format!("model {name:?} updated (no change)")
                } else {
                    format!("model {}", changes.join(", "))
                }
            }
            E::ModelDeleted {
                name, version_ids, ..
            } => format!(
                "model {name:?} deleted with {} version(s)",
                version_ids.len()
            ),
            E::VersionCreated {
                version_id,
                model_id,
                source_application,
                ..
            } => format!(
                "version {version_id} created in {} from {}",
                self.model_name(model_id),
                // None recorded: say so.
                source_application
                    .as_deref()
                    .unwrap_or("an unnamed application")
            ),
            E::VersionUpdated {
                version_id,
                message,
                ..
            } => {
                let before = self
                    .versions
                    .get(version_id)
                    .and_then(|v| v.message.clone())
                    .unwrap_or_default();
                format!("version {version_id} message {before:?} → {message:?}")
            }
            E::VersionMoved {
                version_id,
                from_model_id,
                to_model_id,
                ..
            } => format!(
                "version {version_id} moved from {} to {}",
                self.model_name(from_model_id),
                self.model_name(to_model_id)
            ),
            E::VersionDeleted { version_id, .. } => format!("version {version_id} deleted"),
            E::VersionReceived {
                version_id,
                user_id,
                source_application,
                ..
            } => format!("version {version_id} received by {user_id} in {source_application}"),
            E::ProjectFavoriteSet {
                user_id, favorited, ..
            } => {
                if *favorited {
                    format!("project marked as a favourite by {user_id}")
                } else {
                    format!("project no longer a favourite of {user_id}")
                }
            }
            E::WebhookCreated { config, .. } => format!("webhook to {} created", config.url),
            E::WebhookUpdated {
                webhook_id, config, ..
            } => match self.webhooks.get(webhook_id) {
                Some(w) if w.url != config.url => {
                    format!("webhook URL changed from {} to {}", w.url, config.url)
                }
                Some(w) if w.enabled != config.enabled => format!(
                    "webhook to {} {}",
                    config.url,
                    if config.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    }
                ),
                _ => format!("webhook to {} updated", config.url),
            },
            E::WebhookDeleted { webhook_id, .. } => match self.webhooks.get(webhook_id) {
                Some(w) => format!("webhook to {} deleted", w.url),
                None => format!("webhook {webhook_id} deleted"),
            },
            E::WebhookDisabled { reason, .. } => format!("webhook disabled: {reason}"),
            E::WebhookRedeliveryRequested { delivery_id, .. } => {
                format!("redelivery of {delivery_id} requested")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_what_changed_from_what() {
        let mut view = ProjectView::default();
        let created = ProjectEvent::ProjectCreated {
            project_id: "p".into(),
            name: "Tower".into(),
            description: String::new(),
            visibility: Visibility::Private,
            allow_public_comments: false,
            owner_id: "u1".into(),
        };
        assert_eq!(view.describe(&created), "project \"Tower\" created");
        view.apply(&created, "2026-01-01T00:00:00Z");
        let model = ProjectEvent::ModelCreated {
            project_id: "p".into(),
            model_id: "m".into(),
            name: "A".into(),
            description: None,
            author_id: "u1".into(),
        };
        view.apply(&model, "2026-01-01T00:00:01Z");
        let renamed = ProjectEvent::ModelUpdated {
            project_id: "p".into(),
            model_id: "m".into(),
            name: "B".into(),
            description: None,
        };
        assert_eq!(view.describe(&renamed), "model renamed from \"A\" to \"B\"");
        view.apply(&renamed, "2026-01-01T00:00:02Z");
        assert_eq!(view.models["m"].name, "B");
        let promoted = ProjectEvent::ProjectMemberRoleSet {
            project_id: "p".into(),
            user_id: "u2".into(),
            role: ProjectRole::Owner,
            previous_role: Some(ProjectRole::Contributor),
        };
        assert_eq!(
            view.describe(&promoted),
            "member u2 role stream:contributor → stream:owner"
        );
        view.apply(&promoted, "2026-01-01T00:00:03Z");
        assert_eq!(view.team["u2"], ProjectRole::Owner);

        // A stored snapshot reads back as the same view (replays resume from it).
        let stored = serde_json::to_value(&view).expect("a view serialises");
        let read: ProjectView = serde_json::from_value(stored).expect("and reads back");
        assert_eq!(read, view);
        assert!(read.visibility.is_some() && !read.models.is_empty() && !read.team.is_empty());
    }
}

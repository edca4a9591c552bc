//! Commands and events for tests, in this crate and in the layers above it: one scenario
//! that emits every project event type (checked by a test against
//! [`ProjectEvent::EVENT_TYPES`]), so a test that must see every type takes its events from
//! here and cannot miss a new one.

use super::*;

/// The sample project.
pub const PID: &str = "a000000000";
/// Its owner.
pub const OWNER: &str = "b000000001";
/// A user.
pub const ALICE: &str = "b000000002";
/// A user.
pub const BOB: &str = "b000000003";
/// The `main` model.
pub const MAIN: &str = "c000000000";
/// A model.
pub const M1: &str = "c000000001";
/// A model.
pub const M2: &str = "c000000002";
/// A version.
pub const V1: &str = "d000000001";
/// A version.
pub const V2: &str = "d000000002";
/// A version.
pub const V3: &str = "d000000003";
/// An invite.
pub const I1: &str = "e000000001";
/// An invite.
pub const I2: &str = "e000000002";
/// A root object id.
pub const OBJ: &str = "0123456789abcdef0123456789abcdef";

/// Creates [`PID`], owned by [`OWNER`], with a `main` model when asked.
pub fn create_cmd(default_model: bool) -> ProjectCommand {
    ProjectCommand::Create {
        id: PID.into(),
        name: "  Tower  ".into(),
        description: None,
        visibility: Visibility::Private,
        owner_user_id: OWNER.into(),
        default_model_id: default_model.then(|| MAIN.into()),
    }
}

/// Creates a model, by [`OWNER`].
pub fn model(id: &str, name: &str) -> ProjectCommand {
    ProjectCommand::CreateModel {
        model_id: id.into(),
        name: name.into(),
        description: None,
        author_id: OWNER.into(),
    }
}

/// Creates a version of `model_id` with [`OBJ`] as its root.
pub fn version(id: &str, model_id: &str, author: &str) -> ProjectCommand {
    ProjectCommand::CreateVersion {
        version_id: id.into(),
        model_id: model_id.into(),
        object_id: OBJ.into(),
        root_object_stored: true,
        message: Some("first".into()),
        source_application: Some("Rhino".into()),
        total_children_count: 42,
        parents: vec![],
        author_id: author.into(),
    }
}

/// Gives `user` `role`.
pub fn set_role(user: &str, role: ProjectRole) -> ProjectCommand {
    ProjectCommand::SetMemberRole {
        user_id: user.into(),
        role,
        user_server_role: ServerRole::User,
    }
}

/// An invitee with `emails`.
pub fn invitee(user: &str, emails: &[&str]) -> Invitee {
    Invitee {
        user_id: user.into(),
        emails: emails.iter().map(|e| (*e).to_owned()).collect(),
        server_role: ServerRole::User,
    }
}

/// Invites `email`, from [`OWNER`].
pub fn invite_email(id: &str, email: &str, role: ProjectRole) -> ProjectCommand {
    ProjectCommand::CreateInvite {
        invite_id: id.into(),
        target: InviteTarget::Email(email.into()),
        role,
        invited_by: OWNER.into(),
        target_server_role: None,
    }
}

/// A scenario that emits every event type at least once.
pub fn every_event_scenario() -> Vec<ProjectCommand> {
    vec![
        create_cmd(true),
        ProjectCommand::Update {
            name: Some("n".into()),
            description: None,
            visibility: Some(Visibility::Public),
            allow_public_comments: Some(true),
        },
        set_role(ALICE, ProjectRole::Contributor),
        ProjectCommand::RemoveMember {
            user_id: ALICE.into(),
        },
        invite_email(I1, "bob@example.com", ProjectRole::Reviewer),
        ProjectCommand::AcceptInvite {
            invite_id: I1.into(),
            invitee: invitee(BOB, &["bob@example.com"]),
        },
        ProjectCommand::CreateInvite {
            invite_id: I2.into(),
            target: InviteTarget::UserId(ALICE.into()),
            role: ProjectRole::Contributor,
            invited_by: OWNER.into(),
            target_server_role: Some(ServerRole::User),
        },
        ProjectCommand::DeclineInvite {
            invite_id: I2.into(),
            invitee: invitee(ALICE, &[]),
        },
        invite_email("e000000003", "carol@example.com", ProjectRole::Reviewer),
        ProjectCommand::CancelInvite {
            invite_id: "e000000003".into(),
        },
        model(M1, "a"),
        ProjectCommand::UpdateModel {
            model_id: M1.into(),
            name: Some("b".into()),
            description: Some("d".into()),
        },
        version(V1, M1, OWNER),
        ProjectCommand::CreateVersion {
            version_id: V2.into(),
            model_id: M1.into(),
            object_id: OBJ.into(),
            root_object_stored: true,
            message: None,
            source_application: None,
            total_children_count: 1,
            parents: vec![V1.into()],
            author_id: OWNER.into(),
        },
        ProjectCommand::UpdateVersion {
            version_id: V1.into(),
            message: "m".into(),
        },
        ProjectCommand::MoveVersions {
            version_ids: vec![V1.into()],
            target_model_name: "main".into(),
            new_model_id: M2.into(),
            author_id: OWNER.into(),
        },
        ProjectCommand::MarkVersionReceived {
            version_id: V1.into(),
            user_id: BOB.into(),
            source_application: "Blender".into(),
            message: Some("got it".into()),
        },
        ProjectCommand::SetFavorite {
            user_id: BOB.into(),
            favorited: true,
        },
        ProjectCommand::DeleteVersions {
            version_ids: vec![V1.into()],
        },
        ProjectCommand::DeleteModel {
            model_id: M1.into(),
        },
        ProjectCommand::CreateWebhook {
            webhook_id: "f000000001".into(),
            config: super::webhook::WebhookConfig {
                url: "https://hooks.example.com/x".into(),
                description: "ci".into(),
                triggers: vec!["commit_create".into()],
                enabled: true,
                has_secret: false,
            },
            max_per_project: 100,
        },
        ProjectCommand::UpdateWebhook {
            webhook_id: "f000000001".into(),
            changes: super::webhook::WebhookChanges {
                has_secret: Some(true),
                ..Default::default()
            },
        },
        ProjectCommand::DisableWebhook {
            webhook_id: "f000000001".into(),
            reason: "failing".into(),
        },
        ProjectCommand::RedeliverWebhook {
            webhook_id: "f000000001".into(),
            delivery_id: "d1".into(),
        },
        ProjectCommand::DeleteWebhook {
            webhook_id: "f000000001".into(),
        },
        ProjectCommand::Delete,
    ]
}

/// One run of [`every_event_scenario`]: every project event type at least once, in an order
/// `decide` produces.
pub fn one_of_each() -> Vec<ProjectEvent> {
    let mut state = ProjectState::default();
    let mut all = Vec::new();
    for command in every_event_scenario() {
        // The scenario is checked by this crate's tests; a refusal here would be a bug there.
        let events = decide(&state, command).unwrap_or_default();
        for e in &events {
            state = evolve(state, e);
        }
        all.extend(events);
    }
    all
}

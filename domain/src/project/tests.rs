//! Project aggregate tests: one test per rule, then property tests over random command
//! sequences.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::samples::*;
use super::*;

/// Runs commands, failing on the first refusal; returns the state and every event.
fn run(commands: Vec<ProjectCommand>) -> (ProjectState, Vec<ProjectEvent>) {
    try_run(commands).unwrap()
}

fn try_run(
    commands: Vec<ProjectCommand>,
) -> Result<(ProjectState, Vec<ProjectEvent>), DomainError> {
    let mut state = ProjectState::default();
    let mut all = Vec::new();
    for c in commands {
        let events = decide(&state, c)?;
        for e in &events {
            state = evolve(state, e);
        }
        all.extend(events);
    }
    Ok((state, all))
}

fn project(state: &ProjectState) -> &Project {
    state.project().unwrap()
}

fn decide_err(state: &ProjectState, command: ProjectCommand) -> DomainError {
    decide(state, command).unwrap_err()
}

#[test]
fn current_api_create_makes_an_owner_and_no_model() {
    let (state, events) = run(vec![create_cmd(false)]);
    let types: Vec<_> = events.iter().map(ProjectEvent::event_type).collect();
    assert_eq!(types, ["ProjectCreated", "ProjectMemberRoleSet"]);
    let p = project(&state);
    assert_eq!(p.name, "Tower");
    assert_eq!(p.description, "");
    assert_eq!(p.visibility, Visibility::Private);
    assert!(!p.allow_public_comments);
    assert_eq!(p.role_of(OWNER), Some(ProjectRole::Owner));
    assert!(p.models.is_empty());
    assert_eq!(stream_id(PID).unwrap().as_str(), "project:a000000000");
}

#[test]
fn legacy_create_adds_the_main_model() {
    let (state, events) = run(vec![create_cmd(true)]);
    assert_eq!(events.len(), 3);
    let m = &project(&state).models[MAIN];
    assert_eq!(m.name, "main");
    assert_eq!(m.description.as_deref(), Some("default model"));
    assert_eq!(m.author_id, OWNER);
}

#[test]
fn unlisted_is_stored_as_public() {
    let mut c = create_cmd(false);
    if let ProjectCommand::Create { visibility, .. } = &mut c {
        *visibility = Visibility::Unlisted;
    }
    let (state, _) = run(vec![c]);
    assert_eq!(project(&state).visibility, Visibility::Public);
}

#[test]
fn create_validates_ids_and_names() {
    let with = |f: fn(&mut ProjectCommand)| {
        let mut c = create_cmd(true);
        f(&mut c);
        decide_err(&ProjectState::default(), c)
    };
    let field = |e: DomainError| match e {
        DomainError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert_eq!(
        field(with(|c| if let ProjectCommand::Create { id, .. } = c {
            *id = "A000000000".into()
        })),
        "id"
    );
    assert_eq!(
        field(with(|c| if let ProjectCommand::Create { name, .. } = c {
            *name = "   ".into()
        })),
        "name"
    );
    assert_eq!(
        field(with(|c| if let ProjectCommand::Create { name, .. } = c {
            *name = "x".repeat(513)
        })),
        "name"
    );
    assert_eq!(
        field(with(|c| {
            if let ProjectCommand::Create { owner_user_id, .. } = c {
                *owner_user_id = "me".into()
            }
        })),
        "ownerId"
    );
    assert_eq!(
        field(with(|c| {
            if let ProjectCommand::Create {
                default_model_id, ..
            } = c
            {
                *default_model_id = Some("main".into())
            }
        })),
        "defaultModelId"
    );
    assert_eq!(
        field(with(|c| {
            if let ProjectCommand::Create { description, .. } = c {
                *description = Some("x".repeat(65_537))
            }
        })),
        "description"
    );
}

#[test]
fn lifecycle_errors_are_typed() {
    assert!(matches!(
        decide_err(&ProjectState::default(), ProjectCommand::Delete),
        DomainError::NotFound {
            kind: Entity::Project,
            ..
        }
    ));
    let (state, _) = run(vec![create_cmd(false)]);
    assert!(matches!(
        decide_err(&state, create_cmd(false)),
        DomainError::AlreadyExists {
            kind: Entity::Project,
            ..
        }
    ));
    let (state, events) = run(vec![create_cmd(true), ProjectCommand::Delete]);
    assert_eq!(events.last().unwrap().event_type(), "ProjectDeleted");
    assert_eq!(state, ProjectState::Deleted { id: PID.into() });
    for c in [
        create_cmd(false),
        ProjectCommand::Delete,
        model(M1, "x"),
        version(V1, MAIN, OWNER),
        set_role(ALICE, ProjectRole::Reviewer),
    ] {
        assert_eq!(decide_err(&state, c), DomainError::Deleted(Entity::Project));
    }
}

#[test]
fn update_changes_only_given_fields() {
    let (state, _) = run(vec![
        create_cmd(false),
        ProjectCommand::Update {
            name: None,
            description: Some("About".into()),
            visibility: Some(Visibility::Unlisted),
            allow_public_comments: None,
        },
        ProjectCommand::Update {
            name: Some(" Bridge ".into()),
            description: None,
            visibility: None,
            allow_public_comments: Some(true),
        },
    ]);
    let p = project(&state);
    assert_eq!(
        (
            p.name.as_str(),
            p.description.as_str(),
            p.visibility,
            p.allow_public_comments
        ),
        ("Bridge", "About", Visibility::Public, true)
    );
    let nothing = ProjectCommand::Update {
        name: None,
        description: None,
        visibility: None,
        allow_public_comments: None,
    };
    assert_eq!(decide(&state, nothing), Ok(vec![]));
    let empty_name = ProjectCommand::Update {
        name: Some("".into()),
        description: None,
        visibility: None,
        allow_public_comments: None,
    };
    assert!(matches!(
        decide_err(&state, empty_name),
        DomainError::Invalid { field: "name", .. }
    ));
}

#[test]
fn the_last_owner_cannot_be_demoted_or_removed() {
    let (state, _) = run(vec![create_cmd(false)]);
    assert_eq!(
        decide_err(&state, set_role(OWNER, ProjectRole::Contributor)),
        DomainError::LastOwner
    );
    assert_eq!(
        decide_err(
            &state,
            ProjectCommand::RemoveMember {
                user_id: OWNER.into()
            }
        ),
        DomainError::LastOwner
    );
    // With a second owner, the first may step down and leave.
    let (state, _) = run(vec![
        create_cmd(false),
        set_role(ALICE, ProjectRole::Owner),
        set_role(OWNER, ProjectRole::Reviewer),
        ProjectCommand::RemoveMember {
            user_id: OWNER.into(),
        },
    ]);
    let p = project(&state);
    assert_eq!(p.role_of(OWNER), None);
    assert_eq!(p.owner_count(), 1);
    assert_eq!(
        decide_err(
            &state,
            ProjectCommand::RemoveMember {
                user_id: BOB.into()
            }
        ),
        DomainError::not_found(Entity::Member, BOB)
    );
}

#[test]
fn member_roles_record_the_previous_role_and_refuse_guest_owners() {
    let (state, events) = run(vec![
        create_cmd(false),
        set_role(ALICE, ProjectRole::Reviewer),
        set_role(ALICE, ProjectRole::Contributor),
    ]);
    assert!(matches!(
        events.last(),
        Some(ProjectEvent::ProjectMemberRoleSet {
            previous_role: Some(ProjectRole::Reviewer),
            role: ProjectRole::Contributor,
            ..
        })
    ));
    assert_eq!(
        decide(&state, set_role(ALICE, ProjectRole::Contributor)),
        Ok(vec![])
    );
    let guest_owner = ProjectCommand::SetMemberRole {
        user_id: BOB.into(),
        role: ProjectRole::Owner,
        user_server_role: ServerRole::Guest,
    };
    assert_eq!(decide_err(&state, guest_owner), DomainError::GuestCannotOwn);
    assert!(matches!(
        decide_err(&state, set_role("bob", ProjectRole::Reviewer)),
        DomainError::Invalid {
            field: "userId",
            ..
        }
    ));
}

#[test]
fn invites_by_email_are_normalised_replaced_and_accepted_by_the_addressee() {
    let (state, events) = run(vec![
        create_cmd(false),
        invite_email(I1, " Alice@Example.com ", ProjectRole::Reviewer),
        invite_email(I2, "alice@example.com", ProjectRole::Contributor),
    ]);
    // The second invite to the same address replaces the first.
    let types: Vec<_> = events
        .iter()
        .skip(2)
        .map(ProjectEvent::event_type)
        .collect();
    assert_eq!(
        types,
        [
            "ProjectInviteCreated",
            "ProjectInviteCancelled",
            "ProjectInviteCreated"
        ]
    );
    let p = project(&state);
    assert_eq!(p.invites.len(), 1);
    assert_eq!(
        p.invites[I2].target,
        InviteTarget::Email("alice@example.com".into())
    );
    assert!(matches!(
        decide_err(
            &state,
            invite_email(I1, "x@example.com", ProjectRole::Reviewer)
        ),
        DomainError::AlreadyExists {
            kind: Entity::Invite,
            ..
        }
    ));
    assert!(matches!(
        decide_err(
            &state,
            invite_email("e000000009", "nope", ProjectRole::Reviewer)
        ),
        DomainError::Invalid { field: "email", .. }
    ));

    let wrong = ProjectCommand::AcceptInvite {
        invite_id: I2.into(),
        invitee: invitee(BOB, &["bob@example.com"]),
    };
    assert_eq!(
        decide_err(&state, wrong),
        DomainError::InviteNotForUser {
            user_id: BOB.into()
        }
    );
    let (state, events) = {
        let accept = ProjectCommand::AcceptInvite {
            invite_id: I2.into(),
            invitee: invitee(ALICE, &["ALICE@example.com"]),
        };
        let events = decide(&state, accept).unwrap();
        let state = events.iter().fold(state, evolve);
        (state, events)
    };
    let types: Vec<_> = events.iter().map(ProjectEvent::event_type).collect();
    assert_eq!(types, ["ProjectInviteAccepted", "ProjectMemberRoleSet"]);
    let p = project(&state);
    assert_eq!(p.role_of(ALICE), Some(ProjectRole::Contributor));
    assert!(p.invites.is_empty());
    assert_eq!(
        decide_err(
            &state,
            ProjectCommand::CancelInvite {
                invite_id: I2.into()
            }
        ),
        DomainError::not_found(Entity::Invite, I2)
    );
}

#[test]
fn user_invites_refuse_members_and_guest_owners_and_never_demote() {
    let (state, _) = run(vec![create_cmd(false), set_role(ALICE, ProjectRole::Owner)]);
    let invite_user = |user: &str, role, server_role| ProjectCommand::CreateInvite {
        invite_id: I1.into(),
        target: InviteTarget::UserId(user.into()),
        role,
        invited_by: OWNER.into(),
        target_server_role: server_role,
    };
    assert_eq!(
        decide_err(&state, invite_user(ALICE, ProjectRole::Reviewer, None)),
        DomainError::AlreadyMember {
            user_id: ALICE.into()
        }
    );
    assert_eq!(
        decide_err(
            &state,
            invite_user(BOB, ProjectRole::Owner, Some(ServerRole::Guest))
        ),
        DomainError::GuestCannotOwn
    );
    let (state, _) = run(vec![
        create_cmd(false),
        invite_user(BOB, ProjectRole::Owner, None),
    ]);
    let as_guest = ProjectCommand::AcceptInvite {
        invite_id: I1.into(),
        invitee: Invitee {
            server_role: ServerRole::Guest,
            ..invitee(BOB, &[])
        },
    };
    assert_eq!(decide_err(&state, as_guest), DomainError::GuestCannotOwn);

    // A member who joined meanwhile keeps a stronger role on accepting a weaker invite.
    let (state, events) = run(vec![
        create_cmd(false),
        invite_user(BOB, ProjectRole::Reviewer, None),
        set_role(BOB, ProjectRole::Owner),
        ProjectCommand::AcceptInvite {
            invite_id: I1.into(),
            invitee: invitee(BOB, &[]),
        },
    ]);
    assert_eq!(
        events.last().map(ProjectEvent::event_type),
        Some("ProjectInviteAccepted")
    );
    assert_eq!(project(&state).role_of(BOB), Some(ProjectRole::Owner));
}

#[test]
fn invites_can_be_declined_or_cancelled_once() {
    let (state, events) = run(vec![
        create_cmd(false),
        invite_email(I1, "bob@example.com", ProjectRole::Reviewer),
        ProjectCommand::DeclineInvite {
            invite_id: I1.into(),
            invitee: invitee(BOB, &["bob@example.com"]),
        },
        invite_email(I2, "bob@example.com", ProjectRole::Reviewer),
        ProjectCommand::CancelInvite {
            invite_id: I2.into(),
        },
    ]);
    assert!(project(&state).invites.is_empty());
    assert!(
        events
            .iter()
            .any(|e| e.event_type() == "ProjectInviteDeclined")
    );
    assert_eq!(
        decide_err(
            &state,
            ProjectCommand::DeclineInvite {
                invite_id: I1.into(),
                invitee: invitee(BOB, &["bob@example.com"]),
            }
        ),
        DomainError::not_found(Entity::Invite, I1)
    );
    // Ids are never reused, even after the invite is gone.
    assert!(matches!(
        decide_err(
            &state,
            invite_email(I1, "bob@example.com", ProjectRole::Reviewer)
        ),
        DomainError::AlreadyExists { .. }
    ));
}

#[test]
fn model_names_are_canonical_and_unique_case_insensitively() {
    let (state, _) = run(vec![create_cmd(true), model(M1, " Facade/North ")]);
    let p = project(&state);
    assert_eq!(p.models[M1].name, "facade/north");
    assert_eq!(p.model_by_name("FACADE/north").map(|(id, _)| id), Some(M1));
    assert_eq!(p.model_by_name("a//b"), None);
    assert_eq!(
        decide_err(&state, model(M2, "facade/NORTH")),
        DomainError::NameTaken {
            name: "facade/north".into()
        }
    );
    assert_eq!(
        decide_err(&state, model(M2, "Main")),
        DomainError::NameTaken {
            name: "main".into()
        }
    );
    for bad in ["", "/x", "x/", "#x", "$x", "a//b", "a,b", "a\\b"] {
        assert!(
            matches!(
                decide_err(&state, model(M2, bad)),
                DomainError::Invalid { field: "name", .. }
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        decide_err(&state, model(M1, "other")),
        DomainError::AlreadyExists {
            kind: Entity::Model,
            ..
        }
    ));
    assert!(matches!(
        decide_err(&state, model("zzz", "other")),
        DomainError::Invalid { field: "id", .. }
    ));
}

#[test]
fn models_can_be_renamed_but_not_onto_another_name() {
    let (state, _) = run(vec![create_cmd(true), model(M1, "a"), model(M2, "b")]);
    let rename = |id: &str, name: &str| ProjectCommand::UpdateModel {
        model_id: id.into(),
        name: Some(name.into()),
        description: None,
    };
    assert_eq!(
        decide_err(&state, rename(M2, "A")),
        DomainError::NameTaken { name: "a".into() }
    );
    let events = decide(&state, rename(M1, " A ")).unwrap();
    assert!(matches!(
        &events[..],
        [ProjectEvent::ModelUpdated { name, description: None, .. }] if name == "a"
    ));
    let (state, _) = run(vec![
        create_cmd(true),
        model(M1, "a"),
        ProjectCommand::UpdateModel {
            model_id: M1.into(),
            name: None,
            description: Some("desc".into()),
        },
        rename(M1, "a/renamed"),
    ]);
    let m = &project(&state).models[M1];
    assert_eq!(
        (m.name.as_str(), m.description.as_deref()),
        ("a/renamed", Some("desc"))
    );
    let nothing = ProjectCommand::UpdateModel {
        model_id: M1.into(),
        name: None,
        description: None,
    };
    assert!(matches!(
        decide_err(&state, nothing),
        DomainError::Invalid { .. }
    ));
    assert_eq!(
        decide_err(&state, rename(M2, "x")),
        DomainError::not_found(Entity::Model, M2)
    );
}

#[test]
fn deleting_a_model_deletes_its_versions_but_main_is_reserved() {
    let (state, _) = run(vec![
        create_cmd(true),
        model(M1, "a"),
        version(V1, M1, OWNER),
        version(V2, M1, OWNER),
        version(V3, MAIN, OWNER),
    ]);
    assert_eq!(
        decide_err(
            &state,
            ProjectCommand::DeleteModel {
                model_id: MAIN.into()
            }
        ),
        DomainError::ReservedModel {
            name: "main".into()
        }
    );
    let events = decide(
        &state,
        ProjectCommand::DeleteModel {
            model_id: M1.into(),
        },
    )
    .unwrap();
    assert!(matches!(
        &events[..],
        [ProjectEvent::ModelDeleted { version_ids, name, .. }]
            if *version_ids == [V1, V2] && name == "a"
    ));
    let state = events.iter().fold(state, evolve);
    let p = project(&state);
    assert!(!p.models.contains_key(M1));
    assert_eq!(p.versions.keys().collect::<Vec<_>>(), [V3]);
    assert!(matches!(
        decide_err(&state, model(M1, "a")),
        DomainError::AlreadyExists { .. }
    ));
    assert_eq!(
        decide(&state, model(M2, "a")).map(|e| e.len()),
        Ok(1),
        "the name is free again"
    );
}

#[test]
fn versions_need_an_existing_model_and_valid_fields() {
    let (state, _) = run(vec![create_cmd(true), version(V1, MAIN, ALICE)]);
    let p = project(&state);
    assert_eq!(p.versions[V1].model_id, MAIN);
    assert_eq!(p.versions[V1].author_id, ALICE);
    assert_eq!(
        decide_err(&state, version(V2, M1, OWNER)),
        DomainError::not_found(Entity::Model, M1)
    );
    assert!(matches!(
        decide_err(&state, version(V1, MAIN, OWNER)),
        DomainError::AlreadyExists {
            kind: Entity::Version,
            ..
        }
    ));
    // A root object the project does not hold is refused before the model is looked at.
    let mut unstored = version(V2, M1, OWNER);
    if let ProjectCommand::CreateVersion {
        root_object_stored, ..
    } = &mut unstored
    {
        *root_object_stored = false;
    }
    assert_eq!(
        decide_err(&state, unstored),
        DomainError::RootObjectMissing {
            object_id: OBJ.into()
        }
    );
    let with = |f: fn(&mut ProjectCommand)| {
        let mut c = version(V2, MAIN, OWNER);
        f(&mut c);
        match decide_err(&state, c) {
            DomainError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    };
    assert_eq!(
        with(
            |c| if let ProjectCommand::CreateVersion { object_id, .. } = c {
                *object_id = String::new()
            }
        ),
        "objectId"
    );
    assert_eq!(
        with(
            |c| if let ProjectCommand::CreateVersion { object_id, .. } = c {
                *object_id = "a b".into()
            }
        ),
        "objectId"
    );
    assert_eq!(
        with(
            |c| if let ProjectCommand::CreateVersion { object_id, .. } = c {
                *object_id = "a".repeat(65)
            }
        ),
        "objectId"
    );
    assert_eq!(
        with(
            |c| if let ProjectCommand::CreateVersion { message, .. } = c {
                *message = Some("m".repeat(65_537))
            }
        ),
        "message"
    );
    assert_eq!(
        with(|c| {
            if let ProjectCommand::CreateVersion {
                source_application, ..
            } = c
            {
                *source_application = Some("s".repeat(1_025))
            }
        }),
        "sourceApplication"
    );
    assert_eq!(
        with(
            |c| if let ProjectCommand::CreateVersion { parents, .. } = c {
                *parents = vec![String::new()]
            }
        ),
        "parents"
    );
    assert_eq!(
        with(
            |c| if let ProjectCommand::CreateVersion { author_id, .. } = c {
                *author_id = "x".into()
            }
        ),
        "authorId"
    );
}

#[test]
fn versions_can_be_updated_received_and_deleted() {
    let (state, events) = run(vec![
        create_cmd(true),
        version(V1, MAIN, OWNER),
        version(V2, MAIN, OWNER),
        ProjectCommand::UpdateVersion {
            version_id: V1.into(),
            message: "better".into(),
        },
        ProjectCommand::MarkVersionReceived {
            version_id: V1.into(),
            user_id: ALICE.into(),
            source_application: "Revit".into(),
            message: None,
        },
        ProjectCommand::DeleteVersions {
            version_ids: vec![V2.into(), V2.into()],
        },
    ]);
    let deleted: Vec<_> = events
        .iter()
        .filter(|e| e.event_type() == "VersionDeleted")
        .collect();
    assert_eq!(deleted.len(), 1, "duplicates are ignored");
    assert!(events.iter().any(|e| e.event_type() == "VersionReceived"));
    assert_eq!(project(&state).versions.keys().collect::<Vec<_>>(), [V1]);
    assert_eq!(
        decide_err(
            &state,
            ProjectCommand::DeleteVersions {
                version_ids: vec![V1.into(), V2.into()]
            }
        ),
        DomainError::not_found(Entity::Version, V2)
    );
    assert!(matches!(
        decide_err(
            &state,
            ProjectCommand::DeleteVersions {
                version_ids: vec![]
            }
        ),
        DomainError::Invalid {
            field: "versionIds",
            ..
        }
    ));
    assert_eq!(
        decide_err(
            &state,
            ProjectCommand::UpdateVersion {
                version_id: V3.into(),
                message: "x".into()
            }
        ),
        DomainError::not_found(Entity::Version, V3)
    );
}

#[test]
fn moving_versions_finds_the_target_by_name_or_creates_it() {
    let move_to = |ids: &[&str], name: &str| ProjectCommand::MoveVersions {
        version_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        target_model_name: name.into(),
        new_model_id: M2.into(),
        author_id: ALICE.into(),
    };
    let (state, _) = run(vec![
        create_cmd(true),
        model(M1, "Target"),
        version(V1, MAIN, OWNER),
        version(V2, M1, OWNER),
    ]);
    // Existing target, matched case-insensitively; versions already there are not moved.
    let events = decide(&state, move_to(&[V1, V2], "TARGET")).unwrap();
    assert!(matches!(
        &events[..],
        [ProjectEvent::VersionMoved { version_id, from_model_id, to_model_id, .. }]
            if version_id == V1 && from_model_id == MAIN && to_model_id == M1
    ));
    // Missing target: created first, authored by the mover.
    let events = decide(&state, move_to(&[V1], "New/Place")).unwrap();
    assert_eq!(
        events
            .iter()
            .map(ProjectEvent::event_type)
            .collect::<Vec<_>>(),
        ["ModelCreated", "VersionMoved"]
    );
    let state = events.iter().fold(state, evolve);
    let p = project(&state);
    assert_eq!(p.models[M2].name, "new/place");
    assert_eq!(p.models[M2].author_id, ALICE);
    assert_eq!(p.versions[V1].model_id, M2);
    assert!(matches!(
        decide_err(&state, move_to(&[V1], "a//b")),
        DomainError::Invalid { field: "name", .. }
    ));
    assert_eq!(
        decide_err(&state, move_to(&[V3], "target")),
        DomainError::not_found(Entity::Version, V3)
    );
    // The new model id must be fresh when a model must be created.
    assert!(matches!(
        decide_err(&state, move_to(&[V1], "another")),
        DomainError::AlreadyExists {
            kind: Entity::Model,
            ..
        }
    ));
}

#[test]
fn access_facts_come_from_membership_and_visibility() {
    let (state, _) = run(vec![
        create_cmd(false),
        set_role(ALICE, ProjectRole::Reviewer),
    ]);
    let p = project(&state);
    assert_eq!(
        p.access_for(Some(ALICE)),
        ProjectAccess {
            visibility: Visibility::Private,
            role_of_principal: Some(ProjectRole::Reviewer)
        }
    );
    assert_eq!(p.access_for(None).role_of_principal, None);
    assert_eq!(p.access_for(Some(BOB)).role_of_principal, None);
}

#[test]
fn every_event_type_roundtrips_through_the_log_format() {
    let (_, events) = run(every_event_scenario());
    assert_eq!(
        events,
        one_of_each(),
        "the samples are the scenario's events"
    );
    let seen: BTreeSet<_> = events.iter().map(ProjectEvent::event_type).collect();
    let all: BTreeSet<_> = ProjectEvent::EVENT_TYPES.into_iter().collect();
    assert_eq!(seen, all, "the scenario covers every type");
    for e in &events {
        let stored = e.to_new_event().unwrap();
        assert_eq!(stored.event_type, e.event_type());
        assert_eq!(stored.schema_version, ProjectEvent::SCHEMA_VERSION);
        let obj = stored.payload.as_object().unwrap();
        assert_eq!(obj["projectId"], PID);
        assert!(
            obj.keys().all(|k| !k.contains('_')),
            "camelCase keys: {obj:?}"
        );
        assert_eq!(e.project_id(), PID);
        let back = ProjectEvent::from_stored(&stored.event_type, stored.payload).unwrap();
        assert_eq!(&back, e);
    }
}

#[test]
fn payloads_have_the_documented_shape() {
    let (_, events) = run(vec![
        create_cmd(false),
        invite_email(I1, "bob@example.com", ProjectRole::Reviewer),
    ]);
    let created = events[0].to_new_event().unwrap();
    assert_eq!(
        created.payload,
        serde_json::json!({
            "projectId": PID,
            "name": "Tower",
            "description": "",
            "visibility": "PRIVATE",
            "allowPublicComments": false,
            "ownerId": OWNER,
        })
    );
    let role_set = events[1].to_new_event().unwrap();
    assert_eq!(
        role_set.payload,
        serde_json::json!({
            "projectId": PID,
            "userId": OWNER,
            "role": "stream:owner",
            "previousRole": null,
        })
    );
    let invited = events[2].to_new_event().unwrap();
    assert_eq!(
        invited.payload["target"],
        serde_json::json!({"email": "bob@example.com"})
    );
    assert!(matches!(
        ProjectEvent::from_stored("ProjectExploded", serde_json::json!({})),
        Err(EventCodecError::UnknownType(_))
    ));
    assert!(matches!(
        ProjectEvent::from_stored("ProjectDeleted", serde_json::json!({"id": PID})),
        Err(EventCodecError::Payload { .. })
    ));
    let registry = ProjectEvent::register_current(Upcasters::new());
    for t in ProjectEvent::EVENT_TYPES {
        assert_eq!(registry.current_version(t), Some(1));
    }
}

// ---------------------------------------------------------------------------------------
// Property tests

/// What must hold after every accepted command.
fn check_invariants(state: &ProjectState) -> Result<(), String> {
    let ProjectState::Active(p) = state else {
        return Ok(());
    };
    if p.owner_count() == 0 {
        return Err("no owner".into());
    }
    let mut names = BTreeSet::new();
    for (id, m) in &p.models {
        let canonical = ModelName::parse(&m.name).map_err(|e| format!("{id}: {e}"))?;
        if canonical.as_str() != m.name {
            return Err(format!("model {id} name {:?} is not canonical", m.name));
        }
        if !names.insert(m.name.to_lowercase()) {
            return Err(format!("duplicate model name {:?}", m.name));
        }
        if !p.used_ids.contains(id) {
            return Err(format!("model id {id} not recorded as used"));
        }
    }
    for (id, v) in &p.versions {
        if !p.models.contains_key(&v.model_id) {
            return Err(format!(
                "version {id} points at missing model {}",
                v.model_id
            ));
        }
        if !p.used_ids.contains(id) {
            return Err(format!("version id {id} not recorded as used"));
        }
    }
    for id in p.invites.keys() {
        if !p.used_ids.contains(id) {
            return Err(format!("invite id {id} not recorded as used"));
        }
    }
    Ok(())
}

/// Pools make collisions (names, ids, members) frequent, so rules are exercised.
fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(pool).prop_map(str::to_owned)
}

const MODEL_IDS: &[&str] = &[MAIN, M1, M2, "c000000003", "c000000004"];
const VERSION_IDS: &[&str] = &[V1, V2, V3, "d000000004", "d000000005", "d000000006"];
const USER_IDS: &[&str] = &[OWNER, ALICE, BOB, "b000000004"];
const INVITE_IDS: &[&str] = &[I1, I2, "e000000003"];
const MODEL_NAMES: &[&str] = &[
    "main", "Main", "a", "A", "a/b", "A/B ", "x/y/z", "globals", "c",
];
const EMAILS: &[&str] = &["alice@example.com", "ALICE@example.com", "bob@example.com"];

fn arb_role() -> impl Strategy<Value = ProjectRole> {
    prop::sample::select(ProjectRole::ALL.to_vec())
}

fn arb_server_role() -> impl Strategy<Value = ServerRole> {
    prop::sample::select(ServerRole::ALL.to_vec())
}

fn arb_visibility() -> impl Strategy<Value = Visibility> {
    prop::sample::select(vec![
        Visibility::Private,
        Visibility::Unlisted,
        Visibility::Public,
    ])
}

fn arb_target() -> impl Strategy<Value = InviteTarget> {
    prop_oneof![
        pick(USER_IDS).prop_map(InviteTarget::UserId),
        pick(EMAILS).prop_map(InviteTarget::Email),
    ]
}

fn arb_invitee() -> impl Strategy<Value = Invitee> {
    (
        pick(USER_IDS),
        prop::collection::vec(pick(EMAILS), 0..2),
        arb_server_role(),
    )
        .prop_map(|(user_id, emails, server_role)| Invitee {
            user_id,
            emails,
            server_role,
        })
}

/// Commands built from the pools: mostly well-formed, often conflicting.
fn arb_pooled_command() -> impl Strategy<Value = ProjectCommand> {
    prop_oneof![
        1 => (
            proptest::option::of(pick(&["Renamed", "  ", "Tower"])),
            proptest::option::of(pick(&["", "desc"])),
            proptest::option::of(arb_visibility()),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(name, description, visibility, allow_public_comments)| {
                ProjectCommand::Update {
                    name,
                    description,
                    visibility,
                    allow_public_comments,
                }
            }),
        3 => (pick(USER_IDS), arb_role(), arb_server_role()).prop_map(
            |(user_id, role, user_server_role)| ProjectCommand::SetMemberRole {
                user_id,
                role,
                user_server_role
            }
        ),
        2 => pick(USER_IDS).prop_map(|user_id| ProjectCommand::RemoveMember { user_id }),
        2 => (
            pick(INVITE_IDS),
            arb_target(),
            arb_role(),
            pick(USER_IDS),
            proptest::option::of(arb_server_role()),
        )
            .prop_map(|(invite_id, target, role, invited_by, target_server_role)| {
                ProjectCommand::CreateInvite {
                    invite_id,
                    target,
                    role,
                    invited_by,
                    target_server_role,
                }
            }),
        2 => (pick(INVITE_IDS), arb_invitee())
            .prop_map(|(invite_id, invitee)| ProjectCommand::AcceptInvite { invite_id, invitee }),
        1 => (pick(INVITE_IDS), arb_invitee())
            .prop_map(|(invite_id, invitee)| ProjectCommand::DeclineInvite { invite_id, invitee }),
        1 => pick(INVITE_IDS).prop_map(|invite_id| ProjectCommand::CancelInvite { invite_id }),
        4 => (
            pick(MODEL_IDS),
            pick(MODEL_NAMES),
            proptest::option::of(pick(&["d", ""])),
            pick(USER_IDS),
        )
            .prop_map(|(model_id, name, description, author_id)| {
                ProjectCommand::CreateModel {
                    model_id,
                    name,
                    description,
                    author_id,
                }
            }),
        2 => (
            pick(MODEL_IDS),
            proptest::option::of(pick(MODEL_NAMES)),
            proptest::option::of(pick(&["d", ""])),
        )
            .prop_map(|(model_id, name, description)| ProjectCommand::UpdateModel {
                model_id,
                name,
                description,
            }),
        2 => pick(MODEL_IDS).prop_map(|model_id| ProjectCommand::DeleteModel { model_id }),
        5 => (
            pick(VERSION_IDS),
            pick(MODEL_IDS),
            pick(&[OBJ, "abc"]),
            pick(USER_IDS),
            0u32..100,
        )
            .prop_map(|(version_id, model_id, object_id, author_id, total_children_count)| {
                ProjectCommand::CreateVersion {
                    version_id,
                    model_id,
                    object_id,
                    root_object_stored: true,
                    message: None,
                    source_application: Some("Rhino".into()),
                    total_children_count,
                    parents: vec![],
                    author_id,
                }
            }),
        1 => (pick(VERSION_IDS), pick(&["m", ""])).prop_map(|(version_id, message)| {
            ProjectCommand::UpdateVersion {
                version_id,
                message,
            }
        }),
        3 => (
            prop::collection::vec(pick(VERSION_IDS), 0..3),
            pick(MODEL_NAMES),
            pick(MODEL_IDS),
            pick(USER_IDS),
        )
            .prop_map(|(version_ids, target_model_name, new_model_id, author_id)| {
                ProjectCommand::MoveVersions {
                    version_ids,
                    target_model_name,
                    new_model_id,
                    author_id,
                }
            }),
        2 => prop::collection::vec(pick(VERSION_IDS), 0..3)
            .prop_map(|version_ids| ProjectCommand::DeleteVersions { version_ids }),
        1 => (pick(VERSION_IDS), pick(USER_IDS)).prop_map(|(version_id, user_id)| {
            ProjectCommand::MarkVersionReceived {
                version_id,
                user_id,
                source_application: "Revit".into(),
                message: None,
            }
        }),
        1 => (pick(USER_IDS), any::<bool>())
            .prop_map(|(user_id, favorited)| ProjectCommand::SetFavorite { user_id, favorited }),
        1 => Just(ProjectCommand::Delete),
        1 => any::<bool>().prop_map(create_cmd),
    ]
}

/// Commands with arbitrary text and sizes, for "never panics".
fn arb_wild_command() -> impl Strategy<Value = ProjectCommand> {
    let s = || ".{0,12}";
    let ids = || prop::collection::vec(".{0,12}", 0..4);
    prop_oneof![
        (
            s(),
            ".{0,600}",
            proptest::option::of(s()),
            arb_visibility(),
            s(),
            proptest::option::of(s())
        )
            .prop_map(
                |(id, name, description, visibility, owner_user_id, default_model_id)| {
                    ProjectCommand::Create {
                        id,
                        name,
                        description,
                        visibility,
                        owner_user_id,
                        default_model_id,
                    }
                }
            ),
        (s(), arb_role(), arb_server_role()).prop_map(|(user_id, role, user_server_role)| {
            ProjectCommand::SetMemberRole {
                user_id,
                role,
                user_server_role,
            }
        }),
        s().prop_map(|user_id| ProjectCommand::RemoveMember { user_id }),
        (s(), s(), any::<bool>(), arb_role(), s()).prop_map(
            |(invite_id, t, is_email, role, invited_by)| ProjectCommand::CreateInvite {
                invite_id,
                target: if is_email {
                    InviteTarget::Email(t)
                } else {
                    InviteTarget::UserId(t)
                },
                role,
                invited_by,
                target_server_role: None,
            }
        ),
        (s(), s(), ids()).prop_map(|(invite_id, user_id, emails)| {
            ProjectCommand::AcceptInvite {
                invite_id,
                invitee: Invitee {
                    user_id,
                    emails,
                    server_role: ServerRole::User,
                },
            }
        }),
        (s(), ".{0,40}", proptest::option::of(s()), s()).prop_map(
            |(model_id, name, description, author_id)| ProjectCommand::CreateModel {
                model_id,
                name,
                description,
                author_id,
            }
        ),
        (
            s(),
            proptest::option::of(".{0,40}"),
            proptest::option::of(s())
        )
            .prop_map(
                |(model_id, name, description)| ProjectCommand::UpdateModel {
                    model_id,
                    name,
                    description,
                }
            ),
        (
            s(),
            s(),
            ".{0,70}",
            proptest::option::of(s()),
            any::<u32>(),
            ids(),
            s()
        )
            .prop_map(
                |(
                    version_id,
                    model_id,
                    object_id,
                    message,
                    total_children_count,
                    parents,
                    author_id,
                )| {
                    ProjectCommand::CreateVersion {
                        version_id,
                        model_id,
                        object_id,
                        root_object_stored: true,
                        message,
                        source_application: None,
                        total_children_count,
                        parents,
                        author_id,
                    }
                }
            ),
        (ids(), ".{0,40}", s(), s()).prop_map(
            |(version_ids, target_model_name, new_model_id, author_id)| {
                ProjectCommand::MoveVersions {
                    version_ids,
                    target_model_name,
                    new_model_id,
                    author_id,
                }
            }
        ),
        ids().prop_map(|version_ids| ProjectCommand::DeleteVersions { version_ids }),
        (s(), s(), s(), proptest::option::of(s())).prop_map(
            |(version_id, user_id, source_application, message)| {
                ProjectCommand::MarkVersionReceived {
                    version_id,
                    user_id,
                    source_application,
                    message,
                }
            }
        ),
        (s(), any::<bool>())
            .prop_map(|(user_id, favorited)| ProjectCommand::SetFavorite { user_id, favorited }),
    ]
}

/// Decides and folds each command in turn, checking invariants and the event codec after
/// every accepted one. Returns the final state and every event.
fn drive(
    commands: Vec<ProjectCommand>,
) -> Result<(ProjectState, Vec<ProjectEvent>), TestCaseError> {
    let mut state = ProjectState::default();
    let mut all = Vec::new();
    for c in commands {
        let Ok(events) = decide(&state, c.clone()) else {
            continue;
        };
        for e in &events {
            state = evolve(state, e);
            let stored = e
                .to_new_event()
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            let back = ProjectEvent::from_stored(&stored.event_type, stored.payload)
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            prop_assert_eq!(&back, e);
        }
        if let Err(msg) = check_invariants(&state) {
            return Err(TestCaseError::fail(format!("after {c:?}: {msg}")));
        }
        all.extend(events);
    }
    Ok((state, all))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_and_folds_are_deterministic(
        first in any::<bool>(),
        rest in prop::collection::vec(arb_pooled_command(), 0..60),
    ) {
        let commands = std::iter::once(create_cmd(first)).chain(rest).collect();
        let (state, events) = drive(commands)?;
        let once = fold(&events);
        let twice = fold(&events);
        prop_assert_eq!(&once, &twice);
        prop_assert_eq!(&once, &state);
    }

    /// A stored snapshot at any point of a stream, with the events after it folded on, is the
    /// fold of the whole stream: the command bus may start from one.
    #[test]
    fn a_fold_resumed_from_a_snapshot_is_the_whole_fold(
        rest in prop::collection::vec(arb_pooled_command(), 0..60),
        cut in any::<prop::sample::Index>(),
    ) {
        let commands = std::iter::once(create_cmd(true)).chain(rest).collect();
        let (state, events) = drive(commands)?;
        let at = cut.index(events.len() + 1);
        let stored = to_snapshot(&fold(&events[..at])).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let restored = from_snapshot(&stored).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let resumed = events[at..].iter().fold(restored, evolve);
        prop_assert_eq!(resumed, state);
    }

    #[test]
    fn decide_never_panics_on_arbitrary_input(
        commands in prop::collection::vec(
            prop_oneof![3 => arb_pooled_command(), 2 => arb_wild_command()],
            0..40,
        ),
    ) {
        let commands = std::iter::once(create_cmd(true)).chain(commands).collect();
        let (state, events) = drive(commands)?;
        prop_assert_eq!(fold(&events), state);
    }
}

#[test]
fn a_favourite_is_recorded_once_and_unmarking_what_is_not_marked_records_nothing() {
    let fav = |favorited| ProjectCommand::SetFavorite {
        user_id: BOB.into(),
        favorited,
    };
    let (state, events) = run(vec![
        create_cmd(false),
        fav(false),
        fav(true),
        fav(true),
        fav(false),
        fav(true),
    ]);
    let favourites: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ProjectEvent::ProjectFavoriteSet {
                user_id, favorited, ..
            } => Some((user_id.as_str(), *favorited)),
            _ => None,
        })
        .collect();
    assert_eq!(favourites, [(BOB, true), (BOB, false), (BOB, true)]);
    let ProjectState::Active(p) = state else {
        panic!("the project is active")
    };
    assert!(p.favorited_by.contains(BOB));
    assert_eq!(p.favorited_by.len(), 1);
}

/// The snapshot after each event of the every-event scenario, as recorded for the current
/// [`SNAPSHOT_FOLD_VERSION`]. A change to [`ProjectState`]'s layout or to what [`evolve`] makes
/// of an event changes these: stored snapshots of the old fold would then be read as if they
/// were of the new one. Bump the version, and write the file again with
/// `STRATA_BLESS=1 cargo test -p domain snapshots_of_the_every_event_scenario`.
#[test]
fn snapshots_of_the_every_event_scenario_are_as_recorded() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/project/snapshots.jsonl");
    let mut state = ProjectState::default();
    let mut now = vec![format!("shape {}", snapshot_shape())];
    for event in one_of_each() {
        state = evolve(state, &event);
        now.push(to_snapshot(&state).unwrap());
    }
    let now = now.join("\n") + "\n";
    if std::env::var_os("STRATA_BLESS").is_some() {
        std::fs::write(path, &now).unwrap();
    }
    let recorded = std::fs::read_to_string(path).unwrap();
    let (recorded_shape, now_shape) = (recorded.lines().next(), now.lines().next());
    assert_eq!(
        recorded_shape, now_shape,
        "the recorded snapshots are of another shape: write them again (STRATA_BLESS=1)"
    );
    for (i, (was, is)) in recorded.lines().zip(now.lines()).enumerate() {
        assert_eq!(
            was,
            is,
            "the snapshot after event {i} differs from the one recorded for {}: bump \
             SNAPSHOT_FOLD_VERSION (snapshots of the old fold must not be read as this one's), \
             then write the file again (STRATA_BLESS=1)",
            snapshot_shape()
        );
    }
    assert_eq!(recorded.lines().count(), now.lines().count());
}

//! The authorization matrix: every action × server role (or anonymous) × project role (or
//! none) × visibility × token (none, `streams:read`, `streams:read`+`streams:write`).
//!
//! Expectations come from a declarative table: each action lists its guards in the order the
//! original evaluates them, and a tiny interpreter turns guards into an outcome. The
//! implementation is written separately, per action; the test checks they agree everywhere.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    ReadProject,
    UpdateProject,
    DeleteProject,
    ManageMembers,
    ManageWebhooks,
    SetOthersRole,
    SetOwnRole,
    Invite,
    UseInvite,
    LeaveProject,
    CreateModel,
    UpdateModel,
    DeleteOwnModel,
    DeleteOthersModel,
    DeleteModelUnknownAuthor,
    CreateVersion,
    UpdateOwnVersion,
    UpdateOthersVersion,
    MarkReceived,
    CreateProject,
    CreateProjectGuestsAllowed,
    ReadOwnEmail,
    ReadOthersEmail,
}

/// One step of a rule. "Ok" guards grant at once; the others refuse or pass on.
#[derive(Clone, Copy, Debug)]
enum Guard {
    /// The token (if any) must carry this scope.
    Needs(&'static str),
    /// Must be signed in.
    SignedIn,
    /// Server role at least this (archived never passes).
    ServerAtLeast(ServerRole),
    /// Must be a server admin (else ServerNotEnoughPermissions).
    AdminOnly,
    /// Public or unlisted projects: granted.
    PublicOk,
    /// Server admins: granted.
    AdminOk,
    /// The caller is the author of the target: granted.
    SelfIsAuthorOk,
    /// Project role at least this.
    Member(ProjectRole),
    /// The target is the caller themself: refused.
    NotSelf,
}

use Guard::*;
use ProjectRole::{Contributor, Owner, Reviewer};

const READ: &str = "streams:read";
const WRITE: &str = "streams:write";

fn rule(act: Act) -> &'static [Guard] {
    const W_CONTRIB: &[Guard] = &[
        SignedIn,
        Needs(WRITE),
        ServerAtLeast(ServerRole::Guest),
        Member(Contributor),
    ];
    const W_OWNER: &[Guard] = &[
        SignedIn,
        Needs(WRITE),
        ServerAtLeast(ServerRole::User),
        Member(Owner),
    ];
    match act {
        Act::ReadProject => &[
            Needs(READ),
            PublicOk,
            SignedIn,
            ServerAtLeast(ServerRole::Guest),
            AdminOk,
            Member(Reviewer),
        ],
        Act::UpdateProject | Act::ManageMembers | Act::ManageWebhooks | Act::SetOthersRole => {
            W_OWNER
        }
        Act::SetOwnRole => &[
            SignedIn,
            Needs(WRITE),
            ServerAtLeast(ServerRole::User),
            Member(Owner),
            NotSelf,
        ],
        Act::DeleteProject => &[
            SignedIn,
            Needs(WRITE),
            AdminOk,
            ServerAtLeast(ServerRole::User),
            Member(Owner),
        ],
        Act::Invite => &[
            SignedIn,
            Needs(WRITE),
            ServerAtLeast(ServerRole::User),
            Member(Owner),
            Needs("users:invite"),
        ],
        Act::UseInvite => &[SignedIn, Needs(WRITE), ServerAtLeast(ServerRole::Guest)],
        Act::LeaveProject => &[
            SignedIn,
            Needs(WRITE),
            ServerAtLeast(ServerRole::Guest),
            Member(Reviewer),
        ],
        Act::CreateModel | Act::UpdateModel | Act::CreateVersion => W_CONTRIB,
        Act::DeleteOwnModel | Act::UpdateOwnVersion => &[
            SignedIn,
            Needs(WRITE),
            ServerAtLeast(ServerRole::Guest),
            Member(Contributor),
            SelfIsAuthorOk,
            Member(Owner),
        ],
        Act::DeleteOthersModel | Act::UpdateOthersVersion | Act::DeleteModelUnknownAuthor => &[
            SignedIn,
            Needs(WRITE),
            ServerAtLeast(ServerRole::Guest),
            Member(Contributor),
            Member(Owner),
        ],
        Act::MarkReceived => &[
            SignedIn,
            Needs(READ),
            ServerAtLeast(ServerRole::Guest),
            PublicOk,
            AdminOk,
            Member(Reviewer),
        ],
        Act::CreateProject => &[SignedIn, Needs(WRITE), ServerAtLeast(ServerRole::User)],
        Act::CreateProjectGuestsAllowed => {
            &[SignedIn, Needs(WRITE), ServerAtLeast(ServerRole::Guest)]
        }
        Act::ReadOwnEmail => &[SignedIn, Needs("profile:email")],
        Act::ReadOthersEmail => &[SignedIn, AdminOnly, Needs("users:email")],
    }
}

const ALL_ACTS: [Act; 23] = [
    Act::ReadProject,
    Act::UpdateProject,
    Act::DeleteProject,
    Act::ManageMembers,
    Act::ManageWebhooks,
    Act::SetOthersRole,
    Act::SetOwnRole,
    Act::Invite,
    Act::UseInvite,
    Act::LeaveProject,
    Act::CreateModel,
    Act::UpdateModel,
    Act::DeleteOwnModel,
    Act::DeleteOthersModel,
    Act::DeleteModelUnknownAuthor,
    Act::CreateVersion,
    Act::UpdateOwnVersion,
    Act::UpdateOthersVersion,
    Act::MarkReceived,
    Act::CreateProject,
    Act::CreateProjectGuestsAllowed,
    Act::ReadOwnEmail,
    Act::ReadOthersEmail,
];

#[derive(Clone, Copy, Debug)]
enum Token {
    None,
    Read,
    ReadWrite,
}

#[derive(Clone, Debug)]
struct Case {
    server: Option<ServerRole>,
    project: Option<ProjectRole>,
    visibility: Visibility,
    token: Token,
}

const ME: &str = "aaaaaaaaaa";
const OTHER: &str = "bbbbbbbbbb";

impl Case {
    fn principal(&self) -> Principal {
        let Some(role) = self.server else {
            return Principal::anonymous();
        };
        let p = Principal::user(ME, role);
        match self.token {
            Token::None => p,
            Token::Read => p.with_scopes([Scope::STREAMS_READ]),
            Token::ReadWrite => p.with_scopes([Scope::STREAMS_READ, Scope::STREAMS_WRITE]),
        }
    }

    fn access(&self) -> ProjectAccess {
        ProjectAccess {
            visibility: self.visibility,
            role_of_principal: self.project,
        }
    }
}

fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let servers = [
        None,
        Some(ServerRole::Admin),
        Some(ServerRole::User),
        Some(ServerRole::Guest),
        Some(ServerRole::ArchivedUser),
    ];
    let projects = [None, Some(Owner), Some(Contributor), Some(Reviewer)];
    let visibilities = [
        Visibility::Private,
        Visibility::Unlisted,
        Visibility::Public,
    ];
    for server in servers {
        for project in projects {
            for visibility in visibilities {
                for token in [Token::None, Token::Read, Token::ReadWrite] {
                    // An anonymous caller has neither a token nor a membership.
                    if server.is_none() && (project.is_some() || !matches!(token, Token::None)) {
                        continue;
                    }
                    cases.push(Case {
                        server,
                        project,
                        visibility,
                        token,
                    });
                }
            }
        }
    }
    cases
}

/// What the table says: `Ok` or the refusal's (code, reason).
fn expected(act: Act, case: &Case) -> Result<(), (DenyCode, DenyReason)> {
    let forbid = |r| Err((DenyCode::Forbidden, r));
    for guard in rule(act) {
        match *guard {
            Needs(s) => {
                let granted = match case.token {
                    Token::None => true,
                    Token::Read => s == READ,
                    Token::ReadWrite => s == READ || s == WRITE,
                };
                if !granted {
                    return forbid(DenyReason::MissingScope);
                }
            }
            SignedIn => {
                if case.server.is_none() {
                    return Err((DenyCode::Unauthorized, DenyReason::ServerNoSession));
                }
            }
            ServerAtLeast(min) => match case.server {
                None => return Err((DenyCode::Unauthorized, DenyReason::ServerNoSession)),
                Some(ServerRole::ArchivedUser) => return forbid(DenyReason::ServerNoAccess),
                Some(r) if r.weight() < min.weight() => {
                    return forbid(DenyReason::ServerNotEnoughPermissions);
                }
                Some(_) => {}
            },
            AdminOnly => {
                if case.server != Some(ServerRole::Admin) {
                    return forbid(DenyReason::ServerNotEnoughPermissions);
                }
            }
            PublicOk => {
                if case.visibility != Visibility::Private {
                    return Ok(());
                }
            }
            AdminOk => {
                if case.server == Some(ServerRole::Admin) {
                    return Ok(());
                }
            }
            SelfIsAuthorOk => return Ok(()),
            Member(min) => match case.project {
                None => return forbid(DenyReason::ProjectNoAccess),
                Some(r) if r.weight() < min.weight() => {
                    return forbid(DenyReason::ProjectNotEnoughPermissions);
                }
                Some(_) => {}
            },
            NotSelf => return forbid(DenyReason::NotAllowed),
        }
    }
    Ok(())
}

fn actual(act: Act, case: &Case) -> Decision {
    let p = case.principal();
    let a = case.access();
    match act {
        Act::ReadProject => can_read_project(&p, &a),
        Act::UpdateProject => can_update_project(&p, &a),
        Act::DeleteProject => can_delete_project(&p, &a),
        Act::ManageMembers => can_manage_members(&p, &a),
        Act::ManageWebhooks => can_manage_webhooks(&p, &a),
        Act::SetOthersRole => can_set_member_role(&p, &a, OTHER),
        Act::SetOwnRole => can_set_member_role(&p, &a, ME),
        Act::Invite => can_invite(&p, &a),
        Act::UseInvite => can_use_invite(&p),
        Act::LeaveProject => can_leave_project(&p, &a),
        Act::CreateModel => can_create_model(&p, &a),
        Act::UpdateModel => can_update_model(&p, &a),
        Act::DeleteOwnModel => can_delete_model(&p, &a, Some(ME)),
        Act::DeleteOthersModel => can_delete_model(&p, &a, Some(OTHER)),
        Act::DeleteModelUnknownAuthor => can_delete_model(&p, &a, None),
        Act::CreateVersion => can_create_version(&p, &a),
        Act::UpdateOwnVersion => can_update_version(&p, &a, ME),
        Act::UpdateOthersVersion => can_update_version(&p, &a, OTHER),
        Act::MarkReceived => can_mark_received(&p, &a),
        Act::CreateProject => can_create_project(&p, false),
        Act::CreateProjectGuestsAllowed => can_create_project(&p, true),
        Act::ReadOwnEmail => can_read_user_email(&p, ME),
        Act::ReadOthersEmail => can_read_user_email(&p, OTHER),
    }
}

#[test]
fn matrix_matches_the_table_for_every_combination() {
    let cases = all_cases();
    // 4 roles × 4 memberships × 3 visibilities × 3 tokens, plus 3 anonymous cases.
    assert_eq!(cases.len(), 4 * 4 * 3 * 3 + 3);
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for act in ALL_ACTS {
        for case in &cases {
            let want = expected(act, case);
            let got = actual(act, case).map_err(|d| (d.code, d.reason));
            if want != got {
                mismatches.push(format!("{act:?} {case:?}: want {want:?}, got {got:?}"));
            }
            checked += 1;
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert_eq!(checked, ALL_ACTS.len() * cases.len());
}

#[test]
fn nothing_reaches_a_caller_who_cannot_read_the_project() {
    let project_acts = ALL_ACTS.iter().copied().filter(|a| {
        !matches!(
            a,
            Act::CreateProject
                | Act::CreateProjectGuestsAllowed
                | Act::ReadOwnEmail
                | Act::ReadOthersEmail
                | Act::UseInvite
        )
    });
    for act in project_acts {
        for case in all_cases() {
            if actual(Act::ReadProject, &case).is_err() {
                assert!(
                    actual(act, &case).is_err(),
                    "{act:?} allowed for a non-reader: {case:?}"
                );
            }
        }
    }
}

#[test]
fn spot_checks_against_the_original() {
    let private = |role| ProjectAccess {
        visibility: Visibility::Private,
        role_of_principal: role,
    };
    let public = ProjectAccess {
        visibility: Visibility::Public,
        role_of_principal: None,
    };
    let anon = Principal::anonymous();
    let admin = Principal::user(ME, ServerRole::Admin);
    let user = Principal::user(ME, ServerRole::User);
    let guest = Principal::user(ME, ServerRole::Guest);
    let archived = Principal::user(ME, ServerRole::ArchivedUser);

    assert_eq!(can_read_project(&anon, &public), Ok(()));
    let denied = can_read_project(&anon, &private(None)).unwrap_err();
    assert_eq!(denied.code.as_str(), "UNAUTHORIZED");
    let denied = can_read_project(&user, &private(None)).unwrap_err();
    assert_eq!(
        (denied.code.as_str(), denied.reason.as_str()),
        ("FORBIDDEN", "ProjectNoAccess")
    );
    // Admins read everything and may delete, but are not members.
    assert_eq!(can_read_project(&admin, &private(None)), Ok(()));
    assert_eq!(can_delete_project(&admin, &private(None)), Ok(()));
    assert_eq!(
        can_update_project(&admin, &private(None))
            .unwrap_err()
            .reason,
        DenyReason::ProjectNoAccess
    );
    assert_eq!(
        can_create_model(&admin, &public).unwrap_err().reason,
        DenyReason::ProjectNoAccess
    );
    // Guests may contribute but not hold owner-level powers, nor create projects.
    assert_eq!(
        can_create_version(&guest, &private(Some(Contributor))),
        Ok(())
    );
    assert_eq!(
        can_update_project(&guest, &private(Some(Owner)))
            .unwrap_err()
            .reason,
        DenyReason::ServerNotEnoughPermissions
    );
    assert!(can_create_project(&guest, false).is_err());
    assert_eq!(can_create_project(&guest, true), Ok(()));
    // Archived users read public projects and nothing else.
    assert_eq!(can_read_project(&archived, &public), Ok(()));
    assert_eq!(
        can_read_project(&archived, &private(Some(Owner)))
            .unwrap_err()
            .reason,
        DenyReason::ServerNoAccess
    );
    assert!(can_mark_received(&archived, &public).is_err());
    assert!(can_create_project(&archived, true).is_err());
    // Reviewers read; contributors write; authors and owners change versions.
    assert_eq!(
        can_create_model(&user, &private(Some(Reviewer)))
            .unwrap_err()
            .reason,
        DenyReason::ProjectNotEnoughPermissions
    );
    assert_eq!(
        can_update_version(&user, &private(Some(Contributor)), ME),
        Ok(())
    );
    assert!(can_update_version(&user, &private(Some(Contributor)), OTHER).is_err());
    assert_eq!(
        can_update_version(&user, &private(Some(Owner)), OTHER),
        Ok(())
    );
    // Tokens: a scope is needed even on public projects; the wildcard grants all.
    let profile_only = user.clone().with_scopes([Scope::PROFILE_READ]);
    assert_eq!(
        can_read_project(&profile_only, &public).unwrap_err().reason,
        DenyReason::MissingScope
    );
    let wildcard = user.clone().with_scopes([Scope::WILDCARD]);
    assert_eq!(can_invite(&wildcard, &private(Some(Owner))), Ok(()));
    let read_write = user
        .clone()
        .with_scopes([Scope::STREAMS_READ, Scope::STREAMS_WRITE]);
    assert_eq!(
        can_invite(&read_write, &private(Some(Owner)))
            .unwrap_err()
            .reason,
        DenyReason::MissingScope
    );
    // A signed-in user without a server role has no access.
    let roleless = Principal {
        user_id: Some(ME.into()),
        server_role: None,
        scopes: None,
    };
    assert_eq!(
        can_read_project(&roleless, &private(Some(Owner)))
            .unwrap_err()
            .reason,
        DenyReason::ServerNoAccess
    );
    // Emails: self, or admins.
    assert_eq!(can_read_user_email(&user, ME), Ok(()));
    assert!(can_read_user_email(&user, OTHER).is_err());
    assert_eq!(can_read_user_email(&admin, OTHER), Ok(()));
    // Missing projects.
    let nf = Denied::project_not_found();
    assert_eq!(nf.code.as_str(), "STREAM_NOT_FOUND");
}

#[test]
fn roles_visibility_and_scopes_use_the_wire_names() {
    for role in ServerRole::ALL {
        assert_eq!(role.as_str().parse::<ServerRole>(), Ok(role));
        assert_eq!(
            serde_json::to_value(role).unwrap(),
            serde_json::json!(role.as_str())
        );
    }
    for role in ProjectRole::ALL {
        assert_eq!(role.as_str().parse::<ProjectRole>(), Ok(role));
        assert_eq!(
            serde_json::to_value(role).unwrap(),
            serde_json::json!(role.as_str())
        );
    }
    assert!("server:root".parse::<ServerRole>().is_err());
    assert_eq!(ServerRole::ALL.map(ServerRole::weight), [1000, 100, 50, 10]);
    assert_eq!(ProjectRole::ALL.map(ProjectRole::weight), [1000, 500, 100]);
    for v in [
        Visibility::Private,
        Visibility::Unlisted,
        Visibility::Public,
    ] {
        assert_eq!(
            serde_json::to_value(v).unwrap(),
            serde_json::json!(v.as_str())
        );
    }
    assert_eq!(Visibility::from_is_public(true), Visibility::Public);
    assert_eq!(Visibility::from_is_public(false), Visibility::Private);
    assert_eq!(Visibility::Unlisted.effective(), Visibility::Public);
    assert!(Visibility::Unlisted.is_public());

    for scope in Scope::KNOWN {
        assert_eq!(Scope::parse(scope.as_str()), Ok(scope.clone()));
    }
    assert!(Scope::STREAMS_READ.is_public());
    assert!(!Scope::TOKENS_WRITE.is_public());
    assert_eq!(Scope::parse("*"), Ok(Scope::WILDCARD));
    for bad in ["", "Streams:read", "streams read", "a*", &"a".repeat(101)] {
        assert!(Scope::parse(bad).is_err(), "{bad:?}");
    }
    let json = serde_json::to_string(&Scope::STREAMS_READ).unwrap();
    assert_eq!(json, "\"streams:read\"");
    assert_eq!(
        serde_json::from_str::<Scope>(&json).unwrap(),
        Scope::STREAMS_READ
    );
}

#[test]
fn admin_queries_need_an_admin_with_the_scope() {
    let admin = Principal::user(ME, ServerRole::Admin);
    assert_eq!(can_administer(&admin, &Scope::SERVER_STATS), Ok(()));
    let narrow = Principal::user(ME, ServerRole::Admin).with_scopes([Scope::USERS_READ]);
    assert_eq!(can_administer(&narrow, &Scope::USERS_READ), Ok(()));
    assert_eq!(
        can_administer(&narrow, &Scope::SERVER_STATS)
            .unwrap_err()
            .code
            .as_str(),
        "FORBIDDEN"
    );
    for role in [
        ServerRole::User,
        ServerRole::Guest,
        ServerRole::ArchivedUser,
    ] {
        let denied = can_administer(&Principal::user(ME, role), &Scope::USERS_READ).unwrap_err();
        assert_eq!(denied.code.as_str(), "FORBIDDEN");
    }
    let denied = can_administer(&Principal::anonymous(), &Scope::USERS_READ).unwrap_err();
    assert_eq!(denied.code.as_str(), "UNAUTHORIZED");
}

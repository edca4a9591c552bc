//! The User aggregate: one event stream per account (`user:<id>`) with its profile and server
//! role.
//!
//! Rules that span users (email uniqueness, "the server keeps one admin", whether guests are
//! enabled) need facts the caller gathers from read models and passes in commands; the
//! decision is then pure. Passwords and tokens are not part of this aggregate.

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, Entity};
use crate::event::{EventCodecError, NewEvent};
use crate::ids::{StreamId, StreamIdError, check_entity_id};
use crate::names::{
    Email, MAX_AVATAR_CHARS, MAX_BIO_CHARS, MAX_COMPANY_CHARS, UserName, check_len,
};
use crate::policy::ServerRole;
use crate::upcast::Upcasters;

/// The stream category of user streams.
pub const STREAM_CATEGORY: &str = "user";

/// The event stream of user `user_id`.
pub fn stream_id(user_id: &str) -> Result<StreamId, StreamIdError> {
    StreamId::new(STREAM_CATEGORY, user_id)
}

/// Everything one may ask of a user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserCommand {
    /// Register the account. The caller picks the role (the first user becomes admin) and has
    /// checked the email is not taken.
    Create {
        /// New user id.
        id: String,
        /// Email address; normalised to lower case.
        email: String,
        /// Display name.
        name: String,
        /// Company.
        company: Option<String>,
        /// Server role.
        server_role: ServerRole,
    },
    /// Change profile fields; `None` leaves a field as it is. `avatar: Some("")` removes the
    /// avatar, as in the original.
    UpdateProfile {
        /// New name.
        name: Option<String>,
        /// New company.
        company: Option<String>,
        /// New bio.
        bio: Option<String>,
        /// New avatar (usually a data URL).
        avatar: Option<String>,
    },
    /// Record that a verification code was sent to the account's email. The code itself is a
    /// credential and never enters the log; `request_id` names it in the credential store.
    RequestEmailVerification {
        /// Id of the stored code, also the mail job's key.
        request_id: String,
    },
    /// Record that the owner proved they read the account's email (the caller checked the
    /// code).
    MarkEmailVerified,
    /// Record that a password reset link was sent; the link's secret is a credential.
    RequestPasswordReset {
        /// Id of the stored reset token, also the mail job's key.
        request_id: String,
    },
    /// Record that the password was replaced (through a reset link); the caller stored the
    /// new hash and revoked the account's tokens.
    RecordPasswordReset {
        /// The reset token that was used.
        request_id: String,
    },
    /// Change the server role.
    ChangeRole {
        /// The new role.
        role: ServerRole,
        /// Whether the server allows the guest role.
        guest_role_enabled: bool,
        /// How many admins the server has now (including this user, if admin).
        admin_count: u32,
    },
    /// Delete the account.
    Delete {
        /// How many admins the server has now (including this user, if admin).
        admin_count: u32,
    },
}

/// Something that happened to a user account. Payloads are JSON objects, camelCase fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all_fields = "camelCase")]
pub enum UserEvent {
    /// The account was registered.
    UserCreated {
        /// User id.
        user_id: String,
        /// Normalised email.
        email: String,
        /// Display name.
        name: String,
        /// Company.
        company: Option<String>,
        /// Server role.
        server_role: ServerRole,
    },
    /// Profile fields changed; carries every profile field's value after the change.
    UserProfileUpdated {
        /// User id.
        user_id: String,
        /// Display name.
        name: String,
        /// Company.
        company: Option<String>,
        /// Bio.
        bio: Option<String>,
        /// Avatar.
        avatar: Option<String>,
    },
    /// The server role changed.
    UserRoleChanged {
        /// User id.
        user_id: String,
        /// New role.
        role: ServerRole,
        /// Role before.
        previous_role: ServerRole,
    },
    /// The account was deleted.
    UserDeleted {
        /// User id.
        user_id: String,
    },
    /// A verification code was mailed to `email` (the code is not in the log).
    UserEmailVerificationRequested {
        /// User id.
        user_id: String,
        /// Where it went.
        email: String,
        /// The stored code's id.
        request_id: String,
    },
    /// The owner proved they read `email`.
    UserEmailVerified {
        /// User id.
        user_id: String,
        /// The verified address.
        email: String,
    },
    /// A password reset link was mailed to `email` (its secret is not in the log).
    UserPasswordResetRequested {
        /// User id.
        user_id: String,
        /// Where it went.
        email: String,
        /// The stored token's id.
        request_id: String,
    },
    /// The password was replaced through a reset link; every token of the account was revoked.
    UserPasswordReset {
        /// User id.
        user_id: String,
        /// The reset token that was used.
        request_id: String,
    },
}

impl UserEvent {
    /// Payload shape version of every user event type.
    pub const SCHEMA_VERSION: u32 = 1;

    /// Every user event type name.
    pub const EVENT_TYPES: [&'static str; 8] = [
        "UserCreated",
        "UserProfileUpdated",
        "UserRoleChanged",
        "UserDeleted",
        "UserEmailVerificationRequested",
        "UserEmailVerified",
        "UserPasswordResetRequested",
        "UserPasswordReset",
    ];

    /// The stable type name stored in the log.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::UserCreated { .. } => "UserCreated",
            Self::UserProfileUpdated { .. } => "UserProfileUpdated",
            Self::UserRoleChanged { .. } => "UserRoleChanged",
            Self::UserDeleted { .. } => "UserDeleted",
            Self::UserEmailVerificationRequested { .. } => "UserEmailVerificationRequested",
            Self::UserEmailVerified { .. } => "UserEmailVerified",
            Self::UserPasswordResetRequested { .. } => "UserPasswordResetRequested",
            Self::UserPasswordReset { .. } => "UserPasswordReset",
        }
    }

    /// The user the event belongs to.
    pub fn user_id(&self) -> &str {
        match self {
            Self::UserCreated { user_id, .. }
            | Self::UserProfileUpdated { user_id, .. }
            | Self::UserRoleChanged { user_id, .. }
            | Self::UserDeleted { user_id }
            | Self::UserEmailVerificationRequested { user_id, .. }
            | Self::UserEmailVerified { user_id, .. }
            | Self::UserPasswordResetRequested { user_id, .. }
            | Self::UserPasswordReset { user_id, .. } => user_id,
        }
    }

    crate::event::event_codec!("user", from_stored);
}

/// A live account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub id: String,
    /// Normalised email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Company.
    pub company: Option<String>,
    /// Bio.
    pub bio: Option<String>,
    /// Avatar.
    pub avatar: Option<String>,
    /// Server role.
    pub server_role: ServerRole,
    /// Whether the owner proved they read `email`.
    pub email_verified: bool,
}

/// A user stream folded so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum UserState {
    /// No events yet.
    #[default]
    Initial,
    /// Registered and not deleted.
    Active(User),
    /// Deleted; refuses every command.
    Deleted {
        /// The former user's id.
        id: String,
    },
}

impl UserState {
    /// The live account, if any.
    pub fn user(&self) -> Option<&User> {
        match self {
            Self::Active(u) => Some(u),
            _ => None,
        }
    }
}

/// Decides what `command` does to the account in `state`.
pub fn decide(state: &UserState, command: UserCommand) -> Result<Vec<UserEvent>, DomainError> {
    match (state, command) {
        (UserState::Deleted { .. }, _) => Err(DomainError::Deleted(Entity::User)),
        (
            UserState::Initial,
            UserCommand::Create {
                id,
                email,
                name,
                company,
                server_role,
            },
        ) => {
            check_entity_id("id", &id)?;
            let email = Email::parse(&email)?;
            let name = UserName::parse(&name)?;
            if let Some(c) = &company {
                check_len("company", c, MAX_COMPANY_CHARS)?;
            }
            Ok(vec![UserEvent::UserCreated {
                user_id: id,
                email: email.into(),
                name: name.into(),
                company,
                server_role,
            }])
        }
        // The stream does not know its id before creation; the caller does.
        (UserState::Initial, _) => Err(DomainError::not_found(Entity::User, "")),
        (UserState::Active(u), command) => decide_active(u, command),
    }
}

fn decide_active(u: &User, command: UserCommand) -> Result<Vec<UserEvent>, DomainError> {
    match command {
        UserCommand::Create { .. } => Err(DomainError::AlreadyExists {
            kind: Entity::User,
            id: u.id.clone(),
        }),
        UserCommand::UpdateProfile {
            name,
            company,
            bio,
            avatar,
        } => {
            if name.is_none() && company.is_none() && bio.is_none() && avatar.is_none() {
                return Ok(vec![]);
            }
            let name = match name {
                Some(n) => UserName::parse(&n)?.into(),
                None => u.name.clone(),
            };
            if let Some(c) = &company {
                check_len("company", c, MAX_COMPANY_CHARS)?;
            }
            if let Some(b) = &bio {
                check_len("bio", b, MAX_BIO_CHARS)?;
            }
            if let Some(a) = &avatar {
                check_len("avatar", a, MAX_AVATAR_CHARS)?;
            }
            let avatar = match avatar {
                Some(a) if a.is_empty() => None,
                Some(a) => Some(a),
                None => u.avatar.clone(),
            };
            Ok(vec![UserEvent::UserProfileUpdated {
                user_id: u.id.clone(),
                name,
                company: company.or_else(|| u.company.clone()),
                bio: bio.or_else(|| u.bio.clone()),
                avatar,
            }])
        }
        UserCommand::RequestEmailVerification { request_id } => {
            if u.email_verified {
                return Err(DomainError::invalid("email", "is already verified"));
            }
            Ok(vec![UserEvent::UserEmailVerificationRequested {
                user_id: u.id.clone(),
                email: u.email.clone(),
                request_id,
            }])
        }
        UserCommand::MarkEmailVerified => {
            if u.email_verified {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::UserEmailVerified {
                user_id: u.id.clone(),
                email: u.email.clone(),
            }])
        }
        UserCommand::RequestPasswordReset { request_id } => {
            Ok(vec![UserEvent::UserPasswordResetRequested {
                user_id: u.id.clone(),
                email: u.email.clone(),
                request_id,
            }])
        }
        UserCommand::RecordPasswordReset { request_id } => Ok(vec![UserEvent::UserPasswordReset {
            user_id: u.id.clone(),
            request_id,
        }]),
        UserCommand::ChangeRole {
            role,
            guest_role_enabled,
            admin_count,
        } => {
            if role == u.server_role {
                return Ok(vec![]);
            }
            if role == ServerRole::Guest && !guest_role_enabled {
                return Err(DomainError::GuestRoleDisabled);
            }
            if u.server_role == ServerRole::Admin && admin_count <= 1 {
                return Err(DomainError::LastAdmin);
            }
            Ok(vec![UserEvent::UserRoleChanged {
                user_id: u.id.clone(),
                role,
                previous_role: u.server_role,
            }])
        }
        UserCommand::Delete { admin_count } => {
            if u.server_role == ServerRole::Admin && admin_count <= 1 {
                return Err(DomainError::LastAdmin);
            }
            Ok(vec![UserEvent::UserDeleted {
                user_id: u.id.clone(),
            }])
        }
    }
}

/// Applies one event; events that do not fit the state leave it unchanged.
pub fn evolve(state: UserState, event: &UserEvent) -> UserState {
    match (state, event) {
        (
            UserState::Initial,
            UserEvent::UserCreated {
                user_id,
                email,
                name,
                company,
                server_role,
            },
        ) => UserState::Active(User {
            id: user_id.clone(),
            email: email.clone(),
            name: name.clone(),
            company: company.clone(),
            bio: None,
            avatar: None,
            server_role: *server_role,
            email_verified: false,
        }),
        (
            UserState::Active(mut u),
            UserEvent::UserProfileUpdated {
                name,
                company,
                bio,
                avatar,
                ..
            },
        ) => {
            u.name.clone_from(name);
            u.company.clone_from(company);
            u.bio.clone_from(bio);
            u.avatar.clone_from(avatar);
            UserState::Active(u)
        }
        (UserState::Active(mut u), UserEvent::UserRoleChanged { role, .. }) => {
            u.server_role = *role;
            UserState::Active(u)
        }
        (UserState::Active(u), UserEvent::UserDeleted { .. }) => UserState::Deleted { id: u.id },
        (UserState::Active(mut u), UserEvent::UserEmailVerified { email, .. }) => {
            // A verification of an address the account no longer has proves nothing.
            if *email == u.email {
                u.email_verified = true;
            }
            UserState::Active(u)
        }
        (state, _) => state,
    }
}

/// Folds a stream's events, oldest first, into its state.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a UserEvent>) -> UserState {
    events.into_iter().fold(UserState::default(), evolve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "0123456789";

    fn create(role: ServerRole) -> UserCommand {
        UserCommand::Create {
            id: ID.into(),
            email: " Jane@Example.com ".into(),
            name: " Jane ".into(),
            company: Some("ACME".into()),
            server_role: role,
        }
    }

    fn run(commands: Vec<UserCommand>) -> Result<(UserState, Vec<UserEvent>), DomainError> {
        let mut state = UserState::default();
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

    #[test]
    fn create_normalises_email_and_name() {
        let (state, events) = run(vec![create(ServerRole::User)]).unwrap();
        let user = state.user().unwrap();
        assert_eq!(user.email, "jane@example.com");
        assert_eq!(user.name, "Jane");
        assert_eq!(events[0].event_type(), "UserCreated");
        assert_eq!(stream_id(ID).unwrap().as_str(), "user:0123456789");
    }

    #[test]
    fn create_validates_its_input() {
        let bad = |f: fn(&mut UserCommand)| {
            let mut c = create(ServerRole::User);
            f(&mut c);
            decide(&UserState::default(), c).unwrap_err()
        };
        assert!(matches!(
            bad(|c| if let UserCommand::Create { id, .. } = c {
                *id = "XYZ".into()
            }),
            DomainError::Invalid { field: "id", .. }
        ));
        assert!(matches!(
            bad(|c| if let UserCommand::Create { email, .. } = c {
                *email = "nope".into()
            }),
            DomainError::Invalid { field: "email", .. }
        ));
        assert!(matches!(
            bad(|c| if let UserCommand::Create { name, .. } = c {
                *name = "  ".into()
            }),
            DomainError::Invalid { field: "name", .. }
        ));
        assert!(matches!(
            bad(|c| if let UserCommand::Create { company, .. } = c {
                *company = Some("x".repeat(MAX_COMPANY_CHARS + 1))
            }),
            DomainError::Invalid {
                field: "company",
                ..
            }
        ));
        let (state, _) = run(vec![create(ServerRole::User)]).unwrap();
        assert!(matches!(
            decide(&state, create(ServerRole::User)),
            Err(DomainError::AlreadyExists { .. })
        ));
        assert!(matches!(
            decide(
                &UserState::default(),
                UserCommand::Delete { admin_count: 2 }
            ),
            Err(DomainError::NotFound { .. })
        ));
    }

    #[test]
    fn profile_updates_keep_unset_fields_and_empty_avatar_removes_it() {
        let (state, _) = run(vec![
            create(ServerRole::User),
            UserCommand::UpdateProfile {
                name: None,
                company: None,
                bio: Some("Builds things".into()),
                avatar: Some("data:image/png;base64,AAAA".into()),
            },
            UserCommand::UpdateProfile {
                name: Some("Jane D".into()),
                company: None,
                bio: None,
                avatar: Some(String::new()),
            },
        ])
        .unwrap();
        let u = state.user().unwrap();
        assert_eq!(u.name, "Jane D");
        assert_eq!(u.company.as_deref(), Some("ACME"));
        assert_eq!(u.bio.as_deref(), Some("Builds things"));
        assert_eq!(u.avatar, None);
        let nothing = UserCommand::UpdateProfile {
            name: None,
            company: None,
            bio: None,
            avatar: None,
        };
        assert_eq!(decide(&state, nothing), Ok(vec![]));
        let empty_name = UserCommand::UpdateProfile {
            name: Some(" ".into()),
            company: None,
            bio: None,
            avatar: None,
        };
        assert!(decide(&state, empty_name).is_err());
    }

    #[test]
    fn the_last_admin_stays_admin_and_guests_need_enabling() {
        let (state, _) = run(vec![create(ServerRole::Admin)]).unwrap();
        let demote = |admin_count| UserCommand::ChangeRole {
            role: ServerRole::User,
            guest_role_enabled: true,
            admin_count,
        };
        assert_eq!(decide(&state, demote(1)), Err(DomainError::LastAdmin));
        assert_eq!(
            decide(&state, UserCommand::Delete { admin_count: 1 }),
            Err(DomainError::LastAdmin)
        );
        assert_eq!(decide(&state, demote(2)).unwrap().len(), 1);
        let (state, _) = run(vec![create(ServerRole::User)]).unwrap();
        assert_eq!(
            decide(
                &state,
                UserCommand::ChangeRole {
                    role: ServerRole::Guest,
                    guest_role_enabled: false,
                    admin_count: 1
                }
            ),
            Err(DomainError::GuestRoleDisabled)
        );
        assert_eq!(
            decide(
                &state,
                UserCommand::ChangeRole {
                    role: ServerRole::User,
                    guest_role_enabled: false,
                    admin_count: 1
                }
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn verification_is_requested_until_the_email_is_verified_once() {
        let request = |id: &str| UserCommand::RequestEmailVerification {
            request_id: id.into(),
        };
        let (state, events) = run(vec![
            create(ServerRole::User),
            request("aaaaaaaaaa"),
            UserCommand::MarkEmailVerified,
            UserCommand::MarkEmailVerified,
        ])
        .unwrap();
        assert!(state.user().unwrap().email_verified);
        let types: Vec<_> = events.iter().map(UserEvent::event_type).collect();
        assert_eq!(
            types,
            [
                "UserCreated",
                "UserEmailVerificationRequested",
                "UserEmailVerified"
            ]
        );
        assert!(matches!(
            decide(&state, request("bbbbbbbbbb")),
            Err(DomainError::Invalid { field: "email", .. })
        ));
        // A reset is allowed whatever the verification state, and is recorded for audit.
        let events = decide(
            &state,
            UserCommand::RequestPasswordReset {
                request_id: "cccccccccc".into(),
            },
        )
        .unwrap();
        assert!(matches!(
            &events[..],
            [UserEvent::UserPasswordResetRequested { email, .. }] if email == "jane@example.com"
        ));
    }

    #[test]
    fn deleted_users_accept_nothing() {
        let (state, events) = run(vec![
            create(ServerRole::User),
            UserCommand::Delete { admin_count: 1 },
        ])
        .unwrap();
        assert_eq!(state, UserState::Deleted { id: ID.into() });
        assert_eq!(events.last().unwrap().event_type(), "UserDeleted");
        assert_eq!(
            decide(&state, create(ServerRole::User)),
            Err(DomainError::Deleted(Entity::User))
        );
    }

    #[test]
    fn events_roundtrip_through_new_event_with_camel_case_payloads() {
        let (_, events) = run(vec![
            create(ServerRole::Admin),
            UserCommand::UpdateProfile {
                name: None,
                company: None,
                bio: Some("b".into()),
                avatar: None,
            },
            UserCommand::ChangeRole {
                role: ServerRole::User,
                guest_role_enabled: false,
                admin_count: 2,
            },
            UserCommand::Delete { admin_count: 1 },
        ])
        .unwrap();
        assert_eq!(events.len(), 4);
        for e in &events {
            let stored = e.to_new_event().unwrap();
            assert_eq!(stored.event_type, e.event_type());
            assert_eq!(stored.schema_version, 1);
            assert!(stored.payload.is_object());
            assert_eq!(stored.payload["userId"], ID);
            let back = UserEvent::from_stored(&stored.event_type, stored.payload).unwrap();
            assert_eq!(&back, e);
        }
        assert_eq!(
            events[0].to_new_event().unwrap().payload["serverRole"],
            "server:admin"
        );
        assert!(matches!(
            UserEvent::from_stored("UserExploded", serde_json::json!({})),
            Err(EventCodecError::UnknownType(_))
        ));
        assert!(matches!(
            UserEvent::from_stored("UserDeleted", serde_json::json!({"nope": 1})),
            Err(EventCodecError::Payload { .. })
        ));
        let registry = UserEvent::register_current(Upcasters::new());
        assert_eq!(registry.current_version("UserRoleChanged"), Some(1));
    }

    fn arb_role() -> impl Strategy<Value = ServerRole> {
        prop::sample::select(ServerRole::ALL.to_vec())
    }

    fn arb_command() -> impl Strategy<Value = UserCommand> {
        let text = || proptest::option::of(".{0,20}");
        prop_oneof![
            (
                "[0-9a-f]{10}|.{0,12}",
                ".{0,30}",
                ".{0,20}",
                text(),
                arb_role()
            )
                .prop_map(|(id, email, name, company, server_role)| {
                    UserCommand::Create {
                        id,
                        email,
                        name,
                        company,
                        server_role,
                    }
                }),
            (text(), text(), text(), text()).prop_map(|(name, company, bio, avatar)| {
                UserCommand::UpdateProfile {
                    name,
                    company,
                    bio,
                    avatar,
                }
            }),
            (arb_role(), any::<bool>(), 0u32..3).prop_map(
                |(role, guest_role_enabled, admin_count)| UserCommand::ChangeRole {
                    role,
                    guest_role_enabled,
                    admin_count
                }
            ),
            (0u32..3).prop_map(|admin_count| UserCommand::Delete { admin_count }),
            "[0-9a-f]{10}"
                .prop_map(|request_id| UserCommand::RequestEmailVerification { request_id }),
            Just(UserCommand::MarkEmailVerified),
            "[0-9a-f]{10}".prop_map(|request_id| UserCommand::RequestPasswordReset { request_id }),
            "[0-9a-f]{10}".prop_map(|request_id| UserCommand::RecordPasswordReset { request_id }),
        ]
    }

    proptest! {
        #[test]
        fn decide_never_panics_and_folds_are_deterministic(
            commands in proptest::collection::vec(arb_command(), 0..20)
        ) {
            let mut state = UserState::default();
            let mut all = Vec::new();
            for c in commands {
                if let Ok(events) = decide(&state, c) {
                    for e in &events {
                        state = evolve(state, e);
                    }
                    all.extend(events);
                }
                if let UserState::Active(u) = &state {
                    prop_assert!(Email::parse(&u.email).is_ok_and(|e| e.as_str() == u.email));
                    prop_assert!(UserName::parse(&u.name).is_ok_and(|n| n.as_str() == u.name));
                }
            }
            prop_assert_eq!(fold(&all), state.clone());
            prop_assert_eq!(fold(&all), fold(&all));
        }
    }
}

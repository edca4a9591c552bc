//! Personal data in events: which stored fields identify a person, and whose key seals them.
//!
//! The log is immutable, so a person's email or name written into it in clear could never be
//! erased. Instead each personal field is stored sealed under a data key of its *subject* (a
//! user, or an invited email address that may belong to no account), kept outside the log;
//! destroying the key erases every copy at once while the stored bytes, and so the hash chains
//! and seals over them, stay as they are (crypto-shredding). The storage crate seals on append
//! and opens on read; this module only says what is personal, so the rule lives in one place.
//!
//! A value whose key is gone reads as [`erased`]`(key_id)`: unique per subject, so a read model
//! keeping unique addresses still folds.

use serde_json::Value;

/// Whose data key seals a field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// A registered user: every personal field of their own account's events.
    User(String),
    /// An email address an invite was sent to (normalised), whether or not an account has it.
    Email(String),
}

/// One personal field of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonalField {
    /// Where the field is, as a JSON pointer into the payload.
    pub pointer: &'static str,
    /// Whose key seals it.
    pub subject: Subject,
}

/// The user-event fields that identify the person (the account's own data).
const USER_FIELDS: [&str; 5] = ["/email", "/name", "/company", "/bio", "/avatar"];

/// Event types whose payloads may hold personal fields. A reader may skip every other type.
pub const HOLDERS: [&str; 7] = [
    "UserCreated",
    "UserProfileUpdated",
    "UserEmailVerificationRequested",
    "UserEmailVerified",
    "UserPasswordResetRequested",
    "UserPasswordReset",
    "ProjectInviteCreated",
];

/// Text a personal value reads as once its subject's key is destroyed.
pub fn erased(key_id: &str) -> String {
    format!("{ERASED_PREFIX}{key_id}")
}

const ERASED_PREFIX: &str = "erased:";

/// The personal fields present (as strings) in a payload of `event_type`, in its current
/// schema. Absent and null fields are not listed: there is nothing to seal.
pub fn personal_fields(event_type: &str, payload: &Value) -> Vec<PersonalField> {
    let present = |p: &str| payload.pointer(p).is_some_and(Value::is_string);
    match event_type {
        "ProjectInviteCreated" => payload
            .pointer("/target/email")
            .and_then(Value::as_str)
            .map(|email| PersonalField {
                pointer: "/target/email",
                subject: Subject::Email(email.to_owned()),
            })
            .into_iter()
            .collect(),
        t if HOLDERS.contains(&t) => {
            let Some(user) = payload.get("userId").and_then(Value::as_str) else {
                return vec![];
            };
            USER_FIELDS
                .iter()
                .filter(|p| present(p))
                .map(|p| PersonalField {
                    pointer: p,
                    subject: Subject::User(user.to_owned()),
                })
                .collect()
        }
        _ => vec![],
    }
}

/// `payload` without its personal fields (each set to null): what copies made for others may
/// carry (activity entries, webhook bodies), so erasing the person needs no hunt through them.
pub fn without_personal(event_type: &str, payload: &Value) -> Value {
    let mut copy = payload.clone();
    for field in personal_fields(event_type, payload) {
        if let Some(slot) = copy.pointer_mut(field.pointer) {
            *slot = Value::Null;
        }
    }
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{InviteTarget, ProjectEvent};
    use crate::user::UserEvent;
    use crate::{ProjectRole, ServerRole};

    fn pointers(e: &crate::NewEvent) -> Vec<(&'static str, Subject)> {
        personal_fields(&e.event_type, &e.payload)
            .into_iter()
            .map(|f| (f.pointer, f.subject))
            .collect()
    }

    #[test]
    fn an_accounts_identifying_fields_are_its_users_and_an_invited_address_is_its_own() {
        let created = UserEvent::UserCreated {
            user_id: "u1".into(),
            email: "a@b.c".into(),
            name: "Ann".into(),
            company: None,
            server_role: ServerRole::User,
        }
        .to_new_event()
        .unwrap();
        let u = || Subject::User("u1".into());
        assert_eq!(pointers(&created), vec![("/email", u()), ("/name", u())]);
        let profile = UserEvent::UserProfileUpdated {
            user_id: "u1".into(),
            name: "Ann".into(),
            company: Some("ACME".into()),
            bio: Some("hi".into()),
            avatar: None,
        }
        .to_new_event()
        .unwrap();
        assert_eq!(
            pointers(&profile),
            vec![("/name", u()), ("/company", u()), ("/bio", u())]
        );
        let by_email = ProjectEvent::ProjectInviteCreated {
            project_id: "p".into(),
            invite_id: "i".into(),
            target: InviteTarget::Email("x@y.z".into()),
            role: ProjectRole::Contributor,
            invited_by: "u1".into(),
        }
        .to_new_event()
        .unwrap();
        assert_eq!(
            pointers(&by_email),
            vec![("/target/email", Subject::Email("x@y.z".into()))]
        );
        let shared = without_personal(&by_email.event_type, &by_email.payload);
        assert_eq!(shared["target"]["email"], Value::Null);
        assert_eq!(shared["inviteId"], "i");
        let by_id = ProjectEvent::ProjectInviteCreated {
            project_id: "p".into(),
            invite_id: "i".into(),
            target: InviteTarget::UserId("u2".into()),
            role: ProjectRole::Contributor,
            invited_by: "u1".into(),
        }
        .to_new_event()
        .unwrap();
        assert!(pointers(&by_id).is_empty());
        let deleted = UserEvent::UserDeleted {
            user_id: "u1".into(),
        }
        .to_new_event()
        .unwrap();
        assert!(pointers(&deleted).is_empty());
    }

    #[test]
    fn every_user_event_that_names_an_address_is_a_holder() {
        for t in UserEvent::EVENT_TYPES {
            if t != "UserDeleted" && t != "UserRoleChanged" {
                assert!(HOLDERS.contains(&t), "{t} may carry personal data");
            }
        }
        assert_eq!(erased("k1"), "erased:k1");
    }
}

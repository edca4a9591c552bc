//! Validated identifiers.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// Longest accepted stream id; keeps index entries small and rejects garbage early.
pub const MAX_STREAM_ID_LEN: usize = 200;

/// Length of an entity id (project, model, version, user, invite). Speckle clients treat ids
/// as opaque, but 10-char lowercase hex is what the original hands out, so ours look the same.
pub const ENTITY_ID_LEN: usize = 10;

/// Whether `id` has the shape of an entity id: [`ENTITY_ID_LEN`] lowercase hex characters.
/// The domain never generates ids (callers pass new ones in commands); it only checks them.
pub fn is_entity_id(id: &str) -> bool {
    id.len() == ENTITY_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks that the id in command field `field` is an entity id ([`is_entity_id`]).
pub(crate) fn check_entity_id(field: &'static str, id: &str) -> Result<(), DomainError> {
    if is_entity_id(id) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            "must be 10 lowercase hexadecimal characters",
        ))
    }
}

/// The id of one event stream (one aggregate instance), written `category:id`,
/// e.g. `project:ab12cd34ef`. The category says which aggregate folds the stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

/// Why a string is not a valid [`StreamId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// The id has no `category:` prefix.
    #[error("stream id {0:?} must look like `category:id`")]
    MissingCategory(String),
    /// The category is not lower-case ASCII letters and `_`.
    #[error("stream id {0:?} has an invalid category: use a-z and _")]
    BadCategory(String),
    /// The part after the colon is empty or has characters outside `[A-Za-z0-9_.-]`.
    #[error("stream id {0:?} has an invalid id part: use A-Z, a-z, 0-9, _, . and -")]
    BadId(String),
    /// Longer than [`MAX_STREAM_ID_LEN`].
    #[error("stream id is longer than {MAX_STREAM_ID_LEN} characters")]
    TooLong,
}

impl StreamId {
    /// Builds the id of `id` within `category`, validating both.
    pub fn new(category: &str, id: &str) -> Result<Self, StreamIdError> {
        Self::parse(&format!("{category}:{id}"))
    }

    /// Parses a full `category:id` string.
    pub fn parse(raw: &str) -> Result<Self, StreamIdError> {
        if raw.len() > MAX_STREAM_ID_LEN {
            return Err(StreamIdError::TooLong);
        }
        let Some((category, id)) = raw.split_once(':') else {
            return Err(StreamIdError::MissingCategory(raw.to_owned()));
        };
        if category.is_empty()
            || !category
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(StreamIdError::BadCategory(raw.to_owned()));
        }
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(StreamIdError::BadId(raw.to_owned()));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The aggregate kind, the part before the colon.
    pub fn category(&self) -> &str {
        self.0.split_once(':').map(|(c, _)| c).unwrap_or_default()
    }

    /// The full `category:id` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for StreamId {
    type Error = StreamIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<StreamId> for String {
    fn from(value: StreamId) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_category_and_id() {
        let id = StreamId::parse("project:ab12cd34ef").unwrap();
        assert_eq!(id.category(), "project");
        assert_eq!(id.as_str(), "project:ab12cd34ef");
        assert_eq!(StreamId::new("model", "x").unwrap().to_string(), "model:x");
    }

    #[test]
    fn rejects_malformed_ids() {
        assert!(matches!(
            StreamId::parse("project"),
            Err(StreamIdError::MissingCategory(_))
        ));
        assert!(matches!(
            StreamId::parse("Project:a"),
            Err(StreamIdError::BadCategory(_))
        ));
        assert!(matches!(
            StreamId::parse(":a"),
            Err(StreamIdError::BadCategory(_))
        ));
        assert!(matches!(
            StreamId::parse("project:"),
            Err(StreamIdError::BadId(_))
        ));
        assert!(matches!(
            StreamId::parse("project:a b"),
            Err(StreamIdError::BadId(_))
        ));
        assert!(matches!(
            StreamId::parse("project:a:b"),
            Err(StreamIdError::BadId(_))
        ));
        let long = format!("p:{}", "a".repeat(MAX_STREAM_ID_LEN));
        assert_eq!(StreamId::parse(&long), Err(StreamIdError::TooLong));
    }

    #[test]
    fn entity_ids_are_ten_lowercase_hex_chars() {
        assert!(is_entity_id("ab12cd34ef"));
        assert!(!is_entity_id("AB12CD34EF"));
        assert!(!is_entity_id("ab12cd34e"));
        assert!(!is_entity_id("ab12cd34efa"));
        assert!(!is_entity_id("ab12cd34eg"));
        assert!(!is_entity_id(""));
    }

    proptest! {
        #[test]
        fn parse_roundtrips_through_serde(cat in "[a-z_]{1,20}", id in "[A-Za-z0-9_.-]{1,40}") {
            let sid = StreamId::new(&cat, &id).unwrap();
            let json = serde_json::to_string(&sid).unwrap();
            let back: StreamId = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, sid);
        }
    }
}

//! The shape of an event before it is stored, and the context recorded with it.

use serde::{Deserialize, Serialize};

/// One event a decision produced, not yet in the log. `event_type` and `schema_version`
/// together name the payload's shape: a shape is never changed in place, a new shape gets
/// a new schema version and an [`crate::Upcaster`] from the old one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Stable name, e.g. `ProjectCreated`.
    pub event_type: String,
    /// Version of the payload shape, starting at 1.
    pub schema_version: u32,
    /// The payload as JSON.
    pub payload: serde_json::Value,
}

impl NewEvent {
    /// Serialises `payload` as the given type and version.
    pub fn new<T: Serialize>(
        event_type: impl Into<String>,
        schema_version: u32,
        payload: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event_type: event_type.into(),
            schema_version,
            payload: serde_json::to_value(payload)?,
        })
    }
}

/// Who and what caused an event: kept with every event so an auditor can answer
/// "who did this, with which token, from which client, in which request".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    /// The acting user, if any (system actions have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_user_id: Option<String>,
    /// The id (never the secret) of the token used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    /// Groups every event caused, directly or not, by one user action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The command or event that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// The HTTP request id (`x-request-id`), to join events with request logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The client application name, e.g. `specklepy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// The client application version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
    /// The W3C `traceparent` of the command that appended it, when traces are exported: what
    /// follows from the event (projection, jobs, deliveries) continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Why an aggregate event could not be turned into a [`NewEvent`] or read back from one.
#[derive(Debug, thiserror::Error)]
pub enum EventCodecError {
    /// The stored type is not one this aggregate knows.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The payload does not have the shape of the named type (upcast it first).
    #[error("payload of {event_type} does not match its schema: {source}")]
    Payload {
        /// The event type being read.
        event_type: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The stored version could not be brought to the current shape.
    #[error(transparent)]
    Upcast(#[from] crate::UpcastError),
    /// Serialising failed; cannot happen for the plain types used here, but is not hidden.
    #[error("could not serialise event: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Encodes an adjacently tagged event enum (`#[serde(tag = "type", content = "payload")]`) as
/// a [`NewEvent`]: the tag becomes `event_type`, the content becomes the payload object.
pub(crate) fn encode_tagged<T: Serialize>(
    event: &T,
    schema_version: u32,
) -> Result<NewEvent, EventCodecError> {
    let value = serde_json::to_value(event).map_err(EventCodecError::Encode)?;
    let serde_json::Value::Object(mut map) = value else {
        return Err(EventCodecError::Encode(serde::ser::Error::custom(
            "event did not serialise to an object",
        )));
    };
    let event_type = match map.remove("type") {
        Some(serde_json::Value::String(t)) => t,
        _ => {
            return Err(EventCodecError::Encode(serde::ser::Error::custom(
                "event has no type tag",
            )));
        }
    };
    let payload = map
        .remove("payload")
        .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
    Ok(NewEvent {
        event_type,
        schema_version,
        payload,
    })
}

/// Decodes a payload of `event_type` into an adjacently tagged event enum, refusing types not
/// in `known` with [`EventCodecError::UnknownType`].
pub(crate) fn decode_tagged<T: serde::de::DeserializeOwned>(
    known: &[&str],
    event_type: &str,
    payload: serde_json::Value,
) -> Result<T, EventCodecError> {
    if !known.contains(&event_type) {
        return Err(EventCodecError::UnknownType(event_type.to_owned()));
    }
    let mut map = serde_json::Map::new();
    map.insert(
        "type".into(),
        serde_json::Value::String(event_type.to_owned()),
    );
    map.insert("payload".into(), payload);
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|source| {
        EventCodecError::Payload {
            event_type: event_type.to_owned(),
            source,
        }
    })
}

/// Upcasts a stored payload through `upcasters` (built once by `register`), then decodes it:
/// the body of each aggregate's one public decoder.
pub(crate) fn upcast_and_decode<T: serde::de::DeserializeOwned>(
    upcasters: &std::sync::OnceLock<crate::Upcasters>,
    register: fn(crate::Upcasters) -> crate::Upcasters,
    known: &[&str],
    event_type: &str,
    schema_version: u32,
    payload: serde_json::Value,
) -> Result<T, EventCodecError> {
    let (_, payload) = upcasters
        .get_or_init(|| register(crate::Upcasters::new()))
        .upcast(event_type, schema_version, payload)?;
    decode_tagged(known, event_type, payload)
}

/// The codec methods every aggregate's event enum has (`to_new_event`, `decode`,
/// `register_current`), written once: expanded inside `impl XEvent { … }` for an enum with
/// `EVENT_TYPES` and `SCHEMA_VERSION`. `$kind` names the events in the docs; `from_stored`
/// adds the test-only reader of payloads already in the current shape.
macro_rules! event_codec {
    ($kind:literal) => {
        /// The event as it is appended to the log.
        pub fn to_new_event(&self) -> Result<NewEvent, EventCodecError> {
            $crate::event::encode_tagged(self, Self::SCHEMA_VERSION)
        }

        #[doc = concat!("The one way to read a stored ", $kind, " event, for every reader")]
        /// (command handling, projections, the live publisher): brings the payload from its
        /// stored schema version to the current shape through [`Self::register_current`]'s
        /// upcasters, then decodes it.
        pub fn decode(
            event_type: &str,
            schema_version: u32,
            payload: serde_json::Value,
        ) -> Result<Self, EventCodecError> {
            static UPCASTERS: std::sync::OnceLock<Upcasters> = std::sync::OnceLock::new();
            $crate::event::upcast_and_decode(
                &UPCASTERS,
                Self::register_current,
                &Self::EVENT_TYPES,
                event_type,
                schema_version,
                payload,
            )
        }

        #[doc = concat!("Declares every ", $kind, " event type's current version, and the")]
        /// upcast steps from older ones (none yet), in an upcaster registry.
        pub fn register_current(upcasters: Upcasters) -> Upcasters {
            Self::EVENT_TYPES
                .iter()
                .fold(upcasters, |u, t| u.current(t, Self::SCHEMA_VERSION))
        }
    };
    ($kind:literal, from_stored) => {
        $crate::event::event_codec!($kind);

        /// Reads a payload already in the current shape (tests of the codec); every reader uses
        /// [`Self::decode`], which upcasts first.
        #[cfg(test)]
        pub(crate) fn from_stored(
            event_type: &str,
            payload: serde_json::Value,
        ) -> Result<Self, EventCodecError> {
            $crate::event::decode_tagged(&Self::EVENT_TYPES, event_type, payload)
        }
    };
}
pub(crate) use event_codec;

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
}

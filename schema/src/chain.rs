//! The per-stream hash chain, recomputed outside the database.
//!
//! The database computes each event's hash inside `append_events` (see the migration). This
//! module computes the same function from stored columns, so an auditor can verify a stream,
//! or an export of it, without trusting the server that wrote it.

use sha2::{Digest, Sha256};

/// The hash before a stream's first event.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The columns of one stored event that its hash covers, as the database renders them.
#[derive(Clone, Debug)]
pub struct HashedFields<'a> {
    /// `category:id`.
    pub stream_id: &'a str,
    /// 1-based version within the stream.
    pub stream_version: i64,
    /// Event type name.
    pub event_type: &'a str,
    /// Payload schema version.
    pub schema_version: i32,
    /// `recorded_at` as whole microseconds since the Unix epoch.
    pub recorded_at_micros: i64,
    /// `payload::text`, Postgres' canonical rendering of the jsonb value.
    pub payload_text: &'a str,
    /// `metadata::text`.
    pub metadata_text: &'a str,
}

/// The hash of one event given the hash of the one before it in its stream.
pub fn event_hash(previous: &[u8], fields: &HashedFields<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n{}",
            fields.stream_id,
            fields.stream_version,
            fields.event_type,
            fields.schema_version,
            fields.recorded_at_micros,
            fields.payload_text,
            fields.metadata_text
        )
        .as_bytes(),
    );
    hasher.finalize().into()
}

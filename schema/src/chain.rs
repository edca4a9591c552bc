//! The per-stream hash chain, recomputed outside the database.
//!
//! The database computes each event's hash as it appends: inside `append_events` (see the
//! migration), and in `event_log::APPEND_ONE_SQL` for a one-event append. This
//! module computes the same function from stored columns, so an auditor can verify a stream,
//! or an export of it, without trusting the server that wrote it; and `EventLog::append`
//! uses it to hash a one-event append onto a head it already knows (`APPEND_CHAINED_SQL`),
//! rendering the payload with [`jsonb_text`] as the database will store it.

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

/// `value::jsonb::text` as PostgreSQL renders it, computed without the database, or `None`
/// when this function cannot be sure of PostgreSQL's rendering: a number that is not an
/// integer (jsonb keeps decimals as `numeric`, whose text can differ from serde_json's for
/// the same value, `1e20` say), or a string holding `\u0000` (which jsonb refuses). An appender
/// that gets `None` lets the database compute the hash instead.
///
/// PostgreSQL's rendering: object keys sorted by byte length, then bytewise, each key once;
/// `", "` between members and elements, `": "` after keys; strings escaped with `\"`, `\\`,
/// `\b`, `\f`, `\n`, `\r`, `\t`, other characters below U+0020 as lowercase `\u00xx`, and
/// everything else as it is.
pub fn jsonb_text(value: &serde_json::Value) -> Option<String> {
    let mut out = String::new();
    render_jsonb(value, &mut out).then_some(out)
}

fn render_jsonb(value: &serde_json::Value, out: &mut String) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (None, Some(u)) => out.push_str(&u.to_string()),
            (None, None) => return false,
        },
        Value::String(s) => return render_jsonb_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if !render_jsonb(item, out) {
                    return false;
                }
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort_by(|a, b| {
                a.len()
                    .cmp(&b.len())
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()))
            });
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                if !render_jsonb_string(key, out) {
                    return false;
                }
                out.push_str(": ");
                match members.get(key) {
                    Some(member) if render_jsonb(member, out) => {}
                    _ => return false,
                }
            }
            out.push('}');
        }
    }
    true
}

fn render_jsonb_string(s: &str, out: &mut String) -> bool {
    out.push('"');
    for c in s.chars() {
        match c {
            '\0' => return false,
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    true
}

/// One stored event as the verifier sees it.
#[derive(Clone, Debug)]
pub struct StoredEvent<'a> {
    /// What its hash covers.
    pub fields: HashedFields<'a>,
    /// Its global position.
    pub position: i64,
    /// The hash stored with it.
    pub stored_hash: &'a [u8],
}

#[derive(Clone, Debug)]
struct StreamState {
    previous: Vec<u8>,
    expected_version: i64,
    last_position: i64,
    broken: bool,
}

/// Checks hash chains from events given in each stream's version order (streams may
/// interleave: an export in log order works as well as a walk stream by stream). Per stream
/// it reports the first event that skips a version, sits before an earlier version in the
/// log (a reordering), or whose stored hash its contents do not produce.
#[derive(Default)]
pub struct Verifier {
    streams: std::collections::HashMap<String, StreamState>,
    events: u64,
    breaks: Vec<crate::ChainBreak>,
}

impl Verifier {
    /// Takes the next event of its stream.
    pub fn push(&mut self, event: &StoredEvent<'_>) {
        self.events += 1;
        let f = &event.fields;
        let state = self
            .streams
            .entry(f.stream_id.to_owned())
            .or_insert_with(|| StreamState {
                previous: GENESIS.to_vec(),
                expected_version: 1,
                last_position: i64::MIN,
                broken: false,
            });
        if state.broken {
            return;
        }
        let computed = event_hash(&state.previous, f);
        let reason = if f.stream_version != state.expected_version {
            Some(format!(
                "version {} follows {}",
                f.stream_version,
                state.expected_version - 1
            ))
        } else if event.position <= state.last_position {
            Some(format!(
                "at position {} but version {} is at {}",
                event.position,
                f.stream_version - 1,
                state.last_position
            ))
        } else if computed.as_slice() != event.stored_hash {
            Some(format!(
                "stored hash {} but contents hash to {}",
                hex::encode(event.stored_hash),
                hex::encode(computed)
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            self.breaks.push(crate::ChainBreak {
                stream_id: f.stream_id.to_owned(),
                stream_version: f.stream_version,
                position: event.position,
                reason,
            });
            state.broken = true;
            return;
        }
        state.previous = event.stored_hash.to_vec();
        state.expected_version += 1;
        state.last_position = event.position;
    }

    /// The report: streams and events seen, every stream's first break (by stream).
    pub fn finish(mut self) -> crate::ChainReport {
        self.breaks.sort_by(|a, b| a.stream_id.cmp(&b.stream_id));
        crate::ChainReport {
            streams: self.streams.len() as u64,
            events: self.events,
            breaks: self.breaks,
        }
    }
}

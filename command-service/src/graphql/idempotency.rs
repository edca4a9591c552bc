//! `Idempotency-Key` on `POST /graphql`: a request sent again with the same key, by the same
//! caller and with the same operations, is applied once and answered as the first time.
//!
//! The key never reaches the log. Each operation of the request gets a seed (SHA-256 of the
//! caller, the key, the operation's place in a batch and its canonical content), and every id
//! a mutation field generates, and the command id of every command it runs, is derived from
//! that seed, the field's response path (aliases included) and a count along that path. A
//! repeat therefore decides the same commands with the same ids, and the event log, which
//! records each command id once (`processed_commands`), answers a repeated command with the
//! events the first attempt appended (`CommandBus::execute_once`). Deriving along paths, not
//! in call order, matters: async-graphql resolves sibling fields of a nested mutation object
//! concurrently, so the order of calls is not stable between attempts.
//!
//! A different body under the same key is a different request (its seed differs). A command
//! run without a derived id while a key is set is refused (`commands::keyed`), so a mutation
//! that cannot be repeated safely says so instead of applying twice.

use std::collections::HashMap;
use std::sync::Mutex;

use async_graphql::{Context, Name, Value};
use sha2::{Digest, Sha256};

/// The request header clients send.
pub const HEADER: &str = "idempotency-key";

/// The longest key taken.
pub const MAX_KEY_LEN: usize = 255;

/// One keyed operation's seed and the counts along its paths (request data).
pub struct Idempotency {
    seed: [u8; 32],
    counts: Mutex<HashMap<(String, &'static str), u64>>,
}

impl Idempotency {
    /// The seed of operation `index` of a request `user` sent with `key`.
    pub fn new(
        user: Option<&str>,
        key: &str,
        index: usize,
        request: &async_graphql::Request,
    ) -> Self {
        let mut hash = Sha256::new();
        for part in [
            user.unwrap_or_default(),
            key,
            &index.to_string(),
            &request.query,
        ] {
            hash.update(part.len().to_le_bytes());
            hash.update(part.as_bytes());
        }
        let name = request.operation_name.as_deref().unwrap_or_default();
        hash.update(name.len().to_le_bytes());
        hash.update(name.as_bytes());
        let mut variables = String::new();
        canonical(
            &Value::Object(
                request
                    .variables
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            &mut variables,
        );
        hash.update(variables.as_bytes());
        Self {
            seed: hash.finalize().into(),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// The next derived value of `kind` along `path`.
    fn derive(&self, path: &str, kind: &'static str) -> [u8; 32] {
        let n = {
            let mut counts = self
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = counts.entry((path.to_owned(), kind)).or_insert(0);
            *n += 1;
            *n
        };
        let mut hash = Sha256::new();
        hash.update(self.seed);
        for part in [kind, path] {
            hash.update(part.len().to_le_bytes());
            hash.update(part.as_bytes());
        }
        hash.update(n.to_le_bytes());
        hash.finalize().into()
    }
}

/// Variables written with object keys in sorted order, so a client that sends the same values
/// in another order sends the same request.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&Name, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            out.push('{');
            for (k, v) in entries {
                out.push_str(&serde_json::Value::from(k.as_str()).to_string());
                out.push(':');
                canonical(v, out);
                out.push(',');
            }
            out.push('}');
        }
        Value::List(items) => {
            out.push('[');
            for v in items {
                canonical(v, out);
                out.push(',');
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The key a request carries: `Ok(None)` without one, `Err` with why a key is refused.
pub fn key_of(headers: &axum::http::HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            format!(
                "An Idempotency-Key is 1 to {MAX_KEY_LEN} visible ASCII characters (no spaces)."
            )
        })?;
    Ok(Some(key.to_owned()))
}

fn path(ctx: &Context<'_>) -> String {
    ctx.path_node.map(|p| p.to_string()).unwrap_or_default()
}

/// A new 10-character entity id for the field being resolved: derived from the request's key
/// when it has one (a repeat gets the same id), else random.
pub fn new_id(ctx: &Context<'_>) -> String {
    match ctx.data_opt::<Idempotency>() {
        Some(keyed) => {
            let mut id = hex::encode(keyed.derive(&path(ctx), "id"));
            id.truncate(domain::ids::ENTITY_ID_LEN);
            id
        }
        None => crate::commands::new_id(),
    }
}

/// The command id of the next command the field being resolved runs: `None` without a key.
pub fn command_id(ctx: &Context<'_>) -> Option<uuid::Uuid> {
    let keyed = ctx.data_opt::<Idempotency>()?;
    let bytes = keyed.derive(&path(ctx), "command");
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[..16]);
    // A version-4-shaped UUID, so it reads as an ordinary random one.
    Some(uuid::Builder::from_random_bytes(id).into_uuid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, variables: serde_json::Value) -> async_graphql::Request {
        async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(variables))
    }

    #[test]
    fn the_seed_is_the_request_and_nothing_else() {
        let q = "mutation($i: In!) { a(input: $i) }";
        let seed = |user, key, index, r: &async_graphql::Request| {
            Idempotency::new(user, key, index, r).seed
        };
        let base = request(
            q,
            serde_json::json!({"i": {"x": 1, "y": [1, {"b": 2, "a": 1}]}}),
        );
        let reordered = request(
            q,
            serde_json::json!({"i": {"y": [1, {"a": 1, "b": 2}], "x": 1}}),
        );
        let first = seed(Some("u1"), "k", 0, &base);
        assert_eq!(
            first,
            seed(Some("u1"), "k", 0, &reordered),
            "key order is not content"
        );
        for other in [
            seed(Some("u2"), "k", 0, &base),
            seed(Some("u1"), "k2", 0, &base),
            seed(Some("u1"), "k", 1, &base),
            seed(None, "k", 0, &base),
            seed(
                Some("u1"),
                "k",
                0,
                &request(q, serde_json::json!({"i": {"x": 2}})),
            ),
            seed(
                Some("u1"),
                "k",
                0,
                &request("mutation { b }", serde_json::json!({})),
            ),
        ] {
            assert_ne!(first, other);
        }
    }

    #[test]
    fn each_path_counts_on_its_own() {
        let keyed = Idempotency::new(Some("u"), "k", 0, &request("{a}", serde_json::json!({})));
        let a1 = keyed.derive("m.a", "id");
        let b1 = keyed.derive("m.b", "id");
        let a2 = keyed.derive("m.a", "id");
        let c1 = keyed.derive("m.a", "command");
        assert!(a1 != b1 && a1 != a2 && a1 != c1);
        // Another attempt, with the siblings in the other order, derives the same values.
        let again = Idempotency::new(Some("u"), "k", 0, &request("{a}", serde_json::json!({})));
        assert_eq!(again.derive("m.b", "id"), b1);
        assert_eq!(again.derive("m.a", "id"), a1);
        assert_eq!(again.derive("m.a", "id"), a2);
    }

    #[test]
    fn a_key_is_visible_ascii_of_bounded_length() {
        let of = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(
                HEADER,
                axum::http::HeaderValue::from_str(v).expect("header"),
            );
            key_of(&h)
        };
        assert_eq!(key_of(&axum::http::HeaderMap::new()), Ok(None));
        assert_eq!(of("retry-7f3a"), Ok(Some("retry-7f3a".into())));
        assert_eq!(
            of(&"k".repeat(MAX_KEY_LEN)),
            Ok(Some("k".repeat(MAX_KEY_LEN)))
        );
        assert!(of(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(of("").is_err());
        assert!(of("a b").is_err());
    }
}

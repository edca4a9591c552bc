//! Crypto-shredding: personal fields are sealed on append and opened on read.
//!
//! [`domain::personal`] says which payload fields identify a person and whose they are. On
//! append each such field is replaced by `{"$sealed": "<key id>:<hex nonce, ciphertext, tag>"}`
//! (AES-256-GCM under the subject's data key, the key id as associated data), so the log, its
//! hash chains and its exports only ever hold ciphertext. Every read of the log through
//! [`crate::EventLog`] (and [`crate::event_log::read_all_with`]) opens the sealed fields again,
//! so a decoder never sees the envelope; a reader that bypassed it would fail to decode (an
//! object where a string belongs), not read ciphertext as a name.
//!
//! Keys live in `personal_keys`, outside the log: one row per subject (`user:<id>` or
//! `email:<sha-256 of the address>`). [`forget`] deletes them; from then on their fields read as
//! [`domain::personal::erased`] everywhere, a rebuild included, while the stored bytes (and so
//! verification against earlier seals) are untouched.

use std::collections::{BTreeSet, HashMap};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use domain::NewEvent;
use domain::personal::{Subject, personal_fields};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};

use crate::event_log::RecordedEvent;

/// The key of a sealed field's envelope object.
pub const SEALED: &str = "$sealed";

/// The `personal_keys` subject of a domain subject. An address is hashed, so the key table does
/// not list the addresses it can erase.
pub fn subject_key(subject: &Subject) -> String {
    match subject {
        Subject::User(id) => format!("user:{id}"),
        Subject::Email(email) => email_subject(email),
    }
}

/// The subject key of an email address (normalised to lower case first).
pub fn email_subject(email: &str) -> String {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    format!("email:{}", hex::encode(digest))
}

/// Whether any of `events` is of a type that may carry personal fields.
pub fn holds_personal(events: &[NewEvent]) -> bool {
    events
        .iter()
        .any(|e| domain::personal::HOLDERS.contains(&e.event_type.as_str()))
}

/// Seals the personal fields of `events` in place, creating keys for new subjects on `conn`
/// (inside the append's transaction, so a key exists exactly when a field sealed by it does).
pub async fn seal(conn: &mut PgConnection, events: &mut [NewEvent]) -> Result<(), sqlx::Error> {
    let fields: Vec<_> = events
        .iter()
        .map(|e| personal_fields(&e.event_type, &e.payload))
        .collect();
    let subjects: BTreeSet<String> = fields
        .iter()
        .flatten()
        .map(|f| subject_key(&f.subject))
        .collect();
    if subjects.is_empty() {
        return Ok(());
    }
    let keys = keys_for(conn, &subjects).await?;
    for (event, fields) in events.iter_mut().zip(fields) {
        for field in fields {
            let subject = subject_key(&field.subject);
            let (key_id, key) = keys
                .get(&subject)
                .ok_or_else(|| decode_error(format!("no data key for {subject}")))?;
            if let Some(slot) = event.payload.pointer_mut(field.pointer)
                && let Value::String(plain) = slot
            {
                let sealed = seal_value(key_id, key, plain.as_bytes())?;
                *slot = serde_json::json!({ SEALED: sealed });
            }
        }
    }
    Ok(())
}

/// Opens every sealed field of `events` in place; a field whose key was destroyed reads as
/// [`domain::personal::erased`]. A sealed field that does not open under its key (altered
/// bytes) is an error, never silently passed on.
pub async fn open(
    conn: &mut PgConnection,
    events: &mut [RecordedEvent],
) -> Result<(), sqlx::Error> {
    let mut key_ids = BTreeSet::new();
    let mut clear = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if domain::personal::HOLDERS.contains(&e.event_type.as_str()) {
            visit_sealed(&e.payload, &mut |s| {
                if let Some((id, _)) = s.split_once(':') {
                    key_ids.insert(id.to_owned());
                }
            });
            // Fields still in clear: written before sealing began.
            for field in personal_fields(&e.event_type, &e.payload) {
                clear.push((i, field));
            }
        }
    }
    if !clear.is_empty() {
        forget_clear_fields(conn, events, clear).await?;
    }
    if key_ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = key_ids.into_iter().collect();
    let rows = sqlx::query("SELECT key_id, key FROM personal_keys WHERE key_id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let mut keys = HashMap::new();
    for row in rows {
        let id: String = row.try_get("key_id")?;
        let key: Vec<u8> = row.try_get("key")?;
        keys.insert(id, key);
    }
    for e in events.iter_mut() {
        if domain::personal::HOLDERS.contains(&e.event_type.as_str()) {
            open_value(&mut e.payload, &keys)?;
        }
    }
    Ok(())
}

/// Replaces the clear personal fields (of events appended before sealing began) whose subject
/// was erased, as a sealed field with a destroyed key reads.
async fn forget_clear_fields(
    conn: &mut PgConnection,
    events: &mut [RecordedEvent],
    clear: Vec<(usize, domain::personal::PersonalField)>,
) -> Result<(), sqlx::Error> {
    let subjects: Vec<String> = clear.iter().map(|(_, f)| subject_key(&f.subject)).collect();
    let erased: BTreeSet<String> =
        sqlx::query_scalar("SELECT subject FROM erased_subjects WHERE subject = ANY($1)")
            .bind(&subjects)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    for ((i, field), subject) in clear.into_iter().zip(subjects) {
        if erased.contains(&subject)
            && let Some(slot) = events[i].payload.pointer_mut(field.pointer)
        {
            *slot = Value::String(domain::personal::erased(&subject));
        }
    }
    Ok(())
}

/// Destroys the data keys of `subjects` (see [`subject_key`]); returns how many there were.
/// Idempotent: forgetting a subject twice, or one that never had a key, does nothing.
pub async fn forget(conn: &mut PgConnection, subjects: &[String]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM personal_keys WHERE subject = ANY($1)")
        .bind(subjects)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO erased_subjects (subject) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(subjects)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Scrubs the copies of a deleted person's data kept outside the log: frozen webhook bodies
/// keep only the actor's id, and as-of and aggregate snapshots naming their address are dropped
/// (caches: the next replay or command folds them again from the log, where the address now
/// reads as erased).
pub async fn scrub_copies(
    conn: &mut PgConnection,
    user_id: &str,
    email: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries \
         SET body = jsonb_set(body::jsonb, '{payload,user}', jsonb_build_object('id', $1::text))::text \
         WHERE body::jsonb #>> '{payload,user,id}' = $1",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    let email = email.trim().to_lowercase();
    sqlx::query("DELETE FROM audit_snapshots WHERE strpos(view::text, $1) > 0")
        .bind(&email)
        .execute(&mut *conn)
        .await?;
    // A project's command state holds the addresses its pending invites were sent to.
    sqlx::query("DELETE FROM aggregate_snapshots WHERE strpos(state, $1) > 0")
        .bind(&email)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn keys_for(
    conn: &mut PgConnection,
    subjects: &BTreeSet<String>,
) -> Result<HashMap<String, (String, Vec<u8>)>, sqlx::Error> {
    let wanted: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let mut fresh_ids = Vec::with_capacity(wanted.len());
    let mut fresh_keys = Vec::with_capacity(wanted.len());
    for _ in &wanted {
        fresh_ids.push(hex::encode(random::<12>()?));
        fresh_keys.push(random::<32>()?.to_vec());
    }
    sqlx::query(
        "INSERT INTO personal_keys (subject, key_id, key) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
         ON CONFLICT (subject) DO NOTHING",
    )
    .bind(&wanted)
    .bind(&fresh_ids)
    .bind(&fresh_keys)
    .execute(&mut *conn)
    .await?;
    let rows =
        sqlx::query("SELECT subject, key_id, key FROM personal_keys WHERE subject = ANY($1)")
            .bind(&wanted)
            .fetch_all(&mut *conn)
            .await?;
    let mut keys = HashMap::new();
    for row in rows {
        keys.insert(
            row.try_get::<String, _>("subject")?,
            (row.try_get("key_id")?, row.try_get("key")?),
        );
    }
    Ok(keys)
}

fn random<const N: usize>() -> Result<[u8; N], sqlx::Error> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| decode_error("no randomness".into()))?;
    Ok(bytes)
}

fn cipher(key: &[u8]) -> Result<LessSafeKey, sqlx::Error> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| decode_error("a data key is not 32 bytes".into()))
}

fn seal_value(key_id: &str, key: &[u8], plain: &[u8]) -> Result<String, sqlx::Error> {
    let nonce = random::<NONCE_LEN>()?;
    let mut buf = plain.to_vec();
    cipher(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(key_id.as_bytes()),
            &mut buf,
        )
        .map_err(|_| decode_error("sealing failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(format!("{key_id}:{}", hex::encode(out)))
}

fn open_sealed(sealed: &str, keys: &HashMap<String, Vec<u8>>) -> Result<String, sqlx::Error> {
    let bad = || decode_error("a sealed personal field is malformed".into());
    let (key_id, body) = sealed.split_once(':').ok_or_else(bad)?;
    let Some(key) = keys.get(key_id) else {
        return Ok(domain::personal::erased(key_id));
    };
    let bytes = hex::decode(body).map_err(|_| bad())?;
    if bytes.len() < NONCE_LEN {
        return Err(bad());
    }
    let (nonce, rest) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
    let mut buf = rest.to_vec();
    let plain = cipher(key)?
        .open_in_place(nonce, Aad::from(key_id.as_bytes()), &mut buf)
        .map_err(|_| {
            decode_error(format!(
                "a personal field sealed under key {key_id} does not open: its bytes were altered"
            ))
        })?;
    String::from_utf8(plain.to_vec()).map_err(|_| bad())
}

/// The sealed string of an envelope object, if `value` is one.
fn envelope(value: &Value) -> Option<&str> {
    match value {
        Value::Object(map) if map.len() == 1 => map.get(SEALED).and_then(Value::as_str),
        _ => None,
    }
}

fn visit_sealed(value: &Value, f: &mut impl FnMut(&str)) {
    if let Some(s) = envelope(value) {
        f(s);
        return;
    }
    match value {
        Value::Object(map) => map.values().for_each(|v| visit_sealed(v, f)),
        Value::Array(items) => items.iter().for_each(|v| visit_sealed(v, f)),
        _ => {}
    }
}

fn open_value(value: &mut Value, keys: &HashMap<String, Vec<u8>>) -> Result<(), sqlx::Error> {
    if let Some(s) = envelope(value) {
        *value = Value::String(open_sealed(s, keys)?);
        return Ok(());
    }
    match value {
        Value::Object(map) => map.values_mut().try_for_each(|v| open_value(v, keys)),
        Value::Array(items) => items.iter_mut().try_for_each(|v| open_value(v, keys)),
        _ => Ok(()),
    }
}

fn decode_error(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_under_its_key_reads_erased_without_it_and_refuses_altered_bytes() {
        let key = random::<32>().unwrap().to_vec();
        let sealed = seal_value("k1", &key, "ann@example.com".as_bytes()).unwrap();
        assert!(!sealed.contains("ann"));
        let keys = HashMap::from([("k1".to_owned(), key)]);
        assert_eq!(open_sealed(&sealed, &keys).unwrap(), "ann@example.com");
        assert_eq!(
            open_sealed(&sealed, &HashMap::new()).unwrap(),
            domain::personal::erased("k1")
        );
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        assert!(open_sealed(std::str::from_utf8(&altered).unwrap(), &keys).is_err());
        // Another key id with the same key: the associated data no longer matches.
        let moved = sealed.replacen("k1:", "k2:", 1);
        let keys2 = HashMap::from([("k2".to_owned(), keys["k1"].clone())]);
        assert!(open_sealed(&moved, &keys2).is_err());
        assert_eq!(
            email_subject(" Ann@Example.com"),
            email_subject("ann@example.com")
        );
    }
}

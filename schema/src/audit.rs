//! What an auditor needs beyond the live database: an export of the log with its chain hashes
//! (JSON lines), Ed25519-signed seals over every stream's head, and verification of both, online
//! against the database or offline from an export file and the server's public key alone.
//!
//! A seal covers every event up to a log cursor (the readable horizon when it was made: no
//! event can later appear behind it). Its digest is SHA-256 over `strata-seal-v1`, the cursor
//! and, for every stream in id order, the stream's head at that cursor: id, version, position
//! and stored hash. A covered event changed (its hash, or every later hash of its stream if the
//! chain was recomputed), deleted, or moved to another position no longer gives the signed
//! digest.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use crate::chain::{self, HashedFields};
use crate::{ChainReport, EventLog, LogCursor};

/// One event as exported: every stored column its hash covers, as the database renders it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedEvent {
    /// Global position.
    pub position: i64,
    /// The writing transaction (`xid8`), for seal coverage.
    pub transaction_id: u64,
    /// `category:id`.
    pub stream_id: String,
    /// 1-based version in the stream.
    pub stream_version: i64,
    /// Event type.
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: i32,
    /// `recorded_at`, µs since the epoch.
    pub recorded_at_micros: i64,
    /// `payload::text`, exactly.
    pub payload: String,
    /// `metadata::text`, exactly.
    pub metadata: String,
    /// The stored chain hash, hex.
    pub hash: String,
}

/// A seal as stored and exported.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Seal {
    /// Sequence number.
    pub id: i64,
    /// The cursor it covers up to (inclusive).
    pub cursor: LogCursor,
    /// Streams whose heads it signs.
    pub streams: i64,
    /// The signed digest, hex.
    pub digest: String,
    /// The signer's Ed25519 public key, hex.
    pub public_key: String,
    /// The Ed25519 signature of the digest, hex.
    pub signature: String,
}

/// One line of an export.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ExportLine {
    /// The first line: what the export covers, `all` or `project:<id>`.
    Header {
        /// The scope.
        scope: String,
    },
    /// An event.
    Event(ExportedEvent),
    /// A seal.
    Seal(Seal),
}

/// What could go wrong.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Writing or reading a file.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A line of an export that is not one.
    #[error("line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: u64,
        /// Why.
        reason: String,
    },
    /// A signing key that is not 32 bytes of hex.
    #[error("the signing key must be 64 hex characters (a 32-byte Ed25519 seed)")]
    BadKey,
}

/// The server's signing key, from its 32-byte seed.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// From 64 hex characters.
    pub fn from_hex(seed: &str) -> Result<Self, AuditError> {
        let bytes = hex::decode(seed.trim()).map_err(|_| AuditError::BadKey)?;
        if bytes.len() != 32 {
            return Err(AuditError::BadKey);
        }
        Ed25519KeyPair::from_seed_unchecked(&bytes)
            .map(Self)
            .map_err(|_| AuditError::BadKey)
    }

    /// A fresh random key's seed, hex (for `strata audit key --generate`).
    pub fn generate_seed_hex() -> String {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).unwrap_or_default();
        hex::encode(seed)
    }

    /// The public key, hex: what third parties verify with.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.0.public_key().as_ref())
    }
}

/// A stream's head at a cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Its version.
    pub version: i64,
    /// Its position.
    pub position: i64,
    /// Its stored hash.
    pub hash: Vec<u8>,
}

/// The digest a seal signs.
pub fn seal_digest(cursor: LogCursor, heads: &BTreeMap<String, Head>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(
        format!(
            "strata-seal-v1\n{}\n{}\n",
            cursor.transaction_id, cursor.position
        )
        .as_bytes(),
    );
    for (stream, head) in heads {
        h.update(
            format!(
                "{stream}\n{}\n{}\n{}\n",
                head.version,
                head.position,
                hex::encode(&head.hash)
            )
            .as_bytes(),
        );
    }
    h.finalize().into()
}

fn covered(transaction_id: u64, position: i64, cursor: LogCursor) -> bool {
    (transaction_id, position) <= (cursor.transaction_id, cursor.position)
}

/// Every stream's head at `cursor`, from the database.
pub async fn heads_at(
    pool: &PgPool,
    cursor: LogCursor,
) -> Result<BTreeMap<String, Head>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (stream_id) stream_id, stream_version, position, hash FROM events \
         WHERE (transaction_id, position) <= ($1::text::xid8, $2) \
         ORDER BY stream_id, stream_version DESC",
    )
    .bind(cursor.transaction_id.to_string())
    .bind(cursor.position)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("stream_id")?,
                Head {
                    version: r.try_get("stream_version")?,
                    position: r.try_get("position")?,
                    hash: r.try_get("hash")?,
                },
            ))
        })
        .collect()
}

/// Seals the log up to its readable horizon with `key`; `None` when nothing was appended
/// since the last seal.
pub async fn seal(pool: &PgPool, key: &SigningKey) -> Result<Option<Seal>, sqlx::Error> {
    let cursor = EventLog::new(pool.clone()).readable_head().await?;
    if let Some(last) = seals(pool).await?.last()
        && last.cursor >= cursor
    {
        return Ok(None);
    }
    let heads = heads_at(pool, cursor).await?;
    let digest = seal_digest(cursor, &heads);
    let signature = key.0.sign(&digest);
    let public_key = key.0.public_key().as_ref().to_vec();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO audit_seals (cursor_transaction_id, cursor_position, streams, digest, public_key, signature) \
         VALUES ($1::text::xid8, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(cursor.transaction_id.to_string())
    .bind(cursor.position)
    .bind(heads.len() as i64)
    .bind(digest.as_slice())
    .bind(&public_key)
    .bind(signature.as_ref())
    .fetch_one(pool)
    .await?;
    Ok(Some(Seal {
        id,
        cursor,
        streams: heads.len() as i64,
        digest: hex::encode(digest),
        public_key: hex::encode(public_key),
        signature: hex::encode(signature.as_ref()),
    }))
}

/// Every seal, oldest first.
pub async fn seals(pool: &PgPool) -> Result<Vec<Seal>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, cursor_transaction_id::text AS xid, cursor_position, streams, digest, public_key, signature \
         FROM audit_seals ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let xid: String = r.try_get("xid")?;
            Ok(Seal {
                id: r.try_get("id")?,
                cursor: LogCursor {
                    transaction_id: xid.parse().map_err(|e| {
                        sqlx::Error::Decode(format!("transaction id {xid:?}: {e}").into())
                    })?,
                    position: r.try_get("cursor_position")?,
                },
                streams: r.try_get("streams")?,
                digest: hex::encode(r.try_get::<Vec<u8>, _>("digest")?),
                public_key: hex::encode(r.try_get::<Vec<u8>, _>("public_key")?),
                signature: hex::encode(r.try_get::<Vec<u8>, _>("signature")?),
            })
        })
        .collect()
}

/// One seal's verdict.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SealCheck {
    /// The seal.
    pub id: i64,
    /// The cursor it covers.
    pub cursor: LogCursor,
    /// Whether it holds.
    pub ok: bool,
    /// Why not.
    pub reason: Option<String>,
}

/// Checks a seal against `heads` (the log's heads at its cursor) and the trusted public key
/// (`None`: the key the seal names; a forger can name their own, so pass one when it matters).
pub fn check_seal(seal: &Seal, heads: &BTreeMap<String, Head>, key: Option<&[u8]>) -> SealCheck {
    let digest = seal_digest(seal.cursor, heads);
    let named = hex::decode(&seal.public_key).unwrap_or_default();
    let signature = hex::decode(&seal.signature).unwrap_or_default();
    let reason = if key.is_some_and(|k| k != named.as_slice()) {
        Some("signed by another key than the one trusted".to_owned())
    } else if hex::encode(digest) != seal.digest {
        Some(format!(
            "the log's {} stream heads at {} no longer give the sealed digest (an event it covers was changed, removed or moved)",
            heads.len(),
            seal.cursor
        ))
    } else if UnparsedPublicKey::new(&ED25519, &named)
        .verify(&digest, &signature)
        .is_err()
    {
        Some("the signature does not verify".to_owned())
    } else {
        None
    };
    SealCheck {
        id: seal.id,
        cursor: seal.cursor,
        ok: reason.is_none(),
        reason,
    }
}

/// Every seal checked against the database (`key`: the trusted public key, if given).
pub async fn verify_seals(
    pool: &PgPool,
    key: Option<&[u8]>,
) -> Result<Vec<SealCheck>, sqlx::Error> {
    let mut out = Vec::new();
    for seal in seals(pool).await? {
        let heads = heads_at(pool, seal.cursor).await?;
        out.push(check_seal(&seal, &heads, key));
    }
    Ok(out)
}

/// How much an export wrote.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportSummary {
    /// Events written.
    pub events: u64,
    /// Seals written.
    pub seals: u64,
}

/// Writes the log (every stream, or those of one project: its own stream and its ingestions')
/// as JSON lines in log order, then every seal. Streams rows; memory stays flat.
pub async fn export(
    pool: &PgPool,
    project_id: Option<&str>,
    out: &mut impl Write,
) -> Result<ExportSummary, AuditError> {
    let mut summary = ExportSummary::default();
    let scope = project_id.map_or_else(|| "all".to_owned(), |p| format!("project:{p}"));
    serde_json::to_writer(&mut *out, &ExportLine::Header { scope })
        .map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    let mut rows = sqlx::query(
        "SELECT position, transaction_id::text AS xid, stream_id, stream_version, event_type, schema_version, \
                (extract(epoch FROM recorded_at) * 1000000)::bigint AS micros, \
                payload::text AS payload_text, metadata::text AS metadata_text, hash \
         FROM events \
         WHERE $1::text IS NULL OR stream_id = 'project:' || $1 \
            OR stream_id IN (SELECT stream_id FROM events WHERE stream_id LIKE 'ingestion:%' \
                             AND stream_version = 1 AND payload->>'projectId' = $1) \
         ORDER BY position",
    )
    .bind(project_id)
    .fetch(pool);
    while let Some(r) = rows.try_next().await? {
        let xid: String = r.try_get("xid")?;
        let line = ExportLine::Event(ExportedEvent {
            position: r.try_get("position")?,
            transaction_id: xid
                .parse()
                .map_err(|e| sqlx::Error::Decode(format!("transaction id {xid:?}: {e}").into()))?,
            stream_id: r.try_get("stream_id")?,
            stream_version: r.try_get("stream_version")?,
            event_type: r.try_get("event_type")?,
            schema_version: r.try_get("schema_version")?,
            recorded_at_micros: r.try_get("micros")?,
            payload: r.try_get("payload_text")?,
            metadata: r.try_get("metadata_text")?,
            hash: hex::encode(r.try_get::<Vec<u8>, _>("hash")?),
        });
        serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        summary.events += 1;
    }
    for seal in seals(pool).await? {
        serde_json::to_writer(&mut *out, &ExportLine::Seal(seal)).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        summary.seals += 1;
    }
    out.flush()?;
    Ok(summary)
}

/// An exported event as a seal sees it: transaction, position, version, stored hash.
type Covered = (u64, i64, i64, Vec<u8>);

/// An offline verification's verdict.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileReport {
    /// Every stream's chain.
    pub chains: ChainReport,
    /// Every seal in the file, checked against the file's events (a project's export holds
    /// only its streams, so its seals cannot be checked: `sealsChecked` is false then).
    pub seals: Vec<SealCheck>,
    /// Whether the seals could be checked (a whole-log export).
    pub seals_checked: bool,
}

impl FileReport {
    /// Whether everything holds.
    pub fn ok(&self) -> bool {
        self.chains.breaks.is_empty() && self.seals.iter().all(|s| s.ok)
    }
}

/// Verifies an export from its lines alone: every chain, and (for a whole-log export) every
/// seal against the heads the file's events give at its cursor, trusting only `key`.
pub fn verify_file(input: impl BufRead, key: &[u8]) -> Result<FileReport, AuditError> {
    let mut whole_log = false;
    let mut verifier = chain::Verifier::default();
    // Every event's head contribution is kept per stream in log order, so a seal's heads are
    // the last covered event of each stream.
    let mut by_stream: BTreeMap<String, Vec<Covered>> = BTreeMap::new();
    let mut seals = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |reason: String| AuditError::Malformed {
            line: n as u64 + 1,
            reason,
        };
        match serde_json::from_str::<ExportLine>(&line).map_err(|e| malformed(e.to_string()))? {
            ExportLine::Event(e) => {
                let hash = hex::decode(&e.hash).map_err(|e| malformed(e.to_string()))?;
                verifier.push(&chain::StoredEvent {
                    fields: HashedFields {
                        stream_id: &e.stream_id,
                        stream_version: e.stream_version,
                        event_type: &e.event_type,
                        schema_version: e.schema_version,
                        recorded_at_micros: e.recorded_at_micros,
                        payload_text: &e.payload,
                        metadata_text: &e.metadata,
                    },
                    position: e.position,
                    stored_hash: &hash,
                });
                by_stream.entry(e.stream_id).or_default().push((
                    e.transaction_id,
                    e.position,
                    e.stream_version,
                    hash,
                ));
            }
            ExportLine::Seal(s) => seals.push(s),
            ExportLine::Header { scope } => whole_log = scope == "all",
        }
    }
    let checks = if whole_log {
        seals
            .iter()
            .map(|seal| {
                let heads = by_stream
                    .iter()
                    .filter_map(|(stream, events)| {
                        events
                            .iter()
                            .filter(|(xid, pos, _, _)| covered(*xid, *pos, seal.cursor))
                            .max_by_key(|(_, _, version, _)| *version)
                            .map(|(_, pos, version, hash)| {
                                (
                                    stream.clone(),
                                    Head {
                                        version: *version,
                                        position: *pos,
                                        hash: hash.clone(),
                                    },
                                )
                            })
                    })
                    .collect();
                check_seal(seal, &heads, Some(key))
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(FileReport {
        chains: verifier.finish(),
        seals: checks,
        seals_checked: whole_log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads() -> BTreeMap<String, Head> {
        BTreeMap::from([(
            "project:0123456789".to_owned(),
            Head {
                version: 3,
                position: 17,
                hash: vec![7; 32],
            },
        )])
    }

    #[test]
    fn a_seal_holds_for_its_heads_and_key_only() {
        let key = SigningKey::from_hex(&"11".repeat(32)).expect("key");
        let cursor = LogCursor {
            transaction_id: 900,
            position: 17,
        };
        let digest = seal_digest(cursor, &heads());
        let seal = Seal {
            id: 1,
            cursor,
            streams: 1,
            digest: hex::encode(digest),
            public_key: key.public_key_hex(),
            signature: hex::encode(key.0.sign(&digest).as_ref()),
        };
        let trusted = hex::decode(key.public_key_hex()).expect("hex");
        assert!(check_seal(&seal, &heads(), Some(&trusted)).ok);
        let mut moved = heads();
        if let Some(h) = moved.get_mut("project:0123456789") {
            h.position = 18;
        }
        assert!(!check_seal(&seal, &moved, Some(&trusted)).ok);
        let other = SigningKey::from_hex(&"22".repeat(32)).expect("key");
        let other_key = hex::decode(other.public_key_hex()).expect("hex");
        assert!(!check_seal(&seal, &heads(), Some(&other_key)).ok);
        // A forger who signs their own digest with their own key is caught by the trusted key.
        let forged = Seal {
            public_key: other.public_key_hex(),
            signature: hex::encode(other.0.sign(&digest).as_ref()),
            ..seal.clone()
        };
        assert!(!check_seal(&forged, &heads(), Some(&trusted)).ok);
        assert!(SigningKey::from_hex("abc").is_err());
    }
}

/// A stored as-of snapshot (`audit_snapshots`): a project's audit view folded up to one event.
#[derive(Debug)]
pub struct Snapshot {
    /// The stream version of the last event folded.
    pub stream_version: i64,
    /// Its log position.
    pub position: i64,
    /// The view, as its fold serialised it.
    pub view: serde_json::Value,
}

/// The latest snapshot of `project_id` by fold `fold_version` at or before `max_position` and
/// recorded at or before `max_time` (when given).
pub async fn nearest_snapshot(
    pool: &PgPool,
    project_id: &str,
    fold_version: i32,
    max_position: i64,
    max_time: Option<OffsetDateTime>,
) -> Result<Option<Snapshot>, sqlx::Error> {
    let row: Option<(i64, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT stream_version, position, view FROM audit_snapshots \
         WHERE project_id = $1 AND fold_version = $2 AND position <= $3 \
           AND ($4::timestamptz IS NULL OR recorded_at <= $4) \
         ORDER BY stream_version DESC LIMIT 1",
    )
    .bind(project_id)
    .bind(fold_version)
    .bind(max_position)
    .bind(max_time)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(stream_version, position, view)| Snapshot {
        stream_version,
        position,
        view,
    }))
}

/// Stores a snapshot (a second one of the same event and fold is the same: ignored).
pub async fn store_snapshot(
    pool: &PgPool,
    project_id: &str,
    fold_version: i32,
    snapshot: &Snapshot,
    recorded_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_snapshots \
           (project_id, fold_version, stream_version, position, recorded_at, view) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(project_id)
    .bind(fold_version)
    .bind(snapshot.stream_version)
    .bind(snapshot.position)
    .bind(recorded_at)
    .bind(&snapshot.view)
    .execute(pool)
    .await?;
    Ok(())
}

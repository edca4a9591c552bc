//! Appending to and reading from the event log.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use domain::{EventMetadata, NewEvent, StreamId};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::chain::{self, HashedFields};

/// A point in the log's read order: `(transaction id, position)`.
///
/// Positions alone are not a safe cursor, because a transaction can commit a smaller position
/// after a larger one became visible. Ordering by the writing transaction's id first, and
/// reading only below the visibility horizon, makes the order stable and gap-free for readers.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogCursor {
    /// The 64-bit transaction id (`xid8`) of the writing transaction.
    pub transaction_id: u64,
    /// The event's global position.
    pub position: i64,
}

impl LogCursor {
    /// Before the first event.
    pub const START: LogCursor = LogCursor {
        transaction_id: 0,
        position: 0,
    };
}

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transaction_id, self.position)
    }
}

impl FromStr for LogCursor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (x, p) = s
            .split_once(':')
            .ok_or("a cursor looks like `xid:position`")?;
        Ok(Self {
            transaction_id: x.parse().map_err(|_| "bad transaction id in cursor")?,
            position: p.parse().map_err(|_| "bad position in cursor")?,
        })
    }
}

/// What the stream must look like for an append to go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check; concurrent appends are serialised by retrying.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be exactly at this version (1-based count of its events).
    Exact(u64),
}

impl ExpectedVersion {
    fn as_sql(self) -> i64 {
        match self {
            Self::Any => -1,
            Self::NoStream => 0,
            // No stream gets that long: the append conflicts.
            Self::Exact(v) => i64::try_from(v).unwrap_or(i64::MAX),
        }
    }
}

/// One append: events for one stream, with their context.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    /// The target stream.
    pub stream: StreamId,
    /// Optimistic concurrency check.
    pub expected: ExpectedVersion,
    /// The events, in order; at least one.
    pub events: Vec<NewEvent>,
    /// Recorded with every event.
    pub metadata: EventMetadata,
    /// Makes the append idempotent: a second append with the same id stores nothing and
    /// returns the first one's outcome.
    pub command_id: Option<Uuid>,
}

/// The outcome of an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The stream's version after the append (that of its last event).
    pub last_version: u64,
    /// The version of the first appended event.
    pub first_version: u64,
    /// Global position of the first appended event.
    pub first_position: i64,
    /// Where the last appended event sits in read order; wait for projections to pass it
    /// for read-your-writes.
    pub last: LogCursor,
    /// True when the command id had been seen and nothing new was stored.
    pub duplicate: bool,
}

/// Explicit limits on appends; every one configurable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendLimits {
    /// Most events in one append.
    pub max_events: usize,
    /// Largest serialised payload of one event, in bytes.
    pub max_payload_bytes: usize,
    /// How often an `ExpectedVersion::Any` append retries after losing a race.
    pub max_any_retries: u32,
    /// Streams whose head (version and hash, as committed by this log's own appends) the log
    /// keeps, so the next one-event append to such a stream skips the head lookup and the
    /// database's hashing; `0` looks every head up.
    pub head_cache_streams: usize,
}

impl Default for AppendLimits {
    fn default() -> Self {
        Self {
            max_events: 1000,
            max_payload_bytes: 1024 * 1024,
            max_any_retries: 10,
            head_cache_streams: 10_000,
        }
    }
}

/// Why an append stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The stream was not at the expected version. Re-decide on fresh state and try again.
    #[error(
        "concurrency conflict on {stream}: expected {expected:?}, stream is at version {actual}"
    )]
    Conflict {
        /// Stream.
        stream: StreamId,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The version found.
        actual: u64,
    },
    /// An append with no events.
    #[error("an append needs at least one event")]
    Empty,
    /// More events than [`AppendLimits::max_events`].
    #[error("{count} events in one append exceed the limit of {limit}")]
    TooManyEvents {
        /// Events sent.
        count: usize,
        /// Limit.
        limit: usize,
    },
    /// A payload larger than [`AppendLimits::max_payload_bytes`].
    #[error("payload of {event_type} is {size} bytes, over the limit of {limit}")]
    PayloadTooLarge {
        /// Offending event type.
        event_type: String,
        /// Its size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// The payload could not be serialised or contained something Postgres refuses (e.g. `\u0000`).
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    /// The database failed.
    #[error("event log database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// One event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    /// Its place in read order.
    pub cursor: LogCursor,
    /// Stream it belongs to.
    pub stream_id: String,
    /// 1-based version within the stream.
    pub stream_version: i64,
    /// Event type name.
    pub event_type: String,
    /// Payload schema version as stored (upcast with `domain::Upcasters` before folding).
    pub schema_version: i32,
    /// Payload.
    pub payload: serde_json::Value,
    /// Context.
    pub metadata: EventMetadata,
    /// The idempotency key of the command that appended it.
    pub command_id: Option<Uuid>,
    /// When it was appended (transaction time).
    pub recorded_at: OffsetDateTime,
    /// Its hash in the stream's chain.
    pub hash: Vec<u8>,
}

/// The state of the read horizon.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HorizonStats {
    /// Events stored (committed or not yet) that readers cannot see yet because an older
    /// transaction is still open.
    pub held_back_events: i64,
    /// The largest position assigned so far.
    pub max_position: i64,
    /// Age of the oldest open transaction that holds a transaction id (as far as the role may
    /// see `pg_stat_activity`): the stall it causes lasts at least this long.
    pub oldest_open_transaction_seconds: f64,
}

/// A break found while verifying hash chains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainBreak {
    /// Stream.
    pub stream_id: String,
    /// First version whose stored hash does not match, whose version number skips, or that
    /// sits before its predecessor in the log.
    pub stream_version: i64,
    /// Its global position.
    pub position: i64,
    /// What was wrong.
    pub reason: String,
}

/// The result of verifying hash chains.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Streams checked.
    pub streams: u64,
    /// Events checked.
    pub events: u64,
    /// Every break found (at most one per stream: the first).
    pub breaks: Vec<ChainBreak>,
}

/// The columns `decode_event` reads, as a literal so queries stay static strings.
macro_rules! select_event {
    () => {
        "SELECT position, transaction_id::text AS xid, stream_id, stream_version, \
         event_type, schema_version, payload, metadata, command_id, recorded_at, hash FROM events "
    };
}

fn decode_event(row: &PgRow) -> Result<RecordedEvent, sqlx::Error> {
    let xid: String = row.try_get("xid")?;
    let metadata: serde_json::Value = row.try_get("metadata")?;
    Ok(RecordedEvent {
        cursor: LogCursor {
            transaction_id: xid
                .parse()
                .map_err(|e| sqlx::Error::Decode(format!("transaction id {xid:?}: {e}").into()))?,
            position: row.try_get("position")?,
        },
        stream_id: row.try_get("stream_id")?,
        stream_version: row.try_get("stream_version")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        payload: row.try_get("payload")?,
        metadata: serde_json::from_value(metadata)
            .map_err(|e| sqlx::Error::Decode(format!("event metadata: {e}").into()))?,
        command_id: row.try_get("command_id")?,
        recorded_at: row.try_get("recorded_at")?,
        hash: row.try_get("hash")?,
    })
}

/// The shortest time between two wake-ups from one `EventLog`: bounds NOTIFY traffic under
/// load at the cost of at most this much extra latency for subscribers.
pub const NOTIFY_SPACING: std::time::Duration = std::time::Duration::from_millis(2);

/// Sends `strata_events` wake-ups for committed appends, coalesced, from its own connection.
///
/// NOTIFY inside an appending transaction would take Postgres' cluster-wide notify lock at
/// every commit and serialise all appenders. Here appenders only set a flag; one task per
/// `EventLog` turns any number of pending appends into one NOTIFY. Subscribers treat it as a
/// hint and poll as well, so a lost wake-up costs latency, never correctness.
#[derive(Clone, Debug, Default)]
struct Notifier {
    wake: Arc<tokio::sync::Notify>,
    started: Arc<OnceLock<()>>,
}

impl Notifier {
    fn announce(&self, pool: &PgPool, stream: Option<&str>) {
        match stream {
            Some(stream) => crate::wakeups::appended_locally(stream),
            None => crate::wakeups::wake_local(crate::wakeups::EVENTS_CHANNEL),
        }
        self.started.get_or_init(|| {
            let wake = self.wake.clone();
            let pool = pool.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    loop {
                        wake.notified().await;
                        // Marked as this process's: its listeners were woken locally.
                        if let Err(e) = sqlx::query(
                            "SELECT set_config('synchronous_commit', 'off', true), \
                                        pg_notify('strata_events', current_schema() || ' ' || $1)",
                        )
                        .bind(crate::wakeups::origin())
                        .execute(&pool)
                        .await
                        {
                            tracing::debug!(error = %e, "event wake-up not sent");
                        }
                        // (A hint carries no data: its commit need not wait for the disk.)
                        // At most one wake-up per interval: a busy writer must not pay a
                        // NOTIFY transaction per append.
                        tokio::time::sleep(NOTIFY_SPACING).await;
                    }
                });
            }
        });
        self.wake.notify_one();
    }
}

/// One event appended, as `append_events` (the first migration) appends it: the head looked
/// up, the expected version checked, the event chained to the head's hash and inserted, the
/// command recorded. One row always: `out_position` null when the expected version did not
/// match (`head` says what was found). A race for the same version still ends in
/// `events_stream_version_unique`, and a repeated command id in `processed_commands_pkey`.
/// `schema::chain` recomputes the hash; the event-log tests check both agree.
const APPEND_ONE_SQL: &str = "WITH head AS ( \
       SELECT stream_version, hash FROM events WHERE stream_id = $1 \
       ORDER BY stream_version DESC LIMIT 1), \
     h AS ( \
       SELECT coalesce((SELECT stream_version FROM head), 0) AS v, \
              coalesce((SELECT hash FROM head), decode(repeat('00', 32), 'hex')) AS prev), \
     ins AS ( \
       INSERT INTO events (stream_id, stream_version, event_type, schema_version, payload, \
                           metadata, command_id, recorded_at, hash) \
       SELECT $1, h.v + 1, $4, $5, $6, $7, $3, now(), sha256(h.prev || convert_to( \
                $1 || E'\\n' || (h.v + 1)::text || E'\\n' || $4 || E'\\n' || $5::text || E'\\n' \
                || ((extract(epoch FROM now()) * 1000000)::bigint)::text || E'\\n' \
                || $6::jsonb::text || E'\\n' || $7::jsonb::text, 'UTF8')) \
       FROM h WHERE $2 < 0 OR $2 = h.v \
       RETURNING position, stream_version, transaction_id, hash), \
     cmd AS ( \
       INSERT INTO processed_commands (command_id, stream_id, first_position, last_position, \
                                       first_version, last_version, transaction_id) \
       SELECT $3, $1, position, position, stream_version, stream_version, transaction_id \
       FROM ins WHERE $3 IS NOT NULL) \
     SELECT ins.position AS out_position, ins.stream_version AS out_stream_version, \
            ins.transaction_id::text AS out_transaction_id, ins.hash AS out_hash, h.v AS head \
     FROM h LEFT JOIN ins ON true";

/// One event appended onto a head the appender already knows (the version and hash its own
/// last append to the stream committed, or a new stream's genesis): the event arrives with its
/// version, `recorded_at` and hash, computed as `schema::chain` computes them, and the
/// database stores it after one check, that the event it chains onto is stored with that
/// hash (`$10`). If the head moved on meanwhile (an append elsewhere), the version is taken:
/// `events_stream_version_unique` refuses the row and the append is a conflict, exactly as
/// with a looked-up head. If the head is not there at all (a database restored to an earlier
/// point under a running process), no row is stored and the append looks the head up
/// instead: a known head can be behind, never ahead into a gap.
const APPEND_CHAINED_SQL: &str = "WITH ins AS ( \
       INSERT INTO events (stream_id, stream_version, event_type, schema_version, payload, \
                           metadata, command_id, recorded_at, hash) \
       SELECT $1, $2, $4, $5, $6, $7, $3, $8, $9 \
       WHERE $2 = 1 OR EXISTS (SELECT FROM events \
                               WHERE stream_id = $1 AND stream_version = $2 - 1 AND hash = $10) \
       RETURNING position, stream_version, transaction_id), \
     cmd AS ( \
       INSERT INTO processed_commands (command_id, stream_id, first_position, last_position, \
                                       first_version, last_version, transaction_id) \
       SELECT $3, $1, position, position, stream_version, stream_version, transaction_id \
       FROM ins WHERE $3 IS NOT NULL) \
     SELECT position AS out_position, transaction_id::text AS out_transaction_id FROM ins";

/// The outcome of a one-event append at `version`, from its statement's `out_position` and
/// `out_transaction_id`.
fn one_appended(row: &PgRow, version: u64) -> Result<Appended, AppendError> {
    let position: i64 = row.try_get("out_position")?;
    let xid: String = row.try_get("out_transaction_id")?;
    Ok(Appended {
        first_version: version,
        last_version: version,
        first_position: position,
        last: LogCursor {
            transaction_id: parse_xid(&xid)?,
            position,
        },
        duplicate: false,
    })
}

/// The heads (version, hash) of the streams this process appended to, as its appends
/// committed them: hints for [`APPEND_CHAINED_SQL`], never authoritative. Only
/// [`EventLog::append`] records, once its own transaction has committed; an append inside a
/// caller's transaction (which may still roll back) neither records nor uses them. Bounded:
/// when full it starts over (a forgotten head costs one lookup).
#[derive(Debug, Default)]
struct Heads {
    known: std::sync::Mutex<std::collections::HashMap<String, (u64, [u8; 32])>>,
    capacity: usize,
    /// One-event appends stored onto a known head, and those that looked theirs up.
    onto_known: std::sync::atomic::AtomicU64,
    looked_up: std::sync::atomic::AtomicU64,
}

/// How this log's one-event appends found their heads (for `/metrics`): a low share onto a
/// known head means the streams are written from elsewhere too (other replicas), or the
/// head cache (`AppendLimits::head_cache_streams`) is too small for the streams written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadCounts {
    /// Stored onto a head this log knew: no lookup, hashed outside the database.
    pub onto_known: u64,
    /// Looked their head up (and were hashed by the database).
    pub looked_up: u64,
}

impl Heads {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            ..Self::default()
        }
    }

    fn count(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u64, [u8; 32])>> {
        // Every step under the lock leaves the map whole.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The head to append onto when `expected` holds, without asking the database.
    fn onto(&self, stream: &str, expected: ExpectedVersion) -> Option<(u64, [u8; 32])> {
        if self.capacity == 0 {
            return None;
        }
        match expected {
            ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => Some((0, chain::GENESIS)),
            ExpectedVersion::Exact(version) => self
                .lock()
                .get(stream)
                .copied()
                .filter(|(head, _)| *head == version),
            ExpectedVersion::Any => None,
        }
    }

    fn record(&self, stream: &str, version: u64, hash: [u8; 32]) {
        if self.capacity == 0 {
            return;
        }
        let mut known = self.lock();
        if known.len() >= self.capacity && !known.contains_key(stream) {
            known.clear();
        }
        known.insert(stream.to_owned(), (version, hash));
    }

    fn forget(&self, stream: &str) {
        self.lock().remove(stream);
    }
}

/// The event log of one database (or one schema, through the pool's `search_path`).
#[derive(Clone, Debug)]
pub struct EventLog {
    pool: PgPool,
    limits: AppendLimits,
    notifier: Notifier,
    heads: Arc<Heads>,
}

impl EventLog {
    /// Uses `pool` with default limits.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            limits: AppendLimits::default(),
            notifier: Notifier::default(),
            heads: Arc::new(Heads::new(AppendLimits::default().head_cache_streams)),
        }
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: AppendLimits) -> Self {
        self.limits = limits;
        self.heads = Arc::new(Heads::new(limits.head_cache_streams));
        self
    }

    /// The pool this log uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How this log's one-event appends found their heads, since it was made.
    pub fn head_counts(&self) -> HeadCounts {
        use std::sync::atomic::Ordering::Relaxed;
        HeadCounts {
            onto_known: self.heads.onto_known.load(Relaxed),
            looked_up: self.heads.looked_up.load(Relaxed),
        }
    }

    /// Appends in its own transaction, retrying lost races when `expected` is `Any`.
    pub async fn append(&self, request: &AppendRequest) -> Result<Appended, AppendError> {
        let mut attempts = 0;
        let stream = request.stream.as_str();
        loop {
            let mut conn = self.pool.acquire().await?;
            let onto = self.heads.onto(stream, request.expected);
            match self.append_with(&mut conn, request, onto).await {
                Ok((appended, head)) => {
                    // Committed (this connection holds no transaction): a head that holds.
                    match head {
                        Some(hash) if !appended.duplicate => {
                            self.heads.record(stream, appended.last_version, hash)
                        }
                        _ => self.heads.forget(stream),
                    }
                    if !appended.duplicate {
                        self.notifier.announce(&self.pool, Some(stream));
                    }
                    return Ok(appended);
                }
                Err(e) => {
                    self.heads.forget(stream);
                    match e {
                        AppendError::Conflict { .. }
                            if request.expected == ExpectedVersion::Any
                                && attempts < self.limits.max_any_retries =>
                        {
                            attempts += 1;
                        }
                        other => return Err(other),
                    }
                }
            }
        }
    }

    /// Wakes subscribers. [`EventLog::append`] does it itself; callers of
    /// [`EventLog::append_on`] call it after their transaction commits.
    pub fn announce(&self) {
        self.notifier.announce(&self.pool, None);
    }

    /// Appends on `conn`, inside whatever transaction the caller holds open. The events
    /// become visible to readers only when that transaction commits; call
    /// [`EventLog::announce`] then.
    pub async fn append_on(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
    ) -> Result<Appended, AppendError> {
        let (appended, _) = self.append_with(conn, request, None).await?;
        Ok(appended)
    }

    /// Appends on `conn` (onto the head `onto` when the caller knows it), returning the
    /// appended head's hash when the append learnt it.
    async fn append_with(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
        onto: Option<(u64, [u8; 32])>,
    ) -> Result<(Appended, Option<[u8; 32]>), AppendError> {
        self.check_limits(request)?;
        let types: Vec<&str> = request
            .events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect();
        // Schema versions are small constants in code.
        let versions: Vec<i32> = request
            .events
            .iter()
            .map(|e| i32::try_from(e.schema_version).unwrap_or(i32::MAX))
            .collect();
        // Personal fields are sealed before they reach the log; most appends carry none and
        // are not copied.
        let sealed;
        let events = if crate::personal::holds_personal(&request.events) {
            let mut copy = request.events.clone();
            crate::personal::seal(conn, &mut copy).await?;
            sealed = copy;
            &sealed
        } else {
            &request.events
        };
        let metadata = serde_json::to_value(&request.metadata)
            .map_err(|e| AppendError::InvalidPayload(e.to_string()))?;
        if let [event] = events.as_slice() {
            return self
                .append_one_on(conn, request, event, versions[0], &metadata, onto)
                .await;
        }
        let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
        let result = sqlx::query(
            "SELECT out_position, out_stream_version, out_transaction_id \
             FROM append_events($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(request.stream.as_str())
        .bind(request.expected.as_sql())
        .bind(request.command_id)
        .bind(&types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .fetch_all(&mut *conn)
        .await;
        let rows = match result {
            Ok(rows) => rows,
            Err(err) => {
                let explained = self.explain_failure(conn, request, err).await?;
                return Ok((explained, None));
            }
        };
        let first = rows.first().ok_or(AppendError::Empty)?;
        let last = rows.last().ok_or(AppendError::Empty)?;
        let xid: String = last.try_get("out_transaction_id")?;
        let appended = Appended {
            first_version: to_u64(first.try_get("out_stream_version")?),
            last_version: to_u64(last.try_get("out_stream_version")?),
            first_position: first.try_get("out_position")?,
            last: LogCursor {
                transaction_id: parse_xid(&xid)?,
                position: last.try_get("out_position")?,
            },
            duplicate: false,
        };
        Ok((appended, None))
    }

    /// A one-event append (most commands') in one plain statement, [`APPEND_ONE_SQL`]: the
    /// same rows, hash and outcomes as `append_events`, without a PL/pgSQL call. A version
    /// conflict found before the insert leaves the caller's transaction usable. Onto a known
    /// head, and when `schema::chain` can render the payload as the database will, the event
    /// is hashed here and only stored there ([`APPEND_CHAINED_SQL`]).
    async fn append_one_on(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
        event: &NewEvent,
        schema_version: i32,
        metadata: &serde_json::Value,
        onto: Option<(u64, [u8; 32])>,
    ) -> Result<(Appended, Option<[u8; 32]>), AppendError> {
        if let Some((head, previous)) = onto
            && let Some(payload_text) = chain::jsonb_text(&event.payload)
            && let Some(metadata_text) = chain::jsonb_text(metadata)
        {
            let version = head + 1;
            let now = OffsetDateTime::now_utc();
            // Stored at microseconds, as `timestamptz` keeps it; hashed as stored.
            let micros = now.unix_timestamp_nanos() / 1000;
            let recorded_at = OffsetDateTime::from_unix_timestamp_nanos(micros * 1000)
                .map_err(|e| AppendError::InvalidPayload(e.to_string()))?;
            let hash = chain::event_hash(
                &previous,
                &HashedFields {
                    stream_id: request.stream.as_str(),
                    stream_version: i64::try_from(version).unwrap_or(i64::MAX),
                    event_type: &event.event_type,
                    schema_version,
                    recorded_at_micros: i64::try_from(micros).unwrap_or(i64::MAX),
                    payload_text: &payload_text,
                    metadata_text: &metadata_text,
                },
            );
            let result = sqlx::query(APPEND_CHAINED_SQL)
                .bind(request.stream.as_str())
                .bind(i64::try_from(version).unwrap_or(i64::MAX))
                .bind(request.command_id)
                .bind(event.event_type.as_str())
                .bind(schema_version)
                .bind(&event.payload)
                .bind(metadata)
                .bind(recorded_at)
                .bind(&hash[..])
                .bind(&previous[..])
                .fetch_optional(&mut *conn)
                .await;
            let row = match result {
                Ok(Some(row)) => Some(row),
                // Not the head it was taken for: the head is looked up below.
                Ok(None) => None,
                Err(err) => {
                    let explained = self.explain_failure(conn, request, err).await?;
                    return Ok((explained, None));
                }
            };
            if let Some(row) = row {
                Heads::count(&self.heads.onto_known);
                return Ok((one_appended(&row, version)?, Some(hash)));
            }
        }
        Heads::count(&self.heads.looked_up);
        let result = sqlx::query(APPEND_ONE_SQL)
            .bind(request.stream.as_str())
            .bind(request.expected.as_sql())
            .bind(request.command_id)
            .bind(event.event_type.as_str())
            .bind(schema_version)
            .bind(&event.payload)
            .bind(metadata)
            .fetch_one(&mut *conn)
            .await;
        let row = match result {
            Ok(row) => row,
            Err(err) => {
                let explained = self.explain_failure(conn, request, err).await?;
                return Ok((explained, None));
            }
        };
        if row.try_get::<Option<i64>, _>("out_position")?.is_none() {
            if let Some(command_id) = request.command_id
                && let Some(done) = self.processed(command_id).await?
            {
                return Ok((done, None));
            }
            return Err(AppendError::Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual: to_u64(row.try_get("head")?),
            });
        }
        let appended = one_appended(&row, to_u64(row.try_get("out_stream_version")?))?;
        let hash: Option<Vec<u8>> = row.try_get("out_hash")?;
        Ok((appended, hash.and_then(|h| <[u8; 32]>::try_from(h).ok())))
    }

    fn check_limits(&self, request: &AppendRequest) -> Result<(), AppendError> {
        if request.events.is_empty() {
            return Err(AppendError::Empty);
        }
        if request.events.len() > self.limits.max_events {
            return Err(AppendError::TooManyEvents {
                count: request.events.len(),
                limit: self.limits.max_events,
            });
        }
        for event in &request.events {
            let size = serde_json::to_vec(&event.payload)
                .map_err(|e| AppendError::InvalidPayload(e.to_string()))?
                .len();
            if size > self.limits.max_payload_bytes {
                return Err(AppendError::PayloadTooLarge {
                    event_type: event.event_type.clone(),
                    size,
                    limit: self.limits.max_payload_bytes,
                });
            }
        }
        Ok(())
    }

    /// Turns a failed append into a typed error, or into the stored outcome of a command
    /// that was already processed (possibly by a concurrent duplicate that won the race).
    async fn explain_failure(
        &self,
        conn: &mut PgConnection,
        request: &AppendRequest,
        err: sqlx::Error,
    ) -> Result<Appended, AppendError> {
        let Some(db) = err.as_database_error() else {
            return Err(err.into());
        };
        let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
        let constraint = db.constraint().map(str::to_owned);
        let is_conflict = code == "SE409"
            || (code == "23505" && constraint.as_deref() == Some("events_stream_version_unique"));
        let is_duplicate_command =
            code == "23505" && constraint.as_deref() == Some("processed_commands_pkey");
        if code == "22P05" || code == "22025" {
            return Err(AppendError::InvalidPayload(db.message().to_owned()));
        }
        if !(is_conflict || is_duplicate_command) {
            return Err(err.into());
        }
        // Inside a caller's transaction the connection is now aborted: report without asking.
        let in_transaction = sqlx::query_scalar::<_, bool>("SELECT true")
            .fetch_one(&mut *conn)
            .await
            .is_err();
        if !in_transaction
            && let Some(command_id) = request.command_id
            && let Some(done) = self.processed(command_id).await?
        {
            return Ok(done);
        }
        if is_duplicate_command {
            return Err(err.into());
        }
        let actual = if in_transaction {
            0
        } else {
            self.stream_version(&request.stream).await?
        };
        Err(AppendError::Conflict {
            stream: request.stream.clone(),
            expected: request.expected,
            actual,
        })
    }

    /// The stored outcome of a processed command, if it was processed.
    pub async fn processed(&self, command_id: Uuid) -> Result<Option<Appended>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT first_position, last_position, first_version, last_version, \
             transaction_id::text AS xid FROM processed_commands WHERE command_id = $1",
        )
        .bind(command_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let xid: String = row.try_get("xid")?;
            Ok(Appended {
                first_version: to_u64(row.try_get("first_version")?),
                last_version: to_u64(row.try_get("last_version")?),
                first_position: row.try_get("first_position")?,
                last: LogCursor {
                    transaction_id: parse_xid(&xid)?,
                    position: row.try_get("last_position")?,
                },
                duplicate: true,
            })
        })
        .transpose()
    }

    /// A processed command with the events it appended, if it was processed: what a repeat
    /// of the command is answered with.
    pub async fn processed_command(
        &self,
        command_id: Uuid,
    ) -> Result<Option<ProcessedCommand>, sqlx::Error> {
        let Some(appended) = self.processed(command_id).await? else {
            return Ok(None);
        };
        let sql = concat!(
            select_event!(),
            "WHERE stream_id = (SELECT stream_id FROM processed_commands WHERE command_id = $1) \
             AND position BETWEEN $2 AND $3 ORDER BY stream_version"
        );
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(sql)
            .bind(command_id)
            .bind(appended.first_position)
            .bind(appended.last.position)
            .fetch_all(&mut *conn)
            .await?;
        let events = decode_events(&mut conn, &rows).await?;
        let stream = events
            .first()
            .map(|e| e.stream_id.clone())
            .ok_or_else(|| sqlx::Error::RowNotFound)?;
        Ok(Some(ProcessedCommand {
            stream,
            appended,
            events,
        }))
    }

    /// The number of events in `stream` (0 when it does not exist).
    pub async fn stream_version(&self, stream: &StreamId) -> Result<u64, sqlx::Error> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT max(stream_version) FROM events WHERE stream_id = $1")
                .bind(stream.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(to_u64(v.unwrap_or(0))) // no events: version 0
    }

    /// Up to `limit` events after `after`, in read order, never passing an event whose
    /// transaction may still commit: a reader that keeps calling this with the last cursor
    /// it saw receives every committed event exactly once, in a stable order.
    pub async fn read_all(
        &self,
        after: LogCursor,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        read_all_with(&mut conn, after, limit).await
    }

    /// The events of one stream from version `from_version` (1-based, inclusive) on.
    pub async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: i64,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let sql = concat!(
            select_event!(),
            "WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version"
        );
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(sql)
            .bind(stream.as_str())
            .bind(from_version)
            .fetch_all(&mut *conn)
            .await?;
        decode_events(&mut conn, &rows).await
    }

    /// Events of `stream` after version `after_version`, at or before global position
    /// `max_position` and recorded at or before `max_time` (when given), in version order: the
    /// history up to a moment (from the start with `after_version` 0).
    pub async fn read_stream_until(
        &self,
        stream: &StreamId,
        after_version: i64,
        max_position: i64,
        max_time: Option<OffsetDateTime>,
    ) -> Result<Vec<RecordedEvent>, sqlx::Error> {
        let sql = concat!(
            select_event!(),
            "WHERE stream_id = $1 AND stream_version > $4 AND position <= $2 \
             AND ($3::timestamptz IS NULL OR recorded_at <= $3) \
             ORDER BY stream_version"
        );
        let mut conn = self.pool.acquire().await?;
        let rows = sqlx::query(sql)
            .bind(stream.as_str())
            .bind(max_position)
            .bind(max_time)
            .bind(after_version)
            .fetch_all(&mut *conn)
            .await?;
        decode_events(&mut conn, &rows).await
    }

    /// The cursor of the newest event readers can see now.
    pub async fn readable_head(&self) -> Result<LogCursor, sqlx::Error> {
        let row = sqlx::query(
            "SELECT transaction_id::text AS xid, position FROM events \
             WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(LogCursor::START),
            Some(row) => {
                let xid: String = row.try_get("xid")?;
                Ok(LogCursor {
                    transaction_id: parse_xid(&xid)?,
                    position: row.try_get("position")?,
                })
            }
        }
    }

    /// How far the visibility horizon holds readers back: what `/metrics` exports so an
    /// operator sees a long transaction stalling every subscriber.
    pub async fn horizon_stats(&self) -> Result<HorizonStats, sqlx::Error> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM events \
                     WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())) AS held_back, \
                    (SELECT coalesce(max(position), 0) FROM events) AS max_position, \
                    (SELECT coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8 \
                     FROM pg_stat_activity WHERE backend_xid IS NOT NULL) AS oldest_seconds",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(HorizonStats {
            held_back_events: row.try_get("held_back")?,
            max_position: row.try_get("max_position")?,
            oldest_open_transaction_seconds: row.try_get("oldest_seconds")?,
        })
    }

    /// Recomputes hash chains, of one stream or of the whole log, streaming rows so memory
    /// stays flat in the log's size.
    pub async fn verify_chains(
        &self,
        stream: Option<&StreamId>,
    ) -> Result<ChainReport, sqlx::Error> {
        let sql = "SELECT stream_id, stream_version, position, event_type, schema_version, \
             (extract(epoch FROM recorded_at) * 1000000)::bigint AS micros, \
             payload::text AS payload_text, metadata::text AS metadata_text, hash \
             FROM events WHERE ($1::text IS NULL OR stream_id = $1) \
             ORDER BY stream_id, stream_version";
        let mut rows = sqlx::query(sql)
            .bind(stream.map(StreamId::as_str))
            .fetch(&self.pool);
        let mut verifier = chain::Verifier::default();
        while let Some(row) = rows.try_next().await? {
            let stream_id: String = row.try_get("stream_id")?;
            let event_type: String = row.try_get("event_type")?;
            let payload_text: String = row.try_get("payload_text")?;
            let metadata_text: String = row.try_get("metadata_text")?;
            let stored: Vec<u8> = row.try_get("hash")?;
            verifier.push(&chain::StoredEvent {
                fields: HashedFields {
                    stream_id: &stream_id,
                    stream_version: row.try_get("stream_version")?,
                    event_type: &event_type,
                    schema_version: row.try_get("schema_version")?,
                    recorded_at_micros: row.try_get("micros")?,
                    payload_text: &payload_text,
                    metadata_text: &metadata_text,
                },
                position: row.try_get("position")?,
                stored_hash: &stored,
            });
        }
        Ok(verifier.finish())
    }
}

/// [`EventLog::read_all`] on any executor, e.g. inside a projector's transaction.
pub async fn read_all_with(
    conn: &mut PgConnection,
    after: LogCursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let sql = concat!(
        select_event!(),
        "WHERE (transaction_id, position) > ($1::text::xid8, $2) \
         AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY transaction_id, position LIMIT $3"
    );
    let rows = sqlx::query(sql)
        .bind(after.transaction_id.to_string())
        .bind(after.position)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    decode_events(conn, &rows).await
}

/// A command the log has recorded ([`EventLog::processed_command`]).
#[derive(Clone, Debug)]
pub struct ProcessedCommand {
    /// The stream it appended to.
    pub stream: String,
    /// Where its events went (`duplicate` set).
    pub appended: Appended,
    /// Its events, in stream order.
    pub events: Vec<RecordedEvent>,
}

/// A projection's checkpoint, as [`read_and_move_checkpoint`] found it.
#[derive(Clone, Debug)]
pub struct LockedCheckpoint {
    /// The generation of the projection's tables.
    pub generation: i32,
    /// The definition its tables were built by.
    pub definition: Option<String>,
    /// The last event folded.
    pub cursor: LogCursor,
    /// Whether committed events wait past the horizon (a transaction that began before they
    /// committed is still open): they become readable without an append to announce them,
    /// so whoever reads on must look again soon rather than wait for a wake-up.
    pub held_back: bool,
}

/// Whether committed events wait past the horizon, as an SQL expression (one index probe):
/// every event at or past the snapshot's xmin follows every readable one.
pub const HELD_BACK_SQL: &str = "EXISTS (SELECT 1 FROM events \
     WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()))";

/// Locks the checkpoint of `projection` for the rest of the caller's transaction, reads up to
/// `limit` events after it, as [`read_all_with`] reads them, and moves the checkpoint past
/// them, all in one round trip; `None` when the projection is not installed. The move is the
/// caller's transaction's: it holds when the caller applies the events and commits, and is
/// undone with everything else when it rolls back. Its notification on
/// [`crate::wakeups::CHECKPOINTS_CHANNEL`], marked with this process's origin, goes out at
/// that commit. The transaction's commit is made not to wait for the disk (`synchronous_commit`
/// off for it): what a projector writes is derived from the log, and its checkpoint moves in
/// the same transaction, so a batch lost in a crash is applied again.
pub async fn read_and_move_checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    limit: i64,
) -> Result<Option<(LockedCheckpoint, Vec<RecordedEvent>)>, sqlx::Error> {
    // The lock is taken before the events are read; the events come from the statement's
    // snapshot and stop at its horizon, so they are a gap-free run after whichever checkpoint
    // the lock returns (the current one, if a swap moved it while this waited). The update
    // of the row the statement locked is its own, and finds that same row.
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH cp AS ( \
           SELECT set_config('synchronous_commit', 'off', true) AS off, generation, \
                  transaction_id, position, definition \
           FROM projection_checkpoints WHERE projection = $1 FOR UPDATE), \
         e AS ( \
           SELECT ev.* FROM cp, LATERAL ( \
             SELECT * FROM events \
             WHERE (transaction_id, position) > (cp.transaction_id, cp.position) \
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY transaction_id, position LIMIT $2) ev), \
         last AS ( \
           SELECT transaction_id, position, count(*) OVER () AS n FROM e \
           ORDER BY transaction_id DESC, position DESC LIMIT 1), \
         moved AS ( \
           UPDATE projection_checkpoints p SET transaction_id = last.transaction_id, \
                  position = last.position, events_applied = p.events_applied + last.n, \
                  updated_at = now(), failed_at = NULL, error = NULL, error_position = NULL \
           FROM last WHERE p.projection = $1 \
           RETURNING pg_notify($3, current_schema() || ' ' || $4) AS sent) \
         SELECT cp.off, cp.generation, cp.definition, cp.transaction_id::text AS checkpoint_xid, \
                cp.position AS checkpoint_position, {HELD_BACK_SQL} AS held_back, \
                (SELECT count(*) FROM moved) AS moved, \
                e.position, e.transaction_id::text AS xid, \
                e.stream_id, e.stream_version, e.event_type, e.schema_version, e.payload, \
                e.metadata, e.command_id, e.recorded_at, e.hash \
         FROM cp LEFT JOIN e ON true \
         ORDER BY e.transaction_id, e.position"
        )
    });
    let rows = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(projection)
        .bind(limit)
        .bind(crate::wakeups::CHECKPOINTS_CHANNEL)
        .bind(crate::wakeups::origin())
        .fetch_all(&mut *conn)
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let xid: String = first.try_get("checkpoint_xid")?;
    let checkpoint = LockedCheckpoint {
        generation: first.try_get("generation")?,
        definition: first.try_get("definition")?,
        cursor: LogCursor {
            transaction_id: parse_xid(&xid)?,
            position: first.try_get("checkpoint_position")?,
        },
        held_back: first.try_get("held_back")?,
    };
    // Nothing after the checkpoint: one row, its event columns null.
    let found: Option<String> = first.try_get("xid")?;
    if found.is_none() {
        return Ok(Some((checkpoint, Vec::new())));
    }
    Ok(Some((checkpoint, decode_events(conn, &rows).await?)))
}

/// Decodes rows of [`select_event!`] and opens their sealed personal fields
/// ([`crate::personal::open`]): the one way events leave the log for readers.
async fn decode_events(
    conn: &mut PgConnection,
    rows: &[PgRow],
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let mut events = rows
        .iter()
        .map(decode_event)
        .collect::<Result<Vec<_>, _>>()?;
    crate::personal::open(conn, &mut events).await?;
    Ok(events)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0) // versions are >= 1 by CHECK
}

fn parse_xid(xid: &str) -> Result<u64, sqlx::Error> {
    xid.parse()
        .map_err(|e| sqlx::Error::Decode(format!("transaction id {xid:?}: {e}").into()))
}

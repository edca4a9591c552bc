//! Command handling: load an aggregate's stream, fold it, decide, append with the version it
//! was decided on, and wait until the read model shows the change (read-your-writes).
//!
//! A concurrent write to the same stream makes the append conflict; the command is then
//! decided again on fresh state, a bounded number of times, never dropped silently.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use domain::error::DomainError;
use domain::event::EventCodecError;
use domain::ingestion::{IngestionCommand, IngestionEvent, IngestionState};
use domain::policy::Denied;
use domain::project::{ProjectCommand, ProjectEvent, ProjectState};
use domain::user::{UserCommand, UserEvent, UserState};
use domain::{EventMetadata, NewEvent, StreamId};
use schema::{AppendError, AppendRequest, Appended, EventLog, ExpectedVersion};

/// An event-sourced aggregate as the command handler sees it.
pub trait Aggregate {
    /// Folded state.
    type State: Default + Clone + Send + 'static;
    /// What may be asked of it.
    type Command: Clone;
    /// What it records.
    type Event;
    /// The stream of aggregate `id`.
    fn stream(id: &str) -> Result<StreamId, CommandError>;
    /// The pure decision.
    fn decide(state: &Self::State, command: Self::Command)
    -> Result<Vec<Self::Event>, DomainError>;
    /// The pure fold step.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
    /// Reads a stored event (upcast to the current shape first).
    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<Self::Event, EventCodecError>;
    /// Prepares an event for the log.
    fn encode(event: &Self::Event) -> Result<NewEvent, EventCodecError>;
    /// Whether a command that appended `events` waits for `read_model` (one of those that
    /// fold its stream) before it answers: whether those events change what its readers see.
    fn waits_for(read_model: &str, events: &[Self::Event]) -> bool;
    /// About how many bytes of memory `state` holds, for the state cache's byte budget.
    /// Constant time: it counts entries, never walks them (a command's cost must not grow
    /// with its project).
    fn weight(state: &Self::State) -> usize;
    /// How this aggregate's states are stored as snapshots (`aggregate_snapshots`), when they
    /// are: only for aggregates whose streams grow long and whose state holds no personal data
    /// in clear but what erasure scrubs.
    fn snapshots() -> Option<SnapshotCodec<Self::State>> {
        None
    }
}

/// How an aggregate's state is written to and read from a stored snapshot.
pub struct SnapshotCodec<S> {
    /// The shape of the snapshots it writes: rows of another shape are not read.
    pub shape: String,
    /// The state as text.
    pub write: fn(&S) -> Result<String, serde_json::Error>,
    /// The text back as the state.
    pub read: fn(&str) -> Result<S, serde_json::Error>,
}

/// The Project aggregate (projects, members, invites, models, versions).
pub struct ProjectAggregate;

/// The parts of an [`Aggregate`] impl that only name the domain module's functions and types;
/// the weight and the read models waited for, which differ, are given as functions.
macro_rules! aggregate {
    ($name:ident, $module:ident, $state:ty, $command:ty, $event:ty, $weight:expr, $waits:expr
     $(, snapshots: $snapshots:expr)?) => {
        impl Aggregate for $name {
            type State = $state;
            type Command = $command;
            type Event = $event;
            fn stream(id: &str) -> Result<StreamId, CommandError> {
                domain::$module::stream_id(id).map_err(|e| CommandError::BadInput(e.to_string()))
            }
            fn decide(state: &$state, command: $command) -> Result<Vec<$event>, DomainError> {
                domain::$module::decide(state, command)
            }
            fn evolve(state: $state, event: &$event) -> $state {
                domain::$module::evolve(state, event)
            }
            fn decode(
                event_type: &str,
                schema_version: u32,
                payload: serde_json::Value,
            ) -> Result<$event, EventCodecError> {
                <$event>::decode(event_type, schema_version, payload)
            }
            fn encode(event: &$event) -> Result<NewEvent, EventCodecError> {
                event.to_new_event()
            }
            fn weight(state: &$state) -> usize {
                $weight(state)
            }
            fn waits_for(read_model: &str, events: &[$event]) -> bool {
                $waits(read_model, events)
            }
            $(
                fn snapshots() -> Option<SnapshotCodec<$state>> {
                    Some($snapshots)
                }
            )?
        }
    };
}

aggregate!(
    ProjectAggregate,
    project,
    ProjectState,
    ProjectCommand,
    ProjectEvent,
    project_weight,
    project_waits_for,
    snapshots: SnapshotCodec {
        shape: domain::project::snapshot_shape(),
        write: domain::project::to_snapshot,
        read: domain::project::from_snapshot,
    }
);

/// A project command waits for every read model that folds project streams, except
/// `webhooks` when none of its events changes a webhook configuration (only deliveries).
fn project_waits_for(read_model: &str, events: &[ProjectEvent]) -> bool {
    read_model != projections::webhooks::NAME
        || events
            .iter()
            .any(projections::webhooks::changes_what_readers_see)
}

fn project_weight(state: &ProjectState) -> usize {
    let Some(p) = state.project() else {
        return weights::SMALL;
    };
    weights::PROJECT
        + p.name.len()
        + p.description.len()
        + p.members.len() * weights::MEMBER
        + p.invites.len() * weights::INVITE
        + p.models.len() * weights::MODEL
        + p.versions.len() * weights::VERSION
        + p.webhooks.len() * weights::WEBHOOK
        + p.used_ids.len() * weights::USED_ID
        + p.favorited_by.len() * weights::MEMBER
}

/// The state cache's estimates, in bytes, of what a folded aggregate holds. Calibrated
/// against the resident memory of a real fold: `bench fold` prints the estimate beside what
/// it measured (a model and a version create: ≈ 680 B measured).
pub mod weights {
    /// A state with nothing in it, or one too small to count in parts.
    pub const SMALL: usize = 256;
    /// A project's fixed part.
    pub const PROJECT: usize = 512;
    /// A member's role, or a user who holds the project among their favourites.
    pub const MEMBER: usize = 96;
    /// A pending invite.
    pub const INVITE: usize = 320;
    /// A model (id, name, description, author) in its map.
    pub const MODEL: usize = 280;
    /// A version (id, model, author) in its map.
    pub const VERSION: usize = 230;
    /// A webhook's configuration.
    pub const WEBHOOK: usize = 640;
    /// An id in the set of ids ever used.
    pub const USED_ID: usize = 80;
}

/// The ModelIngestion aggregate (one send of a model, on its own stream).
pub struct IngestionAggregate;

aggregate!(
    IngestionAggregate,
    ingestion,
    IngestionState,
    IngestionCommand,
    IngestionEvent,
    |_| {
        // One send's record: ids, a few names and counters.
        2 * weights::SMALL
    },
    |_, _| true
);

/// The User aggregate.
pub struct UserAggregate;

aggregate!(
    UserAggregate,
    user,
    UserState,
    UserCommand,
    UserEvent,
    user_weight,
    |_, _| true
);

fn user_weight(state: &UserState) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    match state {
        // The avatar may be a whole image as a data URL: counted as it is.
        UserState::Active(u) => {
            weights::SMALL
                + u.id.len()
                + u.email.len()
                + u.name.len()
                + text(&u.company)
                + text(&u.bio)
                + text(&u.avatar)
        }
        UserState::Initial | UserState::Deleted { .. } => weights::SMALL,
    }
}

/// Why a command did not take effect — except [`CommandError::Lag`], which reports a change
/// that did take effect but is not visible yet.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The domain refused it.
    #[error("{0}")]
    Domain(#[from] DomainError),
    /// The caller may not do it.
    #[error("{}", .0.message)]
    Denied(Denied),
    /// The input is malformed.
    #[error("{0}")]
    BadInput(String),
    /// Still conflicting after every retry: the stream is too hot.
    #[error("the {stream} stream kept changing; try again")]
    Contended {
        /// Stream.
        stream: String,
    },
    /// Committed, but the read models are behind.
    #[error("{0}")]
    Lag(#[from] projections::ProjectionLag),
    /// The log or its contents failed; the cause chain is kept for the log.
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

impl From<AppendError> for CommandError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::TooManyEvents { .. }
            | AppendError::PayloadTooLarge { .. }
            | AppendError::InvalidPayload(_) => Self::BadInput(e.to_string()),
            other => Self::Internal(other.into()),
        }
    }
}

/// What a command produced.
#[derive(Debug)]
pub struct Outcome<E> {
    /// The events appended (empty when the command changed nothing).
    pub events: Vec<E>,
    /// Where they went, if anywhere.
    pub appended: Option<Appended>,
}

/// Runs commands against the log.
#[derive(Clone)]
pub struct CommandBus {
    log: EventLog,
    read_models: &'static [&'static str],
    wait: Duration,
    retries: u32,
    states: Arc<StateCache>,
    /// Store a stream's state as a snapshot every this many events (0: never; nor read them).
    snapshot_every: u64,
    /// Woken by the projectors as their checkpoints move.
    waiter: projections::Waiter,
}

/// Aggregate states kept between commands, so a command costs the same in a project with
/// fifty thousand versions as in a new one: a snapshot cache, never authoritative. An entry is
/// the fold of its stream up to a version; a command decides on it optimistically and appends
/// expecting that version, so a write made elsewhere (another replica, a rebuild of history)
/// makes the append conflict, and the entry is brought up to date from the log before the
/// command is decided again. A refusal or a no-op decided on an entry that was not read from
/// the log in this command is checked again on fresh state before it is answered. Commands on
/// one stream take its entry in turn (they would conflict on the append anyway); the read-model
/// wait happens after the entry is given back.
///
/// Bounded twice: in streams, and in the bytes the states hold (each weighed by
/// [`Aggregate::weight`] when it is given back). A project's fold grows with its models and
/// versions, so a count of streams alone does not bound memory. Over either bound, the least
/// recently used entries go; a state heavier than the whole byte budget is not kept (each
/// command on that stream folds it anew, which is slow but right).
struct StateCache {
    slots: std::sync::Mutex<Slots>,
    capacity: usize,
    budget: usize,
    tick: AtomicU64,
}

/// The entries, and the sum of their weights.
#[derive(Default)]
struct Slots {
    entries: HashMap<String, Entry>,
    weight: usize,
}

/// One stream's entry in the cache: its slot, the tick it was last used at, and the weight of
/// the state it was last given back with.
struct Entry {
    slot: SharedSlot,
    used: u64,
    weight: usize,
}

/// One stream's entry, taken in turn by its commands.
type SharedSlot = Arc<tokio::sync::Mutex<Slot>>;

/// One stream's cached fold.
#[derive(Default)]
struct Slot {
    /// The state (`A::State` of the stream's aggregate), absent until first folded.
    state: Option<Box<dyn Any + Send>>,
    /// The stream version it was folded up to.
    version: u64,
    /// The stream version of the newest stored snapshot this process knows of (0: none).
    snapshotted: u64,
}

/// A snapshot taken by a command, to be stored once its stream's entry is given back.
struct Taken {
    shape: String,
    snapshot: schema::snapshots::Snapshot,
}

impl Slots {
    /// Drops the least recently used entry other than `keep`'s; false when there is none.
    fn evict_oldest(&mut self, keep: &str) -> bool {
        let oldest = self
            .entries
            .iter()
            .filter(|(stream, _)| stream.as_str() != keep)
            .min_by_key(|(_, entry)| entry.used)
            .map(|(stream, _)| stream.clone());
        match oldest {
            Some(stream) => {
                self.remove(&stream);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, stream: &str) {
        if let Some(entry) = self.entries.remove(stream) {
            self.weight -= entry.weight;
        }
    }
}

impl StateCache {
    fn new(capacity: usize, budget: usize) -> Self {
        Self {
            slots: std::sync::Mutex::new(Slots::default()),
            capacity,
            budget,
            tick: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic while holding it leaves the map whole (no step of ours can half-update it).
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry of `stream`, made when absent; the least recently used entry goes when the
    /// cache holds as many streams as it may.
    fn slot(&self, stream: &str) -> SharedSlot {
        let now = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut slots = self.lock();
        if let Some(entry) = slots.entries.get_mut(stream) {
            entry.used = now;
            return entry.slot.clone();
        }
        while slots.entries.len() >= self.capacity.max(1) && slots.evict_oldest(stream) {}
        let slot = Arc::new(tokio::sync::Mutex::new(Slot::default()));
        slots.entries.insert(
            stream.to_owned(),
            Entry {
                slot: slot.clone(),
                used: now,
                weight: 0,
            },
        );
        slot
    }

    /// Records that `slot`, the entry of `stream`, now holds a state of `weight` bytes, and
    /// brings the cache back under its byte budget: other entries go, least recently used
    /// first; the entry itself goes when it alone is over the budget. A slot no longer in the
    /// cache (dropped while its command ran) is left alone.
    fn weighed(&self, stream: &str, slot: &SharedSlot, weight: usize) {
        let mut slots = self.lock();
        let Some(entry) = slots.entries.get_mut(stream) else {
            return;
        };
        if !Arc::ptr_eq(&entry.slot, slot) {
            return;
        }
        let before = std::mem::replace(&mut entry.weight, weight);
        slots.weight = slots.weight - before + weight;
        if weight > self.budget {
            slots.remove(stream);
            tracing::debug!(
                stream,
                weight,
                budget = self.budget,
                "a state heavier than the command state cache's budget is not kept"
            );
            return;
        }
        while slots.weight > self.budget && slots.evict_oldest(stream) {}
    }

    /// The number of entries and their summed weight.
    fn held(&self) -> (usize, usize) {
        let slots = self.lock();
        (slots.entries.len(), slots.weight)
    }
}

impl CommandBus {
    /// A bus that waits up to `wait` for `read_models` after each command, keeping the states
    /// of up to 10,000 streams and 256 MiB between commands.
    pub fn new(log: EventLog, read_models: &'static [&'static str], wait: Duration) -> Self {
        Self {
            log,
            read_models,
            wait,
            retries: 20,
            states: Arc::new(StateCache::new(10_000, 256 << 20)),
            snapshot_every: 1_000,
            waiter: projections::Waiter::default(),
        }
    }

    /// The same bus keeping the states of at most `streams` streams, weighing at most `bytes`
    /// together, between commands (0 streams: none).
    #[must_use]
    pub fn with_state_cache(mut self, streams: usize, bytes: usize) -> Self {
        self.states = Arc::new(StateCache::new(streams, bytes));
        self
    }

    /// The same bus storing a stream's state as a snapshot once `every` events (and at least
    /// a sixteenth of the stream) were appended since the last one, and starting from stored
    /// snapshots; 0 neither stores nor reads them.
    #[must_use]
    pub fn with_snapshots(mut self, every: u64) -> Self {
        self.snapshot_every = every;
        self
    }

    /// The read models a command that appended `events` to `stream` waits for: those of
    /// the bus's that fold the stream, and whose readers see a change from these events.
    fn waited_for<A: Aggregate>(
        &self,
        stream: &StreamId,
        events: &[A::Event],
    ) -> Vec<&'static str> {
        projections::following(self.read_models, stream.as_str())
            .into_iter()
            .filter(|read_model| A::waits_for(read_model, events))
            .collect()
    }

    /// What the state cache holds now: streams, their estimated bytes, and the byte budget
    /// (for `/metrics`).
    pub fn state_cache_held(&self) -> (usize, usize, usize) {
        let (streams, bytes) = self.states.held();
        (streams, bytes, self.states.budget)
    }

    /// Puts `state`, folded up to `version`, back into `slot`'s `entry` for the next command
    /// on `stream`, and weighs it against the cache's byte budget; takes a snapshot of it when
    /// one is due, for the caller to store once the entry is given back.
    #[must_use = "a snapshot taken is stored with `CommandBus::store`"]
    fn keep<A: Aggregate>(
        &self,
        stream: &StreamId,
        (slot, entry): (&SharedSlot, &mut Slot),
        state: A::State,
        version: u64,
    ) -> Option<Taken> {
        let taken = self.snapshot_due::<A>(stream, &state, version, entry.snapshotted);
        if taken.is_some() {
            entry.snapshotted = version;
        }
        let weight = A::weight(&state);
        entry.state = Some(Box::new(state));
        entry.version = version;
        self.states.weighed(stream.as_str(), slot, weight);
        taken
    }

    /// A snapshot of `state` at `version`, when its aggregate keeps them and enough events
    /// came since the one at `snapshotted`: `snapshot_every`, and at least a sixteenth of the
    /// stream, so the text written per event stays bounded as a project's state grows, and a
    /// process starting on the stream folds at most that many events after the snapshot.
    fn snapshot_due<A: Aggregate>(
        &self,
        stream: &StreamId,
        state: &A::State,
        version: u64,
        snapshotted: u64,
    ) -> Option<Taken> {
        let since = version.saturating_sub(snapshotted);
        if self.snapshot_every == 0 || since < self.snapshot_every.max(version / 16) {
            return None;
        }
        let codec = A::snapshots()?;
        match (codec.write)(state) {
            Ok(text) => Some(Taken {
                shape: codec.shape,
                snapshot: schema::snapshots::Snapshot {
                    version,
                    state: text,
                },
            }),
            Err(error) => {
                tracing::warn!(%stream, version, %error, "a state could not be written as a snapshot");
                None
            }
        }
    }

    /// Stores a snapshot taken by [`Self::keep`]. A snapshot is a cache: when it cannot be
    /// stored, the next one due is, and the command is answered all the same.
    async fn store(&self, stream: &StreamId, taken: Option<Taken>) {
        let Some(Taken { shape, snapshot }) = taken else {
            return;
        };
        if let Err(error) =
            schema::snapshots::store(self.log.pool(), stream, &shape, &snapshot).await
        {
            tracing::warn!(%stream, version = snapshot.version, %error, "a snapshot was not stored");
        }
    }

    /// The state of `stream` for a command with nothing cached: the stored snapshot, when its
    /// aggregate keeps them and one of its shape is there, caught up from the log; else the
    /// fold of the whole stream. With the version it was folded to, and the snapshot's version
    /// (0: none).
    async fn start<A: Aggregate>(
        &self,
        stream: &StreamId,
    ) -> Result<(A::State, u64, u64), CommandError> {
        let stored = match A::snapshots() {
            Some(codec) if self.snapshot_every > 0 => {
                schema::snapshots::find(self.log.pool(), stream, &codec.shape)
                    .await
                    .map_err(|e| CommandError::Internal(e.into()))?
                    .and_then(|found| match (codec.read)(&found.state) {
                        Ok(state) => Some((state, found.version)),
                        Err(error) => {
                            tracing::warn!(
                                %stream,
                                version = found.version,
                                %error,
                                "a stored snapshot could not be read; folding the whole stream"
                            );
                            None
                        }
                    })
            }
            _ => None,
        };
        let (state, from) = stored.unwrap_or_default();
        let (state, version) = self.catch_up::<A>(stream, state, from).await?;
        Ok((state, version, from))
    }

    /// Folds the events of `stream` after `version` into `state`.
    async fn catch_up<A: Aggregate>(
        &self,
        stream: &StreamId,
        mut state: A::State,
        mut version: u64,
    ) -> Result<(A::State, u64), CommandError> {
        let stored = self
            .log
            .read_stream(
                stream,
                i64::try_from(version + 1).map_err(|_| {
                    CommandError::Internal(anyhow::anyhow!("stream version overflow"))
                })?,
            )
            .await
            .map_err(|e| CommandError::Internal(e.into()))?;
        for e in stored {
            // The log's CHECK keeps it >= 1.
            let at = u64::try_from(e.stream_version).unwrap_or(version);
            state = A::evolve(state, &decode_stored::<A>(e)?);
            version = at;
        }
        Ok((state, version))
    }

    /// The current state of aggregate `id`, with the version it was folded at.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<(A::State, u64), CommandError> {
        let stream = A::stream(id)?;
        self.catch_up::<A>(&stream, A::State::default(), 0).await
    }

    /// What `look` sees in the current state of aggregate `id`, at constant cost: it starts
    /// from the cached state when there is one and reads only the events after it (so it is
    /// as current as the log), leaving the caught-up state in the cache. The state is lent to
    /// `look`, never copied: a project's fold grows with its history, and a copy per request
    /// made these requests' time and the allocator's footprint grow with it. For requests
    /// that must check facts of an aggregate (an ingestion's project: its model, the caller's
    /// role).
    pub async fn read<A: Aggregate, R>(
        &self,
        id: &str,
        look: impl FnOnce(&A::State) -> R,
    ) -> Result<R, CommandError> {
        let stream = A::stream(id)?;
        if self.states.capacity == 0 {
            let (state, _, _) = self.start::<A>(&stream).await?;
            return Ok(look(&state));
        }
        let slot = self.states.slot(stream.as_str());
        let mut entry = slot.lock().await;
        let (state, version) = match entry
            .state
            .take()
            .and_then(|s| s.downcast::<A::State>().ok())
        {
            Some(state) => self.catch_up::<A>(&stream, *state, entry.version).await?,
            None => {
                let (state, version, snapshotted) = self.start::<A>(&stream).await?;
                entry.snapshotted = snapshotted;
                (state, version)
            }
        };
        let seen = look(&state);
        let taken = self.keep::<A>(&stream, (&slot, &mut entry), state, version);
        drop(entry);
        self.store(&stream, taken).await;
        Ok(seen)
    }

    /// Loads aggregate `id`, lets `make` turn its state into a command (checking permissions
    /// on that state), decides, appends, and waits for the read models.
    ///
    /// Refused inside [`keyed`] (a request sent with an `Idempotency-Key`): without a command
    /// id, a repeat of the request would apply the command again.
    pub async fn execute<A, F>(
        &self,
        id: &str,
        metadata: &EventMetadata,
        make: F,
    ) -> Result<Outcome<A::Event>, CommandError>
    where
        A: Aggregate,
        F: Fn(&A::State) -> Result<A::Command, CommandError>,
    {
        refuse_keyed()?;
        self.execute_once::<A, F>(id, None, metadata, make).await
    }

    /// [`Self::execute`] as command `command_id`: when the log has recorded that command
    /// already (an earlier attempt, or a concurrent one that went first), nothing is decided
    /// or appended, and the outcome holds the events that attempt appended.
    #[tracing::instrument(name = "command", skip_all, fields(stream = tracing::field::Empty))]
    pub async fn execute_once<A, F>(
        &self,
        id: &str,
        command_id: Option<uuid::Uuid>,
        metadata: &EventMetadata,
        make: F,
    ) -> Result<Outcome<A::Event>, CommandError>
    where
        A: Aggregate,
        F: Fn(&A::State) -> Result<A::Command, CommandError>,
    {
        let stream = A::stream(id)?;
        tracing::Span::current().record("stream", stream.as_str());
        if let Some(command_id) = command_id
            && let Some(done) = self.earlier::<A>(&stream, command_id).await?
        {
            return Ok(done);
        }
        // What follows from these events continues this command's trace.
        let mut metadata = metadata.clone();
        if let Some(traceparent) = schema::trace::current_traceparent() {
            metadata.traceparent = Some(traceparent);
        }
        let slot = if self.states.capacity == 0 {
            Arc::new(tokio::sync::Mutex::new(Slot::default()))
        } else {
            self.states.slot(stream.as_str())
        };
        let mut entry = slot.lock().await;
        let cached = entry
            .state
            .take()
            .and_then(|s| s.downcast::<A::State>().ok());
        // Whether `state` was read from the log in this command (else it is the cache's word).
        let mut fresh = cached.is_none();
        let (mut state, mut version) = match cached {
            Some(state) => (*state, entry.version),
            None => {
                let (state, version, snapshotted) = self.start::<A>(&stream).await?;
                entry.snapshotted = snapshotted;
                (state, version)
            }
        };
        for _ in 0..=self.retries {
            let decided = make(&state).and_then(|c| A::decide(&state, c).map_err(Into::into));
            let events = match decided {
                Ok(events) if !events.is_empty() => events,
                // A refusal or a no-op must hold on the stream as it is now.
                other if !fresh => {
                    drop(other);
                    (state, version) = self.catch_up::<A>(&stream, state, version).await?;
                    fresh = true;
                    continue;
                }
                other => {
                    let taken = self.keep::<A>(&stream, (&slot, &mut entry), state, version);
                    drop(entry);
                    self.store(&stream, taken).await;
                    // A refusal may be this command's own effect: a concurrent attempt of it
                    // appended first (its version exists, its name is taken). Then the answer
                    // is that attempt's.
                    if other.is_err()
                        && let Some(command_id) = command_id
                        && let Some(done) = self.earlier::<A>(&stream, command_id).await?
                    {
                        return Ok(done);
                    }
                    let events = other?;
                    return Ok(Outcome {
                        events,
                        appended: None,
                    });
                }
            };
            let encoded = events
                .iter()
                .map(A::encode)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CommandError::Internal(e.into()))?;
            let request = AppendRequest {
                stream: stream.clone(),
                expected: if version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version)
                },
                events: encoded,
                metadata: metadata.clone(),
                command_id,
            };
            match self.log.append(&request).await {
                Ok(appended) if appended.duplicate => {
                    // A concurrent attempt of this command went first; these events were not
                    // appended, so the entry stays out of the cache (it is caught up next time).
                    drop(entry);
                    let earlier = match command_id {
                        Some(command_id) => self.earlier::<A>(&stream, command_id).await?,
                        None => None,
                    };
                    return earlier.ok_or_else(|| {
                        CommandError::Internal(anyhow::anyhow!(
                            "the log reported a repeated command it does not hold"
                        ))
                    });
                }
                Ok(appended) => {
                    for event in &events {
                        state = A::evolve(state, event);
                    }
                    let version = version + events.len() as u64;
                    let taken = self.keep::<A>(&stream, (&slot, &mut entry), state, version);
                    drop(entry);
                    let read_models = self.waited_for::<A>(&stream, &events);
                    let ((), seen) = tokio::join!(
                        self.store(&stream, taken),
                        self.waiter.wait_for(
                            self.log.pool(),
                            &read_models,
                            appended.last,
                            self.wait
                        )
                    );
                    seen?;
                    return Ok(Outcome {
                        events,
                        appended: Some(appended),
                    });
                }
                Err(AppendError::Conflict { .. }) => {
                    // Someone else's write went first: re-decide on fresh state after a short,
                    // jittered pause so many contenders do not collide again in lockstep.
                    let pause = rand::random_range(0..2_000u64);
                    tokio::time::sleep(Duration::from_micros(pause)).await;
                    (state, version) = self.catch_up::<A>(&stream, state, version).await?;
                    fresh = true;
                }
                Err(e) => {
                    // No snapshot when the log failed: it would fail to store as well.
                    let _ = self.keep::<A>(&stream, (&slot, &mut entry), state, version);
                    return Err(e.into());
                }
            }
        }
        let taken = self.keep::<A>(&stream, (&slot, &mut entry), state, version);
        drop(entry);
        self.store(&stream, taken).await;
        Err(CommandError::Contended {
            stream: stream.to_string(),
        })
    }
}

impl CommandBus {
    /// The outcome of command `command_id` when the log holds it: its events, once the read
    /// models show them. A command recorded on another stream is refused (its id was derived
    /// for another request).
    async fn earlier<A: Aggregate>(
        &self,
        stream: &StreamId,
        command_id: uuid::Uuid,
    ) -> Result<Option<Outcome<A::Event>>, CommandError> {
        let Some(done) = self
            .log
            .processed_command(command_id)
            .await
            .map_err(|e| CommandError::Internal(e.into()))?
        else {
            return Ok(None);
        };
        if done.stream != stream.as_str() {
            return Err(CommandError::BadInput(
                "This Idempotency-Key was used for another request.".into(),
            ));
        }
        let events = done
            .events
            .into_iter()
            .map(decode_stored::<A>)
            .collect::<Result<Vec<_>, _>>()?;
        let read_models = self.waited_for::<A>(stream, &events);
        self.waiter
            .wait_for(self.log.pool(), &read_models, done.appended.last, self.wait)
            .await?;
        Ok(Some(Outcome {
            events,
            appended: Some(done.appended),
        }))
    }
}

/// A stored event of `A`'s stream, upcast and decoded.
fn decode_stored<A: Aggregate>(e: schema::RecordedEvent) -> Result<A::Event, CommandError> {
    let schema_version = u32::try_from(e.schema_version)
        .map_err(|_| CommandError::Internal(anyhow::anyhow!("negative schema version")))?;
    A::decode(&e.event_type, schema_version, e.payload)
        .map_err(|err| CommandError::Internal(err.into()))
}

tokio::task_local! {
    /// Set while a request sent with an `Idempotency-Key` runs ([`keyed`]).
    static KEYED: ();
}

/// Runs `work` as a request sent with an `Idempotency-Key`: a command run in it without a
/// command id ([`CommandBus::execute`]) is refused instead of being applied again on a repeat.
pub async fn keyed<F: std::future::Future>(work: F) -> F::Output {
    KEYED.scope((), work).await
}

/// Refuses a change that a repeat would make again (a command without a command id, a token
/// or an app created outside the log) while a request sent with an `Idempotency-Key` runs.
pub fn refuse_keyed() -> Result<(), CommandError> {
    if KEYED.try_with(|()| ()).is_ok() {
        return Err(CommandError::BadInput(
            "This mutation cannot be sent with an Idempotency-Key: a repeat would apply it \
             again. Send it without one."
                .into(),
        ));
    }
    Ok(())
}

/// A new 10-character lower-case hex id, the format of Speckle's ids.
pub fn new_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(domain::ids::ENTITY_ID_LEN);
    id
}

#[cfg(test)]
mod tests {
    use super::StateCache;

    /// Gives `stream`'s entry back holding a state of `weight` bytes.
    fn give_back(cache: &StateCache, stream: &str, weight: usize) {
        let slot = cache.slot(stream);
        cache.weighed(stream, &slot, weight);
    }

    fn holds(cache: &StateCache, stream: &str) -> bool {
        cache.lock().entries.contains_key(stream)
    }

    #[test]
    fn the_least_recently_used_states_go_when_the_bytes_are_over_budget() {
        let cache = StateCache::new(100, 1_000);
        give_back(&cache, "project:a", 400);
        give_back(&cache, "project:b", 400);
        assert_eq!(cache.held(), (2, 800));
        // `a` is used again, so `b` is the oldest when `c` pushes the sum over the budget.
        give_back(&cache, "project:a", 400);
        give_back(&cache, "project:c", 400);
        assert_eq!(cache.held(), (2, 800));
        assert!(holds(&cache, "project:a") && holds(&cache, "project:c"));
        assert!(!holds(&cache, "project:b"));
        // A state that grew is weighed again: `a` grows and `c`, now the oldest, goes.
        give_back(&cache, "project:a", 900);
        assert_eq!(cache.held(), (1, 900));
        assert!(holds(&cache, "project:a"));
    }

    #[test]
    fn a_state_heavier_than_the_budget_is_not_kept_and_costs_the_others_nothing() {
        let cache = StateCache::new(100, 1_000);
        give_back(&cache, "project:small", 300);
        give_back(&cache, "project:huge", 5_000);
        assert!(!holds(&cache, "project:huge"));
        assert!(holds(&cache, "project:small"));
        assert_eq!(cache.held(), (1, 300));
    }

    #[test]
    fn the_stream_bound_still_holds_and_gives_back_the_weight_it_drops() {
        let cache = StateCache::new(2, 1_000_000);
        give_back(&cache, "project:a", 10);
        give_back(&cache, "project:b", 20);
        give_back(&cache, "project:c", 30);
        assert_eq!(cache.held(), (2, 50));
        assert!(!holds(&cache, "project:a"));
    }

    #[test]
    fn a_slot_dropped_while_its_command_ran_is_not_weighed_into_its_successor() {
        let cache = StateCache::new(1, 1_000);
        let stale = cache.slot("project:a");
        // `b` takes the only place while `a`'s command still holds its slot.
        give_back(&cache, "project:b", 100);
        let _fresh = cache.slot("project:a");
        cache.weighed("project:a", &stale, 700);
        assert_eq!(
            cache.held(),
            (1, 0),
            "the new entry of `a` weighs nothing yet"
        );
    }
}

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
}

/// The Project aggregate (projects, members, invites, models, versions).
pub struct ProjectAggregate;

impl Aggregate for ProjectAggregate {
    type State = ProjectState;
    type Command = ProjectCommand;
    type Event = ProjectEvent;
    fn stream(id: &str) -> Result<StreamId, CommandError> {
        domain::project::stream_id(id).map_err(|e| CommandError::BadInput(e.to_string()))
    }
    fn decide(
        state: &ProjectState,
        command: ProjectCommand,
    ) -> Result<Vec<ProjectEvent>, DomainError> {
        domain::project::decide(state, command)
    }
    fn evolve(state: ProjectState, event: &ProjectEvent) -> ProjectState {
        domain::project::evolve(state, event)
    }
    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<ProjectEvent, EventCodecError> {
        ProjectEvent::decode(event_type, schema_version, payload)
    }
    fn encode(event: &ProjectEvent) -> Result<NewEvent, EventCodecError> {
        event.to_new_event()
    }
}

/// The ModelIngestion aggregate (one send of a model, on its own stream).
pub struct IngestionAggregate;

impl Aggregate for IngestionAggregate {
    type State = IngestionState;
    type Command = IngestionCommand;
    type Event = IngestionEvent;
    fn stream(id: &str) -> Result<StreamId, CommandError> {
        domain::ingestion::stream_id(id).map_err(|e| CommandError::BadInput(e.to_string()))
    }
    fn decide(
        state: &IngestionState,
        command: IngestionCommand,
    ) -> Result<Vec<IngestionEvent>, DomainError> {
        domain::ingestion::decide(state, command)
    }
    fn evolve(state: IngestionState, event: &IngestionEvent) -> IngestionState {
        domain::ingestion::evolve(state, event)
    }
    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<IngestionEvent, EventCodecError> {
        IngestionEvent::decode(event_type, schema_version, payload)
    }
    fn encode(event: &IngestionEvent) -> Result<NewEvent, EventCodecError> {
        event.to_new_event()
    }
}

/// The User aggregate.
pub struct UserAggregate;

impl Aggregate for UserAggregate {
    type State = UserState;
    type Command = UserCommand;
    type Event = UserEvent;
    fn stream(id: &str) -> Result<StreamId, CommandError> {
        domain::user::stream_id(id).map_err(|e| CommandError::BadInput(e.to_string()))
    }
    fn decide(state: &UserState, command: UserCommand) -> Result<Vec<UserEvent>, DomainError> {
        domain::user::decide(state, command)
    }
    fn evolve(state: UserState, event: &UserEvent) -> UserState {
        domain::user::evolve(state, event)
    }
    fn decode(
        event_type: &str,
        schema_version: u32,
        payload: serde_json::Value,
    ) -> Result<UserEvent, EventCodecError> {
        UserEvent::decode(event_type, schema_version, payload)
    }
    fn encode(event: &UserEvent) -> Result<NewEvent, EventCodecError> {
        event.to_new_event()
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
struct StateCache {
    /// Each stream's entry, with the tick it was last used at.
    slots: std::sync::Mutex<HashMap<String, (SharedSlot, u64)>>,
    capacity: usize,
    tick: AtomicU64,
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
}

impl StateCache {
    fn new(capacity: usize) -> Self {
        Self {
            slots: std::sync::Mutex::new(HashMap::new()),
            capacity,
            tick: AtomicU64::new(0),
        }
    }

    /// The entry of `stream`, made when absent; the least recently used entry goes when the
    /// cache is full.
    fn slot(&self, stream: &str) -> SharedSlot {
        let now = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((slot, used)) = slots.get_mut(stream) {
            *used = now;
            return slot.clone();
        }
        if slots.len() >= self.capacity.max(1) {
            let oldest = slots
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                slots.remove(&oldest);
            }
        }
        let slot = Arc::new(tokio::sync::Mutex::new(Slot::default()));
        slots.insert(stream.to_owned(), (slot.clone(), now));
        slot
    }
}

impl CommandBus {
    /// A bus that waits up to `wait` for `read_models` after each command, keeping the states
    /// of up to 10,000 streams between commands.
    pub fn new(log: EventLog, read_models: &'static [&'static str], wait: Duration) -> Self {
        Self {
            log,
            read_models,
            wait,
            retries: 20,
            states: Arc::new(StateCache::new(10_000)),
            waiter: projections::Waiter::default(),
        }
    }

    /// The same bus keeping the states of at most `streams` streams between commands (0: none).
    #[must_use]
    pub fn with_state_cache(mut self, streams: usize) -> Self {
        self.states = Arc::new(StateCache::new(streams));
        self
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
            let (state, _) = self.catch_up::<A>(&stream, A::State::default(), 0).await?;
            return Ok(look(&state));
        }
        let slot = self.states.slot(stream.as_str());
        let mut entry = slot.lock().await;
        let (state, version) = match entry
            .state
            .take()
            .and_then(|s| s.downcast::<A::State>().ok())
        {
            Some(state) => (*state, entry.version),
            None => (A::State::default(), 0),
        };
        let (state, version) = self.catch_up::<A>(&stream, state, version).await?;
        let seen = look(&state);
        entry.state = Some(Box::new(state));
        entry.version = version;
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
            None => self.catch_up::<A>(&stream, A::State::default(), 0).await?,
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
                    entry.state = Some(Box::new(state));
                    entry.version = version;
                    // A refusal may be this command's own effect: a concurrent attempt of it
                    // appended first (its version exists, its name is taken). Then the answer
                    // is that attempt's.
                    if other.is_err()
                        && let Some(command_id) = command_id
                    {
                        drop(entry);
                        if let Some(done) = self.earlier::<A>(&stream, command_id).await? {
                            return Ok(done);
                        }
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
                    entry.state = Some(Box::new(state));
                    entry.version = version + events.len() as u64;
                    drop(entry);
                    let read_models = projections::following(self.read_models, stream.as_str());
                    self.waiter
                        .wait_for(self.log.pool(), &read_models, appended.last, self.wait)
                        .await?;
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
                    entry.state = Some(Box::new(state));
                    entry.version = version;
                    return Err(e.into());
                }
            }
        }
        entry.state = Some(Box::new(state));
        entry.version = version;
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
        let read_models = projections::following(self.read_models, stream.as_str());
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

//! Command handling: load an aggregate's stream, fold it, decide, append with the version it
//! was decided on, and wait until the read model shows the change (read-your-writes).
//!
//! A concurrent write to the same stream makes the append conflict; the command is then
//! decided again on fresh state, a bounded number of times, never dropped silently.

use std::time::Duration;

use domain::error::DomainError;
use domain::event::EventCodecError;
use domain::policy::Denied;
use domain::project::{ProjectCommand, ProjectEvent, ProjectState};
use domain::user::{UserCommand, UserEvent, UserState};
use domain::{EventMetadata, NewEvent, StreamId};
use schema::{AppendError, AppendRequest, Appended, EventLog, ExpectedVersion};

/// An event-sourced aggregate as the command handler sees it.
pub trait Aggregate {
    /// Folded state.
    type State: Default + Clone;
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
    /// The log or its contents failed.
    #[error("{0}")]
    Internal(String),
}

impl From<AppendError> for CommandError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::TooManyEvents { .. }
            | AppendError::PayloadTooLarge { .. }
            | AppendError::InvalidPayload(_) => Self::BadInput(e.to_string()),
            other => Self::Internal(other.to_string()),
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
}

impl CommandBus {
    /// A bus that waits up to `wait` for `read_models` after each command.
    pub fn new(log: EventLog, read_models: &'static [&'static str], wait: Duration) -> Self {
        Self {
            log,
            read_models,
            wait,
            retries: 20,
        }
    }

    /// The current state of aggregate `id`, with the version it was folded at.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<(A::State, u64), CommandError> {
        let stream = A::stream(id)?;
        let stored = self
            .log
            .read_stream(&stream, 1)
            .await
            .map_err(|e| CommandError::Internal(e.to_string()))?;
        let mut state = A::State::default();
        let mut version = 0;
        for e in stored {
            let schema_version = u32::try_from(e.schema_version)
                .map_err(|_| CommandError::Internal("negative schema version".into()))?;
            let event = A::decode(&e.event_type, schema_version, e.payload)
                .map_err(|err| CommandError::Internal(err.to_string()))?;
            state = A::evolve(state, &event);
            version = u64::try_from(e.stream_version).unwrap_or(0);
        }
        Ok((state, version))
    }

    /// Loads aggregate `id`, lets `make` turn its state into a command (checking permissions
    /// on that state), decides, appends, and waits for the read models.
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
        let stream = A::stream(id)?;
        for _ in 0..=self.retries {
            let (state, version) = self.load::<A>(id).await?;
            let command = make(&state)?;
            let events = A::decide(&state, command)?;
            if events.is_empty() {
                return Ok(Outcome {
                    events,
                    appended: None,
                });
            }
            let encoded = events
                .iter()
                .map(A::encode)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| CommandError::Internal(e.to_string()))?;
            let request = AppendRequest {
                stream: stream.clone(),
                expected: if version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version)
                },
                events: encoded,
                metadata: metadata.clone(),
                command_id: None,
            };
            match self.log.append(&request).await {
                Ok(appended) => {
                    projections::wait_for(
                        self.log.pool(),
                        self.read_models,
                        appended.last,
                        self.wait,
                    )
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
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended {
            stream: stream.to_string(),
        })
    }
}

/// A new 10-character lower-case hex id, the format of Speckle's ids.
pub fn new_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(domain::ids::ENTITY_ID_LEN);
    id
}

//! strata's domain: what Speckle's data means, as pure functions over events.
//!
//! Architecture invariant: this crate does no IO, is not async, and knows nothing of SQL,
//! HTTP or GraphQL. Storage and transport crates depend on it, never the other way round.
//! CI checks the dependency list (`deploy/check-boundaries`).
//!
//! - [`project`], [`user`] and [`ingestion`] are aggregates: `decide(&State, Command) -> Result<Vec<Event>,
//!   DomainError>` checks the rules and says what happened; `evolve(State, &Event) -> State`
//!   folds what happened. Both are pure, so a command handler loads a stream, folds it,
//!   decides, and appends the events with the version it folded.
//! - [`policy`] is the one authorization policy: who may do what, from facts the caller loads.
//! - [`names`] holds the validated names and the original's length limits.
//! - Events are the durable contract: stable type names, `SCHEMA_VERSION` 1, camelCase JSON
//!   payloads, and [`upcast`] for any future shape.
//!
//! The domain never generates ids or reads the clock: callers pass new ids in commands (the
//! domain checks their shape, see [`ids::is_entity_id`]) and the log records the time.

pub mod activity;
pub mod audit;
pub mod error;
pub mod event;
pub mod ids;
pub mod ingestion;
pub mod names;
pub mod personal;
pub mod policy;
pub mod project;
pub mod upcast;
pub mod user;

pub use error::{DomainError, Entity};
pub use event::{EventCodecError, EventMetadata, NewEvent};
pub use ids::{ENTITY_ID_LEN, StreamId, StreamIdError, is_entity_id};
pub use ingestion::{IngestionCommand, IngestionEvent, IngestionState};
pub use names::{Email, ModelName, ProjectName, UserName};
pub use policy::{
    Decision, Denied, DenyCode, DenyReason, Principal, ProjectAccess, ProjectRole, Scope,
    ServerRole, Visibility,
};
pub use project::{ProjectCommand, ProjectEvent, ProjectState};
pub use upcast::{UpcastError, Upcaster, Upcasters};
pub use user::{UserCommand, UserEvent, UserState};

//! strata's domain: what Speckle's data means, as pure functions over events.
//!
//! Architecture invariant: this crate does no IO, is not async, and knows nothing of SQL,
//! HTTP or GraphQL. Storage and transport crates depend on it, never the other way round.
//! CI checks the dependency list (`deploy/check-boundaries`).

pub mod event;
pub mod ids;
pub mod upcast;

pub use event::{EventMetadata, NewEvent};
pub use ids::{StreamId, StreamIdError};
pub use upcast::{UpcastError, Upcaster, Upcasters};

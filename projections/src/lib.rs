//! The projector runtime and the read models it maintains.
//!
//! A projection is a name, the tables it owns, and a handler that folds a batch of events into
//! them. The runtime reads the log from the projection's checkpoint and writes the new
//! checkpoint in the same transaction as the handler's writes, so a crash anywhere leaves
//! tables and checkpoint consistent.
//!
//! Architecture invariants: projections read the event log and write only their own tables
//! and reaction-job rows; they never call external systems. Handlers derive every value from
//! the events (never from the clock), so a rebuild produces the same tables as the live fold.

pub mod local;
pub mod mail;
pub mod projection;
pub mod rebuild;
pub mod runtime;
pub mod speckle;
pub mod status;
pub mod streams;
pub mod wait;
pub mod webhooks;

use std::sync::Arc;

pub use projection::{
    Applied, Batch, Projection, ProjectionError, TableDef, definition, fold, follows, install,
    missing_tables, needs_rebuild,
};
pub use rebuild::{RebuildOptions, RebuildReport, rebuild};
pub use runtime::{ProjectorRuntime, RuntimeOptions};
pub use status::{ProjectionStatus, status};
pub use wait::{ProjectionLag, Waiter, checkpoint_of, wait_for};

/// The projections among `names` that fold the events of `stream_id` and that commands wait
/// for ([`Projection::awaited`]): those a read-your-writes wait after an append to that
/// stream must wait for. A name not in [`registry`] is kept (the wait then reports it
/// unknown).
pub fn following<'a>(names: &[&'a str], stream_id: &str) -> Vec<&'a str> {
    static REGISTERED: std::sync::LazyLock<Vec<Arc<dyn Projection>>> =
        std::sync::LazyLock::new(registry);
    names
        .iter()
        .copied()
        .filter(|name| {
            REGISTERED
                .iter()
                .find(|p| p.name() == *name)
                .is_none_or(|p| p.awaited() && projection::follows(p.as_ref(), stream_id))
        })
        .collect()
}

/// Every read model the product serves, in the order they are installed.
pub fn registry() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(streams::StreamHeads),
        Arc::new(speckle::SpeckleReadModel),
        Arc::new(webhooks::WebhooksProjection),
        Arc::new(mail::MailProjection),
    ]
}

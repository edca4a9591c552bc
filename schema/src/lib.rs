//! Every schema strata exposes, and the code that reads and writes the event log.
//!
//! Architecture invariant: this crate knows tables, not business rules. It stores whatever
//! events `domain` decides; it never decides anything itself.

pub mod audit;
pub mod chain;
pub mod event_log;
pub mod files;
pub mod jobs;
pub mod live;
pub mod monitor;
pub mod objects;
pub mod personal;
pub mod previews;
pub mod session;
pub mod snapshots;
pub mod trace;
pub mod wakeups;
pub mod webhooks;

pub use event_log::{
    AppendError, AppendLimits, AppendRequest, Appended, ChainBreak, ChainReport, EventLog,
    ExpectedVersion, HeadCounts, HorizonStats, LockedCheckpoint, LogCursor, ProcessedCommand,
    RecordedEvent,
};

/// The embedded SQL migrations, applied by `strata migrate` and at the start of `strata all`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Applies every pending migration to the database (or schema, through `search_path`) of `pool`.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

//! The projector runtime and the read models it maintains.
//!
//! Architecture invariant: projections read the event log and write only their own tables
//! (and reaction-job rows); they never call external systems.

//! Reactions to events: webhook delivery, previews, file imports, email.
//!
//! Architecture invariant: workers change state only by sending commands; they never write
//! read-model tables or the event log directly.

//! The `strata` process: the HTTP and GraphQL API, command handling, and the wiring that runs
//! projectors and workers in the same binary.
//!
//! Architecture invariant: the API writes only by appending events; read-model tables are
//! written by `projections` alone.

pub mod accounts;
pub mod app;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod coalesce;
pub mod commands;
pub mod config;
pub mod context;
pub mod dbgate;
pub mod error;
pub mod graphql;
pub mod http;
pub mod ingestion;
pub mod metrics;
pub mod objects;
pub mod previews;
pub mod ratelimit;
pub mod realtime;
pub mod telemetry;
pub mod web;
pub mod webhooks;

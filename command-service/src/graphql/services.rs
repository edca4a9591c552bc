//! What a resolver may use. [`super::request_data`] puts each service into a request's data
//! under its own type, and resolvers ask for the ones they need: the read-model pool, the
//! command bus, the account service, the realtime hub, the event log (history), the file
//! store, the rate limiter and the settings. The process's `AppState` (Redis, metrics, the
//! database gate, the response cache, the schema itself) is not among them, so a resolver
//! cannot reach past what it needs; `deploy/check-boundaries` refuses `AppState` in
//! `graphql/` outside the two entry points (`mod.rs`, `ws.rs`).

use std::sync::Arc;

use async_graphql::Context;
use sqlx::PgPool;

use crate::accounts::Accounts;
use crate::app::AppState;
use crate::blobs::{FileStore, Store};
use crate::commands::CommandBus;
use crate::config::Settings;
use crate::error::ApiResult;
use crate::ratelimit::Limiter;
use crate::realtime::Hub;

/// Puts every service a resolver may use into `data`.
pub(crate) fn insert_into(state: &AppState, data: &mut async_graphql::Data) {
    data.insert(state.pool().clone());
    data.insert(state.bus().clone());
    data.insert(state.accounts().clone());
    data.insert(state.hub().clone());
    data.insert(state.event_log().clone());
    data.insert(state.limiter().clone());
    data.insert(state.shared_settings());
    data.insert(FileStore(state.blobs().cloned()));
}

/// The read models' pool (writes go through the bus or the account service).
pub(crate) fn pool<'a>(ctx: &Context<'a>) -> ApiResult<&'a PgPool> {
    Ok(ctx.data::<PgPool>()?)
}

/// The command bus.
pub(crate) fn bus<'a>(ctx: &Context<'a>) -> ApiResult<&'a CommandBus> {
    Ok(ctx.data::<CommandBus>()?)
}

/// The account service.
pub(crate) fn accounts<'a>(ctx: &Context<'a>) -> ApiResult<&'a Accounts> {
    Ok(ctx.data::<Accounts>()?)
}

/// This process's live events.
pub(crate) fn hub<'a>(ctx: &Context<'a>) -> ApiResult<&'a Hub> {
    Ok(ctx.data::<Hub>()?)
}

/// The event log (history and replays).
pub(crate) fn event_log<'a>(ctx: &Context<'a>) -> ApiResult<&'a schema::EventLog> {
    Ok(ctx.data::<schema::EventLog>()?)
}

/// The rate limiter.
pub(crate) fn limiter<'a>(ctx: &Context<'a>) -> ApiResult<&'a Limiter> {
    Ok(ctx.data::<Limiter>()?)
}

/// The settings the process started with.
pub(crate) fn settings<'a>(ctx: &Context<'a>) -> ApiResult<&'a Settings> {
    Ok(ctx.data::<Arc<Settings>>()?)
}

/// The file store, when one is configured.
pub(crate) fn blobs<'a>(ctx: &Context<'a>) -> ApiResult<Option<&'a Store>> {
    Ok(ctx.data::<FileStore>()?.0.as_ref())
}

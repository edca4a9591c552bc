//! Realtime: live events for GraphQL subscriptions, fanned out through Redis pub/sub.
//!
//! - The [`Publisher`] runs beside the projectors (one at a time per database, under an
//!   advisory lock). It follows the event log only as far as the `speckle` read model has
//!   applied it, so a client that re-queries on a message sees the change, and publishes each
//!   event to one Redis channel per database schema. Mutation code never publishes.
//! - Each API process runs a [`Hub`]: one Redis subscription feeding a bounded broadcast
//!   channel that every subscription on that process reads. A subscriber that falls more than
//!   the buffer behind loses its subscription (and its connection is closed with a reason);
//!   nobody else waits for it and memory stays bounded.
//!
//! Subscriptions are live only: events published while a client is not connected are not
//! replayed (as in the original).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fred::prelude::{ClientLike, EventInterface, PubsubInterface};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::{Secret, Settings};

/// One event as subscribers see it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveEvent {
    /// Global log position.
    pub position: i64,
    /// The stream, e.g. `project:abc`.
    pub stream_id: String,
    /// Event type name.
    pub event_type: String,
    /// Payload, as stored.
    pub payload: serde_json::Value,
    /// The payload's schema version, as stored ([`Self::project_event`] upcasts from it).
    #[serde(default = "first_schema_version")]
    pub schema_version: u32,
    /// The acting user, if any.
    pub actor_user_id: Option<String>,
    /// The project's read-model row as the publisher saw it right after the event was
    /// applied (null once deleted): subscribers answer `project { … }` from it instead of
    /// each querying the database.
    #[serde(default)]
    pub project: Option<serde_json::Value>,
}

impl LiveEvent {
    /// The project id, for project events.
    pub fn project_id(&self) -> Option<&str> {
        self.stream_id
            .strip_prefix(domain::project::STREAM_CATEGORY)
            .and_then(|s| s.strip_prefix(':'))
    }

    /// The decoded project event, for project streams.
    pub fn project_event(&self) -> Option<domain::ProjectEvent> {
        self.project_id()?;
        domain::ProjectEvent::decode(&self.event_type, self.schema_version, self.payload.clone())
            .ok()
    }
}

impl LiveEvent {
    /// The decoded ingestion event, for ingestion streams.
    pub fn ingestion_event(&self) -> Option<domain::IngestionEvent> {
        let category = self.stream_id.split_once(':').map(|(c, _)| c);
        if category != Some(domain::ingestion::STREAM_CATEGORY) {
            return None;
        }
        domain::IngestionEvent::decode(&self.event_type, self.schema_version, self.payload.clone())
            .ok()
    }
}

/// The stream category of preview announcements: not events of the log, but published on
/// the same channel by the preview worker once a version's images are stored.
pub const PREVIEW_CATEGORY: &str = "preview";
/// Their event type.
pub const PREVIEW_GENERATED: &str = "PreviewGenerated";

impl LiveEvent {
    /// The announcement that the preview of `object_id` in `project_id` is stored.
    pub fn preview_generated(project_id: &str, object_id: &str) -> Self {
        Self {
            position: 0,
            stream_id: format!("{PREVIEW_CATEGORY}:{project_id}"),
            event_type: PREVIEW_GENERATED.to_owned(),
            payload: serde_json::json!({"projectId": project_id, "objectId": object_id}),
            schema_version: 1,
            actor_user_id: None,
            project: None,
        }
    }

    /// `(project, object)` of a preview announcement.
    pub fn preview(&self) -> Option<(&str, &str)> {
        let project = self
            .stream_id
            .strip_prefix(PREVIEW_CATEGORY)?
            .strip_prefix(':')?;
        if self.event_type != PREVIEW_GENERATED {
            return None;
        }
        Some((project, self.payload.get("objectId")?.as_str()?))
    }
}

fn first_schema_version() -> u32 {
    1
}

/// The Redis channel of this database schema's events.
pub async fn channel(pool: &PgPool) -> Result<String, sqlx::Error> {
    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await?;
    Ok(format!("strata:{schema}:live"))
}

/// How long after an append (or a publish) the read model's checkpoint is polled closely.
const HOT_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
/// The fallback poll while nothing is announced.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Aborts a task when dropped (the listener must not outlive a lost leadership).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Publishes applied events to Redis.
pub struct Publisher {
    pool: PgPool,
    redis: fred::clients::Client,
    poll: Duration,
}

impl Publisher {
    /// A publisher over `pool`, publishing through `redis`.
    pub fn new(pool: PgPool, redis: fred::clients::Client) -> Self {
        Self {
            pool,
            redis,
            poll: Duration::from_millis(5),
        }
    }

    /// Publishes until cancelled. Waits as a standby while another process holds the lock.
    pub async fn run(self, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            if let Err(e) = self.lead(&cancel).await {
                tracing::warn!(error = %e, "realtime publisher stopped; restarting");
            }
            tokio::select! {
                () = cancel.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn lead(&self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let mut lock = self.pool.acquire().await?;
        let held: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext(current_schema() || ':realtime'))",
        )
        .fetch_one(&mut *lock)
        .await?;
        if !held {
            return Ok(());
        }
        let channel = channel(&self.pool).await?;
        let log = schema::EventLog::new(self.pool.clone());
        // Resume where the last leader stopped (it may have died with applied events not yet
        // published); the very first leader starts at the read model.
        let mut cursor = match schema::live::published(&self.pool, &channel).await? {
            Some(cursor) => cursor,
            None => projections::checkpoint_of(&self.pool, projections::speckle::NAME).await?,
        };
        tracing::info!(%channel, %cursor, "realtime publisher leading");
        // Appends are announced; after one, the read model is polled closely for a while (it
        // applies the event a few milliseconds later), otherwise the publisher sleeps.
        let (wake_tx, mut wake_rx) = tokio::sync::watch::channel(0u64);
        let listening = tokio::spawn(schema::wakeups::listen(
            self.pool.clone(),
            schema::wakeups::EVENTS_CHANNEL,
            wake_tx,
            cancel.clone(),
        ));
        let _stop_listening = AbortOnDrop(listening);
        let mut hot_until = std::time::Instant::now() + HOT_WINDOW;
        // When the read model's runner is in this process, its commits wake this loop and the
        // database is asked only after a quiet while (the runner may have gone to another
        // process); otherwise the read model is polled as below.
        let local = projections::local::of(&self.pool).await.ok();
        let mut here = local.as_ref().map(|l| l.subscribe());
        let mut ask_database = true;
        while !cancel.is_cancelled() {
            if let Some(here) = here.as_mut() {
                here.borrow_and_update();
            }
            let here_at = local
                .as_ref()
                .and_then(|l| l.get(projections::speckle::NAME));
            let applied = match here_at {
                Some(at) if at > cursor || !ask_database => at,
                _ => projections::checkpoint_of(&self.pool, projections::speckle::NAME).await?,
            };
            if applied <= cursor {
                if let (Some(_), Some(rx)) = (here_at, here.as_mut()) {
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        // The sender lives as long as the process: never an error.
                        changed = rx.changed() => ask_database = changed.is_err(),
                        () = tokio::time::sleep(IDLE_POLL) => ask_database = true,
                    }
                } else if std::time::Instant::now() < hot_until {
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = tokio::time::sleep(self.poll) => {}
                    }
                } else {
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        _ = wake_rx.changed() => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                    }
                    hot_until = std::time::Instant::now() + HOT_WINDOW;
                }
                continue;
            }
            hot_until = std::time::Instant::now() + HOT_WINDOW;
            let events = log.read_all(cursor, 500).await?;
            for e in events.iter().filter(|e| e.cursor <= applied) {
                let mut live = LiveEvent {
                    position: e.cursor.position,
                    stream_id: e.stream_id.clone(),
                    event_type: e.event_type.clone(),
                    payload: e.payload.clone(),
                    // The log's CHECK keeps it >= 1.
                    schema_version: u32::try_from(e.schema_version).unwrap_or(0),
                    actor_user_id: e.metadata.actor_user_id.clone(),
                    project: None,
                };
                if let Some(project_id) = live.project_id() {
                    live.project =
                        sqlx::query_scalar("SELECT to_jsonb(p) FROM projects p WHERE id = $1")
                            .bind(project_id)
                            .fetch_optional(&self.pool)
                            .await?;
                }
                let text = serde_json::to_string(&live)?;
                let _: i64 = self
                    .redis
                    .publish(channel.as_str(), text)
                    .await
                    .context("publishing to Redis")?;
                cursor = e.cursor;
            }
            if events.iter().all(|e| e.cursor > applied) {
                cursor = applied;
            }
            schema::live::record(&self.pool, &channel, cursor).await?;
        }
        // The lock is the session's: give it up before the connection goes back to the pool,
        // so a standby takes over at once.
        sqlx::query("SELECT pg_advisory_unlock(hashtext(current_schema() || ':realtime'))")
            .execute(&mut *lock)
            .await?;
        Ok(())
    }
}

/// This process's view of the live events.
#[derive(Clone)]
pub struct Hub {
    sender: broadcast::Sender<Arc<LiveEvent>>,
    active: Arc<std::sync::atomic::AtomicI64>,
    /// The Redis subscription's state: while it is down, events published meanwhile never
    /// reach this process, so live subscriptions are closed (and refused) rather than left
    /// silently missing events.
    link: tokio::sync::watch::Sender<Link>,
}

/// The state of a hub's Redis subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Not connected yet since the process started.
    Connecting,
    /// Subscribed: live events arrive.
    Up,
    /// Lost (or never reached); reconnecting.
    Down,
}

/// Why live subscriptions are closed, and refused, while Redis is unreachable.
pub const REDIS_DOWN: &str =
    "live events are unavailable: Redis is unreachable; subscribe again later";

/// One subscriber's receiver; counted as active until dropped.
pub struct LiveReceiver {
    /// The events.
    pub receiver: broadcast::Receiver<Arc<LiveEvent>>,
    active: Arc<std::sync::atomic::AtomicI64>,
}

impl Drop for LiveReceiver {
    fn drop(&mut self) {
        self.active
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Hub {
    /// Starts the Redis subscription feeding the hub; `buffer` events per subscriber at most.
    pub fn start(settings: &Settings, pool: PgPool, buffer: usize) -> Self {
        let (sender, _) = broadcast::channel(buffer.max(1));
        let hub = Self {
            sender,
            active: Arc::default(),
            link: tokio::sync::watch::Sender::new(Link::Connecting),
        };
        if let Some(url) = settings.redis_url.clone() {
            let (sender, link) = (hub.sender.clone(), hub.link.clone());
            let reconnect_max_ms = settings.redis_reconnect_max_ms;
            tokio::spawn(async move {
                // The client reconnects by itself once connected; a first connection that
                // fails is tried again here.
                loop {
                    match feed(
                        url.clone(),
                        pool.clone(),
                        sender.clone(),
                        &link,
                        reconnect_max_ms,
                    )
                    .await
                    {
                        Ok(()) => return,
                        Err(e) => {
                            link.send_replace(Link::Down);
                            tracing::warn!(error = %e, "the realtime hub cannot reach Redis; trying again");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
            });
        } else {
            hub.link.send_replace(Link::Down);
        }
        hub
    }

    /// The state of the Redis subscription now.
    pub fn link(&self) -> Link {
        *self.link.borrow()
    }

    /// Resolves once live events stop reaching this process (at once when they do not now).
    pub async fn lost(&self) {
        let mut watch = self.link.subscribe();
        // An error means the hub is gone: as lost as it gets.
        let _ = watch.wait_for(|l| *l == Link::Down).await;
    }

    /// A receiver of every later event.
    pub fn subscribe(&self) -> LiveReceiver {
        let receiver = self.sender.subscribe();
        self.active
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        LiveReceiver {
            receiver,
            active: self.active.clone(),
        }
    }

    /// Subscriptions receiving events on this process now (`strata_live_subscriptions`).
    pub fn active(&self) -> i64 {
        self.active.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn feed(
    url: Secret,
    pool: PgPool,
    sender: broadcast::Sender<Arc<LiveEvent>>,
    link: &tokio::sync::watch::Sender<Link>,
    reconnect_max_ms: u64,
) -> anyhow::Result<()> {
    let config = fred::prelude::Config::from_url(url.expose()).context("Redis URL")?;
    let client = fred::prelude::Builder::from_config(config)
        .set_policy(crate::app::reconnect_policy(reconnect_max_ms))
        .build_subscriber_client()?;
    let mut messages = client.message_rx();
    // A lost connection is an error event; a new one (the first too) a reconnect event, after
    // which `manage_subscriptions` subscribes again.
    let down = link.clone();
    let errors = client.on_error(move |(e, _)| {
        tracing::warn!(error = %e, "the realtime hub lost Redis; closing live subscriptions");
        down.send_replace(Link::Down);
        async { Ok(()) }
    });
    let up = link.clone();
    let reconnects = client.on_reconnect(move |_| {
        up.send_replace(Link::Up);
        async { Ok(()) }
    });
    // The listeners end with this attempt.
    let _listeners = (AbortOnDrop(errors), AbortOnDrop(reconnects));
    client
        .init()
        .await
        .context("connecting the Redis subscriber")?;
    // Resubscribes after a reconnect.
    let _resubscribe = client.manage_subscriptions();
    let channel = channel(&pool).await?;
    client.subscribe(channel.as_str()).await?;
    link.send_replace(Link::Up);
    loop {
        match messages.recv().await {
            Ok(message) => {
                let Some(text) = message.value.as_str() else {
                    continue;
                };
                match serde_json::from_str::<LiveEvent>(&text) {
                    // No receivers is fine: nobody is subscribed right now.
                    Ok(event) => drop(sender.send(Arc::new(event))),
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed live event"),
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "the realtime hub fell behind Redis");
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        }
    }
}

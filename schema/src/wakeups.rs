//! LISTEN/NOTIFY as a wake-up hint. The notifications' payload is the schema name, so several
//! schemas (one per test) can share a channel; only this pool's schema wakes the listener.
//! Every consumer also polls: a lost notification costs latency, never correctness.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The channel appends are announced on.
pub const EVENTS_CHANNEL: &str = "strata_events";
/// The channel new jobs are announced on.
pub const JOBS_CHANNEL: &str = "strata_jobs";
/// The channel projectors announce moved checkpoints on (read-your-writes waits listen).
pub const CHECKPOINTS_CHANNEL: &str = "strata_checkpoints";

/// This process's own wake-ups on `channel`: a writer in the same process as a listener (the
/// API and the projectors of `strata all`) wakes it without a round trip through PostgreSQL.
/// They carry no schema, so the schemas of one process (tests) wake each other's listeners,
/// which then find nothing new: a wake-up is a hint, never a fact.
fn local(channel: &str) -> Option<&'static watch::Sender<u64>> {
    static EVENTS: std::sync::LazyLock<watch::Sender<u64>> =
        std::sync::LazyLock::new(|| watch::Sender::new(0));
    static CHECKPOINTS: std::sync::LazyLock<watch::Sender<u64>> =
        std::sync::LazyLock::new(|| watch::Sender::new(0));
    match channel {
        EVENTS_CHANNEL => Some(&EVENTS),
        CHECKPOINTS_CHANNEL => Some(&CHECKPOINTS),
        _ => None,
    }
}

/// This process's mark, sent after the schema in the notifications it also delivers locally
/// (`"<schema> <origin>"`): its own listeners, already woken by [`wake_local`], skip them, so
/// one append wakes each listener here once instead of twice.
pub fn origin() -> &'static str {
    static ORIGIN: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());
    &ORIGIN
}

/// Wakes this process's listeners on `channel` at once (the database's notification, sent as
/// well, reaches the other processes).
pub fn wake_local(channel: &str) {
    if let Some(sender) = local(channel) {
        sender.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Whether a notification with `payload` wakes a listener of `schema`: not when it is another
/// schema's, nor when this process sent it and the listener was woken locally already.
fn wakes(payload: &str, schema: &str, woken_locally: bool) -> bool {
    let (to, from) = match payload.split_once(' ') {
        Some((to, from)) => (to, Some(from)),
        None => (payload, None),
    };
    to == schema && !(woken_locally && from == Some(origin()))
}

/// The stream of this process's latest append, with how many appends it announced: a hint
/// for its projectors, which then need not ask the log whether the event is theirs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalAppend {
    /// Appends announced by this process so far.
    pub count: u64,
    /// The stream of the latest.
    pub stream: String,
}

static LAST_LOCAL_APPEND: std::sync::Mutex<LocalAppend> = std::sync::Mutex::new(LocalAppend {
    count: 0,
    stream: String::new(),
});

/// Records that this process appended to `stream` and wakes its listeners on
/// [`EVENTS_CHANNEL`]. A record, like the wake-up, carries no schema (tests share a process).
pub fn appended_locally(stream: &str) {
    if let Ok(mut last) = LAST_LOCAL_APPEND.lock() {
        last.count = last.count.wrapping_add(1);
        stream.clone_into(&mut last.stream);
    }
    wake_local(EVENTS_CHANNEL);
}

/// The latest local append when this process has appended since `seen` (which it moves),
/// else `None`: a wake-up with nothing local since came from elsewhere.
pub fn local_append_since(seen: &mut u64) -> Option<String> {
    let last = LAST_LOCAL_APPEND.lock().ok()?;
    if last.count == *seen {
        return None;
    }
    *seen = last.count;
    Some(last.stream.clone())
}

/// How many appends this process has announced ([`local_append_since`] starts from it).
pub fn local_appends() -> u64 {
    LAST_LOCAL_APPEND.lock().map(|l| l.count).unwrap_or(0)
}

/// Bumps `wake` on every notification on `channel` for this pool's schema, and on this
/// process's own wake-ups ([`wake_local`]), reconnecting after failures, until `cancel` fires.
pub async fn listen(
    pool: PgPool,
    channel: &'static str,
    wake: watch::Sender<u64>,
    cancel: CancellationToken,
) {
    listen_to(pool, channel, wake, cancel, false).await;
}

/// Bumps `wake` on the notifications on `channel` for this pool's schema that other
/// processes sent, for a consumer that learns of this process's own changes another way (a
/// read-your-writes wait, from the local record its projectors keep): it is then neither
/// woken twice for each, nor sent to the database to ask what it knows.
pub async fn listen_remote(
    pool: PgPool,
    channel: &'static str,
    wake: watch::Sender<u64>,
    cancel: CancellationToken,
) {
    listen_to(pool, channel, wake, cancel, true).await;
}

async fn listen_to(
    pool: PgPool,
    channel: &'static str,
    wake: watch::Sender<u64>,
    cancel: CancellationToken,
    remote_only: bool,
) {
    while !cancel.is_cancelled() {
        let result: Result<(), sqlx::Error> = async {
            let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
                .fetch_one(&pool)
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(channel).await?;
            let mut here = local(channel)
                .filter(|_| !remote_only)
                .map(watch::Sender::subscribe);
            loop {
                tokio::select! {
                    n = listener.recv() => {
                        if !wakes(n?.payload(), &schema, remote_only || here.is_some()) {
                            continue;
                        }
                    }
                    changed = async { here.as_mut()?.changed().await.ok() }, if here.is_some() => {
                        if changed.is_none() {
                            here = None;
                        }
                    }
                    () = cancel.cancelled() => return Ok(()),
                }
                wake.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(channel, error = %e, "notifications lost; relying on polling until reconnected");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = cancel.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_wakes_its_schema_once_per_process() {
        let here = format!("s1 {}", origin());
        let table = [
            // (payload, listener's schema, woken locally, wakes)
            ("s1", "s1", true, true),
            ("s1", "s2", true, false),
            ("s1 elsewhere", "s1", true, true),
            ("s1 elsewhere", "s2", true, false),
            (here.as_str(), "s1", true, false),
            (here.as_str(), "s1", false, true),
            (here.as_str(), "s2", false, false),
        ];
        for (payload, schema, local, expected) in table {
            assert_eq!(
                wakes(payload, schema, local),
                expected,
                "{payload:?} to a listener of {schema:?} (woken locally: {local})"
            );
        }
    }
}

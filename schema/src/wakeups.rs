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

/// Bumps `wake` on every notification on `channel` for this pool's schema, reconnecting after
/// failures, until `cancel` fires.
pub async fn listen(
    pool: PgPool,
    channel: &'static str,
    wake: watch::Sender<u64>,
    cancel: CancellationToken,
) {
    while !cancel.is_cancelled() {
        let result: Result<(), sqlx::Error> = async {
            let schema: String = sqlx::query_scalar("SELECT current_schema()::text")
                .fetch_one(&pool)
                .await?;
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(channel).await?;
            loop {
                let note = tokio::select! {
                    n = listener.recv() => n?,
                    () = cancel.cancelled() => return Ok(()),
                };
                if note.payload() == schema {
                    wake.send_modify(|n| *n = n.wrapping_add(1));
                }
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

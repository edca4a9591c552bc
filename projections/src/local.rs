//! Checkpoints as this process's projectors committed them, so a read-your-writes wait and the
//! live publisher in the same process learn that a checkpoint moved without asking the
//! database (`strata all` runs API, projectors and publisher in one process; a command used to
//! read `projection_checkpoints` two or three times while it waited, and the publisher polled
//! it every 5 ms while commands came in).
//!
//! Kept per log (database and schema), since one process may serve several (the tests do).
//! A value here is a lower bound of the stored checkpoint, because checkpoints never move
//! backwards (a rebuild's swap catches up past the live checkpoint first): "here at or past X"
//! means "stored at or past X". The reverse does not hold: a projection run by another process,
//! or by this one before it lost the projection to another, is behind here or missing, so
//! readers fall back to the stored checkpoint when this one does not answer.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use schema::LogCursor;
use sqlx::PgPool;
use tokio::sync::watch;

/// One log's checkpoints as this process moved them.
#[derive(Debug)]
pub struct LocalCheckpoints {
    at: Mutex<HashMap<&'static str, LogCursor>>,
    moved: watch::Sender<u64>,
}

impl LocalCheckpoints {
    fn new() -> Self {
        Self {
            at: Mutex::new(HashMap::new()),
            moved: watch::Sender::new(0),
        }
    }

    /// Records that `projection`'s checkpoint is now `cursor` (committed) and wakes the readers.
    pub fn advanced(&self, projection: &'static str, cursor: LogCursor) {
        {
            let mut at = self.at.lock().unwrap_or_else(PoisonError::into_inner);
            let entry = at.entry(projection).or_insert(cursor);
            *entry = (*entry).max(cursor);
        }
        self.moved.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Where `projection` is known to be, at least; `None` when this process has not moved it.
    pub fn get(&self, projection: &str) -> Option<LogCursor> {
        self.at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(projection)
            .copied()
    }

    /// Whether every one of `names` is known here to be at or past `target`.
    pub fn all_at(&self, names: &[&str], target: LogCursor) -> bool {
        names
            .iter()
            .all(|n| self.get(n).is_some_and(|c| c >= target))
    }

    /// Changes whenever a checkpoint moves here.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.moved.subscribe()
    }
}

/// The checkpoints of the log `pool` reads (its database and schema).
pub async fn of(pool: &PgPool) -> Result<Arc<LocalCheckpoints>, sqlx::Error> {
    static LOGS: LazyLock<Mutex<HashMap<String, Arc<LocalCheckpoints>>>> =
        LazyLock::new(Default::default);
    let key: String = sqlx::query_scalar("SELECT current_database() || '.' || current_schema()")
        .fetch_one(pool)
        .await?;
    let mut logs = LOGS.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(logs
        .entry(key)
        .or_insert_with(|| Arc::new(LocalCheckpoints::new()))
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: i64) -> LogCursor {
        LogCursor {
            position,
            ..LogCursor::START
        }
    }

    #[test]
    fn a_checkpoint_here_only_moves_forward_and_wakes_its_readers() {
        let local = LocalCheckpoints::new();
        let mut moved = local.subscribe();
        assert!(!local.all_at(&["speckle"], at(1)));
        local.advanced("speckle", at(5));
        assert!(moved.has_changed().unwrap_or(false));
        moved.borrow_and_update();
        // A late report of an older position does not move it back.
        local.advanced("speckle", at(3));
        assert_eq!(local.get("speckle"), Some(at(5)));
        assert!(local.all_at(&["speckle"], at(5)));
        assert!(!local.all_at(&["speckle", "webhooks"], at(5)));
        local.advanced("webhooks", at(6));
        assert!(local.all_at(&["speckle", "webhooks"], at(5)));
        assert!(!local.all_at(&["speckle", "webhooks"], at(6)));
    }
}

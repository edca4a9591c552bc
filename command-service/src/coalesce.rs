//! Shared reads of a value that changes under us (a checkpoint, a revocation epoch).
//!
//! Each caller gets a value read by a round trip that *started after it asked*, so a reader
//! never sees anything older than the moment its request arrived; callers that ask while a
//! read is in flight share the next one. Under load one round trip serves every request that
//! arrived during the previous one, instead of one round trip each.

use std::sync::{Arc, Mutex, Once};

use futures::future::BoxFuture;
use tokio::sync::{Notify, oneshot};

type Read<T> = Box<dyn Fn() -> BoxFuture<'static, T> + Send + Sync>;

/// A value read on demand, one round trip per wave of callers.
pub struct SharedRead<T> {
    read: Read<T>,
    waiting: Mutex<Vec<oneshot::Sender<T>>>,
    wake: Notify,
    started: Once,
}

impl<T: Clone + Send + 'static> SharedRead<T> {
    /// Reads with `read`; the task that runs it starts on first use.
    pub fn new(read: impl Fn() -> BoxFuture<'static, T> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            read: Box::new(read),
            waiting: Mutex::new(Vec::new()),
            wake: Notify::new(),
            started: Once::new(),
        })
    }

    /// The value, as read after this call began.
    pub async fn get(self: &Arc<Self>) -> T {
        self.started.call_once(|| {
            tokio::spawn(Arc::clone(self).serve());
        });
        let (reply, answer) = oneshot::channel();
        let queued = match self.waiting.lock() {
            Ok(mut waiting) => {
                waiting.push(reply);
                true
            }
            Err(_) => false,
        };
        if queued {
            self.wake.notify_one();
            if let Ok(value) = answer.await {
                return value;
            }
        }
        // The task is gone (runtime shutting down) or the queue is poisoned: read alone.
        (self.read)().await
    }

    async fn serve(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            loop {
                let batch = match self.waiting.lock() {
                    Ok(mut waiting) => std::mem::take(&mut *waiting),
                    Err(_) => return,
                };
                if batch.is_empty() {
                    break;
                }
                let value = (self.read)().await;
                for reply in batch {
                    let _ = reply.send(value.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn every_caller_sees_a_read_that_began_after_it_asked() {
        // The "store" counts writes; each read reports how many writes had happened when it
        // started, after a pause in which more callers arrive.
        let writes = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        let shared = {
            let writes = writes.clone();
            let reads = reads.clone();
            SharedRead::new(move || {
                let writes = writes.clone();
                let reads = reads.clone();
                Box::pin(async move {
                    reads.fetch_add(1, Ordering::SeqCst);
                    let seen = writes.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    seen
                })
            })
        };
        let mut callers = Vec::new();
        for _ in 0..64 {
            writes.fetch_add(1, Ordering::SeqCst);
            let written_before_asking = writes.load(Ordering::SeqCst);
            let shared = shared.clone();
            callers.push(tokio::spawn(async move {
                let seen = shared.get().await;
                assert!(
                    seen >= written_before_asking,
                    "read {seen} writes, {written_before_asking} happened before asking"
                );
            }));
            tokio::time::sleep(Duration::from_micros(300)).await;
        }
        for c in callers {
            c.await.expect("caller");
        }
        let reads = reads.load(Ordering::SeqCst);
        assert!(
            reads < 64,
            "{reads} reads served 64 callers: nothing was shared"
        );
    }
}

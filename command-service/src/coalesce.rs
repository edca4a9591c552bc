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

    use tokio::sync::Semaphore;

    use super::*;

    /// Waits (bounded) until `done` holds; the test drives the reader step by step.
    async fn until(done: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !done() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the state was reached");
    }

    #[tokio::test]
    async fn callers_that_ask_during_a_read_share_the_next_one_not_that_one() {
        // The "store" counts writes; a read reports how many it saw when it began, then waits
        // for the test to let it finish.
        let writes = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let shared = {
            let (writes, reads, gate) = (writes.clone(), reads.clone(), gate.clone());
            SharedRead::new(move || {
                let (writes, reads, gate) = (writes.clone(), reads.clone(), gate.clone());
                Box::pin(async move {
                    reads.fetch_add(1, Ordering::SeqCst);
                    let seen = writes.load(Ordering::SeqCst);
                    gate.acquire().await.expect("gate open").forget();
                    seen
                })
            })
        };
        let ask = |written_before_asking: u64| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let seen = shared.get().await;
                assert!(
                    seen >= written_before_asking,
                    "read saw {seen} writes, {written_before_asking} happened before asking"
                );
            })
        };
        writes.fetch_add(1, Ordering::SeqCst);
        let mut callers = vec![ask(1)];
        until(|| reads.load(Ordering::SeqCst) == 1).await;
        // While that read is in flight, 63 more writes and callers.
        for n in 2..=64 {
            writes.fetch_add(1, Ordering::SeqCst);
            callers.push(ask(n));
        }
        until(|| {
            shared
                .waiting
                .lock()
                .map(|w| w.len() == 63)
                .unwrap_or(false)
        })
        .await;
        gate.add_permits(2);
        for c in callers {
            c.await
                .expect("every caller saw a read begun after it asked");
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "the 63 callers shared one read"
        );
    }
}

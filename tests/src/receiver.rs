//! A webhook receiver for tests and the benchmark: a real HTTP server on loopback that
//! records every request, answers with a status chosen by the test, and can hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Header values by lower-case name.
    pub headers: HeaderMap,
    /// The exact body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// A header as text.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

struct Shared {
    received: std::sync::Mutex<Vec<Received>>,
    arrived: Notify,
    status: AtomicU16,
    hang: AtomicBool,
}

/// The running receiver.
#[derive(Clone)]
pub struct WebhookReceiver {
    shared: Arc<Shared>,
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    task: Arc<tokio::task::JoinHandle<()>>,
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let hang = shared.hang.load(Ordering::SeqCst);
    shared
        .received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Received {
            headers,
            body,
            at: Instant::now(),
        });
    shared.arrived.notify_waiters();
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    StatusCode::from_u16(shared.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

impl WebhookReceiver {
    /// Starts on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        Self::on(listener)
    }

    /// Starts on `port` (to come back up where a stopped receiver was).
    pub async fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind");
        Self::on(listener)
    }

    fn on(listener: TcpListener) -> Self {
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            received: std::sync::Mutex::new(Vec::new()),
            arrived: Notify::new(),
            status: AtomicU16::new(200),
            hang: AtomicBool::new(false),
        });
        let router = axum::Router::new()
            .route("/hook", post(hook))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            shared,
            url,
            task: Arc::new(task),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// Stops listening (connections are then refused).
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Answers every later request with `status`.
    pub fn respond_with(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// Makes later requests hang (or not).
    pub fn hang(&self, hang: bool) {
        self.shared.hang.store(hang, Ordering::SeqCst);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The `payload.event.data.id` of every delivery so far, in arrival order (the entity a
    /// webhook event is about: a model's id for `branch_create`).
    pub fn delivered_ids(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter_map(|r| {
                r.json()["payload"]["event"]["data"]["id"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Waits until at least `n` requests have arrived; panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.shared.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "expected {n} webhook requests within {within:?}, got {}",
                    self.received().len()
                );
            }
        }
    }
}

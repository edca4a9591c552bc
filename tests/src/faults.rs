//! The fault suite: the whole system under a bounded mixed load while its backing services
//! fail, one at a time and then together, with a checker that compares what the clients were
//! told with what the server holds afterwards. Shared by the test suite (short outages) and
//! the benchmark binary's `faults` mode (the long ones, and the table for the notes).
//!
//! The suite owns every service it breaks, so it never disturbs anything else on the machine:
//! a durable PostgreSQL cluster ([`crate::pg::Cluster`]), a `redis-server`, a `strata all`
//! process of the given binary, and TCP proxies ([`TcpProxy`]) in front of the shared S3 and
//! SMTP servers, which it cuts to take them away.
//!
//! The load, per client and round: a model create and a version create (GraphQL, each with
//! an `Idempotency-Key` and sent again with it until acknowledged, as a careful client does),
//! an object batch (`POST /objects`, content-addressed, so sent again until stored), a file
//! upload (`POST /api/stream/:id/blob`, to S3; sent once), and a verification mail request
//! for a user of its own (sent once). A webhook on the project hears every model create, and
//! a live subscriber (`projectModelsUpdated` over `graphql-transport-ws`) listens to them,
//! connecting again whenever its connection ends.
//!
//! What the checker asks after each fault:
//! - every acknowledged create is in the log exactly once, under the id the client was given;
//!   no create is in it twice, acknowledged or not (`lost`, `duplicated`);
//! - every acknowledged object and file reads back byte-equal;
//! - every acknowledged mail request arrives exactly once, and none twice;
//! - every acknowledged model create reaches the webhook at least once;
//! - the subscriber misses no model created while a connection of its that had already heard
//!   one stayed open, and hears again after the fault (live messages are not replayed across
//!   a reconnect, here or in the original);
//! - every failure carried a code a client can act on (GraphQL `extensions.code` other than
//!   `INTERNAL_SERVER_ERROR`, an HTTP 4xx/503 with a JSON body, or a refused connection while
//!   the server itself was down) and came within the hang bound;
//! - the system recovers by itself: the time from the fault's end until a probe through the
//!   affected path succeeds.
//!
//! At the end every read model is rebuilt in verify mode and must equal a fresh fold.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::mailbox::Mailbox;
use crate::pg::Cluster;
use crate::proxy::TcpProxy;
use crate::receiver::WebhookReceiver;
use crate::{TestDb, free_port, until};

pub mod soak;

/// One fault, injected while the load runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// PostgreSQL shut down (`pg_ctl stop -m fast`) for the outage, then started.
    PostgresStop,
    /// `kill -9` of the postmaster; started again after the outage.
    PostgresKill,
    /// Every free connection slot taken by an idle session for the outage.
    PostgresConnections,
    /// Redis killed for the outage, then started empty.
    RedisStop,
    /// `FLUSHALL` on Redis.
    RedisFlush,
    /// S3 unreachable for the outage.
    S3Stop,
    /// SMTP unreachable for the outage.
    SmtpStop,
    /// `kill -9` of the strata process, started again at once.
    StrataKill,
    /// PostgreSQL stopped, Redis killed, S3 and SMTP cut, all at once, for the outage.
    Overlapping,
}

impl Fault {
    /// Every fault, in the order the suite runs them.
    pub const ALL: [Fault; 9] = [
        Fault::PostgresStop,
        Fault::PostgresKill,
        Fault::PostgresConnections,
        Fault::RedisStop,
        Fault::RedisFlush,
        Fault::S3Stop,
        Fault::SmtpStop,
        Fault::StrataKill,
        Fault::Overlapping,
    ];

    /// Its name on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Fault::PostgresStop => "postgres-stop",
            Fault::PostgresKill => "postgres-kill",
            Fault::PostgresConnections => "postgres-connections",
            Fault::RedisStop => "redis-stop",
            Fault::RedisFlush => "redis-flush",
            Fault::S3Stop => "s3-stop",
            Fault::SmtpStop => "smtp-stop",
            Fault::StrataKill => "strata-kill",
            Fault::Overlapping => "overlapping",
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Fault::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault {s:?}; one of {}", all.join(", "))
            })
    }
}

/// Where the suite's S3 traffic goes (through a proxy it can cut).
#[derive(Clone, Debug)]
pub struct S3 {
    /// `http://HOST:PORT`.
    pub endpoint: String,
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// Bucket.
    pub bucket: String,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `strata` binary.
    pub strata: PathBuf,
    /// The faults, in order.
    pub faults: Vec<Fault>,
    /// How long a service stays down.
    pub outage: Duration,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations acknowledged before each fault, and again after it ends.
    pub ops_around: usize,
    /// A request answered later than this counts as a hang (and fails the row).
    pub hang_bound: Duration,
    /// How long recovery and catching up may take before the suite gives up.
    pub recover_bound: Duration,
    /// The shared S3 server.
    pub s3: S3,
    /// The shared SMTP server, `HOST:PORT`.
    pub smtp: String,
    /// Its catcher's HTTP API (maildev), `http://HOST:PORT`.
    pub mail_api: String,
}

/// One row of the table.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// The fault.
    pub fault: String,
    /// Requests sent.
    pub attempted: usize,
    /// Operations acknowledged.
    pub acknowledged: usize,
    /// Requests failed with a clear error, by code.
    pub failed_clear: BTreeMap<String, usize>,
    /// Requests failed without one (or past the hang bound), with what came back.
    pub failed_unclear: Vec<String>,
    /// Acknowledged effects missing afterwards.
    pub lost: Vec<String>,
    /// Effects present more than once.
    pub duplicated: Vec<String>,
    /// The slowest answer to any request.
    pub slowest: Duration,
    /// From the fault's end until the affected path answered again.
    pub recovered_in: Duration,
    /// Until every acknowledged mail and webhook delivery had arrived.
    pub delivered_in: Duration,
    /// What `/readiness` said during the outage.
    pub readiness: String,
    /// Mails that arrived again under the same Message-ID.
    pub mail_copies: usize,
    /// Webhook deliveries whose first arrival came before an earlier model's.
    pub webhook_out_of_order: usize,
    /// From the fault's end until the live subscriber heard a model created after it.
    pub subscription_back_in: Option<Duration>,
    /// Model creates the subscriber heard.
    pub subscription_heard: usize,
    /// The subscriber's connections and how they ended.
    pub subscription_connections: BTreeMap<String, usize>,
    /// Models the subscriber should have heard and did not: created after a connection had
    /// heard its first model, while that connection stayed open.
    pub subscription_missed: Vec<String>,
}

impl Row {
    /// Nothing lost, nothing doubled, every failure clear.
    pub fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.failed_unclear.is_empty()
            && self.subscription_missed.is_empty()
    }
}

/// The suite's outcome.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One row per fault.
    pub rows: Vec<Row>,
    /// Differences between each read model and a fresh fold, at the end.
    pub rebuild_differences: BTreeMap<String, i64>,
}

impl Report {
    /// Every row clean, every read model equal to a fresh fold.
    pub fn clean(&self) -> bool {
        self.rows.iter().all(Row::clean) && self.rebuild_differences.values().all(|d| *d == 0)
    }

    /// The table, for a terminal and for the notes.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| fault | attempted | acknowledged | failed, clear | failed, unclear | lost | duplicated | slowest answer | recovered in | delivered in | readiness during | webhook order | mail copies | subscriber heard again in | subscriber connections |"
        );
        let _ = writeln!(
            out,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in &self.rows {
            let clear: Vec<String> = r
                .failed_clear
                .iter()
                .map(|(code, n)| format!("{n} {code}"))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {:.2} s | {:.2} s | {:.2} s | {} | {} | {} | {} | {} |",
                r.fault,
                r.attempted,
                r.acknowledged,
                if clear.is_empty() {
                    "0".to_owned()
                } else {
                    clear.join(", ")
                },
                r.failed_unclear.len(),
                r.lost.len(),
                r.duplicated.len(),
                r.slowest.as_secs_f64(),
                r.recovered_in.as_secs_f64(),
                r.delivered_in.as_secs_f64(),
                r.readiness,
                if r.webhook_out_of_order == 0 {
                    "in order".to_owned()
                } else {
                    format!("{} out of order", r.webhook_out_of_order)
                },
                r.mail_copies,
                r.subscription_back_in
                    .map_or("never".to_owned(), |d| format!("{:.2} s", d.as_secs_f64())),
                r.subscription_connections
                    .iter()
                    .map(|(how, n)| format!("{n} {how}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        let diffs: Vec<String> = self
            .rebuild_differences
            .iter()
            .map(|(p, d)| format!("{p} {d}"))
            .collect();
        let _ = writeln!(
            out,
            "\nread models against a fresh fold (differences): {}",
            diffs.join(", ")
        );
        for r in self.rows.iter().filter(|r| !r.clean()) {
            let _ = writeln!(
                out,
                "{}: unclear {:?}; lost {:?}; duplicated {:?}; not heard by the subscriber {:?}",
                r.fault, r.failed_unclear, r.lost, r.duplicated, r.subscription_missed
            );
        }
        out
    }
}

/// Runs the suite; panics when the stack cannot be set up at all (a broken machine, not a
/// finding).
pub async fn run(config: &Config) -> Report {
    let mut stack = Stack::start(config).await;
    let world = Arc::new(World::create(&stack, config).await);
    let mut report = Report::default();
    for (phase, fault) in config.faults.iter().enumerate() {
        let row = run_phase(&mut stack, &world, config, phase, *fault).await;
        eprintln!(
            "faults: {} done: {} acknowledged, {} lost, {} duplicated, {} unclear",
            row.fault,
            row.acknowledged,
            row.lost.len(),
            row.duplicated.len(),
            row.failed_unclear.len()
        );
        report.rows.push(row);
    }
    report.rebuild_differences = verify_read_models(&stack.db, config.recover_bound).await;
    stack.strata.stop();
    report
}

/// Once the projections have caught up, each read model rebuilt in verify mode: its
/// differences from a fresh fold, by projection.
pub async fn verify_read_models(db: &TestDb, bound: Duration) -> BTreeMap<String, i64> {
    caught_up(db, bound).await;
    let mut differences = BTreeMap::new();
    for projection in projections::registry() {
        let name = projection.name().to_owned();
        let outcome = projections::rebuild(
            &db.pool,
            projection.as_ref(),
            &projections::RebuildOptions {
                verify: true,
                ..Default::default()
            },
            &|_, _| {},
        )
        .await;
        match outcome {
            Ok(r) => differences.insert(name, r.difference_count),
            Err(e) => panic!("rebuild --verify of {name}: {e}"),
        };
    }
    differences
}

// ------------------------------------------------------------------ the services it owns

/// A `redis-server` of the suite's, on a fixed loopback port, keeping nothing on disk.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.up().await;
        redis
    }

    async fn up(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (deploy/dev installs it)");
        self.child = Some(child);
        let port = self.port;
        until("redis to listen", Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn flush(&self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connecting to redis");
        conn.write_all(b"FLUSHALL\r\n").await.expect("FLUSHALL");
        let mut answer = [0u8; 5];
        conn.read_exact(&mut answer).await.expect("FLUSHALL answer");
        assert_eq!(&answer, b"+OK\r\n", "FLUSHALL");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A numeric field of `INFO` (0 if it is not there).
    async fn info_field(&self, field: &str) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connecting to redis");
        conn.write_all(b"INFO\r\n").await.expect("INFO");
        // A bulk string: `$<length>\r\n<text>\r\n`.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = conn.read(&mut chunk).await.expect("INFO answer");
            assert!(n > 0, "redis closed the connection mid-answer");
            answer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&answer);
            let Some((head, body)) = text.split_once("\r\n") else {
                continue;
            };
            let length: usize = head.trim_start_matches('$').parse().expect("INFO length");
            if body.len() < length {
                continue;
            }
            return body
                .lines()
                .find_map(|l| {
                    l.strip_prefix(field)?
                        .strip_prefix(':')?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or(0);
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

/// `strata all` of the given binary, on a fixed port, its standard error in a log file.
struct Strata {
    binary: PathBuf,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Strata {
    async fn up(&mut self) {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("all");
        for (k, _) in std::env::vars() {
            if k.starts_with("STRATA_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("strata log file");
        cmd.stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().expect("starting strata"));
        let base = self.base();
        let http = reqwest::Client::new();
        until("strata to answer", Duration::from_secs(120), || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                http.get(format!("{base}/api/ping"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    }

    /// SIGKILL: no shutdown, connections cut.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stop(&mut self) {
        self.kill();
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Stack {
    pg: Cluster,
    db: TestDb,
    redis: Redis,
    s3: TcpProxy,
    smtp: TcpProxy,
    strata: Strata,
    receiver: WebhookReceiver,
    mailbox: Mailbox,
    http: reqwest::Client,
    base: String,
}

impl Stack {
    async fn start(config: &Config) -> Self {
        let pg = Cluster::create();
        let db = TestDb::new_at(&pg.url()).await;
        let redis = Redis::start().await;
        let s3 = TcpProxy::to(
            config
                .s3
                .endpoint
                .trim_start_matches("http://")
                .trim_end_matches('/'),
        )
        .await;
        let smtp = TcpProxy::to(&config.smtp).await;
        let receiver = WebhookReceiver::start().await;
        let port = free_port();
        let log = std::env::temp_dir().join(format!("strata-faults-{port}.log"));
        let env: Vec<(String, String)> = [
            ("STRATA_DATABASE_URL", db.url.clone()),
            ("STRATA_REDIS_URL", redis.url()),
            (
                "STRATA_TOKEN_PEPPER",
                "faults-pepper-faults-pepper-faults-pepper".to_owned(),
            ),
            ("STRATA_PORT", port.to_string()),
            ("STRATA_RATE_LIMITS_ENABLED", "false".to_owned()),
            ("STRATA_READ_YOUR_WRITES_TIMEOUT_MS", "15000".to_owned()),
            ("STRATA_JOB_LEASE_SECONDS", "5".to_owned()),
            ("STRATA_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true".to_owned()),
            (
                "STRATA_WEBHOOK_RETRY_SCHEDULE_SECONDS",
                "1,1,1,2,2,2,5,5,5,10".to_owned(),
            ),
            ("STRATA_S3_ENDPOINT", format!("http://{}", s3.addr)),
            ("STRATA_S3_ACCESS_KEY_ID", config.s3.access_key.clone()),
            ("STRATA_S3_SECRET_ACCESS_KEY", config.s3.secret_key.clone()),
            ("STRATA_S3_BUCKET", config.s3.bucket.clone()),
            ("STRATA_S3_REQUEST_TIMEOUT_SECONDS", "5".to_owned()),
            ("STRATA_SMTP_HOST", smtp.addr.ip().to_string()),
            ("STRATA_SMTP_PORT", smtp.addr.port().to_string()),
            ("STRATA_SMTP_TLS", "none".to_owned()),
            ("STRATA_LOG_LEVEL", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut strata = Strata {
            binary: config.strata.clone(),
            env,
            port,
            log,
            child: None,
        };
        strata.up().await;
        let base = strata.base();
        Self {
            pg,
            db,
            redis,
            s3,
            smtp,
            strata,
            receiver,
            mailbox: Mailbox::at(&config.mail_api),
            http: reqwest::Client::builder()
                .timeout(config.hang_bound)
                .build()
                .expect("client"),
            base,
        }
    }

    async fn readiness(&self) -> String {
        let answer = self
            .http
            .get(format!("{}/readiness", self.base))
            .send()
            .await;
        match answer {
            Err(e) if e.is_connect() => "no answer (refused)".to_owned(),
            Err(e) => format!("no answer ({e})"),
            Ok(res) => {
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap_or_default();
                let down: Vec<&str> = body["details"]
                    .as_object()
                    .map(|d| {
                        d.iter()
                            .filter(|(_, v)| v["ok"] == false)
                            .map(|(k, _)| k.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                if down.is_empty() {
                    format!("{status}")
                } else {
                    format!("{status}, {} down", down.join("+"))
                }
            }
        }
    }
}

// ------------------------------------------------------------------ the project under load

/// What the load works on: a project with one model holding the version root.
struct World {
    token: String,
    project: String,
    model: String,
    root: String,
    /// Users of their own for each phase's mail requests (email, token).
    mail_users: Vec<Vec<(String, String)>>,
}

impl World {
    async fn create(stack: &Stack, config: &Config) -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let token = crate::register(&stack.base, &format!("faults-{run}@example.com")).await;
        let gql = |query: &'static str, variables: Value| {
            let (http, base, token) = (stack.http.clone(), stack.base.clone(), token.clone());
            async move {
                let v: Value = http
                    .post(format!("{base}/graphql"))
                    .bearer_auth(token)
                    .json(&json!({"query": query, "variables": variables}))
                    .send()
                    .await
                    .expect("setup request")
                    .json()
                    .await
                    .expect("setup answer");
                assert!(v["errors"].is_null(), "setup: {v}");
                v["data"].clone()
            }
        };
        let project = gql(
            "mutation { projectMutations { create(input: {name: \"faults\"}) { id } } }",
            json!({}),
        )
        .await["projectMutations"]["create"]["id"]
            .as_str()
            .expect("project id")
            .to_owned();
        let model = gql(
            "mutation($p: ID!) { modelMutations { create(input: {projectId: $p, name: \"main\"}) { id } } }",
            json!({"p": project}),
        )
        .await["modelMutations"]["create"]["id"]
            .as_str()
            .expect("model id")
            .to_owned();
        let root = crate::object_id();
        crate::store_object(&stack.base, &token, &project, &root).await;
        gql(
            "mutation($w: WebhookCreateInput!) { webhookCreate(webhook: $w) }",
            json!({"w": {"streamId": project, "url": stack.receiver.url, "triggers": ["branch_create"]}}),
        )
        .await;
        // Three per phase: a mail asked for before the fault, during it, and after it.
        let per_phase = 3;
        let mut mail_users = Vec::new();
        for phase in 0..config.faults.len() {
            let mut users = Vec::new();
            for i in 0..per_phase {
                let email = format!("faults-{run}-p{phase}-u{i}@example.com");
                let token = crate::register(&stack.base, &email).await;
                users.push((email, token));
            }
            mail_users.push(users);
        }
        Self {
            token,
            project,
            model,
            root,
            mail_users,
        }
    }
}

/// An operation the load sent, and what became of it.
#[derive(Clone, Debug)]
enum Op {
    Model {
        name: String,
        id: Option<String>,
        /// When its first attempt was sent.
        sent: Instant,
    },
    Version {
        message: String,
        id: Option<String>,
    },
    Objects {
        objects: Vec<(String, String)>,
        stored: bool,
    },
    Blob {
        bytes: Vec<u8>,
        id: Option<String>,
    },
    Mail {
        email: String,
        acknowledged: bool,
    },
}

impl Op {
    fn acknowledged(&self) -> bool {
        match self {
            Op::Model { id, .. } | Op::Version { id, .. } | Op::Blob { id, .. } => id.is_some(),
            Op::Objects { stored, .. } => *stored,
            Op::Mail { acknowledged, .. } => *acknowledged,
        }
    }
}

/// What the clients of one phase saw.
#[derive(Default)]
struct History {
    ops: Vec<Op>,
    attempted: usize,
    failed_clear: BTreeMap<String, usize>,
    failed_unclear: Vec<String>,
    slowest: Duration,
    /// Every request's time to its answer, in the order they ended.
    latencies: Vec<Duration>,
}

/// The answer to one request, judged.
enum Answer {
    Ok(Value),
    /// A failure a client can act on, by code.
    Clear(String),
    /// Anything else: no code, an internal error, a hang.
    Unclear(String),
}

struct Phase {
    history: Mutex<History>,
    acknowledged: AtomicUsize,
    /// No new operations.
    stop: AtomicBool,
    /// Give up on operations still being retried.
    abandon: AtomicBool,
    /// The strata process was killed during this phase: a cut connection is its doing.
    strata_killed: AtomicBool,
    /// Each client's rest between rounds (none under faults; the soak's moderate load).
    pause: Duration,
    /// The phase's live subscriber.
    subscriber: Arc<Subscriber>,
}

impl Phase {
    fn new(pause: Duration) -> Self {
        Self {
            history: Mutex::default(),
            acknowledged: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            abandon: AtomicBool::new(false),
            strata_killed: AtomicBool::new(false),
            pause,
            subscriber: Arc::default(),
        }
    }
}

impl Phase {
    fn record(&self, started: Instant, answer: &Answer) {
        let mut h = self.history.lock().unwrap();
        let took = started.elapsed();
        h.attempted += 1;
        h.slowest = h.slowest.max(took);
        h.latencies.push(took);
        match answer {
            Answer::Ok(_) => {}
            Answer::Clear(code) => *h.failed_clear.entry(code.clone()).or_default() += 1,
            Answer::Unclear(what) => h.failed_unclear.push(what.clone()),
        }
    }

    /// Whether the live subscriber has heard a model whose create was sent after `at`.
    fn heard_after(&self, at: Instant) -> bool {
        let after: BTreeSet<String> = self
            .history
            .lock()
            .unwrap()
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Model {
                    id: Some(id), sent, ..
                } if *sent >= at => Some(id.clone()),
                _ => None,
            })
            .collect();
        self.subscriber
            .heard
            .lock()
            .unwrap()
            .iter()
            .any(|(id, _)| after.contains(id))
    }

    fn done(&self, op: Op) {
        if op.acknowledged() {
            self.acknowledged.fetch_add(1, Ordering::SeqCst);
        }
        self.history.lock().unwrap().ops.push(op);
    }
}

/// Judges a transport error.
fn transport(e: &reqwest::Error, phase: &Phase) -> Answer {
    if e.is_timeout() {
        Answer::Unclear(format!("hang: {e}"))
    } else if e.is_connect() {
        Answer::Clear("connection refused".to_owned())
    } else if phase.strata_killed.load(Ordering::SeqCst) {
        Answer::Clear("connection cut by the kill".to_owned())
    } else {
        Answer::Unclear(format!("transport: {e}"))
    }
}

/// Judges a GraphQL answer: `data` at `path` is success.
async fn graphql(
    sent: Result<reqwest::Response, reqwest::Error>,
    phase: &Phase,
    path: &[&str],
) -> Answer {
    let res = match sent {
        Ok(res) => res,
        Err(e) => return transport(&e, phase),
    };
    let status = res.status().as_u16();
    let body: Value = match res.json().await {
        Ok(v) => v,
        Err(e) => return transport(&e, phase),
    };
    let mut data = &body["data"];
    for p in path {
        data = &data[*p];
    }
    if !data.is_null() && body["errors"].is_null() {
        return Answer::Ok(data.clone());
    }
    match body["errors"][0]["extensions"]["code"].as_str() {
        Some("INTERNAL_SERVER_ERROR") | None => {
            Answer::Unclear(format!("HTTP {status}: {}", truncate(&body.to_string())))
        }
        Some(code) => Answer::Clear(code.to_owned()),
    }
}

/// Judges a REST answer: 2xx is success; a 4xx or 503 with a JSON error body is clear.
async fn rest(sent: Result<reqwest::Response, reqwest::Error>, phase: &Phase) -> Answer {
    let res = match sent {
        Ok(res) => res,
        Err(e) => return transport(&e, phase),
    };
    let status = res.status();
    let text = match res.text().await {
        Ok(t) => t,
        Err(e) => return transport(&e, phase),
    };
    if status.is_success() {
        return Answer::Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
    }
    let json_error = serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object());
    if json_error && (status.is_client_error() || status.as_u16() == 503) {
        Answer::Clear(format!("HTTP {}", status.as_u16()))
    } else {
        Answer::Unclear(format!("HTTP {}: {}", status.as_u16(), truncate(&text)))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

/// Sends `send` until it succeeds or the phase gives up; the answer's value on success.
async fn until_acknowledged<F, Fut>(phase: &Phase, mut send: F) -> Option<Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let mut pause = Duration::from_millis(50);
    loop {
        let started = Instant::now();
        let answer = send().await;
        phase.record(started, &answer);
        if let Answer::Ok(v) = answer {
            return Some(v);
        }
        if phase.abandon.load(Ordering::SeqCst) {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// A GraphQL create (`{mutations} { create … { id } }`) under a key of its own, sent again
/// with that key until acknowledged; the id it was given.
async fn keyed_create(
    phase: &Phase,
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
    mutations: &str,
) -> Option<String> {
    let key = uuid::Uuid::new_v4().to_string();
    until_acknowledged(phase, || {
        let sent = http
            .post(url)
            .bearer_auth(token)
            .header("idempotency-key", &key)
            .json(body)
            .send();
        async move { graphql(sent.await, phase, &[mutations, "create", "id"]).await }
    })
    .await
    .and_then(|v| v.as_str().map(str::to_owned))
}

/// A file upload to S3: each attempt would be a file of its own, so it is sent once.
async fn upload_file(phase: &Phase, http: &reqwest::Client, base: &str, world: &World, tag: &str) {
    let bytes = format!("file {tag} {}", uuid::Uuid::new_v4()).into_bytes();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes.clone())
            .file_name(format!("{tag}.txt"))
            .mime_str("text/plain")
            .expect("mime"),
    );
    let started = Instant::now();
    let sent = http
        .post(format!("{base}/api/stream/{}/blob", world.project))
        .bearer_auth(&world.token)
        .multipart(form)
        .send()
        .await;
    let answer = rest(sent, phase).await;
    phase.record(started, &answer);
    let id = match answer {
        Answer::Ok(v) => v["uploadResults"][0]["blobId"].as_str().map(str::to_owned),
        _ => None,
    };
    phase.done(Op::Blob { bytes, id });
}

// ------------------------------------------------------------------ the live subscriber

/// A live subscriber on the project's model events (`projectModelsUpdated` over
/// `graphql-transport-ws`, as the web app listens), for one phase: it connects, subscribes,
/// and connects again whenever its connection ends, until the checker stops it. Live messages
/// are not replayed after a reconnect (nor are they by the original), so the checker asks two
/// things of it: that it hears again after the fault, and that a connection which has heard
/// once misses nothing for as long as it stays open.
#[derive(Default)]
struct Subscriber {
    /// Each connection: when it heard its first model (from then on its subscription is known
    /// to be registered) and when it ended (`None`: open).
    spans: Mutex<Vec<(Option<Instant>, Option<Instant>)>>,
    /// Models created, as heard, with when.
    heard: Mutex<Vec<(String, Instant)>>,
    /// How connections ended, counted.
    ended: Mutex<BTreeMap<String, usize>>,
    stop: AtomicBool,
}

const SUBSCRIPTION: &str =
    "subscription($id: String!) { projectModelsUpdated(id: $id) { id type } }";

/// The subscriber's loop: a connection, then another when it ends (after a pause that grows
/// while connections keep failing), until stopped.
async fn subscribe(subscriber: Arc<Subscriber>, base: String, world: Arc<World>) {
    let url = base.replace("http://", "ws://") + "/graphql";
    let mut pause = Duration::from_millis(50);
    while !subscriber.stop.load(Ordering::SeqCst) {
        let span = {
            let mut spans = subscriber.spans.lock().unwrap();
            spans.push((None, None));
            spans.len() - 1
        };
        let how = listen(&subscriber, &url, &world, span).await;
        let heard = {
            let mut spans = subscriber.spans.lock().unwrap();
            spans[span].1 = Some(Instant::now());
            spans[span].0.is_some()
        };
        *subscriber.ended.lock().unwrap().entry(how).or_default() += 1;
        pause = if heard {
            Duration::from_millis(50)
        } else {
            (pause * 2).min(Duration::from_secs(1))
        };
        if !subscriber.stop.load(Ordering::SeqCst) {
            tokio::time::sleep(pause).await;
        }
    }
}

/// One connection until it ends; how it ended.
async fn listen(subscriber: &Subscriber, url: &str, world: &World, span: usize) -> String {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let mut request = url.into_client_request().expect("a WebSocket URL");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        reqwest::header::HeaderValue::from_static("graphql-transport-ws"),
    );
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(request),
    )
    .await;
    let mut socket = match connected {
        Ok(Ok((socket, _))) => socket,
        // The upgrade answered with a status: the checker holds it to a clear refusal.
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            return format!("refused {}", response.status().as_u16());
        }
        Ok(Err(e)) => return format!("not connected ({})", truncate(&e.to_string())),
        Err(_) => return "not connected (timed out)".to_owned(),
    };
    let text = |v: Value| Message::Text(v.to_string().into());
    let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {}", world.token)}});
    if socket.send(text(init)).await.is_err() {
        return "cut before init".to_owned();
    }
    loop {
        if subscriber.stop.load(Ordering::SeqCst) {
            let _ = socket.close(None).await;
            return "open to the end".to_owned();
        }
        // A short wait, so the stop flag is seen.
        let message = match tokio::time::timeout(Duration::from_millis(200), socket.next()).await {
            Err(_) => continue,
            Ok(None) => return "cut".to_owned(),
            Ok(Some(Err(e))) => return format!("cut ({})", truncate(&e.to_string())),
            Ok(Some(Ok(message))) => message,
        };
        let value: Value = match message {
            Message::Text(t) => serde_json::from_str(&t).unwrap_or_default(),
            Message::Close(frame) => {
                return frame.map_or("closed without a code".to_owned(), |f| {
                    format!("closed {}", u16::from(f.code))
                });
            }
            _ => continue,
        };
        let reply = match value["type"].as_str() {
            Some("connection_ack") => Some(
                json!({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION, "variables": {"id": world.project}}}),
            ),
            Some("ping") => Some(json!({"type": "pong"})),
            Some("next") => {
                let update = &value["payload"]["data"]["projectModelsUpdated"];
                if !value["payload"]["errors"].is_null() {
                    return format!("an error ({})", truncate(&value["payload"].to_string()));
                }
                if let (Some("CREATED"), Some(id)) =
                    (update["type"].as_str(), update["id"].as_str())
                {
                    let now = Instant::now();
                    subscriber.heard.lock().unwrap().push((id.to_owned(), now));
                    subscriber.spans.lock().unwrap()[span].0.get_or_insert(now);
                }
                None
            }
            Some(other @ ("error" | "complete")) => {
                return format!("{other} ({})", truncate(&value["payload"].to_string()));
            }
            _ => None,
        };
        if let Some(reply) = reply
            && socket.send(text(reply)).await.is_err()
        {
            return "cut while replying".to_owned();
        }
    }
}

/// `config.clients` clients of the phase, each its own task.
fn spawn_clients(
    phase: &Arc<Phase>,
    stack: &Stack,
    world: &Arc<World>,
    config: &Config,
    phase_no: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    // Detached: it listens on through the checker's wait, which stops it.
    tokio::spawn(subscribe(
        phase.subscriber.clone(),
        stack.base.clone(),
        world.clone(),
    ));
    (0..config.clients)
        .map(|c| {
            tokio::spawn(client(
                phase.clone(),
                stack.http.clone(),
                stack.base.clone(),
                world.clone(),
                phase_no,
                c,
            ))
        })
        .collect()
}

/// One client's loop: a round of every kind of operation until the phase stops.
async fn client(
    phase: Arc<Phase>,
    http: reqwest::Client,
    base: String,
    world: Arc<World>,
    phase_no: usize,
    client_no: usize,
) {
    let gql_url = format!("{base}/graphql");
    // A keyed GraphQL create, retried until acknowledged: the id under `mutations`.
    let create = async |body: &Value, mutations: &str| {
        keyed_create(&phase, &http, &gql_url, &world.token, body, mutations).await
    };
    let mut round = 0usize;
    while !phase.stop.load(Ordering::SeqCst) {
        round += 1;
        let tag = format!("p{phase_no}c{client_no}r{round}");

        // A model create, keyed.
        let name = format!("m-{tag}");
        let sent = Instant::now();
        let body = json!({
            "query": "mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }",
            "variables": {"p": world.project, "n": name},
        });
        let id = create(&body, "modelMutations").await;
        phase.done(Op::Model { name, id, sent });

        // A version create, keyed.
        let message = format!("v-{tag}");
        let body = json!({
            "query": "mutation($i: CreateVersionInput!) { versionMutations { create(input: $i) { id } } }",
            "variables": {"i": {"projectId": world.project, "modelId": world.model, "objectId": world.root, "message": message}},
        });
        let id = create(&body, "versionMutations").await;
        phase.done(Op::Version { message, id });

        // An object batch: content-addressed, so sending it again is harmless.
        let objects: Vec<(String, String)> = (0..3)
            .map(|i| {
                let id = crate::object_id();
                let text = json!({"id": id, "speckle_type": "Base", "totalChildrenCount": 0, "tag": format!("{tag}-{i}"), "unicode": "Ω≈ç√∫˜µ≤≥÷ 🏗"}).to_string();
                (id, text)
            })
            .collect();
        let batch = format!(
            "[{}]",
            objects
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let stored = until_acknowledged(&phase, || {
            let form = reqwest::multipart::Form::new().part(
                "batch-0",
                reqwest::multipart::Part::bytes(batch.clone().into_bytes())
                    .file_name("batch-0")
                    .mime_str("text/plain")
                    .expect("mime"),
            );
            let sent = http
                .post(format!("{base}/objects/{}", world.project))
                .bearer_auth(&world.token)
                .multipart(form)
                .send();
            let phase = &phase;
            async move { rest(sent.await, phase).await }
        })
        .await
        .is_some();
        phase.done(Op::Objects { objects, stored });

        upload_file(&phase, &http, &base, &world, &tag).await;
        if !phase.pause.is_zero() {
            tokio::time::sleep(phase.pause).await;
        }
    }
}

// ------------------------------------------------------------------ one phase

async fn run_phase(
    stack: &mut Stack,
    world: &Arc<World>,
    config: &Config,
    phase_no: usize,
    fault: Fault,
) -> Row {
    let phase = Arc::new(Phase::new(Duration::ZERO));
    let clients = spawn_clients(&phase, stack, world, config, phase_no);
    let acked = {
        let phase = phase.clone();
        move || phase.acknowledged.load(Ordering::SeqCst)
    };
    until("the load to get going", config.recover_bound, || {
        let n = acked();
        async move { n >= config.ops_around }
    })
    .await;

    ask_for_mail(stack, world, &phase, phase_no, 0).await;

    // The fault.
    let mut connections = Vec::new();
    match fault {
        Fault::PostgresStop => blocking(|| stack.pg.stop()),
        Fault::PostgresKill => blocking(|| stack.pg.kill()),
        Fault::PostgresConnections => {
            // Idle sessions in every slot left (superuser slots too): the server's own
            // pool keeps the connections it holds, and opening one more is refused.
            for _ in 0..stack.pg.max_connections {
                match <sqlx::PgConnection as sqlx::Connection>::connect(&stack.pg.url()).await {
                    Ok(c) => connections.push(c),
                    Err(_) => break,
                }
            }
        }
        Fault::RedisStop => stack.redis.down(),
        Fault::RedisFlush => stack.redis.flush().await,
        Fault::S3Stop => stack.s3.cut(),
        Fault::SmtpStop => stack.smtp.cut(),
        Fault::StrataKill => {
            phase.strata_killed.store(true, Ordering::SeqCst);
            stack.strata.kill();
        }
        Fault::Overlapping => {
            blocking(|| stack.pg.stop());
            stack.redis.down();
            stack.s3.cut();
            stack.smtp.cut();
        }
    }
    let injected = Instant::now();
    ask_for_mail(stack, world, &phase, phase_no, 1).await;
    // A file upload inside the fault whatever the clients' pace (theirs may all fall outside a
    // short outage), so a lost file store is always felt.
    if matches!(fault, Fault::S3Stop | Fault::Overlapping) {
        let tag = format!("p{phase_no}-during");
        upload_file(&phase, &stack.http, &stack.base, world, &tag).await;
    }
    // What readiness says once the server has had a probe interval to notice.
    tokio::time::sleep(Duration::from_millis(1_500).min(config.outage)).await;
    let readiness = stack.readiness().await;
    let outage = if fault == Fault::StrataKill || fault == Fault::RedisFlush {
        Duration::ZERO
    } else {
        config.outage
    };
    if let Some(rest) = outage.checked_sub(injected.elapsed()) {
        tokio::time::sleep(rest).await;
    }

    // The end of the fault.
    match fault {
        Fault::PostgresStop => blocking(|| stack.pg.start()),
        Fault::PostgresKill => blocking(|| stack.pg.start_after_kill()),
        Fault::PostgresConnections => {
            for c in connections.drain(..) {
                let _ = sqlx::Connection::close(c).await;
            }
        }
        Fault::RedisStop => stack.redis.up().await,
        Fault::RedisFlush => {}
        Fault::S3Stop => stack.s3.restore(),
        Fault::SmtpStop => stack.smtp.restore(),
        Fault::StrataKill => stack.strata.up().await,
        Fault::Overlapping => {
            blocking(|| stack.pg.start());
            stack.redis.up().await;
            stack.s3.restore();
            stack.smtp.restore();
        }
    }
    let ended = Instant::now();
    let recovered_in = recover(stack, world, config, fault, ended).await;
    ask_for_mail(stack, world, &phase, phase_no, 2).await;

    // Load goes on until it has shown itself working again, then stops.
    let before = acked();
    until(
        "the load to go on after the fault",
        config.recover_bound,
        || {
            let n = acked();
            async move { n >= before + config.ops_around }
        },
    )
    .await;
    // ... and until the live subscriber has heard a model created after the fault (it
    // connects again on its own schedule, and live messages are not replayed), or the bound
    // has passed: the checker reports a subscriber that never hears again.
    let deadline = Instant::now() + config.recover_bound;
    while !phase.heard_after(ended) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    phase.stop.store(true, Ordering::SeqCst);
    let abandon = {
        let phase = phase.clone();
        let bound = config.recover_bound;
        tokio::spawn(async move {
            tokio::time::sleep(bound).await;
            phase.abandon.store(true, Ordering::SeqCst);
        })
    };
    for c in clients {
        c.await.expect("a client task");
    }
    abandon.abort();

    let history = std::mem::take(&mut *phase.history.lock().unwrap());
    let ended = Ended {
        name: fault.name(),
        readiness,
        recovered_in,
        at: ended,
    };
    check(stack, world, config, history, &phase.subscriber, ended).await
}

/// How a phase's fault went, for the checker.
struct Ended {
    /// The row's name: the fault's.
    name: &'static str,
    /// What `/readiness` said during the fault.
    readiness: String,
    recovered_in: Duration,
    /// When the fault was lifted.
    at: Instant,
}

/// Asks for a verification mail for the phase's `n`th user, once (a repeat would ask for a
/// second mail).
async fn ask_for_mail(stack: &Stack, world: &World, phase: &Phase, phase_no: usize, n: usize) {
    let (email, token) = &world.mail_users[phase_no][n];
    let started = Instant::now();
    let sent = stack
        .http
        .post(format!("{}/graphql", stack.base))
        .bearer_auth(token)
        .json(&json!({"query": "mutation { requestVerification }"}))
        .send()
        .await;
    let answer = graphql(sent, phase, &["requestVerification"]).await;
    phase.record(started, &answer);
    phase.done(Op::Mail {
        email: email.clone(),
        acknowledged: matches!(answer, Answer::Ok(Value::Bool(true))),
    });
}

/// From the fault's end until the affected path answers again.
async fn recover(
    stack: &Stack,
    world: &World,
    config: &Config,
    fault: Fault,
    ended: Instant,
) -> Duration {
    let http = &stack.http;
    let base = &stack.base;
    let key = uuid::Uuid::new_v4().to_string();
    let name = format!("probe-{key}");
    let command = || async {
        let res = http
            .post(format!("{base}/graphql"))
            .bearer_auth(&world.token)
            .header("idempotency-key", &key)
            .json(&json!({
                "query": "mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }",
                "variables": {"p": world.project, "n": name},
            }))
            .send()
            .await;
        match res {
            Ok(r) => r
                .json::<Value>()
                .await
                .is_ok_and(|v| v["data"]["modelMutations"]["create"]["id"].is_string()),
            Err(_) => false,
        }
    };
    let ready = || async {
        http.get(format!("{base}/readiness"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    };
    let file = || async {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"probe".to_vec())
                .file_name("probe.txt")
                .mime_str("text/plain")
                .expect("mime"),
        );
        http.post(format!("{base}/api/stream/{}/blob", world.project))
            .bearer_auth(&world.token)
            .multipart(form)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    };
    let deadline = ended + config.recover_bound;
    loop {
        let ok = match fault {
            Fault::S3Stop => file().await,
            // Mail recovery is measured by the deliveries, in the check.
            Fault::SmtpStop => true,
            Fault::Overlapping => ready().await && command().await && file().await,
            _ => ready().await && command().await,
        };
        if ok {
            return ended.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{}: the system did not recover within {:?}",
            fault.name(),
            config.recover_bound
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every projection caught up with the log.
async fn caught_up(db: &TestDb, bound: Duration) {
    let names: Vec<&'static str> = projections::registry().iter().map(|p| p.name()).collect();
    until("the read models to catch up", bound, || {
        let names = names.clone();
        async move {
            let Ok(head) = schema::EventLog::new(db.pool.clone()).readable_head().await else {
                return false;
            };
            projections::wait_for(&db.pool, &names, head, Duration::ZERO)
                .await
                .is_ok()
        }
    })
    .await;
}

async fn check(
    stack: &Stack,
    world: &World,
    config: &Config,
    history: History,
    subscriber: &Subscriber,
    ended: Ended,
) -> Row {
    let Ended {
        name,
        readiness,
        recovered_in,
        at: ended,
    } = ended;
    let pool = &stack.db.pool;
    let mut row = Row {
        fault: name.to_owned(),
        attempted: history.attempted,
        acknowledged: history.ops.iter().filter(|o| o.acknowledged()).count(),
        failed_clear: history.failed_clear,
        failed_unclear: history.failed_unclear,
        slowest: history.slowest,
        recovered_in,
        readiness,
        ..Row::default()
    };
    if row.slowest > config.hang_bound {
        row.failed_unclear
            .push(format!("an answer took {:?}", row.slowest));
    }
    caught_up(&stack.db, config.recover_bound).await;

    // The log: each create at most once, and an acknowledged one under the id it was given.
    let models: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT payload->>'name', payload->>'modelId', position FROM events WHERE event_type = 'ModelCreated'",
    )
    .fetch_all(pool)
    .await
    .expect("reading the log");
    let versions: Vec<(String, String)> = sqlx::query_as(
        "SELECT payload->>'message', payload->>'versionId' FROM events WHERE event_type = 'VersionCreated'",
    )
    .fetch_all(pool)
    .await
    .expect("reading the log");
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, id, _) in &models {
        by_name.entry(name).or_default().push(id);
    }
    let mut by_message: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (message, id) in &versions {
        by_message.entry(message).or_default().push(id);
    }
    let position: BTreeMap<&str, i64> = models.iter().map(|(_, id, p)| (id.as_str(), *p)).collect();
    let mut webhook_wanted: Vec<(i64, String)> = Vec::new();
    let mut mails: Vec<(String, bool)> = Vec::new();
    for op in &history.ops {
        match op {
            Op::Model { name: key, id, .. } | Op::Version { message: key, id } => {
                let logged = if matches!(op, Op::Model { .. }) {
                    by_name.get(key.as_str())
                } else {
                    by_message.get(key.as_str())
                }
                .cloned()
                .unwrap_or_default();
                if logged.len() > 1 {
                    row.duplicated
                        .push(format!("{key} in the log {} times", logged.len()));
                }
                if let Some(id) = id {
                    if !logged.contains(&id.as_str()) {
                        row.lost
                            .push(format!("{key} ({id}) acknowledged, not in the log"));
                    }
                    if let Some(p) = position.get(id.as_str()) {
                        webhook_wanted.push((*p, id.clone()));
                    }
                }
            }
            Op::Objects { objects, stored } => {
                if !stored {
                    continue;
                }
                for (id, text) in objects {
                    let path = format!("objects/{}/{id}/single", world.project);
                    let body = read_back(stack, world, &path).await;
                    if body.as_deref() != Some(text.as_bytes()) {
                        row.lost.push(format!(
                            "object {id} stored, reads back as {:?}",
                            body.map(|b| truncate(&String::from_utf8_lossy(&b)))
                        ));
                    }
                }
            }
            Op::Blob { bytes, id } => {
                let Some(id) = id else { continue };
                let path = format!("api/stream/{}/blob/{id}", world.project);
                let body = read_back(stack, world, &path).await;
                if body.as_deref() != Some(bytes.as_slice()) {
                    row.lost.push(format!(
                        "file {id} uploaded, reads back different or not at all"
                    ));
                }
            }
            Op::Mail {
                email,
                acknowledged,
            } => mails.push((email.clone(), *acknowledged)),
        }
    }

    // Deliveries: every acknowledged mail request's mail, and every acknowledged model's
    // webhook, within the bound; then nothing more than once.
    let wanted_hooks: BTreeSet<String> = webhook_wanted.iter().map(|(_, id)| id.clone()).collect();
    let delivered_hooks = || stack.receiver.delivered_ids();
    let deadline = Instant::now() + config.recover_bound;
    loop {
        let mut missing = Vec::new();
        for (email, acknowledged) in &mails {
            if *acknowledged && stack.mailbox.to(email).await.is_empty() {
                missing.push(format!("mail to {email} never arrived"));
            }
        }
        let heard: BTreeSet<String> = delivered_hooks().into_iter().collect();
        for id in wanted_hooks.difference(&heard) {
            missing.push(format!("webhook for model {id} never delivered"));
        }
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            row.lost.extend(missing);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    row.delivered_in = ended.elapsed();
    // A mail is one Message-ID: a copy under the same id (sent again because the database
    // could not record that the first went out) is counted apart; two ids are two mails.
    for (email, _) in &mails {
        let got = stack.mailbox.to(email).await;
        let ids: BTreeSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
        if ids.len() > 1 || ids.contains("") && got.len() > 1 {
            row.duplicated
                .push(format!("{} mails to {email} ({ids:?})", got.len()));
        }
        row.mail_copies += got.len().saturating_sub(ids.len());
    }
    // Order: the models' first deliveries against their order in the log.
    let mut first_seen: Vec<String> = Vec::new();
    for id in delivered_hooks() {
        if wanted_hooks.contains(&id) && !first_seen.contains(&id) {
            first_seen.push(id);
        }
    }
    row.webhook_out_of_order = first_seen
        .windows(2)
        .filter(|w| position.get(w[0].as_str()) > position.get(w[1].as_str()))
        .count();
    check_subscriber(&mut row, config, &history.ops, subscriber, ended).await;
    row
}

/// The live subscriber: a connection that has heard once misses no model created while it
/// stays open; after the fault it hears again (the first model created after the fault's end
/// that it hears, counted from that end). Stops it.
async fn check_subscriber(
    row: &mut Row,
    config: &Config,
    ops: &[Op],
    subscriber: &Subscriber,
    ended: Instant,
) {
    let created: Vec<(Instant, &str)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Model {
                id: Some(id), sent, ..
            } => Some((*sent, id.as_str())),
            _ => None,
        })
        .collect();
    let deadline = Instant::now() + config.recover_bound;
    loop {
        let heard: BTreeSet<String> = subscriber
            .heard
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        let spans = subscriber.spans.lock().unwrap().clone();
        let listening = |sent: Instant| {
            spans
                .iter()
                .any(|(from, to)| to.is_none() && from.is_some_and(|f| f < sent))
        };
        let missing: Vec<String> = created
            .iter()
            .filter(|(sent, id)| !heard.contains(*id) && listening(*sent))
            .map(|(_, id)| format!("model {id}, created while a connection was listening"))
            .collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            row.subscription_missed = missing;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    subscriber.stop.store(true, Ordering::SeqCst);
    until("the subscriber to stop", Duration::from_secs(10), || {
        let stopped = subscriber
            .spans
            .lock()
            .unwrap()
            .iter()
            .all(|(_, to)| to.is_some());
        async move { stopped }
    })
    .await;
    row.subscription_connections = subscriber.ended.lock().unwrap().clone();
    // An upgrade refused must say why a client should wait: 503 (or a 4xx), never a 200 or
    // a bare 500.
    for (how, n) in &row.subscription_connections {
        if let Some(status) = how.strip_prefix("refused ")
            && !(status == "503" || status.starts_with('4'))
        {
            row.failed_unclear
                .push(format!("{n} subscription upgrades answered {status}"));
        }
    }
    row.subscription_heard = subscriber.heard.lock().unwrap().len();
    let after: BTreeSet<&str> = created
        .iter()
        .filter(|(sent, _)| *sent >= ended)
        .map(|(_, id)| *id)
        .collect();
    row.subscription_back_in = subscriber
        .heard
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| after.contains(id.as_str()))
        .map(|(_, at)| at.saturating_duration_since(ended))
        .min();
    if row.subscription_back_in.is_none() && !after.is_empty() {
        row.subscription_missed.push(format!(
            "none of the {} models created after the fault",
            after.len()
        ));
    }
}

/// The body of `GET /{path}` as the world's owner, if it answers 2xx.
async fn read_back(stack: &Stack, world: &World, path: &str) -> Option<Vec<u8>> {
    let res = stack
        .http
        .get(format!("{}/{path}", stack.base))
        .bearer_auth(&world.token)
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    res.bytes().await.ok().map(|b| b.to_vec())
}

/// A blocking call (a `pg_ctl` that waits) without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

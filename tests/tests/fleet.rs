//! A fleet on one machine: two `serve`, two `project` and two `work` processes of the real
//! binary on one database, Redis and webhook receiver. Under a stream of model creates (each
//! triggering a webhook), one projector, one worker and one server are killed with SIGKILL;
//! the client retries on the other server. Afterwards every acknowledged create is in the log
//! exactly once, its webhook was delivered, a subscriber on the surviving server heard the
//! creates made through the other one, and every read model equals a fresh fold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::TestDb;
use tests::receiver::WebhookReceiver;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A process of the fleet, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn start(kind: &str, db: &TestDb, port: u16) -> Self {
        let mut cmd = Command::new(tests::strata_binary());
        cmd.arg(kind);
        for (k, _) in std::env::vars() {
            if k.starts_with("STRATA_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("STRATA_DATABASE_URL", &db.url)
            .env("STRATA_REDIS_URL", tests::test_redis_url())
            .env(
                "STRATA_TOKEN_PEPPER",
                "test-pepper-test-pepper-test-pepper-0123",
            )
            .env("STRATA_PORT", port.to_string())
            .env("STRATA_RATE_LIMITS_ENABLED", "false")
            .env("STRATA_READ_YOUR_WRITES_TIMEOUT_MS", "15000")
            .env("STRATA_JOB_LEASE_SECONDS", "3")
            .env("STRATA_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
            .env(
                "STRATA_WEBHOOK_RETRY_SCHEDULE_SECONDS",
                "1,1,1,1,1,1,1,1,1,1",
            )
            .env("STRATA_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Self(cmd.spawn().expect("starting strata"))
    }

    /// SIGKILL: no shutdown, no hand-back, connections cut.
    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

/// Subscribes to the project's model changes on `base` and collects the model ids it hears.
async fn subscriber(base: &str, token: &str, project: &str) -> Arc<Mutex<BTreeSet<String>>> {
    let mut request = (base.replace("http://", "ws://") + "/graphql")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |v: Value| Message::Text(v.to_string().into());
    socket
        .send(send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}})))
        .await
        .unwrap();
    socket
        .send(send(json!({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription($p: String!) { projectModelsUpdated(id: $p) { id type } }",
            "variables": {"p": project}}})))
        .await
        .unwrap();
    let heard: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let sink = heard.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        while let Some(Ok(Message::Text(text))) = socket.next().await {
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            if v["type"] == "connection_ack"
                && let Some(r) = ready.take()
            {
                let _ = r.send(());
            }
            if let Some(id) = v["payload"]["data"]["projectModelsUpdated"]["id"].as_str() {
                sink.lock().unwrap().insert(id.to_owned());
            }
        }
    });
    ready_rx.await.unwrap();
    heard
}

#[tokio::test]
async fn a_fleet_loses_nothing_when_one_of_each_kind_is_killed() {
    let db = TestDb::new().await;
    let receiver = WebhookReceiver::start().await;
    let ports = [tests::free_port(), tests::free_port()];
    let bases = ports.map(|p| format!("http://127.0.0.1:{p}"));
    let mut serve = [
        Process::start("serve", &db, ports[0]),
        Process::start("serve", &db, ports[1]),
    ];
    let mut project = [
        Process::start("project", &db, 0),
        Process::start("project", &db, 0),
    ];
    let mut work = [
        Process::start("work", &db, 0),
        Process::start("work", &db, 0),
    ];
    let http = reqwest::Client::new();
    for base in &bases {
        tests::until("the servers to answer", Duration::from_secs(60), || async {
            http.get(format!("{base}/api/ping"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }
    let token = tests::register(&bases[0], "fleet@example.com").await;
    let gql = |base: String, query: &'static str, variables: Value| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            let res = http
                .post(format!("{base}/graphql"))
                .bearer_auth(&token)
                .json(&json!({"query": query, "variables": variables}))
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .ok()?;
            res.json::<Value>().await.ok()
        }
    };
    let created = gql(
        bases[0].clone(),
        "mutation { projectMutations { create(input: {name: \"fleet\"}) { id } } }",
        json!({}),
    )
    .await
    .unwrap();
    let project_id = created["data"]["projectMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook = gql(
        bases[0].clone(),
        "mutation($w: WebhookCreateInput!) { webhookCreate(webhook: $w) }",
        json!({"w": {"streamId": project_id, "url": receiver.url, "triggers": ["branch_create"]}}),
    )
    .await
    .unwrap();
    assert!(hook["errors"].is_null(), "{hook}");
    let heard = subscriber(&bases[1], &token, &project_id).await;
    // The subscription is live once it hears a first create.
    let probe = gql(
        bases[0].clone(),
        "mutation($p: ID!) { modelMutations { create(input: {projectId: $p, name: \"probe\"}) { id } } }",
        json!({"p": project_id}),
    )
    .await
    .unwrap();
    let probe = probe["data"]["modelMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tests::until("the subscription to start", Duration::from_secs(30), || {
        let heard = heard.clone();
        let probe = probe.clone();
        async move { heard.lock().unwrap().contains(&probe) }
    })
    .await;

    // The load: model creates, alternating between the servers; a request that gets no
    // answer is sent again to the other one. Acknowledged = answered with the model's id.
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    let mut via_first = BTreeSet::new();
    let mut slowest_after_projector_kill = Duration::ZERO;
    let mut killed_job: Option<(i64, String)> = None;
    let create = "mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }";
    for i in 0..60usize {
        match i {
            15 => project[0].kill(),
            // The next delivery hangs at the receiver; the worker holding it is killed below.
            30 => receiver.hang(true),
            45 => serve[0].kill(),
            _ => {}
        }
        let name = format!("m{i:03}");
        let started = Instant::now();
        let mut target = i % 2;
        let mut answer = None;
        for _attempt in 0..4 {
            let got = gql(
                bases[target].clone(),
                create,
                json!({"p": project_id, "n": name}),
            )
            .await;
            match got {
                Some(v) if v["errors"].is_null() => {
                    answer = Some(v);
                    break;
                }
                // The first attempt may have committed before its server died: the name is
                // taken, the model exists.
                Some(v) if v.to_string().contains("already") => break,
                Some(v) => panic!("create {name} refused: {v}"),
                None => target = 1 - target,
            }
        }
        if i == 30 {
            // Kill whichever worker holds the hanging delivery, mid-job.
            let deadline = Instant::now() + Duration::from_secs(30);
            let (job, holder): (i64, String) = loop {
                let running = sqlx::query_as(
                    "SELECT id, locked_by FROM jobs WHERE kind = 'webhook.deliver' AND status = 'running'",
                )
                .fetch_optional(&db.pool)
                .await
                .unwrap();
                if let Some(running) = running {
                    break running;
                }
                assert!(Instant::now() < deadline, "no delivery in flight");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let victim = work
                .iter()
                .position(|w| holder == format!("worker-{}", w.0.id()))
                .unwrap_or_else(|| panic!("no worker of ours holds job {job}: {holder}"));
            work[victim].kill();
            receiver.hang(false);
            killed_job = Some((job, holder));
        }
        if (15..25).contains(&i) {
            slowest_after_projector_kill = slowest_after_projector_kill.max(started.elapsed());
        }
        if let Some(v) = answer {
            let id = v["data"]["modelMutations"]["create"]["id"]
                .as_str()
                .unwrap()
                .to_owned();
            if target == 0 {
                via_first.insert(id.clone());
            }
            acknowledged.insert(name, id);
        }
    }
    eprintln!(
        "fleet: {} acknowledged creates; slowest create after the projector kill {:?}",
        acknowledged.len(),
        slowest_after_projector_kill
    );
    assert!(acknowledged.len() >= 55, "{acknowledged:?}");
    // The standby projector takes over within the read-your-writes wait of the next command.
    assert!(
        slowest_after_projector_kill < Duration::from_secs(10),
        "{slowest_after_projector_kill:?}"
    );

    // Every acknowledged create is in the log exactly once.
    for id in acknowledged.values() {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE event_type = 'ModelCreated' AND payload->>'modelId' = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(n, 1, "model {id}");
    }
    // Its webhook was delivered at least once (the surviving worker took over the killed
    // one's jobs after their lease).
    let wanted: BTreeSet<String> = acknowledged.values().cloned().collect();
    tests::until("every delivery", Duration::from_secs(90), || {
        let receiver = receiver.clone();
        let wanted = wanted.clone();
        async move {
            let got: BTreeSet<String> = receiver.delivered_ids().into_iter().collect();
            wanted.is_subset(&got)
        }
    })
    .await;
    // The job the killed worker held was finished by the other once its lease ran out.
    let (job, holder) = killed_job.unwrap();
    tests::until(
        "the killed worker's job",
        Duration::from_secs(60),
        || async {
            sqlx::query_scalar::<_, String>("SELECT status FROM jobs WHERE id = $1")
                .bind(job)
                .fetch_one(&db.pool)
                .await
                .unwrap()
                == "done"
        },
    )
    .await;
    let attempts: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT worker, outcome FROM job_attempts WHERE job_id = $1 ORDER BY attempt",
    )
    .bind(job)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        attempts.first().map(|a| a.0.as_str()),
        Some(holder.as_str())
    );
    assert_eq!(attempts[0].1.as_deref(), Some("abandoned"), "{attempts:?}");
    let last = attempts.last().unwrap();
    assert!(
        last.0 != holder && last.1.as_deref() == Some("succeeded"),
        "{attempts:?}"
    );
    // The subscriber on the second server heard what was created through the first.
    tests::until("the subscriber", Duration::from_secs(30), || {
        let heard = heard.clone();
        let via_first = via_first.clone();
        async move { via_first.is_subset(&heard.lock().unwrap()) }
    })
    .await;
    assert!(!via_first.is_empty());
    // Every read model equals a fresh fold of the log.
    let differences = tests::faults::verify_read_models(&db, Duration::from_secs(30)).await;
    assert!(differences.values().all(|d| *d == 0), "{differences:?}");
    drop(serve);
    drop(project);
    drop(work);
}

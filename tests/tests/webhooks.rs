//! Webhooks end to end: GraphQL management, the projector's outbox, the delivery worker
//! against a real HTTP receiver on loopback, retries, crash recovery, auto-disable and the
//! SSRF guard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tests::receiver::WebhookReceiver;
use tests::{TestApp, TestDb, test_settings};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

struct World {
    app: TestApp,
    db: TestDb,
    settings: command_service::config::Settings,
    _stack: tokio_util::sync::DropGuard,
    worker: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

fn settings(db: &TestDb) -> command_service::config::Settings {
    command_service::config::Settings {
        webhook_allow_private_targets: true,
        webhook_retry_schedule_seconds: "1,1,1,1,1,1,1,1,1,1".into(),
        job_lease_seconds: 2,
        ..test_settings(db)
    }
}

async fn world_with(
    tweak: impl FnOnce(&mut command_service::config::Settings),
    with_worker: bool,
) -> World {
    let db = TestDb::new().await;
    let mut s = settings(&db);
    tweak(&mut s);
    let (app, stack) = tests::spawn_stack(&db, s.clone()).await;
    let mut w = World {
        app,
        settings: s,
        db,
        _stack: stack,
        worker: None,
    };
    if with_worker {
        w.start_worker();
    }
    w
}

impl World {
    fn start_worker(&mut self) {
        let runner =
            command_service::app::job_runner(&self.settings, self.db.pool.clone()).unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(runner.run(cancel.clone()));
        self.worker = Some((cancel, task));
    }

    /// Kills the worker as a crash would: in-flight deliveries are dropped mid-request.
    fn kill_worker(&mut self) {
        if let Some((_, task)) = self.worker.take() {
            task.abort();
        }
    }

    async fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        self.app.gql(token, query, variables).await
    }

    async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let res = self.gql(token, query, variables).await;
        assert!(res["errors"].is_null(), "{res}");
        res["data"].clone()
    }

    async fn user(&self, email: &str) -> String {
        tests::register(&self.app.base_url, email).await
    }

    async fn project(&self, token: &str) -> String {
        let data = self
            .ok(
                token,
                "mutation { projectMutations { create(input: {name: \"Hooked\"}) { id } } }",
                json!({}),
            )
            .await;
        data["projectMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn webhook(
        &self,
        token: &str,
        project: &str,
        url: &str,
        triggers: &[&str],
        secret: Option<&str>,
    ) -> String {
        let data = self
            .ok(
                token,
                "mutation($w: WebhookCreateInput!) { webhookCreate(webhook: $w) }",
                json!({"w": {"streamId": project, "url": url, "triggers": triggers, "secret": secret, "description": "ci"}}),
            )
            .await;
        data["webhookCreate"].as_str().unwrap().to_owned()
    }

    async fn model(&self, token: &str, project: &str, name: &str) -> String {
        let data = self
            .ok(
                token,
                "mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }",
                json!({"p": project, "n": name}),
            )
            .await;
        data["modelMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn version(&self, token: &str, project: &str, model: &str) {
        // The root object first: the server refuses a version whose object is not stored.
        tests::store_object(
            &self.app.base_url,
            token,
            project,
            "0123456789abcdef0123456789abcdef",
        )
        .await;
        self.ok(
            token,
            "mutation($p: String!, $m: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: \"0123456789abcdef0123456789abcdef\"}) { id } } }",
            json!({"p": project, "m": model}),
        )
        .await;
    }

    async fn hooks(&self, token: &str, project: &str) -> Value {
        self.ok(
            token,
            "query($p: String!) { project(id: $p) { webhooks { totalCount items { id url enabled hasSecret triggers disabledReason \
               history { totalCount items { id status statusInfo retryCount payload attempts { responseStatus succeeded error latencyMs } } } } } } }",
            json!({"p": project}),
        )
        .await["project"]["webhooks"]
            .clone()
    }

    /// Waits until the webhook's history holds `n` deliveries with `status`.
    async fn wait_history(&self, token: &str, project: &str, n: usize, status: i64) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let hooks = self.hooks(token, project).await;
            let items = hooks["items"][0]["history"]["items"]
                .as_array()
                .unwrap()
                .clone();
            if items.iter().filter(|d| d["status"] == status).count() >= n {
                return hooks;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "history never reached {n} deliveries with status {status}: {hooks}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_and_only_matching_triggers_fire() {
    let w = world_with(|_| {}, true).await;
    let receiver = WebhookReceiver::start().await;
    let owner = w.user("owner@example.com").await;
    let project = w.project(&owner).await;
    let hook = w
        .webhook(
            &owner,
            &project,
            &receiver.url,
            &["branch_create"],
            Some("s3cret"),
        )
        .await;

    let first = w.model(&owner, &project, "structure").await;
    w.version(&owner, &project, &first).await; // commit_create: not a trigger
    w.model(&owner, &project, "facade").await;
    // Deliveries of one webhook go out in event order, so the second branch_create arriving
    // means the commit before it was filtered out, not merely late.
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "only branch_create fires");

    for (r, name) in got.iter().zip(["structure", "facade"]) {
        // The original's signature: hex HMAC-SHA256 of the exact body.
        assert_eq!(
            r.header("x-webhook-signature"),
            hmac_hex(b"s3cret", &r.body)
        );
        // Standard Webhooks: v1,base64(HMAC(id.timestamp.body)).
        let id = r.header("webhook-id");
        let ts = r.header("webhook-timestamp");
        let mut signed = format!("{id}.{ts}.").into_bytes();
        signed.extend_from_slice(&r.body);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(&signed);
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(r.header("webhook-signature"), format!("v1,{expected}"));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(
            (now - ts.parse::<i64>().unwrap()).abs() < 60,
            "fresh timestamp"
        );

        let body = r.json();
        let payload = &body["payload"];
        assert_eq!(payload["event"]["event_name"], "branch_create");
        assert_eq!(payload["streamId"], project);
        assert_eq!(payload["stream"]["name"], "Hooked");
        assert_eq!(payload["webhook"]["id"], hook);
        assert!(
            payload["webhook"].get("secret").is_none(),
            "the secret never leaves"
        );
        assert_eq!(payload["event"]["data"]["event"]["name"], name);
        assert!(payload["user"]["id"].is_string(), "{body}");
        assert!(payload["user"].get("email").is_none());
        assert_eq!(payload["server"]["version"], "2.31.14");
    }
    assert_ne!(got[0].header("webhook-id"), got[1].header("webhook-id"));

    let hooks = w.wait_history(&owner, &project, 2, 2).await;
    let item = &hooks["items"][0];
    assert_eq!(item["hasSecret"], true);
    assert_eq!(item["triggers"], json!(["branch_create"]));
    let history = &item["history"];
    assert_eq!(history["totalCount"], 2);
    let delivered = &history["items"][0];
    assert_eq!(delivered["statusInfo"], "Webhook called");
    assert_eq!(delivered["retryCount"], 0);
    assert_eq!(delivered["attempts"][0]["responseStatus"], 200);
    assert_eq!(delivered["attempts"][0]["succeeded"], true);
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.contains(&delivered["id"].as_str().unwrap()));

    // An unsigned webhook signs with an empty key, as the original does.
    let other = w.project(&owner).await;
    w.webhook(&owner, &other, &receiver.url, &["stream_update"], None)
        .await;
    w.ok(
        &owner,
        "mutation($p: ID!) { projectMutations { update(update: {id: $p, name: \"Renamed\"}) { id } } }",
        json!({"p": other}),
    )
    .await;
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(
        got[2].json()["payload"]["event"]["event_name"],
        "stream_update"
    );
    assert_eq!(
        got[2].header("x-webhook-signature"),
        hmac_hex(b"", &got[2].body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_then_up_gets_every_delivery_exactly_once() {
    let w = world_with(|_| {}, true).await;
    let receiver = WebhookReceiver::start().await;
    let port = receiver.port();
    let url = receiver.url.clone();
    receiver.stop();
    let owner = w.user("owner@example.com").await;
    let project = w.project(&owner).await;
    w.webhook(&owner, &project, &url, &["branch_create"], Some("k"))
        .await;
    for i in 0..5 {
        w.model(&owner, &project, &format!("m{i}")).await;
    }
    // Connection refused, recorded, retried.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let failed: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT delivery_id) FROM webhook_delivery_attempts WHERE NOT succeeded",
        )
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
        if failed >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed attempt recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hooks = w.hooks(&owner, &project).await;
    let pending = &hooks["items"][0]["history"]["items"];
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["statusInfo"].as_str().unwrap().contains("retrying")),
        "{hooks}"
    );

    let receiver = WebhookReceiver::start_on(port).await;
    let got = receiver.wait_for(5, WAIT).await;
    w.wait_history(&owner, &project, 5, 2).await;
    let got = if got.len() > 5 {
        got
    } else {
        receiver.received()
    };
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    let names: Vec<String> = got
        .iter()
        .map(|r| {
            r.json()["payload"]["event"]["data"]["event"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let before = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), before, "no delivery arrives twice");
    assert_eq!(before, 5);
    // While retries were pending, later deliveries were not held back (the documented
    // guarantee), so the order so far follows the retry schedule, not the events.
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["m0", "m1", "m2", "m3", "m4"]);
    // With no retry pending, deliveries go out in event order.
    for i in 5..10 {
        w.model(&owner, &project, &format!("m{i}")).await;
    }
    let got = receiver.wait_for(10, WAIT).await;
    let names: Vec<String> = got[5..]
        .iter()
        .map(|r| {
            r.json()["payload"]["event"]["data"]["event"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names, vec!["m5", "m6", "m7", "m8", "m9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_delivers_after_restart() {
    let mut w = world_with(|_| {}, true).await;
    let receiver = WebhookReceiver::start().await;
    receiver.hang(true);
    let owner = w.user("owner@example.com").await;
    let project = w.project(&owner).await;
    w.webhook(&owner, &project, &receiver.url, &["branch_create"], None)
        .await;
    w.model(&owner, &project, "m").await;
    let first = receiver.wait_for(1, WAIT).await;
    w.kill_worker();
    receiver.hang(false);
    w.start_worker();
    // The dead worker's lease (2 s) runs out; the new worker takes the job over.
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].header("webhook-id"), first[0].header("webhook-id"));
    assert_eq!(got[1].body, first[0].body, "the same frozen body");
    w.wait_history(&owner, &project, 1, 2).await;
    let outcomes: Vec<String> = sqlx::query_scalar(
        "SELECT outcome FROM job_attempts a JOIN jobs j ON j.id = a.job_id \
         WHERE j.kind = 'webhook.deliver' ORDER BY a.attempt",
    )
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(outcomes, vec!["abandoned", "succeeded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_webhook_sends_nothing() {
    let w = world_with(|_| {}, true).await;
    let receiver = WebhookReceiver::start().await;
    let owner = w.user("owner@example.com").await;
    let project = w.project(&owner).await;
    let hook = w
        .webhook(&owner, &project, &receiver.url, &["branch_create"], None)
        .await;
    let update = "mutation($w: WebhookUpdateInput!) { webhookUpdate(webhook: $w) }";
    w.ok(
        &owner,
        update,
        json!({"w": {"id": hook, "streamId": project, "enabled": false}}),
    )
    .await;
    w.model(&owner, &project, "while-off").await;
    w.ok(
        &owner,
        update,
        json!({"w": {"id": hook, "streamId": project, "enabled": true}}),
    )
    .await;
    w.model(&owner, &project, "while-on").await;
    let got = receiver.wait_for(1, WAIT).await;
    w.wait_history(&owner, &project, 1, 2).await;
    let got = if got.len() > 1 {
        got
    } else {
        receiver.received()
    };
    assert_eq!(got.len(), 1, "nothing for the event while disabled");
    assert_eq!(
        got[0].json()["payload"]["event"]["data"]["event"]["name"],
        "while-on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_failing_too_long_is_disabled_and_can_be_re_enabled() {
    let w = world_with(
        |s| {
            s.webhook_retry_schedule_seconds = "1".into();
            s.webhook_disable_after_seconds = 0;
        },
        true,
    )
    .await;
    let receiver = WebhookReceiver::start().await;
    receiver.respond_with(500);
    let owner = w.user("owner@example.com").await;
    let project = w.project(&owner).await;
    let hook = w
        .webhook(&owner, &project, &receiver.url, &["branch_create"], None)
        .await;
    w.model(&owner, &project, "m").await;
    // One try and one retry, both 500: the schedule is spent, the webhook goes off.
    receiver.wait_for(2, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let hooks = loop {
        let hooks = w.hooks(&owner, &project).await;
        if hooks["items"][0]["enabled"] == false {
            break hooks;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never disabled: {hooks}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let item = &hooks["items"][0];
    assert!(
        item["disabledReason"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{item}"
    );
    let delivery = &item["history"]["items"][0];
    assert_eq!(delivery["status"], 3);
    assert_eq!(delivery["retryCount"], 1);
    assert_eq!(delivery["attempts"][1]["responseStatus"], 500);

    receiver.respond_with(200);
    w.ok(
        &owner,
        "mutation($w: WebhookUpdateInput!) { webhookUpdate(webhook: $w) }",
        json!({"w": {"id": hook, "streamId": project, "enabled": true}}),
    )
    .await;
    let hooks = w.hooks(&owner, &project).await;
    assert_eq!(hooks["items"][0]["enabled"], true);
    assert!(hooks["items"][0]["disabledReason"].is_null());
    // And a failed delivery can be sent again by hand, with the same id and body.
    let delivery_id = delivery["id"].as_str().unwrap();
    w.ok(
        &owner,
        "mutation($i: WebhookRedeliverInput!) { webhookRedeliver(input: $i) }",
        json!({"i": {"streamId": project, "webhookId": hook, "deliveryId": delivery_id}}),
    )
    .await;
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got[2].header("webhook-id"), delivery_id);
    assert_eq!(got[2].body, got[0].body);
    w.wait_history(&owner, &project, 1, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_is_for_owners_validated_and_limited() {
    let w = world_with(|s| s.webhooks_max_per_project = 1, false).await;
    let owner = w.user("owner@example.com").await;
    let other = w.user("other@example.com").await;
    let project = w.project(&owner).await;
    let create = "mutation($w: WebhookCreateInput!) { webhookCreate(webhook: $w) }";
    let input = |url: &str, triggers: Value| json!({"w": {"streamId": project, "url": url, "triggers": triggers}});
    let code = |res: &Value| {
        res["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    let res = w
        .gql(&owner, create, input("ftp://x", json!(["commit_create"])))
        .await;
    assert_eq!(code(&res), "BAD_REQUEST_ERROR", "{res}");
    let res = w
        .gql(
            &owner,
            create,
            input("https://example.com/h", json!(["not_a_trigger"])),
        )
        .await;
    assert_eq!(code(&res), "BAD_REQUEST_ERROR", "{res}");
    // A private project is not even visible to others.
    let res = w
        .gql(
            &other,
            create,
            input("https://example.com/h", json!(["commit_create"])),
        )
        .await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");
    // Members who are not owners may not manage or see webhooks.
    w.ok(
        &owner,
        "mutation($p: String!, $u: String!) { projectMutations { updateRole(input: {projectId: $p, userId: $u, role: \"stream:contributor\"}) { id } } }",
        json!({"p": project, "u": w.ok(&other, "{ activeUser { id } }", json!({})).await["activeUser"]["id"]}),
    )
    .await;
    let res = w
        .gql(
            &other,
            create,
            input("https://example.com/h", json!(["commit_create"])),
        )
        .await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");
    let res = w
        .gql(
            &other,
            "query($p: String!) { project(id: $p) { webhooks { totalCount } } }",
            json!({"p": project}),
        )
        .await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");

    let id = w
        .ok(
            &owner,
            create,
            input("https://example.com/h", json!(["commit_create"])),
        )
        .await;
    assert!(id["webhookCreate"].is_string());
    let res = w
        .gql(
            &owner,
            create,
            input("https://example.com/2", json!(["commit_create"])),
        )
        .await;
    assert_eq!(
        code(&res),
        "BAD_REQUEST_ERROR",
        "the per-project limit: {res}"
    );
    assert!(
        res["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("maximum of 1")
    );

    let res = w
        .gql(
            &owner,
            "mutation($w: WebhookDeleteInput!) { webhookDelete(webhook: $w) }",
            json!({"w": {"id": id["webhookCreate"], "streamId": project}}),
        )
        .await;
    assert!(res["errors"].is_null(), "{res}");
    assert_eq!(w.hooks(&owner, &project).await["totalCount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_targets_are_refused_unless_allowed() {
    let w = world_with(|s| s.webhook_allow_private_targets = false, true).await;
    let receiver = WebhookReceiver::start().await;
    let owner = w.user("owner@example.com").await;
    let project = w.project(&owner).await;
    let res = w
        .gql(
            &owner,
            "mutation($w: WebhookCreateInput!) { webhookCreate(webhook: $w) }",
            json!({"w": {"streamId": project, "url": receiver.url, "triggers": ["branch_create"]}}),
        )
        .await;
    assert_eq!(
        res["errors"][0]["extensions"]["code"], "BAD_REQUEST_ERROR",
        "{res}"
    );
    // A name that resolves to loopback passes creation but is refused at connection time.
    let url = receiver.url.replace("127.0.0.1", "localhost");
    w.webhook(&owner, &project, &url, &["branch_create"], None)
        .await;
    w.model(&owner, &project, "m").await;
    let hooks = w.wait_history(&owner, &project, 1, 3).await;
    let delivery = &hooks["items"][0]["history"]["items"][0];
    assert!(
        delivery["statusInfo"]
            .as_str()
            .unwrap()
            .contains("not allowed"),
        "{delivery}"
    );
    assert_eq!(delivery["retryCount"], 0, "a refused target is not retried");
    assert!(receiver.received().is_empty());
}

/// A command waits for the `webhooks` read model only after an event that changes a webhook's
/// configuration (what `project.webhooks` answers): the deliveries other events queue there
/// are read by the worker alone. With every projector running but `webhooks`, a model create
/// is answered, while a webhook create runs into the read-your-writes wait; once `webhooks`
/// runs, the model create's delivery is queued all the same.
#[tokio::test]
async fn only_configuration_changes_wait_for_the_webhooks_read_model() {
    let db = TestDb::new().await;
    let settings = command_service::config::Settings {
        read_your_writes_timeout_ms: 1_000,
        ..settings(&db)
    };
    let app = TestApp::spawn(settings).await;
    let run = |only_webhooks: bool| {
        let cancel = CancellationToken::new();
        let chosen = projections::registry()
            .into_iter()
            .filter(|p| (p.name() == projections::webhooks::NAME) == only_webhooks)
            .collect();
        let runtime = projections::ProjectorRuntime::new(
            db.pool.clone(),
            chosen,
            projections::RuntimeOptions::default(),
        );
        tokio::spawn(runtime.run(cancel.clone()));
        cancel.drop_guard()
    };
    let _others = run(false);
    let token = tests::register(&app.base_url, "waits@example.com").await;
    let (project, _) = app.project_with_model(&token, "main").await;
    let queued = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM jobs WHERE kind = 'webhook.deliver'")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };

    let create = "mutation($w: WebhookCreateInput!) { webhookCreate(webhook: $w) }";
    let hook = json!({"w": {"streamId": project, "url": "http://127.0.0.1:9/hook",
        "triggers": ["branch_create"], "description": "ci"}});
    let lagged = app.gql(&token, create, hook).await;
    assert_eq!(
        lagged["errors"][0]["extensions"]["code"], "PROJECTION_LAG",
        "a configuration change waits for the read model that shows it: {lagged}"
    );

    // The webhook is recorded (a lag is not a refusal), and a model create is answered
    // without the webhooks read model: its delivery is not queued yet.
    app.create_model(&token, &project, "doors").await;
    assert_eq!(queued().await, 0);

    let _webhooks = run(true);
    tests::until("the model create's delivery is queued", WAIT, || async {
        queued().await == 1
    })
    .await;
    let listed = app
        .gql_data(
            &token,
            "query($p: String!) { project(id: $p) { webhooks { items { url } } } }",
            json!({"p": project}),
        )
        .await;
    assert_eq!(
        listed["project"]["webhooks"]["items"][0]["url"], "http://127.0.0.1:9/hook",
        "{listed}"
    );
}

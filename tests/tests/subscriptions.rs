//! Subscriptions over real WebSockets on both subprotocols: the current and legacy events,
//! access at delivery time, refusal of anonymous connections, keep-alives, fan-out between
//! two API processes through Redis, and a slow subscriber being cut off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WAIT: Duration = Duration::from_secs(20);
const LEGACY: &str = "graphql-ws";
const MODERN: &str = "graphql-transport-ws";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A subscription client speaking either protocol.
struct Client {
    socket: Socket,
    protocol: &'static str,
    next_id: u32,
}

impl Client {
    async fn open(app: &TestApp, protocol: &'static str) -> Socket {
        let url = app.base_url.replace("http://", "ws://") + "/graphql";
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
        let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        socket
    }

    /// Opens a `graphql-ws` connection, sends `init` as its `connection_init` and returns the
    /// server's refusal (a `connection_error`); panics on anything else.
    async fn refused_legacy(app: &TestApp, init: Value) -> Value {
        let mut client = Self {
            socket: Self::open(app, LEGACY).await,
            protocol: LEGACY,
            next_id: 0,
        };
        client.send(init).await;
        let refused = client.receive().await;
        assert_eq!(refused["type"], "connection_error", "{refused}");
        refused
    }

    /// Connects and initialises with `token`; panics unless acknowledged.
    async fn connect(app: &TestApp, protocol: &'static str, token: &str) -> Self {
        let mut client = Self {
            socket: Self::open(app, protocol).await,
            protocol,
            next_id: 0,
        };
        client
            .send(json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}}))
            .await;
        let ack = client.receive().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        client
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    /// The next message, keep-alives included.
    async fn raw(&mut self) -> Message {
        tokio::time::timeout(WAIT, self.socket.next())
            .await
            .expect("a message in time")
            .expect("the socket open")
            .expect("a frame")
    }

    /// The next JSON message that is not a keep-alive.
    async fn receive(&mut self) -> Value {
        loop {
            match self.raw().await {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] != "ka" {
                        return value;
                    }
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Starts a subscription; returns its id.
    async fn subscribe(&mut self, query: &str, variables: Value) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let kind = if self.protocol == LEGACY {
            "start"
        } else {
            "subscribe"
        };
        self.send(
            json!({"id": id, "type": kind, "payload": {"query": query, "variables": variables}}),
        )
        .await;
        id
    }

    /// The next result: `(subscription id, data)`; panics on an error message. Skips
    /// completions (a deleted project completes every subscription to it).
    async fn next(&mut self) -> (String, Value) {
        let mut message = self.receive().await;
        while message["type"] == "complete" {
            message = self.receive().await;
        }
        let data_type = if self.protocol == LEGACY {
            "data"
        } else {
            "next"
        };
        assert_eq!(message["type"], data_type, "{message}");
        assert!(message["payload"]["errors"].is_null(), "{message}");
        (
            message["id"].as_str().unwrap().to_owned(),
            message["payload"]["data"].clone(),
        )
    }
}

struct World {
    app: TestApp,
    db: TestDb,
    _stack: tokio_util::sync::DropGuard,
}

async fn world_with(tweak: impl FnOnce(&mut command_service::config::Settings)) -> World {
    let db = TestDb::new().await;
    let mut settings = test_settings(&db);
    tweak(&mut settings);
    let (app, stack) = tests::spawn_stack(&db, settings).await;
    World {
        app,
        db,
        _stack: stack,
    }
}

/// Waits until exactly `n` subscriptions on `app` receive live events (the
/// `strata_live_subscriptions` gauge), so events that follow reach them.
async fn settle(app: &TestApp, n: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.state.hub().active() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} live subscriptions, expected {n}",
            app.state.hub().active()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn gql(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    app.gql_data(token, query, variables).await
}

async fn create_project(app: &TestApp, token: &str) -> String {
    gql(
        app,
        token,
        "mutation { projectMutations { create(input: {name: \"Live\"}) { id } } }",
        json!({}),
    )
    .await["projectMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn rename(app: &TestApp, token: &str, project: &str, name: &str) {
    gql(
        app,
        token,
        "mutation($p: ID!, $n: String!) { projectMutations { update(update: {id: $p, name: $n}) { id } } }",
        json!({"p": project, "n": name}),
    )
    .await;
}

async fn user_id(app: &TestApp, token: &str) -> String {
    gql(app, token, "{ activeUser { id } }", json!({})).await["activeUser"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn set_role(app: &TestApp, token: &str, project: &str, user: &str, role: Option<&str>) {
    gql(
        app,
        token,
        "mutation($p: String!, $u: String!, $r: String) { projectMutations { updateRole(input: {projectId: $p, userId: $u, role: $r}) { id } } }",
        json!({"p": project, "u": user, "r": role}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_subscriptions_fire_on_both_protocols() {
    let w = world_with(|_| {}).await;
    let owner = tests::register(&w.app.base_url, "owner@example.com").await;
    let other = tests::register(&w.app.base_url, "other@example.com").await;
    let other_id = user_id(&w.app, &other).await;
    for protocol in [LEGACY, MODERN] {
        // The previous round's connections are gone.
        settle(&w.app, 0).await;
        let project = create_project(&w.app, &owner).await;
        let mut c = Client::connect(&w.app, protocol, &owner).await;
        let mut mine = Client::connect(&w.app, protocol, &other).await;
        let updated = c
            .subscribe(
                "subscription($id: String!) { projectUpdated(id: $id) { id type project { name } } }",
                json!({"id": project}),
            )
            .await;
        let models = c
            .subscribe(
                "subscription($id: String!) { projectModelsUpdated(id: $id) { id type model { name } } }",
                json!({"id": project}),
            )
            .await;
        let versions = c
            .subscribe(
                "subscription($id: String!) { projectVersionsUpdated(id: $id) { id type modelId version { message } } }",
                json!({"id": project}),
            )
            .await;
        mine.subscribe(
            "subscription { userProjectsUpdated { id type project { name } } }",
            json!({}),
        )
        .await;
        // Events are delivered to subscriptions that have their receiver: wait for all four.
        settle(&w.app, 4).await;

        rename(&w.app, &owner, &project, "Renamed").await;
        let (id, data) = c.next().await;
        assert_eq!(id, updated);
        let message = &data["projectUpdated"];
        assert_eq!(message["type"], "UPDATED");
        // The read model already has the change when the message arrives.
        assert_eq!(message["project"]["name"], "Renamed", "{protocol}");

        let model = w.app.create_model(&owner, &project, "walls").await;
        let (id, data) = c.next().await;
        assert_eq!(id, models);
        assert_eq!(data["projectModelsUpdated"]["type"], "CREATED");
        assert_eq!(data["projectModelsUpdated"]["id"], model);
        assert_eq!(data["projectModelsUpdated"]["model"]["name"], "walls");

        tests::store_object(
            &w.app.base_url,
            &owner,
            &project,
            "0123456789abcdef0123456789abcdef",
        )
        .await;
        gql(
            &w.app,
            &owner,
            "mutation($p: String!, $m: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: \"0123456789abcdef0123456789abcdef\", message: \"first\"}) { id } } }",
            json!({"p": project, "m": model}),
        )
        .await;
        let (id, data) = c.next().await;
        assert_eq!(id, versions);
        assert_eq!(data["projectVersionsUpdated"]["type"], "CREATED");
        assert_eq!(data["projectVersionsUpdated"]["modelId"], model);
        assert_eq!(
            data["projectVersionsUpdated"]["version"]["message"],
            "first"
        );

        set_role(&w.app, &owner, &project, &other_id, Some("stream:reviewer")).await;
        let (_, data) = mine.next().await;
        assert_eq!(data["userProjectsUpdated"]["type"], "ADDED");
        assert_eq!(data["userProjectsUpdated"]["id"], project);
        assert_eq!(data["userProjectsUpdated"]["project"]["name"], "Renamed");
        set_role(&w.app, &owner, &project, &other_id, None).await;
        let (_, data) = mine.next().await;
        assert_eq!(data["userProjectsUpdated"]["type"], "REMOVED");

        gql(
            &w.app,
            &owner,
            "mutation($p: String!) { projectMutations { delete(id: $p) } }",
            json!({"p": project}),
        )
        .await;
        let (id, data) = c.next().await;
        assert_eq!(id, updated);
        assert_eq!(data["projectUpdated"]["type"], "DELETED");
        assert!(data["projectUpdated"]["project"].is_null());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_subscriptions_fire() {
    let w = world_with(|_| {}).await;
    let owner = tests::register(&w.app.base_url, "owner@example.com").await;
    let other = tests::register(&w.app.base_url, "other@example.com").await;
    let other_id = user_id(&w.app, &other).await;
    for protocol in [LEGACY, MODERN] {
        settle(&w.app, 0).await;
        let project = create_project(&w.app, &owner).await;
        let mut c = Client::connect(&w.app, protocol, &owner).await;
        let mut them = Client::connect(&w.app, protocol, &other).await;
        let vars = json!({"s": project});
        for field in [
            "streamUpdated(streamId: $s)",
            "branchCreated(streamId: $s)",
            "branchUpdated(streamId: $s)",
            "branchDeleted(streamId: $s)",
            "commitCreated(streamId: $s)",
            "commitUpdated(streamId: $s)",
            "commitDeleted(streamId: $s)",
            "streamDeleted(streamId: $s)",
        ] {
            c.subscribe(
                &format!("subscription($s: String!) {{ {field} }}"),
                vars.clone(),
            )
            .await;
        }
        them.subscribe("subscription { userStreamAdded }", json!({}))
            .await;
        them.subscribe("subscription { userStreamRemoved }", json!({}))
            .await;
        settle(&w.app, 10).await;

        rename(&w.app, &owner, &project, "Legacy").await;
        let (_, data) = c.next().await;
        assert_eq!(data["streamUpdated"]["name"], "Legacy");
        assert_eq!(data["streamUpdated"]["id"], project);

        let model = gql(
            &w.app,
            &owner,
            "mutation($p: ID!) { modelMutations { create(input: {projectId: $p, name: \"Main Branch\"}) { id } } }",
            json!({"p": project}),
        )
        .await["modelMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, data) = c.next().await;
        assert_eq!(data["branchCreated"]["id"], model);
        assert_eq!(data["branchCreated"]["streamId"], project);

        gql(
            &w.app,
            &owner,
            "mutation($p: ID!, $m: ID!) { modelMutations { update(input: {projectId: $p, id: $m, description: \"d\"}) { id } } }",
            json!({"p": project, "m": model}),
        )
        .await;
        let (_, data) = c.next().await;
        assert_eq!(data["branchUpdated"]["description"], "d");

        tests::store_object(
            &w.app.base_url,
            &owner,
            &project,
            "0123456789abcdef0123456789abcdef",
        )
        .await;
        let version = gql(
            &w.app,
            &owner,
            "mutation($p: String!, $m: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: \"0123456789abcdef0123456789abcdef\", message: \"c1\"}) { id } } }",
            json!({"p": project, "m": model}),
        )
        .await["versionMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (_, data) = c.next().await;
        let created = &data["commitCreated"];
        assert_eq!(created["id"], version);
        assert_eq!(created["message"], "c1");
        assert_eq!(created["objectId"], "0123456789abcdef0123456789abcdef");
        assert!(created["authorId"].is_string());

        gql(
            &w.app,
            &owner,
            "mutation($p: ID!, $v: ID!) { versionMutations { update(input: {projectId: $p, versionId: $v, message: \"c2\"}) { id } } }",
            json!({"p": project, "v": version}),
        )
        .await;
        let (_, data) = c.next().await;
        assert_eq!(data["commitUpdated"]["message"], "c2");

        gql(
            &w.app,
            &owner,
            "mutation($p: ID!, $v: ID!) { versionMutations { delete(input: {projectId: $p, versionIds: [$v]}) } }",
            json!({"p": project, "v": version}),
        )
        .await;
        let (_, data) = c.next().await;
        assert_eq!(data["commitDeleted"]["id"], version);

        gql(
            &w.app,
            &owner,
            "mutation($p: ID!, $m: ID!) { modelMutations { delete(input: {projectId: $p, id: $m}) } }",
            json!({"p": project, "m": model}),
        )
        .await;
        let (_, data) = c.next().await;
        assert_eq!(data["branchDeleted"]["id"], model);

        set_role(
            &w.app,
            &owner,
            &project,
            &other_id,
            Some("stream:contributor"),
        )
        .await;
        let (_, data) = them.next().await;
        assert_eq!(data["userStreamAdded"]["id"], project);
        set_role(&w.app, &owner, &project, &other_id, None).await;
        let (_, data) = them.next().await;
        assert_eq!(data["userStreamRemoved"]["id"], project);

        gql(
            &w.app,
            &owner,
            "mutation($p: String!) { projectMutations { delete(id: $p) } }",
            json!({"p": project}),
        )
        .await;
        let (_, data) = c.next().await;
        assert_eq!(data["streamDeleted"]["streamId"], project);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_connections_and_foreign_private_projects_are_refused() {
    let w = world_with(|_| {}).await;
    let owner = tests::register(&w.app.base_url, "owner@example.com").await;
    let other = tests::register(&w.app.base_url, "other@example.com").await;
    let project = create_project(&w.app, &owner).await;

    let refused =
        Client::refused_legacy(&w.app, json!({"type": "connection_init", "payload": {}})).await;
    assert!(
        refused["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("token")
    );

    let mut modern = Client {
        socket: Client::open(&w.app, MODERN).await,
        protocol: MODERN,
        next_id: 0,
    };
    modern
        .send(json!({"type": "connection_init", "payload": {"Authorization": "Bearer nonsense"}}))
        .await;
    match modern.raw().await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4403),
        other => panic!("expected a close, got {other:?}"),
    }

    let mut c = Client::connect(&w.app, LEGACY, &other).await;
    c.subscribe(
        "subscription($id: String!) { projectUpdated(id: $id) { id name: type } }",
        json!({"id": project}),
    )
    .await;
    let message = c.receive().await;
    assert_eq!(message["type"], "data", "{message}");
    assert!(message["payload"]["data"].is_null(), "{message}");
    assert_eq!(
        message["payload"]["errors"][0]["extensions"]["code"],
        "FORBIDDEN"
    );
    let text = message.to_string();
    assert!(!text.contains("Live"), "the private name never leaks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_stops_receiving_at_once() {
    let w = world_with(|_| {}).await;
    let owner = tests::register(&w.app.base_url, "owner@example.com").await;
    let member = tests::register(&w.app.base_url, "member@example.com").await;
    let member_id = user_id(&w.app, &member).await;
    let project = create_project(&w.app, &owner).await;
    set_role(
        &w.app,
        &owner,
        &project,
        &member_id,
        Some("stream:reviewer"),
    )
    .await;

    let query =
        "subscription($id: String!) { projectUpdated(id: $id) { id type project { name } } }";
    let mut theirs = Client::connect(&w.app, MODERN, &member).await;
    theirs.subscribe(query, json!({"id": project})).await;
    let mut ours = Client::connect(&w.app, MODERN, &owner).await;
    ours.subscribe(query, json!({"id": project})).await;
    settle(&w.app, 2).await;

    rename(&w.app, &owner, &project, "seen by both").await;
    assert_eq!(
        theirs.next().await.1["projectUpdated"]["project"]["name"],
        "seen by both"
    );
    assert_eq!(
        ours.next().await.1["projectUpdated"]["project"]["name"],
        "seen by both"
    );

    set_role(&w.app, &owner, &project, &member_id, None).await;
    rename(&w.app, &owner, &project, "secret").await;
    assert_eq!(
        ours.next().await.1["projectUpdated"]["project"]["name"],
        "secret"
    );
    // Back in, then another change: the next message the former member gets is that one,
    // so "secret" never reached them.
    set_role(
        &w.app,
        &owner,
        &project,
        &member_id,
        Some("stream:reviewer"),
    )
    .await;
    rename(&w.app, &owner, &project, "public again").await;
    assert_eq!(
        ours.next().await.1["projectUpdated"]["project"]["name"],
        "public again"
    );
    let (_, data) = theirs.next().await;
    assert_eq!(data["projectUpdated"]["project"]["name"], "public again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_on_one_replica_reaches_a_subscriber_on_another() {
    let w = world_with(|_| {}).await;
    let second = TestApp::spawn(test_settings(&w.db)).await;
    let owner = tests::register(&w.app.base_url, "owner@example.com").await;
    let project = create_project(&w.app, &owner).await;
    let mut c = Client::connect(&second, LEGACY, &owner).await;
    c.subscribe(
        "subscription($id: String!) { projectUpdated(id: $id) { id type project { name } } }",
        json!({"id": project}),
    )
    .await;
    settle(&second, 1).await;
    rename(&w.app, &owner, &project, "from replica one").await;
    let (_, data) = c.next().await;
    assert_eq!(
        data["projectUpdated"]["project"]["name"],
        "from replica one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_ws_connections_get_keep_alives() {
    let w = world_with(|s| s.subscription_keepalive_seconds = 1).await;
    let owner = tests::register(&w.app.base_url, "owner@example.com").await;
    let mut c = Client::connect(&w.app, LEGACY, &owner).await;
    let started = std::time::Instant::now();
    match c.raw().await {
        Message::Text(text) => assert_eq!(text.as_str(), "{\"type\":\"ka\"}"),
        other => panic!("expected a keep-alive, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_is_cut_off_and_others_are_not() {
    let w = world_with(|s| s.subscription_buffer_events = 2).await;
    let roomy = TestApp::spawn(test_settings(&w.db)).await;
    let owner = tests::register(&w.app.base_url, "owner@example.com").await;
    let project = create_project(&w.app, &owner).await;
    let query = "subscription($id: String!) { projectUpdated(id: $id) { id type project { name models { totalCount } team { user { name } } } } }";
    let mut slow = Client::connect(&w.app, MODERN, &owner).await;
    slow.subscribe(query, json!({"id": project})).await;
    let mut fine = Client::connect(&roomy, MODERN, &owner).await;
    fine.subscribe(query, json!({"id": project})).await;
    settle(&w.app, 1).await;
    settle(&roomy, 1).await;

    // Fifty changes in one transaction reach the hub at once: far more than a buffer of two.
    let log = schema::EventLog::new(w.db.pool.clone());
    let stream = domain::project::stream_id(&project).unwrap();
    let events: Vec<_> = (0..50)
        .map(|i| {
            domain::ProjectEvent::ProjectUpdated {
                project_id: project.clone(),
                name: format!("burst {i}"),
                description: String::new(),
                visibility: domain::Visibility::Private,
                allow_public_comments: false,
            }
            .to_new_event()
            .unwrap()
        })
        .collect();
    log.append(&schema::AppendRequest {
        stream,
        expected: schema::ExpectedVersion::Any,
        events,
        metadata: domain::EventMetadata::default(),
        command_id: None,
    })
    .await
    .unwrap();

    let mut closed = None;
    for _ in 0..60 {
        match slow.raw().await {
            Message::Close(frame) => {
                closed = frame;
                break;
            }
            Message::Text(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let frame = closed.expect("the slow subscriber is closed");
    assert_eq!(u16::from(frame.code), 4000);
    assert_eq!(
        frame.reason.as_str(),
        command_service::graphql::ws::TOO_SLOW
    );
    for _ in 0..50 {
        let (_, data) = fine.next().await;
        assert_eq!(data["projectUpdated"]["type"], "UPDATED");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_import_subscriptions_fire_on_both_protocols() {
    let w = world_with(|_| {}).await;
    let token = tests::register(&w.app.base_url, "imports@example.com").await;
    let project = create_project(&w.app, &token).await;
    let model = gql(
        &w.app,
        &token,
        "mutation($p: ID!) { modelMutations { create(input: {projectId: $p, name: \"uploads\"}) { id } } }",
        json!({"p": project}),
    )
    .await["modelMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut legacy = Client::connect(&w.app, LEGACY, &token).await;
    let mut modern = Client::connect(&w.app, MODERN, &token).await;
    legacy
        .subscribe(
            "subscription($id: String!) { projectFileImportUpdated(id: $id) { type id upload { fileName convertedStatus modelName } } }",
            json!({"id": project}),
        )
        .await;
    modern
        .subscribe(
            "subscription($id: String!) { projectPendingVersionsUpdated(id: $id) { type id version { fileName convertedStatus } } }",
            json!({"id": project}),
        )
        .await;
    settle(&w.app, 2).await;
    // An upload, then its import: no worker runs here, so it stays queued until requeued.
    let generated = gql(
        &w.app,
        &token,
        "mutation($p: String!) { fileUploadMutations { generateUploadUrl(input: {projectId: $p, fileName: \"part.stl\"}) { url fileId } } }",
        json!({"p": project}),
    )
    .await;
    let out = &generated["fileUploadMutations"]["generateUploadUrl"];
    let put = w
        .app
        .http
        .put(out["url"].as_str().unwrap())
        .body("solid x\nendsolid x\n")
        .send()
        .await
        .unwrap();
    let etag = put.headers()["etag"].to_str().unwrap().to_owned();
    let file = out["fileId"].as_str().unwrap().to_owned();
    let started = gql(
        &w.app,
        &token,
        "mutation($p: String!, $m: String!, $f: String!, $e: String!) { fileUploadMutations { startFileIngestion(input: {projectId: $p, modelId: $m, fileId: $f, etag: $e}) { id } } }",
        json!({"p": project, "m": model, "f": file, "e": etag}),
    )
    .await;
    let ingestion = started["fileUploadMutations"]["startFileIngestion"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, created) = legacy.next().await;
    assert_eq!(
        created["projectFileImportUpdated"],
        json!({"type": "CREATED", "id": file, "upload": {"fileName": "part.stl", "convertedStatus": 0, "modelName": "uploads"}})
    );
    let (_, created) = modern.next().await;
    assert_eq!(created["projectPendingVersionsUpdated"]["type"], "CREATED");
    assert_eq!(
        created["projectPendingVersionsUpdated"]["id"],
        file.as_str()
    );
    gql(
        &w.app,
        &token,
        "mutation($p: String!, $i: ID!) { projectMutations { modelIngestionMutations { failWithError(input: {projectId: $p, ingestionId: $i, errorReason: \"broken\", errorStacktrace: null}) { id } } } }",
        json!({"p": project, "i": ingestion}),
    )
    .await;
    let (_, updated) = legacy.next().await;
    assert_eq!(updated["projectFileImportUpdated"]["type"], "UPDATED");
    assert_eq!(
        updated["projectFileImportUpdated"]["upload"]["convertedStatus"],
        3
    );
    let (_, updated) = modern.next().await;
    assert_eq!(
        updated["projectPendingVersionsUpdated"]["version"]["convertedStatus"],
        3
    );
}

#[tokio::test]
async fn a_stored_preview_fires_for_every_version_of_its_object() {
    // The empty-model path stores its image without a browser, so this needs none.
    let w = world_with(|s| {
        s.preview_viewer_dir = Some("/nonexistent/viewer".to_owned());
        s.preview_chromedriver = "/nonexistent/chromedriver".to_owned();
    })
    .await;
    let token = tests::register(&w.app.base_url, "previews@example.com").await;
    let (project, model) = w.app.project_with_model(&token, "main").await;
    let root = "00000000000000000000000000000abc";
    tests::store_object(&w.app.base_url, &token, &project, root).await;
    let mut client = Client::connect(&w.app, MODERN, &token).await;
    client
        .subscribe(
            "subscription($id: String!) { projectVersionsPreviewGenerated(id: $id) { projectId objectId versionId } }",
            json!({"id": project}),
        )
        .await;
    settle(&w.app, 1).await;
    let mut versions = Vec::new();
    for _ in 0..2 {
        let created = gql(
            &w.app,
            &token,
            "mutation($p: String!, $m: String!, $o: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: $o}) { id } } }",
            json!({"p": project, "m": model, "o": root}),
        )
        .await;
        versions.push(created["versionMutations"]["create"]["id"].clone());
    }
    let runner =
        command_service::app::job_runner(w.app.state.settings(), w.db.pool.clone()).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(runner.run(stop.clone()));
    let _stop = stop.drop_guard();
    // One preview (the versions share their root object), announced for both versions.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (_, data) = client.next().await;
        let message = &data["projectVersionsPreviewGenerated"];
        assert_eq!(message["projectId"], project.as_str());
        assert_eq!(message["objectId"], root);
        seen.push(message["versionId"].clone());
    }
    assert_eq!(seen, versions);
}

/// The close frame a socket receives next (keep-alives skipped).
async fn closed_with(socket: &mut Socket) -> (u16, String) {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_hear_when_redis_is_gone_and_subscribe_again_once_it_is_back() {
    let redis: std::net::SocketAddr = tests::test_redis_url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("the test Redis URL is host:port");
    let proxy = tests::proxy::TcpProxy::start(redis).await;
    let via = format!("redis://{}", proxy.addr);
    let w = world_with(|s| s.redis_url = Some(command_service::config::Secret::new(via))).await;
    let owner = tests::register(&w.app.base_url, "owner@example.com").await;
    let project = create_project(&w.app, &owner).await;
    let updated = "subscription($id: String!) { projectUpdated(id: $id) { id project { name } } }";
    let mut c = Client::connect(&w.app, MODERN, &owner).await;
    c.subscribe(updated, json!({"id": project})).await;
    settle(&w.app, 1).await;
    rename(&w.app, &owner, &project, "Before").await;
    assert_eq!(
        c.next().await.1["projectUpdated"]["project"]["name"],
        "Before"
    );

    // Redis goes away: the subscriber is told (1013, try again later) instead of waiting
    // for events that can no longer reach this process.
    proxy.cut();
    let cut = std::time::Instant::now();
    let (code, reason) = closed_with(&mut c.socket).await;
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("Redis is unreachable"), "{reason}");
    let told_after = cut.elapsed();
    // A new subscriber is refused the same way while it lasts, and readiness says why.
    let mut refused = Client::open(&w.app, MODERN).await;
    refused
        .send(Message::Text(
            json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {owner}")}})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    assert_eq!(closed_with(&mut refused).await.0, 1013);
    let ready = reqwest::get(format!("{}/readiness", w.app.base_url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["details"]["redis"]["ok"], false, "{ready}");
    assert_eq!(ready["details"]["postgres"]["ok"], true, "{ready}");

    // Back: without a restart, a new subscription receives events again.
    proxy.restore();
    let deadline = tokio::time::Instant::now() + WAIT;
    while w.app.state.hub().link() != command_service::realtime::Link::Up {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hub never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = Client::connect(&w.app, MODERN, &owner).await;
    again.subscribe(updated, json!({"id": project})).await;
    settle(&w.app, 1).await;
    rename(&w.app, &owner, &project, "After").await;
    assert_eq!(
        again.next().await.1["projectUpdated"]["project"]["name"],
        "After"
    );
    println!("subscriber told Redis was gone {told_after:?} after the cut");
    assert!(told_after < Duration::from_secs(5), "{told_after:?}");
}

#[tokio::test]
async fn a_new_publisher_resumes_where_the_last_one_stopped() {
    let db = TestDb::new().await;
    let settings = test_settings(&db);
    let app = TestApp::spawn(settings.clone()).await;
    let stack = tokio_util::sync::CancellationToken::new();
    let _stop_stack = stack.clone().drop_guard();
    let runtime = projections::ProjectorRuntime::new(
        db.pool.clone(),
        projections::registry(),
        projections::RuntimeOptions {
            poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
    );
    tokio::spawn(runtime.run(stack.clone()));
    let redis = || {
        command_service::app::redis_client(
            settings.redis_url.as_ref().unwrap(),
            settings.redis_reconnect_max_ms,
        )
        .unwrap()
    };
    let first = stack.child_token();
    let leader = tokio::spawn(
        command_service::realtime::Publisher::new(db.pool.clone(), redis()).run(first.clone()),
    );
    let owner = tests::register(&app.base_url, "owner@example.com").await;
    let project = create_project(&app, &owner).await;
    let mut c = Client::connect(&app, MODERN, &owner).await;
    c.subscribe(
        "subscription($id: String!) { projectUpdated(id: $id) { id type } }",
        json!({"id": project}),
    )
    .await;
    settle(&app, 1).await;
    rename(&app, &owner, &project, "one").await;
    let (_, data) = c.next().await;
    assert_eq!(data["projectUpdated"]["type"], "UPDATED");
    // The leader goes (as with its process); the read model goes on applying changes.
    first.cancel();
    leader.await.unwrap();
    rename(&app, &owner, &project, "two").await;
    rename(&app, &owner, &project, "three").await;
    // The next leader publishes what was applied while nobody published, not only what
    // comes after it took over.
    tokio::spawn(
        command_service::realtime::Publisher::new(db.pool.clone(), redis())
            .run(stack.child_token()),
    );
    for _ in 0..2 {
        let (_, data) = c.next().await;
        assert_eq!(data["projectUpdated"]["type"], "UPDATED", "{data}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_may_hold_only_so_many_connections_and_gets_them_back_on_close() {
    let w = world_with(|s| s.subscription_max_connections_per_user = 2).await;
    let me = tests::register(&w.app.base_url, "many@example.com").await;
    let other = tests::register(&w.app.base_url, "few@example.com").await;
    let mut first = Client::connect(&w.app, MODERN, &me).await;
    let _second = Client::connect(&w.app, LEGACY, &me).await;
    // The next connection of the same user is refused, on either protocol.
    let init = |token: &str| json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    let try_modern = |token: String| {
        let app = &w.app;
        async move {
            let mut c = Client {
                socket: Client::open(app, MODERN).await,
                protocol: MODERN,
                next_id: 0,
            };
            c.send(init(&token)).await;
            match c.raw().await {
                Message::Close(Some(frame)) => Err(u16::from(frame.code)),
                Message::Text(text) => {
                    let ack: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(ack["type"], "connection_ack", "{ack}");
                    Ok(c)
                }
                other => panic!("expected an answer to connection_init, got {other:?}"),
            }
        }
    };
    assert_eq!(try_modern(me.clone()).await.err(), Some(4429));
    let refused = Client::refused_legacy(&w.app, init(&me)).await;
    assert!(
        refused["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("at once"),
        "{refused}"
    );
    // Another user's count is their own.
    assert!(try_modern(other).await.is_ok());

    // A closed connection gives its place back once the server has seen it close; until then
    // the refusal stands, so look again until the deadline.
    first.socket.close(None).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match try_modern(me.clone()).await {
            Ok(_) => break,
            Err(code) => {
                assert_eq!(code, 4429);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the closed connection's place was never given back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

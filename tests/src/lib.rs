//! Test support: a freshly migrated Postgres schema per test, and the API spawned on a random
//! port against it. Every test talks to real PostgreSQL and Redis started by `deploy/dev test`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod faults;
pub mod mailbox;
pub mod pg;
pub mod proxy;
pub mod race;
pub mod receiver;

use std::sync::Once;

use command_service::app::{self, AppState};
use command_service::config::{Secret, Settings};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;

/// Polls `check` every 20 ms until it holds; panics naming `what` after `within`.
pub async fn until<F, Fut>(what: &str, within: std::time::Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `strata` binary next to the running test's (built by any workspace test run).
pub fn strata_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("strata"))
        .unwrap();
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p command-service --bin strata`)",
        bin.display()
    );
    bin
}

/// Installs the process-wide TLS provider once (both ring and aws-lc-rs are in the tree).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// The database tests use: `STRATA_TEST_DATABASE_URL`, as exported by `deploy/dev test`.
pub fn test_database_url() -> String {
    std::env::var("STRATA_TEST_DATABASE_URL").expect(
        "STRATA_TEST_DATABASE_URL is not set: run the tests through `deploy/dev test`, \
         or export it (a superuser URL to a scratch database)",
    )
}

/// The Redis tests use: `STRATA_TEST_REDIS_URL`.
pub fn test_redis_url() -> String {
    std::env::var("STRATA_TEST_REDIS_URL")
        .expect("STRATA_TEST_REDIS_URL is not set: run the tests through `deploy/dev test`")
}

/// One test's own schema, freshly migrated, reached through `search_path`.
pub struct TestDb {
    /// Pool whose connections see only this schema (and `pg_catalog`).
    pub pool: PgPool,
    /// The schema's name.
    pub schema: String,
    /// A URL that selects the schema, for processes the test starts.
    pub url: String,
}

impl TestDb {
    /// A new, migrated schema.
    pub async fn new() -> Self {
        Self::new_at(&test_database_url()).await
    }

    /// A new, migrated schema in the database at `base` (a cluster a test runs itself).
    pub async fn new_at(base: &str) -> Self {
        let db = Self::empty_at(base).await;
        schema::migrate(&db.pool)
            .await
            .expect("migrating the test schema");
        projections::install(&db.pool, &projections::registry())
            .await
            .expect("installing projections");
        db
    }

    /// A new schema with no migrations applied.
    pub async fn empty() -> Self {
        Self::empty_at(&test_database_url()).await
    }

    /// A new schema with no migrations applied, in the database at `base`.
    pub async fn empty_at(base: &str) -> Self {
        init();
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(base)
            .await
            .expect("connecting to the test database");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("creating the test schema");
        admin.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        let options: PgConnectOptions = url.parse().expect("test database URL");
        // Sessions as the API's pool sets them up (`schema::session`).
        let options = schema::session::options(options, Default::default());
        let pool = PgPoolOptions::new()
            .max_connections(40)
            .connect_with(options)
            .await
            .expect("connecting to the test schema");
        Self { pool, schema, url }
    }
}

/// Waits until readers can see `cursor`. Other tests' open transactions hold the cluster-wide
/// visibility horizon back for a moment (by design: see ARCHITECTURE.md), so a test that reads
/// its own writes through `read_all` waits for them first; 10 s at most.
pub async fn wait_readable(log: &schema::EventLog, cursor: schema::LogCursor) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.readable_head().await.expect("readable head") < cursor {
        assert!(
            std::time::Instant::now() < deadline,
            "the horizon never passed {cursor}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Settings pointing at `db` and the test Redis, with an unused port.
pub fn test_settings(db: &TestDb) -> Settings {
    Settings {
        port: 0,
        database_url: Some(Secret::new(db.url.clone())),
        redis_url: Some(Secret::new(test_redis_url())),
        token_pepper: Some(Secret::new("test-pepper-test-pepper-test-pepper-0123")),
        // Tests that are about limits switch them on; the rest would trip them.
        rate_limits_enabled: false,
        // Tests run many stacks on two cores at once: give the read models room.
        read_your_writes_timeout_ms: 15_000,
        s3_endpoint: test_env("STRATA_TEST_S3_ENDPOINT"),
        s3_bucket: test_env("STRATA_TEST_S3_BUCKET").unwrap_or_else(|| "strata".to_owned()),
        s3_access_key_id: test_env("STRATA_TEST_S3_ACCESS_KEY_ID").map(Secret::new),
        s3_secret_access_key: test_env("STRATA_TEST_S3_SECRET_ACCESS_KEY").map(Secret::new),
        ..Settings::default()
    }
}

fn test_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Sends a test request and reads its body, failing the test on a transport or decoding error
/// (whatever the status: tests assert on the body).
#[allow(async_fn_in_trait)]
pub trait RequestExt {
    /// The body as JSON.
    async fn json_ok<T: serde::de::DeserializeOwned>(self) -> T;
    /// The body as text.
    async fn text_ok(self) -> String;
}

impl RequestExt for reqwest::RequestBuilder {
    async fn json_ok<T: serde::de::DeserializeOwned>(self) -> T {
        self.send()
            .await
            .expect("request")
            .json()
            .await
            .expect("a JSON body")
    }

    async fn text_ok(self) -> String {
        self.send()
            .await
            .expect("request")
            .text()
            .await
            .expect("a text body")
    }
}

/// The API running in this test process.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The state the API uses.
    pub state: AppState,
    /// An HTTP client.
    pub http: reqwest::Client,
}

impl TestApp {
    /// Spawns the API with `settings` on a random port.
    pub async fn spawn(settings: Settings) -> Self {
        init();
        let pool = app::pg_pool(
            &settings,
            settings.database_url.as_ref().expect("database_url"),
        )
        .expect("pool");
        let redis = app::redis_client(
            settings.redis_url.as_ref().expect("redis_url"),
            settings.redis_reconnect_max_ms,
        )
        .expect("redis");
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("binding a port");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = AppState::new(settings, pool, redis).expect("state");
        let serving = state.clone();
        tokio::spawn(async move {
            app::serve(serving, listener, std::future::pending())
                .await
                .expect("serving");
        });
        Self {
            base_url,
            state,
            http: reqwest::Client::new(),
        }
    }

    /// POSTs a GraphQL request as `token`; the whole answer.
    pub async fn gql(
        &self,
        token: &str,
        query: &str,
        variables: serde_json::Value,
    ) -> serde_json::Value {
        self.gql_as(Some(token), query, variables).await
    }

    /// Like [`Self::gql`], with no `Authorization` header when `token` is `None`.
    pub async fn gql_as(
        &self,
        token: Option<&str>,
        query: &str,
        variables: serde_json::Value,
    ) -> serde_json::Value {
        let mut req = self
            .http
            .post(format!("{}/graphql", self.base_url))
            .json(&serde_json::json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.json_ok().await
    }

    /// Like [`Self::gql`], failing the test on any error; the answer's `data`.
    pub async fn gql_data(
        &self,
        token: &str,
        query: &str,
        variables: serde_json::Value,
    ) -> serde_json::Value {
        let answer = self.gql(token, query, variables).await;
        assert!(answer["errors"].is_null(), "{answer}");
        answer["data"].clone()
    }

    /// The id of the user `token` belongs to (`activeUser.id`).
    pub async fn user_id(&self, token: &str) -> String {
        self.gql_data(token, "{ activeUser { id } }", serde_json::json!({}))
            .await["activeUser"]["id"]
            .as_str()
            .expect("a user id")
            .to_owned()
    }

    /// Registers `email` (see [`register`]); its token and user id.
    pub async fn register_user(&self, email: &str) -> (String, String) {
        let token = register(&self.base_url, email).await;
        let id = self.user_id(&token).await;
        (token, id)
    }

    /// Creates a private project with one model, as `token`; returns their ids.
    pub async fn project_with_model(&self, token: &str, model: &str) -> (String, String) {
        let project = self
            .gql_data(
                token,
                "mutation { projectMutations { create(input: {name: \"test\"}) { id } } }",
                serde_json::json!({}),
            )
            .await["projectMutations"]["create"]["id"]
            .as_str()
            .expect("a project id")
            .to_owned();
        let model = self.create_model(token, &project, model).await;
        (project, model)
    }

    /// Creates model `name` in `project`, as `token`; returns its id.
    pub async fn create_model(&self, token: &str, project: &str, name: &str) -> String {
        self.gql_data(
            token,
            "mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }",
            serde_json::json!({"p": project, "n": name}),
        )
        .await["modelMutations"]["create"]["id"]
            .as_str()
            .expect("a model id")
            .to_owned()
    }

    /// Stores `object` in `project` and creates a version of `model` on it, with any other
    /// `CreateVersionInput` fields given in `input` (e.g. `message`); returns the version id.
    pub async fn version_on(
        &self,
        token: &str,
        (project, model): (&str, &str),
        object: &str,
        mut input: serde_json::Value,
    ) -> String {
        store_object(&self.base_url, token, project, object).await;
        input["projectId"] = project.into();
        input["modelId"] = model.into();
        input["objectId"] = object.into();
        self.gql_data(
            token,
            "mutation($i: CreateVersionInput!) { versionMutations { create(input: $i) { id } } }",
            serde_json::json!({"i": input}),
        )
        .await["versionMutations"]["create"]["id"]
            .as_str()
            .expect("a version id")
            .to_owned()
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .expect("request")
    }
}

/// The API with a live projector runtime, as `strata all` runs them; the runtime stops when
/// the guard drops.
pub async fn spawn_stack(
    db: &TestDb,
    settings: Settings,
) -> (TestApp, tokio_util::sync::DropGuard) {
    let app = TestApp::spawn(settings).await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let options = projections::RuntimeOptions {
        poll_interval: std::time::Duration::from_millis(50),
        ..Default::default()
    };
    let runtime =
        projections::ProjectorRuntime::new(db.pool.clone(), projections::registry(), options);
    tokio::spawn(runtime.run(cancel.clone()));
    let redis = command_service::app::redis_client(
        app.state.settings().redis_url.as_ref().expect("redis_url"),
        app.state.settings().redis_reconnect_max_ms,
    )
    .expect("redis");
    let publisher = command_service::realtime::Publisher::new(db.pool.clone(), redis);
    tokio::spawn(publisher.run(cancel.clone()));
    (app, cancel.drop_guard())
}

/// Registers `email` through the local sign-up and code exchange; returns its token.
pub async fn register(base_url: &str, email: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = http
        .post(format!("{base_url}/auth/local/register?challenge=c"))
        .form(&[
            ("email", email),
            ("password", "correct horse"),
            ("name", "Ada"),
        ])
        .send()
        .await
        .expect("register");
    let location = res.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let code = location
        .split("access_code=")
        .nth(1)
        .and_then(|c| c.split('&').next())
        .expect("access code")
        .to_owned();
    let tokens: serde_json::Value = http
        .post(format!("{base_url}/auth/token"))
        .json(&serde_json::json!({"appId": "spklwebapp", "appSecret": "spklwebapp", "accessCode": code, "challenge": "c"}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token body");
    tokens["token"].as_str().expect("token").to_owned()
}

/// Stores a childless `Base` object `object_id` in `project_id` through `POST /objects/:id`
/// (one multipart batch, as the connectors send), so a version may point at it: the server
/// refuses a version whose root object the project does not hold. Asserts `201 Created`.
pub async fn store_object(base_url: &str, token: &str, project_id: &str, object_id: &str) {
    let batch = serde_json::json!([
        {"id": object_id, "speckle_type": "Base", "totalChildrenCount": 0}
    ]);
    let res = upload_objects(base_url, token, project_id, &batch, "text/plain").await;
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    assert_eq!(status, 201, "storing object {object_id}: {body}");
}

/// POSTs `objects` (a JSON array) to `/objects/:project_id` as `token`, in one multipart
/// batch `batch-0` of content type `mime`, as the connectors send; the response.
pub async fn upload_objects(
    base_url: &str,
    token: &str,
    project_id: &str,
    objects: &serde_json::Value,
    mime: &str,
) -> reqwest::Response {
    let form = reqwest::multipart::Form::new().part(
        "batch-0",
        reqwest::multipart::Part::bytes(objects.to_string().into_bytes())
            .file_name("batch-0")
            .mime_str(mime)
            .expect("mime"),
    );
    reqwest::Client::new()
        .post(format!("{base_url}/objects/{project_id}"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .expect("uploading objects")
}

/// Whether every seal of the log at `pool` verifies against the public key `trusted` (online,
/// as `strata audit verify` does).
pub async fn seals_verify(pool: &PgPool, trusted: &[u8]) -> bool {
    schema::audit::verify_seals(pool, Some(trusted))
        .await
        .expect("checking the seals")
        .iter()
        .all(|s| s.ok)
}

/// PUTs `bytes` to the presigned object-store `url` as `application/octet-stream`, as a
/// client uploading a file does; asserts success and returns the store's ETag.
pub async fn put_signed(url: &str, bytes: impl Into<reqwest::Body>) -> String {
    let put = reqwest::Client::new()
        .put(url)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("uploading to a signed URL");
    assert!(put.status().is_success(), "{:?}", put.status());
    put.headers()["etag"].to_str().expect("an ETag").to_owned()
}

/// A fixed 32-hex object id, for a test's one root object (store it with [`store_object`] or
/// [`TestApp::version_on`]).
pub const OBJECT: &str = "0123456789abcdef0123456789abcdef";

/// A new random 32-hex object id.
pub fn object_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `n` red boxes in a row under a collection, as a connector sends them (each a named mesh
/// with a property set); the root's id and every object, children first.
pub fn boxes(n: usize) -> (String, Vec<serde_json::Value>) {
    let mut objects = Vec::new();
    let mut closure = serde_json::Map::new();
    let mut elements = Vec::new();
    for i in 0..n {
        let id = object_id();
        let x = i as f64 * 1.5;
        let (x0, x1, y0, y1, z0, z1) = (x, x + 1.0, 0.0, 1.0, 0.0, 1.0 + (i % 3) as f64);
        let vertices = [
            [x0, y0, z0],
            [x1, y0, z0],
            [x1, y1, z0],
            [x0, y1, z0],
            [x0, y0, z1],
            [x1, y0, z1],
            [x1, y1, z1],
            [x0, y1, z1],
        ]
        .concat();
        let faces = [
            [4, 0, 3, 2, 1],
            [4, 4, 5, 6, 7],
            [4, 0, 1, 5, 4],
            [4, 1, 2, 6, 5],
            [4, 2, 3, 7, 6],
            [4, 3, 0, 4, 7],
        ]
        .concat();
        objects.push(serde_json::json!({
            "id": id, "speckle_type": "Objects.Geometry.Mesh", "units": "m",
            "name": format!("box {i}"), "vertices": vertices, "faces": faces,
            "properties": {"Pset_Test": {"Index": i}},
            "renderMaterial": {"speckle_type": "Objects.Other.RenderMaterial", "name": "red",
                               "diffuse": -65536, "opacity": 1.0, "metalness": 0.0, "roughness": 1.0},
            "totalChildrenCount": 0,
        }));
        closure.insert(id.clone(), serde_json::json!(1));
        elements.push(serde_json::json!({"referencedId": id, "speckle_type": "reference"}));
    }
    let root = object_id();
    objects.push(serde_json::json!({
        "id": root, "speckle_type": "Speckle.Core.Models.Collection", "name": "boxes",
        "collectionType": "layer", "elements": elements, "__closure": closure,
        "totalChildrenCount": n,
    }));
    (root, objects)
}

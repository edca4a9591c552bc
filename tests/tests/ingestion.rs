//! Model ingestion against the real stack (PostgreSQL, Redis, S3): the idle clock run by two
//! workers, completions interrupted or raced, and the `/api/v2` rail's refusals. The
//! lifecycle as specklepy drives it is in `tests/python/test_ingestion.py`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use command_service::commands::IngestionAggregate;
use domain::EventMetadata;
use domain::ingestion::{IngestionCommand, UploadedFile};
use serde_json::{Value, json};
use tests::{RequestExt, TestApp, TestDb, test_settings};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

struct World {
    app: TestApp,
    db: TestDb,
    token: String,
    project: String,
    model: String,
    _stack: tokio_util::sync::DropGuard,
    workers: Vec<CancellationToken>,
}

impl Drop for World {
    fn drop(&mut self) {
        for w in &self.workers {
            w.cancel();
        }
    }
}

async fn world() -> World {
    let db = TestDb::new().await;
    let settings = test_settings(&db);
    assert!(
        settings.s3_endpoint.is_some(),
        "STRATA_TEST_S3_ENDPOINT is not set: run the tests through `deploy/dev test`"
    );
    let (app, stack) = tests::spawn_stack(&db, settings).await;
    let token = tests::register(&app.base_url, "ingest@example.com").await;
    let mut w = World {
        app,
        db,
        token,
        project: String::new(),
        model: String::new(),
        _stack: stack,
        workers: Vec::new(),
    };
    (w.project, w.model) = w.app.project_with_model(&w.token, "m").await;
    w
}

impl World {
    async fn ok(&self, query: &str, variables: Value) -> Value {
        self.app.gql_data(&self.token, query, variables).await
    }

    fn start_worker(&mut self) {
        let runner =
            command_service::app::job_runner(self.app.state.settings(), self.db.pool.clone())
                .unwrap();
        let cancel = CancellationToken::new();
        tokio::spawn(runner.run(cancel.clone()));
        self.workers.push(cancel);
    }

    /// Creates an ingestion; returns its id and reserved version id.
    async fn create(&self, idle_seconds: u32) -> (String, String) {
        let data = self
            .ok(
                "mutation($p: String!, $m: String!, $t: Int) { projectMutations { modelIngestionMutations { create(input: {projectId: $p, modelId: $m, progressMessage: \"go\", sourceData: {sourceApplicationSlug: \"rust-test\", sourceApplicationVersion: \"1\", fileName: null, fileSizeBytes: null}, maxIdleTimeoutSeconds: $t}) { id versionId } } } }",
                json!({"p": self.project, "m": self.model, "t": idle_seconds}),
            )
            .await;
        let c = &data["projectMutations"]["modelIngestionMutations"]["create"];
        (
            c["id"].as_str().unwrap().to_owned(),
            c["versionId"].as_str().unwrap().to_owned(),
        )
    }

    async fn ingestion(&self, id: &str) -> Value {
        self.ok(
            "query($p: String!, $i: ID!) { project(id: $p) { ingestion(id: $i) { cancellationRequested statusData { __typename ... on HasModelIngestionStatus { status } ... on ModelIngestionFailedStatus { errorReason } ... on ModelIngestionSuccessStatus { versionId } } } } }",
            json!({"p": self.project, "i": id}),
        )
        .await["project"]["ingestion"]
            .clone()
    }

    /// Polls the ingestion until its status is `status` (bounded by `WAIT`).
    async fn until_status(&self, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let i = self.ingestion(id).await;
            if i["statusData"]["status"] == status {
                return i;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ingestion {id} never became {status}: {i}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn events(&self, stream: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version",
        )
        .bind(stream)
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    /// Uploads `name` for `version` straight to S3 through a signed URL; returns its ETag.
    async fn upload(&self, ingestion: &str, name: &str, bytes: &'static str) -> String {
        let (status, body) = self
            .rest(
                &format!(
                    "/api/v2/projects/{}/modelingestion/{ingestion}/uploads/sign",
                    self.project
                ),
                json!({"files": [name]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        tests::put_signed(body["uploads"][name]["url"].as_str().unwrap(), bytes).await
    }

    async fn rest(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .app
            .http
            .post(format!("{}{path}", self.app.base_url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        status_and_json(res).await
    }

    /// Asserts that the project's log holds exactly one `VersionCreated`.
    async fn assert_one_version_created(&self) {
        let project_events = self.events(&format!("project:{}", self.project)).await;
        assert_eq!(
            project_events
                .iter()
                .filter(|e| *e == "VersionCreated")
                .count(),
            1,
            "{project_events:?}"
        );
    }

    /// `GET` the artifacts listing of `version` (of the world's model): the status and the JSON
    /// body (`Null` when there is none).
    async fn artifacts(&self, version: &str) -> (u16, Value) {
        let res = self
            .app
            .http
            .get(format!(
                "{}/api/v2/projects/{}/models/{}/versions/{version}/artifacts",
                self.app.base_url, self.project, self.model
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        status_and_json(res).await
    }

    async fn complete(&self, ingestion: &str, version: &str, etags: Value) -> (u16, Value) {
        self.rest(
            &format!(
                "/api/v2/projects/{}/modelingestion/{ingestion}/uploads/complete",
                self.project
            ),
            json!({
                "etags": etags,
                "rootId": format!("bundle.{}.{}.{version}", self.project, self.model),
                "totalChildrenCount": 3,
            }),
        )
        .await
    }
}

/// A response's status and JSON body (`Null` when there is none).
async fn status_and_json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_ingestion_fails_once_with_two_workers_and_reports_reset_the_clock() {
    let mut w = world().await;
    w.start_worker();
    w.start_worker();
    let (idle, _) = w.create(1).await;
    // Reported on within its timeout, again and again: the clock restarts each time.
    let (alive, _) = w.create(6).await;
    let failed = w.until_status(&idle, "failed").await;
    assert_eq!(failed["cancellationRequested"], true, "{failed}");
    assert!(
        failed["statusData"]["errorReason"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{failed}"
    );
    assert_eq!(
        w.events(&format!("ingestion:{idle}")).await,
        ["IngestionCreated", "IngestionFailed"],
        "failed exactly once"
    );
    // The other one is reported on every 0.8 s for longer than its 6 s timeout (a report may
    // take seconds on a loaded machine and still come well within it): each report restarts
    // its clock (the clocks started by earlier events find something happened since).
    for i in 0..9 {
        let data = w
            .ok(
                "mutation($p: String!, $i: ID!, $m: String!) { projectMutations { modelIngestionMutations { updateProgress(input: {projectId: $p, ingestionId: $i, progressMessage: $m, progress: null}) { statusData { ... on HasModelIngestionStatus { status } } } } } }",
                json!({"p": w.project, "i": alive, "m": format!("step {i}")}),
            )
            .await;
        assert_eq!(
            data["projectMutations"]["modelIngestionMutations"]["updateProgress"]["statusData"]["status"],
            "processing",
            "reported at step {i}"
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    // After its last report it is left alone: it times out too, counted from that report.
    let failed = w.until_status(&alive, "failed").await;
    assert_eq!(failed["cancellationRequested"], true);
    let events = w.events(&format!("ingestion:{alive}")).await;
    assert_eq!(events.iter().filter(|e| *e == "IngestionFailed").count(), 1);
    assert_eq!(
        events.len(),
        11,
        "created, nine reports, failed: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_interrupted_after_its_upload_was_accepted_is_finished_by_a_worker() {
    let mut w = world().await;
    let (ingestion, version) = w.create(3600).await;
    let name = format!("{version}.eav.objects.parquet");
    let etag = w.upload(&ingestion, &name, "bundle bytes").await;
    // The completing request dies right after step 1 (the accepted upload), before the
    // version: as after a kill -9 of the process at that point.
    w.app
        .state
        .bus()
        .execute::<IngestionAggregate, _>(&ingestion, &EventMetadata::default(), |_| {
            Ok(IngestionCommand::AcceptUpload {
                root_object_id: format!("bundle.{}.{}.{version}", w.project, w.model),
                total_children_count: 3,
                message: None,
                files: vec![UploadedFile {
                    name: name.clone(),
                    etag: etag.clone(),
                }],
            })
        })
        .await
        .unwrap();
    assert_eq!(
        w.ingestion(&ingestion).await["statusData"]["status"],
        "processing"
    );
    // No client comes back: a worker finishes it.
    w.start_worker();
    let done = w.until_status(&ingestion, "success").await;
    assert_eq!(done["statusData"]["versionId"], version.as_str());
    let v = w
        .ok(
            "query($p: String!, $v: String!) { project(id: $p) { version(id: $v) { referencedObject totalChildrenCount sourceApplication } } }",
            json!({"p": w.project, "v": version}),
        )
        .await;
    assert_eq!(
        v["project"]["version"],
        json!({
            "referencedObject": format!("bundle.{}.{}.{version}", w.project, w.model),
            "totalChildrenCount": 3,
            "sourceApplication": "rust-test",
        })
    );
    // The client retrying later hears the same version, and nothing more is made.
    let (status, body) = w
        .complete(&ingestion, &version, json!({ &name: etag }))
        .await;
    assert_eq!((status, body), (200, json!({"versionId": version})));
    w.assert_one_version_created().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_completions_make_one_version() {
    let w = world().await;
    let (ingestion, version) = w.create(3600).await;
    let name = format!("{version}.geometries.parquet");
    let etag = w.upload(&ingestion, &name, "geometry bytes").await;
    let etags = json!({ &name: etag });
    let answers =
        futures::future::join_all((0..4).map(|_| w.complete(&ingestion, &version, etags.clone())))
            .await;
    for (status, body) in &answers {
        assert_eq!((*status, body), (200, &json!({"versionId": version})));
    }
    w.assert_one_version_created().await;
    let ingestion_events = w.events(&format!("ingestion:{ingestion}")).await;
    assert_eq!(
        ingestion_events,
        [
            "IngestionCreated",
            "IngestionUploadCompleted",
            "IngestionSucceeded"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rail_refuses_what_it_cannot_stand_behind() {
    let w = world().await;
    let (ingestion, version) = w.create(3600).await;
    let name = format!("{version}.eav.paths.parquet");
    let etag = w.upload(&ingestion, &name, "paths").await;
    let sign = format!(
        "/api/v2/projects/{}/modelingestion/{ingestion}/uploads/sign",
        w.project
    );
    for bad in [
        json!({"files": []}),
        json!({"files": ["../x"]}),
        json!({"files": ["a:b"]}),
    ] {
        let (status, body) = w.rest(&sign, bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["error"]["code"], "BAD_REQUEST_ERROR");
    }
    // A wrong ETag, a file never uploaded, a root that is not this ingestion's bundle.
    let (status, body) = w
        .complete(&ingestion, &version, json!({ &name: "\"0000\"" }))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("ETag mismatch")
    );
    let (status, _) = w
        .complete(
            &ingestion,
            &version,
            json!({ &name: etag, format!("{version}.missing.parquet"): "\"1\"" }),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = w
        .complete(&ingestion, "0123456789", json!({ &name: etag }))
        .await;
    assert_eq!(status, 400);
    // Nothing of that was recorded: the ingestion still waits for its upload.
    assert_eq!(
        w.events(&format!("ingestion:{ingestion}")).await,
        ["IngestionCreated"]
    );
    // Unknown ingestion and project.
    let (status, _) = w
        .rest(
            &format!(
                "/api/v2/projects/{}/modelingestion/0000000000/uploads/sign",
                w.project
            ),
            json!({"files": ["a"]}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = w
        .rest(
            &format!("/api/v2/projects/0000000000/modelingestion/{ingestion}/uploads/sign"),
            json!({"files": ["a"]}),
        )
        .await;
    assert_eq!(status, 404);
    // A finished ingestion signs nothing more.
    let (status, _) = w
        .complete(&ingestion, &version, json!({ &name: etag }))
        .await;
    assert_eq!(status, 200);
    let (status, body) = w.rest(&sign, json!({"files": ["late"]})).await;
    assert_eq!(status, 409, "{body}");
    // The listing has exactly this version's file; a version without a bundle has none.
    let (status, listing) = w.artifacts(&version).await;
    assert_eq!(status, 200);
    let files = listing["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["name"], name.as_str());
    let bytes = w
        .app
        .http
        .get(files[0]["url"].as_str().unwrap())
        .text_ok()
        .await;
    assert_eq!(bytes, "paths");
    let (status, _) = w.artifacts("0123456789").await;
    assert_eq!(status, 404);
}

/// The files of a bundle specklepy built (`tests/samples/bundles/NAME`), renamed for `version`
/// as `send3` renames them.
fn sample_bundle(name: &str, version: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples/bundles")
        .join(name);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| {
            let file = p.file_name().unwrap().to_str().unwrap().to_owned();
            let (_, rest) = file.split_once('.').unwrap();
            (format!("{version}.{rest}"), std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no parquet files in {}", dir.display());
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_version_becomes_speckle_objects_the_object_routes_serve() {
    let mut w = world().await;
    w.start_worker();
    let (ingestion, version) = w.create(3600).await;
    let files = sample_bundle("two-walls", &version);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let (status, signed) = w
        .rest(
            &format!(
                "/api/v2/projects/{}/modelingestion/{ingestion}/uploads/sign",
                w.project
            ),
            json!({ "files": names }),
        )
        .await;
    assert_eq!(status, 200, "{signed}");
    let mut etags = serde_json::Map::new();
    for (name, bytes) in &files {
        let put = w
            .app
            .http
            .put(signed["uploads"][name]["url"].as_str().unwrap())
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success());
        etags.insert(name.clone(), json!(put.headers()["etag"].to_str().unwrap()));
    }
    let (status, body) = w.complete(&ingestion, &version, Value::Object(etags)).await;
    assert_eq!(status, 200, "{body}");
    let reference = format!("bundle.{}.{}.{version}", w.project, w.model);
    // The worker converts the bundle; the root is stored under the version's reference.
    let deadline = tokio::time::Instant::now() + WAIT;
    let root: Value = loop {
        let res = w
            .app
            .http
            .get(format!(
                "{}/objects/{}/{reference}/single",
                w.app.base_url, w.project
            ))
            .bearer_auth(&w.token)
            .send()
            .await
            .unwrap();
        if res.status().is_success() {
            break res.json().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bundle's objects never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(root["id"], reference.as_str());
    assert_eq!(
        root["speckle_type"],
        "Speckle.Core.Models.Collections.Collection"
    );
    // The whole tree downloads like any version's: every object the root's closure names.
    let tree: Vec<Value> = w
        .app
        .http
        .get(format!(
            "{}/objects/{}/{reference}",
            w.app.base_url, w.project
        ))
        .bearer_auth(&w.token)
        .json_ok()
        .await;
    let closure = root["__closure"].as_object().unwrap();
    assert_eq!(tree.len(), closure.len() + 1);
    let types: Vec<&str> = tree
        .iter()
        .filter_map(|o| o["speckle_type"].as_str())
        .collect();
    assert!(types.contains(&"Objects.Geometry.Mesh"), "{types:?}");
    let names: Vec<&str> = tree.iter().filter_map(|o| o["name"].as_str()).collect();
    for collection in ["Level 1", "Walls", "Level 2"] {
        assert!(
            names.contains(&collection),
            "{collection} missing: {names:?}"
        );
    }
    // receive3 still gets the bundle exactly as sent.
    let (_, listing) = w.artifacts(&version).await;
    assert_eq!(listing["files"].as_array().unwrap().len(), files.len());
    assert_eq!(
        w.events(&format!("ingestion:{ingestion}"))
            .await
            .last()
            .map(String::as_str),
        Some("IngestionObjectsBuilt")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_bundle_is_recorded_and_the_version_stays() {
    let mut w = world().await;
    w.start_worker();
    let (ingestion, version) = w.create(3600).await;
    let name = format!("{version}.eav.objects.parquet");
    let etag = w.upload(&ingestion, &name, "this is not parquet").await;
    let (status, _) = w
        .complete(&ingestion, &version, json!({ &name: etag }))
        .await;
    assert_eq!(status, 200);
    let stream = format!("ingestion:{ingestion}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while w.events(&stream).await.last().map(String::as_str) != Some("IngestionObjectsFailed") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the conversion's failure was never recorded: {:?}",
            w.events(&stream).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reason: String = sqlx::query_scalar(
        "SELECT payload->>'reason' FROM events WHERE stream_id = $1 AND event_type = 'IngestionObjectsFailed'",
    )
    .bind(&stream)
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert!(reason.contains("could not be read"), "{reason}");
    let done = w.ingestion(&ingestion).await;
    assert_eq!(done["statusData"]["status"], "success");
}

#[test]
fn the_projection_schedules_the_job_kinds_the_workers_run() {
    use projections::speckle::ingestions as scheduled;
    assert_eq!(
        scheduled::IDLE_TIMEOUT_JOB,
        workers::ingestion::IDLE_TIMEOUT
    );
    assert_eq!(scheduled::FINISH_JOB, workers::ingestion::FINISH);
    assert_eq!(
        scheduled::BUNDLE_OBJECTS_JOB,
        workers::ingestion::BUNDLE_OBJECTS
    );
    assert_eq!(scheduled::IMPORT_JOB, workers::import::KIND);
}

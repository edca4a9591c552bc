//! File import through today's flow (`generateUploadUrl` → presigned PUT →
//! `startFileIngestion` → the ingestion's status), against the real stack and worker: files the
//! tests write become versions; bad files fail with a reason and the next import still works.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tests::{RequestExt, TestApp, TestDb, test_settings};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

struct World {
    app: TestApp,
    token: String,
    project: String,
    model: String,
    _stack: tokio_util::sync::DropGuard,
    worker: CancellationToken,
    db: TestDb,
}

impl Drop for World {
    fn drop(&mut self) {
        self.worker.cancel();
    }
}

async fn world() -> World {
    let w = world_without_worker().await;
    w.start_worker();
    w
}

/// The stack without the job runner: imports stay queued until [`World::start_worker`].
async fn world_without_worker() -> World {
    world_with(|_| {}).await
}

async fn world_with(tweak: impl FnOnce(&mut command_service::config::Settings)) -> World {
    let db = TestDb::new().await;
    let mut settings = test_settings(&db);
    tweak(&mut settings);
    assert!(
        settings.s3_endpoint.is_some(),
        "STRATA_TEST_S3_ENDPOINT is not set: run the tests through `deploy/dev test`"
    );
    let (app, stack) = tests::spawn_stack(&db, settings).await;
    let token = tests::register(&app.base_url, "importer@example.com").await;
    let mut w = World {
        app,
        token,
        project: String::new(),
        model: String::new(),
        _stack: stack,
        worker: CancellationToken::new(),
        db,
    };
    (w.project, w.model) = w.app.project_with_model(&w.token, "uploads").await;
    w
}

const GENERATE: &str = "mutation($p: String!, $n: String!) { fileUploadMutations { generateUploadUrl(input: {projectId: $p, fileName: $n}) { url fileId } } }";
const START: &str = "mutation($p: String!, $m: String!, $f: String!, $e: String!) { fileUploadMutations { startFileIngestion(input: {projectId: $p, modelId: $m, fileId: $f, etag: $e}) { id versionId statusData { ... on HasModelIngestionStatus { status } } } } }";

impl World {
    fn start_worker(&self) {
        let runner =
            command_service::app::job_runner(self.app.state.settings(), self.db.pool.clone())
                .unwrap();
        tokio::spawn(runner.run(self.worker.clone()));
    }

    async fn gql(&self, query: &str, variables: Value) -> Value {
        self.app.gql(&self.token, query, variables).await
    }

    async fn ok(&self, query: &str, variables: Value) -> Value {
        self.app.gql_data(&self.token, query, variables).await
    }

    /// Uploads `bytes` as `name`; returns the file id and the upload's ETag.
    async fn upload(&self, name: &str, bytes: Vec<u8>) -> (String, String) {
        let data = self
            .ok(GENERATE, json!({"p": self.project, "n": name}))
            .await;
        let out = &data["fileUploadMutations"]["generateUploadUrl"];
        (
            out["fileId"].as_str().unwrap().to_owned(),
            tests::put_signed(out["url"].as_str().unwrap(), bytes).await,
        )
    }

    /// Starts the import of uploaded `file` (with its upload's `etag`) into the world's model,
    /// failing the test on any error; the `startFileIngestion` answer.
    async fn start(&self, file: &str, etag: &str) -> Value {
        self.ok(
            START,
            json!({"p": self.project, "m": self.model, "f": file, "e": etag}),
        )
        .await["fileUploadMutations"]["startFileIngestion"]
            .clone()
    }

    /// Sends `method` to the REST route `path` as the world's user.
    async fn send(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.app
            .http
            .request(method, format!("{}{path}", self.app.base_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    /// Uploads and starts the import; returns the ingestion id and its reserved version id.
    async fn import(&self, name: &str, bytes: Vec<u8>) -> (String, String) {
        let (file, etag) = self.upload(name, bytes).await;
        let i = &self.start(&file, &etag).await;
        // Queued when created; the worker may have taken it (or even finished it) by the time
        // the answer is read from the read model.
        assert!(
            ["queued", "processing", "success", "failed"]
                .contains(&i["statusData"]["status"].as_str().unwrap()),
            "{i}"
        );
        (
            i["id"].as_str().unwrap().to_owned(),
            i["versionId"].as_str().unwrap().to_owned(),
        )
    }

    /// Polls the ingestion until it is finished (bounded by `WAIT`).
    async fn finished(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let data = self
                .ok(
                    "query($p: String!, $i: ID!) { project(id: $p) { ingestion(id: $i) { statusData { ... on HasModelIngestionStatus { status } ... on ModelIngestionFailedStatus { errorReason } ... on ModelIngestionSuccessStatus { versionId } } } } }",
                    json!({"p": self.project, "i": id}),
                )
                .await;
            let status = data["project"]["ingestion"]["statusData"].clone();
            if ["success", "failed", "cancelled"].contains(&status["status"].as_str().unwrap()) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "import {id} never finished: {status}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn objects(&self, root: &str) -> Vec<Value> {
        self.app
            .http
            .get(format!(
                "{}/objects/{}/{root}",
                self.app.base_url, self.project
            ))
            .bearer_auth(&self.token)
            .json_ok()
            .await
    }
}

const OBJ: &str = "mtllib two.mtl\no Red\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nusemtl red\nf 1 2 3 4\n\
                   o Blue\nv 0 0 1\nv 1 0 1\nv 0 1 1\nusemtl blue\nf 5 6 7\n";
const MTL: &str = "newmtl red\nKd 1 0 0\nnewmtl blue\nKd 0 0 1\n";

fn binary_stl(triangles: u32) -> Vec<u8> {
    let mut bytes = vec![0u8; 80];
    bytes.extend(triangles.to_le_bytes());
    for t in 0..triangles {
        let z = t as f32;
        for v in [0f32, 0., 1., 0., 0., z, 1., 0., z, 0., 1., z] {
            bytes.extend(v.to_le_bytes());
        }
        bytes.extend(0u16.to_le_bytes());
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obj_and_stl_files_become_versions_with_their_geometry_and_colours() {
    let w = world().await;
    // The MTL goes up first, beside the OBJ that names it.
    let (mtl_file, mtl_etag) = w.upload("two.mtl", MTL.as_bytes().to_vec()).await;
    // Completing the MTL's own upload marks it stored; its import fails (not a model).
    let mtl_ingestion = w.start(&mtl_file, &mtl_etag).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mtl = w.finished(&mtl_ingestion).await;
    assert_eq!(mtl["status"], "failed");
    assert!(
        mtl["errorReason"]
            .as_str()
            .unwrap()
            .contains("MTL files cannot be imported"),
        "{mtl}"
    );

    let (obj, obj_version) = w.import("two-colours.obj", OBJ.as_bytes().to_vec()).await;
    let (stl, stl_version) = w.import("part.stl", binary_stl(12)).await;
    for (id, version) in [(&obj, &obj_version), (&stl, &stl_version)] {
        let done = w.finished(id).await;
        assert_eq!(done["status"], "success", "{done}");
        assert_eq!(done["versionId"], version.as_str());
    }
    let versions = w
        .ok(
            "query($p: String!, $m: String!) { project(id: $p) { model(id: $m) { versions { items { id message sourceApplication referencedObject } } } } }",
            json!({"p": w.project, "m": w.model}),
        )
        .await;
    let items = versions["project"]["model"]["versions"]["items"]
        .as_array()
        .unwrap()
        .clone();
    let version = |id: &str| items.iter().find(|v| v["id"] == id).unwrap().clone();
    let obj_v = version(&obj_version);
    assert_eq!(obj_v["message"], "File upload: two-colours.obj");
    assert_eq!(obj_v["sourceApplication"], "obj");
    let tree = w.objects(obj_v["referencedObject"].as_str().unwrap()).await;
    let meshes: Vec<&Value> = tree
        .iter()
        .filter(|o| o["speckle_type"] == "Objects.Geometry.Mesh")
        .collect();
    assert_eq!(meshes.len(), 2);
    let mut colours: Vec<i64> = meshes
        .iter()
        .map(|m| m["renderMaterial"]["diffuse"].as_i64().unwrap())
        .collect();
    colours.sort_unstable();
    assert_eq!(colours, [0xFF00_00FF, 0xFFFF_0000]);
    let stl_tree = w
        .objects(version(&stl_version)["referencedObject"].as_str().unwrap())
        .await;
    let stl_mesh = stl_tree
        .iter()
        .find(|o| o["speckle_type"] == "Objects.Geometry.Mesh")
        .unwrap();
    assert_eq!(stl_mesh["faces"].as_array().unwrap().len(), 12 * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_fail_with_a_reason_and_the_next_import_works() {
    let w = world().await;
    let junk: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    for (name, bytes, reason) in [
        ("junk.stl", junk.clone(), "could not be read"),
        ("junk.obj", junk, "binary data"),
        (
            "short.stl",
            b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0".to_vec(),
            "could not be read",
        ),
        (
            "drawing.dwg",
            b"AC1027".to_vec(),
            "DWG files cannot be imported",
        ),
    ] {
        let (id, _) = w.import(name, bytes).await;
        let done = w.finished(&id).await;
        assert_eq!(done["status"], "failed", "{name}: {done}");
        let why = done["errorReason"].as_str().unwrap();
        assert!(why.contains(reason) && why.contains(name), "{name}: {why}");
    }
    let (id, _) = w.import("fine.stl", binary_stl(1)).await;
    assert_eq!(w.finished(&id).await["status"], "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_before_an_import_starts() {
    let w = world().await;
    let no_extension = w
        .gql(GENERATE, json!({"p": w.project, "n": "README"}))
        .await;
    assert_eq!(
        no_extension["errors"][0]["message"],
        "File name must have a valid extension"
    );
    let (file, etag) = w.upload("part.stl", binary_stl(1)).await;
    let wrong = w
        .gql(
            START,
            json!({"p": w.project, "m": w.model, "f": file, "e": "\"not-it\""}),
        )
        .await;
    assert!(
        wrong["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("ETag mismatch"),
        "{wrong}"
    );
    let (never_uploaded, _) = {
        let data = w.ok(GENERATE, json!({"p": w.project, "n": "x.stl"})).await;
        (
            data["fileUploadMutations"]["generateUploadUrl"]["fileId"]
                .as_str()
                .unwrap()
                .to_owned(),
            (),
        )
    };
    let missing = w
        .gql(
            START,
            json!({"p": w.project, "m": w.model, "f": never_uploaded, "e": etag}),
        )
        .await;
    assert_eq!(
        missing["errors"][0]["message"],
        "The file was not uploaded."
    );
    assert!(w.start(&file, &etag).await["id"].is_string());
    let again = w
        .gql(
            START,
            json!({"p": w.project, "m": w.model, "f": file, "e": etag}),
        )
        .await;
    assert!(
        again["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("already"),
        "one file, one import: {again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ifc_file_becomes_its_spatial_tree_with_properties_and_colours() {
    let w = world().await;
    let house = include_str!("../samples/ifc/house.ifc");
    let (id, version) = w.import("house.ifc", house.as_bytes().to_vec()).await;
    let done = w.finished(&id).await;
    assert_eq!(done["status"], "success", "{done}");
    let data = w
        .ok(
            "query($p: String!, $v: String!) { project(id: $p) { version(id: $v) { referencedObject message sourceApplication } } }",
            json!({"p": w.project, "v": version}),
        )
        .await;
    let v = &data["project"]["version"];
    assert_eq!(v["message"], "File upload: house.ifc");
    assert_eq!(v["sourceApplication"], "ifc");
    let tree = w.objects(v["referencedObject"].as_str().unwrap()).await;
    let by_class = |class: &str| -> Vec<&Value> {
        tree.iter()
            .filter(|o| o["properties"]["IFC Class"] == class)
            .collect()
    };
    for class in [
        "IfcProject",
        "IfcSite",
        "IfcBuilding",
        "IfcBuildingStorey",
        "IfcWall",
        "IfcSlab",
        "IfcDoor",
    ] {
        assert_eq!(by_class(class).len(), 1, "{class}");
    }
    let wall = by_class("IfcWall")[0];
    assert_eq!(wall["applicationId"], "1kTvXnbbzCWw8lcMd1dR4o");
    assert_eq!(wall["properties"]["Pset_WallCommon"]["IsExternal"], true);
    assert_eq!(
        wall["properties"]["Pset_WallCommon"]["FireRating"],
        "REI 90"
    );
    // The wall's mesh: red, in metres (the file is in millimetres).
    let mesh_id = wall["displayValue"][0]["referencedId"].as_str().unwrap();
    let mesh = tree.iter().find(|o| o["id"] == mesh_id).unwrap();
    assert_eq!(mesh["units"], "m");
    assert_eq!(
        mesh["renderMaterial"]["diffuse"].as_i64().unwrap() & 0xFF_FFFF,
        0xFF_0000
    );
    let max = mesh["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    assert!(max > 1.0 && max < 10.0, "metres, not millimetres: {max}");
    // The storey holds the elements.
    let storey = by_class("IfcBuildingStorey")[0];
    assert_eq!(storey["elements"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blob_api_and_the_legacy_upload_route() {
    let w = world().await;
    let url = |path: &str| format!("{}{path}", w.app.base_url);
    // Two files in one multipart upload.
    let form = reqwest::multipart::Form::new()
        .part(
            "a",
            reqwest::multipart::Part::bytes(b"first".to_vec()).file_name("notes.txt"),
        )
        .part(
            "b",
            reqwest::multipart::Part::bytes(binary_stl(1)).file_name("part.stl"),
        );
    let res = w
        .app
        .http
        .post(url(&format!("/api/stream/{}/blob", w.project)))
        .bearer_auth(&w.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let uploaded: Value = res.json().await.unwrap();
    let results = uploaded["uploadResults"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["fileName"], "notes.txt");
    assert_eq!(results[0]["fileSize"], 5);
    let blob = results[0]["blobId"].as_str().unwrap().to_owned();
    // Read back, listed by name, known to the diff.
    let blob_path = format!("/api/stream/{}/blob/{blob}", w.project);
    let res = w.send(reqwest::Method::GET, &blob_path).await;
    assert_eq!(res.status().as_u16(), 200);
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("notes.txt")
    );
    assert_eq!(res.text().await.unwrap(), "first");
    let listed: Value = w
        .app
        .http
        .get(url(&format!(
            "/api/stream/{}/blobs?fileName=notes.txt",
            w.project
        )))
        .bearer_auth(&w.token)
        .json_ok()
        .await;
    assert_eq!(listed["blobs"].as_array().unwrap().len(), 1);
    assert_eq!(listed["blobs"][0]["id"], blob.as_str());
    let unknown: Value = w
        .app
        .http
        .post(url(&format!("/api/stream/{}/blob/diff", w.project)))
        .bearer_auth(&w.token)
        .json(&json!([blob, "0000000000"]))
        .json_ok()
        .await;
    assert_eq!(unknown, json!(["0000000000"]));
    // Anonymous callers may not read a private project's blobs.
    let anonymous = w.app.http.get(url(&blob_path)).send().await.unwrap();
    assert!(anonymous.status().is_client_error());
    // Deleted: gone.
    let res = w.send(reqwest::Method::DELETE, &blob_path).await;
    assert_eq!(res.status().as_u16(), 204);
    let gone = w.send(reqwest::Method::GET, &blob_path).await;
    assert_eq!(gone.status().as_u16(), 404);

    // The legacy route imports into a model by name, creating it.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(binary_stl(2)).file_name("bracket.stl"),
    );
    let res = w
        .app
        .http
        .post(url(&format!(
            "/api/file/stl/{}/parts%2Fbrackets",
            w.project
        )))
        .bearer_auth(&w.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    assert!(res.headers().contains_key("warning"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let data = w
            .ok(
                "query($p: String!) { project(id: $p) { modelByName(name: \"parts/brackets\") { versions { items { message } } } } }",
                json!({"p": w.project}),
            )
            .await;
        let items = data["project"]["modelByName"]["versions"]["items"].clone();
        if items.as_array().is_some_and(|i| !i.is_empty()) {
            assert_eq!(items[0]["message"], "File upload: bracket.stl");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no version: {data}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_import_is_not_imported() {
    let w = world_without_worker().await;
    let (id, version) = w.import("part.stl", binary_stl(3)).await;
    w.ok(
        "mutation($p: String!, $i: ID!) { projectMutations { modelIngestionMutations { requestCancellation(input: {projectId: $p, ingestionId: $i, cancellationMessage: \"stop\"}) { cancellationRequested } } } }",
        json!({"p": w.project, "i": id}),
    )
    .await;
    // The importer takes the job, sees the request and stops there.
    w.start_worker();
    let done = w.finished(&id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let version = w
        .gql(
            "query($p: String!, $v: String!) { project(id: $p) { version(id: $v) { id } } }",
            json!({"p": w.project, "v": version}),
        )
        .await;
    assert!(
        !version["errors"].is_null(),
        "no version was made: {version}"
    );
}

const FINISH: &str = "mutation($p: String!, $j: String!, $s: JobResultStatus!, $r: String) { fileUploadMutations { finishFileImport(input: {projectId: $p, jobId: $j, status: $s, reason: $r, result: {durationSeconds: 1.5, downloadDurationSeconds: 0.1, parseDurationSeconds: 1.2, parser: \"external\"}}) } }";

/// An external importer's report (the 2.31 `finishFileImport`): an error fails a queued import
/// with the importer's reason, visible as the original's `FileUpload`; a claimed success for an
/// import strata has not finished is refused; one for a finished import is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_importers_report_finishes_the_import() {
    let w = world_without_worker().await;
    let (file, etag) = w.upload("beam.stl", binary_stl(2)).await;
    let id = w.start(&file, &etag).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Success cannot be claimed for an import that made no version.
    let refused = w
        .gql(FINISH, json!({"p": w.project, "j": file, "s": "success"}))
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "BAD_REQUEST_ERROR",
        "{refused}"
    );
    // Another project's file is not found.
    let (other, _) = w.app.project_with_model(&w.token, "elsewhere").await;
    let missing = w
        .gql(FINISH, json!({"p": other, "j": file, "s": "error"}))
        .await;
    assert!(!missing["errors"].is_null(), "{missing}");
    // The importer's error fails it with the importer's words.
    w.ok(
        FINISH,
        json!({"p": w.project, "j": file, "s": "error", "r": "line 12: unexpected token"}),
    )
    .await;
    let done = w.finished(&id).await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["errorReason"]
            .as_str()
            .unwrap()
            .contains("line 12: unexpected token"),
        "{done}"
    );
    let uploads = w
        .ok(
            "query($p: String!, $m: String!) { project(id: $p) { model(id: $m) { uploads { items { id convertedStatus convertedMessage } } } } }",
            json!({"p": w.project, "m": w.model}),
        )
        .await;
    let upload = &uploads["project"]["model"]["uploads"]["items"][0];
    assert_eq!(upload["id"], file.as_str());
    assert_eq!(upload["convertedStatus"], 3, "{upload}");
    assert!(
        upload["convertedMessage"]
            .as_str()
            .unwrap()
            .contains("unexpected token")
    );
    // The worker finds nothing left to do; a second report changes nothing.
    w.start_worker();
    let again = w
        .gql(
            FINISH,
            json!({"p": w.project, "j": file, "s": "error", "r": "again"}),
        )
        .await;
    let done = w.finished(&id).await;
    assert_eq!(done["status"], "failed", "{again}");
    assert!(done["errorReason"].as_str().unwrap().contains("line 12"));

    // A file strata imported itself: the importer's success is accepted.
    let (id, _) = w.import("ok.stl", binary_stl(2)).await;
    assert_eq!(w.finished(&id).await["status"], "success");
    let file = w
        .ok(
            "query($p: String!, $m: String!) { project(id: $p) { model(id: $m) { uploads { items { id fileName } } } } }",
            json!({"p": w.project, "m": w.model}),
        )
        .await["project"]["model"]["uploads"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["fileName"] == "ok.stl")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let accepted = w
        .ok(FINISH, json!({"p": w.project, "j": file, "s": "success"}))
        .await;
    assert_eq!(accepted["fileUploadMutations"]["finishFileImport"], true);
}

/// A file whose conversion would need more memory than allowed fails at once, naming both
/// figures; a smaller one still imports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_too_big_to_convert_in_the_memory_limit_fails_at_once() {
    let w = world_with(|s| s.file_import_memory_limit_mb = 1).await;
    w.start_worker();
    // 60,000 triangles: 3 MB, about 18 MB to convert at STL's 6x.
    let (id, _) = w.import("big.stl", binary_stl(60_000)).await;
    let done = w.finished(&id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let reason = done["errorReason"].as_str().unwrap();
    assert!(
        reason.contains("big.stl is 3 MB")
            && reason.contains("6x")
            && reason.contains("the limit is 1 MB"),
        "{reason}"
    );
    let attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id WHERE j.kind = 'ingestion.import_file'",
    )
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 1, "a refused file is not retried");
    let (id, _) = w.import("small.stl", binary_stl(100)).await;
    assert_eq!(w.finished(&id).await["status"], "success");
}

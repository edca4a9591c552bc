//! Previews: a version gets its images from the real viewer in headless Chromium (the page
//! `deploy/build-viewer` builds, `STRATA_TEST_VIEWER_DIR`), served by the preview routes as the
//! original serves them; an empty model gets the empty image without a browser; a browser
//! killed under the worker is replaced and the job finished.
//!
//! Needs Chromium, chromedriver and the built viewer page: `deploy/dev test` provides them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use command_service::config::Settings;
use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};
use tokio_util::sync::CancellationToken;
use workers::preview::{Placeholder, decode_rgba};

/// How long a first render may take on a loaded two-core machine (browser start included).
const RENDER_WAIT: Duration = Duration::from_secs(240);

fn viewer_dir() -> String {
    std::env::var("STRATA_TEST_VIEWER_DIR").expect(
        "STRATA_TEST_VIEWER_DIR is not set: run the tests through `deploy/dev test`, which \
         builds the viewer page (deploy/build-viewer)",
    )
}

fn chromedriver() -> String {
    std::env::var("STRATA_TEST_CHROMEDRIVER").expect(
        "STRATA_TEST_CHROMEDRIVER is not set: run the tests through `deploy/dev test`, which \
         installs chromium and chromium-driver",
    )
}

struct World {
    app: TestApp,
    db: TestDb,
    token: String,
    project: String,
    model: String,
    worker: CancellationToken,
    _stack: tokio_util::sync::DropGuard,
}

impl Drop for World {
    fn drop(&mut self) {
        self.worker.cancel();
    }
}

async fn world(chromedriver: String) -> World {
    let db = TestDb::new().await;
    let settings = Settings {
        preview_viewer_dir: Some(viewer_dir()),
        preview_chromedriver: chromedriver,
        preview_render_timeout_seconds: 150,
        ..test_settings(&db)
    };
    assert!(
        settings.s3_endpoint.is_some(),
        "STRATA_TEST_S3_ENDPOINT is not set: run the tests through `deploy/dev test`"
    );
    let (app, stack) = tests::spawn_stack(&db, settings).await;
    let token = tests::register(&app.base_url, "viewer@example.com").await;
    let (project, model) = app.project_with_model(&token, "boxes").await;
    World {
        app,
        db,
        token,
        project,
        model,
        worker: CancellationToken::new(),
        _stack: stack,
    }
}

impl World {
    fn start_worker(&self) {
        let mut settings = self.app.state.settings().clone();
        settings.preview_server_url = Some(self.app.base_url.clone());
        let runner = command_service::app::job_runner(&settings, self.db.pool.clone()).unwrap();
        tokio::spawn(runner.run(self.worker.clone()));
    }

    async fn upload(&self, objects: &[Value]) {
        let res = tests::upload_objects(
            &self.app.base_url,
            &self.token,
            &self.project,
            &Value::Array(objects.to_vec()),
            "application/json",
        )
        .await;
        assert_eq!(
            res.status(),
            201,
            "{}",
            res.text().await.unwrap_or_default()
        );
    }

    async fn version(&self, object: &str) -> String {
        self.app
            .gql_data(
                &self.token,
                "mutation($p: String!, $m: String!, $o: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: $o, sourceApplication: \"test\"}) { id } } }",
                json!({"p": self.project, "m": self.model, "o": object}),
            )
            .await["versionMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn record(&self, object: &str) -> Option<(String, Option<String>, i32)> {
        sqlx::query_as(
            "SELECT status, error, attempts FROM object_previews WHERE project_id = $1 AND object_id = $2",
        )
        .bind(&self.project)
        .bind(object)
        .fetch_optional(&self.db.pool)
        .await
        .unwrap()
    }

    /// Waits until the preview of `object` is no longer rendering; its status.
    async fn settled(&self, object: &str) -> (String, Option<String>) {
        let deadline = tokio::time::Instant::now() + RENDER_WAIT;
        loop {
            if let Some((status, error, _)) = self.record(object).await
                && status != "rendering"
            {
                return (status, error);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the preview of {object} never settled: {:?}; attempts: {:?}",
                self.record(object).await,
                self.attempts().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn updated_at(&self, object: &str) -> time::OffsetDateTime {
        sqlx::query_scalar(
            "SELECT updated_at FROM object_previews WHERE project_id = $1 AND object_id = $2",
        )
        .bind(&self.project)
        .bind(object)
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    async fn attempts(&self) -> Vec<(String, Option<String>)> {
        sqlx::query_as(
            "SELECT COALESCE(a.outcome, 'running'), a.error FROM job_attempts a \
             JOIN jobs j ON j.id = a.job_id WHERE j.kind = 'preview.render' \
             ORDER BY a.started_at, a.job_id, a.attempt",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.app.http.get(format!("{}{path}", self.app.base_url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// Share of pixels that are clearly red (the boxes' material, shaded).
fn red_share(rgba: &[u8]) -> f64 {
    let px = rgba.chunks_exact(4);
    let n = px.len() as f64;
    px.filter(|p| p[3] > 128 && p[0] as i32 > p[1] as i32 + 60 && p[0] as i32 > p[2] as i32 + 60)
        .count() as f64
        / n
}

/// Variance of luminance, transparent pixels counted as white.
fn luminance_variance(rgba: &[u8]) -> f64 {
    let lum: Vec<f64> = rgba
        .chunks_exact(4)
        .map(|p| {
            let a = p[3] as f64 / 255.0;
            let l = 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64;
            l * a + 255.0 * (1.0 - a)
        })
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64
}

#[tokio::test]
async fn a_version_gets_its_preview_from_the_viewer() {
    let w = world(chromedriver()).await;
    let (root, objects) = tests::boxes(20);
    w.upload(&objects).await;
    let version = w.version(&root).await;
    let commit_path = format!("/preview/{}/commits/{version}", w.project);

    // Before a worker ran: the original's "no preview yet" answer, never cached.
    let before = w.get(&commit_path, Some(&w.token)).await;
    assert_eq!(before.status(), 200);
    assert_eq!(header(&before, "content-type"), "image/png");
    assert_eq!(header(&before, "cache-control"), "no-cache, no-store");
    assert_eq!(
        before.bytes().await.unwrap().to_vec(),
        Placeholder::Pending.png(700, 400)
    );

    w.start_worker();
    let (status, error) = w.settled(&root).await;
    assert_eq!(
        status,
        "done",
        "{error:?}; attempts {:?}",
        w.attempts().await
    );

    // The main image: 700×400, not blank, the red boxes drawn.
    let main = w.get(&commit_path, Some(&w.token)).await;
    assert_eq!(main.status(), 200);
    assert_eq!(header(&main, "content-type"), "image/png");
    assert_eq!(header(&main, "cache-control"), "private, max-age=604800");
    assert_eq!(
        header(&main, "cross-origin-resource-policy"),
        "cross-origin"
    );
    let main = main.bytes().await.unwrap().to_vec();
    let (width, height, rgba) = decode_rgba(&main).unwrap();
    assert_eq!((width, height), (700, 400));
    let red = red_share(&rgba);
    assert!(
        red > 0.01,
        "only {:.4} of the pixels are the boxes' red",
        red
    );
    assert!(
        luminance_variance(&rgba) > 100.0,
        "the image is nearly flat"
    );
    // Unlike the empty-model image, which has no red at all.
    let (_, _, empty) = decode_rgba(&Placeholder::Empty.png(700, 400)).unwrap();
    assert_eq!(red_share(&empty), 0.0);

    // The same image by model name, latest of the project, and object; the sprite of 24 angles.
    for path in [
        format!("/preview/{}/branches/boxes", w.project),
        format!("/preview/{}", w.project),
        format!("/preview/{}/objects/{root}/0", w.project),
    ] {
        let res = w.get(&path, Some(&w.token)).await;
        assert_eq!(res.bytes().await.unwrap().to_vec(), main, "{path}");
    }
    let all = w.get(&format!("{commit_path}/all"), Some(&w.token)).await;
    let (width, height, sprite) = decode_rgba(&all.bytes().await.unwrap()).unwrap();
    assert_eq!((width, height), (700 * 24, 400));
    // The frames differ: the camera went around the model.
    let frame = |i: usize| -> Vec<u8> {
        (0..400)
            .flat_map(|y| {
                let start = (y * 700 * 24 + i * 700) * 4;
                sprite[start..start + 700 * 4].to_vec()
            })
            .collect()
    };
    assert_eq!(frame(0), rgba, "the sprite's first frame is the main image");
    assert_ne!(frame(0), frame(6), "a quarter turn looks different");

    // Unknown angle and object; private project to strangers; unknown project.
    let odd = w.get(&format!("{commit_path}/7x"), Some(&w.token)).await;
    assert_eq!(header(&odd, "x-preview-error-code"), "ANGLE_NOT_FOUND");
    let missing = w
        .get(
            &format!("/preview/{}/objects/{}", w.project, tests::object_id()),
            Some(&w.token),
        )
        .await;
    assert_eq!(missing.status(), 200);
    assert_eq!(header(&missing, "x-preview-error"), "true");
    assert_eq!(header(&missing, "x-preview-error-code"), "OBJECT_NOT_FOUND");
    let anonymous = w.get(&commit_path, None).await;
    assert_eq!(anonymous.status(), 200);
    assert_eq!(
        anonymous.bytes().await.unwrap().to_vec(),
        Placeholder::Unauthorized.png(700, 400)
    );
    let stranger = tests::register(&w.app.base_url, "stranger@example.com").await;
    let object_route = w
        .get(
            &format!("/preview/{}/objects/{root}", w.project),
            Some(&stranger),
        )
        .await;
    assert_eq!(object_route.status(), 403);
    let nowhere = w.get("/preview/0123456789/commits/0123456789", None).await;
    assert_eq!(
        nowhere.bytes().await.unwrap().to_vec(),
        Placeholder::NotFound.png(700, 400)
    );

    // The page's grant reads this project's objects only, and only until it expires.
    let pepper = w.app.state.settings().token_pepper.clone().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let grant = command_service::accounts::Accounts::preview_grant(&pepper, &w.project, now + 60);
    let single = format!("/objects/{}/{root}/single", w.project);
    assert_eq!(w.get(&single, Some(&grant)).await.status(), 200);
    let (other, _) = w.app.project_with_model(&w.token, "other").await;
    let foreign = format!("/objects/{other}/{root}/single");
    assert_eq!(w.get(&foreign, Some(&grant)).await.status(), 401);
    let expired = command_service::accounts::Accounts::preview_grant(&pepper, &w.project, now - 1);
    assert_eq!(w.get(&single, Some(&expired)).await.status(), 401);
    // Its last character changed (to one it is not: a grant ending in "0" once made this
    // "forgery" the grant itself, 1 run in 16).
    let last = if grant.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &grant[..grant.len() - 1]);
    assert_eq!(w.get(&single, Some(&forged)).await.status(), 401);
    // And writes nothing.
    let write = w
        .app
        .http
        .post(format!("{}/objects/{}", w.app.base_url, w.project))
        .bearer_auth(&grant)
        .send()
        .await
        .unwrap();
    assert_ne!(write.status(), 201);
}

#[tokio::test]
async fn an_empty_model_gets_the_empty_image_without_a_browser() {
    // A chromedriver that does not exist: nothing may try to start a browser.
    let w = world("/nonexistent/chromedriver".to_owned()).await;
    let root = tests::object_id();
    w.upload(&[
        json!({"id": root, "speckle_type": "Base", "name": "nothing", "totalChildrenCount": 0}),
    ])
    .await;
    let version = w.version(&root).await;
    w.start_worker();
    let (status, error) = w.settled(&root).await;
    assert_eq!(status, "empty", "{error:?}");
    let res = w
        .get(
            &format!("/preview/{}/commits/{version}", w.project),
            Some(&w.token),
        )
        .await;
    assert_eq!(
        res.bytes().await.unwrap().to_vec(),
        Placeholder::Empty.png(700, 400)
    );

    // A model with geometry and no browser to draw it: retried, then failed with the reason,
    // visible to the route and in /metrics.
    let (root, objects) = tests::boxes(1);
    w.upload(&objects).await;
    let version = w.version(&root).await;
    let (status, error) = w.settled(&root).await;
    assert_eq!(status, "failed");
    let error = error.unwrap();
    assert!(
        error.contains("after 4 attempts") && error.contains("/nonexistent/chromedriver"),
        "{error}"
    );
    let res = w
        .get(
            &format!("/preview/{}/commits/{version}", w.project),
            Some(&w.token),
        )
        .await;
    assert_eq!(header(&res, "x-preview-error-code"), "PREVIEW_FAILED");
    let seen = w
        .app
        .gql_data(
            &w.token,
            "query($p: String!, $v: String!) { project(id: $p) { version(id: $v) { preview { status attempts error } } } }",
            json!({"p": w.project, "v": version}),
        )
        .await;
    let preview = &seen["project"]["version"]["preview"];
    assert_eq!(preview["status"], "FAILED");
    assert_eq!(preview["attempts"], 4);
    assert_eq!(preview["error"], error.as_str());
    let metrics = w.app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("strata_previews{measure=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_previews{measure=\"empty\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_killed_browser_is_replaced_and_the_job_finished() {
    let w = world(chromedriver()).await;
    w.start_worker();
    let (first, objects) = tests::boxes(3);
    w.upload(&objects).await;
    w.version(&first).await;
    assert_eq!(w.settled(&first).await.0, "done");

    // Kill every Chromium process of this test's browser; the next render hits a dead session.
    let profile = format!("user-data-dir=/tmp/strata-browser-{}-", std::process::id());
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-f", "--", &profile])
        .status()
        .unwrap();
    assert!(
        killed.success(),
        "no browser process of this test was found"
    );

    let (second, objects) = tests::boxes(4);
    w.upload(&objects).await;
    w.version(&second).await;
    let (status, error) = w.settled(&second).await;
    assert_eq!(
        status,
        "done",
        "{error:?}; attempts {:?}",
        w.attempts().await
    );
    let attempts = w.attempts().await;
    assert!(
        attempts.iter().any(|(outcome, e)| outcome != "succeeded"
            && e.as_deref().is_some_and(|e| e.contains("browser"))),
        "the dead browser's attempt should be on record: {attempts:?}"
    );
}

#[tokio::test]
async fn a_malformed_tree_fails_with_its_reason_and_the_next_one_renders() {
    let w = world(chromedriver()).await;
    w.start_worker();
    // A root whose child was never sent: the page cannot load it.
    let (root, mut objects) = tests::boxes(2);
    objects.remove(0);
    w.upload(&objects).await;
    w.version(&root).await;
    let (status, error) = w.settled(&root).await;
    assert_eq!(status, "failed");
    let error = error.unwrap();
    assert!(error.contains("missing child objects"), "{error}");
    // The same browser goes on rendering.
    let (good, objects) = tests::boxes(2);
    w.upload(&objects).await;
    w.version(&good).await;
    let (status, error) = w.settled(&good).await;
    assert_eq!(status, "done", "{error:?}");
}

#[tokio::test]
async fn a_worker_dying_mid_render_leaves_a_job_another_finishes_and_regenerate_renders_again() {
    let w = world(chromedriver()).await;
    let (root, objects) = tests::boxes(5);
    w.upload(&objects).await;
    w.version(&root).await;
    // Worker A, with a short lease, dies as soon as its render started: its task is dropped
    // mid-flight, so nothing of its own reaches the database (as with kill -9).
    let mut settings = w.app.state.settings().clone();
    settings.preview_server_url = Some(w.app.base_url.clone());
    settings.job_lease_seconds = 2;
    let a = command_service::app::job_runner(&settings, w.db.pool.clone()).unwrap();
    let a_stop = CancellationToken::new();
    let dying = tokio::spawn(a.run(a_stop.clone()));
    let deadline = tokio::time::Instant::now() + RENDER_WAIT;
    while w.record(&root).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker A never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    dying.abort();
    let _ = dying.await;
    assert_eq!(w.record(&root).await.unwrap().0, "rendering");
    // Worker B takes the job once A's lease has run out, and finishes it.
    let b = command_service::app::job_runner(&settings, w.db.pool.clone()).unwrap();
    tokio::spawn(b.run(w.worker.clone()));
    let (status, error) = w.settled(&root).await;
    assert_eq!(status, "done", "{error:?}");
    // The preview is stored before the job's attempt is closed: wait for that too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let outcomes = loop {
        let outcomes: Vec<String> = w.attempts().await.into_iter().map(|(o, _)| o).collect();
        if outcomes.last().is_some_and(|o| o != "running") {
            break outcomes;
        }
        assert!(tokio::time::Instant::now() < deadline, "{outcomes:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(outcomes, ["abandoned", "succeeded"]);

    // An operator re-renders the project's previews; the command waits for them.
    let before = w.updated_at(&root).await;
    let code = command_service::previews::regenerate(&w.db.pool, Some(&w.project), None, true)
        .await
        .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let after = w.updated_at(&root).await;
    assert!(after > before, "the preview was not rendered again");
    assert_eq!(w.record(&root).await.unwrap().0, "done");
}

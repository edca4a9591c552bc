//! The web app, driven in headless Chromium through fantoccini as a person uses it, against
//! the API and a real projector, job runner (previews, webhooks) and S3.
//!
//! Needs Chromium, chromedriver and the built viewer island: `deploy/dev test` provides them.
//! Screenshots of each journey land in `$CARGO_TARGET_TMPDIR/web/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use command_service::config::Settings;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use tests::receiver::WebhookReceiver;
use tests::{RequestExt, TestApp, TestDb, test_settings};
use tokio_util::sync::CancellationToken;
use workers::preview::{DrivenBrowser, decode_rgba};

/// Rendering on two loaded cores (browser start included) can be slow.
const WAIT: Duration = Duration::from_secs(240);
const PASSWORD: &str = "correct horse battery";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through `deploy/dev test`, which provides it")
    })
}

struct Web {
    app: TestApp,
    _db: TestDb,
    browser: Option<DrivenBrowser>,
    worker: CancellationToken,
    out: PathBuf,
    _stack: tokio_util::sync::DropGuard,
}

impl Drop for Web {
    fn drop(&mut self) {
        self.worker.cancel();
    }
}

async fn web(journey: &str, with_worker: bool) -> Web {
    let db = TestDb::new().await;
    let settings = Settings {
        preview_viewer_dir: Some(env("STRATA_TEST_VIEWER_DIR")),
        preview_chromedriver: env("STRATA_TEST_CHROMEDRIVER"),
        preview_render_timeout_seconds: 150,
        // One angle: the journey needs the preview, not the turntable (previews.rs tests it).
        preview_angles: 1,
        webhook_allow_private_targets: true,
        ..test_settings(&db)
    };
    let (app, stack) = tests::spawn_stack(&db, settings).await;
    let worker = CancellationToken::new();
    if with_worker {
        let mut s = app.state.settings().clone();
        s.preview_server_url = Some(app.base_url.clone());
        let runner = command_service::app::job_runner(&s, db.pool.clone()).unwrap();
        tokio::spawn(runner.run(worker.clone()));
    }
    let browser = DrivenBrowser::launch(
        std::path::Path::new(&env("STRATA_TEST_CHROMEDRIVER")),
        None,
        1200,
        900,
    )
    .await
    .expect("a browser");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("web")
        .join(journey);
    std::fs::create_dir_all(&out).unwrap();
    Web {
        app,
        _db: db,
        browser: Some(browser),
        worker,
        out,
        _stack: stack,
    }
}

impl Web {
    fn c(&self) -> &Client {
        &self.browser.as_ref().unwrap().client
    }

    async fn goto(&self, path: &str) {
        self.c()
            .goto(&format!("{}{path}", self.app.base_url))
            .await
            .unwrap();
    }

    async fn current(&self) -> String {
        let url = self.c().current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.c().find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.c()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks what submits a form and waits for the page it leads to: the old document gone
    /// (its root element stale) and the new one loaded.
    async fn submit(&self, css: &str) {
        let old = self.c().find(Locator::Css("html")).await.unwrap();
        self.click(css).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while old.tag_name().await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{css} led nowhere: {}",
                self.body().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.until(
            "return document.readyState === 'complete';",
            "the next page",
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        self.c()
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn body(&self) -> String {
        self.text("body").await
    }

    async fn js(&self, script: &str) -> Value {
        self.c().execute(script, vec![]).await.unwrap()
    }

    /// Waits until `script` returns true (the page's own state, never a fixed delay). A
    /// document being replaced answers nothing for a moment: that counts as not yet.
    async fn until(&self, script: &str, what: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.c().execute(script, vec![]).await.ok() == Some(Value::Bool(true)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} never happened; the page says: {}",
                self.body().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the viewer island has loaded the model (or failed), and asserts it loaded.
    async fn viewer_loaded(&self, what: &str) {
        self.until(
            "return ['loaded', 'error'].includes(document.body.dataset.viewerState);",
            what,
        )
        .await;
        assert_eq!(
            self.js("return document.body.dataset.viewerState;").await,
            json!("loaded"),
            "{}",
            self.body().await
        );
    }

    async fn shot(&self, name: &str) -> Vec<u8> {
        let png = self.c().screenshot().await.unwrap();
        std::fs::write(self.out.join(format!("{name}.png")), &png).unwrap();
        png
    }

    async fn session_token(&self) -> String {
        self.c()
            .get_named_cookie("strata_session")
            .await
            .expect("a session cookie")
            .value()
            .to_owned()
    }

    async fn register(&self, name: &str, email: &str) {
        self.goto("/authn/register").await;
        self.fill("#name", name).await;
        self.fill("#email", email).await;
        self.fill("#password", PASSWORD).await;
        self.submit("form.stack button[type=submit]").await;
    }

    async fn sign_in(&self, email: &str, password: &str) {
        self.fill("#email", email).await;
        self.fill("#password", password).await;
        self.submit("form.stack button[type=submit]").await;
    }

    async fn sign_out(&self) {
        self.submit("form.signout button").await;
        assert_eq!(self.current().await, "/authn/login");
    }

    async fn close(mut self) {
        if let Some(b) = self.browser.take() {
            b.close().await;
        }
    }
}

/// Sends a model the way a connector does: objects, then a version, with `token`.
async fn send_model(app: &TestApp, token: &str, project: &str, model_name: &str) -> String {
    let (root, objects) = tests::boxes(6);
    let objects = Value::Array(objects);
    let res =
        tests::upload_objects(&app.base_url, token, project, &objects, "application/json").await;
    assert_eq!(res.status(), 201);
    let model = app.create_model(token, project, model_name).await;
    app.gql_data(
        token,
        "mutation($p: String!, $m: String!, $o: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: $o, sourceApplication: \"rhino\", message: \"first boxes\"}) { id } } }",
        json!({"p": project, "m": model, "o": root}),
    )
    .await;
    model
}

/// The share of clearly red pixels, and the luminance variance (a drawn model is not flat).
fn drawn(png: &[u8]) -> (f64, f64) {
    let (_, _, rgba) = decode_rgba(png).unwrap();
    let pixels = rgba.len() / 4;
    let mut red = 0usize;
    let mut sum = 0f64;
    let mut sq = 0f64;
    for p in rgba.chunks_exact(4) {
        let (r, g, b) = (f64::from(p[0]), f64::from(p[1]), f64::from(p[2]));
        if r > 120.0 && r > g * 1.6 && r > b * 1.6 {
            red += 1;
        }
        let l = 0.299 * r + 0.587 * g + 0.114 * b;
        sum += l;
        sq += l * l;
    }
    let n = pixels as f64;
    (red as f64 / n, sq / n - (sum / n).powi(2))
}

#[tokio::test]
async fn a_person_registers_sends_a_model_views_it_shares_it_and_cleans_up() {
    let w = web("journey", true).await;

    // Register: the web app signs the new person in.
    w.register("Ada Lovelace", "ada@example.com").await;
    assert_eq!(w.current().await, "/projects");
    assert!(w.body().await.contains("Ada Lovelace"));
    w.shot("01-projects-empty").await;

    // Create a project.
    w.click("details.create summary").await;
    w.fill("#name", "Harbour Bridge").await;
    w.fill("#description", "Steel and stone").await;
    w.submit("details.create button[type=submit]").await;
    let project_path = w.current().await;
    let project = project_path
        .strip_prefix("/projects/")
        .expect("the project page")
        .to_owned();
    assert_eq!(w.text("h1").await, "Harbour Bridge");

    // A personal access token for the connector: shown once.
    w.goto("/settings/user/developer").await;
    w.fill("#token-name", "rhino connector").await;
    w.submit("form.stack button[type=submit]").await;
    let token = w
        .c()
        .find(Locator::Css("#token-value"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .expect("the new token");
    assert!(w.body().await.contains("rhino connector"));
    w.goto("/settings/user/developer").await;
    assert!(
        w.c().find(Locator::Css("#token-value")).await.is_err(),
        "a token is shown only once"
    );

    // The connector sends a model into a folder; the project page lists it with its preview.
    let model = send_model(&w.app, &token, &project, "structure/boxes").await;
    w.goto(&project_path).await;
    let page = w.body().await;
    assert!(
        page.contains("structure/") && page.contains("boxes"),
        "{page}"
    );
    let preview = format!("/_strata/web/preview/{project}/{model}");
    w.until(
        &format!(
            "return [...document.images].some(i => i.getAttribute('src') === '{preview}' && i.alt.includes('structure/boxes'));"
        ),
        "the model's preview image on the project page",
    )
    .await;
    // The image the page shows is the rendered preview once the worker has drawn it.
    let session = w.session_token().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let png = loop {
        let res = w
            .app
            .http
            .get(format!("{}{preview}", w.app.base_url))
            .header("cookie", format!("strata_session={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        // Placeholders (pending, failed) are never cached; a rendered preview is.
        let placeholder = res.headers()["cache-control"] != "private, max-age=604800";
        let bytes = res.bytes().await.unwrap();
        if !placeholder {
            break bytes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the preview was never rendered"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (red, _) = drawn(&png);
    assert!(red > 0.01, "the preview shows the red boxes ({red})");
    w.goto(&project_path).await;
    w.shot("02-project-with-preview").await;

    // The viewer draws the model; a click selects an object and shows its properties.
    w.submit(&format!("a[href='/projects/{project}/models/{model}']"))
        .await;
    w.viewer_loaded("the viewer loading the model").await;
    let viewer = w.c().find(Locator::Css("#viewer")).await.unwrap();
    let png = viewer.screenshot().await.unwrap();
    std::fs::write(w.out.join("03-viewer.png"), &png).unwrap();
    let (red, variance) = drawn(&png);
    assert!(
        red > 0.01 && variance > 50.0,
        "the viewer draws the boxes (red {red}, variance {variance})"
    );
    assert!(w.body().await.contains("first boxes"));
    viewer.click().await.unwrap();
    w.until(
        "const s = document.getElementById('selection'); return !!s && !s.hidden && s.textContent.includes('Objects.Geometry.Mesh');",
        "a selected object's properties",
    )
    .await;
    assert!(w.text("#selection").await.contains("box "));
    w.shot("04-viewer-selection").await;

    // A webhook, its delivery in the history, and a redelivery.
    let receiver = WebhookReceiver::start().await;
    w.goto(&format!("/projects/{project}/settings/webhooks"))
        .await;
    w.fill("#url", &receiver.url).await;
    w.fill("#wh-description", "site office").await;
    w.click("input[name=trigger_branch_create]").await;
    w.submit("form.stack button[type=submit]").await;
    assert!(
        w.body().await.contains("Webhook added."),
        "{}",
        w.body().await
    );
    w.app
        .gql_data(
            &token,
            "mutation($p: ID!) { modelMutations { create(input: {projectId: $p, name: \"landscape\"}) { id } } }",
            json!({"p": project}),
        )
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        w.goto(&format!("/projects/{project}/settings/webhooks"))
            .await;
        if w.body().await.contains("branch_create")
            && !w
                .js("return document.querySelectorAll('table.deliveries tbody tr').length === 0;")
                .await
                .as_bool()
                .unwrap()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no delivery shown");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while w.text("table.deliveries tbody tr td.delivery-status").await != "delivered" {
        assert!(tokio::time::Instant::now() < deadline, "{}", w.body().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
        w.goto(&format!("/projects/{project}/settings/webhooks"))
            .await;
    }
    w.shot("05-webhook-delivered").await;
    let before = receiver.received().len();
    w.submit("table.deliveries tbody tr button").await;
    assert!(w.body().await.contains("Delivery queued again."));
    let deadline = tokio::time::Instant::now() + WAIT;
    while receiver.received().len() <= before {
        assert!(tokio::time::Instant::now() < deadline, "no redelivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // History timeline.
    w.goto(&format!("/projects/{project}/history")).await;
    let history = w.body().await;
    assert!(history.contains("structure/boxes"), "{history}");

    // Revoke the connector's token: the API refuses it at once.
    w.goto("/settings/user/developer").await;
    w.submit("button[aria-label='Revoke rhino connector']")
        .await;
    assert!(w.body().await.contains("Token revoked."));
    assert!(!w.body().await.contains("rhino connector"));
    let refused = w.app.gql(&token, "{ activeUser { id } }", json!({})).await;
    assert!(
        refused["errors"].is_array() || refused["data"]["activeUser"].is_null(),
        "{refused}"
    );

    // Invite a colleague, who registers and accepts.
    w.goto(&format!("/projects/{project}/collaborators")).await;
    w.fill("#invite-email", "grace@example.com").await;
    w.submit("form.stack button[type=submit]").await;
    assert!(
        w.body().await.contains("Invite sent."),
        "{}",
        w.body().await
    );
    w.sign_out().await;
    w.register("Grace Hopper", "grace@example.com").await;
    let grace = w.session_token().await;
    let invites = w
        .app
        .gql_data(
            &grace,
            "{ activeUser { projectInvites { projectId token } } }",
            json!({}),
        )
        .await;
    let invite = invites["activeUser"]["projectInvites"][0]["token"]
        .as_str()
        .expect("the invite reaches its addressee")
        .to_owned();
    w.goto(&format!("/projects/{project}?token={invite}")).await;
    assert!(w.body().await.contains("Join Harbour Bridge"));
    w.shot("06-invite").await;
    w.submit("button[value=true]").await;
    assert_eq!(w.current().await, project_path);
    w.goto(&format!("/projects/{project}/collaborators")).await;
    let team = w.body().await;
    assert!(
        team.contains("Grace Hopper") && team.contains("contributor"),
        "{team}"
    );

    // The activity feed is every member's, not only the owner's: Grace sees who made the model.
    w.goto(&format!("/projects/{project}/activity")).await;
    let who = w
        .js("const li = [...document.querySelectorAll('ol.activity li')].find(l => l.textContent.includes('Branch created: structure/boxes')); return li ? li.querySelector('.who').textContent : null;")
        .await;
    assert_eq!(who, json!("Ada Lovelace"), "{}", w.body().await);

    w.close().await;
}

#[tokio::test]
async fn a_connector_signs_in_through_the_browser() {
    let w = web("connector", false).await;
    tests::register(&w.app.base_url, "lin@example.com").await;
    // The connector's own listener, on the port the original registers for `sca`.
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<String>();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 29363))
        .await
        .expect("the connector's port 29363 is free");
    let connector = axum::Router::new().route(
        "/",
        axum::routing::get(move |uri: axum::http::Uri| {
            let tx = arrived_tx.clone();
            async move {
                let _ = tx.send(uri.query().unwrap_or_default().to_owned());
                "You can close this window."
            }
        }),
    );
    let listening = tokio::spawn(async move { axum::serve(listener, connector).await });
    // The connector opens the server's page with its app id and a challenge of its own.
    let challenge = "Zk3vQ9xLq2bT7mWc";
    let verify = format!("/authn/verify/sca/{challenge}");
    w.goto(&verify).await;
    assert!(w.current().await.starts_with("/authn/login?next="));
    w.sign_in("lin@example.com", "correct horse").await;
    assert_eq!(w.current().await, verify);
    let page = w.body().await;
    assert!(
        page.contains("Speckle Connector") && page.contains("streams:write"),
        "{page}"
    );
    w.shot("01-authorize").await;
    w.click("button[value=allow]").await;
    // The browser is sent to the connector's local listener with the code.
    let query = tokio::time::timeout(WAIT, arrived.recv())
        .await
        .expect("the connector heard back")
        .unwrap();
    assert!(w.body().await.contains("You can close this window."));
    let code = query
        .strip_prefix("access_code=")
        .expect("an access code")
        .to_owned();
    let tokens: Value = w
        .app
        .http
        .post(format!("{}/auth/token", w.app.base_url))
        .json(&json!({"appId": "sca", "appSecret": "sca", "accessCode": code, "challenge": challenge}))
        .json_ok()
        .await;
    let token = tokens["token"].as_str().expect("a token");
    let me = w
        .app
        .gql_data(token, "{ activeUser { email } }", json!({}))
        .await;
    assert_eq!(me["activeUser"]["email"], "lin@example.com");

    // Denying sends the connector `denied=true` and no code.
    w.goto(&verify).await;
    w.click("button[value=deny]").await;
    let query = tokio::time::timeout(WAIT, arrived.recv())
        .await
        .expect("the connector heard back")
        .unwrap();
    assert_eq!(query, "denied=true");

    // The person can take the app's access back from their tokens page: its token stops working.
    w.goto("/settings/user/developer").await;
    assert!(w.text("ul.apps").await.contains("Speckle Connector"));
    w.submit("button[aria-label='Revoke access of Speckle Connector']")
        .await;
    let page = w.body().await;
    assert!(page.contains("The app's access is revoked."), "{page}");
    assert!(
        !w.text("main").await.contains("Speckle Connector"),
        "{page}"
    );
    let refused = w
        .app
        .gql(token, "{ activeUser { email } }", json!({}))
        .await;
    assert!(
        refused["errors"].is_array() || refused["data"]["activeUser"].is_null(),
        "{refused}"
    );
    listening.abort();
    w.close().await;
}

/// Page rules without a browser: sessions, CSRF, the embed's framing, and the API's
/// authorization on every page.
#[tokio::test]
async fn pages_keep_the_apis_rules() {
    let db = TestDb::new().await;
    let (app, _stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let owner = tests::register(&app.base_url, "owner@example.com").await;
    let stranger = tests::register(&app.base_url, "stranger@example.com").await;
    let (project, model) = app.project_with_model(&owner, "m").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: String, cookie: Option<String>, iframe: bool| {
        let mut req = http.get(format!("{}{path}", app.base_url));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        if iframe {
            req = req.header("sec-fetch-dest", "iframe");
        }
        req.send()
    };

    // Anonymous: sent to sign in, with the way back.
    let res = get(format!("/projects/{project}"), None, false)
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()["location"],
        format!("/authn/login?next=/projects/{project}").as_str()
    );

    // A signed-in stranger sees the API's refusal; the owner sees the page.
    let res = get(
        format!("/projects/{project}"),
        Some(format!("strata_session={stranger}")),
        false,
    )
    .await
    .unwrap();
    assert!(
        matches!(res.status().as_u16(), 403 | 404),
        "{}",
        res.status()
    );
    let res = get(
        format!("/projects/{project}"),
        Some(format!("strata_session={owner}")),
        false,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    // The page cookie is not an API credential.
    let res = http
        .post(format!("{}/graphql", app.base_url))
        .header("cookie", format!("strata_session={owner}"))
        .json(&json!({"query": "{ activeUser { id } }"}))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert!(body["data"]["activeUser"].is_null(), "{body}");

    // Forms without the CSRF token (or with another) change nothing.
    let res = http
        .post(format!("{}/projects", app.base_url))
        .header(
            "cookie",
            format!("strata_session={owner}; strata_csrf=00112233445566778899aabbccddeeff"),
        )
        .form(&[
            ("name", "forged"),
            ("csrf", "ffeeddccbbaa99887766554433221100"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = http
        .post(format!("{}/projects", app.base_url))
        .header("cookie", format!("strata_session={owner}"))
        .form(&[("name", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let listed = app
        .gql_data(
            &owner,
            "{ activeUser { projects { totalCount } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["activeUser"]["projects"]["totalCount"], 1);
    // With the matching token it works.
    let res = http
        .post(format!("{}/projects", app.base_url))
        .header(
            "cookie",
            format!("strata_session={owner}; strata_csrf=00112233445566778899aabbccddeeff"),
        )
        .form(&[
            ("name", "real"),
            ("visibility", "PRIVATE"),
            ("csrf", "00112233445566778899aabbccddeeff"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);

    // Signing in sets an HttpOnly, SameSite=Lax session cookie; a wrong password does not.
    let login = |password: &'static str| {
        http.post(format!("{}/authn/login", app.base_url))
            .header("cookie", "strata_csrf=00112233445566778899aabbccddeeff")
            .form(&[
                ("email", "owner@example.com"),
                ("password", password),
                ("csrf", "00112233445566778899aabbccddeeff"),
            ])
            .send()
    };
    let res = login("wrong password").await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("set-cookie").is_none());
    let res = login("correct horse").await.unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("strata_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );

    // The viewer in an iframe on another site: framable, session ignored, API rules kept.
    let viewer = format!("/projects/{project}/models/{model}");
    let res = get(
        viewer.clone(),
        Some(format!("strata_session={owner}")),
        true,
    )
    .await
    .unwrap();
    assert!(
        matches!(res.status().as_u16(), 401 | 403),
        "an embed of a private project needs ?embedToken= ({})",
        res.status()
    );
    let object = "0123456789abcdef0123456789abcdef";
    app.version_on(&owner, (&project, &model), object, json!({}))
        .await;
    let res = get(format!("{viewer}?embedToken={owner}"), None, true)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors *"), "{csp}");
    let page = res.text().await.unwrap();
    assert!(
        page.contains(&format!("data-object-id=\"{object}\"")) && !page.contains("signout"),
        "the embed is the viewer alone: {page}"
    );
    // The same page at the top level may not be framed.
    let res = get(viewer, Some(format!("strata_session={owner}")), false)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}

/// The viewer inside an iframe on another site, with the original's `#embed=` options.
#[tokio::test]
async fn the_viewer_embeds_in_another_sites_iframe() {
    let w = web("embed", false).await;
    let token = tests::register(&w.app.base_url, "pat@example.com").await;
    let project = w
        .app
        .gql_data(
            &token,
            "mutation { projectMutations { create(input: {name: \"open\", visibility: PUBLIC}) { id } } }",
            json!({}),
        )
        .await["projectMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let model = send_model(&w.app, &token, &project, "facade").await;
    // Another site: its own origin, one page framing strata's viewer.
    let options =
        "%7B%22isEnabled%22%3Atrue%2C%22isTransparent%22%3Atrue%2C%22hideControls%22%3Atrue%7D";
    let src = format!(
        "{}/projects/{project}/models/{model}#embed={options}",
        w.app.base_url
    );
    let host = format!(
        "<!doctype html><title>Site</title><h1>Our bridge</h1>\
         <iframe src=\"{src}\" width=\"800\" height=\"500\"></iframe>"
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let site = format!(
        "http://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let host = host.clone();
            async move { axum::response::Html(host) }
        }),
    );
    let serving = tokio::spawn(async move { axum::serve(listener, router).await });
    w.c().goto(&site).await.unwrap();
    w.c().clone().enter_frame(0).await.unwrap();
    w.viewer_loaded("the framed viewer loading the model").await;
    // The embed is the viewer alone, and honours the options it was given.
    assert_eq!(
        w.js("return document.querySelectorAll('form').length;")
            .await,
        json!(0)
    );
    assert_eq!(
        w.js("return window.strataViewer.options.transparent && window.strataViewer.options.hideControls;").await,
        json!(true)
    );
    w.c().enter_parent_frame().await.unwrap();
    let png = w.shot("01-embedded").await;
    let (red, _) = drawn(&png);
    assert!(red > 0.005, "the framed viewer draws the model ({red})");
    serving.abort();
    w.close().await;
}

/// A file imported through the original's upload route opens in the viewer, drawn in its
/// colours, and a click shows the element's IFC class and properties.
#[tokio::test]
async fn an_imported_ifc_opens_in_the_viewer_with_its_properties() {
    let w = web("ifc", true).await;
    let token = tests::register(&w.app.base_url, "ifc@example.com").await;
    let (project, _) = w.app.project_with_model(&token, "unused").await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(include_bytes!("../samples/ifc/house.ifc").to_vec())
            .file_name("house.ifc"),
    );
    let res = w
        .app
        .http
        .post(format!("{}/api/file/ifc/{project}/house", w.app.base_url))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let deadline = tokio::time::Instant::now() + WAIT;
    let model = loop {
        let data = w
            .app
            .gql_data(
                &token,
                "query($p: String!) { project(id: $p) { modelByName(name: \"house\") { id versions { totalCount } } } }",
                json!({"p": project}),
            )
            .await;
        let m = &data["project"]["modelByName"];
        if m["versions"]["totalCount"] == 1 {
            break m["id"].as_str().unwrap().to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "no version: {data}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    w.goto(&format!("/projects/{project}/models/{model}")).await;
    w.sign_in("ifc@example.com", "correct horse").await;
    w.viewer_loaded("the viewer loading the imported house")
        .await;
    assert!(w.body().await.contains("File upload: house.ifc"));
    let viewer = w.c().find(Locator::Css("#viewer")).await.unwrap();
    let png = viewer.screenshot().await.unwrap();
    std::fs::write(w.out.join("01-house.png"), &png).unwrap();
    let (red, variance) = drawn(&png);
    assert!(
        red > 0.002 && variance > 50.0,
        "the house is drawn with its red wall (red {red}, variance {variance})"
    );
    viewer.click().await.unwrap();
    w.until(
        "const s = document.getElementById('selection'); return !!s && !s.hidden && s.textContent.includes('IFC Class');",
        "an element's IFC properties",
    )
    .await;
    assert!(w.text("#selection").await.contains("Ifc"));
    w.shot("02-house-selection").await;
    w.close().await;
}

//! CORS in a real browser: a page served from another loopback origin signs in with a token,
//! queries `/graphql` and downloads an object tree the way `@speckle/viewer` does (the root
//! through `/objects/:p/:id/single`, its children through the object-stream route). With the
//! page's origin not allowed, the same page cannot read anything.
//!
//! Needs Chromium and chromedriver (`deploy/dev test` installs them and exports
//! `STRATA_TEST_CHROMEDRIVER`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};
use tests::{RequestExt, TestDb, test_settings};

/// The page: runs the viewer's requests against `strata` and writes what it read into `#out`.
fn page(strata: &str, token: &str, project: &str, root: &str) -> String {
    format!(
        r#"<!doctype html><html><body><pre id="out"></pre><script>
const strata = {strata:?}, token = {token:?}, project = {project:?}, root = {root:?};
const auth = {{ 'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json',
  'apollographql-client-name': 'browser-test', 'x-request-id': 'cors-test-1' }};
async function run() {{
  const gql = await fetch(strata + '/graphql', {{ method: 'POST', headers: auth,
    body: JSON.stringify({{ query: 'query($p: String!) {{ project(id: $p) {{ name }} }}',
      variables: {{ p: project }} }}) }});
  const answer = await gql.json();
  const requestId = gql.headers.get('x-request-id');
  const single = await (await fetch(strata + '/objects/' + project + '/' + root + '/single',
    {{ headers: {{ 'Authorization': 'Bearer ' + token }} }})).json();
  const children = Object.keys(single.__closure || {{}});
  const stream = await fetch(strata + '/api/v2/projects/' + project + '/object-stream/',
    {{ method: 'POST', headers: auth, body: JSON.stringify({{ objectIds: children }}) }});
  const lines = (await stream.text()).split('\n').filter(l => l.length > 0);
  return {{ name: answer.data.project.name, requestId, rootId: single.id,
    streamed: lines.map(l => l.split('\t')[0]) }};
}}
run().then(r => {{ document.getElementById('out').textContent = JSON.stringify(r); }},
  e => {{ document.getElementById('out').textContent = JSON.stringify({{ error: String(e) }}); }})
  .finally(() => {{ const d = document.createElement('div'); d.id = 'done';
    document.body.appendChild(d); }});
</script></body></html>"#
    )
}

/// Serves `html` at `/` on a new loopback port (another origin than the API's); returns the URL.
async fn serve_page(html: String) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = html.clone();
            async move { axum::response::Html(html) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: std::process::Child,
    url: String,
    profile: TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn chromedriver() -> Driver {
    let binary = std::env::var("STRATA_TEST_CHROMEDRIVER").expect(
        "STRATA_TEST_CHROMEDRIVER is not set: run the tests through `deploy/dev test`, which \
         installs chromium and chromium-driver",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let profile = TempDir(
        std::env::temp_dir().join(format!("strata-chromium-{}", uuid::Uuid::new_v4().simple())),
    );
    // Ready when its status endpoint answers (bounded).
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = http.get(format!("{url}/status")).send().await
            && res.status().is_success()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver {
        child,
        url,
        profile,
    }
}

/// Opens `page_url` in headless Chromium and returns what the page wrote into `#out`.
async fn run_page(driver: &Driver, page_url: &str) -> Value {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-quic",
            format!("--user-data-dir={}", driver.profile.0.display()),
        ]}),
    );
    let client = ClientBuilder::rustls()
        .expect("tls")
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session");
    client.goto(page_url).await.unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Id("done"))
        .await
        .expect("the page finished");
    let text = client
        .find(Locator::Id("out"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    client.close().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A root with two children, uploaded as the connectors do.
async fn upload_tree(base: &str, token: &str, project: &str) -> (String, Vec<String>) {
    let children = [
        "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c1",
        "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c2",
    ];
    let root = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";
    let batch = json!([
        {"id": root, "speckle_type": "Base", "totalChildrenCount": 2,
         "__closure": {children[0]: 1, children[1]: 1},
         "elements": [{"referencedId": children[0]}, {"referencedId": children[1]}]},
        {"id": children[0], "speckle_type": "Objects.Geometry.Point", "x": 1.0},
        {"id": children[1], "speckle_type": "Objects.Geometry.Point", "x": 2.0},
    ]);
    let res = tests::upload_objects(base, token, project, &batch, "text/plain").await;
    assert_eq!(res.status(), 201);
    (
        root.to_owned(),
        children.iter().map(|c| (*c).to_owned()).collect(),
    )
}

async fn private_project(base: &str, token: &str) -> String {
    let res: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": "mutation { projectMutations { create(input: {name: \"Tower\"}) { id } } }"}))
        .json_ok()
        .await;
    res["data"]["projectMutations"]["create"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{res}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_reads_graphql_and_streams_objects() {
    let db = TestDb::new().await;
    let (app, _stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let token = tests::register(&app.base_url, "cors@example.com").await;
    let project = private_project(&app.base_url, &token).await;
    let (root, children) = upload_tree(&app.base_url, &token, &project).await;
    let driver = chromedriver().await;

    let url = serve_page(page(&app.base_url, &token, &project, &root)).await;
    assert_ne!(url, format!("{}/", app.base_url), "another origin");
    let read = run_page(&driver, &url).await;
    assert!(read["error"].is_null(), "the page failed: {read}");
    assert_eq!(read["name"], "Tower");
    assert_eq!(read["rootId"], root.as_str());
    assert_eq!(read["streamed"], json!(children));
    assert_eq!(
        read["requestId"], "cors-test-1",
        "x-request-id is exposed to pages"
    );

    // The same page, on an API that allows only another origin, reads nothing.
    let strict = tests::TestApp::spawn(command_service::config::Settings {
        cors_allowed_origins: "http://127.0.0.1:1".into(),
        ..test_settings(&db)
    })
    .await;
    let url = serve_page(page(&strict.base_url, &token, &project, &root)).await;
    let read = run_page(&driver, &url).await;
    assert!(
        read["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "a disallowed origin must not read the answer: {read}"
    );
}

//! Rate limits against a real Redis: 429 with the original's headers, per token and per IP,
//! on GraphQL and object routes alike, in resolvers, and fail-open when Redis is gone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};

async fn app_with(db: &TestDb, limits: &str) -> TestApp {
    TestApp::spawn(command_service::config::Settings {
        rate_limits_enabled: true,
        rate_limits: limits.into(),
        ..test_settings(db)
    })
    .await
}

/// The API with its projectors (for flows that wait on read models) under `limits`.
async fn stack_with(db: &TestDb, limits: &str) -> (TestApp, tokio_util::sync::DropGuard) {
    tests::spawn_stack(
        db,
        command_service::config::Settings {
            rate_limits_enabled: true,
            rate_limits: limits.into(),
            ..test_settings(db)
        },
    )
    .await
}

async fn post_graphql(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_answers_429_with_retry_headers_per_token() {
    let db = TestDb::new().await;
    let (app, _stack) = stack_with(&db, "POST_GRAPHQL=2/60,1/60").await;
    let first = tests::register(&app.base_url, "first@example.com").await;
    let second = tests::register(&app.base_url, "second@example.com").await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let res = post_graphql(&app, &first, "{ activeUser { id } }").await;
        assert_eq!(res.status(), 200);
        remaining.push(
            res.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Two from the regular window, then one from the burst window.
    assert_eq!(remaining, vec!["1", "0", "0"]);
    let res = post_graphql(&app, &first, "{ activeUser { id } }").await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let reset = res.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .to_owned();
    time::OffsetDateTime::parse(&reset, &time::format_description::well_known::Rfc3339).unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMIT_ERROR");
    // Another token has its own budget.
    let res = post_graphql(&app, &second, "{ activeUser { id } }").await;
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_routes_and_anonymous_callers_are_limited_too() {
    let db = TestDb::new().await;
    let app = app_with(&db, "GET_OBJECTS=1/60,0/60").await;
    let first = app
        .get("/objects/aaaaaaaaaa/0123456789abcdef0123456789abcdef")
        .await;
    assert_ne!(first.status(), 429);
    let second = app
        .get("/objects/aaaaaaaaaa/0123456789abcdef0123456789abcdef/single")
        .await;
    assert_eq!(
        second.status(),
        429,
        "the original's object limits never match; ours do"
    );

    let db = TestDb::new().await;
    let app = app_with(&db, "ALL_REQUESTS=2/60,0/60").await;
    assert_eq!(app.get("/api/ping").await.status(), 200);
    assert_eq!(app.get("/api/ping").await.status(), 200);
    assert_eq!(
        app.get("/api/ping").await.status(),
        429,
        "counted per client IP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_creation_is_limited_in_the_resolver() {
    let db = TestDb::new().await;
    let (app, _stack) = stack_with(&db, "STREAM_CREATE=1/60,0/60").await;
    let token = tests::register(&app.base_url, "maker@example.com").await;
    let create = "mutation { projectMutations { create(input: {name: \"p\"}) { id } } }";
    let ok: Value = post_graphql(&app, &token, create)
        .await
        .json()
        .await
        .unwrap();
    assert!(ok["errors"].is_null(), "{ok}");
    let refused: Value = post_graphql(&app, &token, create)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "RATE_LIMIT_ERROR",
        "{refused}"
    );
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ProjectCreated'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(count, 1, "the refused creation wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pass_when_redis_is_down() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(command_service::config::Settings {
        rate_limits_enabled: true,
        rate_limits: "ALL_REQUESTS=1/60,0/60".into(),
        // Nothing listens here.
        redis_url: Some(command_service::config::Secret::new("redis://127.0.0.1:9")),
        ..test_settings(&db)
    })
    .await;
    for _ in 0..3 {
        let res = app.get("/api/ping").await;
        assert_eq!(res.status(), 200, "fail-open, never a 500 or a 429");
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("strata_rate_limit_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 3.0, "{failures}");
}

/// Password guessing and reset flooding share one budget per address: once it is spent, even
/// the right password gets 429 (a guesser learns nothing more), and so does a reset request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_and_reset_flooding_are_limited_per_address() {
    let db = TestDb::new().await;
    let (app, _stack) = stack_with(&db, "AUTH=3/60,1/60").await;
    tests::register(&app.base_url, "guessed@example.com").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |password: &'static str| {
        http.post(format!("{}/auth/local/login?challenge=c", app.base_url))
            .form(&[("email", "guessed@example.com"), ("password", password)])
            .send()
    };
    // The regular window (3) and the burst window (1): wrong, and answered as wrong.
    for _ in 0..4 {
        let res = login("wrong guess").await.unwrap();
        assert_ne!(res.status(), 429);
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let res = login("wrong guess").await.unwrap();
    assert_eq!(res.status(), 429);
    let res = login("correct horse").await.unwrap();
    assert_eq!(
        res.status(),
        429,
        "the right password once the budget is spent"
    );
    let res = http
        .post(format!("{}/auth/pwdreset/request", app.base_url))
        .json(&json!({"email": "guessed@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMIT_ERROR");
}

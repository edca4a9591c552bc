//! `Idempotency-Key` on `POST /graphql`: a request sent again with its key is applied once
//! and answered as the first time, whatever the order its sibling fields resolve in; a
//! different key or body is a new request; a concurrent repeat is applied once too; what a
//! repeat would apply again refuses the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};

const OBJECT: &str = "0123456789abcdef0123456789abcdef";

/// Two models (siblings of one mutation object, resolved concurrently) and a version.
const MANY: &str = "mutation($p: String!, $m: String!, $o: String!) { \
    modelMutations { a: create(input: {projectId: $p, name: \"alpha\"}) { id name } \
                     b: create(input: {projectId: $p, name: \"beta\"}) { id name } } \
    versionMutations { create(input: {projectId: $p, modelId: $m, objectId: $o}) { id } } }";

const VERSION: &str = "mutation($p: String!, $m: String!, $o: String!) { versionMutations { \
    create(input: {projectId: $p, modelId: $m, objectId: $o}) { id } } }";

async fn keyed(app: &TestApp, token: &str, key: &str, query: &str, variables: &Value) -> Value {
    let res = app
        .http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    res.json().await.expect("a JSON body")
}

/// The events of `project`'s stream, by type.
async fn events_of(db: &TestDb, project: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE stream_id = $1 ORDER BY stream_version")
        .bind(format!("project:{project}"))
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// A stack, a user, and a project of theirs with a model and a stored object; the variables
/// of [`MANY`] and [`VERSION`].
async fn project_with_object() -> (
    TestDb,
    TestApp,
    tokio_util::sync::DropGuard,
    String,
    String,
    Value,
) {
    let db = TestDb::new().await;
    let (app, stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let token = tests::register(&app.base_url, "ada@example.com").await;
    let (project, model) = app.project_with_model(&token, "m").await;
    tests::store_object(&app.base_url, &token, &project, OBJECT).await;
    let vars = json!({"p": project, "m": model, "o": OBJECT});
    (db, app, stack, token, project, vars)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_again_with_its_key_is_applied_once() {
    let (db, app, _stack, token, project, vars) = project_with_object().await;
    let before = events_of(&db, &project).await;

    let first = keyed(&app, &token, "k-1", MANY, &vars).await;
    assert!(first["errors"].is_null(), "{first}");
    let applied = events_of(&db, &project).await;
    assert_eq!(applied.len(), before.len() + 3, "{applied:?}");

    // Sent again (a client that lost the answer): the same answer, nothing appended. Without
    // the key the names would now be taken and a second version made.
    for _ in 0..2 {
        let again = keyed(&app, &token, "k-1", MANY, &vars).await;
        assert_eq!(again, first);
        assert_eq!(events_of(&db, &project).await, applied);
    }

    // The same body under another key is another request.
    let other = keyed(&app, &token, "k-2", MANY, &vars).await;
    let taken: Vec<&str> = other["errors"]
        .as_array()
        .expect("the names are taken")
        .iter()
        .map(|e| e["path"][1].as_str().unwrap())
        .collect();
    assert_eq!(taken.len(), 2, "{other}");
    let version = other["data"]["versionMutations"]["create"]["id"].as_str();
    assert!(version.is_some(), "{other}");
    assert_ne!(
        version,
        first["data"]["versionMutations"]["create"]["id"].as_str()
    );

    // Another user's request with the same key and body is theirs alone.
    let grace = tests::register(&app.base_url, "grace@example.com").await;
    let (theirs, their_model) = app.project_with_model(&grace, "m").await;
    tests::store_object(&app.base_url, &grace, &theirs, OBJECT).await;
    let their_vars = json!({"p": theirs, "m": their_model, "o": OBJECT});
    let answer = keyed(&app, &grace, "k-1", VERSION, &their_vars).await;
    assert!(answer["errors"].is_null(), "{answer}");
    assert_eq!(
        events_of(&db, &theirs)
            .await
            .iter()
            .filter(|t| *t == "VersionCreated")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_are_applied_once_and_answered_alike() {
    let (db, app, _stack, token, project, vars) = project_with_object().await;
    // Rounds of 8 racing attempts: the first with refusals a winner causes (names taken),
    // the rest versions.
    for round in 0..6 {
        let (query, added) = if round == 0 { (MANY, 3) } else { (VERSION, 1) };
        let key = format!("together-{round}");
        let before = events_of(&db, &project).await.len();
        let answers =
            futures::future::join_all((0..8).map(|_| keyed(&app, &token, &key, query, &vars)))
                .await;
        for answer in &answers {
            assert!(answer["errors"].is_null(), "round {round}: {answer}");
            assert_eq!(answer, &answers[0], "round {round}");
        }
        assert_eq!(
            events_of(&db, &project).await.len(),
            before + added,
            "round {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_refused_where_it_cannot_be_kept() {
    let db = TestDb::new().await;
    let (app, _stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let token = tests::register(&app.base_url, "ada@example.com").await;
    let (project, model) = app.project_with_model(&token, "m").await;

    // A malformed key: 400 with a JSON body, nothing run.
    let res = app
        .http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&token)
        .header("Idempotency-Key", "two words")
        .json(&json!({"query": "mutation { projectMutations { create(input: {name: \"x\"}) { id } } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_REQUEST_ERROR");

    // A mutation whose commands take no derived id is refused rather than applied again on a
    // repeat (ingestions keep their own ids).
    let before = events_of(&db, &project).await;
    let answer = keyed(
        &app,
        &token,
        "k",
        "mutation($p: String!, $m: String!) { projectMutations { modelIngestionMutations { create(input: {projectId: $p, modelId: $m, progressMessage: \"go\", sourceData: {sourceApplicationSlug: \"rust-test\", sourceApplicationVersion: \"1\"}}) { id } } } }",
        &json!({"p": project, "m": model}),
    )
    .await;
    let error = &answer["errors"][0];
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("Idempotency-Key")),
        "{answer}"
    );
    assert_eq!(error["extensions"]["code"], "BAD_REQUEST_ERROR", "{answer}");
    assert_eq!(events_of(&db, &project).await, before);
    // A token is made outside the log: refused too, and none made.
    let answer = keyed(
        &app,
        &token,
        "k",
        "mutation($t: ApiTokenCreateInput!) { apiTokenCreate(token: $t) }",
        &json!({"t": {"name": "ci", "scopes": ["streams:read"]}}),
    )
    .await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "BAD_REQUEST_ERROR",
        "{answer}"
    );
    let tokens = app
        .gql_data(&token, "{ activeUser { apiTokens { name } } }", json!({}))
        .await;
    assert!(
        !tokens["activeUser"]["apiTokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "ci"),
        "{tokens}"
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE stream_id LIKE 'ingestion:%'"
        )
        .fetch_one(&db.pool)
        .await
        .unwrap(),
        0
    );
}

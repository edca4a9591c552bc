//! Text limits at the wire: every name, description and message a client sends is accepted at
//! its limit and refused one character over it (counted in characters, not bytes), with a
//! code, and a refusal records nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use domain::names::{
    MAX_BIO_CHARS, MAX_COMPANY_CHARS, MAX_DESCRIPTION_CHARS, MAX_MESSAGE_CHARS, MAX_NAME_CHARS,
    MAX_SOURCE_APPLICATION_CHARS,
};
use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};

const OBJECT: &str = "0123456789abcdef0123456789abcdef";

/// One text input: the operation that takes it as `$text`, and its limit in characters.
struct Case {
    what: &'static str,
    limit: usize,
    query: &'static str,
}

const CASES: &[Case] = &[
    Case {
        what: "project name",
        limit: MAX_NAME_CHARS,
        query: "mutation($text: String!) { projectMutations { create(input: {name: $text}) { id } } }",
    },
    Case {
        what: "project description",
        limit: MAX_DESCRIPTION_CHARS,
        query: "mutation($text: String!) { projectMutations { create(input: {name: \"d\", description: $text}) { id } } }",
    },
    Case {
        what: "model name",
        limit: MAX_NAME_CHARS,
        query: "mutation($p: String!, $text: String!) { modelMutations { create(input: {projectId: $p, name: $text}) { id } } }",
    },
    Case {
        what: "model description",
        limit: MAX_DESCRIPTION_CHARS,
        query: "mutation($p: String!, $text: String!) { modelMutations { create(input: {projectId: $p, name: \"described\", description: $text}) { id } } }",
    },
    Case {
        what: "version message",
        limit: MAX_MESSAGE_CHARS,
        query: "mutation($p: String!, $m: String!, $o: String!, $text: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: $o, message: $text}) { id } } }",
    },
    Case {
        what: "version source application",
        limit: MAX_SOURCE_APPLICATION_CHARS,
        query: "mutation($p: String!, $m: String!, $o: String!, $text: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: $o, sourceApplication: $text}) { id } } }",
    },
    Case {
        what: "user name",
        limit: MAX_NAME_CHARS,
        query: "mutation($text: String!) { activeUserMutations { update(user: {name: $text}) { id } } }",
    },
    Case {
        what: "user company",
        limit: MAX_COMPANY_CHARS,
        query: "mutation($text: String!) { activeUserMutations { update(user: {company: $text}) { id } } }",
    },
    Case {
        what: "user bio",
        limit: MAX_BIO_CHARS,
        query: "mutation($text: String!) { activeUserMutations { update(user: {bio: $text}) { id } } }",
    },
];

async fn events(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// Sends `case` with `text`; `Ok` when it succeeded, else the error's code. Checks that a
/// refusal recorded nothing.
async fn check(
    app: &TestApp,
    db: &TestDb,
    token: &str,
    ids: &Value,
    case: &Case,
    text: String,
) -> Result<(), String> {
    let before = events(db).await;
    let mut variables = ids.clone();
    variables["text"] = Value::String(text);
    let answer = app.gql(token, case.query, variables).await;
    match answer["errors"][0]["extensions"]["code"].as_str() {
        None => {
            assert!(answer["data"].is_object(), "{}: {answer}", case.what);
            Ok(())
        }
        Some(code) => {
            assert_eq!(
                events(db).await,
                before,
                "{}: a refused change recorded events",
                case.what
            );
            Err(code.to_owned())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_text_input_is_accepted_at_its_limit_and_refused_past_it() {
    let db = TestDb::new().await;
    let (app, _stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let token = tests::register(&app.base_url, "limits@example.com").await;
    let (project, model) = app.project_with_model(&token, "limits").await;
    tests::store_object(&app.base_url, &token, &project, OBJECT).await;
    let ids = json!({"p": project, "m": model, "o": OBJECT});
    for case in CASES {
        // Two-byte characters: a limit counted in bytes would refuse the first.
        let at = "é".repeat(case.limit);
        let over = "é".repeat(case.limit + 1);
        assert_eq!(
            check(&app, &db, &token, &ids, case, at).await,
            Ok(()),
            "{} at its limit of {}",
            case.what,
            case.limit
        );
        assert_eq!(
            check(&app, &db, &token, &ids, case, over).await,
            Err("BAD_REQUEST_ERROR".to_owned()),
            "{} over its limit of {}",
            case.what,
            case.limit
        );
    }
}

//! `Model.versions(filter)`: priority versions first, then the rest newest first, paged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::{RequestExt, TestDb, test_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_versions_come_first_and_paging_skips_them() {
    let db = TestDb::new().await;
    let (app, _stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let token = tests::register(&app.base_url, "ada@example.com").await;
    let gql = |query: &'static str, variables: Value| {
        let req = app
            .http
            .post(format!("{}/graphql", app.base_url))
            .bearer_auth(&token)
            .json(&json!({"query": query, "variables": variables}));
        async move {
            let res: Value = req.json_ok().await;
            assert!(res["errors"].is_null(), "{res}");
            res["data"].clone()
        }
    };
    let (project, model) = app.project_with_model(&token, "m").await;
    tests::store_object(
        &app.base_url,
        &token,
        &project,
        "0123456789abcdef0123456789abcdef",
    )
    .await;
    let mut versions = Vec::new();
    for i in 0..5 {
        let v = gql(
            "mutation($p: String!, $m: String!, $msg: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: \"0123456789abcdef0123456789abcdef\", message: $msg}) { id } } }",
            json!({"p": project, "m": model, "msg": format!("v{i}")}),
        )
        .await["versionMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        versions.push(v);
    }
    let query = "query($p: String!, $m: String!, $c: String, $ids: [String!]!, $l: Int) { project(id: $p) { model(id: $m) { versions(limit: $l, cursor: $c, filter: {priorityIds: $ids}) { totalCount cursor items { id } } } } }";
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // The oldest version first, then the newest others.
    let page = gql(
        query,
        json!({"p": project, "m": model, "ids": [versions[0]], "l": 3}),
    )
    .await;
    let page = &page["project"]["model"]["versions"];
    assert_eq!(page["totalCount"], 5);
    assert_eq!(
        ids(page),
        vec![
            versions[0].clone(),
            versions[4].clone(),
            versions[3].clone()
        ]
    );
    let next = gql(
        query,
        json!({"p": project, "m": model, "ids": [versions[0]], "l": 3, "c": page["cursor"]}),
    )
    .await;
    let next = &next["project"]["model"]["versions"];
    assert_eq!(
        ids(next),
        vec![versions[2].clone(), versions[1].clone()],
        "the priority version is not repeated"
    );
    assert!(next["cursor"].is_null());
    // Priority versions filling the page still leave a way on.
    let page = gql(
        query,
        json!({"p": project, "m": model, "ids": [versions[1]], "l": 1}),
    )
    .await;
    let page = &page["project"]["model"]["versions"];
    assert_eq!(ids(page), vec![versions[1].clone()]);
    let next = gql(
        query,
        json!({"p": project, "m": model, "ids": [versions[1]], "l": 1, "c": page["cursor"]}),
    )
    .await;
    assert_eq!(
        ids(&next["project"]["model"]["versions"]),
        vec![versions[4].clone()]
    );
}

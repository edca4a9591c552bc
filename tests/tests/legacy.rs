//! The legacy stream/branch/commit API over HTTP: defaults, every mutation, activity, access,
//! and cross-API visibility with the current API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};

struct World {
    app: TestApp,
    _db: TestDb,
    _stack: tokio_util::sync::DropGuard,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let (app, stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    World {
        app,
        _db: db,
        _stack: stack,
    }
}

impl World {
    async fn stream_create(&self, token: &str, input: Value) -> String {
        self.app
            .gql_data(
                token,
                "mutation($s: StreamCreateInput!) { streamCreate(stream: $s) }",
                json!({"s": input}),
            )
            .await["streamCreate"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// The root object every version here points at (stored first: the server refuses a version
/// whose root object the project does not hold).
const OBJECT: &str = "0123456789abcdef0123456789abcdef";

fn code(res: &Value) -> &str {
    res["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

const STREAM: &str = "query($id: String!) { stream(id: $id) { id name description isPublic role \
    collaborators { id role name } branches { totalCount items { id name description } } \
    branch(name: \"main\") { id name description } commits { totalCount items { id message branchName authorId referencedObject totalChildrenCount } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_create_defaults_to_public_with_a_main_branch() {
    let w = world().await;
    let (token, me) = w.app.register_user("ada@example.com").await;
    let id = w
        .stream_create(&token, json!({"name": "Legacy", "description": "old"}))
        .await;
    let stream = &w.app.gql_data(&token, STREAM, json!({"id": id})).await["stream"];
    assert_eq!(stream["isPublic"], true);
    assert_eq!(stream["role"], "stream:owner");
    assert_eq!(stream["branch"]["name"], "main");
    assert_eq!(stream["branch"]["description"], "default model");
    assert_eq!(stream["branches"]["totalCount"], 1);
    assert_eq!(
        stream["collaborators"],
        json!([{"id": me, "role": "stream:owner", "name": "Ada"}])
    );
    // The current API creates no model and defaults to private.
    let current = w
        .app
        .gql_data(&token, "mutation { projectMutations { create(input: {name: \"New\"}) { id visibility models { totalCount } } } }", json!({}))
        .await;
    assert_eq!(
        current["projectMutations"]["create"]["visibility"],
        "PRIVATE"
    );
    assert_eq!(
        current["projectMutations"]["create"]["models"]["totalCount"],
        0
    );
    // A private legacy stream on request.
    let private = w
        .stream_create(&token, json!({"name": "Hidden", "isPublic": false}))
        .await;
    let stream = &w.app.gql_data(&token, STREAM, json!({"id": private})).await["stream"];
    assert_eq!(stream["isPublic"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_and_commits_through_their_life() {
    let w = world().await;
    let (token, me) = w.app.register_user("ada@example.com").await;
    let id = w.stream_create(&token, json!({"name": "Life"})).await;
    let branch = w
        .app
        .gql_data(
            &token,
            "mutation($s: String!) { branchCreate(branch: {streamId: $s, name: \"Structure/Level 1\", description: \"d\"}) }",
            json!({"s": id}),
        )
        .await["branchCreate"]
        .as_str()
        .unwrap()
        .to_owned();
    tests::store_object(&w.app.base_url, &token, &id, OBJECT).await;
    let create = "mutation($c: CommitCreateInput!) { commitCreate(commit: $c) }";
    let by_name = w
        .app
        .gql_data(
            &token,
            create,
            json!({"c": {"streamId": id, "branchName": "STRUCTURE/level 1", "objectId": "0123456789abcdef0123456789abcdef", "message": "by name", "sourceApplication": "Rhino", "totalChildrenCount": 3}}),
        )
        .await["commitCreate"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_id = w
        .app
        .gql_data(
            &token,
            create,
            json!({"c": {"streamId": id, "branchName": branch, "objectId": "0123456789abcdef0123456789abcdef", "message": "by id"}}),
        )
        .await["commitCreate"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = w
        .app
        .gql(
            &token,
            create,
            json!({"c": {"streamId": id, "branchName": "nope", "objectId": "0123456789abcdef0123456789abcdef"}}),
        )
        .await;
    assert_eq!(code(&missing), "NOT_FOUND_ERROR", "{missing}");

    let stream = &w.app.gql_data(&token, STREAM, json!({"id": id})).await["stream"];
    let names: Vec<&str> = stream["branches"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"structure/level 1"),
        "lower-cased: {names:?}"
    );
    assert_eq!(stream["commits"]["totalCount"], 2);
    let first = stream["commits"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == by_name.as_str())
        .unwrap();
    assert_eq!(first["branchName"], "structure/level 1");
    assert_eq!(first["authorId"], me);
    assert_eq!(first["totalChildrenCount"], 3);

    // Message and branch change; the branch is created when missing.
    w.app.gql_data(
        &token,
        "mutation($c: CommitUpdateInput!) { commitUpdate(commit: $c) }",
        json!({"c": {"streamId": id, "id": by_id, "message": "edited", "newBranchName": "Archive"}}),
    )
    .await;
    let commit = &w
        .app
        .gql_data(
            &token,
            "query($s: String!, $c: String!) { stream(id: $s) { commit(id: $c) { message branchName branch { name } stream { id } } } }",
            json!({"s": id, "c": by_id}),
        )
        .await["stream"]["commit"];
    assert_eq!(commit["message"], "edited");
    assert_eq!(commit["branchName"], "archive");
    assert_eq!(commit["stream"]["id"], id);

    w.app.gql_data(
        &token,
        "mutation($i: CommitReceivedInput!) { commitReceive(input: $i) }",
        json!({"i": {"streamId": id, "commitId": by_name, "sourceApplication": "Blender", "message": "got it"}}),
    )
    .await;
    w.app
        .gql_data(
            &token,
            "mutation($s: String!, $c: String!) { commitDelete(commit: {streamId: $s, id: $c}) }",
            json!({"s": id, "c": by_id}),
        )
        .await;
    w.app.gql_data(
        &token,
        "mutation($s: String!, $b: String!) { branchUpdate(branch: {streamId: $s, id: $b, description: \"new\"}) }",
        json!({"s": id, "b": branch}),
    )
    .await;
    w.app
        .gql_data(
            &token,
            "mutation($s: String!, $b: String!) { branchDelete(branch: {streamId: $s, id: $b}) }",
            json!({"s": id, "b": branch}),
        )
        .await;
    let stream = &w.app.gql_data(&token, STREAM, json!({"id": id})).await["stream"];
    assert_eq!(stream["commits"]["totalCount"], 0, "{stream}");

    // Activity records every step, newest first, paged by time.
    let activity = "query($s: String!, $c: DateTime) { stream(id: $s) { activity(limit: 3, cursor: $c) { totalCount cursor items { actionType resourceType userId } } } }";
    let page = &w.app.gql_data(&token, activity, json!({"s": id})).await["stream"]["activity"];
    let total = page["totalCount"].as_i64().unwrap();
    let mut seen: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["actionType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen[0], "branch_delete");
    let mut cursor = page["cursor"].clone();
    while !cursor.is_null() {
        let page = &w
            .app
            .gql_data(&token, activity, json!({"s": id, "c": cursor}))
            .await["stream"]["activity"];
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["actionType"].as_str().unwrap().to_owned()),
        );
        cursor = page["cursor"].clone();
    }
    assert_eq!(seen.len() as i64, total);
    for expected in [
        "stream_create",
        "stream_permissions_add",
        "branch_create",
        "commit_create",
        "commit_update",
        "commit_move",
        "commit_receive",
        "commit_delete",
        "branch_update",
        "branch_delete",
    ] {
        assert!(seen.iter().any(|s| s == expected), "{expected} in {seen:?}");
    }

    w.app
        .gql_data(
            &token,
            "mutation($s: String!) { streamDelete(id: $s) }",
            json!({"s": id}),
        )
        .await;
    let gone = w.app.gql(&token, STREAM, json!({"id": id})).await;
    assert_eq!(code(&gone), "STREAM_NOT_FOUND", "{gone}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_streams_stay_private_until_shared() {
    let w = world().await;
    let (owner, _) = w.app.register_user("owner@example.com").await;
    let (other, other_id) = w.app.register_user("other@example.com").await;
    let id = w
        .stream_create(&owner, json!({"name": "Secret plans", "isPublic": false}))
        .await;
    tests::store_object(&w.app.base_url, &owner, &id, OBJECT).await;
    w.app.gql_data(
        &owner,
        "mutation($s: String!) { commitCreate(commit: {streamId: $s, branchName: \"main\", objectId: \"0123456789abcdef0123456789abcdef\"}) }",
        json!({"s": id}),
    )
    .await;

    let res = w.app.gql(&other, STREAM, json!({"id": id})).await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");
    assert!(!res.to_string().contains("Secret plans"));
    // Anonymous callers get what the current API gives them.
    let res = w.app.gql_as(None, STREAM, json!({"id": id})).await;
    let current = w
        .app
        .gql_as(
            None,
            "query($id: String!) { project(id: $id) { id } }",
            json!({"id": id}),
        )
        .await;
    assert!(!code(&res).is_empty(), "{res}");
    assert_eq!(code(&res), code(&current));
    assert!(!res.to_string().contains("Secret plans"));
    let listed = w
        .app
        .gql_data(&other, "{ streams { totalCount items { id } } }", json!({}))
        .await;
    assert_eq!(listed["streams"]["totalCount"], 0);
    let owner_id = w
        .app
        .gql_data(&owner, "{ activeUser { id } }", json!({}))
        .await["activeUser"]["id"]
        .clone();
    let theirs = w
        .app
        .gql_data(
            &other,
            "query($u: String!) { user(id: $u) { streams { totalCount } activity { totalCount items { streamId } } } }",
            json!({"u": owner_id}),
        )
        .await;
    assert_eq!(theirs["user"]["streams"]["totalCount"], 0, "{theirs}");
    assert_eq!(theirs["user"]["activity"]["totalCount"], 0, "{theirs}");

    w.app.gql_data(
        &owner,
        "mutation($p: StreamUpdatePermissionInput!) { streamUpdatePermission(permissionParams: $p) }",
        json!({"p": {"streamId": id, "userId": other_id, "role": "stream:reviewer"}}),
    )
    .await;
    let stream = &w.app.gql_data(&other, STREAM, json!({"id": id})).await["stream"];
    assert_eq!(stream["role"], "stream:reviewer");
    assert_eq!(stream["commits"]["totalCount"], 1);
    let listed = w
        .app
        .gql_data(
            &other,
            "{ streams { totalCount items { id name } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["streams"]["items"][0]["name"], "Secret plans");
    // A reviewer cannot write.
    let res = w
        .app
        .gql(
            &other,
            "mutation($s: String!) { branchCreate(branch: {streamId: $s, name: \"mine\"}) }",
            json!({"s": id}),
        )
        .await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");

    w.app.gql_data(
        &owner,
        "mutation($p: StreamRevokePermissionInput!) { streamRevokePermission(permissionParams: $p) }",
        json!({"p": {"streamId": id, "userId": other_id}}),
    )
    .await;
    let res = w.app.gql(&other, STREAM, json!({"id": id})).await;
    assert_eq!(code(&res), "FORBIDDEN", "{res}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apis_see_and_edit_the_same_projects() {
    let w = world().await;
    let (token, _) = w.app.register_user("ada@example.com").await;
    // Legacy → current.
    let stream = w
        .stream_create(&token, json!({"name": "From legacy"}))
        .await;
    tests::store_object(&w.app.base_url, &token, &stream, OBJECT).await;
    w.app.gql_data(
        &token,
        "mutation($s: String!) { commitCreate(commit: {streamId: $s, branchName: \"main\", objectId: \"0123456789abcdef0123456789abcdef\", message: \"old client\"}) }",
        json!({"s": stream}),
    )
    .await;
    let project = &w
        .app
        .gql_data(
            &token,
            "query($id: String!) { project(id: $id) { name visibility models { items { name versions { items { message } } } } } }",
            json!({"id": stream}),
        )
        .await["project"];
    assert_eq!(project["name"], "From legacy");
    assert_eq!(project["visibility"], "PUBLIC");
    assert_eq!(project["models"]["items"][0]["name"], "main");
    assert_eq!(
        project["models"]["items"][0]["versions"]["items"][0]["message"],
        "old client"
    );
    w.app.gql_data(
        &token,
        "mutation($id: ID!) { projectMutations { update(update: {id: $id, name: \"Renamed now\"}) { id } } }",
        json!({"id": stream}),
    )
    .await;
    let renamed = &w.app.gql_data(&token, STREAM, json!({"id": stream})).await["stream"];
    assert_eq!(renamed["name"], "Renamed now");

    // Current → legacy.
    let (pid, model) = w.app.project_with_model(&token, "Walls").await;
    tests::store_object(&w.app.base_url, &token, &pid, OBJECT).await;
    w.app.gql_data(
        &token,
        "mutation($p: String!, $m: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: \"0123456789abcdef0123456789abcdef\", message: \"new client\"}) { id } } }",
        json!({"p": pid, "m": model}),
    )
    .await;
    let stream = &w.app.gql_data(&token, STREAM, json!({"id": pid})).await["stream"];
    assert_eq!(stream["isPublic"], false);
    assert_eq!(stream["branches"]["items"][0]["name"], "walls");
    assert_eq!(stream["commits"]["items"][0]["message"], "new client");
    assert_eq!(stream["commits"]["items"][0]["branchName"], "walls");
    w.app.gql_data(
        &token,
        "mutation($s: String!) { streamUpdate(stream: {id: $s, description: \"edited by legacy\"}) }",
        json!({"s": pid}),
    )
    .await;
    let project = &w
        .app
        .gql_data(
            &token,
            "query($id: String!) { project(id: $id) { description } }",
            json!({"id": pid}),
        )
        .await["project"];
    assert_eq!(project["description"], "edited by legacy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_create_stores_objects_with_closure_counts() {
    let w = world().await;
    let (token, _) = w.app.register_user("ada@example.com").await;
    let stream = w.stream_create(&token, json!({"name": "Objects"})).await;
    let child = "0123456789abcdef0123456789abcdef";
    let ids = w
        .app
        .gql_data(
            &token,
            "mutation($s: String!, $o: [JSONObject]!) { objectCreate(objectInput: {streamId: $s, objects: $o}) }",
            json!({"s": stream, "o": [
                {"id": child, "speckle_type": "Base", "value": 1},
                {"speckle_type": "Base", "name": "root", "__closure": {child: 1}}
            ]}),
        )
        .await["objectCreate"]
        .clone();
    let ids = ids.as_array().unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], child);
    let root = ids[1].as_str().unwrap();
    assert_eq!(root.len(), 32, "an id is made for an object without one");
    let object = &w
        .app
        .gql_data(
            &token,
            "query($s: String!, $o: String!) { stream(id: $s) { object(id: $o) { id totalChildrenCount data } } }",
            json!({"s": stream, "o": root}),
        )
        .await["stream"]["object"];
    assert_eq!(object["totalChildrenCount"], 1);
    assert_eq!(object["data"]["name"], "root");
}

const FAVORITE: &str = "mutation($id: String!, $f: Boolean!) { \
    streamFavorite(streamId: $id, favorited: $f) { id favoritedDate favoritesCount } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn favourites_are_counted_once_per_user_and_kept_to_those_who_can_read() {
    let w = world().await;
    let (owner, _) = w.app.register_user("fav-owner@example.com").await;
    let (other, _) = w.app.register_user("fav-other@example.com").await;
    let public = w.stream_create(&owner, json!({"name": "open"})).await;
    let private = w
        .stream_create(&owner, json!({"name": "closed", "isPublic": false}))
        .await;
    let mine = w
        .app
        .gql_data(&owner, FAVORITE, json!({"id": public, "f": true}))
        .await;
    assert_eq!(mine["streamFavorite"]["favoritesCount"], 1, "{mine}");
    assert!(
        mine["streamFavorite"]["favoritedDate"].is_string(),
        "{mine}"
    );
    // Favouriting again changes nothing.
    let again = w
        .app
        .gql_data(&owner, FAVORITE, json!({"id": public, "f": true}))
        .await;
    assert_eq!(again["streamFavorite"]["favoritesCount"], 1, "{again}");
    assert_eq!(
        again["streamFavorite"]["favoritedDate"],
        mine["streamFavorite"]["favoritedDate"]
    );
    // A non-member may favourite a public stream; their date is theirs alone.
    let theirs = w
        .app
        .gql_data(&other, FAVORITE, json!({"id": public, "f": true}))
        .await;
    assert_eq!(theirs["streamFavorite"]["favoritesCount"], 2, "{theirs}");
    let read = "query($id: String!) { stream(id: $id) { favoritedDate favoritesCount } }";
    let anonymous = w.app.gql_as(None, read, json!({"id": public})).await;
    assert_eq!(
        anonymous["data"]["stream"]["favoritesCount"], 2,
        "{anonymous}"
    );
    assert!(
        anonymous["data"]["stream"]["favoritedDate"].is_null(),
        "{anonymous}"
    );
    // Unmarking takes one away; unmarking what is not marked takes nothing.
    let off = w
        .app
        .gql_data(&other, FAVORITE, json!({"id": public, "f": false}))
        .await;
    assert_eq!(off["streamFavorite"]["favoritesCount"], 1, "{off}");
    assert!(off["streamFavorite"]["favoritedDate"].is_null(), "{off}");
    let off = w
        .app
        .gql_data(&other, FAVORITE, json!({"id": public, "f": false}))
        .await;
    assert_eq!(off["streamFavorite"]["favoritesCount"], 1, "{off}");
    let by_owner = w.app.gql_data(&owner, read, json!({"id": public})).await;
    assert_eq!(
        by_owner["stream"]["favoritedDate"], mine["streamFavorite"]["favoritedDate"],
        "{by_owner}"
    );

    // A private stream stays out of reach of those who cannot read it, and anonymous callers
    // have nobody to favourite for.
    let refused = w
        .app
        .gql(&other, FAVORITE, json!({"id": private, "f": true}))
        .await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    let refused = w
        .app
        .gql_as(None, FAVORITE, json!({"id": public, "f": true}))
        .await;
    assert!(!code(&refused).is_empty(), "{refused}");
    let count = w.app.gql_data(&owner, read, json!({"id": private})).await;
    assert_eq!(count["stream"]["favoritesCount"], 0, "{count}");

    // The counts and rows are a fold of the log: a rebuild finds the same.
    let verify = projections::RebuildOptions {
        verify: true,
        ..Default::default()
    };
    let check = projections::rebuild(
        &w._db.pool,
        &projections::speckle::SpeckleReadModel,
        &verify,
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(check.difference_count, 0, "{:?}", check.differences);
}

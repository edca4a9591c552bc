//! Compatibility with the original server, black box over HTTP: a version's root object must be
//! stored (`COMMIT_CREATE_ERROR`, with no existence leak to outsiders), `Project.models(filter:)`
//! as specklepy sends it, permission checks, `projectInvite`, the workspace entry points of a
//! server without workspaces, and CORS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};

/// The root object the versions here point at (stored only where a test says so).
const OBJECT: &str = "0123456789abcdef0123456789abcdef";

/// `Project.models` with the variable types specklepy declares.
const MODELS: &str = "query($projectId: String!, $modelsLimit: Int!, $modelsCursor: String, $modelsFilter: ProjectModelsFilter) { \
    project(id: $projectId) { models(limit: $modelsLimit, cursor: $modelsCursor, filter: $modelsFilter) { \
    totalCount cursor items { id name } } } }";

const MODEL_PERMISSIONS: &str = "query($p: String!, $m: String!) { project(id: $p) { model(id: $m) { permissions { \
    canUpdate { authorized code message } \
    canDelete { authorized code message errorMessage } \
    canCreateVersion { authorized code } } } } }";

const VERSION_PERMISSIONS: &str = "query($p: String!, $v: String!) { project(id: $p) { version(id: $v) { permissions { \
    canUpdate { authorized } canReceive { authorized } } } } }";

const PROJECT_INVITE: &str = "query($projectId: String!, $token: String) { projectInvite(projectId: $projectId, token: $token) { \
    id inviteId projectId projectName title token invitedBy { id } } }";

struct World {
    app: TestApp,
    _stack: tokio_util::sync::DropGuard,
    _db: TestDb,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let (app, stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    World {
        app,
        _stack: stack,
        _db: db,
    }
}

/// The first error's `extensions.code`, or "" when there is none.
fn code(res: &Value) -> &str {
    res["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

/// A page's model names, sorted.
fn names(page: &Value) -> Vec<String> {
    let mut names: Vec<String> = page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

impl World {
    /// A current-API project (private unless `visibility` says otherwise).
    async fn project(&self, token: &str, name: &str, visibility: Option<&str>) -> String {
        self.app.gql_data(
            token,
            "mutation($input: ProjectCreateInput!) { projectMutations { create(input: $input) { id } } }",
            json!({"input": {"name": name, "visibility": visibility}}),
        )
        .await["projectMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn model(&self, token: &str, project: &str, name: &str) -> String {
        self.app.gql_data(
            token,
            "mutation($input: CreateModelInput!) { modelMutations { create(input: $input) { id } } }",
            json!({"input": {"projectId": project, "name": name}}),
        )
        .await["modelMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `versionMutations.create`'s full response.
    async fn create_version(
        &self,
        token: &str,
        project: &str,
        model: &str,
        source_application: Option<&str>,
    ) -> Value {
        self.app.gql(
            token,
            "mutation($input: CreateVersionInput!) { versionMutations { create(input: $input) { id } } }",
            json!({"input": {
                "projectId": project,
                "modelId": model,
                "objectId": OBJECT,
                "sourceApplication": source_application,
            }}),
        )
        .await
    }

    /// A version that must be created; its id.
    async fn version(
        &self,
        token: &str,
        project: &str,
        model: &str,
        source_application: Option<&str>,
    ) -> String {
        let res = self
            .create_version(token, project, model, source_application)
            .await;
        assert!(res["errors"].is_null(), "{res}");
        res["data"]["versionMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A legacy stream (public, with an empty `main` branch).
    async fn stream(&self, token: &str) -> String {
        self.app
            .gql_data(
                token,
                "mutation { streamCreate(stream: {name: \"s\"}) }",
                json!({}),
            )
            .await["streamCreate"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Legacy `commitCreate` on `main`'s full response.
    async fn commit_create(&self, token: &str, stream: &str) -> Value {
        self.app
            .gql(
                token,
                "mutation($c: CommitCreateInput!) { commitCreate(commit: $c) }",
                json!({"c": {"streamId": stream, "branchName": "main", "objectId": OBJECT}}),
            )
            .await
    }

    async fn version_count(&self, token: &str, project: &str) -> i64 {
        self.app
            .gql_data(
                token,
                "query($p: String!) { project(id: $p) { versions { totalCount } } }",
                json!({"p": project}),
            )
            .await["project"]["versions"]["totalCount"]
            .as_i64()
            .unwrap()
    }

    /// One page of `Project.models`.
    async fn models(
        &self,
        token: &str,
        project: &str,
        filter: Value,
        limit: i64,
        cursor: Value,
    ) -> Value {
        self.app
            .gql_data(
                token,
                MODELS,
                json!({
                    "projectId": project,
                    "modelsLimit": limit,
                    "modelsCursor": cursor,
                    "modelsFilter": filter,
                }),
            )
            .await["project"]["models"]
            .clone()
    }

    /// `Model.permissions` as `token` sees them.
    async fn model_permissions(&self, token: &str, project: &str, model: &str) -> Value {
        self.app
            .gql_data(token, MODEL_PERMISSIONS, json!({"p": project, "m": model}))
            .await["project"]["model"]["permissions"]
            .clone()
    }

    /// `projectInvite(projectId, token)` as `caller` (anonymous when `None`): the full response.
    async fn project_invite(
        &self,
        caller: Option<&str>,
        project: &str,
        token: Option<&str>,
    ) -> Value {
        self.app
            .gql_as(
                caller,
                PROJECT_INVITE,
                json!({"projectId": project, "token": token}),
            )
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_needs_its_root_object_stored_in_its_project() {
    let w = world().await;
    let (ada, _) = w.app.register_user("ada@example.com").await;
    let (bob, _) = w.app.register_user("bob@example.com").await;
    let project = w.project(&ada, "p", None).await;
    let model = w.model(&ada, &project, "m").await;

    // The current API refuses a version whose object was never sent, and records nothing.
    let res = w.create_version(&ada, &project, &model, None).await;
    assert_eq!(code(&res), "COMMIT_CREATE_ERROR", "{res}");
    assert_eq!(
        res["errors"][0]["message"], "Couldn't find commit object",
        "{res}"
    );
    assert_eq!(w.version_count(&ada, &project).await, 0);

    // An outsider is refused for who they are, never told about the object store of a private
    // project.
    let res = w.create_version(&bob, &project, &model, None).await;
    assert!(
        matches!(code(&res), "FORBIDDEN" | "STREAM_NOT_FOUND"),
        "{res}"
    );
    assert_eq!(w.version_count(&ada, &project).await, 0);

    // The legacy API the same.
    let stream = w.stream(&ada).await;
    let res = w.commit_create(&ada, &stream).await;
    assert_eq!(code(&res), "COMMIT_CREATE_ERROR", "{res}");
    assert_eq!(
        res["errors"][0]["message"], "Couldn't find commit object",
        "{res}"
    );
    assert_eq!(w.version_count(&ada, &stream).await, 0);

    // Stored in another project does not count.
    tests::store_object(&w.app.base_url, &ada, &project, OBJECT).await;
    let res = w.commit_create(&ada, &stream).await;
    assert_eq!(code(&res), "COMMIT_CREATE_ERROR", "{res}");
    assert_eq!(w.version_count(&ada, &stream).await, 0);

    // Once stored, both APIs accept it.
    w.version(&ada, &project, &model, None).await;
    assert_eq!(w.version_count(&ada, &project).await, 1);
    tests::store_object(&w.app.base_url, &ada, &stream, OBJECT).await;
    let res = w.commit_create(&ada, &stream).await;
    assert!(res["errors"].is_null(), "{res}");
    assert!(res["data"]["commitCreate"].is_string(), "{res}");
    assert_eq!(w.version_count(&ada, &stream).await, 1);

    // And the outsider is still only refused.
    let res = w.create_version(&bob, &project, &model, None).await;
    assert!(
        matches!(code(&res), "FORBIDDEN" | "STREAM_NOT_FOUND"),
        "{res}"
    );
    assert_eq!(w.version_count(&ada, &project).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_models_filter_as_specklepy_sends_it() {
    let w = world().await;
    let (ada, ada_id) = w.app.register_user("ada@example.com").await;
    let project = w.project(&ada, "models", None).await;
    let one = w.model(&ada, &project, "alpha/one").await;
    let two = w.model(&ada, &project, "alpha/two").await;
    let beta = w.model(&ada, &project, "beta").await;
    tests::store_object(&w.app.base_url, &ada, &project, OBJECT).await;
    w.version(&ada, &project, &one, Some("Rhino7")).await;
    w.version(&ada, &project, &beta, Some("Revit")).await;

    // A current-API project has no `main`.
    let page = w.models(&ada, &project, Value::Null, 25, Value::Null).await;
    assert_eq!(page["totalCount"], 3, "{page}");
    assert_eq!(names(&page), ["alpha/one", "alpha/two", "beta"]);

    let cases = [
        (json!({"search": "ALPHA"}), vec!["alpha/one", "alpha/two"]),
        (json!({"sourceApps": ["rhino"]}), vec!["alpha/one"]),
        (json!({"contributors": [ada_id]}), vec!["alpha/one", "beta"]),
        (json!({"contributors": ["nobody"]}), vec![]),
        (json!({"onlyWithVersions": true}), vec!["alpha/one", "beta"]),
        (json!({"ids": [beta]}), vec!["beta"]),
        (json!({"ids": []}), vec![]),
        (
            json!({"excludeIds": [beta]}),
            vec!["alpha/one", "alpha/two"],
        ),
    ];
    for (filter, expected) in cases {
        let page = w
            .models(&ada, &project, filter.clone(), 25, Value::Null)
            .await;
        assert_eq!(names(&page), expected, "{filter}: {page}");
        assert_eq!(
            page["totalCount"].as_u64(),
            Some(expected.len() as u64),
            "{filter}: {page}"
        );
    }

    // One model a page: every model once, the total the same on every page.
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = Value::Null;
    for _ in 0..10 {
        let page = w.models(&ada, &project, Value::Null, 1, cursor).await;
        assert_eq!(page["totalCount"], 3, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 1, "{page}");
        seen.extend(items.iter().map(|m| m["id"].as_str().unwrap().to_owned()));
        cursor = page["cursor"].clone();
        if cursor.is_null() || items.is_empty() {
            break;
        }
    }
    seen.sort();
    let mut all = vec![one, two, beta];
    all.sort();
    assert_eq!(seen, all, "each model exactly once");

    // A legacy stream's empty `main` is not listed until it has a version.
    let stream = w.stream(&ada).await;
    let page = w.models(&ada, &stream, Value::Null, 25, Value::Null).await;
    assert_eq!(page["totalCount"], 0, "{page}");
    assert!(names(&page).is_empty(), "{page}");
    tests::store_object(&w.app.base_url, &ada, &stream, OBJECT).await;
    let res = w.commit_create(&ada, &stream).await;
    assert!(res["errors"].is_null(), "{res}");
    let page = w.models(&ada, &stream, Value::Null, 25, Value::Null).await;
    assert_eq!(page["totalCount"], 1, "{page}");
    assert_eq!(names(&page), ["main"]);

    // A list of projects asks each for its first models (batched for the whole list): the
    // same pages and counts as each project's own filtered query, empty `main` hidden.
    let empty = w.stream(&ada).await;
    let listed = w
        .app
        .gql_data(
            &ada,
            "{ activeUser { projects(limit: 10) { items { id models(limit: 2) { totalCount items { id name } } } } } }",
            json!({}),
        )
        .await;
    let listed = listed["activeUser"]["projects"]["items"]
        .as_array()
        .unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (id, total) in [(&project, 3), (&stream, 1), (&empty, 0)] {
        let batched = &listed
            .iter()
            .find(|p| p["id"] == json!(id))
            .unwrap_or_else(|| panic!("{id} listed"))["models"];
        assert_eq!(batched["totalCount"], total, "{batched}");
        let alone = w.models(&ada, id, json!({}), 2, Value::Null).await;
        assert_eq!(batched["items"], alone["items"], "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_checks_answer_with_the_original_codes() {
    let w = world().await;
    let (ada, _) = w.app.register_user("ada@example.com").await;
    let (bob, _) = w.app.register_user("bob@example.com").await;

    // The owner may do everything with their model.
    let project = w.project(&ada, "perms", None).await;
    let model = w.model(&ada, &project, "m").await;
    let checks = w.model_permissions(&ada, &project, &model).await;
    for check in ["canUpdate", "canDelete", "canCreateVersion"] {
        assert_eq!(checks[check]["authorized"], true, "{check}: {checks}");
        assert_eq!(checks[check]["code"], "OK", "{check}: {checks}");
    }
    assert!(checks["canDelete"]["errorMessage"].is_null(), "{checks}");

    // The author may update and receive their version.
    tests::store_object(&w.app.base_url, &ada, &project, OBJECT).await;
    let version = w.version(&ada, &project, &model, None).await;
    let checks = w
        .app
        .gql_data(
            &ada,
            VERSION_PERMISSIONS,
            json!({"p": project, "v": version}),
        )
        .await;
    let checks = &checks["project"]["version"]["permissions"];
    assert_eq!(checks["canUpdate"]["authorized"], true, "{checks}");
    assert_eq!(checks["canReceive"]["authorized"], true, "{checks}");

    // A reader of a public project who is not a member may not change it.
    let public = w.project(&ada, "open", Some("PUBLIC")).await;
    let open_model = w.model(&ada, &public, "m").await;
    let checks = w.model_permissions(&bob, &public, &open_model).await;
    assert_eq!(checks["canUpdate"]["authorized"], false, "{checks}");
    assert_eq!(checks["canUpdate"]["code"], "ProjectNoAccess", "{checks}");
    assert!(
        checks["canUpdate"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{checks}"
    );
    assert_eq!(checks["canDelete"]["authorized"], false, "{checks}");
    assert!(checks["canDelete"]["errorMessage"].is_string(), "{checks}");
    assert_eq!(checks["canCreateVersion"]["authorized"], false, "{checks}");

    // `main` is reserved: not even its owner may delete it.
    let stream = w.stream(&ada).await;
    let main = w
        .app
        .gql_data(
            &ada,
            "query($p: String!) { project(id: $p) { modelByName(name: \"main\") { id } } }",
            json!({"p": stream}),
        )
        .await["project"]["modelByName"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let checks = w.model_permissions(&ada, &stream, &main).await;
    assert_eq!(checks["canDelete"]["authorized"], false, "{checks}");
    assert_eq!(
        checks["canDelete"]["code"], "ReservedModelNotDeletable",
        "{checks}"
    );
    assert!(checks["canDelete"]["errorMessage"].is_string(), "{checks}");
    assert_eq!(checks["canUpdate"]["authorized"], true, "{checks}");

    // Outside any project.
    let root = w
        .app
        .gql_data(
            &ada,
            "{ activeUser { permissions { canCreatePersonalProject { authorized code } canCreateWorkspace { authorized code } } } }",
            json!({}),
        )
        .await;
    let root = &root["activeUser"]["permissions"];
    assert_eq!(
        root["canCreatePersonalProject"],
        json!({"authorized": true, "code": "OK"}),
        "{root}"
    );
    assert_eq!(
        root["canCreateWorkspace"],
        json!({"authorized": false, "code": "WorkspacesNotEnabled"}),
        "{root}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_invite_is_found_by_its_addressee_or_its_token() {
    let w = world().await;
    let (owner, owner_id) = w.app.register_user("owner@example.com").await;
    let (bob, _) = w.app.register_user("bob@example.com").await;
    let project = w.project(&owner, "Invites", None).await;
    // specklepy declares the project id an `ID!`.
    w.app.gql_data(
        &owner,
        "mutation($projectId: ID!, $email: String!) { projectMutations { invites { create(projectId: $projectId, input: {email: $email}) { id } } } }",
        json!({"projectId": project, "email": "bob@example.com"}),
    )
    .await;

    // The addressee finds it without a token, and is given the token.
    let res = w.project_invite(Some(&bob), &project, None).await;
    assert!(res["errors"].is_null(), "{res}");
    let invite = res["data"]["projectInvite"].clone();
    let token = invite["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token for the addressee: {res}"))
        .to_owned();
    let invite_id = invite["inviteId"].as_str().unwrap().to_owned();
    assert_eq!(invite["projectId"], project.as_str(), "{invite}");
    assert_eq!(invite["projectName"], "Invites", "{invite}");
    assert_eq!(invite["title"], "bob@example.com", "{invite}");
    assert_eq!(invite["invitedBy"]["id"], owner_id.as_str(), "{invite}");

    // Nobody else finds it without the token.
    let res = w.project_invite(None, &project, None).await;
    assert!(res["errors"].is_null(), "{res}");
    assert!(res["data"]["projectInvite"].is_null(), "{res}");
    let res = w.project_invite(Some(&owner), &project, None).await;
    assert!(res["errors"].is_null(), "{res}");
    assert!(res["data"]["projectInvite"].is_null(), "{res}");

    // With the token, an anonymous caller finds it, without being shown the token.
    let res = w.project_invite(None, &project, Some(&token)).await;
    assert!(res["errors"].is_null(), "{res}");
    let found = &res["data"]["projectInvite"];
    assert_eq!(found["inviteId"], invite_id.as_str(), "{res}");
    assert!(found["token"].is_null(), "{res}");

    // A token that is not one finds nothing.
    let forged = format!("{invite_id}{}", "0".repeat(22));
    for garbage in ["garbage", forged.as_str()] {
        let res = w.project_invite(None, &project, Some(garbage)).await;
        assert!(res["errors"].is_null(), "{res}");
        assert!(res["data"]["projectInvite"].is_null(), "{garbage}: {res}");
    }

    // Cancelled, it is gone.
    w.app.gql_data(
        &owner,
        "mutation($projectId: ID!, $inviteId: String!) { projectMutations { invites { cancel(projectId: $projectId, inviteId: $inviteId) { id } } } }",
        json!({"projectId": project, "inviteId": invite_id}),
    )
    .await;
    let res = w.project_invite(Some(&bob), &project, None).await;
    assert!(res["errors"].is_null(), "{res}");
    assert!(res["data"]["projectInvite"].is_null(), "{res}");
}

/// The code of every workspace entry point on a server without workspaces.
const DISABLED: &str = "WORKSPACES_MODULE_DISABLED_ERROR";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_are_cleanly_disabled() {
    let w = world().await;
    let (ada, _) = w.app.register_user("ada@example.com").await;

    // Each workspace entry point is refused with the original's code.
    for refused in [
        "{ workspace(id: \"x\") { id name } }",
        "{ activeUser { workspaces(limit: 10) { totalCount } } }",
        "mutation { workspaceMutations { projects { create(input: {workspaceId: \"w\", name: \"n\"}) { id } } } }",
        "mutation { projectMutations { create(input: {name: \"n\", visibility: WORKSPACE}) { id } } }",
    ] {
        let res = w.app.gql(&ada, refused, json!({})).await;
        assert_eq!(code(&res), DISABLED, "{refused}: {res}");
    }

    let res = w
        .app
        .gql(&ada, "{ activeUser { activeWorkspace { id } } }", json!({}))
        .await;
    assert!(res["errors"].is_null(), "{res}");
    assert!(res["data"]["activeUser"].is_object(), "{res}");
    assert!(
        res["data"]["activeUser"]["activeWorkspace"].is_null(),
        "{res}"
    );
}

const ORIGIN: &str = "http://127.0.0.1:1234";
const REQUESTED_HEADERS: [&str; 3] = ["authorization", "content-type", "apollographql-client-name"];

/// A browser's preflight for a `POST` from `origin`.
async fn preflight(http: &reqwest::Client, url: &str, origin: &str) -> reqwest::Response {
    http.request(reqwest::Method::OPTIONS, url)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            REQUESTED_HEADERS.join(","),
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_may_call_every_client_route() {
    let w = world().await;
    let (ada, _) = w.app.register_user("ada@example.com").await;
    let project = w.project(&ada, "cors", None).await;
    let base = &w.app.base_url;
    let http = reqwest::Client::new();
    let paths = [
        "/graphql".to_owned(),
        format!("/objects/{project}"),
        format!("/api/diff/{project}"),
        format!("/api/getobjects/{project}"),
        format!("/api/v2/projects/{project}/object-stream"),
        "/auth/token".to_owned(),
    ];
    for path in &paths {
        let res = preflight(&http, &format!("{base}{path}"), ORIGIN).await;
        assert!(res.status().is_success(), "{path}: {}", res.status());
        assert_eq!(
            header(&res, "access-control-allow-origin"),
            Some("*"),
            "{path}: {:?}",
            res.headers()
        );
        let allowed = header(&res, "access-control-allow-headers")
            .unwrap_or_default()
            .to_ascii_lowercase();
        for requested in REQUESTED_HEADERS {
            assert!(
                allowed.contains(requested),
                "{path}: {requested} in {allowed:?}"
            );
        }
    }

    // The answers themselves carry the header, errors included.
    let res = http
        .post(format!("{base}/graphql"))
        .header("Origin", ORIGIN)
        .bearer_auth(&ada)
        .json(&json!({"query": "{ activeUser { id } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    let res = http
        .post(format!("{base}/graphql"))
        .header("Origin", ORIGIN)
        .bearer_auth("0123456789abcdefabcdefabcdefabcdefabcdef01")
        .json(&json!({"query": "{ serverInfo { name } }"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
    let res = http
        .get(format!("{base}/objects/{project}/{OBJECT}"))
        .header("Origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), Some("*"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origins_can_be_restricted() {
    let db = TestDb::new().await;
    let mut settings = test_settings(&db);
    settings.cors_allowed_origins = "http://allowed.example".into();
    let app = TestApp::spawn(settings).await;
    let url = format!("{}/graphql", app.base_url);

    let res = preflight(&app.http, &url, "http://other.example").await;
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        None,
        "{:?}",
        res.headers()
    );
    let res = preflight(&app.http, &url, "http://allowed.example").await;
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        Some("http://allowed.example"),
        "{:?}",
        res.headers()
    );
    let res = app
        .http
        .post(&url)
        .header("Origin", "http://allowed.example")
        .json(&json!({"query": "{ serverInfo { name } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        Some("http://allowed.example")
    );
}

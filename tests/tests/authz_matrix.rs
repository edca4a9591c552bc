//! The authorization matrix over real HTTP: GraphQL operations (current and legacy) and REST
//! object routes × server role × project role × visibility × token scope set, each outcome
//! checked against a table written here from the original's rules (not computed by
//! `domain::policy`, so a resolver that forgets to ask it shows up).
//!
//! Zero leaks: every answer a caller may not have is scanned for the project's secret
//! markers (its name, model name, version message, object data), and must contain none.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use command_service::commands::ProjectAggregate;
use domain::policy::{ProjectRole, ServerRole};
use domain::{EventMetadata, ProjectCommand};
use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};

/// What a caller holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scopes {
    /// Everything the web app's tokens carry.
    Full,
    /// `streams:read` and `profile:read`.
    ReadOnly,
    /// `profile:read` only.
    ProfileOnly,
}

#[derive(Clone, Debug)]
struct Caller {
    label: String,
    token: Option<String>,
    server_role: Option<ServerRole>,
    project_role: Option<ProjectRole>,
    scopes: Scopes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Read,
    Contributor,
    Owner,
    /// The project's history and past states: owners and server admins, with a read scope.
    Audit,
}

/// The table: may `c` do something needing `need` in a project of `public` visibility?
fn allowed(c: &Caller, need: Need, public: bool) -> bool {
    let read_scope = c.token.is_none() || c.scopes != Scopes::ProfileOnly;
    let write_scope = c.token.is_none() || c.scopes == Scopes::Full;
    let active = matches!(
        c.server_role,
        Some(ServerRole::Admin | ServerRole::User | ServerRole::Guest)
    );
    match need {
        // Public projects are open to anyone (anonymous included) whose token may read;
        // private ones to members of any role and to server admins.
        Need::Read => {
            read_scope
                && (public
                    || (active
                        && (c.server_role == Some(ServerRole::Admin) || c.project_role.is_some())))
        }
        // Writing needs a signed-in, active member with the role: admins are not members.
        Need::Contributor => {
            c.token.is_some()
                && write_scope
                && active
                && matches!(
                    c.project_role,
                    Some(ProjectRole::Owner | ProjectRole::Contributor)
                )
        }
        Need::Audit => {
            c.token.is_some()
                && read_scope
                && active
                && (c.server_role == Some(ServerRole::Admin)
                    || c.project_role == Some(ProjectRole::Owner))
        }
        Need::Owner => {
            c.token.is_some()
                && write_scope
                && matches!(c.server_role, Some(ServerRole::Admin | ServerRole::User))
                && c.project_role == Some(ProjectRole::Owner)
        }
    }
}

struct Fixture {
    id: String,
    model_id: String,
    object_id: String,
    /// An ingestion still open (progress, signing).
    open_ingestion: String,
    /// A version made from a bundle (its artifacts).
    bundle_version: String,
    /// A stored blob.
    blob: String,
    /// Every secret of the project; none may reach a caller who may not read it.
    markers: Vec<String>,
}

struct World {
    app: TestApp,
    http: reqwest::Client,
    /// Follows no redirect.
    pages: reqwest::Client,
    _stack: tokio_util::sync::DropGuard,
}

impl World {
    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> (u16, String) {
        let mut req = self
            .http
            .post(format!("{}/graphql", self.app.base_url))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn rest(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.app.base_url);
        let mut req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    /// A web page with `token` as the session cookie; redirects are answers (a refusal sends
    /// an anonymous caller to sign in).
    async fn page(&self, token: Option<&str>, path: &str) -> (u16, String) {
        let mut req = self.pages.get(format!("{}{path}", self.app.base_url));
        if let Some(t) = token {
            req = req.header("cookie", format!("strata_session={t}"));
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn upload(&self, token: &str, project: &str, objects: &Value) -> u16 {
        let form = reqwest::multipart::Form::new().part(
            "batch-1",
            reqwest::multipart::Part::bytes(objects.to_string().into_bytes())
                .file_name("batch-1")
                .mime_str("application/json")
                .unwrap(),
        );
        self.http
            .post(format!("{}/objects/{project}", self.app.base_url))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Uploads one small blob through the original's blob route.
    async fn blob(&self, token: Option<&str>, project: &str) -> (u16, String) {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"attachment".to_vec()).file_name("note.txt"),
        );
        let mut req = self
            .http
            .post(format!("{}/api/stream/{project}/blob", self.app.base_url))
            .multipart(form);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        let (status, body) = self.gql(Some(token), query, variables).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(status == 200 && body["errors"].is_null(), "{body}");
        body["data"].clone()
    }
}

fn object_id(n: u32) -> String {
    format!("{n:032x}")
}

async fn fixture(w: &World, founder: &str, tag: &str, public: bool, n: u32) -> Fixture {
    let name = format!("{tag}-project-{}", uuid::Uuid::new_v4().simple());
    let data = w
        .ok(
            founder,
            "mutation($n: String!, $v: ProjectVisibility) { projectMutations { create(input: {name: $n, visibility: $v}) { id } } }",
            json!({"n": name, "v": if public { "PUBLIC" } else { "PRIVATE" }}),
        )
        .await;
    let id = data["projectMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let model = format!("{tag}-model");
    let data = w
        .ok(
            founder,
            "mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }",
            json!({"p": id, "n": model}),
        )
        .await;
    let model_id = data["modelMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let object_id = object_id(n);
    let object_text = format!("{tag}-object-data");
    assert_eq!(
        w.upload(
            founder,
            &id,
            &json!([{"id": object_id, "speckle_type": "Base", "text": object_text}]),
        )
        .await,
        201
    );
    let message = format!("{tag}-version-message");
    w.ok(
        founder,
        "mutation($p: String!, $m: String!, $o: String!, $msg: String) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: $o, message: $msg}) { id } } }",
        json!({"p": id, "m": model_id, "o": object_id, "msg": message}),
    )
    .await;
    let open_ingestion = create_ingestion(w, founder, &id, &model_id).await;
    let bundle_version = send_bundle(w, founder, &id, &model_id).await;
    let (status, body) = w.blob(Some(founder), &id).await;
    assert_eq!(status, 201, "{body}");
    let blob = serde_json::from_str::<Value>(&body).unwrap()["uploadResults"][0]["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    Fixture {
        blob,
        id,
        model_id,
        object_id,
        open_ingestion,
        bundle_version,
        markers: vec![name, model, object_text, message],
    }
}

const CREATE_INGESTION: &str = "mutation($p: String!, $m: String!) { projectMutations { modelIngestionMutations { create(input: {projectId: $p, modelId: $m, progressMessage: \"matrix\", sourceData: {sourceApplicationSlug: \"matrix\", sourceApplicationVersion: \"1\", fileName: null, fileSizeBytes: null}, maxIdleTimeoutSeconds: 3600}) { id versionId } } } }";

async fn create_ingestion(w: &World, token: &str, project: &str, model: &str) -> String {
    let data = w
        .ok(token, CREATE_INGESTION, json!({"p": project, "m": model}))
        .await;
    data["projectMutations"]["modelIngestionMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sends a one-file bundle through the `/api/v2` rail; returns the version id.
async fn send_bundle(w: &World, token: &str, project: &str, model: &str) -> String {
    let data = w
        .ok(token, CREATE_INGESTION, json!({"p": project, "m": model}))
        .await;
    let created = &data["projectMutations"]["modelIngestionMutations"]["create"];
    let (ingestion, version) = (
        created["id"].as_str().unwrap(),
        created["versionId"].as_str().unwrap().to_owned(),
    );
    let name = format!("{version}.eav.objects.parquet");
    let base = format!("/api/v2/projects/{project}/modelingestion/{ingestion}/uploads");
    let (status, body) = w
        .rest(
            Some(token),
            "POST",
            &format!("{base}/sign"),
            Some(json!({"files": [name]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let signed: Value = serde_json::from_str(&body).unwrap();
    let put = w
        .http
        .put(signed["uploads"][&name]["url"].as_str().unwrap())
        .body("bundle bytes")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.status());
    let etag = put.headers()["etag"].to_str().unwrap().to_owned();
    let (status, body) = w
        .rest(
            Some(token),
            "POST",
            &format!("{base}/complete"),
            Some(json!({
                "etags": {name: etag},
                "rootId": format!("bundle.{project}.{model}.{version}"),
                "totalChildrenCount": 1,
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    version
}

/// One operation of the matrix: what it needs, and how to run it against a project.
struct Operation {
    name: &'static str,
    need: Need,
    /// The marker an allowed read must show (index into `Fixture::markers`).
    shows: Option<usize>,
}

const OPERATIONS: &[Operation] = &[
    // The web app's pages, with the caller's token as the session cookie.
    Operation {
        name: "PAGE project",
        need: Need::Read,
        shows: Some(0),
    },
    Operation {
        name: "PAGE viewer",
        need: Need::Read,
        shows: Some(1),
    },
    Operation {
        name: "PAGE collaborators",
        need: Need::Read,
        shows: Some(0),
    },
    Operation {
        name: "PAGE activity",
        need: Need::Read,
        shows: Some(0),
    },
    Operation {
        name: "PAGE history",
        need: Need::Audit,
        shows: Some(0),
    },
    Operation {
        name: "PAGE settings",
        need: Need::Owner,
        shows: Some(0),
    },
    Operation {
        name: "PAGE webhooks",
        need: Need::Owner,
        shows: Some(0),
    },
    Operation {
        name: "project",
        need: Need::Read,
        shows: Some(0),
    },
    Operation {
        name: "project.models",
        need: Need::Read,
        shows: Some(1),
    },
    Operation {
        name: "project.versions",
        need: Need::Read,
        shows: Some(3),
    },
    Operation {
        name: "project.object",
        need: Need::Read,
        shows: Some(2),
    },
    Operation {
        name: "stream",
        need: Need::Read,
        shows: Some(0),
    },
    Operation {
        name: "stream.branches",
        need: Need::Read,
        shows: Some(1),
    },
    Operation {
        name: "stream.commits",
        need: Need::Read,
        shows: Some(3),
    },
    Operation {
        name: "GET /objects",
        need: Need::Read,
        shows: Some(2),
    },
    Operation {
        name: "GET /objects/single",
        need: Need::Read,
        shows: Some(2),
    },
    Operation {
        name: "POST /api/getobjects",
        need: Need::Read,
        shows: Some(2),
    },
    Operation {
        name: "POST object-stream",
        need: Need::Read,
        shows: Some(2),
    },
    Operation {
        name: "project.ingestion",
        need: Need::Read,
        shows: None,
    },
    Operation {
        name: "GET artifacts",
        need: Need::Read,
        shows: None,
    },
    Operation {
        name: "GET blob",
        need: Need::Read,
        shows: None,
    },
    Operation {
        name: "modelMutations.create",
        need: Need::Contributor,
        shows: None,
    },
    Operation {
        name: "POST blob",
        need: Need::Contributor,
        shows: None,
    },
    Operation {
        name: "modelIngestionMutations.create",
        need: Need::Contributor,
        shows: None,
    },
    Operation {
        name: "modelIngestionMutations.updateProgress",
        need: Need::Contributor,
        shows: None,
    },
    Operation {
        name: "POST uploads/sign",
        need: Need::Contributor,
        shows: None,
    },
    Operation {
        name: "branchCreate",
        need: Need::Contributor,
        shows: None,
    },
    Operation {
        name: "POST /objects",
        need: Need::Contributor,
        shows: None,
    },
    Operation {
        name: "POST /api/diff",
        need: Need::Contributor,
        shows: None,
    },
    Operation {
        name: "projectMutations.update",
        need: Need::Owner,
        shows: None,
    },
    Operation {
        name: "streamUpdate",
        need: Need::Owner,
        shows: None,
    },
    Operation {
        name: "project.webhooks",
        need: Need::Owner,
        shows: None,
    },
    Operation {
        name: "project.history",
        need: Need::Audit,
        shows: None,
    },
    Operation {
        name: "project.asOf",
        need: Need::Audit,
        shows: None,
    },
];

/// Runs `op` as `c` on `f`; returns whether it was let through, and the whole answer.
async fn run(w: &World, op: &Operation, c: &Caller, f: &Fixture, n: u32) -> (bool, String) {
    let t = c.token.as_deref();
    let p = &f.id;
    let gql = |query: &'static str, vars: Value| w.gql(t, query, vars);
    let (status, body) = match op.name {
        "project" => gql("query($p: String!) { project(id: $p) { name } }", json!({"p": p})).await,
        "project.models" => gql("query($p: String!) { project(id: $p) { models { items { name } } } }", json!({"p": p})).await,
        "project.versions" => gql("query($p: String!) { project(id: $p) { versions { items { message } } } }", json!({"p": p})).await,
        "project.object" => gql("query($p: String!, $o: String!) { project(id: $p) { object(id: $o) { data } } }", json!({"p": p, "o": f.object_id})).await,
        "stream" => gql("query($p: String!) { stream(id: $p) { name } }", json!({"p": p})).await,
        "stream.branches" => gql("query($p: String!) { stream(id: $p) { branches { items { name } } } }", json!({"p": p})).await,
        "stream.commits" => gql("query($p: String!) { stream(id: $p) { commits { items { message } } } }", json!({"p": p})).await,
        "GET /objects" => w.rest(t, "GET", &format!("/objects/{p}/{}", f.object_id), None).await,
        "GET /objects/single" => w.rest(t, "GET", &format!("/objects/{p}/{}/single", f.object_id), None).await,
        "POST /api/getobjects" => w.rest(t, "POST", &format!("/api/getobjects/{p}"), Some(json!({"objects": json!([f.object_id]).to_string()}))).await,
        "POST object-stream" => w.rest(t, "POST", &format!("/api/v2/projects/{p}/object-stream"), Some(json!({"objectIds": [f.object_id]}))).await,
        "modelMutations.create" => gql("mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }", json!({"p": p, "n": format!("m{n}")})).await,
        "branchCreate" => gql("mutation($p: String!, $n: String!) { branchCreate(branch: {streamId: $p, name: $n}) }", json!({"p": p, "n": format!("b{n}")})).await,
        "POST /objects" => {
            let status = match t {
                Some(t) => w.upload(t, p, &json!([{"id": object_id(1_000_000 + n), "speckle_type": "Base"}])).await,
                None => w.rest(None, "POST", &format!("/objects/{p}"), None).await.0,
            };
            (status, String::new())
        }
        "POST /api/diff" => w.rest(t, "POST", &format!("/api/diff/{p}"), Some(json!({"objects": json!([f.object_id]).to_string()}))).await,
        "projectMutations.update" => gql("mutation($p: ID!, $d: String) { projectMutations { update(update: {id: $p, description: $d}) { id } } }", json!({"p": p, "d": format!("d{n}")})).await,
        "streamUpdate" => gql("mutation($p: String!, $d: String) { streamUpdate(stream: {id: $p, description: $d}) }", json!({"p": p, "d": format!("s{n}")})).await,
        "project.history" => gql("query($p: String!) { project(id: $p) { history(limit: 5) { totalCount items { summary } } } }", json!({"p": p})).await,
        "project.asOf" => gql("query($p: String!) { project(id: $p) { asOf(position: \"9223372036854775807\") { name team { role } } } }", json!({"p": p})).await,
        "project.webhooks" => gql("query($p: String!) { project(id: $p) { webhooks { totalCount } } }", json!({"p": p})).await,
        "project.ingestion" => gql("query($p: String!, $i: ID!) { project(id: $p) { ingestion(id: $i) { id statusData { ... on HasModelIngestionStatus { status } } } } }", json!({"p": p, "i": f.open_ingestion})).await,
        "GET artifacts" => w.rest(t, "GET", &format!("/api/v2/projects/{p}/models/{}/versions/{}/artifacts", f.model_id, f.bundle_version), None).await,
        "modelIngestionMutations.create" => gql(CREATE_INGESTION, json!({"p": p, "m": f.model_id})).await,
        "modelIngestionMutations.updateProgress" => gql("mutation($p: String!, $i: ID!, $msg: String!) { projectMutations { modelIngestionMutations { updateProgress(input: {projectId: $p, ingestionId: $i, progressMessage: $msg, progress: 0.5}) { id } } } }", json!({"p": p, "i": f.open_ingestion, "msg": format!("p{n}")})).await,
        "POST uploads/sign" => w.rest(t, "POST", &format!("/api/v2/projects/{p}/modelingestion/{}/uploads/sign", f.open_ingestion), Some(json!({"files": [format!("f{n}.parquet")]}))).await,
        "GET blob" => w.rest(t, "GET", &format!("/api/stream/{p}/blob/{}", f.blob), None).await,
        "POST blob" => w.blob(t, p).await,
        "PAGE project" => w.page(t, &format!("/projects/{p}")).await,
        "PAGE viewer" => w.page(t, &format!("/projects/{p}/models/{}", f.model_id)).await,
        "PAGE collaborators" => w.page(t, &format!("/projects/{p}/collaborators")).await,
        "PAGE activity" => w.page(t, &format!("/projects/{p}/activity")).await,
        "PAGE history" => w.page(t, &format!("/projects/{p}/history")).await,
        "PAGE settings" => w.page(t, &format!("/projects/{p}/settings")).await,
        "PAGE webhooks" => w.page(t, &format!("/projects/{p}/settings/webhooks")).await,
        other => panic!("no runner for {other}"),
    };
    let through = if op.name.starts_with("PAGE ") {
        status == 200
    } else if op.name.starts_with("GET ") || op.name.starts_with("POST ") {
        (200..300).contains(&status)
    } else {
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        status == 200 && v["errors"].is_null() && !v["data"].is_null()
    };
    (through, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_matches_the_table_and_nothing_leaks() {
    let db = TestDb::new().await;
    let (app, stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let w = World {
        http: reqwest::Client::new(),
        pages: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        app,
        _stack: stack,
    };
    // The first account is the server admin; the founder (a plain user) owns both projects.
    tests::register(&w.app.base_url, "first-admin@example.com").await;
    let founder = tests::register(&w.app.base_url, "founder@example.com").await;
    let private = fixture(&w, &founder, "secret", false, 1).await;
    let public = fixture(&w, &founder, "open", true, 2).await;
    let bus = w.app.state.bus();
    let meta = EventMetadata::default();

    let mut callers = vec![Caller {
        label: "anonymous".into(),
        token: None,
        server_role: None,
        project_role: None,
        scopes: Scopes::Full,
    }];
    let server_roles = [
        ServerRole::Admin,
        ServerRole::User,
        ServerRole::Guest,
        ServerRole::ArchivedUser,
    ];
    let project_roles = [
        Some(ProjectRole::Owner),
        Some(ProjectRole::Contributor),
        Some(ProjectRole::Reviewer),
        None,
    ];
    for server_role in server_roles {
        for project_role in project_roles {
            if server_role == ServerRole::Guest && project_role == Some(ProjectRole::Owner) {
                continue; // guests cannot own projects: not a state the server can reach
            }
            let email = format!(
                "{}-{}@example.com",
                server_role.as_str().replace(':', "-"),
                project_role
                    .map_or("none", |r| r.as_str())
                    .replace(':', "-")
            );
            let full = tests::register(&w.app.base_url, &email).await;
            let user_id = w.ok(&full, "{ activeUser { id } }", json!({})).await["activeUser"]["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let mut narrow = Vec::new();
            for scopes in [vec!["streams:read", "profile:read"], vec!["profile:read"]] {
                let data = w
                    .ok(
                        &full,
                        "mutation($s: [String!]!) { apiTokenCreate(token: {name: \"matrix\", scopes: $s}) }",
                        json!({"s": scopes}),
                    )
                    .await;
                narrow.push(data["apiTokenCreate"].as_str().unwrap().to_owned());
            }
            if let Some(role) = project_role {
                for project in [&private.id, &public.id] {
                    bus.execute::<ProjectAggregate, _>(project, &meta, |_| {
                        Ok(ProjectCommand::SetMemberRole {
                            user_id: user_id.clone(),
                            role,
                            user_server_role: ServerRole::User,
                        })
                    })
                    .await
                    .unwrap();
                }
            }
            if server_role != ServerRole::User {
                // After the tokens were used (and cached): the change must reach them at once.
                w.app
                    .state
                    .accounts()
                    .change_server_role(&user_id, server_role, true, &meta)
                    .await
                    .unwrap();
            }
            for (token, scopes) in [
                (full, Scopes::Full),
                (narrow[0].clone(), Scopes::ReadOnly),
                (narrow[1].clone(), Scopes::ProfileOnly),
            ] {
                callers.push(Caller {
                    label: format!("{email} {scopes:?}"),
                    token: Some(token),
                    server_role: Some(server_role),
                    project_role,
                    scopes,
                });
            }
        }
    }

    let mut mismatches = Vec::new();
    let mut leaks = Vec::new();
    let mut n = 0;
    for (fixture, is_public) in [(&private, false), (&public, true)] {
        for op in OPERATIONS {
            for caller in &callers {
                n += 1;
                let expected = allowed(caller, op.need, is_public);
                let (through, body) = run(&w, op, caller, fixture, n).await;
                if through != expected {
                    mismatches.push(format!(
                        "{} on {} project as {}: expected {}, got {} ({})",
                        op.name,
                        if is_public { "public" } else { "private" },
                        caller.label,
                        if expected { "allowed" } else { "refused" },
                        if through { "allowed" } else { "refused" },
                        body.chars().take(200).collect::<String>()
                    ));
                }
                if !expected {
                    for marker in &fixture.markers {
                        if body.contains(marker.as_str()) {
                            leaks.push(format!("{} as {} leaked {marker}", op.name, caller.label));
                        }
                    }
                } else if let Some(i) = op.shows
                    && !body.contains(fixture.markers[i].as_str())
                {
                    mismatches.push(format!(
                        "{} as {} was allowed but did not show {}",
                        op.name, caller.label, fixture.markers[i]
                    ));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leaks:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    assert!(
        mismatches.is_empty(),
        "{} of {n} cases differ from the table:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

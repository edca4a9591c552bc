//! Every GraphQL operation the server offers has a row here saying who may use it, and the
//! queries and mutations are run against a private project by callers who must get nothing
//! of it: anonymous, and a signed-in user who is no member. The list of operations comes from
//! the running server's own schema (introspection), so an operation added without a row fails
//! this test, and one whose resolver forgets to ask `domain::policy` leaks or succeeds here.
//!
//! Arguments are made from the schema: ids by name (`projectId`, `modelId`, …) point at the
//! private project's real entities, everything else gets a plain value of its type. What a
//! member may do, role by role, is `authz_matrix.rs`'s business.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};

/// Who may use an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// Anyone, anonymous included (it may still answer null or an error); never shows a
    /// project the caller may not read.
    Anyone,
    /// Signed-in users, acting on their own account or creating something new: anonymous
    /// callers are refused. Not run as the outsider (it would change their account).
    SignedIn,
    /// Members of the project it names (by role: see the matrix); outsiders are refused.
    Member,
    /// Server admins.
    Admin,
}

/// The table: every operation (root field, or a field of a `…Mutations` namespace) and who may
/// use it.
const ROWS: &[(&str, Who)] = &[
    ("Query.serverInfo", Who::Anyone),
    ("Query.activeUser", Who::Anyone),
    ("Query.otherUser", Who::SignedIn),
    ("Query.users", Who::SignedIn),
    ("Query.userSearch", Who::SignedIn),
    ("Query.app", Who::Anyone),
    ("Query.apps", Who::Anyone),
    ("Query.admin.serverStatistics", Who::Admin),
    ("Query.admin.projectList", Who::Admin),
    ("Query.admin.inviteList", Who::Admin),
    ("Query.admin.userList", Who::Admin),
    ("Query.workspace", Who::Anyone),
    ("Query.projectInvite", Who::Anyone),
    ("Query.project", Who::Member),
    ("Query.stream", Who::Member),
    ("Query.streams", Who::SignedIn),
    ("Query.user", Who::Anyone),
    ("Mutation.projectMutations.create", Who::SignedIn),
    ("Mutation.projectMutations.update", Who::Member),
    ("Mutation.projectMutations.delete", Who::Member),
    (
        "Mutation.projectMutations.modelIngestionMutations.create",
        Who::Member,
    ),
    (
        "Mutation.projectMutations.modelIngestionMutations.startProcessing",
        Who::Member,
    ),
    (
        "Mutation.projectMutations.modelIngestionMutations.requeue",
        Who::Member,
    ),
    (
        "Mutation.projectMutations.modelIngestionMutations.updateProgress",
        Who::Member,
    ),
    (
        "Mutation.projectMutations.modelIngestionMutations.completeWithVersion",
        Who::Member,
    ),
    (
        "Mutation.projectMutations.modelIngestionMutations.failWithError",
        Who::Member,
    ),
    (
        "Mutation.projectMutations.modelIngestionMutations.failWithCancel",
        Who::Member,
    ),
    (
        "Mutation.projectMutations.modelIngestionMutations.requestCancellation",
        Who::Member,
    ),
    ("Mutation.projectMutations.invites.create", Who::Member),
    ("Mutation.projectMutations.invites.batchCreate", Who::Member),
    ("Mutation.projectMutations.invites.use", Who::SignedIn),
    ("Mutation.projectMutations.invites.cancel", Who::Member),
    ("Mutation.projectMutations.leave", Who::Member),
    ("Mutation.projectMutations.updateRole", Who::Member),
    ("Mutation.modelMutations.create", Who::Member),
    ("Mutation.modelMutations.update", Who::Member),
    ("Mutation.modelMutations.delete", Who::Member),
    ("Mutation.versionMutations.create", Who::Member),
    ("Mutation.versionMutations.update", Who::Member),
    ("Mutation.versionMutations.delete", Who::Member),
    ("Mutation.versionMutations.moveToModel", Who::Member),
    ("Mutation.versionMutations.markReceived", Who::Member),
    (
        "Mutation.fileUploadMutations.generateUploadUrl",
        Who::Member,
    ),
    (
        "Mutation.fileUploadMutations.startFileIngestion",
        Who::Member,
    ),
    ("Mutation.fileUploadMutations.startFileImport", Who::Member),
    ("Mutation.fileUploadMutations.finishFileImport", Who::Member),
    // Refused to everyone with WORKSPACES_MODULE_DISABLED_ERROR (workspaces are off).
    ("Mutation.workspaceMutations.projects.create", Who::Anyone),
    (
        "Mutation.activeUserMutations.emailMutations.verify",
        Who::SignedIn,
    ),
    ("Mutation.activeUserMutations.update", Who::SignedIn),
    ("Mutation.apiTokenCreate", Who::SignedIn),
    ("Mutation.apiTokenRevoke", Who::SignedIn),
    ("Mutation.appCreate", Who::SignedIn),
    ("Mutation.appUpdate", Who::SignedIn),
    ("Mutation.appDelete", Who::SignedIn),
    ("Mutation.appRevokeAccess", Who::SignedIn),
    ("Mutation.userDelete", Who::SignedIn),
    ("Mutation.adminDeleteUser", Who::Admin),
    ("Mutation.userRoleChange", Who::Admin),
    ("Mutation.requestVerification", Who::SignedIn),
    ("Mutation.requestVerificationByEmail", Who::Anyone),
    ("Mutation.webhookCreate", Who::Member),
    ("Mutation.webhookUpdate", Who::Member),
    ("Mutation.webhookDelete", Who::Member),
    ("Mutation.webhookRedeliver", Who::Member),
    ("Mutation.streamCreate", Who::SignedIn),
    ("Mutation.streamUpdate", Who::Member),
    ("Mutation.streamDelete", Who::Member),
    ("Mutation.streamUpdatePermission", Who::Member),
    ("Mutation.streamRevokePermission", Who::Member),
    ("Mutation.streamFavorite", Who::Member),
    ("Mutation.branchCreate", Who::Member),
    ("Mutation.branchUpdate", Who::Member),
    ("Mutation.branchDelete", Who::Member),
    ("Mutation.commitCreate", Who::Member),
    ("Mutation.commitUpdate", Who::Member),
    ("Mutation.commitReceive", Who::Member),
    ("Mutation.commitDelete", Who::Member),
    ("Mutation.objectCreate", Who::Member),
    // Subscriptions: rows are required, but they are not run here (they need a WebSocket
    // each); `subscriptions.rs` checks that outsiders are refused and hear nothing.
    ("Subscription.projectUpdated", Who::Member),
    ("Subscription.projectModelsUpdated", Who::Member),
    ("Subscription.projectModelIngestionUpdated", Who::Member),
    ("Subscription.projectPendingVersionsUpdated", Who::Member),
    ("Subscription.projectPendingModelsUpdated", Who::Member),
    ("Subscription.projectFileImportUpdated", Who::Member),
    ("Subscription.projectVersionsUpdated", Who::Member),
    ("Subscription.projectVersionsPreviewGenerated", Who::Member),
    ("Subscription.userProjectsUpdated", Who::SignedIn),
    ("Subscription.streamUpdated", Who::Member),
    ("Subscription.streamDeleted", Who::Member),
    ("Subscription.userStreamAdded", Who::SignedIn),
    ("Subscription.userStreamRemoved", Who::SignedIn),
    ("Subscription.branchCreated", Who::Member),
    ("Subscription.branchUpdated", Who::Member),
    ("Subscription.branchDeleted", Who::Member),
    ("Subscription.commitCreated", Who::Member),
    ("Subscription.commitUpdated", Who::Member),
    ("Subscription.commitDeleted", Who::Member),
];

/// Codes that say "not for you" (the policy's, and the original's for a project one cannot see).
const REFUSALS: &[&str] = &["UNAUTHORIZED", "FORBIDDEN", "STREAM_NOT_FOUND"];

const INTROSPECTION: &str = "{ __schema { queryType { name } mutationType { name } subscriptionType { name } \
    types { kind name \
      fields(includeDeprecated: true) { name args { name defaultValue type { ...T } } type { ...T } } \
      inputFields { name defaultValue type { ...T } } \
      enumValues(includeDeprecated: true) { name } } } } \
    fragment T on __Type { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } }";

/// The private project every call aims at, and what of it must never reach an outsider.
struct Target {
    ids: BTreeMap<&'static str, Value>,
    markers: Vec<String>,
}

impl Target {
    /// A value for an argument or input field called `name` whose type is named `type_name`
    /// (for `id`, which entity it means), if it names one of the project's entities.
    fn id_for(&self, name: &str, type_name: &str) -> Option<Value> {
        let key = match name {
            "id" if type_name.contains("Branch") || type_name.contains("Model") => "modelId",
            "id" if type_name.contains("Commit") || type_name.contains("Version") => "versionId",
            "id" | "projectId" | "streamId" => "projectId",
            "branchId" => "modelId",
            "commitId" => "versionId",
            "versionIds" | "commitIds" => "versionIds",
            other => other,
        };
        self.ids.get(key).cloned()
    }
}

struct Schema {
    types: BTreeMap<String, Value>,
}

impl Schema {
    fn ty(&self, name: &str) -> &Value {
        &self.types[name]
    }

    /// The GraphQL spelling of a type reference, e.g. `[String!]!`.
    fn spell(t: &Value) -> String {
        match t["kind"].as_str().unwrap() {
            "NON_NULL" => format!("{}!", Self::spell(&t["ofType"])),
            "LIST" => format!("[{}]", Self::spell(&t["ofType"])),
            _ => t["name"].as_str().unwrap().to_owned(),
        }
    }

    fn named(t: &Value) -> &Value {
        match t["kind"].as_str().unwrap() {
            "NON_NULL" | "LIST" => Self::named(&t["ofType"]),
            _ => t,
        }
    }

    /// A value of type `t` for a field called `name` (of input type `owner`).
    fn value(&self, t: &Value, name: &str, owner: &str, target: &Target) -> Value {
        if let Some(id) = target.id_for(name, owner) {
            let list = t["kind"] == "LIST" || t["ofType"]["kind"] == "LIST";
            return match (list, id) {
                (true, Value::Array(a)) => Value::Array(a),
                (true, v) => json!([v]),
                (false, Value::Array(a)) => a[0].clone(),
                (false, v) => v,
            };
        }
        match t["kind"].as_str().unwrap() {
            "NON_NULL" => self.value(&t["ofType"], name, owner, target),
            "LIST" => json!([self.value(&t["ofType"], name, owner, target)]),
            "ENUM" => {
                let e = self.ty(t["name"].as_str().unwrap());
                e["enumValues"][0]["name"].clone()
            }
            "INPUT_OBJECT" => {
                let type_name = t["name"].as_str().unwrap();
                let mut out = serde_json::Map::new();
                for f in self.ty(type_name)["inputFields"].as_array().unwrap() {
                    let field = f["name"].as_str().unwrap();
                    let required = f["type"]["kind"] == "NON_NULL" && f["defaultValue"].is_null();
                    if required
                        || ALWAYS.contains(&field)
                        || target.id_for(field, type_name).is_some()
                    {
                        out.insert(
                            field.into(),
                            self.value(&f["type"], field, type_name, target),
                        );
                    }
                }
                Value::Object(out)
            }
            _ => match (t["name"].as_str().unwrap(), name) {
                (_, "email") => json!("sweep-nobody@example.com"),
                (_, "url") => json!("https://hooks.example.com/sweep"),
                ("String", "role") => json!("stream:contributor"),
                ("Int" | "BigInt", _) => json!(1),
                ("Float", _) => json!(1.0),
                ("Boolean", _) => json!(false),
                ("DateTime", _) => json!("2026-01-01T00:00:00.000Z"),
                ("JSONObject", _) => json!({}),
                _ => json!("sweep"),
            },
        }
    }

    /// The selection for a field of type `t`: every argument-free scalar of an object (so a
    /// resolver that checks access only below the root would show what it leaks), else none.
    fn selection(&self, t: &Value) -> String {
        let named = Self::named(t);
        match named["kind"].as_str().unwrap() {
            "OBJECT" => {
                let mut fields = vec!["__typename".to_owned()];
                for f in self.ty(named["name"].as_str().unwrap())["fields"]
                    .as_array()
                    .unwrap()
                {
                    let leaf = matches!(
                        Self::named(&f["type"])["kind"].as_str(),
                        Some("SCALAR" | "ENUM")
                    );
                    if leaf && f["args"].as_array().unwrap().is_empty() {
                        fields.push(f["name"].as_str().unwrap().to_owned());
                    }
                }
                format!(" {{ {} }}", fields.join(" "))
            }
            "INTERFACE" | "UNION" => " { __typename }".to_owned(),
            _ => String::new(),
        }
    }
}

/// Optional input fields filled all the same, so that a call gets past input checks that come
/// before the access check (which is what is tested) and has something to change.
const ALWAYS: &[&str] = &["message", "name", "role", "url"];

/// One operation: its row name, the root, and the path of fields to it.
struct Operation {
    name: String,
    root: &'static str,
    path: Vec<Value>,
}

fn operations(schema: &Schema, roots: &[(&'static str, &str)]) -> Vec<Operation> {
    fn walk(
        schema: &Schema,
        root: &'static str,
        type_name: &str,
        path: &[Value],
        prefix: &str,
        out: &mut Vec<Operation>,
    ) {
        for f in schema.ty(type_name)["fields"].as_array().unwrap() {
            let name = format!("{prefix}.{}", f["name"].as_str().unwrap());
            let mut path = path.to_vec();
            path.push(f.clone());
            let inner = Schema::named(&f["type"])["name"]
                .as_str()
                .unwrap_or_default();
            let namespace = inner.ends_with("Mutations") || inner.ends_with("Queries");
            if namespace && f["args"].as_array().unwrap().is_empty() {
                walk(schema, root, inner, &path, &name, out);
            } else {
                out.push(Operation { name, root, path });
            }
        }
    }
    let mut out = Vec::new();
    for (label, type_name) in roots {
        walk(schema, label, type_name, &[], label, &mut out);
    }
    out
}

/// The document and variables for `op`.
fn document(schema: &Schema, op: &Operation, target: &Target) -> (String, Value) {
    let mut declared = Vec::new();
    let mut variables = serde_json::Map::new();
    let mut body = String::new();
    let last = op.path.len() - 1;
    for (i, f) in op.path.iter().enumerate() {
        let field = f["name"].as_str().unwrap();
        let mut args = Vec::new();
        for a in f["args"].as_array().unwrap() {
            let arg = a["name"].as_str().unwrap();
            let required = a["type"]["kind"] == "NON_NULL" && a["defaultValue"].is_null();
            let owner = Schema::named(&a["type"])["name"]
                .as_str()
                .unwrap_or_default();
            if !required && target.id_for(arg, owner).is_none() {
                continue;
            }
            let var = format!("a{}", declared.len());
            declared.push(format!("${var}: {}", Schema::spell(&a["type"])));
            variables.insert(var.clone(), schema.value(&a["type"], arg, owner, target));
            args.push(format!("{arg}: ${var}"));
        }
        body.push_str(field);
        if !args.is_empty() {
            body.push_str(&format!("({})", args.join(", ")));
        }
        if i == last {
            body.push_str(&schema.selection(&f["type"]));
        } else {
            body.push_str(" { ");
        }
    }
    body.push_str(&" }".repeat(last));
    let kind = if op.root == "Query" {
        "query"
    } else {
        "mutation"
    };
    let vars = if declared.is_empty() {
        String::new()
    } else {
        format!("({})", declared.join(", "))
    };
    (
        format!("{kind}{vars} {{ {body} }}"),
        Value::Object(variables),
    )
}

async fn call(app: &TestApp, token: Option<&str>, query: &str, variables: &Value) -> Value {
    let mut req = app
        .http
        .post(format!("{}/graphql", app.base_url))
        .json(&json!({"query": query, "variables": variables}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let text = res.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| json!({"unparsed": text}))
}

/// The value at the end of `op`'s path in an answer's `data`.
fn leaf<'a>(answer: &'a Value, op: &Operation) -> &'a Value {
    let mut here = &answer["data"];
    for f in &op.path {
        here = &here[f["name"].as_str().unwrap()];
    }
    here
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_has_a_row_and_outsiders_get_nothing_of_a_private_project() {
    let db = TestDb::new().await;
    let (app, _stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    tests::register(&app.base_url, "sweep-admin@example.com").await;
    let founder = tests::register(&app.base_url, "sweep-founder@example.com").await;
    let outsider = tests::register(&app.base_url, "sweep-outsider@example.com").await;

    // The private project, with a model, a version and an open ingestion.
    let secret = format!("sweep-secret-{}", uuid::Uuid::new_v4().simple());
    let project = app
        .gql_data(
            &founder,
            "mutation($n: String!) { projectMutations { create(input: {name: $n}) { id } } }",
            json!({"n": secret}),
        )
        .await["projectMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let model_name = format!("{secret}-model");
    let model = app.create_model(&founder, &project, &model_name).await;
    let object = tests::object_id();
    let message = format!("{secret}-message");
    let version = app
        .version_on(
            &founder,
            (&project, &model),
            &object,
            json!({"message": message}),
        )
        .await;
    let ingestion = app
        .gql_data(
            &founder,
            "mutation($p: String!, $m: String!) { projectMutations { modelIngestionMutations { create(input: {projectId: $p, modelId: $m, progressMessage: \"sweep\", sourceData: {sourceApplicationSlug: \"sweep\", sourceApplicationVersion: \"1\", fileName: null, fileSizeBytes: null}, maxIdleTimeoutSeconds: 3600}) { id } } } }",
            json!({"p": project, "m": model}),
        )
        .await["projectMutations"]["modelIngestionMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let founder_id = app
        .gql_data(&founder, "{ activeUser { id } }", json!({}))
        .await["activeUser"]["id"]
        .clone();
    let target = Target {
        ids: BTreeMap::from([
            ("projectId", json!(project)),
            ("modelId", json!(model)),
            ("versionId", json!(version)),
            ("versionIds", json!([version])),
            ("objectId", json!(object)),
            ("referencedObject", json!(object)),
            ("ingestionId", json!(ingestion)),
            ("userId", founder_id),
        ]),
        markers: vec![secret.clone(), model_name, message],
    };

    let answer = app.gql_data(&founder, INTROSPECTION, json!({})).await;
    let schema = Schema {
        types: answer["__schema"]["types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap().to_owned(), t.clone()))
            .collect(),
    };
    let root = |kind: &str| {
        answer["__schema"][kind]["name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (query, mutation, subscription) = (
        root("queryType"),
        root("mutationType"),
        root("subscriptionType"),
    );
    let ops = operations(
        &schema,
        &[
            ("Query", &query),
            ("Mutation", &mutation),
            ("Subscription", &subscription),
        ],
    );

    // Every operation has a row, and every row an operation.
    let rows: BTreeMap<&str, Who> = ROWS.iter().copied().collect();
    let offered: BTreeSet<&str> = ops.iter().map(|o| o.name.as_str()).collect();
    let missing: Vec<&&str> = offered.iter().filter(|o| !rows.contains_key(**o)).collect();
    let stale: Vec<&&str> = rows.keys().filter(|r| !offered.contains(**r)).collect();
    assert!(
        missing.is_empty(),
        "operations without a row in ROWS (say who may use them): {missing:?}"
    );
    assert!(stale.is_empty(), "rows naming no operation: {stale:?}");

    let mut wrong = Vec::new();
    let mut ran = 0;
    for op in ops.iter().filter(|o| o.root != "Subscription") {
        let who = rows[op.name.as_str()];
        let (doc, variables) = document(&schema, op, &target);
        let callers: &[(&str, Option<&str>)] = match who {
            Who::SignedIn => &[("anonymous", None)],
            _ => &[("anonymous", None), ("outsider", Some(outsider.as_str()))],
        };
        for (label, token) in callers {
            ran += 1;
            let answer = call(&app, *token, &doc, &variables).await;
            let text = answer.to_string();
            for marker in &target.markers {
                if text.contains(marker.as_str()) {
                    wrong.push(format!("{} as {label} leaked {marker}: {doc}", op.name));
                }
            }
            if who == Who::Anyone {
                continue;
            }
            let code = answer["errors"][0]["extensions"]["code"]
                .as_str()
                .unwrap_or_default();
            if !leaf(&answer, op).is_null() || !REFUSALS.contains(&code) {
                wrong.push(format!(
                    "{} as {label} was not refused ({who:?}): {doc} {variables} -> {}",
                    op.name,
                    text.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    assert!(ran > 100, "only {ran} calls made");
    assert!(
        wrong.is_empty(),
        "{} of {ran} calls went wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    // The project is untouched: still there, still the founder's, still holding its version.
    let after = app
        .gql_data(
            &founder,
            "query($p: String!) { project(id: $p) { name role versions { totalCount } } }",
            json!({"p": project}),
        )
        .await;
    assert_eq!(after["project"]["name"], secret.as_str());
    assert_eq!(after["project"]["role"], "stream:owner");
    assert_eq!(after["project"]["versions"]["totalCount"], 1);
}

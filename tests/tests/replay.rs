//! The property that makes `asOf` trustworthy: for random sequences of commands, the project
//! folded from its events as of each position equals what the live read model showed at that
//! position (every field both show: name, description, visibility, team and roles, models,
//! versions with their messages, objects, sources and authors, webhooks without secrets).
//!
//! Commands go through the public API with read-your-writes, the live state is read right
//! after each one together with the stream's last position, and after the whole sequence every
//! captured position is replayed and compared. Seeds are fixed so a failure reproduces; the
//! failing seed and step are in the message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};

/// Sequences run, and commands in each.
const SEEDS: std::ops::Range<u64> = 0..4;
const STEPS: usize = 30;

const ROOTS: [&str; 2] = [
    "0123456789abcdef0123456789abcdef",
    "fedcba9876543210fedcba9876543210",
];

const LIVE: &str = "query($p: String!) { project(id: $p) { name description visibility \
    team { role user { id } } \
    models(limit: 500) { items { id name description \
        versions(limit: 100) { items { id referencedObject message sourceApplication authorUser { id } } } } } \
    webhooks { items { id url description triggers enabled } } } }";

const AS_OF: &str = "query($p: String!, $at: String) { project(id: $p) { asOf(position: $at) { \
    name description visibility deleted team { userId role } \
    models { id name description versions { id referencedObject message sourceApplication authorId } } \
    webhooks { id url description triggers enabled } } } }";

/// A project's state as both views show it, in one comparable shape.
#[derive(Debug, PartialEq)]
struct State {
    name: String,
    description: String,
    visibility: String,
    team: BTreeMap<String, String>,
    /// By model id: name, description, and versions by id.
    models: BTreeMap<String, (String, String, BTreeMap<String, Value>)>,
    webhooks: BTreeMap<String, Value>,
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn version(v: &Value, author: &Value) -> (String, Value) {
    (
        text(&v["id"]),
        json!({
            "object": v["referencedObject"],
            "message": text(&v["message"]),
            "source": text(&v["sourceApplication"]),
            "author": author,
        }),
    )
}

fn webhook(w: &Value) -> (String, Value) {
    let mut triggers: Vec<String> = w["triggers"].as_array().unwrap().iter().map(text).collect();
    triggers.sort();
    (
        text(&w["id"]),
        json!({"url": w["url"], "description": text(&w["description"]), "triggers": triggers, "enabled": w["enabled"]}),
    )
}

/// Where each view keeps what [`State`] compares.
struct Shape {
    member: fn(&Value) -> &Value,
    models: fn(&Value) -> &Value,
    versions: fn(&Value) -> &Value,
    author: fn(&Value) -> &Value,
    webhooks: fn(&Value) -> &Value,
}

const LIVE_SHAPE: Shape = Shape {
    member: |m| &m["user"]["id"],
    models: |p| &p["models"]["items"],
    versions: |m| &m["versions"]["items"],
    author: |v| &v["authorUser"]["id"],
    webhooks: |p| &p["webhooks"]["items"],
};

const AS_OF_SHAPE: Shape = Shape {
    member: |m| &m["userId"],
    models: |p| &p["models"],
    versions: |m| &m["versions"],
    author: |v| &v["authorId"],
    webhooks: |p| &p["webhooks"],
};

fn list(v: &Value) -> &[Value] {
    v.as_array()
        .unwrap_or_else(|| panic!("a list, not {v}"))
        .as_slice()
}

impl State {
    fn read(p: &Value, shape: &Shape) -> Self {
        Self {
            name: text(&p["name"]),
            description: text(&p["description"]),
            visibility: text(&p["visibility"]),
            team: list(&p["team"])
                .iter()
                .map(|m| (text((shape.member)(m)), text(&m["role"])))
                .collect(),
            models: list((shape.models)(p))
                .iter()
                .map(|m| {
                    let versions = list((shape.versions)(m))
                        .iter()
                        .map(|v| version(v, (shape.author)(v)))
                        .collect();
                    (
                        text(&m["id"]),
                        (text(&m["name"]), text(&m["description"]), versions),
                    )
                })
                .collect(),
            webhooks: list((shape.webhooks)(p)).iter().map(webhook).collect(),
        }
    }

    fn live(p: &Value) -> Self {
        Self::read(p, &LIVE_SHAPE)
    }

    fn as_of(p: &Value) -> Self {
        assert_eq!(p["deleted"], false, "{p}");
        Self::read(p, &AS_OF_SHAPE)
    }
}

struct Run<'a> {
    app: &'a TestApp,
    rng: StdRng,
    owner: String,
    member_id: String,
    project: String,
}

impl Run<'_> {
    fn pick<'v, T>(&mut self, items: &'v [T]) -> Option<&'v T> {
        (!items.is_empty()).then(|| &items[self.rng.random_range(0..items.len())])
    }

    /// One random command against the project's current state; what it was, for messages.
    /// Commands the domain refuses (a taken name, say) are part of the property too: they
    /// must leave nothing behind.
    async fn step(&mut self, live: &State) -> String {
        let models: Vec<String> = live.models.keys().cloned().collect();
        let versions: Vec<String> = live
            .models
            .values()
            .flat_map(|(_, _, v)| v.keys().cloned())
            .collect();
        let hooks: Vec<String> = live.webhooks.keys().cloned().collect();
        let names = ["a", "b", "c/d", "c/e"];
        let p = self.project.clone();
        let (what, query, variables) = match self.rng.random_range(0..12) {
            0 => {
                let name = format!("project {}", self.rng.random_range(0..3));
                let visibility = ["PRIVATE", "PUBLIC", "UNLISTED"][self.rng.random_range(0..3)];
                (
                    "project update",
                    "mutation($p: String!, $n: String, $v: ProjectVisibility) { projectMutations { update(update: {id: $p, name: $n, visibility: $v, description: $n}) { id } } }",
                    json!({"p": p, "n": name, "v": visibility}),
                )
            }
            1 | 2 => (
                "model create",
                "mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n, description: $n}) { id } } }",
                json!({"p": p, "n": *self.pick(&names).unwrap()}),
            ),
            3 => match self.pick(&models).cloned() {
                Some(m) => (
                    "model update",
                    "mutation($p: ID!, $m: ID!, $n: String) { modelMutations { update(input: {projectId: $p, id: $m, name: $n, description: \"changed\"}) { id } } }",
                    json!({"p": p, "m": m, "n": *self.pick(&names).unwrap()}),
                ),
                None => return "nothing".into(),
            },
            4 => match self.pick(&models).cloned() {
                Some(m) => (
                    "model delete",
                    "mutation($p: ID!, $m: ID!) { modelMutations { delete(input: {projectId: $p, id: $m}) } }",
                    json!({"p": p, "m": m}),
                ),
                None => return "nothing".into(),
            },
            5..=7 => match self.pick(&models).cloned() {
                Some(m) => {
                    let root = *self.pick(&ROOTS).unwrap();
                    let app = ["rhino", "revit", "blender"][self.rng.random_range(0..3)];
                    (
                        "version create",
                        "mutation($p: String!, $m: String!, $o: String!, $s: String) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: $o, message: $s, sourceApplication: $s}) { id } } }",
                        json!({"p": p, "m": m, "o": root, "s": app}),
                    )
                }
                None => return "nothing".into(),
            },
            8 => match self.pick(&versions).cloned() {
                Some(v) => {
                    let roll = self.rng.random_range(0..3);
                    match roll {
                        0 => (
                            "version update",
                            "mutation($p: ID!, $v: ID!) { versionMutations { update(input: {projectId: $p, versionId: $v, message: \"edited\"}) { id } } }",
                            json!({"p": p, "v": v}),
                        ),
                        1 => (
                            "version move",
                            "mutation($p: ID!, $v: ID!, $n: String!) { versionMutations { moveToModel(input: {projectId: $p, versionIds: [$v], targetModelName: $n}) { id } } }",
                            json!({"p": p, "v": v, "n": *self.pick(&names).unwrap()}),
                        ),
                        _ => (
                            "version delete",
                            "mutation($p: ID!, $v: ID!) { versionMutations { delete(input: {projectId: $p, versionIds: [$v]}) } }",
                            json!({"p": p, "v": v}),
                        ),
                    }
                }
                None => return "nothing".into(),
            },
            9 => {
                let role = [
                    Value::from("stream:reviewer"),
                    "stream:contributor".into(),
                    "stream:owner".into(),
                    Value::Null,
                ][self.rng.random_range(0..4)]
                .clone();
                (
                    "role change",
                    "mutation($p: String!, $u: String!, $r: String) { projectMutations { updateRole(input: {projectId: $p, userId: $u, role: $r}) { id } } }",
                    json!({"p": p, "u": self.member_id, "r": role}),
                )
            }
            10 => (
                "webhook create",
                "mutation($w: WebhookCreateInput!) { webhookCreate(webhook: $w) }",
                json!({"w": {"streamId": p, "url": format!("https://example.com/{}", self.rng.random_range(0..100)), "triggers": ["commit_create", "branch_create"], "secret": "a secret", "description": "hook"}}),
            ),
            _ => match self.pick(&hooks).cloned() {
                Some(h) if self.rng.random_bool(0.5) => (
                    "webhook update",
                    "mutation($w: WebhookUpdateInput!) { webhookUpdate(webhook: $w) }",
                    json!({"w": {"id": h, "streamId": p, "url": "https://example.com/changed", "enabled": false, "triggers": ["commit_delete"]}}),
                ),
                Some(h) => (
                    "webhook delete",
                    "mutation($w: WebhookDeleteInput!) { webhookDelete(webhook: $w) }",
                    json!({"w": {"id": h, "streamId": p}}),
                ),
                None => return "nothing".into(),
            },
        };
        let answer = self.app.gql(&self.owner, query, variables.clone()).await;
        let refused = answer["errors"][0]["extensions"]["code"]
            .as_str()
            .map(|c| format!(" (refused: {c})"))
            .unwrap_or_default();
        assert!(
            answer["errors"].is_null() || !refused.is_empty(),
            "{what} {variables}: {answer}"
        );
        format!("{what} {variables}{refused}")
    }

    async fn live(&self) -> State {
        let data = self
            .app
            .gql_data(&self.owner, LIVE, json!({"p": self.project}))
            .await;
        State::live(&data["project"])
    }
}

async fn last_position(db: &TestDb, project: &str) -> i64 {
    sqlx::query_scalar("SELECT max(position) FROM events WHERE stream_id = $1")
        .bind(format!("project:{project}"))
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_as_of_every_position_is_what_the_live_read_model_showed_then() {
    let db = TestDb::new().await;
    let (app, _stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let owner = tests::register(&app.base_url, "owner@example.com").await;
    let member = tests::register(&app.base_url, "member@example.com").await;
    let member_id = app
        .gql_data(&member, "{ activeUser { id } }", json!({}))
        .await["activeUser"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut compared = 0;
    for seed in SEEDS {
        let project = app
            .gql_data(
                &owner,
                "mutation { projectMutations { create(input: {name: \"replayed\"}) { id } } }",
                json!({}),
            )
            .await["projectMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for root in ROOTS {
            tests::store_object(&app.base_url, &owner, &project, root).await;
        }
        let mut run = Run {
            app: &app,
            rng: StdRng::seed_from_u64(seed),
            owner: owner.clone(),
            member_id: member_id.clone(),
            project: project.clone(),
        };
        let mut seen: Vec<(i64, String, State)> = Vec::new();
        let mut live = run.live().await;
        seen.push((last_position(&db, &project).await, "created".into(), live));
        for _ in 0..STEPS {
            let what = run.step(&seen.last().unwrap().2).await;
            live = run.live().await;
            seen.push((last_position(&db, &project).await, what, live));
        }
        for (step, (position, what, live)) in seen.iter().enumerate() {
            let data = app
                .gql_data(
                    &owner,
                    AS_OF,
                    json!({"p": project, "at": position.to_string()}),
                )
                .await;
            let replayed = State::as_of(&data["project"]["asOf"]);
            assert_eq!(
                &replayed, live,
                "seed {seed}, step {step} ({what}) at position {position}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, SEEDS.count() * (STEPS + 1));
}

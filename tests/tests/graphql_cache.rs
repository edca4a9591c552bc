//! The response cache of read-only GraphQL queries over real HTTP: an answer is reused only
//! while the read model has not moved, never across callers, never for fields that read other
//! stores, and never past a revoked token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::{TestApp, TestDb, test_settings};

struct World {
    app: TestApp,
    db: TestDb,
    _cancel: tokio_util::sync::DropGuard,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let (app, guard) = tests::spawn_stack(&db, test_settings(&db)).await;
    World {
        app,
        db,
        _cancel: guard,
    }
}

impl World {
    async fn post(&self, token: Option<&str>, query: &str, variables: Value) -> reqwest::Response {
        let mut req = self
            .app
            .http
            .post(format!("{}/graphql", self.app.base_url))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap()
    }

    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let res = self.post(token, query, variables).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Requests answered from the cache so far.
    async fn hits(&self) -> u64 {
        self.looks("hit").await
    }

    /// Requests that looked in the cache with `outcome` (`hit` or `miss`) so far.
    async fn looks(&self, outcome: &str) -> u64 {
        let text = self.app.get("/metrics").await.text().await.unwrap();
        let prefix = format!("strata_graphql_cache_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    async fn project(&self, token: &str, name: &str) -> String {
        let created = self
            .gql(
                Some(token),
                "mutation($n: String!) { projectMutations { create(input: {name: $n}) { id } } }",
                json!({"n": name}),
            )
            .await;
        created["data"]["projectMutations"]["create"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{created}"))
            .to_owned()
    }
}

const PROJECT: &str =
    "query($id: String!) { project(id: $id) { name role models { totalCount items { name } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_query_is_reused_until_the_read_model_moves() {
    let w = world().await;
    let token = tests::register(&w.app.base_url, "ada@example.com").await;
    let pid = w.project(&token, "first").await;
    // The claim: while the read model's checkpoint stays put, a repeat is a hit. Background
    // events could move it between the two requests, so the claim is checked on a window in
    // which it provably did not move.
    let checkpoint = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT events_applied FROM projection_checkpoints WHERE projection = 'speckle'",
        )
        .fetch_one(&w.db.pool)
        .await
        .unwrap()
    };
    let mut checked = false;
    for _ in 0..20 {
        let at = checkpoint().await;
        let first = w.gql(Some(&token), PROJECT, json!({"id": pid})).await;
        assert_eq!(first["data"]["project"]["name"], "first", "{first}");
        let before = w.hits().await;
        let again = w.gql(Some(&token), PROJECT, json!({"id": pid})).await;
        assert_eq!(again, first);
        let hits = w.hits().await;
        if checkpoint().await == at {
            assert_eq!(hits, before + 1, "the repeat was not served from the cache");
            checked = true;
            break;
        }
    }
    assert!(checked, "the read model never stood still for two requests");

    // A write: the very next read sees it (the mutation returned after the read model moved).
    // Mutations do not look in the cache at all.
    let misses = w.looks("miss").await;
    let renamed = w
        .gql(
            Some(&token),
            "mutation($id: ID!) { projectMutations { update(update: {id: $id, name: \"second\"}) { id } } }",
            json!({"id": pid}),
        )
        .await;
    assert!(renamed.get("errors").is_none(), "{renamed}");
    assert_eq!(
        w.looks("miss").await,
        misses,
        "the mutation looked in the cache"
    );
    let after = w.gql(Some(&token), PROJECT, json!({"id": pid})).await;
    assert_eq!(after["data"]["project"]["name"], "second", "{after}");
    w.gql(
        Some(&token),
        "mutation($p: ID!) { modelMutations { create(input: {projectId: $p, name: \"walls\"}) { id } } }",
        json!({"p": pid}),
    )
    .await;
    let with_model = w.gql(Some(&token), PROJECT, json!({"id": pid})).await;
    assert_eq!(
        with_model["data"]["project"]["models"]["totalCount"], 1,
        "{with_model}"
    );
    assert_eq!(
        with_model["data"]["project"]["models"]["items"][0]["name"],
        "walls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_never_shared_between_callers() {
    let w = world().await;
    let owner = tests::register(&w.app.base_url, "owner@example.com").await;
    let other = tests::register(&w.app.base_url, "other@example.com").await;
    let pid = w.project(&owner, "private plans").await;
    for _ in 0..2 {
        let mine = w.gql(Some(&owner), PROJECT, json!({"id": pid})).await;
        assert_eq!(mine["data"]["project"]["role"], "stream:owner", "{mine}");
    }
    let theirs = w.gql(Some(&other), PROJECT, json!({"id": pid})).await;
    assert_eq!(
        theirs["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{theirs}"
    );
    assert!(!theirs.to_string().contains("private plans"), "{theirs}");
    let anonymous = w.gql(None, PROJECT, json!({"id": pid})).await;
    assert!(
        !anonymous.to_string().contains("private plans"),
        "{anonymous}"
    );
    assert!(anonymous.get("errors").is_some(), "{anonymous}");
    // The same user asking with fewer scopes is another caller too.
    let created = w
        .gql(
            Some(&owner),
            "mutation { apiTokenCreate(token: {name: \"p\", scopes: [\"profile:read\"]}) }",
            json!({}),
        )
        .await;
    let profile_only = created["data"]["apiTokenCreate"].as_str().unwrap();
    let scoped = w.gql(Some(profile_only), PROJECT, json!({"id": pid})).await;
    assert!(scoped.get("errors").is_some(), "{scoped}");
    assert!(!scoped.to_string().contains("private plans"), "{scoped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_that_read_other_stores_are_answered_fresh() {
    let w = world().await;
    let token = tests::register(&w.app.base_url, "ada@example.com").await;
    const TOKENS: &str = "{ activeUser { id apiTokens { name } } }";
    let count = |v: &Value| {
        v["data"]["activeUser"]["apiTokens"]
            .as_array()
            .unwrap()
            .len()
    };
    let first = w.gql(Some(&token), TOKENS, json!({})).await;
    let again = w.gql(Some(&token), TOKENS, json!({})).await;
    assert_eq!(count(&again), count(&first));
    // Creating a token writes no event, so the read model's checkpoint stays where it was:
    // only not caching `apiTokens` at all makes the new one show.
    let hits = w.hits().await;
    w.gql(
        Some(&token),
        "mutation { apiTokenCreate(token: {name: \"new\", scopes: [\"profile:read\"]}) }",
        json!({}),
    )
    .await;
    let after = w.gql(Some(&token), TOKENS, json!({})).await;
    assert_eq!(count(&after), count(&first) + 1, "{after}");
    assert_eq!(
        w.hits().await,
        hits,
        "an apiTokens answer came from the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_gets_no_cached_answer() {
    let w = world().await;
    let token = tests::register(&w.app.base_url, "ada@example.com").await;
    let created = w
        .gql(
            Some(&token),
            "mutation { apiTokenCreate(token: {name: \"p\", scopes: [\"profile:read\"]}) }",
            json!({}),
        )
        .await;
    let pat = created["data"]["apiTokenCreate"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        let me = w
            .gql(Some(&pat), "{ activeUser { name } }", json!({}))
            .await;
        assert_eq!(me["data"]["activeUser"]["name"], "Ada", "{me}");
    }
    let revoked = w
        .gql(
            Some(&token),
            "mutation($t: String!) { apiTokenRevoke(token: $t) }",
            json!({"t": pat}),
        )
        .await;
    assert_eq!(revoked["data"]["apiTokenRevoke"], true, "{revoked}");
    let res = w
        .post(Some(&pat), "{ activeUser { name } }", json!({}))
        .await;
    assert_eq!(res.status(), 403);
}

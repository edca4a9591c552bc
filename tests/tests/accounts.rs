//! Accounts over real HTTP: register and sign in with the original's access-code flow, exchange
//! codes and refresh tokens, personal tokens, and authenticated GraphQL mutations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::{RequestExt, TestApp, TestDb, test_settings};

struct World {
    app: TestApp,
    http: reqwest::Client,
    _cancel: tokio_util::sync::DropGuard,
}

async fn world() -> (World, TestDb) {
    let db = TestDb::new().await;
    let (app, guard) = tests::spawn_stack(&db, test_settings(&db)).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (
        World {
            app,
            http,
            _cancel: guard,
        },
        db,
    )
}

fn access_code(res: &reqwest::Response) -> String {
    let location = res.headers()["location"].to_str().unwrap();
    location
        .split("access_code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned()
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base_url)
    }

    async fn register(&self, email: &str) -> (String, String) {
        let res = self
            .http
            .post(self.url("/auth/local/register?challenge=ch1"))
            .form(&[
                ("email", email),
                ("password", "correct horse"),
                ("name", "Ada Lovelace"),
                ("company", "ACME"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302, "{:?}", res.text().await);
        let code = access_code(&res);
        let tokens: Value = self
            .http
            .post(self.url("/auth/token"))
            .json(&json!({"appId": "spklwebapp", "appSecret": "spklwebapp", "accessCode": code, "challenge": "ch1"}))
            .json_ok()
            .await;
        (
            tokens["token"].as_str().unwrap().to_owned(),
            tokens["refreshToken"].as_str().unwrap().to_owned(),
        )
    }

    async fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        let res = self
            .http
            .post(self.url("/graphql"))
            .bearer_auth(token)
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_exchange_and_sign_in_like_the_original() {
    let (w, _db) = world().await;
    let (token, refresh) = w.register("Ada@Example.com").await;
    assert_eq!(token.len(), 42);
    let me = w
        .gql(
            &token,
            "{ activeUser { id name email role company } }",
            json!({}),
        )
        .await;
    assert_eq!(me["data"]["activeUser"]["email"], "ada@example.com", "{me}");
    assert_eq!(
        me["data"]["activeUser"]["role"], "server:admin",
        "the first user is admin"
    );
    let (second, _) = w.register("bob@example.com").await;
    let bob = w.gql(&second, "{ activeUser { role } }", json!({})).await;
    assert_eq!(bob["data"]["activeUser"]["role"], "server:user");

    // The same email cannot register twice; a short password is refused.
    let res = w
        .http
        .post(w.url("/auth/local/register?challenge=c"))
        .form(&[
            ("email", "ada@example.com"),
            ("password", "another pass"),
            ("name", "X"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = w
        .http
        .post(w.url("/auth/local/register?challenge=c"))
        .form(&[
            ("email", "c@example.com"),
            ("password", "short"),
            ("name", "X"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = w
        .http
        .post(w.url("/auth/local/register"))
        .form(&[("email", "d@example.com")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "no challenge");

    // Sign in; a wrong password gets the original's 401.
    let res = w
        .http
        .post(w.url("/auth/local/login?challenge=c2"))
        .json(&json!({"email": "ada@example.com", "password": "wrong password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["message"],
        "Invalid credentials."
    );
    let res = w
        .http
        .post(w.url("/auth/local/login?challenge=c2"))
        .json(&json!({"email": "ada@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let code = access_code(&res);
    // A wrong challenge burns the code.
    let bad = w.http.post(w.url("/auth/token")).json(&json!({"appId": "spklwebapp", "appSecret": "spklwebapp", "accessCode": code, "challenge": "other"})).send().await.unwrap();
    assert_eq!(bad.status(), 401);
    let again = w.http.post(w.url("/auth/token")).json(&json!({"appId": "spklwebapp", "appSecret": "spklwebapp", "accessCode": code, "challenge": "c2"})).send().await.unwrap();
    assert_eq!(again.status(), 401, "access codes are single-use");

    // Refresh rotates: the old refresh token stops working.
    let res = w
        .http
        .post(w.url("/auth/token"))
        .json(&json!({"appId": "spklwebapp", "appSecret": "spklwebapp", "refreshToken": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let fresh: Value = res.json().await.unwrap();
    assert_eq!(fresh["token"].as_str().unwrap().len(), 42);
    let res = w
        .http
        .post(w.url("/auth/token"))
        .json(&json!({"appId": "spklwebapp", "appSecret": "spklwebapp", "refreshToken": refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_tokens_carry_scopes_and_die_when_revoked() {
    let (w, _db) = world().await;
    let (token, _) = w.register("ada@example.com").await;
    let created = w
        .gql(
            &token,
            "mutation($t: ApiTokenCreateInput!) { apiTokenCreate(token: $t) }",
            json!({"t": {"name": "ci", "scopes": ["streams:read", "profile:read"]}}),
        )
        .await;
    let pat = created["data"]["apiTokenCreate"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = w
        .gql(
            &token,
            "{ activeUser { apiTokens { id name scopes lastChars } } }",
            json!({}),
        )
        .await;
    let tokens = listed["data"]["activeUser"]["apiTokens"]
        .as_array()
        .unwrap();
    assert!(
        tokens
            .iter()
            .any(|t| t["id"] == pat[..10] && t["lastChars"] == pat[36..]),
        "{listed}"
    );
    // The read-only token cannot write.
    let denied = w
        .gql(
            &pat,
            "mutation { projectMutations { create(input: {name: \"x\"}) { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        denied["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{denied}"
    );
    // Revoked: refused with 403 even for public data.
    let revoked = w
        .gql(
            &token,
            "mutation($t: String!) { apiTokenRevoke(token: $t) }",
            json!({"t": pat}),
        )
        .await;
    assert_eq!(revoked["data"]["apiTokenRevoke"], true);
    let res = w
        .http
        .post(w.url("/graphql"))
        .bearer_auth(&pat)
        .json(&json!({"query": "{ serverInfo { name } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // A token that was never issued is refused the same way; so is a tampered one.
    let mut tampered = token.clone();
    tampered.replace_range(41.., if token.ends_with('0') { "1" } else { "0" });
    let res = w
        .http
        .post(w.url("/graphql"))
        .bearer_auth(&tampered)
        .json(&json!({"query": "{ serverInfo { name } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_create_update_and_delete_through_the_log() {
    let (w, _db) = world().await;
    let (ada, _) = w.register("ada@example.com").await;
    let (bob, _) = w.register("bob@example.com").await;
    let created = w
        .gql(&ada, "mutation { projectMutations { create(input: {name: \"Haus\", description: \"d\"}) { id name visibility role team { role user { name } } } } }", json!({}))
        .await;
    let project = &created["data"]["projectMutations"]["create"];
    assert_eq!(project["visibility"], "PRIVATE", "{created}");
    assert_eq!(project["role"], "stream:owner");
    let pid = project["id"].as_str().unwrap().to_owned();

    let model = w
        .gql(&ada, "mutation($p: ID!) { modelMutations { create(input: {projectId: $p, name: \" Structure / L1 \"}) { id name displayName } } }", json!({"p": pid}))
        .await;
    let m = &model["data"]["modelMutations"]["create"];
    assert_eq!(m["name"], "structure/l1", "{model}");
    assert_eq!(m["displayName"], "l1");
    let mid = m["id"].as_str().unwrap().to_owned();
    tests::store_object(
        &w.app.base_url,
        &ada,
        &pid,
        "0123456789abcdef0123456789abcdef",
    )
    .await;
    let version = w
        .gql(&ada, "mutation($p: String!, $m: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: \"0123456789abcdef0123456789abcdef\", message: \"first\", sourceApplication: \"test\", totalChildrenCount: 2}) { id message referencedObject totalChildrenCount authorUser { name } model { id } } } }", json!({"p": pid, "m": mid}))
        .await;
    let v = &version["data"]["versionMutations"]["create"];
    assert_eq!(v["message"], "first", "{version}");
    assert_eq!(v["model"]["id"], mid);
    let vid = v["id"].as_str().unwrap().to_owned();

    // Bob sees nothing of the private project, and cannot change it.
    let peek = w
        .gql(
            &bob,
            "query($p: String!) { project(id: $p) { name } }",
            json!({"p": pid}),
        )
        .await;
    assert_eq!(
        peek["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{peek}"
    );
    let poke = w.gql(&bob, "mutation($p: ID!) { projectMutations { update(update: {id: $p, name: \"mine\"}) { name } } }", json!({"p": pid})).await;
    assert_eq!(
        poke["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{poke}"
    );
    assert!(!poke.to_string().contains("Haus"));

    // Ada makes Bob a contributor; Bob can now read and add versions, not rename the project.
    let bob_id = w.gql(&bob, "{ activeUser { id } }", json!({})).await["data"]["activeUser"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let role = w.gql(&ada, "mutation($p: String!, $u: String!) { projectMutations { updateRole(input: {projectId: $p, userId: $u, role: \"stream:contributor\"}) { team { role user { id } } } } }", json!({"p": pid, "u": bob_id})).await;
    assert_eq!(
        role["data"]["projectMutations"]["updateRole"]["team"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{role}"
    );
    let seen = w
        .gql(
            &bob,
            "query($p: String!) { project(id: $p) { name role versions { totalCount } } }",
            json!({"p": pid}),
        )
        .await;
    assert_eq!(
        seen["data"]["project"]["role"], "stream:contributor",
        "{seen}"
    );
    let rename = w.gql(&bob, "mutation($p: ID!) { projectMutations { update(update: {id: $p, name: \"mine\"}) { name } } }", json!({"p": pid})).await;
    assert_eq!(
        rename["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{rename}"
    );

    let updated = w.gql(&ada, "mutation($p: ID!, $v: ID!) { versionMutations { update(input: {projectId: $p, versionId: $v, message: \"renamed\"}) { message } } }", json!({"p": pid, "v": vid})).await;
    assert_eq!(
        updated["data"]["versionMutations"]["update"]["message"], "renamed",
        "{updated}"
    );
    let moved = w.gql(&ada, "mutation($p: ID!, $v: ID!) { versionMutations { moveToModel(input: {projectId: $p, versionIds: [$v], targetModelName: \"archive\"}) { name versions { totalCount } } } }", json!({"p": pid, "v": vid})).await;
    assert_eq!(
        moved["data"]["versionMutations"]["moveToModel"]["versions"]["totalCount"], 1,
        "{moved}"
    );
    // A new model's name is tidied as `modelMutations.create` tidies it, and is the one read back.
    let moved = w.gql(&ada, "mutation($p: ID!, $v: ID!) { versionMutations { moveToModel(input: {projectId: $p, versionIds: [$v], targetModelName: \"archive / 2025\"}) { name versions { totalCount } } } }", json!({"p": pid, "v": vid})).await;
    assert_eq!(
        moved["data"]["versionMutations"]["moveToModel"]["name"], "archive/2025",
        "{moved}"
    );
    let received = w.gql(&bob, "mutation($p: String!, $v: String!) { versionMutations { markReceived(input: {projectId: $p, versionId: $v, sourceApplication: \"rhino\"}) } }", json!({"p": pid, "v": vid})).await;
    assert_eq!(
        received["data"]["versionMutations"]["markReceived"], true,
        "{received}"
    );
    let taken = w.gql(&ada, "mutation($p: ID!) { modelMutations { create(input: {projectId: $p, name: \"ARCHIVE\"}) { id } } }", json!({"p": pid})).await;
    assert_eq!(
        taken["errors"][0]["extensions"]["code"], "BAD_REQUEST_ERROR",
        "{taken}"
    );

    let projects = w
        .gql(
            &bob,
            "{ activeUser { projects(limit: 10) { totalCount items { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        projects["data"]["activeUser"]["projects"]["totalCount"], 1,
        "{projects}"
    );
    let deleted = w
        .gql(
            &ada,
            "mutation($p: String!) { projectMutations { delete(id: $p) } }",
            json!({"p": pid}),
        )
        .await;
    assert_eq!(
        deleted["data"]["projectMutations"]["delete"], true,
        "{deleted}"
    );
    let gone = w
        .gql(
            &ada,
            "query($p: String!) { project(id: $p) { name } }",
            json!({"p": pid}),
        )
        .await;
    assert_eq!(
        gone["errors"][0]["extensions"]["code"], "STREAM_NOT_FOUND",
        "{gone}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invites_leave_profiles_and_permissions() {
    let (w, _db) = world().await;
    let (ada, _) = w.register("ada@example.com").await;
    let (bob, _) = w.register("bob@example.com").await;
    let bob_id = w.gql(&bob, "{ activeUser { id } }", json!({})).await["data"]["activeUser"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pid = w
        .gql(
            &ada,
            "mutation { projectMutations { create(input: {name: \"Team\"}) { id } } }",
            json!({}),
        )
        .await["data"]["projectMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invited = w
        .gql(&ada, "mutation($p: ID!, $u: String!) { projectMutations { invites { create(projectId: $p, input: {userId: $u, role: \"stream:reviewer\"}) { invitedTeam { inviteId role user { id } } } } } }", json!({"p": pid, "u": bob_id}))
        .await;
    let team = &invited["data"]["projectMutations"]["invites"]["create"]["invitedTeam"];
    assert_eq!(team[0]["user"]["id"], bob_id, "{invited}");
    // Only the invitee sees the token; a forged one is refused.
    let mine = w
        .gql(
            &bob,
            "{ activeUser { projectInvites { projectId token role } } }",
            json!({}),
        )
        .await;
    let token = mine["data"]["activeUser"]["projectInvites"][0]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut forged = token.clone();
    forged.replace_range(31.., if token.ends_with('0') { "1" } else { "0" });
    let use_q = "mutation($p: ID!, $t: String!) { projectMutations { invites { use(input: {projectId: $p, token: $t, accept: true}) } } }";
    let refused = w.gql(&bob, use_q, json!({"p": pid, "t": forged})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "NOT_FOUND_ERROR",
        "{refused}"
    );
    let used = w.gql(&bob, use_q, json!({"p": pid, "t": token})).await;
    assert_eq!(
        used["data"]["projectMutations"]["invites"]["use"], true,
        "{used}"
    );
    let perms = w.gql(&bob, "query($p: String!) { project(id: $p) { role permissions { canRead { authorized } canUpdate { authorized code } canPublish { authorized } canLeave { authorized } } } }", json!({"p": pid})).await;
    let p = &perms["data"]["project"];
    assert_eq!(p["role"], "stream:reviewer", "{perms}");
    assert_eq!(p["permissions"]["canRead"]["authorized"], true);
    assert_eq!(p["permissions"]["canUpdate"]["authorized"], false);
    assert_eq!(p["permissions"]["canPublish"]["authorized"], false);
    assert_eq!(p["permissions"]["canLeave"]["authorized"], true);
    // Bob leaves; Ada, the last owner, cannot.
    let left = w
        .gql(
            &bob,
            "mutation($p: String!) { projectMutations { leave(id: $p) } }",
            json!({"p": pid}),
        )
        .await;
    assert_eq!(left["data"]["projectMutations"]["leave"], true, "{left}");
    let stuck = w
        .gql(
            &ada,
            "mutation($p: String!) { projectMutations { leave(id: $p) } }",
            json!({"p": pid}),
        )
        .await;
    assert!(stuck["errors"].is_array(), "{stuck}");
    // Profiles change through the log.
    let renamed = w.gql(&bob, "mutation { activeUserMutations { update(user: {name: \"Robert\", bio: \"builds\"}) { name bio } } }", json!({})).await;
    assert_eq!(
        renamed["data"]["activeUserMutations"]["update"]["name"], "Robert",
        "{renamed}"
    );
    assert_eq!(
        renamed["data"]["activeUserMutations"]["update"]["bio"],
        "builds"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_tokens_in_the_query_string_authenticate_like_headers() {
    let (w, _db) = world().await;
    let token = tests::register(&w.app.base_url, "embed@example.com").await;
    let get = |token: String| {
        let url = w.url(&format!(
            "/graphql?query=%7BactiveUser%7Bid%20name%7D%7D&embedToken={token}"
        ));
        let http = w.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let res = get(token.clone()).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["data"]["activeUser"]["id"].is_string(), "{body}");
    // A bad embed token is refused like any bad token, even for anonymous-friendly queries.
    let res = get(format!("{}x", &token[..token.len() - 1])).await;
    assert_eq!(res.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_found_by_name_or_email() {
    let (w, _db) = world().await;
    let (token, _) = w.register("ada@example.com").await;
    tests::register(&w.app.base_url, "grace@example.com").await;
    let search = |query: &str, email_only: bool| {
        let body = json!({
            "query": "query($q: String!, $e: Boolean) { userSearch(query: $q, emailOnly: $e, limit: 10) { cursor items { id name } } }",
            "variables": {"q": query, "e": email_only}
        });
        let req = w
            .http
            .post(w.url("/graphql"))
            .bearer_auth(&token)
            .json(&body);
        async move { req.json_ok::<serde_json::Value>().await }
    };
    let found = search("LOVELACE", false).await;
    let items = found["data"]["userSearch"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{found}");
    assert_eq!(items[0]["name"], "Ada Lovelace");
    let by_email = search("grace@example.com", true).await;
    assert_eq!(
        by_email["data"]["userSearch"]["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let partial_email = search("grace@", true).await;
    assert_eq!(
        partial_email["data"]["userSearch"]["items"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "emailOnly matches whole addresses"
    );
    let wildcard = search("%%%", false).await;
    assert_eq!(
        wildcard["data"]["userSearch"]["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let short = search("ad", false).await;
    assert_eq!(
        short["errors"][0]["extensions"]["code"],
        "BAD_REQUEST_ERROR"
    );
    // The current API's `users` gives the same answer.
    let res: serde_json::Value = w
        .http
        .post(w.url("/graphql"))
        .bearer_auth(&token)
        .json(&json!({"query": "{ users(input: {query: \"lovelace\"}) { items { name } } }"}))
        .json_ok()
        .await;
    assert_eq!(res["data"]["users"]["items"][0]["name"], "Ada Lovelace");
    // Anonymous callers may not search.
    let res: serde_json::Value = w
        .http
        .post(w.url("/graphql"))
        .json(&json!({"query": "{ userSearch(query: \"lovelace\") { items { id } } }"}))
        .json_ok()
        .await;
    assert!(
        res["data"].is_null() || res["data"]["userSearch"].is_null(),
        "{res}"
    );
    assert!(!res["errors"][0]["extensions"]["code"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_tokens_are_revoked_at_once_on_every_replica() {
    let (w, db) = world().await;
    let other = TestApp::spawn(test_settings(&db)).await;
    let token = tests::register(&w.app.base_url, "cache@example.com").await;
    // A token made through the API so it can be revoked through it.
    let created: Value = w
        .http
        .post(w.url("/graphql"))
        .bearer_auth(&token)
        .json(&json!({"query": "mutation { apiTokenCreate(token: {name: \"t\", scopes: [\"profile:read\", \"tokens:write\"]}) }"}))
        .json_ok()
        .await;
    let personal = created["data"]["apiTokenCreate"]
        .as_str()
        .unwrap()
        .to_owned();
    let with = |app: &TestApp, t: &str| {
        let req = app
            .http
            .post(format!("{}/graphql", app.base_url))
            .bearer_auth(t)
            .json(&json!({"query": "{ activeUser { id } }"}));
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(with(&other, &personal).await, 200);

    // Cached: the second replica keeps trusting the token although its row is gone behind
    // the application's back (no revocation was announced).
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(&personal[..10])
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(with(&other, &personal).await, 200, "served from the cache");
    sqlx::query("UPDATE api_tokens SET expires_at = now() + interval '1 day' WHERE id = $1")
        .bind(&personal[..10])
        .execute(&db.pool)
        .await
        .unwrap();

    // A revocation through one replica is honoured by the other on the very next request.
    let revoked: Value = w
        .http
        .post(w.url("/graphql"))
        .bearer_auth(&token)
        .json(&json!({"query": "mutation($t: String!) { apiTokenRevoke(token: $t) }", "variables": {"t": personal}}))
        .json_ok()
        .await;
    assert_eq!(revoked["data"]["apiTokenRevoke"], true, "{revoked}");
    assert_eq!(with(&other, &personal).await, 403);
    assert_eq!(with(&w.app, &personal).await, 403);
    assert_eq!(with(&other, &token).await, 200, "other tokens still work");
}

#[tokio::test]
async fn admin_queries_are_for_admins_with_the_scope() {
    let (w, _db) = world().await;
    // The first account is the server admin.
    let (admin, _) = w.register("root@example.com").await;
    let (user, _) = w.register("plain@example.com").await;
    w.register("other@example.com").await;
    w.gql(
        &admin,
        "mutation { projectMutations { create(input: {name: \"p\"}) { id } } }",
        json!({}),
    )
    .await;
    let stats =
        "{ admin { serverStatistics { totalProjectCount totalUserCount totalPendingInvites } } }";
    let res = w.gql(&admin, stats, json!({})).await;
    assert_eq!(
        res["data"]["admin"]["serverStatistics"],
        json!({"totalProjectCount": 1, "totalUserCount": 3, "totalPendingInvites": 0}),
        "{res}"
    );
    let refused = w.gql(&user, stats, json!({})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );

    let list = "query($c: String, $q: String) { admin { userList(limit: 2, cursor: $c, query: $q) { totalCount cursor items { email role } } } }";
    let first = w.gql(&admin, list, json!({})).await;
    let page = &first["data"]["admin"]["userList"];
    assert_eq!(page["totalCount"], 3, "{first}");
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let second = w.gql(&admin, list, json!({"c": page["cursor"]})).await;
    let rest = &second["data"]["admin"]["userList"];
    assert_eq!(rest["items"][0]["email"], "root@example.com", "{second}");
    assert_eq!(rest["items"][0]["role"], "server:admin");
    assert_eq!(rest["cursor"], Value::Null);
    let found = w.gql(&admin, list, json!({"q": "PLAIN"})).await;
    assert_eq!(
        found["data"]["admin"]["userList"]["items"],
        json!([{"email": "plain@example.com", "role": "server:user"}])
    );
    let refused = w.gql(&user, list, json!({})).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN");
    let projects = "query($q: String, $v: String) { admin { projectList(query: $q, visibility: $v) { totalCount items { name } } } }";
    let all = w.gql(&admin, projects, json!({})).await;
    assert_eq!(
        all["data"]["admin"]["projectList"],
        json!({"totalCount": 1, "items": [{"name": "p"}]}),
        "{all}"
    );
    let none = w.gql(&admin, projects, json!({"v": "public"})).await;
    assert_eq!(none["data"]["admin"]["projectList"]["totalCount"], 0);
    let refused = w.gql(&user, projects, json!({})).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN");

    // userRoleChange: admins only; the change reaches the user's already cached token at once.
    let me = w.gql(&user, "{ activeUser { id role } }", json!({})).await;
    let user_id = me["data"]["activeUser"]["id"].as_str().unwrap().to_owned();
    let change = "mutation($id: String!, $r: String!) { userRoleChange(userRoleInput: {id: $id, role: $r}) }";
    let refused = w
        .gql(&user, change, json!({"id": user_id, "r": "server:admin"}))
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let guests_off = w
        .gql(&admin, change, json!({"id": user_id, "r": "server:guest"}))
        .await;
    assert!(
        guests_off["errors"][0]["message"].is_string(),
        "{guests_off}"
    );
    let archived = w
        .gql(
            &admin,
            change,
            json!({"id": user_id, "r": "server:archived-user"}),
        )
        .await;
    assert_eq!(archived["data"]["userRoleChange"], true, "{archived}");
    let me = w.gql(&user, "{ activeUser { role } }", json!({})).await;
    assert_eq!(
        me["data"]["activeUser"]["role"], "server:archived-user",
        "{me}"
    );
    // Searches leave archived users out unless asked for them.
    let search = "query($a: Boolean) { userSearch(query: \"plain@example.com\", emailOnly: true, archived: $a) { items { id } } }";
    for (archived, found) in [(false, 0), (true, 1)] {
        let res = w.gql(&admin, search, json!({"a": archived})).await;
        assert_eq!(
            res["data"]["userSearch"]["items"].as_array().map(Vec::len),
            Some(found),
            "archived: {archived}: {res}"
        );
    }
}

#[tokio::test]
async fn admin_invite_list_shows_invited_people_without_an_account() {
    let (w, _db) = world().await;
    let (admin, _) = w.register("root@example.com").await;
    let (user, _) = w.register("plain@example.com").await;
    let me = w.gql(&user, "{ activeUser { id } }", json!({})).await;
    let user_id = me["data"]["activeUser"]["id"].as_str().unwrap().to_owned();
    let created = w
        .gql(
            &admin,
            "mutation { projectMutations { create(input: {name: \"p\"}) { id } } }",
            json!({}),
        )
        .await;
    let pid = created["data"]["projectMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invite = "mutation($p: ID!, $i: ProjectInviteCreateInput!) { projectMutations { invites { create(projectId: $p, input: $i) { id } } } }";
    for input in [
        json!({"email": "ann@example.com"}),
        json!({"email": "bob@example.com"}),
        // An existing user's invite is not a server invite.
        json!({"userId": user_id}),
    ] {
        let res = w.gql(&admin, invite, json!({"p": pid, "i": input})).await;
        assert!(res.get("errors").is_none(), "{res}");
    }
    let list = "query($c: String, $q: String) { admin { inviteList(limit: 1, cursor: $c, query: $q) { totalCount cursor items { email invitedBy { name } } } } }";
    let first = w.gql(&admin, list, json!({})).await;
    let page = &first["data"]["admin"]["inviteList"];
    assert_eq!(page["totalCount"], 2, "{first}");
    assert_eq!(page["items"][0]["email"], "bob@example.com", "newest first");
    assert_eq!(page["items"][0]["invitedBy"]["name"], "Ada Lovelace");
    let second = w.gql(&admin, list, json!({"c": page["cursor"]})).await;
    let rest = &second["data"]["admin"]["inviteList"];
    assert_eq!(rest["items"][0]["email"], "ann@example.com", "{second}");
    let end = w.gql(&admin, list, json!({"c": rest["cursor"]})).await;
    assert_eq!(
        end["data"]["admin"]["inviteList"]["items"],
        json!([]),
        "{end}"
    );
    let found = w.gql(&admin, list, json!({"q": "ANN"})).await;
    assert_eq!(
        found["data"]["admin"]["inviteList"]["totalCount"], 1,
        "{found}"
    );
    let refused = w.gql(&user, list, json!({})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
}

#[tokio::test]
async fn registered_apps_authorize_users_and_lose_their_tokens_when_changed() {
    let (w, _db) = world().await;
    w.register("first@example.com").await;
    let (author, _) = w.register("author@example.com").await;
    let (user, _) = w.register("user@example.com").await;
    let create = "mutation($s: [String]!) { appCreate(app: {name: \"Viewer Pro\", description: \"d\", redirectUrl: \"http://app.example/cb\", scopes: $s, public: true}) }";
    let created = w
        .gql(
            &author,
            create,
            json!({"s": ["streams:read", "profile:read"]}),
        )
        .await;
    let app_id = created["data"]["appCreate"].as_str().unwrap().to_owned();
    let unknown = w.gql(&author, create, json!({"s": ["nope:nope"]})).await;
    assert_eq!(
        unknown["errors"][0]["extensions"]["code"],
        "BAD_REQUEST_ERROR"
    );

    let read = "query($id: String!) { app(id: $id) { id name secret redirectUrl scopes { name } author { id } } }";
    let mine = w.gql(&author, read, json!({"id": app_id})).await;
    let secret = mine["data"]["app"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        mine["data"]["app"]["scopes"],
        json!([{"name": "streams:read"}, {"name": "profile:read"}])
    );
    let theirs = w.gql(&user, read, json!({"id": app_id})).await;
    assert_eq!(
        theirs["data"]["app"]["secret"],
        Value::Null,
        "the secret is the author's"
    );
    let listed = w.gql(&user, "{ apps { id } }", json!({})).await;
    let ids: Vec<&str> = listed["data"]["apps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"spklwebapp") && ids.contains(&app_id.as_str()),
        "{listed}"
    );

    // The user authorizes the app and the app trades the code for a token of its scopes.
    let res = w
        .http
        .get(w.url(&format!("/auth/accesscode?appId={app_id}&challenge=xyz")))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("http://app.example/cb?access_code="),
        "{location}"
    );
    let code = location.rsplit('=').next().unwrap().to_owned();
    let wrong = w
        .http
        .post(w.url("/auth/token"))
        .json(&json!({"appId": app_id, "appSecret": "0000000000", "accessCode": code, "challenge": "xyz"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let code = {
        let res = w
            .http
            .get(w.url(&format!("/auth/accesscode?appId={app_id}&challenge=xyz")))
            .bearer_auth(&user)
            .send()
            .await
            .unwrap();
        res.headers()["location"]
            .to_str()
            .unwrap()
            .rsplit('=')
            .next()
            .unwrap()
            .to_owned()
    };
    let tokens: Value = w
        .http
        .post(w.url("/auth/token"))
        .json(
            &json!({"appId": app_id, "appSecret": secret, "accessCode": code, "challenge": "xyz"}),
        )
        .json_ok()
        .await;
    let app_token = tokens["token"].as_str().unwrap().to_owned();
    let me = w
        .gql(&app_token, "{ activeUser { email } }", json!({}))
        .await;
    assert_eq!(
        me["data"]["activeUser"]["email"],
        Value::Null,
        "no profile:email scope"
    );
    let write = w
        .gql(
            &app_token,
            "mutation { projectMutations { create(input: {name: \"x\"}) { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        write["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{write}"
    );
    let authorized = w
        .gql(&user, "{ activeUser { authorizedApps { id } } }", json!({}))
        .await;
    assert!(
        authorized["data"]["activeUser"]["authorizedApps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == app_id.as_str()),
        "{authorized}"
    );

    // Only the author (or an admin) changes it; a change ends every token the app holds.
    let update = "mutation($id: String!) { appUpdate(app: {id: $id, name: \"Viewer Pro 2\", description: \"d\", redirectUrl: \"http://app.example/cb\", scopes: [\"streams:read\"]}) }";
    let refused = w.gql(&user, update, json!({"id": app_id})).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN");
    let default_app = w.gql(&author, update, json!({"id": "spklwebapp"})).await;
    assert_eq!(default_app["errors"][0]["extensions"]["code"], "FORBIDDEN");
    let updated = w.gql(&author, update, json!({"id": app_id})).await;
    assert_eq!(updated["data"]["appUpdate"], true, "{updated}");
    let after = w
        .http
        .post(w.url("/graphql"))
        .bearer_auth(&app_token)
        .json(&json!({"query": "{ activeUser { id } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 403);
    let deleted = w
        .gql(
            &author,
            "mutation($id: String!) { appDelete(appId: $id) }",
            json!({"id": app_id}),
        )
        .await;
    assert_eq!(deleted["data"]["appDelete"], true);
    let gone = w.gql(&author, read, json!({"id": app_id})).await;
    assert_eq!(gone["data"]["app"], Value::Null);
}

#[tokio::test]
async fn an_invite_only_server_registers_only_the_invited() {
    let db = TestDb::new().await;
    let settings = command_service::config::Settings {
        invite_only: true,
        ..test_settings(&db)
    };
    let (app, _guard) = tests::spawn_stack(&db, settings).await;
    let w = World {
        app,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _cancel: _guard,
    };
    let (owner, _) = w.register("owner@example.com").await;
    let register = |email: &'static str, token: Option<String>| {
        let url = match &token {
            Some(t) => w.url(&format!("/auth/local/register?challenge=c&token={t}")),
            None => w.url("/auth/local/register?challenge=c"),
        };
        let req = w.http.post(url).form(&[
            ("email", email),
            ("password", "correct horse"),
            ("name", "Newcomer"),
        ]);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(register("stranger@example.com", None).await, 403);

    let created = w
        .gql(
            &owner,
            "mutation { projectMutations { create(input: {name: \"p\"}) { id } } }",
            json!({}),
        )
        .await;
    let pid = created["data"]["projectMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let invited = w
        .gql(
            &owner,
            "mutation($p: ID!) { projectMutations { invites { create(projectId: $p, input: {email: \"invited@example.com\"}) { invitedTeam { inviteId } } } } }",
            json!({"p": pid}),
        )
        .await;
    let invite_id =
        invited["data"]["projectMutations"]["invites"]["create"]["invitedTeam"][0]["inviteId"]
            .as_str()
            .unwrap_or_else(|| panic!("{invited}"))
            .to_owned();
    let token = w.app.state.accounts().invite_token(&invite_id).unwrap();
    // The token is the addressee's: a forged tag, or another address, does not open the door.
    let forged = format!("{invite_id}{}", "0".repeat(22));
    assert_eq!(register("invited@example.com", Some(forged)).await, 403);
    assert_eq!(
        register("someone-else@example.com", Some(token.clone())).await,
        403
    );
    assert_eq!(register("invited@example.com", Some(token)).await, 302);
}

#[tokio::test]
async fn a_users_project_list_is_theirs_and_their_admins_alone() {
    let (w, _db) = world().await;
    let (admin, _) = w.register("root@example.com").await;
    let (owner, _) = w.register("owner@example.com").await;
    let (other, _) = w.register("other@example.com").await;
    w.gql(
        &owner,
        "mutation { projectMutations { create(input: {name: \"hidden plans\"}) { id } } }",
        json!({}),
    )
    .await;
    let me = w.gql(&owner, "{ activeUser { id } }", json!({})).await;
    let owner_id = me["data"]["activeUser"]["id"].as_str().unwrap().to_owned();
    let list = "query($id: String) { user(id: $id) { projects { totalCount items { name } } } }";
    for token in [&owner, &admin] {
        let res = w.gql(token, list, json!({"id": owner_id})).await;
        assert_eq!(res["data"]["user"]["projects"]["totalCount"], 1, "{res}");
    }
    let refused = w.gql(&other, list, json!({"id": owner_id})).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    assert!(!refused.to_string().contains("hidden plans"), "{refused}");
}

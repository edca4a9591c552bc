//! Erasure: deleting an account (`userDelete`, `adminDeleteUser`) ends the person's
//! memberships through events, deletes the projects they alone owned (as the original), and
//! destroys their data keys, so no read model, GraphQL answer, history line, replay, export or
//! rebuild holds their email or name any more, while chains and seals still verify.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use command_service::audit::{AsOf, HistoryFilter, history, replay};
use command_service::commands::{CommandBus, ProjectAggregate};
use schema::EventLog;
use schema::audit::{self, SigningKey};
use serde_json::{Value, json};
use tests::{RequestExt, TestApp, TestDb, test_settings};

const EMAIL: &str = "zephyrine.quill@example.com";
const NAME: &str = "Zephyrine Quillfeather";
const COMPANY: &str = "Quillworks Cartography";
const BIO: &str = "maps-of-7781-islands";

/// What must be found nowhere after the erasure (compared lower-cased).
fn markers() -> Vec<String> {
    [EMAIL, NAME, COMPANY, BIO].map(str::to_lowercase).to_vec()
}

struct World {
    app: TestApp,
    db: TestDb,
    _stack: tokio_util::sync::DropGuard,
}

impl World {
    /// A stack on a fresh schema, and the token of its first account (the server admin).
    async fn new() -> (World, String) {
        let db = TestDb::new().await;
        let (app, stack) = tests::spawn_stack(&db, test_settings(&db)).await;
        let admin = tests::register(&app.base_url, "admin@example.com").await;
        let w = World {
            app,
            db,
            _stack: stack,
        };
        (w, admin)
    }

    async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        self.app.gql_data(token, query, variables).await
    }

    async fn raw(&self, token: &str, query: &str, variables: Value) -> Value {
        self.app.gql(token, query, variables).await
    }

    /// Asserts that the deleted account's `token` works no more and that `project`, which it
    /// alone owned, is gone for `admin` too.
    async fn assert_gone(&self, token: &str, admin: &str, project: &str) {
        let gone = self.raw(token, "{ activeUser { id } }", json!({})).await;
        assert!(gone["data"]["activeUser"].is_null(), "{gone}");
        let answer = self
            .raw(
                admin,
                "query($p: String!) { project(id: $p) { id } }",
                json!({"p": project}),
            )
            .await;
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "STREAM_NOT_FOUND",
            "{answer}"
        );
    }

    /// Asserts that no table but the event log mentions one of `markers`.
    async fn assert_no_traces_outside_the_log(&self, markers: &[String]) {
        let outside_the_log: Vec<String> = self
            .traces_of(markers)
            .await
            .into_iter()
            .filter(|t| !t.starts_with("events:"))
            .collect();
        assert_eq!(outside_the_log, Vec::<String>::new());
    }

    /// Rebuilds every read model from the first event.
    async fn rebuild_all(&self) {
        for projection in projections::registry() {
            projections::rebuild(
                &self.db.pool,
                projection.as_ref(),
                &projections::RebuildOptions::default(),
                &|_, _| {},
            )
            .await
            .unwrap();
        }
    }

    /// Asserts that no history line of `project`, and no replay as of any of them, mentions
    /// one of `markers`.
    async fn assert_history_forgets(&self, project: &str, markers: &[String]) {
        let log = EventLog::new(self.db.pool.clone());
        for line in history(&log, project, &HistoryFilter::default())
            .await
            .unwrap()
        {
            assert!(
                mentions_of(&serde_json::to_string(&line).unwrap(), markers).is_empty(),
                "{line:?}"
            );
            let (view, _) = replay(&log, project, AsOf::Position(line.position))
                .await
                .unwrap()
                .unwrap();
            assert!(
                mentions_of(&serde_json::to_string(&view).unwrap(), markers).is_empty(),
                "{project} at {}: {view:?}",
                line.position
            );
        }
    }

    /// Every table of the test's schema whose rows mention one of Zed's markers.
    async fn traces(&self) -> Vec<String> {
        self.traces_of(&markers()).await
    }

    /// Every table of the test's schema whose rows mention one of `markers`.
    async fn traces_of(&self, markers: &[String]) -> Vec<String> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap();
        let mut found = Vec::new();
        for table in tables {
            for marker in markers {
                let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM \"{table}\" t WHERE strpos(lower(t::text), $1) > 0"
                )))
                .bind(marker)
                .fetch_one(&self.db.pool)
                .await
                .unwrap();
                if n > 0 {
                    found.push(format!("{table}: {n} rows mention {marker:?}"));
                }
            }
        }
        found
    }
}

fn mentions(text: &str) -> Vec<String> {
    mentions_of(text, &markers())
}

fn mentions_of(text: &str, markers: &[String]) -> Vec<String> {
    let text = text.to_lowercase();
    markers
        .iter()
        .filter(|&m| text.contains(m.as_str()))
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_deleted_account_leaves_no_personal_trace_and_the_log_still_verifies() {
    let (w, admin) = World::new().await;
    let admin_id = w.app.user_id(&admin).await;
    let zed = tests::register(&w.app.base_url, EMAIL).await;
    let zed_id = w.app.user_id(&zed).await;
    w.ok(
        &zed,
        "mutation($u: UserUpdateInput!) { activeUserMutations { update(user: $u) { id } } }",
        json!({"u": {"name": NAME, "company": COMPANY, "bio": BIO}}),
    )
    .await;
    let other = tests::register(&w.app.base_url, "other@example.com").await;

    // A project Zed alone owns (the admin a contributor in it): deleted with Zed.
    let (solo, _) = w.app.project_with_model(&zed, "solo").await;
    let role = "mutation($p: String!, $u: String!, $r: String) { projectMutations { updateRole(input: {projectId: $p, userId: $u, role: $r}) { id } } }";
    w.ok(
        &zed,
        role,
        json!({"p": solo, "u": admin_id, "r": "stream:contributor"}),
    )
    .await;
    // A project Zed co-owns and sent a version to: Zed leaves it, the version stays.
    let (shared, model) = w.app.project_with_model(&admin, "shared").await;
    w.ok(
        &admin,
        role,
        json!({"p": shared, "u": zed_id, "r": "stream:owner"}),
    )
    .await;
    let version = w
        .app
        .version_on(
            &zed,
            (&shared, &model),
            "0123456789abcdef0123456789abcdef",
            json!({"message": "survey"}),
        )
        .await;
    // A pending invite to Zed's address on a third project: cancelled with the account.
    let (third, _) = w.app.project_with_model(&admin, "third").await;
    w.ok(
        &admin,
        "mutation($p: ID!, $e: String!) { projectMutations { invites { create(projectId: $p, input: {email: $e}) { id } } } }",
        json!({"p": third, "e": EMAIL}),
    )
    .await;
    // A webhook delivery body frozen with Zed as the actor (the worker's copy).
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, project_id, event_name, body) \
         VALUES ('d1', 'w1', $1, 'commit_create', $2)",
    )
    .bind(&shared)
    .bind(
        json!({"payload": {"userId": zed_id, "user": {"id": zed_id, "name": NAME, "company": COMPANY, "bio": BIO}}})
            .to_string(),
    )
    .execute(&w.db.pool)
    .await
    .unwrap();
    let log = EventLog::new(w.db.pool.clone());
    // As-of snapshots made while the invite was pending (the view lists the address).
    let before = sqlx::query_scalar::<_, i64>("SELECT max(position) FROM events")
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    let (then, _) = replay(&log, &third, AsOf::Position(before))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        mentions(&serde_json::to_string(&then).unwrap()),
        [EMAIL.to_lowercase()],
        "before the erasure the replay shows the invited address"
    );
    sqlx::query(
        "INSERT INTO audit_snapshots (project_id, fold_version, stream_version, position, recorded_at, view) \
         VALUES ($1, 1, 1, 1, now(), $2)",
    )
    .bind(&third)
    .bind(serde_json::to_value(&then).unwrap())
    .execute(&w.db.pool)
    .await
    .unwrap();
    // A stored snapshot of the project's command state, taken by a command bus while the
    // invite was pending (the state holds the address the invite went to).
    CommandBus::new(log.clone(), &[], std::time::Duration::from_secs(5))
        .with_snapshots(1)
        .read::<ProjectAggregate, _>(&third, |_| ())
        .await
        .unwrap();
    let snapshotted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM aggregate_snapshots WHERE strpos(lower(state), $1) > 0",
    )
    .bind(EMAIL.to_lowercase())
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(snapshotted, 1, "the snapshot holds the invited address");

    // The log itself never held the personal fields in clear.
    let in_log: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE strpos(lower(payload::text), $1) > 0 \
         OR strpos(lower(metadata::text), $1) > 0",
    )
    .bind(EMAIL.to_lowercase())
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(in_log, 0, "the address is sealed in the log");
    assert!(
        !w.traces().await.is_empty(),
        "before the erasure the read models show the person"
    );
    let key = SigningKey::from_hex(&"42".repeat(32)).unwrap();
    let trusted = hex::decode(key.public_key_hex()).unwrap();
    audit::seal(&w.db.pool, &key).await.unwrap().unwrap();
    let export_before = {
        let mut out = Vec::new();
        audit::export(&w.db.pool, None, &mut out).await.unwrap();
        out
    };

    // Refusals: another user cannot delete Zed; Zed must confirm with email and password.
    let refused = w
        .raw(
            &other,
            "mutation($e: String) { adminDeleteUser(userConfirmation: {email: $e}) }",
            json!({"e": EMAIL}),
        )
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let delete = "mutation($e: String, $pw: String) { userDelete(userConfirmation: {email: $e, password: $pw}) }";
    for (email, password) in [
        ("other@example.com", "correct horse"),
        (EMAIL, "wrong horse"),
    ] {
        let refused = w
            .raw(&zed, delete, json!({"e": email, "pw": password}))
            .await;
        assert_eq!(
            refused["errors"][0]["extensions"]["code"], "BAD_REQUEST_ERROR",
            "{refused}"
        );
    }
    assert_eq!(w.app.user_id(&zed).await, zed_id, "nothing changed yet");

    let done = w
        .ok(&zed, delete, json!({"e": EMAIL, "pw": "correct horse"}))
        .await;
    assert_eq!(done["userDelete"], true);

    // Its token no longer works; the account, its solo project and its membership are gone.
    w.assert_gone(&zed, &admin, &solo).await;
    let seen = w
        .ok(
            &admin,
            "query($p: String!, $u: String!, $v: String!) { otherUser(id: $u) { id name } project(id: $p) { team { user { id name } } invitedTeam { inviteId } version(id: $v) { id message authorUser { id name } } } }",
            json!({"p": shared, "u": zed_id, "v": version}),
        )
        .await;
    assert!(seen["otherUser"].is_null(), "{seen}");
    let team: Vec<&str> = seen["project"]["team"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(team, [admin_id.as_str()]);
    assert_eq!(seen["project"]["version"]["message"], "survey", "{seen}");
    assert!(mentions(&seen.to_string()).is_empty(), "{seen}");
    let invites = w
        .ok(
            &admin,
            "query($p: String!) { project(id: $p) { invitedTeam { inviteId } } }",
            json!({"p": third}),
        )
        .await;
    assert_eq!(invites["project"]["invitedTeam"], json!([]), "{invites}");
    // The admin's user list does not show the person either.
    let listed = w
        .ok(
            &admin,
            "{ admin { userList(limit: 50) { items { id name email } } } }",
            json!({}),
        )
        .await;
    assert!(mentions(&listed.to_string()).is_empty(), "{listed}");
    assert!(!listed.to_string().contains(&zed_id), "{listed}");

    // No table holds the person's email, name, company or bio.
    assert_eq!(w.traces().await, Vec::<String>::new());
    // Not in any project's history, replay (at every moment) or the export.
    for project in [&solo, &shared, &third] {
        w.assert_history_forgets(project, &markers()).await;
    }
    let mut export_after = Vec::new();
    audit::export(&w.db.pool, None, &mut export_after)
        .await
        .unwrap();
    assert!(mentions(&String::from_utf8_lossy(&export_after)).is_empty());
    assert!(mentions(&String::from_utf8_lossy(&export_before)).is_empty());

    // The log is untouched: chains and the seal taken before the erasure verify, online and
    // offline.
    assert!(log.verify_chains(None).await.unwrap().breaks.is_empty());
    assert!(tests::seals_verify(&w.db.pool, &trusted).await);
    let offline = audit::verify_file(export_after.as_slice(), &trusted).unwrap();
    assert!(offline.ok() && offline.seals_checked, "{offline:?}");

    // A rebuild from the first event shows the person as deleted too.
    w.rebuild_all().await;
    assert_eq!(w.traces().await, Vec::<String>::new());
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE id = $1")
        .bind(&zed_id)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(users, 0);
}

#[tokio::test]
async fn an_admin_deletes_an_account_but_the_last_admin_stays() {
    let (w, admin) = World::new().await;
    let admin_id = w.app.user_id(&admin).await;
    let bob = tests::register(&w.app.base_url, "bob@example.com").await;
    let bob_id = w.app.user_id(&bob).await;
    let (p, _) = w.app.project_with_model(&bob, "bobs").await;
    let admin_delete = "mutation($e: String) { adminDeleteUser(userConfirmation: {email: $e}) }";
    let missing = w
        .raw(&admin, admin_delete, json!({"e": "nobody@example.com"}))
        .await;
    assert_eq!(
        missing["errors"][0]["extensions"]["code"], "NOT_FOUND_ERROR",
        "{missing}"
    );
    // The last admin cannot be deleted, by themselves or anyone; nothing changes.
    let last = w
        .raw(
            &admin,
            "mutation { userDelete(userConfirmation: {email: \"admin@example.com\", password: \"correct horse\"}) }",
            json!({}),
        )
        .await;
    assert_eq!(
        last["errors"][0]["extensions"]["code"], "BAD_REQUEST_ERROR",
        "{last}"
    );
    assert_eq!(w.app.user_id(&admin).await, admin_id);

    let done = w
        .ok(&admin, admin_delete, json!({"e": "BOB@example.com "}))
        .await;
    assert_eq!(done["adminDeleteUser"], true);
    w.assert_gone(&bob, &admin, &p).await;
    // The address is free again: a new account may take it, and is someone else.
    let again = tests::register(&w.app.base_url, "bob@example.com").await;
    assert_ne!(w.app.user_id(&again).await, bob_id);
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM personal_keys WHERE subject = $1")
        .bind(format!("user:{bob_id}"))
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(keys, 0, "the deleted account's key is destroyed");
}

/// Appends `events` as they were stored before personal fields were sealed: in clear, through
/// the log's SQL function directly.
async fn append_in_clear(db: &TestDb, stream: &str, events: &[(&str, Value)]) -> schema::LogCursor {
    let types: Vec<&str> = events.iter().map(|(t, _)| *t).collect();
    let versions: Vec<i32> = events.iter().map(|_| 1).collect();
    let payloads: Vec<&Value> = events.iter().map(|(_, p)| p).collect();
    let row: (String, i64) = sqlx::query_as(
        "SELECT out_transaction_id, out_position FROM append_events($1, -1, NULL, $2, $3, $4, '{}'::jsonb) \
         ORDER BY out_position DESC LIMIT 1",
    )
    .bind(stream)
    .bind(&types)
    .bind(&versions)
    .bind(&payloads)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    schema::LogCursor {
        transaction_id: row.0.parse().unwrap(),
        position: row.1,
    }
}

#[tokio::test]
async fn personal_data_written_in_clear_before_sealing_is_forgotten_by_every_reader() {
    let (w, admin) = World::new().await;
    let (p, _) = w.app.project_with_model(&admin, "legacy").await;
    let admin_id = w.app.user_id(&admin).await;
    // An account and an invite to its address, as an older strata stored them.
    let (id, email, name) = ("00000000a1", "lena.legacy@example.com", "Lena Oldwrite");
    let markers = vec![email.to_owned(), name.to_lowercase()];
    sqlx::query("INSERT INTO user_emails (email, user_id) VALUES ($1, $2)")
        .bind(email)
        .bind(id)
        .execute(&w.db.pool)
        .await
        .unwrap();
    append_in_clear(
        &w.db,
        &format!("user:{id}"),
        &[(
            "UserCreated",
            json!({"userId": id, "email": email, "name": name, "company": null, "serverRole": "server:user"}),
        )],
    )
    .await;
    let last = append_in_clear(
        &w.db,
        &format!("project:{p}"),
        &[(
            "ProjectInviteCreated",
            json!({"projectId": p, "inviteId": "00000000b1", "target": {"email": email}, "role": "stream:contributor", "invitedBy": admin_id}),
        )],
    )
    .await;
    projections::wait_for(
        &w.db.pool,
        &["speckle", "mail"],
        last,
        std::time::Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(
        !w.traces_of(&markers).await.is_empty(),
        "the read models show the person"
    );
    let log = EventLog::new(w.db.pool.clone());

    let done = w
        .ok(
            &admin,
            "mutation($e: String) { adminDeleteUser(userConfirmation: {email: $e}) }",
            json!({"e": email}),
        )
        .await;
    assert_eq!(done["adminDeleteUser"], true);

    // Tables other than the log: nothing. Replays and history: nothing, at every moment.
    w.assert_no_traces_outside_the_log(&markers).await;
    w.assert_history_forgets(&p, &markers).await;
    w.rebuild_all().await;
    w.assert_no_traces_outside_the_log(&markers).await;
    // The log itself is never edited: what an older version wrote in clear stays in its bytes
    // (and in exports), so its chains still verify. ARCHITECTURE.md says so.
    let mut export = Vec::new();
    audit::export(&w.db.pool, None, &mut export).await.unwrap();
    assert!(!mentions_of(&String::from_utf8_lossy(&export), &markers).is_empty());
    assert!(log.verify_chains(None).await.unwrap().breaks.is_empty());
}

#[tokio::test]
async fn a_person_deletes_their_account_from_the_profile_page() {
    let (w, _admin) = World::new().await;
    let ann = tests::register(&w.app.base_url, "ann@example.com").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let csrf = "00112233445566778899aabbccddeeff";
    let submit = |password: &'static str| {
        http.post(format!("{}/settings/user/delete", w.app.base_url))
            .header(
                "cookie",
                format!("strata_session={ann}; strata_csrf={csrf}"),
            )
            .form(&[
                ("email", "ann@example.com"),
                ("password", password),
                ("csrf", csrf),
            ])
            .send()
    };
    let page = http
        .get(format!("{}/settings/user/profile", w.app.base_url))
        .header("cookie", format!("strata_session={ann}"))
        .text_ok()
        .await;
    assert!(page.contains("action=\"/settings/user/delete\""), "{page}");
    // A wrong password is refused on the page, and nothing changes.
    let refused = submit("wrong horse").await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("password does not match")
    );
    let still = w.ok(&ann, "{ activeUser { email } }", json!({})).await;
    assert_eq!(still["activeUser"]["email"], "ann@example.com");
    // The right one deletes the account and ends the session.
    let done = submit("correct horse").await.unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], "/authn/login");
    let cookie = done.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("strata_session=;"), "{cookie}");
    let gone = w.raw(&ann, "{ activeUser { id } }", json!({})).await;
    assert!(gone["data"]["activeUser"].is_null(), "{gone}");
}

//! Audit: a project's history and its state as of any moment, folded from the log alone; an
//! export verified offline; seals; and tampering (a payload byte changed, an event deleted,
//! two events reordered, a chain recomputed after a change) found and named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use command_service::audit::{AsOf, HistoryFilter, history, replay};
use schema::audit::{self, SigningKey};
use schema::{EventLog, chain};
use serde_json::{Value, json};
use sqlx::Row;
use tests::{TestApp, TestDb, test_settings};

struct World {
    app: TestApp,
    db: TestDb,
    owner_token: std::sync::Mutex<Option<String>>,
    _stack: tokio_util::sync::DropGuard,
}

async fn world() -> World {
    let db = TestDb::new().await;
    let (app, stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    World {
        app,
        db,
        owner_token: std::sync::Mutex::new(None),
        _stack: stack,
    }
}

impl World {
    async fn ok(&self, token: &str, query: &str, variables: Value) -> Value {
        self.app.gql_data(token, query, variables).await
    }

    /// A project with a real history; returns (project, owner id, member id, deleted version,
    /// position just before the version was deleted).
    async fn history(&self) -> (String, String, String, String, i64) {
        let owner = tests::register(&self.app.base_url, "owner@example.com").await;
        *self.owner_token.lock().unwrap() = Some(owner.clone());
        let member = tests::register(&self.app.base_url, "member@example.com").await;
        let (owner_id, member_id) = (
            self.app.user_id(&owner).await,
            self.app.user_id(&member).await,
        );
        let (p, model) = self.app.project_with_model(&owner, "A").await;
        self.ok(
            &owner,
            "mutation($p: String!) { projectMutations { update(update: {id: $p, name: \"Tower\"}) { id } } }",
            json!({"p": p}),
        )
        .await;
        self.ok(
            &owner,
            "mutation($p: ID!, $m: ID!) { modelMutations { update(input: {projectId: $p, id: $m, name: \"B\"}) { id } } }",
            json!({"p": p, "m": model}),
        )
        .await;
        for role in ["stream:contributor", "stream:owner"] {
            self.ok(
                &owner,
                "mutation($p: String!, $u: String!, $r: String) { projectMutations { updateRole(input: {projectId: $p, userId: $u, role: $r}) { id } } }",
                json!({"p": p, "u": member_id, "r": role}),
            )
            .await;
        }
        let root = "0123456789abcdef0123456789abcdef";
        tests::store_object(&self.app.base_url, &owner, &p, root).await;
        let version = self
            .ok(
                &owner,
                "mutation($p: String!, $m: String!, $o: String!) { versionMutations { create(input: {projectId: $p, modelId: $m, objectId: $o, message: \"first\", sourceApplication: \"rhino\"}) { id } } }",
                json!({"p": p, "m": model, "o": root}),
            )
            .await["versionMutations"]["create"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        self.ok(
            &owner,
            "mutation($p: ID!, $v: ID!) { versionMutations { moveToModel(input: {projectId: $p, versionIds: [$v], targetModelName: \"archive\"}) { id } } }",
            json!({"p": p, "v": version}),
        )
        .await;
        self.ok(
            &owner,
            "mutation($w: WebhookCreateInput!) { webhookCreate(webhook: $w) }",
            json!({"w": {"streamId": p, "url": "https://example.com/hook", "triggers": ["commit_create"], "secret": "s3cret-value", "description": "ci"}}),
        )
        .await;
        let before_delete = self.last_position(&p).await;
        self.ok(
            &owner,
            "mutation($p: String!, $v: String!) { versionMutations { delete(input: {projectId: $p, versionIds: [$v]}) } }",
            json!({"p": p, "v": version}),
        )
        .await;
        (p, owner_id, member_id, version, before_delete)
    }

    async fn last_position(&self, project: &str) -> i64 {
        sqlx::query_scalar("SELECT max(position) FROM events WHERE stream_id = $1")
            .bind(format!("project:{project}"))
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    async fn export(&self, project: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        audit::export(&self.db.pool, project, &mut out)
            .await
            .unwrap();
        out
    }

    /// Runs `sql` with the immutability trigger off, as a database superuser could.
    async fn tamper(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete; {sql}; \
             ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;"
        )))
        .execute(&self.db.pool)
        .await
        .unwrap();
    }

    async fn position_of(&self, stream: &str, version: i64) -> i64 {
        sqlx::query_scalar(
            "SELECT position FROM events WHERE stream_id = $1 AND stream_version = $2",
        )
        .bind(stream)
        .bind(version)
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn history_and_replay_show_who_changed_what_and_the_project_as_it_was() {
    let w = world().await;
    let (p, owner, member, version, before_delete) = w.history().await;
    let log = EventLog::new(w.db.pool.clone());

    let all = history(&log, &p, &HistoryFilter::default()).await.unwrap();
    let lines: Vec<&str> = all.iter().map(|e| e.summary.as_str()).collect();
    for expected in [
        "project \"test\" created",
        "model \"a\" created",
        "project renamed from \"test\" to \"Tower\"",
        "model renamed from \"a\" to \"b\"",
        &format!("member {member} added as stream:contributor"),
        &format!("member {member} role stream:contributor → stream:owner"),
        &format!("version {version} created in \"b\" from rhino"),
        &format!("version {version} moved from \"b\" to \"archive\""),
        "webhook to https://example.com/hook created",
        &format!("version {version} deleted"),
    ] {
        assert!(
            lines.contains(&expected),
            "{expected:?} missing from {lines:#?}"
        );
    }
    assert!(
        all.iter()
            .all(|e| e.actor_user_id.as_deref() == Some(owner.as_str()))
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let only = history(
        &log,
        &p,
        &HistoryFilter {
            types: vec!["VersionDeleted".into()],
            ..HistoryFilter::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(only.len(), 1);
    let nobody = history(
        &log,
        &p,
        &HistoryFilter {
            actor: Some(member.clone()),
            ..HistoryFilter::default()
        },
    )
    .await
    .unwrap();
    assert!(nobody.is_empty());

    // As it was before the version was deleted: the version, in the model it was moved to,
    // with its message and object; the webhook without its secret. Now: no version.
    let (then, at) = replay(&log, &p, AsOf::Position(before_delete))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at, before_delete);
    assert_eq!(then.name, "Tower");
    let v = &then.versions[&version];
    assert_eq!(v.message.as_deref(), Some("first"));
    assert_eq!(v.referenced_object, "0123456789abcdef0123456789abcdef");
    assert_eq!(then.models[&v.model_id].name, "archive");
    assert_eq!(then.team.len(), 2);
    let text = serde_json::to_string(&then).unwrap();
    assert!(!text.contains("s3cret-value"));
    let (now, _) = replay(&log, &p, AsOf::Position(i64::MAX))
        .await
        .unwrap()
        .unwrap();
    assert!(now.versions.is_empty());
    // The same over GraphQL, for the project's owner.
    let owner_token = w.owner_token.lock().unwrap().clone().unwrap();
    let page = w
        .ok(
            &owner_token,
            "query($p: String!) { project(id: $p) { history(limit: 3) { totalCount cursor items { position summary actorUserId } } } }",
            json!({"p": p}),
        )
        .await;
    let h = &page["project"]["history"];
    assert_eq!(h["totalCount"], all.len() as i64);
    assert_eq!(h["items"][0]["summary"], "project \"test\" created");
    let next = w
        .ok(
            &owner_token,
            "query($p: String!, $c: String) { project(id: $p) { history(limit: 500, cursor: $c) { items { summary } } } }",
            json!({"p": p, "c": h["cursor"]}),
        )
        .await;
    assert_eq!(
        next["project"]["history"]["items"]
            .as_array()
            .unwrap()
            .len(),
        all.len() - 3
    );
    let as_of = w
        .ok(
            &owner_token,
            "query($p: String!, $at: String) { project(id: $p) { asOf(position: $at) { name models { name versions { id message referencedObject } } } } }",
            json!({"p": p, "at": before_delete.to_string()}),
        )
        .await;
    let models = as_of["project"]["asOf"]["models"].as_array().unwrap();
    let archive = models.iter().find(|m| m["name"] == "archive").unwrap();
    assert_eq!(archive["versions"][0]["id"], version.as_str());
    assert_eq!(archive["versions"][0]["message"], "first");
    // Its objects still load: a version delete removes no object.
    let object = w
        .app
        .http
        .get(format!(
            "{}/objects/{p}/{}/single",
            w.app.base_url,
            archive["versions"][0]["referencedObject"].as_str().unwrap()
        ))
        .bearer_auth(&owner_token)
        .send()
        .await
        .unwrap();
    assert_eq!(object.status(), 200);

    // Before the project existed there is nothing.
    assert!(replay(&log, &p, AsOf::Position(0)).await.unwrap().is_none());
    // The replay equals the live read model on what both show.
    let live: (String, i64, i64) = sqlx::query_as(
        "SELECT p.name, (SELECT count(*) FROM models WHERE project_id = p.id), \
                (SELECT count(*) FROM project_members WHERE project_id = p.id) FROM projects p WHERE id = $1",
    )
    .bind(&p)
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(
        live,
        (
            now.name.clone(),
            now.models.len() as i64,
            now.team.len() as i64
        )
    );
}

#[tokio::test]
async fn an_export_verifies_offline_and_tampering_is_named() {
    let w = world().await;
    let (p, ..) = w.history().await;
    // Two more projects, so each kind of tampering hits a chain of its own.
    let token = tests::register(&w.app.base_url, "second@example.com").await;
    let (p2, _) = w.app.project_with_model(&token, "other").await;
    let (p3, _) = w.app.project_with_model(&token, "third").await;
    let key = SigningKey::from_hex(&"42".repeat(32)).unwrap();
    let trusted = hex::decode(key.public_key_hex()).unwrap();
    let seal = audit::seal(&w.db.pool, &key).await.unwrap().unwrap();
    assert!(
        audit::seal(&w.db.pool, &key).await.unwrap().is_none(),
        "nothing new to seal"
    );

    // Untouched: chains and the seal hold, online and offline.
    let clean = w.export(None).await;
    let report = audit::verify_file(clean.as_slice(), &trusted).unwrap();
    assert!(report.ok(), "{report:?}");
    assert!(report.seals_checked);
    assert_eq!(report.seals.len(), 1);
    assert_eq!(report.seals[0].id, seal.id);
    assert!(tests::seals_verify(&w.db.pool, &trusted).await);
    // A project's export checks its chains; its seals need the whole log.
    let project_only = audit::verify_file(w.export(Some(&p)).await.as_slice(), &trusted).unwrap();
    assert!(project_only.ok() && !project_only.seals_checked);
    // Another key is not trusted.
    let other = hex::decode(
        SigningKey::from_hex(&"43".repeat(32))
            .unwrap()
            .public_key_hex(),
    )
    .unwrap();
    assert!(!audit::verify_file(clean.as_slice(), &other).unwrap().ok());

    let s1 = format!("project:{p}");
    let s2 = format!("project:{p2}");

    // A forger changes a payload (the rename) and recomputes the stream's hashes: every chain
    // holds, but the earlier seal does not.
    w.tamper(&format!(
        "UPDATE events SET payload = jsonb_set(payload, '{{name}}', '\"Towe r\"') \
           WHERE stream_id = '{s1}' AND stream_version = 4"
    ))
    .await;
    let rows = sqlx::query(
        "SELECT stream_version, event_type, schema_version, \
                (extract(epoch FROM recorded_at) * 1000000)::bigint AS micros, \
                payload::text AS p, metadata::text AS m FROM events WHERE stream_id = $1 \
         ORDER BY stream_version",
    )
    .bind(&s1)
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    let mut previous = chain::GENESIS.to_vec();
    let mut updates = Vec::new();
    for r in &rows {
        let version: i64 = r.get("stream_version");
        let (t, pl, m): (String, String, String) = (r.get("event_type"), r.get("p"), r.get("m"));
        let hash = chain::event_hash(
            &previous,
            &chain::HashedFields {
                stream_id: &s1,
                stream_version: version,
                event_type: &t,
                schema_version: r.get("schema_version"),
                recorded_at_micros: r.get("micros"),
                payload_text: &pl,
                metadata_text: &m,
            },
        );
        updates.push(format!(
            "UPDATE events SET hash = '\\x{}' WHERE stream_id = '{s1}' AND stream_version = {version}",
            hex::encode(hash)
        ));
        previous = hash.to_vec();
    }
    w.tamper(&updates.join("; ")).await;
    let log = EventLog::new(w.db.pool.clone());
    assert!(log.verify_chains(None).await.unwrap().breaks.is_empty());
    let forged = audit::verify_file(w.export(None).await.as_slice(), &trusted).unwrap();
    assert!(forged.chains.breaks.is_empty(), "{forged:#?}");
    assert!(!forged.seals[0].ok, "{forged:#?}");
    assert!(
        !audit::verify_seals(&w.db.pool, Some(&trusted))
            .await
            .unwrap()[0]
            .ok
    );
    // The export made before still verifies: it is the evidence.
    assert!(audit::verify_file(clean.as_slice(), &trusted).unwrap().ok());

    // Plain tampering: a payload byte changed (project 2), an event deleted (project 1),
    // two events of project 3 reordered: each named by stream and position.
    let changed_at = w.position_of(&s2, 3).await;
    let after_deleted = w.position_of(&s1, 6).await;
    w.tamper(&format!(
        "UPDATE events SET payload = jsonb_set(payload, '{{name}}', '\"othes\"') \
           WHERE stream_id = '{s2}' AND stream_version = 3; \
         DELETE FROM events WHERE stream_id = '{s1}' AND stream_version = 5"
    ))
    .await;
    let user_stream = format!("project:{p3}");
    let (a, b) = (
        w.position_of(&user_stream, 1).await,
        w.position_of(&user_stream, 2).await,
    );
    // Versions 1 and 2 trade places (positions are identity columns: the rows keep theirs).
    w.tamper(&format!(
        "UPDATE events SET stream_version = 1000000 WHERE stream_id = '{user_stream}' AND stream_version = 1; \
         UPDATE events SET stream_version = 1 WHERE stream_id = '{user_stream}' AND stream_version = 2; \
         UPDATE events SET stream_version = 2 WHERE stream_id = '{user_stream}' AND stream_version = 1000000"
    ))
    .await;
    let report = log.verify_chains(None).await.unwrap();
    let found: BTreeMap<String, i64> = report
        .breaks
        .iter()
        .map(|b| (b.stream_id.clone(), b.position))
        .collect();
    assert_eq!(
        found,
        BTreeMap::from([
            (s1.clone(), after_deleted),
            (s2.clone(), changed_at),
            // By version order the event now numbered 1 (at b) does not hash as the first.
            (user_stream.clone(), b),
        ]),
        "{report:#?}"
    );
    let offline = audit::verify_file(w.export(None).await.as_slice(), &trusted).unwrap();
    let found: BTreeMap<String, i64> = offline
        .chains
        .breaks
        .iter()
        .map(|b| (b.stream_id.clone(), b.position))
        .collect();
    assert_eq!(found.len(), 3, "{offline:#?}");
    assert_eq!(found[&s1], after_deleted);
    assert_eq!(found[&s2], changed_at);
    // In log order the event at a now claims version 2 with nothing before it.
    assert_eq!(found[&user_stream], a);
    assert!(!offline.ok());
}

#[tokio::test]
async fn replays_from_snapshots_equal_replays_from_the_first_event() {
    use command_service::audit::{Snapshots, replay_with};
    use domain::audit::{FOLD_VERSION, SNAPSHOT_EVERY};
    let w = world().await;
    let owner = tests::register(&w.app.base_url, "owner@example.com").await;
    let owner_id = w.app.user_id(&owner).await;
    let (p, model) = w.app.project_with_model(&owner, "seed").await;
    let log = EventLog::new(w.db.pool.clone());
    // A history long enough for several snapshots: versions created, then their messages
    // changed, appended as the write side would.
    let events = usize::try_from(SNAPSHOT_EVERY).unwrap() * 2 + 37;
    let batch: Vec<domain::NewEvent> = (0..events)
        .map(|i| {
            let version_id = format!("{:010x}", 0xa0_0000_0000u64 + (i / 2) as u64);
            if i % 2 == 0 {
                domain::project::ProjectEvent::VersionCreated {
                    project_id: p.clone(),
                    version_id,
                    model_id: model.clone(),
                    object_id: "0123456789abcdef0123456789abcdef".into(),
                    message: Some(format!("v{i}")),
                    source_application: Some("test".into()),
                    total_children_count: 0,
                    parents: vec![],
                    author_id: owner_id.clone(),
                }
            } else {
                domain::project::ProjectEvent::VersionUpdated {
                    project_id: p.clone(),
                    version_id,
                    message: format!("edited {i}"),
                }
            }
            .to_new_event()
            .unwrap()
        })
        .collect();
    for events in batch.chunks(500) {
        log.append(&schema::AppendRequest {
            stream: domain::StreamId::new("project", &p).unwrap(),
            expected: schema::ExpectedVersion::Any,
            events: events.to_vec(),
            metadata: domain::EventMetadata::default(),
            command_id: None,
        })
        .await
        .unwrap();
    }
    let positions: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events WHERE stream_id = $1 ORDER BY position")
            .bind(format!("project:{p}"))
            .fetch_all(&w.db.pool)
            .await
            .unwrap();
    let stored = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_snapshots WHERE project_id = $1")
            .bind(&p)
            .fetch_one(&w.db.pool)
            .await
            .unwrap()
    };
    assert_eq!(stored().await, 0);
    // A snapshot of another fold, however wrong, is never read.
    sqlx::query(
        "INSERT INTO audit_snapshots VALUES ($1, $2, $3, $4, now(), '{\"name\": \"forged\"}')",
    )
    .bind(&p)
    .bind(FOLD_VERSION + 1)
    .bind(positions.len() as i64 - 1)
    .bind(positions[positions.len() - 2])
    .execute(&w.db.pool)
    .await
    .unwrap();

    let whole = |at: i64| {
        let log = &log;
        let p = &p;
        async move {
            replay_with(log, p, AsOf::Position(at), Snapshots::Ignore)
                .await
                .unwrap()
                .unwrap()
        }
    };
    // The first replay of the newest state folds everything and keeps a snapshot every
    // SNAPSHOT_EVERY events; later replays start from the nearest.
    let newest = *positions.last().unwrap();
    let newest_matches_the_whole_fold = async || {
        let replayed = replay(&log, &p, AsOf::Position(newest)).await;
        assert_eq!(replayed.unwrap().unwrap(), whole(newest).await);
    };
    newest_matches_the_whole_fold().await;
    assert_eq!(stored().await, positions.len() as i64 / SNAPSHOT_EVERY + 1);
    let every = positions.len() / 40;
    for at in positions
        .iter()
        .step_by(every)
        .chain(positions.iter().rev().take(3))
    {
        let from_snapshot = replay(&log, &p, AsOf::Position(*at))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from_snapshot, whole(*at).await, "at position {at}");
        assert_ne!(from_snapshot.0.name, "forged");
    }
    // By time too: the moment of the event just after the first snapshot.
    let (after_snapshot, at): (i64, time::OffsetDateTime) = sqlx::query_as(
        "SELECT position, recorded_at FROM events WHERE stream_id = $1 AND stream_version = $2",
    )
    .bind(format!("project:{p}"))
    .bind(SNAPSHOT_EVERY + 1)
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    let by_time = replay(&log, &p, AsOf::Time(at)).await.unwrap().unwrap();
    let by_time_whole = replay_with(&log, &p, AsOf::Time(at), Snapshots::Ignore)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_time, by_time_whole);
    assert!(by_time.1 >= after_snapshot);
    // Snapshots are a cache: without them the answer is the same.
    sqlx::query("DELETE FROM audit_snapshots")
        .execute(&w.db.pool)
        .await
        .unwrap();
    newest_matches_the_whole_fold().await;
}

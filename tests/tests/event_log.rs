//! The event log against a real PostgreSQL: append, read, concurrency, idempotency,
//! immutability, hash chains, upcasting, and migrations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use domain::{EventMetadata, NewEvent, StreamId, Upcaster, Upcasters};
use schema::{AppendError, AppendRequest, EventLog, ExpectedVersion, LogCursor};
use serde_json::{Value, json};
use tests::TestDb;
use uuid::Uuid;

fn stream(id: &str) -> StreamId {
    StreamId::new("project", id).unwrap()
}

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_type: "Counted".into(),
        schema_version: 1,
        payload: json!({"n": n}),
    }
}

fn request(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: stream.clone(),
        expected,
        events,
        metadata: EventMetadata {
            actor_user_id: Some("user1".into()),
            request_id: Some("req-1".into()),
            ..EventMetadata::default()
        },
        command_id: None,
    }
}

async fn read_everything(log: &EventLog) -> Vec<schema::RecordedEvent> {
    let mut out = Vec::new();
    let mut cursor = LogCursor::START;
    loop {
        let batch = log.read_all(cursor, 500).await.unwrap();
        let Some(last) = batch.last() else { break };
        cursor = last.cursor;
        out.extend(batch);
    }
    out
}

#[tokio::test]
async fn appends_and_reads_back_in_order() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let s = stream("a1");
    let first = log
        .append(&request(
            &s,
            ExpectedVersion::NoStream,
            vec![event(1), event(2)],
        ))
        .await
        .unwrap();
    assert_eq!(
        (first.first_version, first.last_version, first.duplicate),
        (1, 2, false)
    );
    let second = log
        .append(&request(&s, ExpectedVersion::Exact(2), vec![event(3)]))
        .await
        .unwrap();
    assert_eq!(second.last_version, 3);
    assert!(second.last > first.last);

    let events = log.read_stream(&s, 1).await.unwrap();
    let ns: Vec<i64> = events
        .iter()
        .map(|e| e.payload["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [1, 2, 3]);
    assert_eq!(
        events.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(events[0].metadata.actor_user_id.as_deref(), Some("user1"));
    assert_eq!(events[0].metadata.request_id.as_deref(), Some("req-1"));
    assert_eq!(log.read_stream(&s, 3).await.unwrap().len(), 1);
    assert_eq!(log.stream_version(&s).await.unwrap(), 3);

    tests::wait_readable(&log, second.last).await;
    let all = read_everything(&log).await;
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor));
    // Within one append, positions follow stream versions: the log's order is the stream's.
    assert_eq!(
        all.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(all[0].cursor.position, first.first_position);
    assert_eq!(all.last().unwrap().cursor, second.last);
    assert_eq!(log.readable_head().await.unwrap(), second.last);
    // Paging from the middle returns exactly the rest.
    assert_eq!(
        log.read_all(all[0].cursor, 10).await.unwrap(),
        all[1..].to_vec()
    );
}

#[tokio::test]
async fn a_stale_expected_version_is_a_typed_conflict_and_stores_nothing() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let s = stream("c1");
    log.append(&request(&s, ExpectedVersion::NoStream, vec![event(1)]))
        .await
        .unwrap();
    let err = log
        .append(&request(&s, ExpectedVersion::NoStream, vec![event(2)]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Conflict { actual: 1, .. }),
        "{err:?}"
    );
    let err = log
        .append(&request(&s, ExpectedVersion::Exact(5), vec![event(2)]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Conflict { actual: 1, .. }),
        "{err:?}"
    );
    assert_eq!(log.read_stream(&s, 1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_stale_one_event_append_in_a_callers_transaction_leaves_it_usable() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let s = stream("c2");
    log.append(&request(&s, ExpectedVersion::Any, vec![event(1), event(2)]))
        .await
        .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let err = log
        .append_on(
            &mut tx,
            &request(&s, ExpectedVersion::Exact(1), vec![event(3)]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Conflict { actual: 2, .. }),
        "the conflict names the head it found: {err:?}"
    );
    let appended = log
        .append_on(
            &mut tx,
            &request(&s, ExpectedVersion::Exact(2), vec![event(3)]),
        )
        .await
        .unwrap();
    assert_eq!((appended.first_version, appended.last_version), (3, 3));
    tx.commit().await.unwrap();
    let stored = log.read_stream(&s, 1).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|e| e.payload["n"].clone())
            .collect::<Vec<_>>(),
        [json!(1), json!(2), json!(3)]
    );
}

#[tokio::test]
async fn concurrent_writers_at_the_same_version_one_wins_none_lost_silently() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let s = stream("race");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let log = log.clone();
            let s = s.clone();
            tokio::spawn(async move {
                log.append(&request(&s, ExpectedVersion::NoStream, vec![event(i)]))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(AppendError::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((won, conflicts), (1, 15));
    assert_eq!(log.read_stream(&s, 1).await.unwrap().len(), 1);

    // With `Any`, every concurrent append lands, each at its own version.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let log = log.clone();
            let s = s.clone();
            tokio::spawn(async move {
                log.append(&request(&s, ExpectedVersion::Any, vec![event(i)]))
                    .await
            })
        })
        .collect();
    let mut versions = HashSet::new();
    for t in tasks {
        versions.insert(t.await.unwrap().unwrap().last_version);
    }
    assert_eq!(versions, (2..=17).collect::<HashSet<u64>>());
}

#[tokio::test]
async fn a_command_id_is_applied_once_even_when_sent_concurrently() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let s = stream("idem");
    let command = Uuid::new_v4();
    let mut req = request(&s, ExpectedVersion::Any, vec![event(1), event(2)]);
    req.command_id = Some(command);
    let first = log.append(&req).await.unwrap();
    let again = log.append(&req).await.unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(
        (again.first_version, again.last_version, again.last),
        (1, 2, first.last)
    );
    assert_eq!(log.stream_version(&s).await.unwrap(), 2);

    let racing = Uuid::new_v4();
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let log = log.clone();
            let mut req = request(&s, ExpectedVersion::Exact(2), vec![event(3)]);
            req.command_id = Some(racing);
            tokio::spawn(async move { log.append(&req).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| !o.duplicate).count(), 1);
    assert!(
        outcomes
            .iter()
            .all(|o| o.last == outcomes[0].last && o.last_version == 3)
    );
    assert_eq!(log.stream_version(&s).await.unwrap(), 3);
}

#[tokio::test]
async fn limits_and_bad_payloads_store_nothing() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone()).with_limits(schema::AppendLimits {
        max_events: 3,
        max_payload_bytes: 64,
        max_any_retries: 1,
        ..schema::AppendLimits::default()
    });
    let s = stream("lim");
    let err = log
        .append(&request(&s, ExpectedVersion::Any, vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::Empty));
    let err = log
        .append(&request(
            &s,
            ExpectedVersion::Any,
            (0..4).map(event).collect(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AppendError::TooManyEvents { count: 4, limit: 3 }
    ));
    let big = NewEvent {
        event_type: "Big".into(),
        schema_version: 1,
        payload: json!({"s": "x".repeat(100)}),
    };
    let err = log
        .append(&request(&s, ExpectedVersion::Any, vec![big]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::PayloadTooLarge {
                size: 108,
                limit: 64,
                ..
            }
        ),
        "{err:?}"
    );
    let nul = NewEvent {
        event_type: "Nul".into(),
        schema_version: 1,
        payload: json!({"s": "a\u{0}b"}),
    };
    let err = log
        .append(&request(&s, ExpectedVersion::Any, vec![event(1), nul]))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::InvalidPayload(_)), "{err:?}");
    assert_eq!(log.stream_version(&s).await.unwrap(), 0);
}

#[tokio::test]
async fn the_database_refuses_update_delete_and_truncate() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    log.append(&request(
        &stream("imm"),
        ExpectedVersion::Any,
        vec![event(1)],
    ))
    .await
    .unwrap();
    // Even the owning superuser is refused by the trigger.
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = sqlx::query(sql).execute(&db.pool).await.unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .unwrap()
            .into_owned();
        assert_eq!(code, "SE403", "{sql}: {err}");
    }
    // The runtime role may only read and append.
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE strata_runtime")
        .execute(&mut *tx)
        .await
        .unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(count, 1);
    sqlx::query("SAVEPOINT s").execute(&mut *tx).await.unwrap();
    let err = sqlx::query("UPDATE events SET payload = '{}'")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    let code = err
        .as_database_error()
        .and_then(|e| e.code())
        .unwrap()
        .into_owned();
    assert_eq!(code, "42501", "runtime role must lack UPDATE: {err}");
    sqlx::query("ROLLBACK TO SAVEPOINT s")
        .execute(&mut *tx)
        .await
        .unwrap();
    let appended = log
        .append_on(
            &mut tx,
            &request(&stream("imm"), ExpectedVersion::Exact(1), vec![event(2)]),
        )
        .await
        .unwrap();
    assert_eq!(appended.last_version, 2);
    tx.commit().await.unwrap();
    assert_eq!(log.stream_version(&stream("imm")).await.unwrap(), 2);
}

#[tokio::test]
async fn the_database_refuses_malformed_events_even_inserted_directly() {
    let db = TestDb::new().await;
    // (stream_id, stream_version, event_type, schema_version, hash length, what is wrong): a
    // well-formed row, then one breaking each rule the log's columns carry.
    type Row<'a> = (&'a str, i64, &'a str, i32, usize, Option<&'a str>);
    let rows: [Row<'_>; 6] = [
        ("project:ok", 1, "Counted", 1, 32, None),
        ("p:", 1, "Counted", 1, 32, Some("stream id of 2 characters")),
        ("project:v0", 0, "Counted", 1, 32, Some("stream version 0")),
        ("project:t", 1, "", 1, 32, Some("empty event type")),
        ("project:s", 1, "Counted", 0, 32, Some("schema version 0")),
        ("project:h", 1, "Counted", 1, 31, Some("31-byte hash")),
    ];
    for (stream_id, version, event_type, schema_version, hash_len, refused) in rows {
        // As the runtime role, which may insert into the log directly.
        let mut tx = db.pool.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE strata_runtime")
            .execute(&mut *tx)
            .await
            .unwrap();
        let result = sqlx::query(
            "INSERT INTO events (stream_id, stream_version, event_type, schema_version, \
             payload, recorded_at, hash) VALUES ($1, $2, $3, $4, '{}', now(), $5)",
        )
        .bind(stream_id)
        .bind(version)
        .bind(event_type)
        .bind(schema_version)
        .bind(vec![0u8; hash_len])
        .execute(&mut *tx)
        .await;
        match (refused, result) {
            (None, Ok(_)) => tx.commit().await.unwrap(),
            (Some(what), Err(err)) => {
                let code = err.as_database_error().and_then(|e| e.code());
                assert_eq!(code.as_deref(), Some("23514"), "{what}: {err}");
            }
            (None, Err(err)) => panic!("a well-formed row was refused: {err}"),
            (Some(what), Ok(_)) => panic!("a row with a {what} was stored"),
        }
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn hash_chains_verify_and_tampering_is_found() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    // One-event appends take a plain statement and longer ones `append_events`: both chain
    // the same way, in either order on one stream.
    let e = |i: usize| NewEvent {
        event_type: "Counted".into(),
        schema_version: 1,
        payload: json!({"n": i, "nested": {"b": [1.5, "x/y", null], "a": "é"}}),
    };
    for (id, sizes) in [("h1", [1, 1, 2]), ("h2", [2, 1, 1])] {
        for (i, size) in sizes.into_iter().enumerate() {
            let events = (0..size).map(|k| e(10 * i + k)).collect();
            log.append(&request(&stream(id), ExpectedVersion::Any, events))
                .await
                .unwrap();
        }
    }
    let report = log.verify_chains(None).await.unwrap();
    assert_eq!(
        (report.streams, report.events, report.breaks.len()),
        (2, 8, 0),
        "{report:?}"
    );

    // Chained: each event's stored hash is the previous one's input.
    let h1 = log.read_stream(&stream("h1"), 1).await.unwrap();
    assert_ne!(h1[0].hash, h1[1].hash);

    // A superuser who disables the trigger can rewrite a row; the chain shows it.
    sqlx::raw_sql(
        "ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete; \
         UPDATE events SET payload = jsonb_set(payload, '{n}', '42') \
           WHERE stream_id = 'project:h1' AND stream_version = 2; \
         ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let report = log.verify_chains(None).await.unwrap();
    assert_eq!(report.breaks.len(), 1, "{report:?}");
    assert_eq!(report.breaks[0].stream_id, "project:h1");
    assert_eq!(report.breaks[0].stream_version, 2);
    let only_h2 = log.verify_chains(Some(&stream("h2"))).await.unwrap();
    assert_eq!(
        (only_h2.streams, only_h2.events, only_h2.breaks.len()),
        (1, 4, 0)
    );
}

fn is_public_to_visibility(mut v: Value) -> Result<Value, String> {
    let obj = v.as_object_mut().ok_or("not an object")?;
    let public = obj
        .remove("isPublic")
        .and_then(|p| p.as_bool())
        .ok_or("isPublic missing")?;
    obj.insert(
        "visibility".into(),
        json!(if public { "PUBLIC" } else { "PRIVATE" }),
    );
    Ok(v)
}

#[tokio::test]
async fn a_stored_old_version_reads_as_the_current_shape() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let sample: Value =
        serde_json::from_str(include_str!("../samples/events/ProjectCreated.v1.json")).unwrap();
    let old = NewEvent {
        event_type: "ProjectCreated".into(),
        schema_version: 1,
        payload: sample,
    };
    log.append(&request(
        &stream("up"),
        ExpectedVersion::NoStream,
        vec![old],
    ))
    .await
    .unwrap();
    let upcasters = Upcasters::new()
        .current("ProjectCreated", 2)
        .step(Upcaster {
            event_type: "ProjectCreated",
            from_version: 1,
            apply: is_public_to_visibility,
        });
    let stored = &log.read_stream(&stream("up"), 1).await.unwrap()[0];
    assert_eq!(stored.schema_version, 1, "the log keeps the stored shape");
    let (version, payload) = upcasters
        .upcast(
            &stored.event_type,
            stored.schema_version as u32,
            stored.payload.clone(),
        )
        .unwrap();
    assert_eq!(version, 2);
    assert_eq!(
        payload,
        json!({"name": "Haus", "description": "sample stored by schema v1", "visibility": "PUBLIC"})
    );
}

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_are_idempotent() {
    let db = TestDb::empty().await;
    let before: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(before, 0);
    schema::migrate(&db.pool).await.unwrap();
    schema::migrate(&db.pool).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for t in ["_sqlx_migrations", "events", "processed_commands"] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    let log = EventLog::new(db.pool.clone());
    log.append(&request(
        &stream("m"),
        ExpectedVersion::NoStream,
        vec![event(1)],
    ))
    .await
    .unwrap();
}

/// `schema::chain::jsonb_text` against PostgreSQL's own `jsonb::text`: the same text, or `None`
/// where it cannot be sure (then the database hashes).
async fn check_jsonb_text(pool: &sqlx::PgPool, value: &Value) {
    let ours = schema::chain::jsonb_text(value);
    let theirs: Option<String> = sqlx::query_scalar("SELECT $1::jsonb::text")
        .bind(value)
        .fetch_one(pool)
        .await
        .ok();
    match ours {
        Some(ours) => assert_eq!(Some(ours), theirs, "{value}"),
        None => assert!(decimal_or_nul(value), "refused to render {value}"),
    }
}

/// Whether `value` holds a number that is not an integer, or a string (or key) with U+0000:
/// what `jsonb_text` may decline.
fn decimal_or_nul(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(decimal_or_nul),
        Value::Object(members) => members
            .iter()
            .any(|(k, v)| k.contains('\0') || decimal_or_nul(v)),
        Value::Null | Value::Bool(_) => false,
    }
}

#[tokio::test]
async fn the_chain_renders_jsonb_as_postgres_does() {
    let db = TestDb::new().await;
    for value in [
        json!(null),
        json!(true),
        json!(0),
        json!(-9_223_372_036_854_775_808i64),
        json!(18_446_744_073_709_551_615u64),
        json!(""),
        json!("quote \" backslash \\ slash / tab \t nl \n cr \r bs \u{8} ff \u{c}"),
        json!("controls \u{1} \u{1f} del \u{7f} é 漢 🏗"),
        json!([]),
        json!({}),
        json!([1, [2, [3, {}]], "x", null, false]),
        // Keys: shorter first, then bytewise (so "B" < "a" and "é" after "z").
        json!({"bb": 1, "a": 2, "B": 3, "ccc": {"z": [], "é": {}, "y": null}, "": 0}),
        json!({"id": "abc", "message": "line 1\nline 2", "sourceApplication": "Rhino 8"}),
        // Not rendered here: the database decides how a decimal reads.
        json!(1.5),
        json!({"n": 1e20}),
        json!([1, 0.1]),
        json!("nul \u{0} inside"),
    ] {
        check_jsonb_text(&db.pool, &value).await;
    }
    // And a few hundred generated values: every character class in keys and strings,
    // nesting, integers at the edges.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const CHARS: &[char] = &[
        'a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\t', '\u{1}', '\u{1b}', '\u{7f}', 'é', 'ß',
        '漢', '🏗', '{', ':', ',',
    ];
    fn generate(next: &mut impl FnMut() -> u64, depth: u32) -> Value {
        let text = |next: &mut dyn FnMut() -> u64| -> String {
            (0..next() % 6)
                .map(|_| CHARS[(next() % CHARS.len() as u64) as usize])
                .collect()
        };
        match next() % if depth == 0 { 5 } else { 7 } {
            0 => Value::Null,
            1 => Value::Bool(next().is_multiple_of(2)),
            2 => json!(next() as i64),
            3 => json!(next() % 1000),
            4 => Value::String(text(next)),
            5 => Value::Array((0..next() % 4).map(|_| generate(next, depth - 1)).collect()),
            _ => Value::Object(
                (0..next() % 5)
                    .map(|_| (text(next), generate(next, depth - 1)))
                    .collect(),
            ),
        }
    }
    for _ in 0..300 {
        let value = generate(&mut next, 3);
        assert!(schema::chain::jsonb_text(&value).is_some(), "{value}");
        check_jsonb_text(&db.pool, &value).await;
    }
}

#[tokio::test]
async fn appends_onto_a_known_head_skip_the_lookup_and_chain_as_the_database_would() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let s = stream("k1");
    let payload = |p: Value| NewEvent {
        event_type: "Counted".into(),
        schema_version: 1,
        payload: p,
    };
    log.append(&request(&s, ExpectedVersion::NoStream, vec![event(1)]))
        .await
        .unwrap();
    for v in 1..4 {
        let p =
            json!({"n": v, "text": "a \"quoted\"\nline", "nested": {"bb": [1, null], "a": true}});
        log.append(&request(&s, ExpectedVersion::Exact(v), vec![payload(p)]))
            .await
            .unwrap();
    }
    let counts = log.head_counts();
    assert_eq!((counts.onto_known, counts.looked_up), (4, 0));
    // A decimal is hashed by the database; the head it returns is known again after.
    log.append(&request(
        &s,
        ExpectedVersion::Exact(4),
        vec![payload(json!({"x": 0.1}))],
    ))
    .await
    .unwrap();
    log.append(&request(&s, ExpectedVersion::Exact(5), vec![event(6)]))
        .await
        .unwrap();
    // An `Any` append looks its head up; a multi-event one (`append_events`) leaves the head
    // unknown, so the append after it looks up.
    log.append(&request(&s, ExpectedVersion::Any, vec![event(7)]))
        .await
        .unwrap();
    log.append(&request(
        &s,
        ExpectedVersion::Exact(7),
        vec![event(8), event(9)],
    ))
    .await
    .unwrap();
    log.append(&request(&s, ExpectedVersion::Exact(9), vec![event(10)]))
        .await
        .unwrap();
    let counts = log.head_counts();
    assert_eq!((counts.onto_known, counts.looked_up), (5, 3));
    let report = log.verify_chains(None).await.unwrap();
    assert_eq!((report.events, report.breaks.len()), (10, 0), "{report:?}");

    // With no head cache, every head is looked up.
    let uncached = EventLog::new(db.pool.clone()).with_limits(schema::AppendLimits {
        head_cache_streams: 0,
        ..schema::AppendLimits::default()
    });
    let u = stream("k2");
    uncached
        .append(&request(&u, ExpectedVersion::NoStream, vec![event(1)]))
        .await
        .unwrap();
    uncached
        .append(&request(&u, ExpectedVersion::Exact(1), vec![event(2)]))
        .await
        .unwrap();
    let counts = uncached.head_counts();
    assert_eq!((counts.onto_known, counts.looked_up), (0, 2));
}

#[tokio::test]
async fn a_known_head_that_moved_or_changed_or_vanished_is_looked_up_and_the_chain_holds() {
    let db = TestDb::new().await;
    // Two processes' logs on one database.
    let (a, b) = (
        EventLog::new(db.pool.clone()),
        EventLog::new(db.pool.clone()),
    );
    let s = stream("m1");
    let at = |v: u64| {
        if v == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(v)
        }
    };
    for v in 0..3 {
        a.append(&request(&s, at(v), vec![event(v as i64)]))
            .await
            .unwrap();
    }
    // Moved: the other process appended version 4; a's head (3) is behind.
    b.append(&request(&s, ExpectedVersion::Exact(3), vec![event(40)]))
        .await
        .unwrap();
    match a.append(&request(&s, at(3), vec![event(41)])).await {
        Err(AppendError::Conflict { actual, .. }) => assert_eq!(actual, 4),
        other => panic!("expected a conflict, got {other:?}"),
    }
    a.append(&request(&s, at(4), vec![event(5)])).await.unwrap();

    // Changed: version 5 is replaced by another with a different hash (a restore and another
    // writer, say). a still knows the old one; what it appends must chain onto the new one.
    let drop_version = |v: i64| {
        let pool = db.pool.clone();
        async move {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete; \
                 DELETE FROM events WHERE stream_id = 'project:m1' AND stream_version = {v}; \
                 ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;"
            )))
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    drop_version(5).await;
    b.append(&request(&s, at(4), vec![event(50)]))
        .await
        .unwrap();
    let before = a.head_counts();
    let appended = a.append(&request(&s, at(5), vec![event(6)])).await.unwrap();
    assert_eq!(appended.last_version, 6);
    assert_eq!(a.head_counts().looked_up, before.looked_up + 1);

    // Vanished: version 6 is gone; a's head is ahead of the log and must not leave a gap.
    drop_version(6).await;
    match a.append(&request(&s, at(6), vec![event(7)])).await {
        Err(AppendError::Conflict { actual, .. }) => assert_eq!(actual, 5),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let report = a.verify_chains(None).await.unwrap();
    assert_eq!((report.events, report.breaks.len()), (5, 0), "{report:?}");
    let versions: Vec<i64> = a
        .read_stream(&s, 1)
        .await
        .unwrap()
        .iter()
        .map(|e| e.stream_version)
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
}

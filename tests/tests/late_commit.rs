//! A reader following the log never skips an event that commits late, never sees one twice,
//! never sees a rolled-back one, and sees a stable order. (The long soak runs in
//! `cargo run --release -p tests --bin bench -- race`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tests::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_following_reader_sees_every_committed_event_exactly_once() {
    let db = TestDb::new().await;
    let outcome = tests::race::late_commit_race(&db.pool, 16, 25)
        .await
        .unwrap();
    eprintln!("{outcome:?}");
    assert!(
        outcome.committed > 300,
        "too little traffic to mean anything: {outcome:?}"
    );
    assert!(
        outcome.rolled_back > 0,
        "no rollbacks exercised: {outcome:?}"
    );
    assert!(outcome.is_exact(), "{outcome:?}");
}

/// The failure the log's reading rule exists for, made to happen: a transaction that appended
/// first commits after a later append was read. A reader of `position > last` skips it for
/// good; the log's reader waits for it and returns both, in commit-safe order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_naive_position_reader_misses_a_late_commit_that_the_log_reader_sees() {
    use domain::{EventMetadata, NewEvent, StreamId};
    use schema::{AppendRequest, EventLog, ExpectedVersion, LogCursor};

    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let append = |stream: &str| AppendRequest {
        stream: StreamId::new("race", stream).unwrap(),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            event_type: "Raced".into(),
            schema_version: 1,
            payload: serde_json::json!({"stream": stream}),
        }],
        metadata: EventMetadata::default(),
        command_id: None,
    };
    // The early append takes its position, then its transaction stays open.
    let mut early = db.pool.begin().await.unwrap();
    let first = log.append_on(&mut early, &append("early")).await.unwrap();
    let later = log.append(&append("later")).await.unwrap();
    assert!(later.last.position > first.last.position);

    // The naive reader reads the later event and moves past the early one's position.
    let seen = tests::race::naive_read(&db.pool, 0).await.unwrap();
    assert_eq!(seen, vec![later.last.position]);
    early.commit().await.unwrap();
    let after = tests::race::naive_read(&db.pool, later.last.position)
        .await
        .unwrap();
    assert!(
        after.is_empty(),
        "the early event is behind the naive cursor for good"
    );

    // The log's reader returns both (waiting, if another test's open transaction holds the
    // horizon back, for it to pass).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let read = loop {
        let read: Vec<i64> = log
            .read_all(LogCursor::START, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.cursor.position)
            .collect();
        if read.len() == 2 {
            break read;
        }
        assert!(std::time::Instant::now() < deadline, "read only {read:?}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(read, vec![first.last.position, later.last.position]);
}

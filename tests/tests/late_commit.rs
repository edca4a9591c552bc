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

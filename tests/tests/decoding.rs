//! Every reader of the log decodes through the one upcasting decoder (`ProjectEvent::decode`,
//! `UserEvent::decode`): an event stored in a schema version this build does not know halts
//! each projection that reads it with the upcaster's error (naming the versions), is skipped by
//! the live publisher, and fails a rebuild, instead of being read as if it were current.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use domain::policy::{ServerRole, Visibility};
use domain::project::ProjectEvent;
use domain::user::UserEvent;
use domain::{EventMetadata, NewEvent, StreamId};
use schema::{AppendRequest, EventLog, ExpectedVersion};
use tests::TestDb;

async fn append(log: &EventLog, stream: StreamId, mut event: NewEvent, version: u32) {
    event.schema_version = version;
    log.append(&AppendRequest {
        stream,
        expected: ExpectedVersion::Any,
        events: vec![event],
        metadata: EventMetadata::default(),
        command_id: None,
    })
    .await
    .unwrap();
}

fn project_created(id: &str) -> NewEvent {
    ProjectEvent::ProjectCreated {
        project_id: id.into(),
        name: "Tower".into(),
        description: String::new(),
        visibility: Visibility::Private,
        allow_public_comments: false,
        owner_id: "u000000001".into(),
    }
    .to_new_event()
    .unwrap()
}

fn user_created(id: &str) -> NewEvent {
    UserEvent::UserCreated {
        user_id: id.into(),
        email: "ada@example.com".into(),
        name: "Ada".into(),
        company: None,
        server_role: ServerRole::User,
    }
    .to_new_event()
    .unwrap()
}

/// Waits until `name` reports an error and returns it (10 s at most).
async fn halted(pool: &sqlx::PgPool, name: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = projections::status(pool).await.unwrap();
        let s = status.iter().find(|s| s.name == name).unwrap();
        if let Some(error) = &s.error {
            return error.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{name} never halted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_schema_version_stops_every_reader_with_the_upcasters_error() {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    // Current-version events fold as usual.
    append(
        &log,
        StreamId::new("project", "a000000001").unwrap(),
        project_created("a000000001"),
        1,
    )
    .await;
    // The same shapes, stored as version 2, which this build has never heard of.
    append(
        &log,
        StreamId::new("project", "a000000002").unwrap(),
        project_created("a000000002"),
        2,
    )
    .await;
    append(
        &log,
        StreamId::new("user", "u000000002").unwrap(),
        user_created("u000000002"),
        2,
    )
    .await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let runtime = projections::ProjectorRuntime::new(
        db.pool.clone(),
        projections::registry(),
        projections::RuntimeOptions {
            poll_interval: Duration::from_millis(50),
            retry_after: Duration::from_millis(100),
            ..Default::default()
        },
    );
    let task = tokio::spawn(runtime.run(cancel.clone()));
    for name in ["speckle", "webhooks", "mail"] {
        let error = halted(&db.pool, name).await;
        assert!(
            error.contains("v2 is newer than the v1 this build understands"),
            "{name}: {error}"
        );
    }
    // The first project was folded before the unknown event stopped the read model.
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM projects ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(names, ["Tower"]);
    cancel.cancel();
    task.await.unwrap();

    // A rebuild reads through the same decoder.
    let rebuilt = projections::rebuild(
        &db.pool,
        &projections::speckle::SpeckleReadModel,
        &projections::RebuildOptions::default(),
        &|_, _| {},
    )
    .await;
    let error = rebuilt.expect_err("the rebuild stops").to_string();
    assert!(error.contains("newer than the v1"), "{error}");

    // The live publisher's message decodes through it too.
    let live = |schema_version| command_service::realtime::LiveEvent {
        position: 1,
        stream_id: "project:a000000002".into(),
        event_type: "ProjectCreated".into(),
        payload: project_created("a000000002").payload,
        schema_version,
        actor_user_id: None,
        project: None,
    };
    assert!(live(1).project_event().is_some());
    assert!(live(2).project_event().is_none());
}

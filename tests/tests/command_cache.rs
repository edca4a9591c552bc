//! The command bus keeps aggregate states between commands, and stays right when another
//! process (another replica, with its own cache) wrote to the same stream in between: a stale
//! state never lets a command through that fresh state refuses, nor refuses one that fresh
//! state allows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use command_service::commands::{CommandBus, CommandError, ProjectAggregate};
use domain::policy::Visibility;
use domain::project::ProjectCommand;
use domain::{DomainError, EventMetadata};
use schema::EventLog;
use tests::TestDb;

const PROJECT: &str = "a000000001";
const OWNER: &str = "b000000001";

fn bus(db: &TestDb) -> CommandBus {
    CommandBus::new(EventLog::new(db.pool.clone()), &[], Duration::from_secs(5))
}

async fn run(bus: &CommandBus, command: ProjectCommand) -> Result<usize, CommandError> {
    bus.execute::<ProjectAggregate, _>(PROJECT, &EventMetadata::default(), |_| Ok(command.clone()))
        .await
        .map(|outcome| outcome.events.len())
}

async fn create_project(bus: &CommandBus) {
    run(
        bus,
        ProjectCommand::Create {
            id: PROJECT.into(),
            name: "Tower".into(),
            description: None,
            visibility: Visibility::Private,
            owner_user_id: OWNER.into(),
            default_model_id: None,
        },
    )
    .await
    .unwrap();
}

fn create_model(id: &str, name: &str) -> ProjectCommand {
    ProjectCommand::CreateModel {
        model_id: id.into(),
        name: name.into(),
        description: None,
        author_id: OWNER.into(),
    }
}

async fn stream_length(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE stream_id = $1")
        .bind(format!("project:{PROJECT}"))
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cached_state_made_stale_by_another_process_is_caught_up() {
    let db = TestDb::new().await;
    let (here, there) = (bus(&db), bus(&db));
    create_project(&here).await;
    run(&here, create_model("c000000001", "walls"))
        .await
        .unwrap();
    // `here` has the project cached with `walls`; `there` adds `doors` behind its back.
    run(&there, create_model("c000000002", "doors"))
        .await
        .unwrap();
    // Decided on the stale state, `doors` looks free; the append conflicts, and on fresh state
    // the name is taken.
    let before = stream_length(&db).await;
    let taken = run(&here, create_model("c000000003", "Doors")).await;
    assert!(
        matches!(
            taken,
            Err(CommandError::Domain(DomainError::NameTaken { .. }))
        ),
        "{taken:?}"
    );
    assert_eq!(stream_length(&db).await, before, "nothing was appended");
    // `there` deletes `walls`; the stale state of `here` would refuse the name, fresh state
    // allows it.
    run(
        &there,
        ProjectCommand::DeleteModel {
            model_id: "c000000001".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        run(&here, create_model("c000000004", "walls"))
            .await
            .unwrap(),
        1
    );
    // Both processes now agree with a fold of the log from scratch.
    let (folded, version) = bus(&db)
        .with_state_cache(0, 0)
        .load::<ProjectAggregate>(PROJECT)
        .await
        .unwrap();
    let mut names: Vec<String> = folded
        .project()
        .unwrap()
        .models
        .values()
        .map(|m| m.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["doors", "walls"]);
    assert_eq!(version as i64, stream_length(&db).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_through_two_caches_all_land_once() {
    let db = TestDb::new().await;
    let (here, there) = (bus(&db), bus(&db));
    create_project(&here).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let bus = if i % 2 == 0 {
            here.clone()
        } else {
            there.clone()
        };
        tasks.push(tokio::spawn(async move {
            run(
                &bus,
                create_model(&format!("c{i:09x}"), &format!("model {i}")),
            )
            .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 1);
    }
    let (folded, _) = here.load::<ProjectAggregate>(PROJECT).await.unwrap();
    assert_eq!(folded.project().unwrap().models.len(), 32);
    // One creation event and one membership event, then one per model.
    assert_eq!(stream_length(&db).await, 2 + 32);
}

/// The project's stored snapshot: shape, stream version and state.
async fn stored_snapshot(db: &TestDb) -> Option<(String, i64, String)> {
    sqlx::query_as(
        "SELECT shape, stream_version, state FROM aggregate_snapshots WHERE stream_id = $1",
    )
    .bind(format!("project:{PROJECT}"))
    .fetch_optional(&db.pool)
    .await
    .unwrap()
}

async fn set_snapshot(db: &TestDb, shape: &str, state: &str) {
    sqlx::query("UPDATE aggregate_snapshots SET shape = $2, state = $3 WHERE stream_id = $1")
        .bind(format!("project:{PROJECT}"))
        .bind(shape)
        .bind(state)
        .execute(&db.pool)
        .await
        .unwrap();
}

/// The model names a process with nothing cached sees first (a fresh bus that reads and
/// stores snapshots).
async fn names_seen_afresh(db: &TestDb, snapshots: u64) -> Vec<String> {
    let mut names = bus(db)
        .with_snapshots(snapshots)
        .read::<ProjectAggregate, _>(PROJECT, |state| {
            state
                .project()
                .unwrap()
                .models
                .values()
                .map(|m| m.name.clone())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
    names.sort();
    names
}

#[tokio::test]
async fn a_process_with_nothing_cached_starts_from_the_stored_snapshot_and_catches_up() {
    let db = TestDb::new().await;
    let shape = domain::project::snapshot_shape();
    // Nothing is stored when snapshots are off.
    let off = bus(&db).with_snapshots(0);
    create_project(&off).await;
    run(&off, create_model("c000000001", "m01")).await.unwrap();
    assert_eq!(stored_snapshot(&db).await, None);

    // Every 4 events: the project's creation (2 events) and 10 models make 12, so the
    // snapshot taken last is at version 12, and is the fold of the log up to there.
    let writer = bus(&db).with_snapshots(4);
    for i in 2..=10 {
        run(
            &writer,
            create_model(&format!("c{i:09}"), &format!("m{i:02}")),
        )
        .await
        .unwrap();
    }
    let (at_shape, version, state) = stored_snapshot(&db).await.unwrap();
    assert_eq!((at_shape.as_str(), version), (shape.as_str(), 12));
    let (folded, head) = bus(&db)
        .with_state_cache(0, 0)
        .load::<ProjectAggregate>(PROJECT)
        .await
        .unwrap();
    assert_eq!(head, 12);
    assert_eq!(domain::project::from_snapshot(&state).unwrap(), folded);

    // Two more models: not due yet, so the snapshot stays behind the log.
    for i in 11..=12 {
        run(
            &writer,
            create_model(&format!("c{i:09}"), &format!("m{i:02}")),
        )
        .await
        .unwrap();
    }
    assert_eq!(stored_snapshot(&db).await.unwrap().1, 12);
    let all: Vec<String> = (1..=12).map(|i| format!("m{i:02}")).collect();
    assert_eq!(names_seen_afresh(&db, 4).await, all);

    // The fresh process started from the snapshot: one altered behind the log's back shows
    // through, with the two models after it caught up from the log.
    let mut forged = folded.clone();
    let domain::ProjectState::Active(project) = &mut forged else {
        panic!("the project is active")
    };
    project.models.get_mut("c000000001").unwrap().name = "forged".into();
    let forged = domain::project::to_snapshot(&forged).unwrap();
    set_snapshot(&db, &shape, &forged).await;
    let mut seen = all.clone();
    seen[0] = "forged".into();
    seen.sort();
    assert_eq!(names_seen_afresh(&db, 4).await, seen);
    // A process that reads no snapshots folds the log.
    assert_eq!(names_seen_afresh(&db, 0).await, all);
    // Commands decide on the snapshot caught up: a name only in the snapshot and one only
    // in the events after it are both taken.
    for name in ["Forged", "m12"] {
        let taken = run(
            &bus(&db).with_snapshots(4),
            create_model("c00000000f", name),
        )
        .await;
        assert!(
            matches!(
                taken,
                Err(CommandError::Domain(DomainError::NameTaken { .. }))
            ),
            "{name}: {taken:?}"
        );
    }
    assert_eq!(stream_length(&db).await, 14);

    // A snapshot of another shape (an older fold, or events before an upcaster) is not read,
    // and the fresh process stores one of its own shape at the head in its place.
    set_snapshot(&db, "project/fold-0/events-1", &forged).await;
    assert_eq!(names_seen_afresh(&db, 4).await, all);
    let (at_shape, version, state) = stored_snapshot(&db).await.unwrap();
    assert_eq!((at_shape.as_str(), version), (shape.as_str(), 14));
    let (folded, _) = bus(&db).load::<ProjectAggregate>(PROJECT).await.unwrap();
    assert_eq!(domain::project::from_snapshot(&state).unwrap(), folded);

    // An unreadable one neither: the log is folded, and the row replaced.
    set_snapshot(&db, &shape, "{not a state").await;
    assert_eq!(names_seen_afresh(&db, 4).await, all);
    let (_, _, state) = stored_snapshot(&db).await.unwrap();
    assert_eq!(domain::project::from_snapshot(&state).unwrap(), folded);
}

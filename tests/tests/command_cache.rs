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

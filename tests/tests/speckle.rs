//! Commands for users, projects, models and versions, through the log into the `speckle`
//! read model, against real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use command_service::commands::{
    CommandBus, CommandError, ProjectAggregate, UserAggregate, new_id,
};
use domain::policy::{ProjectRole, ServerRole, Visibility};
use domain::{DomainError, EventMetadata, ProjectCommand, UserCommand};
use projections::{ProjectorRuntime, RebuildOptions, RuntimeOptions};
use schema::EventLog;
use tests::TestDb;
use tokio_util::sync::CancellationToken;

struct Stack {
    db: TestDb,
    bus: CommandBus,
    cancel: CancellationToken,
    runtime: tokio::task::JoinHandle<()>,
}

async fn stack() -> Stack {
    let db = TestDb::new().await;
    let log = EventLog::new(db.pool.clone());
    let bus = CommandBus::new(log, &[projections::speckle::NAME], Duration::from_secs(10));
    let cancel = CancellationToken::new();
    let options = RuntimeOptions {
        poll_interval: Duration::from_millis(50),
        ..RuntimeOptions::default()
    };
    let runtime = ProjectorRuntime::new(db.pool.clone(), projections::registry(), options);
    let runtime = tokio::spawn(runtime.run(cancel.clone()));
    Stack {
        db,
        bus,
        cancel,
        runtime,
    }
}

fn meta(actor: &str) -> EventMetadata {
    EventMetadata {
        actor_user_id: Some(actor.into()),
        request_id: Some("req".into()),
        ..Default::default()
    }
}

async fn create_user(s: &Stack, email: &str) -> String {
    let id = new_id();
    let cmd = UserCommand::Create {
        id: id.clone(),
        email: email.into(),
        name: "Ada".into(),
        company: None,
        server_role: ServerRole::User,
    };
    s.bus
        .execute::<UserAggregate, _>(&id, &meta(&id), |_| Ok(cmd.clone()))
        .await
        .unwrap();
    id
}

async fn create_project(s: &Stack, owner: &str, name: &str) -> String {
    let id = new_id();
    let cmd = ProjectCommand::Create {
        id: id.clone(),
        name: name.into(),
        description: None,
        visibility: Visibility::Private,
        owner_user_id: owner.into(),
        default_model_id: None,
    };
    s.bus
        .execute::<ProjectAggregate, _>(&id, &meta(owner), |_| Ok(cmd.clone()))
        .await
        .unwrap();
    id
}

async fn create_model(
    s: &Stack,
    project: &str,
    author: &str,
    name: &str,
) -> Result<String, CommandError> {
    let id = new_id();
    let cmd = ProjectCommand::CreateModel {
        model_id: id.clone(),
        name: name.into(),
        description: Some("d".into()),
        author_id: author.into(),
    };
    s.bus
        .execute::<ProjectAggregate, _>(project, &meta(author), |_| Ok(cmd.clone()))
        .await?;
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_is_visible_in_the_read_model_when_it_returns() {
    let s = stack().await;
    let ada = create_user(&s, "Ada@Example.com").await;
    let (email, role): (String, String) =
        sqlx::query_as("SELECT email, role FROM users WHERE id = $1")
            .bind(&ada)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (email.as_str(), role.as_str()),
        ("ada@example.com", "server:user")
    );

    let project = create_project(&s, &ada, "Haus").await;
    let (name, visibility): (String, String) =
        sqlx::query_as("SELECT name, visibility FROM projects WHERE id = $1")
            .bind(&project)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!((name.as_str(), visibility.as_str()), ("Haus", "PRIVATE"));
    let member: String = sqlx::query_scalar(
        "SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2",
    )
    .bind(&project)
    .bind(&ada)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(member, ProjectRole::Owner.as_str());

    let model = create_model(&s, &project, &ada, "Structure/Level 1")
        .await
        .unwrap();
    let version = new_id();
    let cmd = ProjectCommand::CreateVersion {
        version_id: version.clone(),
        model_id: model.clone(),
        object_id: "0123456789abcdef0123456789abcdef".into(),
        root_object_stored: true,
        message: Some("first".into()),
        source_application: Some("specklepy".into()),
        total_children_count: 3,
        parents: vec![],
        author_id: ada.clone(),
    };
    let out = s
        .bus
        .execute::<ProjectAggregate, _>(&project, &meta(&ada), |_| Ok(cmd.clone()))
        .await
        .unwrap();
    assert_eq!(out.events.len(), 1);
    let (model_name,): (String,) = sqlx::query_as("SELECT name FROM models WHERE id = $1")
        .bind(&model)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(model_name, "structure/level 1");
    let (object, count, model_of): (String, i32, String) = sqlx::query_as(
        "SELECT referenced_object, total_children_count, model_id FROM versions WHERE id = $1",
    )
    .bind(&version)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (object.as_str(), count, model_of.as_str()),
        ("0123456789abcdef0123456789abcdef", 3, model.as_str())
    );

    // Deleting the project removes everything under it from the read model.
    s.bus
        .execute::<ProjectAggregate, _>(&project, &meta(&ada), |_| Ok(ProjectCommand::Delete))
        .await
        .unwrap();
    for table in ["projects", "project_members", "models", "versions"] {
        let sql = if table == "projects" {
            "SELECT count(*) FROM projects WHERE id = $1".to_owned()
        } else {
            format!("SELECT count(*) FROM {table} WHERE project_id = $1")
        };
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&project)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let err = create_model(&s, &project, &ada, "late").await.unwrap_err();
    assert!(
        matches!(err, CommandError::Domain(DomainError::Deleted(_))),
        "{err:?}"
    );
    s.cancel.cancel();
    s.runtime.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_project_are_redecided_not_lost() {
    let s = Arc::new(stack().await);
    let ada = create_user(&s, "ada@example.com").await;
    let project = create_project(&s, &ada, "Busy").await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let s = s.clone();
            let (project, ada) = (project.clone(), ada.clone());
            tokio::spawn(
                async move { create_model(&s, &project, &ada, &format!("model {i}")).await },
            )
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM models WHERE project_id = $1")
        .bind(&project)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 10);
    // Names are unique per project, whatever the case.
    let err = create_model(&s, &project, &ada, "MODEL 3")
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Domain(DomainError::NameTaken { .. })),
        "{err:?}"
    );

    // The read model equals a rebuild from the log.
    let report = projections::rebuild(
        &s.db.pool,
        &projections::speckle::SpeckleReadModel,
        &RebuildOptions {
            verify: true,
            ..Default::default()
        },
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.difference_count, 0, "{:?}", report.differences);
    s.cancel.cancel();
}

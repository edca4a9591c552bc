//! The `speckle` read model: users, projects, members, invites, models, versions and model
//! ingestions, as the GraphQL API reads them.

pub mod ingestions;
pub mod previews;
pub mod query;

use domain::project::{InviteTarget, ProjectEvent};
use domain::user::UserEvent;
use futures::FutureExt;
use schema::RecordedEvent;
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::projection::{Applied, Batch, Projection, TableDef, sql};

/// The projection.
pub struct SpeckleReadModel;

/// Its name, for `wait_for`.
pub const NAME: &str = "speckle";

const TABLES: &[TableDef] = &[
    TableDef {
        name: "users",
        create: "CREATE TABLE {table} (
            id text PRIMARY KEY, email text NOT NULL, name text NOT NULL, company text,
            bio text, avatar text, role text NOT NULL,
            created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)",
        indexes: &["CREATE UNIQUE INDEX {table}_email ON {table} (email)"],
    },
    TableDef {
        name: "projects",
        create: "CREATE TABLE {table} (
            id text PRIMARY KEY, name text NOT NULL, description text NOT NULL,
            visibility text NOT NULL, allow_public_comments boolean NOT NULL,
            favorites_count integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)",
        indexes: &["CREATE INDEX {table}_updated ON {table} (updated_at DESC, id)"],
    },
    TableDef {
        name: "project_favorites",
        create: "CREATE TABLE {table} (
            project_id text NOT NULL, user_id text NOT NULL, created_at timestamptz NOT NULL,
            PRIMARY KEY (project_id, user_id))",
        indexes: &["CREATE INDEX {table}_user ON {table} (user_id, created_at DESC, project_id)"],
    },
    TableDef {
        name: "project_members",
        create: "CREATE TABLE {table} (
            project_id text NOT NULL, user_id text NOT NULL, role text NOT NULL,
            created_at timestamptz NOT NULL, PRIMARY KEY (project_id, user_id))",
        indexes: &["CREATE INDEX {table}_user ON {table} (user_id, project_id)"],
    },
    TableDef {
        name: "project_invites",
        create: "CREATE TABLE {table} (
            id text PRIMARY KEY, project_id text NOT NULL, target_user_id text, target_email text,
            role text NOT NULL, invited_by text NOT NULL, status text NOT NULL,
            created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)",
        indexes: &[
            "CREATE INDEX {table}_project ON {table} (project_id, status)",
            "CREATE INDEX {table}_user ON {table} (target_user_id) WHERE target_user_id IS NOT NULL",
            "CREATE INDEX {table}_email ON {table} (target_email) WHERE target_email IS NOT NULL",
        ],
    },
    TableDef {
        name: "models",
        create: "CREATE TABLE {table} (
            id text PRIMARY KEY, project_id text NOT NULL, name text NOT NULL, description text,
            author_id text NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
            UNIQUE (project_id, name))",
        indexes: &["CREATE INDEX {table}_recent ON {table} (project_id, updated_at DESC, id)"],
    },
    TableDef {
        name: "versions",
        create: "CREATE TABLE {table} (
            id text PRIMARY KEY, project_id text NOT NULL, model_id text NOT NULL,
            referenced_object text NOT NULL, message text, source_application text,
            total_children_count integer NOT NULL, parents text[] NOT NULL, author_id text NOT NULL,
            created_at timestamptz NOT NULL)",
        indexes: &[
            "CREATE INDEX {table}_project ON {table} (project_id, created_at DESC, id)",
            "CREATE INDEX {table}_model ON {table} (model_id, created_at DESC, id)",
        ],
    },
    ingestions::TABLE,
    TableDef {
        name: "activity",
        create: "CREATE TABLE {table} (
            id text PRIMARY KEY, stream_id text NOT NULL, time timestamptz NOT NULL,
            resource_type text NOT NULL, resource_id text NOT NULL, action_type text NOT NULL,
            user_id text, info jsonb NOT NULL, message text NOT NULL)",
        indexes: &[
            "CREATE INDEX {table}_stream ON {table} (stream_id, time DESC, id)",
            "CREATE INDEX {table}_resource ON {table} (resource_id, time DESC, id)",
            "CREATE INDEX {table}_user ON {table} (user_id, time DESC, id)",
        ],
    },
];

impl Projection for SpeckleReadModel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    /// 2: a deleted user takes the invites addressed to their email with them; activity entries
    /// carry no personal fields. 3: favourites (`project_favorites`, `projects.favorites_count`).
    fn version(&self) -> u32 {
        3
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[
            domain::project::STREAM_CATEGORY,
            domain::ingestion::STREAM_CATEGORY,
            domain::user::STREAM_CATEGORY,
        ])
    }

    fn apply<'a>(&'a self, batch: &'a mut Batch<'_>, events: &'a [RecordedEvent]) -> Applied<'a> {
        async move {
            let t = Tables::of(batch);
            for e in events {
                let at = e.recorded_at;
                match e.stream_id.split_once(':').map(|(c, _)| c) {
                    Some(domain::project::STREAM_CATEGORY) => {
                        let event = crate::projection::project_event(e)?;
                        apply_project(batch.conn, &t, &event, at).await?;
                        record_activity(batch.conn, &t, e, &event).await?;
                        if let ProjectEvent::VersionCreated {
                            project_id,
                            object_id,
                            ..
                        } = &event
                        {
                            previews::enqueue(batch, project_id, object_id, e.cursor.position)
                                .await?;
                        }
                    }
                    Some(domain::ingestion::STREAM_CATEGORY) => {
                        let event = crate::projection::ingestion_event(e)?;
                        ingestions::apply(batch, e, &event).await?;
                    }
                    Some(domain::user::STREAM_CATEGORY) => {
                        let event = crate::projection::user_event(e)?;
                        apply_user(batch.conn, &t, &event, at).await?;
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        .boxed()
    }
}

/// Physical table names of the batch's generation.
struct Tables {
    users: String,
    projects: String,
    members: String,
    invites: String,
    models: String,
    versions: String,
    activity: String,
    ingestions: String,
    favorites: String,
}

impl Tables {
    fn of(batch: &Batch<'_>) -> Self {
        Self {
            users: batch.table("users"),
            projects: batch.table("projects"),
            members: batch.table("project_members"),
            invites: batch.table("project_invites"),
            models: batch.table("models"),
            versions: batch.table("versions"),
            activity: batch.table("activity"),
            ingestions: batch.table(ingestions::TABLE.name),
            favorites: batch.table("project_favorites"),
        }
    }
}

async fn exec(
    conn: &mut PgConnection,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<(), sqlx::Error> {
    query.execute(conn).await.map(|_| ())
}

async fn touch_project(
    conn: &mut PgConnection,
    t: &Tables,
    project_id: &str,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql(format!(
        "UPDATE {} SET updated_at = $2 WHERE id = $1",
        t.projects
    )))
    .bind(project_id)
    .bind(at)
    .execute(conn)
    .await
    .map(|_| ())
}

async fn apply_project(
    conn: &mut PgConnection,
    t: &Tables,
    event: &ProjectEvent,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    use ProjectEvent as E;
    match event {
        E::ProjectCreated {
            project_id,
            name,
            description,
            visibility,
            allow_public_comments,
            ..
        } => {
            let q = format!(
                "INSERT INTO {} (id, name, description, visibility, allow_public_comments, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
                t.projects
            );
            exec(
                conn,
                sqlx::query(sql(q))
                    .bind(project_id)
                    .bind(name)
                    .bind(description)
                    .bind(visibility.as_str())
                    .bind(allow_public_comments)
                    .bind(at),
            )
            .await
        }
        E::ProjectUpdated {
            project_id,
            name,
            description,
            visibility,
            allow_public_comments,
        } => {
            let q = format!(
                "UPDATE {} SET name = $2, description = $3, visibility = $4, allow_public_comments = $5, updated_at = $6 WHERE id = $1",
                t.projects
            );
            exec(
                conn,
                sqlx::query(sql(q))
                    .bind(project_id)
                    .bind(name)
                    .bind(description)
                    .bind(visibility.as_str())
                    .bind(allow_public_comments)
                    .bind(at),
            )
            .await
        }
        E::ProjectDeleted { project_id } => {
            for table in [
                &t.versions,
                &t.models,
                &t.invites,
                &t.members,
                &t.ingestions,
                &t.favorites,
            ] {
                exec(
                    conn,
                    sqlx::query(sql(format!("DELETE FROM {table} WHERE project_id = $1")))
                        .bind(project_id),
                )
                .await?;
            }
            exec(
                conn,
                sqlx::query(sql(format!("DELETE FROM {} WHERE id = $1", t.projects)))
                    .bind(project_id),
            )
            .await
        }
        E::ProjectMemberRoleSet {
            project_id,
            user_id,
            role,
            ..
        } => {
            let q = format!(
                "INSERT INTO {} AS m (project_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
                t.members
            );
            exec(
                conn,
                sqlx::query(sql(q))
                    .bind(project_id)
                    .bind(user_id)
                    .bind(role.as_str())
                    .bind(at),
            )
            .await?;
            touch_project(conn, t, project_id, at).await
        }
        E::ProjectMemberRemoved {
            project_id,
            user_id,
            ..
        } => {
            let q = format!(
                "DELETE FROM {} WHERE project_id = $1 AND user_id = $2",
                t.members
            );
            exec(conn, sqlx::query(sql(q)).bind(project_id).bind(user_id)).await?;
            touch_project(conn, t, project_id, at).await
        }
        E::ProjectInviteCreated {
            project_id,
            invite_id,
            target,
            role,
            invited_by,
        } => {
            let (user, email) = match target {
                InviteTarget::UserId(u) => (Some(u.as_str()), None),
                InviteTarget::Email(m) => (None, Some(m.as_str())),
            };
            let q = format!(
                "INSERT INTO {} (id, project_id, target_user_id, target_email, role, invited_by, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
                t.invites
            );
            exec(
                conn,
                sqlx::query(sql(q))
                    .bind(invite_id)
                    .bind(project_id)
                    .bind(user)
                    .bind(email)
                    .bind(role.as_str())
                    .bind(invited_by)
                    .bind(at),
            )
            .await
        }
        E::ProjectInviteAccepted { invite_id, .. } => {
            set_invite_status(conn, t, invite_id, "accepted", at).await
        }
        E::ProjectInviteDeclined { invite_id, .. } => {
            set_invite_status(conn, t, invite_id, "declined", at).await
        }
        E::ProjectInviteCancelled { invite_id, .. } => {
            set_invite_status(conn, t, invite_id, "cancelled", at).await
        }
        E::ModelCreated {
            project_id,
            model_id,
            name,
            description,
            author_id,
        } => {
            // One statement: the model, and its project touched.
            let q = format!(
                "WITH model AS (INSERT INTO {} (id, project_id, name, description, author_id, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)) \
                 UPDATE {} SET updated_at = $6 WHERE id = $2",
                t.models, t.projects
            );
            exec(
                conn,
                sqlx::query(sql(q))
                    .bind(model_id)
                    .bind(project_id)
                    .bind(name)
                    .bind(description)
                    .bind(author_id)
                    .bind(at),
            )
            .await
        }
        E::ModelUpdated {
            project_id,
            model_id,
            name,
            description,
        } => {
            let q = format!(
                "UPDATE {} SET name = $2, description = $3, updated_at = $4 WHERE id = $1",
                t.models
            );
            exec(
                conn,
                sqlx::query(sql(q))
                    .bind(model_id)
                    .bind(name)
                    .bind(description)
                    .bind(at),
            )
            .await?;
            touch_project(conn, t, project_id, at).await
        }
        E::ModelDeleted {
            project_id,
            model_id,
            ..
        } => {
            exec(
                conn,
                sqlx::query(sql(format!(
                    "DELETE FROM {} WHERE model_id = $1",
                    t.versions
                )))
                .bind(model_id),
            )
            .await?;
            exec(
                conn,
                sqlx::query(sql(format!("DELETE FROM {} WHERE id = $1", t.models))).bind(model_id),
            )
            .await?;
            touch_project(conn, t, project_id, at).await
        }
        E::VersionCreated {
            project_id,
            version_id,
            model_id,
            object_id,
            message,
            source_application,
            total_children_count,
            parents,
            author_id,
        } => {
            // One statement: the version, and its model and project touched.
            let q = format!(
                "WITH version AS (INSERT INTO {} (id, project_id, model_id, referenced_object, \
                 message, source_application, total_children_count, parents, author_id, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)), \
                 model AS (UPDATE {} SET updated_at = $10 WHERE id = $3) \
                 UPDATE {} SET updated_at = $10 WHERE id = $2",
                t.versions, t.models, t.projects
            );
            // The column is an int: a larger count saturates.
            let count = i32::try_from(*total_children_count).unwrap_or(i32::MAX);
            exec(
                conn,
                sqlx::query(sql(q))
                    .bind(version_id)
                    .bind(project_id)
                    .bind(model_id)
                    .bind(object_id)
                    .bind(message)
                    .bind(source_application)
                    .bind(count)
                    .bind(parents)
                    .bind(author_id)
                    .bind(at),
            )
            .await
        }
        E::VersionUpdated {
            project_id,
            version_id,
            message,
        } => {
            let q = format!("UPDATE {} SET message = $2 WHERE id = $1", t.versions);
            exec(conn, sqlx::query(sql(q)).bind(version_id).bind(message)).await?;
            touch_project(conn, t, project_id, at).await
        }
        E::VersionMoved {
            project_id,
            version_id,
            to_model_id,
            ..
        } => {
            let q = format!("UPDATE {} SET model_id = $2 WHERE id = $1", t.versions);
            exec(conn, sqlx::query(sql(q)).bind(version_id).bind(to_model_id)).await?;
            let q = format!("UPDATE {} SET updated_at = $2 WHERE id = $1", t.models);
            exec(conn, sqlx::query(sql(q)).bind(to_model_id).bind(at)).await?;
            touch_project(conn, t, project_id, at).await
        }
        E::VersionDeleted {
            project_id,
            version_id,
            ..
        } => {
            exec(
                conn,
                sqlx::query(sql(format!("DELETE FROM {} WHERE id = $1", t.versions)))
                    .bind(version_id),
            )
            .await?;
            touch_project(conn, t, project_id, at).await
        }
        // Receipts feed activity and webhooks; the version itself does not change.
        E::VersionReceived { .. } => Ok(()),
        // The count moves only when the row set changes, so a repeated event cannot skew it.
        E::ProjectFavoriteSet {
            project_id,
            user_id,
            favorited: true,
        } => {
            let q = format!(
                "WITH added AS (INSERT INTO {} (project_id, user_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING RETURNING 1) \
                 UPDATE {} SET favorites_count = favorites_count + (SELECT count(*) FROM added) WHERE id = $1",
                t.favorites, t.projects
            );
            exec(
                conn,
                sqlx::query(sql(q)).bind(project_id).bind(user_id).bind(at),
            )
            .await
        }
        E::ProjectFavoriteSet {
            project_id,
            user_id,
            favorited: false,
        } => {
            let q = format!(
                "WITH removed AS (DELETE FROM {} WHERE project_id = $1 AND user_id = $2 RETURNING 1) \
                 UPDATE {} SET favorites_count = favorites_count - (SELECT count(*) FROM removed) WHERE id = $1",
                t.favorites, t.projects
            );
            exec(conn, sqlx::query(sql(q)).bind(project_id).bind(user_id)).await
        }
        // Webhook configuration is the webhooks projection's concern.
        E::WebhookCreated { .. }
        | E::WebhookUpdated { .. }
        | E::WebhookDeleted { .. }
        | E::WebhookDisabled { .. }
        | E::WebhookRedeliveryRequested { .. } => Ok(()),
    }
}

/// Speckle's activity feed: one row per entry `domain::activity` derives from the event. The
/// id is the event's position and the entry's index, so a rebuild writes the same rows.
async fn record_activity(
    conn: &mut PgConnection,
    t: &Tables,
    e: &RecordedEvent,
    event: &ProjectEvent,
) -> Result<(), sqlx::Error> {
    let user = e
        .metadata
        .actor_user_id
        .clone()
        .or_else(|| domain::activity::actor_hint(event).map(str::to_owned));
    for (i, a) in domain::activity::of_project_event(event)
        .into_iter()
        .enumerate()
    {
        let q = format!(
            "INSERT INTO {} (id, stream_id, time, resource_type, resource_id, action_type, user_id, info, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
            t.activity
        );
        exec(
            conn,
            sqlx::query(sql(q))
                .bind(format!("{}-{i}", e.cursor.position))
                .bind(event.project_id())
                .bind(activity_time(e))
                .bind(a.resource_type.as_str())
                .bind(a.resource_id)
                .bind(a.action_type)
                .bind(user.clone())
                .bind(domain::personal::without_personal(
                    &e.event_type,
                    &e.payload,
                ))
                .bind(a.message),
        )
        .await?;
    }
    Ok(())
}

/// An activity entry's time: the event's, plus the stream version's last three digits in
/// microseconds, so the entries of one transaction (which share its timestamp) stay in order
/// and time cursors never split them.
fn activity_time(e: &RecordedEvent) -> OffsetDateTime {
    e.recorded_at + time::Duration::microseconds(e.stream_version % 1000)
}

async fn set_invite_status(
    conn: &mut PgConnection,
    t: &Tables,
    invite_id: &str,
    status: &str,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    let q = format!(
        "UPDATE {} SET status = $2, updated_at = $3 WHERE id = $1",
        t.invites
    );
    exec(
        conn,
        sqlx::query(sql(q)).bind(invite_id).bind(status).bind(at),
    )
    .await
}

async fn apply_user(
    conn: &mut PgConnection,
    t: &Tables,
    event: &UserEvent,
    at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    match event {
        UserEvent::UserCreated {
            user_id,
            email,
            name,
            company,
            server_role,
        } => {
            let q = format!(
                "INSERT INTO {} (id, email, name, company, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                t.users
            );
            exec(
                conn,
                sqlx::query(sql(q))
                    .bind(user_id)
                    .bind(email)
                    .bind(name)
                    .bind(company)
                    .bind(server_role.as_str())
                    .bind(at),
            )
            .await
        }
        UserEvent::UserProfileUpdated {
            user_id,
            name,
            company,
            bio,
            avatar,
        } => {
            let q = format!(
                "UPDATE {} SET name = $2, company = $3, bio = $4, avatar = $5, updated_at = $6 WHERE id = $1",
                t.users
            );
            exec(
                conn,
                sqlx::query(sql(q))
                    .bind(user_id)
                    .bind(name)
                    .bind(company)
                    .bind(bio)
                    .bind(avatar)
                    .bind(at),
            )
            .await
        }
        UserEvent::UserRoleChanged { user_id, role, .. } => {
            let q = format!(
                "UPDATE {} SET role = $2, updated_at = $3 WHERE id = $1",
                t.users
            );
            exec(
                conn,
                sqlx::query(sql(q))
                    .bind(user_id)
                    .bind(role.as_str())
                    .bind(at),
            )
            .await
        }
        UserEvent::UserDeleted { user_id } => {
            // Invites addressed to their address leave with them (answered ones included).
            let q = format!(
                "DELETE FROM {} WHERE target_email = (SELECT email FROM {} WHERE id = $1)",
                t.invites, t.users
            );
            exec(conn, sqlx::query(sql(q)).bind(user_id)).await?;
            exec(
                conn,
                sqlx::query(sql(format!("DELETE FROM {} WHERE user_id = $1", t.members)))
                    .bind(user_id),
            )
            .await?;
            // Their favourites leave the counts with them.
            let q = format!(
                "WITH removed AS (DELETE FROM {} WHERE user_id = $1 RETURNING project_id) \
                 UPDATE {} p SET favorites_count = p.favorites_count - r.n \
                 FROM (SELECT project_id, count(*) AS n FROM removed GROUP BY project_id) r WHERE p.id = r.project_id",
                t.favorites, t.projects
            );
            exec(conn, sqlx::query(sql(q)).bind(user_id)).await?;
            exec(
                conn,
                sqlx::query(sql(format!("DELETE FROM {} WHERE id = $1", t.users))).bind(user_id),
            )
            .await
        }
        // Mail and verification state is the `mail` projection's.
        UserEvent::UserEmailVerificationRequested { .. }
        | UserEvent::UserEmailVerified { .. }
        | UserEvent::UserPasswordResetRequested { .. }
        | UserEvent::UserPasswordReset { .. } => Ok(()),
    }
}

//! What a projection is, and how its tables are named and installed.

use futures::future::BoxFuture;
use schema::RecordedEvent;
use schema::jobs::NewJob;
use sqlx::{PgConnection, PgPool};

/// One table a projection owns. `{table}` in the SQL stands for the physical name.
#[derive(Clone, Copy, Debug)]
pub struct TableDef {
    /// The logical name: readers query the view of this name.
    pub name: &'static str,
    /// `CREATE TABLE {table} (...)`, with the keys the handler's upserts need.
    pub create: &'static str,
    /// Secondary indexes, built after a rebuild's bulk load.
    pub indexes: &'static [&'static str],
}

/// Why a handler refused a batch.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The handler's own failure, with the position of the event it failed on if known.
    #[error("projection failed at position {position:?}: {message}")]
    Handler {
        /// The event's global position.
        position: Option<i64>,
        /// What went wrong.
        message: String,
    },
    /// The database failed.
    #[error("projection database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// The one decoder every projection reads project events with: upcast to the current shape,
/// then decoded; a failure names the event's position.
pub fn project_event(e: &RecordedEvent) -> Result<domain::ProjectEvent, ProjectionError> {
    domain::ProjectEvent::decode(&e.event_type, schema_version(e)?, e.payload.clone())
        .map_err(|err| handler_error(e, err))
}

/// Like [`project_event`], for ingestion events.
pub fn ingestion_event(e: &RecordedEvent) -> Result<domain::IngestionEvent, ProjectionError> {
    domain::IngestionEvent::decode(&e.event_type, schema_version(e)?, e.payload.clone())
        .map_err(|err| handler_error(e, err))
}

/// Like [`project_event`], for user events.
pub fn user_event(e: &RecordedEvent) -> Result<domain::UserEvent, ProjectionError> {
    domain::UserEvent::decode(&e.event_type, schema_version(e)?, e.payload.clone())
        .map_err(|err| handler_error(e, err))
}

fn schema_version(e: &RecordedEvent) -> Result<u32, ProjectionError> {
    u32::try_from(e.schema_version).map_err(|_| handler_error(e, "negative schema version"))
}

fn handler_error(e: &RecordedEvent, err: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Handler {
        position: Some(e.cursor.position),
        message: format!("{} at position {}: {err}", e.event_type, e.cursor.position),
    }
}

/// The transaction a handler writes in, with the names of its current tables.
pub struct Batch<'t> {
    /// The open transaction's connection.
    pub conn: &'t mut PgConnection,
    generation: i32,
    jobs_enabled: bool,
}

impl<'t> Batch<'t> {
    pub(crate) fn new(conn: &'t mut PgConnection, generation: i32, jobs_enabled: bool) -> Self {
        Self {
            conn,
            generation,
            jobs_enabled,
        }
    }

    /// The physical name of logical table `name` in this batch's generation.
    pub fn table(&self, name: &str) -> String {
        physical(name, self.generation)
    }

    /// Enqueues a reaction job in the batch's transaction. A rebuild replays history, whose
    /// reactions already happened, so there this does nothing.
    pub async fn enqueue(&mut self, job: &NewJob) -> Result<(), sqlx::Error> {
        if self.jobs_enabled {
            schema::jobs::enqueue_on(self.conn, job).await?;
        }
        Ok(())
    }
}

/// A read model: a name, its tables, and a fold over event batches.
pub trait Projection: Send + Sync + 'static {
    /// Unique, stable name (the checkpoint key).
    fn name(&self) -> &'static str;
    /// The tables it owns.
    fn tables(&self) -> &'static [TableDef];
    /// The version of its fold: bump it when what the handler writes changes without a change
    /// to [`Self::tables`], so existing read models are rebuilt (`strata migrate`).
    fn version(&self) -> u32 {
        1
    }
    /// The stream categories whose events it folds (`None`: every stream). The runtime and
    /// rebuilds hand it only those ([`fold`]), and a read-your-writes wait skips it for an
    /// append to any other stream: its read model already answers as if it had applied it.
    fn categories(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// Whether commands wait for it (read-your-writes). One no command waits for is folded in
    /// batches: after a wake-up its runner lets [`crate::RuntimeOptions::linger`] pass, so the
    /// events of that time share one transaction instead of competing, one at a time, with
    /// the read models a command is waiting for. No command waits for it
    /// ([`crate::following`] leaves it out).
    fn awaited(&self) -> bool {
        true
    }
    /// Folds `events` (in log order) into the batch's tables. Called through [`fold`].
    fn apply<'a>(&'a self, batch: &'a mut Batch<'_>, events: &'a [RecordedEvent]) -> Applied<'a>;
}

/// Whether `projection` folds the events of stream `stream_id` ([`Projection::categories`]).
pub fn follows(projection: &dyn Projection, stream_id: &str) -> bool {
    match projection.categories() {
        None => true,
        Some(categories) => stream_id
            .split_once(':')
            .is_some_and(|(category, _)| categories.contains(&category)),
    }
}

/// Folds the events of `events` that `projection` follows into the batch's tables.
pub async fn fold(
    projection: &dyn Projection,
    batch: &mut Batch<'_>,
    events: &[RecordedEvent],
) -> Result<(), ProjectionError> {
    if projection.categories().is_none() {
        return projection.apply(batch, events).await;
    }
    let followed: Vec<RecordedEvent> = events
        .iter()
        .filter(|e| follows(projection, &e.stream_id))
        .cloned()
        .collect();
    if followed.is_empty() {
        return Ok(());
    }
    projection.apply(batch, &followed).await
}

/// What [`Projection::apply`] returns: the fold of one batch, to be awaited.
pub type Applied<'a> = BoxFuture<'a, Result<(), ProjectionError>>;

/// The fingerprint of a projection's definition (its version and every table's DDL), stored
/// with its checkpoint when its live tables are built.
pub fn definition(projection: &dyn Projection) -> String {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(format!("v{}\n", projection.version()));
    for table in projection.tables() {
        hash.update(table.name);
        hash.update("\n");
        hash.update(table.create);
        for index in table.indexes {
            hash.update("\n");
            hash.update(index);
        }
        hash.update("\n\n");
    }
    hex::encode(hash.finalize())
}

/// Why an installed projection must be rebuilt before it may fold again: a table of its
/// definition is missing, or its stored definition is not the code's. `None` when current.
pub async fn needs_rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
) -> Result<Option<String>, sqlx::Error> {
    let missing = missing_tables(pool, projection).await?;
    if !missing.is_empty() {
        return Ok(Some(format!("new tables {missing:?}")));
    }
    let stored: Option<Option<String>> =
        sqlx::query_scalar("SELECT definition FROM projection_checkpoints WHERE projection = $1")
            .bind(projection.name())
            .fetch_optional(pool)
            .await?;
    Ok(match stored {
        Some(Some(d)) if d == definition(projection) => None,
        Some(_) => Some("its definition changed".to_owned()),
        None => None,
    })
}

pub(crate) fn physical(name: &str, generation: i32) -> String {
    format!("{name}_g{generation}")
}

pub(crate) fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

/// Creates the tables of `generation` (dropping leftovers of a crashed attempt), optionally
/// with their secondary indexes.
pub(crate) async fn create_tables(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    generation: i32,
    with_indexes: bool,
) -> Result<(), sqlx::Error> {
    for table in projection.tables() {
        let name = physical(table.name, generation);
        sqlx::query(sql(format!("DROP TABLE IF EXISTS {name}")))
            .execute(&mut *conn)
            .await?;
        sqlx::query(sql(table.create.replace("{table}", &name)))
            .execute(&mut *conn)
            .await?;
        if with_indexes {
            create_indexes(conn, table, generation).await?;
        }
    }
    Ok(())
}

pub(crate) async fn create_indexes(
    conn: &mut PgConnection,
    table: &TableDef,
    generation: i32,
) -> Result<(), sqlx::Error> {
    let name = physical(table.name, generation);
    for index in table.indexes {
        sqlx::query(sql(index.replace("{table}", &name)))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Points each logical view at `generation`'s tables.
pub(crate) async fn point_views(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    generation: i32,
) -> Result<(), sqlx::Error> {
    for table in projection.tables() {
        sqlx::query(sql(format!("DROP VIEW IF EXISTS {}", table.name)))
            .execute(&mut *conn)
            .await?;
        sqlx::query(sql(format!(
            "CREATE VIEW {} AS SELECT * FROM {}",
            table.name,
            physical(table.name, generation)
        )))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Creates the tables, views and checkpoint of every projection not installed yet. Runs with
/// the owning role (it is DDL), from `strata migrate`.
pub async fn install(
    pool: &PgPool,
    projections: &[std::sync::Arc<dyn Projection>],
) -> Result<(), sqlx::Error> {
    for projection in projections {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':install'))")
            .execute(&mut *tx)
            .await?;
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM projection_checkpoints WHERE projection = $1)",
        )
        .bind(projection.name())
        .fetch_one(&mut *tx)
        .await?;
        if !exists {
            create_tables(&mut tx, projection.as_ref(), 1, true).await?;
            point_views(&mut tx, projection.as_ref(), 1).await?;
            sqlx::query(
                "INSERT INTO projection_checkpoints (projection, definition) VALUES ($1, $2)",
            )
            .bind(projection.name())
            .bind(definition(projection.as_ref()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}

/// Tables of an installed projection that do not exist yet: its definition gained a table
/// since it was installed, so it needs a rebuild (`strata migrate` does it).
pub async fn missing_tables(
    pool: &PgPool,
    projection: &dyn Projection,
) -> Result<Vec<&'static str>, sqlx::Error> {
    let mut missing = Vec::new();
    for table in projection.tables() {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table.name)
            .fetch_one(pool)
            .await?;
        if !exists {
            missing.push(table.name);
        }
    }
    Ok(missing)
}

//! `stream_heads`: every stream's version, last event and size. Operators and auditors use
//! it to list what the log holds without scanning it.

use std::collections::HashMap;

use futures::FutureExt;
use schema::RecordedEvent;
use time::OffsetDateTime;

use crate::projection::{Applied, Batch, Projection, TableDef, sql};

/// The `stream_heads` projection.
pub struct StreamHeads;

const TABLES: &[TableDef] = &[TableDef {
    name: "stream_heads",
    create: "CREATE TABLE {table} (
        stream_id        text PRIMARY KEY,
        category         text        NOT NULL,
        version          bigint      NOT NULL,
        last_event_type  text        NOT NULL,
        last_recorded_at timestamptz NOT NULL,
        events           bigint      NOT NULL)",
    indexes: &["CREATE INDEX {table}_category ON {table} (category, stream_id)"],
}];

struct Head {
    version: i64,
    event_type: String,
    recorded_at: OffsetDateTime,
    events: i64,
}

impl Projection for StreamHeads {
    fn name(&self) -> &'static str {
        "stream_heads"
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    /// Operators and auditors read it; no command waits for it.
    fn awaited(&self) -> bool {
        false
    }

    fn apply<'a>(&'a self, batch: &'a mut Batch<'_>, events: &'a [RecordedEvent]) -> Applied<'a> {
        async move {
            // Fold the batch in memory, then write one row per stream in one statement.
            let mut heads: HashMap<&str, Head> = HashMap::new();
            for e in events {
                let head = heads.entry(e.stream_id.as_str()).or_insert(Head {
                    version: 0,
                    event_type: String::new(),
                    recorded_at: e.recorded_at,
                    events: 0,
                });
                head.events += 1;
                if e.stream_version > head.version {
                    head.version = e.stream_version;
                    head.event_type.clone_from(&e.event_type);
                    head.recorded_at = e.recorded_at;
                }
            }
            let mut ids = Vec::with_capacity(heads.len());
            let mut categories = Vec::with_capacity(heads.len());
            let mut versions = Vec::with_capacity(heads.len());
            let mut types = Vec::with_capacity(heads.len());
            let mut times = Vec::with_capacity(heads.len());
            let mut counts = Vec::with_capacity(heads.len());
            for (id, head) in heads {
                ids.push(id);
                categories.push(id.split_once(':').map(|(c, _)| c).unwrap_or_default());
                versions.push(head.version);
                types.push(head.event_type);
                times.push(head.recorded_at);
                counts.push(head.events);
            }
            let table = batch.table("stream_heads");
            sqlx::query(sql(format!(
                "INSERT INTO {table} AS t (stream_id, category, version, last_event_type, last_recorded_at, events) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[], $6::bigint[]) \
                 ON CONFLICT (stream_id) DO UPDATE SET \
                   version = GREATEST(t.version, excluded.version), \
                   last_event_type = CASE WHEN excluded.version > t.version THEN excluded.last_event_type ELSE t.last_event_type END, \
                   last_recorded_at = CASE WHEN excluded.version > t.version THEN excluded.last_recorded_at ELSE t.last_recorded_at END, \
                   events = t.events + excluded.events"
            )))
            .bind(&ids)
            .bind(&categories)
            .bind(&versions)
            .bind(&types)
            .bind(&times)
            .bind(&counts)
            .execute(&mut *batch.conn)
            .await?;
            Ok(())
        }
        .boxed()
    }
}

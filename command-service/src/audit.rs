//! Operators' and auditors' reads of a project's history, straight from the event log: every
//! change with who made it (`history`), and the project as it was at a moment (`replay`), both
//! folded by `domain::audit` from the events alone. Exports, seals and their verification are
//! `schema::audit`.

use domain::ProjectEvent;
use domain::audit::ProjectView;
use schema::EventLog;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One change, as `strata audit history` prints it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Global log position.
    pub position: i64,
    /// When it was recorded (RFC 3339).
    pub time: String,
    /// Version within the project's stream.
    pub version: i64,
    /// Event type.
    pub event_type: String,
    /// The acting user.
    pub actor_user_id: Option<String>,
    /// The token they used.
    pub token_id: Option<String>,
    /// The client application and version.
    pub client: Option<String>,
    /// The request it came from.
    pub request_id: Option<String>,
    /// What changed, readably.
    pub summary: String,
}

/// Which changes to list.
#[derive(Clone, Debug, Default)]
pub struct HistoryFilter {
    /// Not before.
    pub since: Option<OffsetDateTime>,
    /// Not after.
    pub until: Option<OffsetDateTime>,
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only these event types (empty: all).
    pub types: Vec<String>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The project's stream decoded (upcast), with each event's record; up to a moment when given.
async fn project_events(
    log: &EventLog,
    project_id: &str,
    until: Option<(i64, AsOf)>,
) -> anyhow::Result<Vec<(schema::RecordedEvent, ProjectEvent)>> {
    let stream = domain::StreamId::parse(&format!(
        "{}:{project_id}",
        domain::project::STREAM_CATEGORY
    ))?;
    let recorded = match until {
        None => log.read_stream(&stream, 1).await?,
        Some((after, as_of)) => {
            let (position, time) = as_of.bounds();
            log.read_stream_until(&stream, after, position, time)
                .await?
        }
    };
    let mut out = Vec::new();
    for mut e in recorded {
        // The decoded event replaces the raw payload (nothing reads it after).
        let event = ProjectEvent::decode(
            &e.event_type,
            u32::try_from(e.schema_version).unwrap_or(0), // the log's CHECK keeps it >= 1
            std::mem::take(&mut e.payload),
        )?;
        out.push((e, event));
    }
    Ok(out)
}

/// Every change to `project_id` that passes `filter`, in log order.
pub async fn history(
    log: &EventLog,
    project_id: &str,
    filter: &HistoryFilter,
) -> anyhow::Result<Vec<HistoryEntry>> {
    let mut view = ProjectView::default();
    let mut out = Vec::new();
    for (e, event) in project_events(log, project_id, None).await? {
        let time = rfc3339(e.recorded_at);
        let summary = view.describe(&event);
        view.apply(&event, &time);
        let m = &e.metadata;
        let wanted = filter.since.is_none_or(|s| e.recorded_at >= s)
            && filter.until.is_none_or(|u| e.recorded_at <= u)
            && filter
                .actor
                .as_ref()
                .is_none_or(|a| m.actor_user_id.as_ref() == Some(a))
            && (filter.types.is_empty() || filter.types.contains(&e.event_type));
        if wanted {
            out.push(HistoryEntry {
                position: e.cursor.position,
                time,
                version: e.stream_version,
                event_type: e.event_type.clone(),
                actor_user_id: m.actor_user_id.clone(),
                token_id: m.token_id.clone(),
                client: m.client_name.as_ref().map(|n| match &m.client_version {
                    Some(v) => format!("{n} {v}"),
                    None => n.clone(),
                }),
                request_id: m.request_id.clone(),
                summary,
            });
        }
    }
    Ok(out)
}

/// The moment a replay stops at.
#[derive(Clone, Copy, Debug)]
pub enum AsOf {
    /// Every event recorded at or before this time.
    Time(OffsetDateTime),
    /// Every event at or before this global position.
    Position(i64),
}

impl AsOf {
    /// The last position and the last time (when a time) an event may have.
    fn bounds(self) -> (i64, Option<OffsetDateTime>) {
        match self {
            AsOf::Position(p) => (p, None),
            AsOf::Time(t) => (i64::MAX, Some(t)),
        }
    }
}

/// The project as it was `as_of`, with the position of the last event folded; `None` when it
/// did not exist yet.
///
/// Folds from the nearest stored snapshot at or before the moment (`audit_snapshots`, a
/// cache: without one it folds from the first event), and stores a snapshot every
/// [`domain::audit::SNAPSHOT_EVERY`] events it folds past, so a replay folds at most that
/// many events once the history has been replayed through.
pub async fn replay(
    log: &EventLog,
    project_id: &str,
    as_of: AsOf,
) -> anyhow::Result<Option<(ProjectView, i64)>> {
    replay_with(log, project_id, as_of, Snapshots::Use).await
}

/// Whether a replay reads and keeps snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Snapshots {
    /// Start from the nearest, store new ones.
    Use,
    /// Fold every event from the first, store nothing (what a snapshot must equal; the
    /// bench's reference).
    Ignore,
}

/// [`replay`], choosing whether snapshots are used.
pub async fn replay_with(
    log: &EventLog,
    project_id: &str,
    as_of: AsOf,
    snapshots: Snapshots,
) -> anyhow::Result<Option<(ProjectView, i64)>> {
    use domain::audit::{FOLD_VERSION, SNAPSHOT_EVERY};
    let (max_position, max_time) = as_of.bounds();
    let nearest = match snapshots {
        Snapshots::Use => {
            schema::audit::nearest_snapshot(
                log.pool(),
                project_id,
                FOLD_VERSION,
                max_position,
                max_time,
            )
            .await?
        }
        Snapshots::Ignore => None,
    };
    let (mut view, mut last, after) = match nearest {
        Some(s) => match serde_json::from_value::<ProjectView>(s.view) {
            Ok(view) => (view, Some(s.position), s.stream_version),
            // A snapshot this fold cannot read is only a cache miss.
            Err(e) => {
                tracing::warn!(error = %e, project_id, "ignoring an unreadable audit snapshot");
                (ProjectView::default(), None, 0)
            }
        },
        None => (ProjectView::default(), None, 0),
    };
    let mut fresh = Vec::new();
    for (e, event) in project_events(log, project_id, Some((after, as_of))).await? {
        view.apply(&event, &rfc3339(e.recorded_at));
        last = Some(e.cursor.position);
        if snapshots == Snapshots::Use && e.stream_version % SNAPSHOT_EVERY == 0 {
            let snapshot = schema::audit::Snapshot {
                stream_version: e.stream_version,
                position: e.cursor.position,
                view: serde_json::to_value(&view)?,
            };
            fresh.push((snapshot, e.recorded_at));
        }
    }
    for (snapshot, at) in fresh {
        // A cache: failing to keep one costs only a slower replay next time.
        if let Err(e) =
            schema::audit::store_snapshot(log.pool(), project_id, FOLD_VERSION, &snapshot, at).await
        {
            tracing::warn!(error = %e, project_id, "storing an audit snapshot");
        }
    }
    Ok(last.map(|p| (view, p)))
}

/// Parses an RFC 3339 time argument.
pub fn parse_time(s: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        anyhow::anyhow!("{s:?} is not an RFC 3339 time (e.g. 2026-12-02T10:00:00Z): {e}")
    })
}

/// A table for people: time, position, actor, type, summary.
pub fn history_table(entries: &[HistoryEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!(
            "{}  #{:<8} {:<12} {:<28} {}\n",
            e.time,
            e.position,
            e.actor_user_id.as_deref().unwrap_or("-"), // no actor: a system change
            e.event_type,
            e.summary
        ));
    }
    out
}

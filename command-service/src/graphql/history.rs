//! `Project.history` and `Project.asOf`: the audit reads (`crate::audit`) over GraphQL, for the
//! project's owners and server admins (`policy::can_audit_project`). Both fold the project's
//! events; neither reads a read model, so they are never cached.

use async_graphql::{Context, SimpleObject};
use domain::audit::ProjectView;
use time::OffsetDateTime;

use super::errors::{ErrorCode, denied, gql_error};
use super::project::Project;
use super::services;
use crate::audit::{AsOf, HistoryEntry, HistoryFilter};
use crate::error::ApiResult;

/// Most history entries one page returns.
const MAX_LIMIT: i32 = 500;

/// One change.
#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectHistoryEntry {
    /// Global log position (also the paging cursor).
    position: String,
    /// When it was recorded.
    time: String,
    /// The event's type, e.g. `ModelUpdated`.
    event_type: String,
    /// The acting user.
    actor_user_id: Option<String>,
    /// The token used.
    token_id: Option<String>,
    /// Client application and version.
    client: Option<String>,
    /// The request it came from (`x-request-id`).
    request_id: Option<String>,
    /// What changed, readably.
    summary: String,
}

impl From<HistoryEntry> for ProjectHistoryEntry {
    fn from(e: HistoryEntry) -> Self {
        Self {
            position: e.position.to_string(),
            time: e.time,
            event_type: e.event_type,
            actor_user_id: e.actor_user_id,
            token_id: e.token_id,
            client: e.client,
            request_id: e.request_id,
            summary: e.summary,
        }
    }
}

/// A page of history.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectHistoryCollection {
    /// Matching changes in all.
    total_count: i64,
    /// Pass as `cursor` for the next page; null at the end.
    cursor: Option<String>,
    /// This page, oldest first.
    items: Vec<ProjectHistoryEntry>,
}

/// A member as of a moment.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectMemberAsOf {
    /// The user.
    user_id: String,
    /// `stream:owner`, `stream:contributor` or `stream:reviewer`.
    role: String,
}

/// A version as of a moment.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct VersionAsOf {
    /// Id.
    id: String,
    /// Root object (objects are never deleted with a version: it still loads).
    referenced_object: String,
    /// Message.
    message: Option<String>,
    /// Sending application.
    source_application: Option<String>,
    /// Author.
    author_id: String,
    /// Created.
    created_at: String,
}

/// A model as of a moment, with its versions then.
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ModelAsOf {
    /// Id.
    id: String,
    /// Name.
    name: String,
    /// Description.
    description: Option<String>,
    /// Created.
    created_at: String,
    /// Its versions then, newest first.
    versions: Vec<VersionAsOf>,
}

/// A webhook's settings as of a moment (never its secret).
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct WebhookAsOf {
    /// Id.
    id: String,
    /// Target.
    url: String,
    /// Description.
    description: String,
    /// Triggers.
    triggers: Vec<String>,
    /// Enabled.
    enabled: bool,
}

/// The project as it was, folded from its events alone (read-only).
#[derive(SimpleObject)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectAsOf {
    /// The last event folded.
    position: String,
    /// Name.
    name: String,
    /// Description.
    description: String,
    /// `PRIVATE`, `UNLISTED` or `PUBLIC`.
    visibility: String,
    /// Deleted by then.
    deleted: bool,
    /// Team.
    team: Vec<ProjectMemberAsOf>,
    /// Models, by name.
    models: Vec<ModelAsOf>,
    /// Webhooks.
    webhooks: Vec<WebhookAsOf>,
}

impl ProjectAsOf {
    fn from_view(view: ProjectView, position: i64) -> Self {
        let mut models: Vec<ModelAsOf> = view
            .models
            .iter()
            .map(|(id, m)| {
                let mut versions: Vec<VersionAsOf> = view
                    .versions
                    .iter()
                    .filter(|(_, v)| v.model_id == *id)
                    .map(|(vid, v)| VersionAsOf {
                        id: vid.clone(),
                        referenced_object: v.referenced_object.clone(),
                        message: v.message.clone(),
                        source_application: v.source_application.clone(),
                        author_id: v.author_id.clone(),
                        created_at: v.created_at.clone(),
                    })
                    .collect();
                versions.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
                ModelAsOf {
                    id: id.clone(),
                    name: m.name.clone(),
                    description: m.description.clone(),
                    created_at: m.created_at.clone(),
                    versions,
                }
            })
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            position: position.to_string(),
            name: view.name,
            description: view.description,
            visibility: view
                .visibility
                .map_or("PRIVATE", |v| match v {
                    domain::policy::Visibility::Public => "PUBLIC",
                    domain::policy::Visibility::Unlisted => "UNLISTED",
                    domain::policy::Visibility::Private => "PRIVATE",
                })
                .to_owned(),
            deleted: view.deleted,
            team: view
                .team
                .iter()
                .map(|(u, r)| ProjectMemberAsOf {
                    user_id: u.clone(),
                    role: r.as_str().to_owned(),
                })
                .collect(),
            models,
            webhooks: view
                .webhooks
                .into_iter()
                .map(|(id, w)| WebhookAsOf {
                    id,
                    url: w.url,
                    description: w.description,
                    triggers: w.triggers,
                    enabled: w.enabled,
                })
                .collect(),
        }
    }
}

fn allowed(ctx: &Context<'_>, project: &Project) -> ApiResult<()> {
    let principal = ctx.data::<domain::Principal>()?;
    domain::policy::can_audit_project(principal, &project.access()).map_err(|d| denied(&d))
}

fn parse_position(s: &str, what: &str) -> ApiResult<i64> {
    s.parse().map_err(|_| {
        gql_error(
            ErrorCode::BadRequest,
            format!("{what} must be a log position"),
        )
    })
}

/// `Project.history`: the page after `cursor` of the changes `filter` lets through.
pub(crate) async fn history(
    ctx: &Context<'_>,
    project: &Project,
    cursor: Option<String>,
    limit: Option<i32>,
    filter: HistoryFilter,
) -> ApiResult<ProjectHistoryCollection> {
    allowed(ctx, project)?;
    let limit = limit.unwrap_or(25); // the original's default page size
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(gql_error(
            ErrorCode::BadRequest,
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = cursor
        .as_deref()
        .map(|c| parse_position(c, "cursor"))
        .transpose()?;
    let all = crate::audit::history(services::event_log(ctx)?, project.project_id(), &filter)
        .await
        .map_err(|e| gql_error(ErrorCode::Internal, e.to_string()))?;
    let total_count = i64::try_from(all.len()).unwrap_or(i64::MAX); // a length fits i64
    let rest: Vec<HistoryEntry> = all
        .into_iter()
        .filter(|e| after.is_none_or(|a| e.position > a))
        .collect();
    let more = rest.len() > limit as usize;
    let items: Vec<ProjectHistoryEntry> = rest
        .into_iter()
        .take(limit as usize)
        .map(Into::into)
        .collect();
    Ok(ProjectHistoryCollection {
        total_count,
        cursor: if more {
            items.last().map(|e| e.position.clone())
        } else {
            None
        },
        items,
    })
}

/// `Project.asOf`.
pub(crate) async fn as_of(
    ctx: &Context<'_>,
    project: &Project,
    time: Option<OffsetDateTime>,
    position: Option<String>,
) -> ApiResult<Option<ProjectAsOf>> {
    allowed(ctx, project)?;
    let at = match (time, position) {
        (Some(t), None) => AsOf::Time(t),
        (None, Some(p)) => AsOf::Position(parse_position(&p, "position")?),
        _ => {
            return Err(gql_error(
                ErrorCode::BadRequest,
                "give exactly one of time and position",
            ));
        }
    };
    let replayed = crate::audit::replay(services::event_log(ctx)?, project.project_id(), at)
        .await
        .map_err(|e| gql_error(ErrorCode::Internal, e.to_string()))?;
    Ok(replayed.map(|(view, position)| ProjectAsOf::from_view(view, position)))
}

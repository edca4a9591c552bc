//! Subscriptions: the current API's `project*Updated` and `userProjectsUpdated`, and the
//! legacy `stream*`/`branch*`/`commit*` ones (JSON payloads). Every stream reads this
//! process's [`crate::realtime::Hub`], and every event is checked against the subscriber's
//! access at delivery time: the access facts are loaded once and then follow the project's
//! own events (role set or removed, visibility changed), so a member removed from a project
//! gets nothing from the event that removes them on.

use std::collections::HashSet;

use async_graphql::{ComplexObject, Context, Enum, SimpleObject, Subscription};
use domain::ProjectEvent;
use domain::policy::ProjectAccess;
use futures::stream::{BoxStream, Stream, StreamExt};
use projections::speckle::query;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::mutations::signed_in;
use super::object::JsonObject;
use super::project::{self, Model, Project, Version};
use super::services;
use crate::error::{ApiResult, AppError};

/// Set on a connection whose subscriber fell too far behind; the socket loop closes it.
#[derive(Clone, Default)]
pub struct SlowSubscriber(pub std::sync::Arc<tokio::sync::Notify>);

/// The subscription root.
pub struct Subscription;

/// `projectUpdated` kinds.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub enum ProjectUpdatedMessageType {
    /// Settings changed.
    Updated,
    /// Deleted.
    Deleted,
}

/// `projectUpdated` message.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ProjectUpdatedMessage {
    id: String,
    #[graphql(name = "type")]
    kind: ProjectUpdatedMessageType,
    /// The project as the publisher read it right after the change.
    #[graphql(skip)]
    snapshot: Option<Project>,
}

#[ComplexObject]
impl ProjectUpdatedMessage {
    /// The project after the change (null once deleted).
    async fn project(&self, ctx: &Context<'_>) -> Option<Project> {
        if self.kind == ProjectUpdatedMessageType::Deleted {
            return None;
        }
        match &self.snapshot {
            Some(p) => Some(p.clone()),
            None => project::load(ctx, &self.id).await.ok(),
        }
    }
}

/// Created, updated or deleted.
#[derive(Copy, Clone, Eq, PartialEq)]
pub enum ChangeType {
    /// Created.
    Created,
    /// Updated.
    Updated,
    /// Deleted.
    Deleted,
}

/// The original names one enum per message type; they carry the same three values.
macro_rules! change_type_on_the_wire {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Enum, Copy, Clone, Eq, PartialEq)]
        #[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            /// Created.
            Created,
            /// Updated.
            Updated,
            /// Deleted.
            Deleted,
        }

        impl From<ChangeType> for $name {
            fn from(kind: ChangeType) -> Self {
                match kind {
                    ChangeType::Created => Self::Created,
                    ChangeType::Updated => Self::Updated,
                    ChangeType::Deleted => Self::Deleted,
                }
            }
        }
    };
}

change_type_on_the_wire!(
    /// `projectModelsUpdated.type`.
    ProjectModelsUpdatedMessageType
);
change_type_on_the_wire!(
    /// `projectVersionsUpdated.type`.
    ProjectVersionsUpdatedMessageType
);

/// `projectModelsUpdated` message.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ProjectModelsUpdatedMessage {
    id: String,
    #[graphql(skip)]
    kind: ChangeType,
}

#[ComplexObject]
impl ProjectModelsUpdatedMessage {
    /// What happened to the model.
    #[graphql(name = "type")]
    async fn kind_on_the_wire(&self) -> ProjectModelsUpdatedMessageType {
        self.kind.into()
    }

    /// The model after the change (null once deleted).
    async fn model(&self, ctx: &Context<'_>) -> Option<Model> {
        if self.kind == ChangeType::Deleted {
            return None;
        }
        project::model_by_id(ctx, &self.id).await.ok()
    }
}

/// `projectVersionsUpdated` message.
#[derive(SimpleObject)]
#[graphql(complex, rename_fields = "camelCase")]
pub struct ProjectVersionsUpdatedMessage {
    id: String,
    #[graphql(skip)]
    kind: ChangeType,
    model_id: String,
}

#[ComplexObject]
impl ProjectVersionsUpdatedMessage {
    /// What happened to the version.
    #[graphql(name = "type")]
    async fn kind_on_the_wire(&self) -> ProjectVersionsUpdatedMessageType {
        self.kind.into()
    }

    /// The version after the change (null once deleted).
    async fn version(&self, ctx: &Context<'_>) -> Option<Version> {
        if self.kind == ChangeType::Deleted {
            return None;
        }
        project::version_by_id(ctx, &self.id).await.ok()
    }
}

/// `userProjectsUpdated` kinds.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(rename_items = "SCREAMING_SNAKE_CASE")]
pub enum UserProjectsUpdatedMessageType {
    /// The user joined a project.
    Added,
    /// The user left or lost a project.
    Removed,
}

/// `userProjectsUpdated` message.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct UserProjectsUpdatedMessage {
    id: String,
    #[graphql(name = "type")]
    kind: UserProjectsUpdatedMessageType,
}

#[ComplexObject]
impl UserProjectsUpdatedMessage {
    /// The project (null when removed).
    async fn project(&self, ctx: &Context<'_>) -> Option<Project> {
        if self.kind == UserProjectsUpdatedMessageType::Removed {
            return None;
        }
        project::load(ctx, &self.id).await.ok()
    }
}

/// `projectVersionsPreviewGenerated` message.
#[derive(SimpleObject, Clone)]
#[graphql(rename_fields = "camelCase")]
pub struct ProjectVersionsPreviewGeneratedMessage {
    project_id: String,
    object_id: String,
    version_id: String,
}

/// The next live event; `None` ends the subscription: when the subscriber fell more than
/// the buffer behind (its connection is then closed too) or the hub stopped.
async fn next_live(
    live: &mut crate::realtime::LiveReceiver,
    slow: Option<&SlowSubscriber>,
) -> Option<std::sync::Arc<crate::realtime::LiveEvent>> {
    match live.receiver.recv().await {
        Ok(live) => Some(live),
        Err(RecvError::Lagged(_)) => {
            if let Some(slow) = slow {
                slow.0.notify_one();
            }
            None
        }
        Err(RecvError::Closed) => None,
    }
}

/// What a subscription follows of a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Feed {
    /// Its settings, and its deletion (`projectUpdated`, `streamUpdated`, `streamDeleted`).
    Project,
    /// Its models (`projectModelsUpdated`, `branch*`).
    Models,
    /// Its versions (`projectVersionsUpdated`, `commit*`).
    Versions,
    /// Who belongs to it (`userProjectsUpdated`, `userStream*`).
    Membership,
}

/// The feeds that carry `event`. Every event type is listed, so a new one fails the build
/// until it says here which subscriptions tell of it (or that none does); a subscription
/// sees only the events of its feed.
fn feeds(event: &ProjectEvent) -> &'static [Feed] {
    use ProjectEvent as E;
    match event {
        E::ProjectUpdated { .. } => &[Feed::Project],
        E::ProjectDeleted { .. } => &[Feed::Project, Feed::Membership],
        E::ProjectMemberRoleSet { .. } | E::ProjectMemberRemoved { .. } => &[Feed::Membership],
        E::ModelCreated { .. } | E::ModelUpdated { .. } | E::ModelDeleted { .. } => &[Feed::Models],
        E::VersionCreated { .. }
        | E::VersionUpdated { .. }
        | E::VersionMoved { .. }
        | E::VersionDeleted { .. } => &[Feed::Versions],
        // The original publishes none of these: a creation has no subscriber yet; invites
        // reach their invitee by mail (and the team list on reload); receipts, favourites
        // and webhook configuration change nothing a subscriber shows.
        E::ProjectCreated { .. }
        | E::ProjectInviteCreated { .. }
        | E::ProjectInviteAccepted { .. }
        | E::ProjectInviteDeclined { .. }
        | E::ProjectInviteCancelled { .. }
        | E::VersionReceived { .. }
        | E::ProjectFavoriteSet { .. }
        | E::WebhookCreated { .. }
        | E::WebhookUpdated { .. }
        | E::WebhookDeleted { .. }
        | E::WebhookDisabled { .. }
        | E::WebhookRedeliveryRequested { .. } => &[],
    }
}

/// `projectUpdated`'s kind for `event`.
fn project_change(event: &ProjectEvent) -> Option<ProjectUpdatedMessageType> {
    match event {
        ProjectEvent::ProjectUpdated { .. } => Some(ProjectUpdatedMessageType::Updated),
        ProjectEvent::ProjectDeleted { .. } => Some(ProjectUpdatedMessageType::Deleted),
        _ => None,
    }
}

/// `projectModelsUpdated`'s model id and change for `event`.
fn model_change(event: ProjectEvent) -> Option<(String, ChangeType)> {
    match event {
        ProjectEvent::ModelCreated { model_id, .. } => Some((model_id, ChangeType::Created)),
        ProjectEvent::ModelUpdated { model_id, .. } => Some((model_id, ChangeType::Updated)),
        ProjectEvent::ModelDeleted { model_id, .. } => Some((model_id, ChangeType::Deleted)),
        _ => None,
    }
}

/// `projectVersionsUpdated`'s version id, model id and change for `event`.
fn version_change(event: ProjectEvent) -> Option<(String, String, ChangeType)> {
    match event {
        ProjectEvent::VersionCreated {
            version_id,
            model_id,
            ..
        } => Some((version_id, model_id, ChangeType::Created)),
        ProjectEvent::VersionUpdated { version_id, .. } => {
            Some((version_id, String::new(), ChangeType::Updated))
        }
        ProjectEvent::VersionMoved {
            version_id,
            to_model_id,
            ..
        } => Some((version_id, to_model_id, ChangeType::Updated)),
        ProjectEvent::VersionDeleted {
            version_id,
            model_id,
            ..
        } => Some((version_id, model_id, ChangeType::Deleted)),
        _ => None,
    }
}

/// `(project id, joined)` when `event` changes whether `user` belongs to a project, given the
/// projects `mine` they belong to.
fn membership_change(
    event: &ProjectEvent,
    user: &str,
    mine: &HashSet<String>,
) -> Option<(String, bool)> {
    match event {
        ProjectEvent::ProjectMemberRoleSet {
            project_id,
            user_id,
            previous_role: None,
            ..
        } if user_id == user => Some((project_id.clone(), true)),
        ProjectEvent::ProjectMemberRemoved {
            project_id,
            user_id,
            ..
        } if user_id == user => Some((project_id.clone(), false)),
        ProjectEvent::ProjectDeleted { project_id } if mine.contains(project_id) => {
            Some((project_id.clone(), false))
        }
        _ => None,
    }
}

/// The events of project `project_id` on `feed` the subscriber may see, from now on.
async fn watch(
    ctx: &Context<'_>,
    project_id: &str,
    feed: Feed,
) -> ApiResult<BoxStream<'static, ProjectEvent>> {
    Ok(watch_live(ctx, project_id, feed)
        .await?
        .map(|(event, _, _)| event)
        .boxed())
}

/// [`watch`], with each event's live record and the subscriber's access after it.
async fn watch_live(
    ctx: &Context<'_>,
    project_id: &str,
    feed: Feed,
) -> ApiResult<
    BoxStream<
        'static,
        (
            ProjectEvent,
            std::sync::Arc<crate::realtime::LiveEvent>,
            ProjectAccess,
        ),
    >,
> {
    let (principal, user) = signed_in(ctx)?;
    let project = project::load(ctx, project_id).await?;
    let slow = ctx.data_opt::<SlowSubscriber>().cloned();
    let mut access = project.access();
    let receiver = services::hub(ctx)?.subscribe();
    let wanted = project_id.to_owned();
    let stream = futures::stream::unfold((receiver, false), move |(mut receiver, done)| {
        let wanted = wanted.clone();
        let slow = slow.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let live = next_live(&mut receiver, slow.as_ref()).await?;
                if live.project_id() != Some(wanted.as_str()) {
                    continue;
                }
                let Some(event) = live.project_event() else {
                    continue;
                };
                let last = matches!(event, ProjectEvent::ProjectDeleted { .. });
                return Some(((event, live), (receiver, last)));
            }
        }
    })
    .filter_map(move |(event, live)| {
        // Every event moves the access facts, whichever feed it is on.
        access = event.access_after(access, &user);
        let allowed = domain::policy::can_read_project(&principal, &access).is_ok()
            && feeds(&event).contains(&feed);
        futures::future::ready(allowed.then_some((event, live, access)))
    });
    Ok(stream.boxed())
}

/// The ingestion events of project `project_id` from now on, for a caller who may read it now
/// (handlers re-check access per message); ends like every subscription when the subscriber
/// falls behind.
pub(crate) async fn ingestion_events(
    ctx: &Context<'_>,
    project_id: &str,
) -> ApiResult<BoxStream<'static, domain::IngestionEvent>> {
    // Refused now (not found, or private to others) rather than silent forever.
    project::load(ctx, project_id).await?;
    let slow = ctx.data_opt::<SlowSubscriber>().cloned();
    let receiver = services::hub(ctx)?.subscribe();
    let wanted = project_id.to_owned();
    Ok(futures::stream::unfold(receiver, move |mut receiver| {
        let wanted = wanted.clone();
        let slow = slow.clone();
        async move {
            loop {
                let live = next_live(&mut receiver, slow.as_ref()).await?;
                let Some(event) = live.ingestion_event() else {
                    continue;
                };
                if event.project_id() == wanted {
                    return Some((event, receiver));
                }
            }
        }
    })
    .boxed())
}

fn json_object(value: serde_json::Value) -> JsonObject {
    JsonObject(value)
}

/// A legacy subscription: the project's events, each turned into a message or skipped.
async fn messages(
    ctx: &Context<'_>,
    stream_id: &str,
    feed: Feed,
    message: impl Fn(ProjectEvent) -> Option<serde_json::Value> + Send + 'static,
) -> ApiResult<BoxStream<'static, JsonObject>> {
    Ok(watch(ctx, stream_id, feed)
        .await?
        .filter_map(move |e| futures::future::ready(message(e).map(json_object)))
        .boxed())
}

async fn model_name(ctx_pool: &sqlx::PgPool, model_id: &str) -> Option<String> {
    query::model_name(ctx_pool, model_id).await.ok().flatten()
}

#[Subscription]
impl Subscription {
    /// A project's settings changed, or it was deleted.
    async fn project_updated(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> Result<impl Stream<Item = ProjectUpdatedMessage> + use<>, AppError> {
        Ok(watch_live(ctx, &id, Feed::Project)
            .await?
            .filter_map(move |(e, live, access)| {
                let kind = project_change(&e);
                let id = e.project_id().to_owned();
                let snapshot = live
                    .project
                    .as_ref()
                    .and_then(|row| Project::from_snapshot(row, access.role_of_principal));
                futures::future::ready(kind.map(|kind| ProjectUpdatedMessage {
                    id,
                    kind,
                    snapshot,
                }))
            }))
    }

    /// A project's models were created, updated or deleted (optionally only `modelIds`).
    async fn project_models_updated(
        &self,
        ctx: &Context<'_>,
        id: String,
        model_ids: Option<Vec<String>>,
    ) -> Result<impl Stream<Item = ProjectModelsUpdatedMessage> + use<>, AppError> {
        let only: Option<HashSet<String>> = model_ids.map(|ids| ids.into_iter().collect());
        Ok(watch(ctx, &id, Feed::Models).await?.filter_map(move |e| {
            let message = model_change(e)
                .filter(|(m, _)| only.as_ref().is_none_or(|o| o.contains(m)))
                .map(|(id, kind)| ProjectModelsUpdatedMessage { id, kind });
            futures::future::ready(message)
        }))
    }

    /// Changes of a project's model ingestions: one (`ingestionId`) or a model's
    /// (`modelId`), optionally only one kind of message.
    async fn project_model_ingestion_updated(
        &self,
        ctx: &Context<'_>,
        input: super::ingestion::ProjectModelIngestionSubscriptionInput,
    ) -> Result<
        impl Stream<Item = super::ingestion::ProjectModelIngestionUpdatedMessage> + use<>,
        AppError,
    > {
        super::ingestion::updates(ctx, input).await
    }

    /// A project's file imports started or changed (the 2.31 API; imports go into models that
    /// exist, so they are pending versions).
    async fn project_pending_versions_updated(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> Result<
        impl Stream<Item = super::files::ProjectPendingVersionsUpdatedMessage> + use<>,
        AppError,
    > {
        super::files::pending_versions_updates(ctx, &id).await
    }

    /// Imports that create models: strata creates the model before importing into it, so
    /// this is accepted and stays silent (the imports arrive as pending versions).
    async fn project_pending_models_updated(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> Result<
        impl Stream<Item = super::files::ProjectPendingModelsUpdatedMessage> + use<>,
        AppError,
    > {
        project::load(ctx, &id).await?;
        Ok(futures::stream::pending())
    }

    /// Every change of a project's file imports (the original deprecated it for the two above).
    async fn project_file_import_updated(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> Result<impl Stream<Item = super::files::ProjectFileImportUpdatedMessage> + use<>, AppError>
    {
        super::files::file_import_updates(ctx, &id).await
    }

    /// A project's versions were created, updated, moved or deleted.
    async fn project_versions_updated(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> Result<impl Stream<Item = ProjectVersionsUpdatedMessage> + use<>, AppError> {
        Ok(watch(ctx, &id, Feed::Versions).await?.filter_map(|e| {
            let message = version_change(e)
                .map(|(id, model_id, kind)| ProjectVersionsUpdatedMessage { id, kind, model_id });
            futures::future::ready(message)
        }))
    }

    /// Preview images of a project's versions were stored: one message per version whose
    /// root object the preview is of.
    async fn project_versions_preview_generated(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> Result<impl Stream<Item = ProjectVersionsPreviewGeneratedMessage> + use<>, AppError> {
        // Refused now (not found, or private to others) rather than silent forever.
        project::load(ctx, &id).await?;
        let pool = services::pool(ctx)?.clone();
        let slow = ctx.data_opt::<SlowSubscriber>().cloned();
        let receiver = services::hub(ctx)?.subscribe();
        let objects = futures::stream::unfold(receiver, move |mut receiver| {
            let wanted = id.clone();
            let slow = slow.clone();
            async move {
                loop {
                    let live = next_live(&mut receiver, slow.as_ref()).await?;
                    if let Some((project_id, object_id)) = live.preview()
                        && project_id == wanted
                    {
                        let found = (project_id.to_owned(), object_id.to_owned());
                        return Some((found, receiver));
                    }
                }
            }
        });
        Ok(objects
            .then(move |(project_id, object_id)| {
                let pool = pool.clone();
                async move {
                    let versions = query::versions_with_object(&pool, &project_id, &object_id)
                        .await
                        .unwrap_or_default();
                    futures::stream::iter(versions.into_iter().map(move |version_id| {
                        ProjectVersionsPreviewGeneratedMessage {
                            project_id: project_id.clone(),
                            object_id: object_id.clone(),
                            version_id,
                        }
                    }))
                }
            })
            .flatten())
    }

    /// The signed-in user joined or left a project.
    async fn user_projects_updated(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = UserProjectsUpdatedMessage> + use<>, AppError> {
        Ok(user_projects(ctx)
            .await?
            .map(|(id, added)| UserProjectsUpdatedMessage {
                id,
                kind: if added {
                    UserProjectsUpdatedMessageType::Added
                } else {
                    UserProjectsUpdatedMessageType::Removed
                },
            }))
    }

    /// Legacy: a stream's settings changed.
    async fn stream_updated(
        &self,
        ctx: &Context<'_>,
        stream_id: Option<String>,
    ) -> Result<impl Stream<Item = JsonObject> + use<>, AppError> {
        let stream_id = required_stream_id(stream_id)?;
        messages(ctx, &stream_id, Feed::Project, move |e| match e {
            ProjectEvent::ProjectUpdated {
                project_id,
                name,
                description,
                visibility,
                allow_public_comments,
            } => Some(json!({
                "id": project_id,
                "name": name,
                "description": description,
                "isPublic": visibility.is_public(),
                "allowPublicComments": allow_public_comments,
            })),
            _ => None,
        })
        .await
    }

    /// Legacy: a stream was deleted.
    async fn stream_deleted(
        &self,
        ctx: &Context<'_>,
        stream_id: Option<String>,
    ) -> Result<impl Stream<Item = JsonObject> + use<>, AppError> {
        let stream_id = required_stream_id(stream_id)?;
        messages(ctx, &stream_id, Feed::Project, move |e| match e {
            ProjectEvent::ProjectDeleted { project_id } => Some(json!({ "streamId": project_id })),
            _ => None,
        })
        .await
    }

    /// Legacy: the signed-in user was given a stream.
    async fn user_stream_added(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = JsonObject> + use<>, AppError> {
        Ok(user_projects(ctx).await?.filter_map(|(id, added)| {
            futures::future::ready(added.then(|| json_object(json!({ "id": id }))))
        }))
    }

    /// Legacy: the signed-in user lost a stream.
    async fn user_stream_removed(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = JsonObject> + use<>, AppError> {
        Ok(user_projects(ctx).await?.filter_map(|(id, added)| {
            futures::future::ready((!added).then(|| json_object(json!({ "id": id }))))
        }))
    }

    /// Legacy: a branch was created.
    async fn branch_created(
        &self,
        ctx: &Context<'_>,
        stream_id: String,
    ) -> Result<impl Stream<Item = JsonObject> + use<>, AppError> {
        messages(ctx, &stream_id, Feed::Models, move |e| match e {
            ProjectEvent::ModelCreated {
                project_id,
                model_id,
                name,
                description,
                author_id,
            } => Some(json!({
                "id": model_id, "streamId": project_id, "name": name,
                "description": description, "authorId": author_id,
            })),
            _ => None,
        })
        .await
    }

    /// Legacy: a branch was renamed or re-described (optionally only `branchId`).
    async fn branch_updated(
        &self,
        ctx: &Context<'_>,
        stream_id: String,
        branch_id: Option<String>,
    ) -> Result<impl Stream<Item = JsonObject> + use<>, AppError> {
        messages(ctx, &stream_id, Feed::Models, move |e| match e {
            ProjectEvent::ModelUpdated {
                project_id,
                model_id,
                name,
                description,
            } if branch_id.as_ref().is_none_or(|b| *b == model_id) => Some(json!({
                "id": model_id, "streamId": project_id, "name": name,
                "description": description,
            })),
            _ => None,
        })
        .await
    }

    /// Legacy: a branch was deleted.
    async fn branch_deleted(
        &self,
        ctx: &Context<'_>,
        stream_id: String,
    ) -> Result<impl Stream<Item = JsonObject> + use<>, AppError> {
        messages(ctx, &stream_id, Feed::Models, move |e| match e {
            ProjectEvent::ModelDeleted {
                project_id,
                model_id,
                ..
            } => Some(json!({ "id": model_id, "streamId": project_id })),
            _ => None,
        })
        .await
    }

    /// Legacy: a commit was created (the create input, its id and author).
    async fn commit_created(
        &self,
        ctx: &Context<'_>,
        stream_id: String,
    ) -> Result<impl Stream<Item = JsonObject> + use<>, AppError> {
        let pool = services::pool(ctx)?.clone();
        Ok(watch(ctx, &stream_id, Feed::Versions)
            .await?
            .filter_map(move |e| {
                let pool = pool.clone();
                async move {
                    match e {
                        ProjectEvent::VersionCreated {
                            project_id,
                            version_id,
                            model_id,
                            object_id,
                            message,
                            source_application,
                            total_children_count,
                            parents,
                            author_id,
                        } => Some(json_object(json!({
                            "id": version_id, "streamId": project_id,
                            "branchName": model_name(&pool, &model_id).await,
                            "objectId": object_id, "message": message,
                            "sourceApplication": source_application,
                            "totalChildrenCount": total_children_count,
                            "parents": parents, "authorId": author_id,
                        }))),
                        _ => None,
                    }
                }
            }))
    }

    /// Legacy: a commit's message changed or it moved (optionally only `commitId`).
    async fn commit_updated(
        &self,
        ctx: &Context<'_>,
        stream_id: String,
        commit_id: Option<String>,
    ) -> Result<impl Stream<Item = JsonObject> + use<>, AppError> {
        let pool = services::pool(ctx)?.clone();
        Ok(watch(ctx, &stream_id, Feed::Versions)
            .await?
            .filter_map(move |e| {
                let pool = pool.clone();
                let commit_id = commit_id.clone();
                async move {
                    let wanted = |id: &String| commit_id.as_ref().is_none_or(|c| c == id);
                    match e {
                        ProjectEvent::VersionUpdated {
                            project_id,
                            version_id,
                            message,
                        } if wanted(&version_id) => Some(json_object(json!({
                            "id": version_id, "streamId": project_id, "message": message,
                        }))),
                        ProjectEvent::VersionMoved {
                            project_id,
                            version_id,
                            to_model_id,
                            ..
                        } if wanted(&version_id) => Some(json_object(json!({
                            "id": version_id, "streamId": project_id,
                            "newBranchName": model_name(&pool, &to_model_id).await,
                        }))),
                        _ => None,
                    }
                }
            }))
    }

    /// Legacy: a commit was deleted.
    async fn commit_deleted(
        &self,
        ctx: &Context<'_>,
        stream_id: String,
    ) -> Result<impl Stream<Item = JsonObject> + use<>, AppError> {
        messages(ctx, &stream_id, Feed::Versions, move |e| match e {
            ProjectEvent::VersionDeleted {
                project_id,
                version_id,
                ..
            } => Some(json!({ "id": version_id, "streamId": project_id })),
            _ => None,
        })
        .await
    }
}

/// The signed-in user's project memberships as they change: `(project id, added)`.
async fn user_projects(ctx: &Context<'_>) -> ApiResult<BoxStream<'static, (String, bool)>> {
    let (_, user) = signed_in(ctx)?;
    let slow = ctx.data_opt::<SlowSubscriber>().cloned();
    let receiver = services::hub(ctx)?.subscribe();
    let mine: HashSet<String> = query::member_project_ids(services::pool(ctx)?, &user)
        .await?
        .into_iter()
        .collect();
    let stream = futures::stream::unfold((receiver, mine), move |(mut receiver, mut mine)| {
        let user = user.clone();
        let slow = slow.clone();
        async move {
            loop {
                let live = next_live(&mut receiver, slow.as_ref()).await?;
                let Some(event) = live.project_event() else {
                    continue;
                };
                if !feeds(&event).contains(&Feed::Membership) {
                    continue;
                }
                let change = membership_change(&event, &user, &mine);
                if let Some((project_id, added)) = change {
                    if added {
                        mine.insert(project_id.clone());
                    } else {
                        mine.remove(&project_id);
                    }
                    return Some(((project_id, added), (receiver, mine)));
                }
            }
        }
    });
    Ok(stream.boxed())
}

/// The legacy stream subscriptions declare `streamId` nullable (as the original); a stream is
/// still needed to know what to watch.
fn required_stream_id(stream_id: Option<String>) -> ApiResult<String> {
    stream_id.ok_or_else(|| {
        super::errors::gql_error(super::errors::ErrorCode::BadRequest, "streamId is required")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event type, as the domain's samples give them: each feed's messages come from
    /// exactly the events `feeds` puts on it, so an event classified on a feed but dropped by
    /// its mapping (or the reverse) fails here.
    #[test]
    fn each_feed_tells_of_exactly_its_events() {
        let events = domain::project::samples::one_of_each();
        let user = domain::project::samples::BOB;
        let mine: HashSet<String> = [domain::project::samples::PID.to_owned()].into();
        for e in &events {
            let on = |feed| feeds(e).contains(&feed);
            let t = e.event_type();
            assert_eq!(on(Feed::Project), project_change(e).is_some(), "{t}");
            assert_eq!(on(Feed::Models), model_change(e.clone()).is_some(), "{t}");
            assert_eq!(
                on(Feed::Versions),
                version_change(e.clone()).is_some(),
                "{t}"
            );
            if membership_change(e, user, &mine).is_some() {
                assert!(on(Feed::Membership), "{t}");
            }
        }
    }
}

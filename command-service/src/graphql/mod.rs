//! The GraphQL API on `/graphql`, with the original's names and shapes (wire types live here,
//! apart from the domain's types), GraphiQL on `/explorer`, and the exported SDL.

mod admin;
mod apps;
pub mod cache;
mod email;
mod errors;
mod files;
mod history;
mod idempotency;
mod ingestion;
mod legacy;
pub(crate) mod loaders;
mod mutations;
mod object;
pub(crate) mod project;
mod server;
mod services;
mod subscriptions;
mod team;
mod user;
mod webhooks;
mod wire;
mod workspaces;
pub mod ws;

use async_graphql::http::GraphiQLSource;
use async_graphql::{MergedObject, Object, Schema};
use async_graphql_axum::GraphQLResponse;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use domain::policy::Principal;

use crate::app::AppState;
use crate::auth;
use crate::context::RequestContext;
use crate::error::ApiResult;

pub use errors::{ErrorCode, gql_error};

/// The executable schema.
pub type StrataSchema = Schema<QueryRoot, MutationRoot, subscriptions::Subscription>;

/// Every query: the current API and the legacy one (named `Query`, as the original's root).
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(Query, legacy::LegacyQuery);

/// Every mutation: the current API and the legacy one (named `Mutation`, as the original's).
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(Mutation, legacy::LegacyMutation);

/// The current API's queries.
#[derive(Default)]
pub struct Query;

#[Object(name = "CurrentQuery")]
impl Query {
    /// This server's identity, capabilities and limits.
    async fn server_info(&self, ctx: &async_graphql::Context<'_>) -> ApiResult<server::ServerInfo> {
        Ok(server::ServerInfo::from_settings(services::settings(ctx)?))
    }

    /// The signed-in user; null when anonymous.
    async fn active_user(&self, ctx: &async_graphql::Context<'_>) -> ApiResult<Option<user::User>> {
        user::active_user(ctx).await
    }

    /// Another user's public profile.
    async fn other_user(
        &self,
        ctx: &async_graphql::Context<'_>,
        id: String,
    ) -> ApiResult<Option<project::LimitedUser>> {
        user::other_user(ctx, &id).await
    }

    /// Users whose name contains, or whose email is, the query (at least 3 characters).
    async fn users(
        &self,
        ctx: &async_graphql::Context<'_>,
        input: user::UsersRetrievalInput,
    ) -> ApiResult<user::UserSearchResultCollection> {
        user::search(ctx, input.into()).await
    }

    /// Legacy (still used by specklepy): the same search with its old arguments.
    async fn user_search(
        &self,
        ctx: &async_graphql::Context<'_>,
        query: String,
        limit: Option<i32>,
        cursor: Option<String>,
        #[graphql(default_with = "Some(false)")] archived: Option<bool>,
        #[graphql(default_with = "Some(false)")] email_only: Option<bool>,
    ) -> ApiResult<user::UserSearchResultCollection> {
        user::search(
            ctx,
            user::UserSearch {
                query,
                limit,
                cursor,
                // An explicit null: the schema default, false.
                archived: archived.unwrap_or(false),
                email_only: email_only.unwrap_or(false),
            },
        )
        .await
    }

    /// One app (default or registered).
    async fn app(
        &self,
        ctx: &async_graphql::Context<'_>,
        id: String,
    ) -> ApiResult<Option<apps::ServerApp>> {
        apps::app(ctx, &id).await
    }

    /// The publicly listed apps.
    async fn apps(
        &self,
        ctx: &async_graphql::Context<'_>,
    ) -> ApiResult<Vec<apps::ServerAppListItem>> {
        apps::apps(ctx).await
    }

    /// Server administration (admins only; each field checks its scope).
    async fn admin(&self) -> admin::AdminQueries {
        admin::AdminQueries
    }

    /// A workspace: always `WORKSPACES_MODULE_DISABLED_ERROR`, as the original without its
    /// workspaces module.
    async fn workspace(&self, id: String) -> ApiResult<workspaces::Workspace> {
        workspaces::workspace(&id)
    }

    /// Looks for a pending invite to a project: the caller's own (or, with `token`, the one that
    /// token answers); null when there is none.
    async fn project_invite(
        &self,
        ctx: &async_graphql::Context<'_>,
        project_id: String,
        token: Option<String>,
    ) -> ApiResult<Option<project::PendingStreamCollaborator>> {
        team::project_invite(ctx, &project_id, token.as_deref()).await
    }

    /// One project, if the caller may read it: `STREAM_NOT_FOUND` when it does not exist,
    /// `FORBIDDEN` when it is private to others.
    async fn project(
        &self,
        ctx: &async_graphql::Context<'_>,
        id: String,
    ) -> ApiResult<project::Project> {
        project::load(ctx, &id).await
    }
}

/// The current API's mutations.
#[derive(Default)]
pub struct Mutation;

#[Object(name = "CurrentMutation")]
impl Mutation {
    /// Project mutations.
    async fn project_mutations(&self) -> mutations::ProjectMutations {
        mutations::ProjectMutations
    }

    /// Model mutations.
    async fn model_mutations(&self) -> mutations::ModelMutations {
        mutations::ModelMutations
    }

    /// Version mutations.
    async fn version_mutations(&self) -> mutations::VersionMutations {
        mutations::VersionMutations
    }

    /// File uploads for import.
    async fn file_upload_mutations(&self) -> files::FileUploadMutations {
        files::FileUploadMutations
    }

    /// Workspace mutations (workspaces are not enabled: each operation is refused).
    async fn workspace_mutations(&self) -> workspaces::WorkspaceMutations {
        workspaces::WorkspaceMutations
    }

    /// The signed-in user's own mutations.
    async fn active_user_mutations(&self) -> team::ActiveUserMutations {
        team::ActiveUserMutations
    }

    /// Creates a personal access token; the only time its secret is shown.
    async fn api_token_create(
        &self,
        ctx: &async_graphql::Context<'_>,
        token: user::ApiTokenCreateInput,
    ) -> ApiResult<String> {
        user::create_token(ctx, token).await
    }

    /// Revokes one of the caller's tokens (the token or its id).
    async fn api_token_revoke(
        &self,
        ctx: &async_graphql::Context<'_>,
        token: String,
    ) -> ApiResult<bool> {
        user::revoke_token(ctx, &token).await
    }

    /// Registers a third-party app (`apps:write`); returns its id.
    async fn app_create(
        &self,
        ctx: &async_graphql::Context<'_>,
        app: apps::AppCreateInput,
    ) -> ApiResult<String> {
        apps::create(ctx, app).await
    }

    /// Changes an app (its author or an admin); every token it holds stops working.
    async fn app_update(
        &self,
        ctx: &async_graphql::Context<'_>,
        app: apps::AppUpdateInput,
    ) -> ApiResult<bool> {
        apps::update(ctx, app).await
    }

    /// Deletes an app (its author or an admin) and everything it was granted.
    async fn app_delete(
        &self,
        ctx: &async_graphql::Context<'_>,
        app_id: String,
    ) -> ApiResult<bool> {
        apps::delete(ctx, &app_id).await
    }

    /// Ends what the caller granted an app.
    async fn app_revoke_access(
        &self,
        ctx: &async_graphql::Context<'_>,
        app_id: String,
    ) -> ApiResult<bool> {
        apps::revoke_access(ctx, &app_id).await
    }

    /// Deletes the signed-in user's account (confirmed with its email and password) and
    /// erases their personal data; projects they alone own go with it.
    async fn user_delete(
        &self,
        ctx: &async_graphql::Context<'_>,
        user_confirmation: user::UserDeleteInput,
    ) -> ApiResult<bool> {
        user::delete_self(ctx, user_confirmation).await
    }

    /// Deletes the account with the given email (server admins) and erases their personal
    /// data; projects they alone own go with it.
    async fn admin_delete_user(
        &self,
        ctx: &async_graphql::Context<'_>,
        user_confirmation: user::UserDeleteInput,
    ) -> ApiResult<bool> {
        user::delete_other(ctx, user_confirmation).await
    }

    /// Changes a user's server role (server admins).
    async fn user_role_change(
        &self,
        ctx: &async_graphql::Context<'_>,
        user_role_input: admin::UserRoleInput,
    ) -> ApiResult<bool> {
        admin::change_role(ctx, user_role_input).await
    }

    /// (Re-)sends the signed-in user's account verification email.
    async fn request_verification(&self, ctx: &async_graphql::Context<'_>) -> ApiResult<bool> {
        email::request_verification(ctx).await
    }

    /// Sends a verification email to the account with `email`, if there is one; the answer
    /// does not say.
    async fn request_verification_by_email(
        &self,
        ctx: &async_graphql::Context<'_>,
        email: String,
    ) -> ApiResult<bool> {
        email::request_verification_by_email(ctx, &email).await
    }

    /// Registers a webhook on a project (owners); returns its id.
    async fn webhook_create(
        &self,
        ctx: &async_graphql::Context<'_>,
        webhook: webhooks::WebhookCreateInput,
    ) -> ApiResult<String> {
        webhooks::create(ctx, webhook).await
    }

    /// Changes a webhook (owners); `enabled: true` re-enables one switched off for failing.
    async fn webhook_update(
        &self,
        ctx: &async_graphql::Context<'_>,
        webhook: webhooks::WebhookUpdateInput,
    ) -> ApiResult<String> {
        webhooks::update(ctx, webhook).await
    }

    /// Removes a webhook (owners).
    async fn webhook_delete(
        &self,
        ctx: &async_graphql::Context<'_>,
        webhook: webhooks::WebhookDeleteInput,
    ) -> ApiResult<String> {
        webhooks::delete(ctx, webhook).await
    }

    /// Sends a recorded delivery again, with the same id and body (owners).
    async fn webhook_redeliver(
        &self,
        ctx: &async_graphql::Context<'_>,
        input: webhooks::WebhookRedeliverInput,
    ) -> ApiResult<bool> {
        webhooks::redeliver(ctx, input).await
    }
}

/// Builds the schema with the configured depth and complexity limits. It holds no state:
/// each request and each subscription connection gets the services it may use through
/// [`request_data`], so the state (which caches the schema) is not owned by it in turn.
pub fn build(settings: &crate::config::Settings, response_cache: bool) -> StrataSchema {
    let schema = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        subscriptions::Subscription,
    )
    .register_output_type::<ingestion::HasProgressMessage>()
    .limit_depth(settings.graphql_max_depth)
    .limit_complexity(settings.graphql_max_complexity);
    // The probe runs on every resolved field; only worth it when there is a cache to feed.
    if response_cache {
        schema.extension(cache::CacheProbeExtension).finish()
    } else {
        schema.finish()
    }
}

/// What every operation runs with, whichever way it arrives (HTTP, a page, a subscription
/// connection): the services a resolver may use (`services`) and this operation's batch
/// loaders.
pub(crate) fn request_data(state: &AppState, data: &mut async_graphql::Data) {
    services::insert_into(state, data);
    loaders::Loaders::new(state.pool()).insert_into(data);
}

/// The SDL of the schema, as committed in `schema/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        subscriptions::Subscription,
    )
    .register_output_type::<ingestion::HasProgressMessage>()
    .finish()
    .sdl()
}

/// Validates a client's GraphQL document against the live schema with async-graphql's own
/// rules (and the default depth and complexity limits) without executing it: `Ok` when valid,
/// else the validation messages. Used to prove that every document a pinned client sends is
/// accepted.
pub async fn validate_document(document: &str) -> Result<(), Vec<String>> {
    let response = validation_schema().execute(document).await;
    let messages: Vec<String> = response
        .errors
        .into_iter()
        .map(|e| e.message)
        .filter(|m| m != VALIDATED)
        .collect();
    if messages.is_empty() {
        Ok(())
    } else {
        Err(messages)
    }
}

/// Reads a GraphQL request body as `POST /graphql` does (JSON, single or batched, or the
/// multipart form) and takes each operation through parsing and validation with the default
/// depth and complexity limits, running no resolver: the answers (as JSON) a client would get
/// up to that point, every error with its code (`errors::with_codes`). What the fuzz target and its
/// property test drive.
pub async fn check_request(
    content_type: Option<String>,
    body: &[u8],
) -> Result<Vec<serde_json::Value>, String> {
    let limit = crate::config::Settings::default().graphql_body_limit_bytes;
    let request = async_graphql::http::receive_batch_body(content_type, body, multipart(limit))
        .await
        .map_err(|e| format!("Cannot read the GraphQL request: {e}"))?;
    let operations = match request {
        async_graphql::BatchRequest::Single(one) => vec![one],
        async_graphql::BatchRequest::Batch(many) => many,
    };
    let mut answers = Vec::new();
    for mut operation in operations {
        let parse_failed = operation.parsed_query().is_err();
        let mut answer = validation_schema().execute(operation).await;
        answer.errors.retain(|e| e.message != VALIDATED);
        errors::with_codes(&mut answer, parse_failed);
        answers.push(serde_json::to_value(&answer).map_err(|e| e.to_string())?);
    }
    Ok(answers)
}

/// The schema with the default limits that stops every request right after validation.
fn validation_schema() -> &'static StrataSchema {
    static SCHEMA: std::sync::OnceLock<StrataSchema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let limits = crate::config::Settings::default();
        Schema::build(
            QueryRoot::default(),
            MutationRoot::default(),
            subscriptions::Subscription,
        )
        .register_output_type::<ingestion::HasProgressMessage>()
        .limit_depth(limits.graphql_max_depth)
        .limit_complexity(limits.graphql_max_complexity)
        .extension(ValidateOnly)
        .finish()
    })
}

/// How a multipart GraphQL body (file uploads) is read: files up to the body limit, at most 16.
fn multipart(limit: usize) -> async_graphql::http::MultipartOptions {
    async_graphql::http::MultipartOptions::default()
        .max_file_size(limit)
        .max_num_files(16)
}

const VALIDATED: &str = "validated, not executed";

/// Stops every request right after validation.
struct ValidateOnly;

impl async_graphql::extensions::ExtensionFactory for ValidateOnly {
    fn create(&self) -> std::sync::Arc<dyn async_graphql::extensions::Extension> {
        std::sync::Arc::new(ValidateOnly)
    }
}

#[async_trait::async_trait]
impl async_graphql::extensions::Extension for ValidateOnly {
    async fn validation(
        &self,
        ctx: &async_graphql::extensions::ExtensionContext<'_>,
        next: async_graphql::extensions::NextValidation<'_>,
    ) -> Result<async_graphql::ValidationResult, Vec<async_graphql::ServerError>> {
        next.run(ctx).await?;
        Err(vec![async_graphql::ServerError::new(VALIDATED, None)])
    }
}

/// The operations of a request: from the query string of a GET, else from a body read up to
/// `STRATA_GRAPHQL_BODY_LIMIT_BYTES` (a larger one is refused with 413 before it is all read,
/// and before authentication: an anonymous caller must not make the server buffer it) within
/// `STRATA_GRAPHQL_BODY_READ_TIMEOUT_SECONDS` (408 after).
async fn operations(
    state: &AppState,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<async_graphql::BatchRequest, Response> {
    let bad_request =
        |message: String| request_error(StatusCode::BAD_REQUEST, &message, "BAD_REQUEST_ERROR");
    if method == axum::http::Method::GET {
        return async_graphql::http::parse_query_string(uri.query().unwrap_or_default())
            .map(async_graphql::BatchRequest::Single)
            .map_err(|e| bad_request(format!("Cannot read the GraphQL request: {e}")));
    }
    let limit = state.settings().graphql_body_limit_bytes;
    let too_large = || {
        let message = format!("A GraphQL request body may be at most {limit} bytes.");
        request_error(StatusCode::PAYLOAD_TOO_LARGE, &message, "PAYLOAD_TOO_LARGE")
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let timeout =
        std::time::Duration::from_secs(state.settings().graphql_body_read_timeout_seconds);
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        // The only failure of a body within its declared length is running past the limit
        // (chunked bodies declare none) or the client going away, who hears nothing either way.
        Ok(Err(_)) => return Err(too_large()),
        Err(_) => {
            let message = format!(
                "The request body did not arrive within {} s.",
                timeout.as_secs()
            );
            let mut answer =
                request_error(StatusCode::REQUEST_TIMEOUT, &message, "REQUEST_TIMEOUT");
            // The rest of the body is never read: the connection cannot serve another request.
            answer.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return Err(answer);
        }
    };
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    async_graphql::http::receive_batch_body(content_type, bytes.as_ref(), multipart(limit))
        .await
        .map_err(|e| bad_request(format!("Cannot read the GraphQL request: {e}")))
}

/// `POST /graphql` (single or batched operations) and `GET /graphql`.
pub async fn handler(
    State(state): State<AppState>,
    context: RequestContext,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    let request = match operations(&state, &method, &uri, &headers, body).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let principal: Principal = match auth::authenticate(&state, &headers).await {
        Ok(p) => p,
        // Like the database gate: GraphQL clients read the error from the body.
        Err(auth::InvalidToken::Unavailable(e)) => {
            return request_error(StatusCode::OK, e.message(), e.graphql_code());
        }
        Err(rejection) => return rejection.into_response(),
    };
    if let async_graphql::BatchRequest::Batch(ops) = &request {
        let max = state.settings().graphql_max_batch_operations;
        if ops.len() > max {
            let message = format!(
                "A batch may hold at most {max} operations; this one holds {}.",
                ops.len()
            );
            return request_error(StatusCode::BAD_REQUEST, &message, "BAD_REQUEST_ERROR");
        }
    }
    let key = match idempotency::key_of(&headers) {
        Ok(key) => key,
        Err(message) => {
            return request_error(StatusCode::BAD_REQUEST, &message, "BAD_REQUEST_ERROR");
        }
    };
    let mut request = request.data(principal.clone()).data(context);
    for (index, single) in request.iter_mut().enumerate() {
        request_data(&state, &mut single.data);
        if let Some(key) = &key {
            let keyed =
                idempotency::Idempotency::new(principal.user_id.as_deref(), key, index, single);
            single.data.insert(keyed);
        }
    }
    match key {
        Some(_) => crate::commands::keyed(answer(&state, &principal, request)).await,
        None => answer(&state, &principal, request).await,
    }
}

/// An answer to the whole request (no operation ran): one error with its code.
fn request_error(status: StatusCode, message: &str, code: &str) -> Response {
    let body = serde_json::json!({"errors": [{"message": message, "extensions": {"code": code}}]});
    (status, axum::Json(body)).into_response()
}

/// Executes a single or batched request and gives every error its code.
async fn answer(
    state: &AppState,
    principal: &Principal,
    request: async_graphql::BatchRequest,
) -> Response {
    match request {
        async_graphql::BatchRequest::Single(single) => {
            execute_single(state, principal, single).await
        }
        mut batch => {
            // Parsed here (execution reuses the parse), so each failure gets its code.
            let parse_failed: Vec<bool> = batch
                .iter_mut()
                .map(|op| op.parsed_query().is_err())
                .collect();
            let mut answers = state.schema().execute_batch(batch).await;
            match &mut answers {
                async_graphql::BatchResponse::Single(answer) => {
                    errors::with_codes(answer, parse_failed.first().copied().unwrap_or(false));
                }
                async_graphql::BatchResponse::Batch(answers) => {
                    for (answer, failed) in answers.iter_mut().zip(parse_failed) {
                        errors::with_codes(answer, failed);
                    }
                }
            }
            GraphQLResponse::from(answers).into_response()
        }
    }
}

/// Runs one operation and gives async-graphql's own errors their codes (`errors::with_codes`).
async fn execute(state: &AppState, mut request: async_graphql::Request) -> async_graphql::Response {
    let parse_failed = request.parsed_query().is_err();
    let mut response = state.schema().execute(request).await;
    errors::with_codes(&mut response, parse_failed);
    response
}

/// One operation, answered from the response cache when it holds the answer at the current
/// read-model checkpoint, and stored there when every field it resolved qualifies.
async fn execute_single(
    state: &AppState,
    principal: &Principal,
    mut request: async_graphql::Request,
) -> Response {
    let cache = state.response_cache().filter(|_| is_query(&mut request));
    let key = cache.and_then(|_| cache::CacheKey::new(principal, &request));
    let (Some(cache), Some(key)) = (cache, key) else {
        return GraphQLResponse::from(execute(state, request).await).into_response();
    };
    // Read before executing: an answer stored under this version was computed from a read
    // model at least this new.
    let version = match cache.version().await {
        Ok(version) => version,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the checkpoint; answering uncached");
            return GraphQLResponse::from(execute(state, request).await).into_response();
        }
    };
    if let Some(body) = cache.get(&key, &version) {
        state.metrics().graphql_cache(true);
        return json_answer(body);
    }
    state.metrics().graphql_cache(false);
    let probe = std::sync::Arc::new(cache::CacheProbe::default());
    let response = execute(state, request.data(probe.clone())).await;
    if !(response.is_ok() && response.http_headers.is_empty() && probe.cacheable()) {
        return GraphQLResponse::from(response).into_response();
    }
    match serde_json::to_vec(&response) {
        Ok(body) => {
            let body = axum::body::Bytes::from(body);
            cache.put(key, version, body.clone());
            json_answer(body)
        }
        Err(_) => GraphQLResponse::from(response).into_response(),
    }
}

/// Whether the operation the request selects is a query: mutations and subscriptions never
/// look in the cache (and so cost no checkpoint read). The parse is kept in the request, so
/// execution does not parse again.
fn is_query(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    let operation = match (&document.operations, name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.is_some_and(|op| op.node.ty == OperationType::Query)
}

/// A serialised GraphQL answer, with the headers async-graphql-axum gives one.
fn json_answer(body: axum::body::Bytes) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/graphql-response+json",
        )],
        body,
    )
        .into_response()
}

/// `GET /explorer`: GraphiQL.
pub async fn explorer() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

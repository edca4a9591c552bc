//! Projects: the list, a project's models (as a tree), its versions, the 3D viewer (and its
//! embed), team and invites, settings, webhooks and the history timeline.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use domain::policy::{ProjectRole, Visibility};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::{
    EMBED_CSP, Gql, Notice, Session, Submitted, encode, error_page, field, flash, gql_error_page,
    items, page, respond_with_csp, s, see_other, sign_in_first, when,
};
use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/projects", get(list).post(create))
        .route("/projects/{id}", get(project).post(project_action))
        .route("/projects/{id}/collaborators", get(team).post(team_action))
        .route("/projects/{id}/settings", get(settings).post(settings_save))
        .route(
            "/projects/{id}/settings/webhooks",
            get(webhooks).post(webhooks_action),
        )
        .route("/projects/{id}/history", get(history))
        .route("/projects/{id}/activity", get(activity))
        .route("/projects/{id}/models/{resource}", get(viewer))
        .route("/projects/{id}/models/{resource}/versions", get(versions))
        .route("/_strata/web/preview/{id}", get(project_preview))
        .route("/_strata/web/preview/{id}/{model}", get(model_preview))
        .route("/projects/{id}/invite", post(accept_invite))
}

/// Renders a page for the signed-in person (or anyone, for public projects).

#[derive(serde::Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
}

const PROJECTS: &str = "query($q: String) { activeUser { projects(limit: 100, filter: {search: $q}) { totalCount items { id name description visibility role updatedAt models(limit: 1) { totalCount } } } } }";

fn projects_body(
    session: &Session,
    data: &Value,
    q: &str,
    message: Option<(&str, bool)>,
) -> Markup {
    let projects = &data["activeUser"]["projects"];
    html! {
        h1 { "Projects" }
        (flash(message))
        form.inline role="search" method="get" action="/projects" {
            label for="q" { "Search projects" }
            input #q type="search" name="q" value=(q);
            button type="submit" { "Search" }
        }
        details.create {
            summary { "New project" }
            form.stack method="post" action="/projects" {
                (session.csrf_field())
                label for="name" { "Name" }
                input #name type="text" name="name" required maxlength="512";
                label for="description" { "Description" }
                textarea #description name="description" rows="2" {}
                label for="visibility" { "Visibility" }
                select #visibility name="visibility" {
                    option value="PRIVATE" selected { "Private: only the team" }
                    option value="UNLISTED" { "Unlisted: anyone with the link" }
                    option value="PUBLIC" { "Public" }
                }
                button type="submit" { "Create project" }
            }
        }
        // The counts below are display only: a missing one shows as 0.
        p.count { (projects["totalCount"].as_i64().unwrap_or(0)) " projects" }
        ul.cards {
            @for p in items(projects) {
                li.card {
                    a href={"/projects/" (s(p, "id"))} {
                        img src={"/_strata/web/preview/" (s(p, "id"))} alt={"Preview of " (s(p, "name"))} width="350" height="200" loading="lazy";
                        span.name { (s(p, "name")) }
                    }
                    span.meta {
                        (p["models"]["totalCount"].as_i64().unwrap_or(0)) " models · "
                        (s(p, "visibility").to_lowercase()) " · "
                        (s(p, "role").trim_start_matches("stream:")) " · updated "
                        (when(s(p, "updatedAt")))
                    }
                }
            }
        }
    }
}

async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> Response {
    if !session.signed_in() {
        return session.finish(sign_in_first("/projects"));
    }
    let q = query.q.unwrap_or_default();
    let search = (!q.trim().is_empty()).then(|| q.trim().to_owned());
    match session.gql(&state, PROJECTS, json!({"q": search})).await {
        Ok(data) => {
            let body = projects_body(&session, &data, &q, None);
            page(&state, &session, StatusCode::OK, "Projects", body).await
        }
        Err(e) => gql_error_page(&session, &e),
    }
}

async fn create(
    State(state): State<AppState>,
    Submitted { session, fields }: Submitted,
) -> Response {
    if !session.signed_in() {
        return session.finish(sign_in_first("/projects"));
    }
    let description = fields.get("description").filter(|d| !d.trim().is_empty());
    let created = session
        .gql(
            &state,
            "mutation($i: ProjectCreateInput) { projectMutations { create(input: $i) { id } } }",
            json!({"i": {"name": field(&fields, "name"), "description": description, "visibility": field(&fields, "visibility")}}),
        )
        .await;
    match created {
        Ok(data) => session.finish(see_other(&format!(
            "/projects/{}",
            s(&data["projectMutations"]["create"], "id")
        ))),
        Err(e) => match session.gql(&state, PROJECTS, json!({"q": null})).await {
            Ok(data) => {
                let body = projects_body(&session, &data, "", Some((&e.message, false)));
                page(&state, &session, e.status(), "Projects", body).await
            }
            Err(e) => gql_error_page(&session, &e),
        },
    }
}

/// Models as a tree of their `/`-separated names.
#[derive(Default)]
struct Folder<'a> {
    models: Vec<&'a Value>,
    folders: BTreeMap<String, Folder<'a>>,
}

fn tree(models: &[Value]) -> Folder<'_> {
    let mut root = Folder::default();
    for m in models {
        let name = s(m, "name");
        let mut at = &mut root;
        let parts: Vec<&str> = name.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            at = at.folders.entry((*part).to_owned()).or_default();
        }
        at.models.push(m);
    }
    root
}

fn folder_markup(project_id: &str, folder: &Folder<'_>) -> Markup {
    html! {
        ul.models {
            @for (name, sub) in &folder.folders {
                li.folder {
                    details open {
                        summary { (name) "/" }
                        (folder_markup(project_id, sub))
                    }
                }
            }
            @for m in &folder.models {
                li.model {
                    // Missing: shown as no versions.
                    @let versions = m["versions"]["totalCount"].as_i64().unwrap_or(0);
                    a href={"/projects/" (project_id) "/models/" (s(m, "id"))} {
                        @if versions > 0 {
                            img src={"/_strata/web/preview/" (project_id) "/" (s(m, "id"))} alt={"Preview of model " (s(m, "name"))} width="175" height="100" loading="lazy";
                        }
                        span.name { (s(m, "displayName")) }
                    }
                    span.meta {
                        (versions) " versions · updated " (when(s(m, "updatedAt")))
                    }
                }
            }
        }
    }
}

const PROJECT: &str = "query($id: String!) { project(id: $id) { id name description visibility role updatedAt \
    permissions { canUpdate { authorized } } \
    models(limit: 500) { totalCount items { id name displayName updatedAt versions(limit: 1) { totalCount } } } } }";

fn project_tabs(id: &str, current: &str, owner: bool) -> Markup {
    let tab = |href: String, label: &'static str, key: &str| {
        html! {
            a href=(href) aria-current=[(key == current).then_some("page")] { (label) }
        }
    };
    html! {
        nav.tabs aria-label="Project" {
            (tab(format!("/projects/{id}"), "Models", "models"))
            (tab(format!("/projects/{id}/collaborators"), "Team", "team"))
            (tab(format!("/projects/{id}/activity"), "Activity", "activity"))
            @if owner {
                (tab(format!("/projects/{id}/settings"), "Settings", "settings"))
                (tab(format!("/projects/{id}/settings/webhooks"), "Webhooks", "webhooks"))
                (tab(format!("/projects/{id}/history"), "History", "history"))
            }
        }
    }
}

/// Whether the caller owns the project (which tabs and forms to show; every action is
/// decided again by the policy when it is taken).
fn is_owner(project: &Value) -> bool {
    s(project, "role").parse() == Ok(ProjectRole::Owner)
}

#[derive(serde::Deserialize, Default)]
struct InviteQuery {
    token: Option<String>,
}

async fn project(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<InviteQuery>,
) -> Response {
    if let Some(token) = q.token.filter(|t| !t.is_empty()) {
        return invite_page(&state, &session, &id, &token).await;
    }
    project_page(&state, &session, &id, Notice::NONE).await
}

async fn project_page(
    state: &AppState,
    session: &Session,
    id: &str,
    notice: Notice<'_>,
) -> Response {
    let data = match session.gql(state, PROJECT, json!({"id": id})).await {
        Ok(d) => d,
        Err(e) if !session.signed_in() && e.status() != StatusCode::INTERNAL_SERVER_ERROR => {
            return session.finish(sign_in_first(&format!("/projects/{id}")));
        }
        Err(e) => return gql_error_page(session, &e),
    };
    let p = &data["project"];
    let models = items(&p["models"]);
    // Missing: no update controls.
    let can_update = p["permissions"]["canUpdate"]["authorized"]
        .as_bool()
        .unwrap_or(false);
    let body = html! {
        h1 { (s(p, "name")) }
        @if !s(p, "description").is_empty() { p.description { (s(p, "description")) } }
        p.meta { (s(p, "visibility").to_lowercase()) " · updated " (when(s(p, "updatedAt"))) }
        (project_tabs(id, "models", is_owner(p)))
        (notice.flash())
        @if can_update {
            details.create {
                summary { "New model" }
                form.inline method="post" action={"/projects/" (id)} {
                    (session.csrf_field())
                    input type="hidden" name="action" value="create_model";
                    label for="model-name" { "Name (use / for folders)" }
                    input #model-name type="text" name="name" required;
                    button type="submit" { "Create model" }
                }
            }
        }
        // Missing: shown as 0.
        h2 { (p["models"]["totalCount"].as_i64().unwrap_or(0)) " models" }
        @if models.is_empty() {
            p { "No models yet. Send one from a connector or specklepy." }
        } @else {
            (folder_markup(id, &tree(models)))
        }
    };
    page(state, session, notice.status(), s(p, "name"), body).await
}

async fn project_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { session, fields }: Submitted,
) -> Response {
    if !session.signed_in() {
        return session.finish(sign_in_first(&format!("/projects/{id}")));
    }
    let outcome = session
        .gql(
            &state,
            "mutation($p: ID!, $n: String!) { modelMutations { create(input: {projectId: $p, name: $n}) { id } } }",
            json!({"p": id, "n": field(&fields, "name")}),
        )
        .await;
    match outcome {
        Ok(_) => session.finish(see_other(&format!("/projects/{id}"))),
        Err(e) => project_page(&state, &session, &id, Notice::failed(&e)).await,
    }
}

async fn invite_page(state: &AppState, session: &Session, id: &str, token: &str) -> Response {
    if !session.signed_in() {
        let here = format!("/projects/{id}?token={}", encode(token));
        return session.finish(see_other(&format!(
            "/authn/register?token={}&next={}",
            encode(token),
            encode(&here)
        )));
    }
    let invite = session
        .gql(
            state,
            "query($p: String!, $t: String) { projectInvite(projectId: $p, token: $t) { projectName role invitedBy { name } } }",
            json!({"p": id, "t": token}),
        )
        .await;
    let invite = match invite {
        Ok(d) if !d["projectInvite"].is_null() => d["projectInvite"].clone(),
        Ok(_) => {
            return error_page(
                session,
                StatusCode::NOT_FOUND,
                "Invite not found",
                "This invite was used, withdrawn or is for another account.",
            );
        }
        Err(e) => return gql_error_page(session, &e),
    };
    let body = html! {
        h1 { "Join " (s(&invite, "projectName")) }
        p { (s(&invite["invitedBy"], "name")) " invited you as "
            strong { (s(&invite, "role").trim_start_matches("stream:")) } "." }
        form.actions method="post" action={"/projects/" (id) "/invite"} {
            (session.csrf_field())
            input type="hidden" name="token" value=(token);
            button type="submit" name="accept" value="true" { "Accept" }
            button.secondary type="submit" name="accept" value="false" { "Decline" }
        }
    };
    let mut res = page(state, session, StatusCode::OK, "Project invite", body).await;
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

async fn accept_invite(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { session, fields }: Submitted,
) -> Response {
    if !session.signed_in() {
        return session.finish(sign_in_first(&format!("/projects/{id}")));
    }
    let accept = field(&fields, "accept") == "true";
    match session
        .gql(
            &state,
            "mutation($i: ProjectInviteUseInput!) { projectMutations { invites { use(input: $i) } } }",
            json!({"i": {"projectId": id, "token": field(&fields, "token"), "accept": accept}}),
        )
        .await
    {
        Ok(_) if accept => session.finish(see_other(&format!("/projects/{id}"))),
        Ok(_) => session.finish(see_other("/projects")),
        Err(e) => gql_error_page(&session, &e),
    }
}

const TEAM: &str = "query($id: String!) { project(id: $id) { id name role \
    team { role user { id name company } } \
    invitedTeam { inviteId title role invitedBy { name } } } }";

async fn team_page(state: &AppState, session: &Session, id: &str, notice: Notice<'_>) -> Response {
    let data = match session.gql(state, TEAM, json!({"id": id})).await {
        Ok(d) => d,
        Err(e) if !session.signed_in() => {
            let _ = e;
            return session.finish(sign_in_first(&format!("/projects/{id}/collaborators")));
        }
        Err(e) => return gql_error_page(session, &e),
    };
    let p = &data["project"];
    let owner = is_owner(p);
    let body = html! {
        h1 { (s(p, "name")) }
        (project_tabs(id, "team", owner))
        (notice.flash())
        h2 { "Team" }
        table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Role" } @if owner { th scope="col" { "Change" } } } }
            tbody {
                // A missing list shows as empty.
                @for m in p["team"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                    tr {
                        td { (s(&m["user"], "name")) }
                        td { (s(m, "role").trim_start_matches("stream:")) }
                        @if owner {
                            td {
                                form.inline method="post" action={"/projects/" (id) "/collaborators"} {
                                    (session.csrf_field())
                                    input type="hidden" name="action" value="role";
                                    input type="hidden" name="user" value=(s(&m["user"], "id"));
                                    label.visually-hidden for={"role-" (s(&m["user"], "id"))} { "Role of " (s(&m["user"], "name")) }
                                    select id={"role-" (s(&m["user"], "id"))} name="role" {
                                        @for r in ["stream:owner", "stream:contributor", "stream:reviewer"] {
                                            option value=(r) selected[s(m, "role") == r] { (r.trim_start_matches("stream:")) }
                                        }
                                        option value="" { "remove" }
                                    }
                                    button type="submit" { "Save" }
                                }
                            }
                        }
                    }
                }
            }
        }
        // A missing list shows as empty.
        @let invited = p["invitedTeam"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        @if !invited.is_empty() {
            h2 { "Pending invites" }
            ul {
                @for i in invited {
                    li { (s(i, "title")) " as " (s(i, "role").trim_start_matches("stream:"))
                        " (by " (s(&i["invitedBy"], "name")) ")" }
                }
            }
        }
        @if owner {
            h2 { "Invite someone" }
            form.stack method="post" action={"/projects/" (id) "/collaborators"} {
                (session.csrf_field())
                input type="hidden" name="action" value="invite";
                label for="invite-email" { "Email" }
                input #invite-email type="email" name="email" required;
                label for="invite-role" { "Role" }
                select #invite-role name="role" {
                    option value="stream:contributor" { "contributor" }
                    option value="stream:reviewer" { "reviewer" }
                    option value="stream:owner" { "owner" }
                }
                button type="submit" { "Send invite" }
            }
        }
    };
    page(state, session, notice.status(), "Team", body).await
}

async fn team(State(state): State<AppState>, session: Session, Path(id): Path<String>) -> Response {
    team_page(&state, &session, &id, Notice::NONE).await
}

async fn team_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { session, fields }: Submitted,
) -> Response {
    if !session.signed_in() {
        return session.finish(sign_in_first(&format!("/projects/{id}/collaborators")));
    }
    let outcome: Result<&str, Gql> = if field(&fields, "action") == "invite" {
        session
            .gql(
                &state,
                "mutation($p: ID!, $i: ProjectInviteCreateInput!) { projectMutations { invites { create(projectId: $p, input: $i) { id } } } }",
                json!({"p": id, "i": {"email": field(&fields, "email"), "role": field(&fields, "role")}}),
            )
            .await
            .map(|_| "Invite sent.")
    } else {
        let role = fields.get("role").filter(|r| !r.is_empty());
        session
            .gql(
                &state,
                "mutation($i: ProjectUpdateRoleInput!) { projectMutations { updateRole(input: $i) { id } } }",
                json!({"i": {"projectId": id, "userId": field(&fields, "user"), "role": role}}),
            )
            .await
            .map(|_| "Role saved.")
    };
    team_page(&state, &session, &id, Notice::of(&outcome)).await
}

const SETTINGS: &str = "query($id: String!) { project(id: $id) { id name description visibility role permissions { canUpdate { authorized message } } } }";

async fn settings_page(
    state: &AppState,
    session: &Session,
    id: &str,
    notice: Notice<'_>,
) -> Response {
    let path = format!("/projects/{id}/settings");
    let data = match session
        .signed_in_query(state, &path, SETTINGS, json!({"id": id}))
        .await
    {
        Ok(d) => d,
        Err(res) => return res,
    };
    let p = &data["project"];
    let update = &p["permissions"]["canUpdate"];
    if update["authorized"].as_bool() != Some(true) {
        return error_page(
            session,
            StatusCode::FORBIDDEN,
            "Not allowed",
            s(update, "message"),
        );
    }
    let body = html! {
        h1 { (s(p, "name")) }
        (project_tabs(id, "settings", is_owner(p)))
        (notice.flash())
        form.stack method="post" action={"/projects/" (id) "/settings"} {
            (session.csrf_field())
            label for="name" { "Name" }
            input #name type="text" name="name" required value=(s(p, "name"));
            label for="description" { "Description" }
            textarea #description name="description" rows="3" { (s(p, "description")) }
            label for="visibility" { "Visibility" }
            select #visibility name="visibility" {
                @for v in ["PRIVATE", "UNLISTED", "PUBLIC"] {
                    option value=(v) selected[s(p, "visibility") == v] { (v.to_lowercase()) }
                }
            }
            button type="submit" { "Save" }
        }
    };
    page(state, session, notice.status(), "Settings", body).await
}

async fn settings(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    settings_page(&state, &session, &id, Notice::NONE).await
}

async fn settings_save(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { session, fields }: Submitted,
) -> Response {
    let outcome = session
        .gql(
            &state,
            "mutation($u: ProjectUpdateInput!) { projectMutations { update(update: $u) { id } } }",
            json!({"u": {"id": id, "name": field(&fields, "name"), "description": field(&fields, "description"), "visibility": field(&fields, "visibility")}}),
        )
        .await
        .map(|_| "Saved.");
    settings_page(&state, &session, &id, Notice::of(&outcome)).await
}

const WEBHOOKS: &str = "query($id: String!) { project(id: $id) { id name role webhooks { items { id url description triggers enabled hasSecret \
    history(limit: 10) { totalCount items { id status statusInfo lastUpdate eventName retryCount } } } } } }";

/// The triggers a webhook form offers.
const TRIGGERS: &[&str] = &[
    "stream_update",
    "stream_delete",
    "branch_create",
    "branch_update",
    "branch_delete",
    "commit_create",
    "commit_update",
    "commit_delete",
    "stream_permissions_add",
    "stream_permissions_remove",
];

/// A delivery's state as the original numbers it.
fn delivery_status(status: i64) -> &'static str {
    match status {
        0 => "pending",
        1 => "sending",
        2 => "delivered",
        3 => "failed",
        _ => "unknown",
    }
}

async fn webhooks_page(
    state: &AppState,
    session: &Session,
    id: &str,
    notice: Notice<'_>,
) -> Response {
    let path = format!("/projects/{id}/settings/webhooks");
    let data = match session
        .signed_in_query(state, &path, WEBHOOKS, json!({"id": id}))
        .await
    {
        Ok(d) => d,
        Err(res) => return res,
    };
    let p = &data["project"];
    let body = html! {
        h1 { (s(p, "name")) }
        (project_tabs(id, "webhooks", is_owner(p)))
        (notice.flash())
        @for w in items(&p["webhooks"]) {
            section.webhook aria-label={"Webhook " (s(w, "url"))} {
                h2 { code { (s(w, "url")) } }
                p.meta {
                    // Missing fields show as disabled and 0.
                    @if w["enabled"].as_bool().unwrap_or(false) { "enabled" } @else { "disabled" }
                    " · " (w["triggers"].as_array().map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default())
                    @if !s(w, "description").is_empty() { " · " (s(w, "description")) }
                }
                h3 { "Deliveries (" (w["history"]["totalCount"].as_i64().unwrap_or(0)) ")" }
                table.deliveries {
                    thead { tr { th scope="col" { "Event" } th scope="col" { "Status" } th scope="col" { "Detail" } th scope="col" { "Retries" } th scope="col" { "When" } th scope="col" { "" } } }
                    tbody {
                        @for d in items(&w["history"]) {
                            tr {
                                td { (s(d, "eventName")) }
                                // Missing: status 0 and no retries.
                                td.delivery-status { (delivery_status(d["status"].as_i64().unwrap_or(0))) }
                                td { (s(d, "statusInfo")) }
                                td { (d["retryCount"].as_i64().unwrap_or(0)) }
                                td { (when(s(d, "lastUpdate"))) }
                                td {
                                    form.inline method="post" action={"/projects/" (id) "/settings/webhooks"} {
                                        (session.csrf_field())
                                        input type="hidden" name="action" value="redeliver";
                                        input type="hidden" name="webhook" value=(s(w, "id"));
                                        input type="hidden" name="delivery" value=(s(d, "id"));
                                        button.secondary type="submit" { "Redeliver" }
                                    }
                                }
                            }
                        }
                    }
                }
                form.inline method="post" action={"/projects/" (id) "/settings/webhooks"} {
                    (session.csrf_field())
                    input type="hidden" name="action" value="delete";
                    input type="hidden" name="webhook" value=(s(w, "id"));
                    button.danger type="submit" { "Delete webhook" }
                }
            }
        }
        h2 { "Add a webhook" }
        form.stack method="post" action={"/projects/" (id) "/settings/webhooks"} {
            (session.csrf_field())
            input type="hidden" name="action" value="create";
            label for="url" { "URL" }
            input #url type="url" name="url" required;
            label for="wh-description" { "Description" }
            input #wh-description type="text" name="description";
            label for="secret" { "Secret (signs each delivery)" }
            input #secret type="password" name="secret" autocomplete="new-password";
            fieldset {
                legend { "Triggers" }
                @for t in TRIGGERS {
                    label.check { input type="checkbox" name={"trigger_" (t)} value="on" checked[*t == "commit_create"]; " " (t) }
                }
            }
            button type="submit" { "Add webhook" }
        }
    };
    page(state, session, notice.status(), "Webhooks", body).await
}

async fn webhooks(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    webhooks_page(&state, &session, &id, Notice::NONE).await
}

async fn webhooks_action(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Submitted { session, fields }: Submitted,
) -> Response {
    let outcome: Result<&str, Gql> = match field(&fields, "action") {
        "create" => {
            let triggers: Vec<&str> = TRIGGERS
                .iter()
                .copied()
                .filter(|t| fields.contains_key(&format!("trigger_{t}")))
                .collect();
            let secret = fields.get("secret").filter(|x| !x.is_empty());
            session
                .gql(
                    &state,
                    "mutation($w: WebhookCreateInput!) { webhookCreate(webhook: $w) }",
                    json!({"w": {"streamId": id, "url": field(&fields, "url"), "description": field(&fields, "description"), "triggers": triggers, "secret": secret}}),
                )
                .await
                .map(|_| "Webhook added.")
        }
        "redeliver" => session
            .gql(
                &state,
                "mutation($i: WebhookRedeliverInput!) { webhookRedeliver(input: $i) }",
                json!({"i": {"streamId": id, "webhookId": field(&fields, "webhook"), "deliveryId": field(&fields, "delivery")}}),
            )
            .await
            .map(|_| "Delivery queued again."),
        "delete" => session
            .gql(
                &state,
                "mutation($w: WebhookDeleteInput!) { webhookDelete(webhook: $w) }",
                json!({"w": {"streamId": id, "id": field(&fields, "webhook")}}),
            )
            .await
            .map(|_| "Webhook deleted."),
        _ => Err(Gql {
            code: "BAD_REQUEST_ERROR".to_owned(),
            message: "Unknown action.".to_owned(),
        }),
    };
    webhooks_page(&state, &session, &id, Notice::of(&outcome)).await
}

#[derive(serde::Deserialize, Default)]
struct HistoryQuery {
    cursor: Option<String>,
}

async fn history(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let data = match session
        .signed_in_query(
            &state,
            &format!("/projects/{id}/history"),
            "query($id: String!, $c: String) { project(id: $id) { id name role history(cursor: $c, limit: 100) { totalCount cursor items { position time eventType actorUserId client summary } } } }",
            json!({"id": id, "c": q.cursor}),
        )
        .await
    {
        Ok(d) => d,
        Err(res) => return res,
    };
    let p = &data["project"];
    let h = &p["history"];
    let body = html! {
        h1 { (s(p, "name")) }
        (project_tabs(&id, "history", is_owner(p)))
        // Missing: shown as 0.
        h2 { "History (" (h["totalCount"].as_i64().unwrap_or(0)) " changes)" }
        ol.timeline {
            @for e in items(h) {
                li {
                    time datetime=(s(e, "time")) { (when(s(e, "time"))) }
                    " " span.summary { (s(e, "summary")) }
                    span.meta { " #" (s(e, "position")) " · " (s(e, "eventType"))
                        @if !s(e, "client").is_empty() { " · " (s(e, "client")) } }
                }
            }
        }
        @if let Some(c) = h["cursor"].as_str() {
            p { a href={"/projects/" (id) "/history?cursor=" (encode(c))} { "Later changes" } }
        }
    };
    page(&state, &session, StatusCode::OK, "History", body).await
}

#[derive(serde::Deserialize, Default)]
struct ActivityQuery {
    before: Option<String>,
}

/// The project's activity feed (the original's stream activity), for everyone who may read
/// the project; owners also have the full history timeline.
async fn activity(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<ActivityQuery>,
) -> Response {
    let data = match session
        .gql(
            &state,
            "query($id: String!, $c: DateTime) { project(id: $id) { id name role } \
             stream(id: $id) { collaborators { id name } \
               activity(cursor: $c, limit: 50) { totalCount cursor items { actionType userId time message } } } }",
            json!({"id": id, "c": q.before}),
        )
        .await
    {
        Ok(d) => d,
        Err(e) if !session.signed_in() && e.status() != StatusCode::INTERNAL_SERVER_ERROR => {
            return session.finish(sign_in_first(&format!("/projects/{id}/activity")));
        }
        Err(e) => return gql_error_page(&session, &e),
    };
    let p = &data["project"];
    // No collaborators listed: every author shows as a former member.
    let names: BTreeMap<&str, &str> = data["stream"]["collaborators"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|c| (s(c, "id"), s(c, "name")))
        .collect();
    let feed = &data["stream"]["activity"];
    let body = html! {
        h1 { (s(p, "name")) }
        (project_tabs(&id, "activity", is_owner(p)))
        // Missing: shown as 0.
        h2 { "Activity (" (feed["totalCount"].as_i64().unwrap_or(0)) ")" }
        ol.timeline.activity {
            @for a in items(feed) {
                li {
                    time datetime=(s(a, "time")) { (when(s(a, "time"))) }
                    " " span.who { (names.get(s(a, "userId")).copied().unwrap_or("A former member")) }
                    " " span.summary { (s(a, "message")) }
                    span.meta { " · " (s(a, "actionType")) }
                }
            }
        }
        @if let Some(c) = feed["cursor"].as_str() {
            p { a href={"/projects/" (id) "/activity?before=" (encode(c))} { "Earlier activity" } }
        }
    };
    page(&state, &session, StatusCode::OK, "Activity", body).await
}

/// A model or `model@version` of the viewer route.
fn split_resource(resource: &str) -> (&str, Option<&str>) {
    match resource.split_once('@') {
        Some((m, v)) => (m, Some(v)),
        None => (resource, None),
    }
}

const VIEWER: &str = "query($id: String!, $m: String!) { project(id: $id) { id name visibility role \
    model(id: $m) { id name displayName versions(limit: 100) { totalCount items { id message sourceApplication createdAt referencedObject authorUser { name } } } } } }";

fn version_list(project_id: &str, model_id: &str, versions: &[Value], current: &str) -> Markup {
    html! {
        ol.versions {
            @for v in versions {
                li aria-current=[(s(v, "id") == current).then_some("true")] {
                    a href={"/projects/" (project_id) "/models/" (model_id) "@" (s(v, "id"))} {
                        span.message { @if s(v, "message").is_empty() { "(no message)" } @else { (s(v, "message")) } }
                    }
                    span.meta {
                        (s(&v["authorUser"], "name")) " · " (s(v, "sourceApplication")) " · " (when(s(v, "createdAt")))
                    }
                }
            }
        }
    }
}

/// `GET /projects/:id/models/:model[@version]`: the 3D viewer. Inside an iframe on another
/// site (`Sec-Fetch-Dest: iframe`) the same URL answers the embed: only the viewer, no
/// session (a public project, or the original's `?embedToken=`), framable by any site.
async fn viewer(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, resource)): Path<(String, String)>,
) -> Response {
    let embed = headers
        .get("sec-fetch-dest")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|d| d == "iframe");
    let session = if embed {
        embed_session(&state, &headers).await
    } else {
        Session::read(&state, &headers).await
    };
    let (model_id, version_id) = split_resource(&resource);
    let data = match session
        .gql(&state, VIEWER, json!({"id": id, "m": model_id}))
        .await
    {
        Ok(d) => d,
        Err(_) if !session.signed_in() && !embed => {
            return session.finish(sign_in_first(&format!("/projects/{id}/models/{resource}")));
        }
        Err(e) => return gql_error_page(&session, &e),
    };
    let p = &data["project"];
    let m = &p["model"];
    let versions = items(&m["versions"]);
    let current = match version_id {
        Some(v) => versions.iter().find(|x| s(x, "id") == v),
        None => versions.first(),
    };
    let Some(current) = current else {
        let body = html! {
            h1 { (s(m, "name")) }
            p { @if version_id.is_some() { "No such version in this model." } @else { "This model has no versions yet." } }
        };
        return page(&state, &session, StatusCode::NOT_FOUND, s(m, "name"), body).await;
    };
    // The page loads objects with a read grant for this project alone (never the session
    // token); a public project needs none.
    let public = s(p, "visibility")
        .parse::<Visibility>()
        .is_ok_and(Visibility::is_public);
    let grant = if public {
        String::new()
    } else {
        state
            .settings()
            .token_pepper
            .as_ref()
            .map(|pepper| {
                // A huge setting saturates at half of i64::MAX, so the sum cannot overflow.
                let until = time::OffsetDateTime::now_utc().unix_timestamp()
                    + i64::try_from(state.settings().web_viewer_grant_seconds)
                        .unwrap_or(i64::MAX / 2);
                crate::accounts::Accounts::preview_grant(pepper, &id, until)
            })
            .unwrap_or_default()
    };
    let island = html! {
        div #viewer.viewer tabindex="0" aria-label={"3D view of " (s(m, "name"))}
            data-server-url="" data-project-id=(id) data-object-id=(s(current, "referencedObject"))
            data-token=(grant) data-embed=(embed) {}
        aside #selection aria-live="polite" hidden {}
        div #viewer-status role="status" { "Loading the model…" }
        script src="/_strata/viewer/app.js" defer {}
    };
    if embed {
        let markup = html! {
            (maud::DOCTYPE)
            html.embed lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (s(m, "name")) " · strata" }
                    link rel="stylesheet" href="/_strata/web.css";
                }
                body.embed { (island) }
            }
        };
        return respond_with_csp(&session, StatusCode::OK, markup, EMBED_CSP);
    }
    let body = html! {
        div.viewer-page {
            section.viewer-main aria-label="Viewer" {
                h1 { a href={"/projects/" (id)} { (s(p, "name")) } " / " (s(m, "name")) }
                p.meta {
                    "Version " code { (s(current, "id")) } ": "
                    (s(current, "message")) " · " (s(&current["authorUser"], "name")) " · "
                    (s(current, "sourceApplication")) " · " (when(s(current, "createdAt")))
                }
                (island)
                details.embed-info {
                    summary { "Embed" }
                    p { "Paste into another site (public projects, or add " code { "?embedToken=…" } "):" }
                    pre { code { "<iframe src=\"" (state.public_url()) "/projects/" (id) "/models/" (s(m, "id")) "@" (s(current, "id")) "#embed=%7B%22isEnabled%22%3Atrue%7D\" width=\"600\" height=\"400\" frameborder=\"0\"></iframe>" } }
                }
            }
            aside.viewer-versions aria-label="Versions" {
                // Missing: shown as 0.
                h2 { (m["versions"]["totalCount"].as_i64().unwrap_or(0)) " versions" }
                (version_list(&id, s(m, "id"), versions, s(current, "id")))
            }
        }
    };
    page(&state, &session, StatusCode::OK, s(m, "name"), body).await
}

/// The embed's viewer: the `Authorization` the `?embedToken=` became, never cookies.
async fn embed_session(state: &AppState, headers: &HeaderMap) -> Session {
    let token = headers
        .contains_key(header::AUTHORIZATION)
        .then(|| crate::auth::presented_token(headers))
        .flatten();
    Session::for_token(state, headers, token).await
}

async fn versions(
    State(state): State<AppState>,
    session: Session,
    Path((id, resource)): Path<(String, String)>,
) -> Response {
    let (model_id, _) = split_resource(&resource);
    let data = match session
        .gql(&state, VIEWER, json!({"id": id, "m": model_id}))
        .await
    {
        Ok(d) => d,
        Err(_) if !session.signed_in() => {
            return session.finish(sign_in_first(&format!(
                "/projects/{id}/models/{resource}/versions"
            )));
        }
        Err(e) => return gql_error_page(&session, &e),
    };
    let m = &data["project"]["model"];
    let body = html! {
        h1 { a href={"/projects/" (id)} { (s(&data["project"], "name")) } " / " (s(m, "name")) }
        // Missing: shown as 0.
        h2 { (m["versions"]["totalCount"].as_i64().unwrap_or(0)) " versions" }
        (version_list(&id, s(m, "id"), items(&m["versions"]), ""))
    };
    page(&state, &session, StatusCode::OK, s(m, "name"), body).await
}

async fn project_preview(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    crate::previews::for_page(&state, session.token(), &id, None).await
}

async fn model_preview(
    State(state): State<AppState>,
    session: Session,
    Path((id, model)): Path<(String, String)>,
) -> Response {
    crate::previews::for_page(&state, session.token(), &id, Some(model)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_become_folders() {
        let models = vec![
            json!({"name": "a/b/c", "id": "1"}),
            json!({"name": "a/d", "id": "2"}),
            json!({"name": "e", "id": "3"}),
        ];
        let root = tree(&models);
        assert_eq!(root.models.len(), 1);
        assert_eq!(root.folders["a"].models.len(), 1);
        assert_eq!(root.folders["a"].folders["b"].models.len(), 1);
        assert_eq!(s(root.folders["a"].folders["b"].models[0], "id"), "1");
    }

    #[test]
    fn resources_name_a_model_and_maybe_a_version() {
        assert_eq!(split_resource("abc@def"), ("abc", Some("def")));
        assert_eq!(split_resource("abc"), ("abc", None));
    }
}

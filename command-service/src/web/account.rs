//! The person's own pages (profile, personal access tokens, authorized apps) and the server
//! admin's overview.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::html;
use serde_json::{Value, json};

use super::{Notice, Session, Submitted, field, items, page, s, sign_in_first, when};
use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings/user/profile", get(profile).post(profile_save))
        .route("/settings/user/delete", axum::routing::post(delete_account))
        .route("/settings/user/developer", get(tokens).post(tokens_action))
        .route("/settings/server", get(admin))
}

const PROFILE: &str = "{ activeUser { id name email company bio verified role createdAt } }";

const PROFILE_PATH: &str = "/settings/user/profile";

async fn profile_page(state: &AppState, session: &Session, notice: Notice<'_>) -> Response {
    let data = match session
        .signed_in_query(state, PROFILE_PATH, PROFILE, json!({}))
        .await
    {
        Ok(d) => d,
        Err(res) => return res,
    };
    let u = &data["activeUser"];
    let body = html! {
        h1 { "Profile" }
        (notice.flash())
        p { (s(u, "email")) " · "
            // Missing: shown as unverified.
            @if u["verified"].as_bool().unwrap_or(false) { "verified" } @else { a href="/verify-email" { "verify your email" } }
            " · " (s(u, "role").trim_start_matches("server:")) " · since " (when(s(u, "createdAt"))) }
        form.stack method="post" action="/settings/user/profile" {
            (session.csrf_field())
            label for="name" { "Name" }
            input #name type="text" name="name" required value=(s(u, "name"));
            label for="company" { "Company" }
            input #company type="text" name="company" value=(s(u, "company"));
            label for="bio" { "Bio" }
            textarea #bio name="bio" rows="3" { (s(u, "bio")) }
            button type="submit" { "Save" }
        }
        section.danger aria-labelledby="delete-account" {
            h2 #delete-account { "Delete account" }
            p { "Your account goes, with every project you alone own; you leave the others. \
                 Your name, email and profile are erased from this server, its history included. \
                 This cannot be undone." }
            form.stack method="post" action="/settings/user/delete" {
                (session.csrf_field())
                label for="delete-email" { "Your email, to confirm" }
                input #delete-email type="email" name="email" autocomplete="off" required;
                label for="delete-password" { "Your password" }
                input #delete-password type="password" name="password" autocomplete="current-password" required;
                button.danger type="submit" { "Delete my account" }
            }
        }
    };
    page(state, session, notice.status(), "Profile", body).await
}

/// `userDelete` from the profile page; on success the session ends with the account.
async fn delete_account(
    State(state): State<AppState>,
    Submitted { session, fields }: Submitted,
) -> Response {
    if !session.signed_in() {
        return session.finish(sign_in_first(PROFILE_PATH));
    }
    let outcome = session
        .gql(
            &state,
            "mutation($c: UserDeleteInput!) { userDelete(userConfirmation: $c) }",
            json!({"c": {"email": field(&fields, "email"), "password": field(&fields, "password")}}),
        )
        .await;
    match outcome {
        Ok(_) => session.ended("/authn/login"),
        Err(e) => profile_page(&state, &session, Notice::failed(&e)).await,
    }
}

async fn profile(State(state): State<AppState>, session: Session) -> Response {
    profile_page(&state, &session, Notice::NONE).await
}

async fn profile_save(
    State(state): State<AppState>,
    Submitted { session, fields }: Submitted,
) -> Response {
    if !session.signed_in() {
        return session.finish(sign_in_first(PROFILE_PATH));
    }
    let outcome = session
        .gql(
            &state,
            "mutation($u: UserUpdateInput!) { activeUserMutations { update(user: $u) { id } } }",
            json!({"u": {"name": field(&fields, "name"), "company": field(&fields, "company"), "bio": field(&fields, "bio")}}),
        )
        .await
        .map(|_| "Saved.");
    profile_page(&state, &session, Notice::of(&outcome)).await
}

const TOKENS: &str = "{ activeUser { apiTokens { id name lastChars scopes createdAt lastUsed } authorizedApps { id name description } } serverInfo { scopes { name description } } }";

/// The scopes a new token gets unless the person unticks them.
const DEFAULT_SCOPES: &[&str] = &[
    "streams:read",
    "streams:write",
    "profile:read",
    "users:read",
];

const TOKENS_PATH: &str = "/settings/user/developer";

async fn tokens_page(
    state: &AppState,
    session: &Session,
    notice: Notice<'_>,
    new_token: Option<&str>,
) -> Response {
    let data = match session
        .signed_in_query(state, TOKENS_PATH, TOKENS, json!({}))
        .await
    {
        Ok(d) => d,
        Err(res) => return res,
    };
    // A missing list shows as empty.
    let tokens = data["activeUser"]["apiTokens"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let apps = data["activeUser"]["authorizedApps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let scopes = data["serverInfo"]["scopes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let body = html! {
        h1 { "Personal access tokens" }
        (notice.flash())
        @if let Some(t) = new_token {
            section.new-token aria-labelledby="new-token" {
                h2 #new-token { "Your new token" }
                p { "Copy it now: it is shown only once." }
                input #token-value type="text" readonly value=(t) aria-label="New token";
            }
        }
        @if tokens.is_empty() {
            p { "No tokens yet." }
        } @else {
            table.tokens {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Ends in" } th scope="col" { "Scopes" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "" } } }
                tbody {
                    @for t in tokens {
                        tr {
                            td.token-name { (s(t, "name")) }
                            td { code { "…" (s(t, "lastChars")) } }
                            td { (t["scopes"].as_array().map(|l| l.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                            td { (when(s(t, "createdAt"))) }
                            td { @if s(t, "lastUsed").is_empty() { "never" } @else { (when(s(t, "lastUsed"))) } }
                            td {
                                form.inline method="post" action="/settings/user/developer" {
                                    (session.csrf_field())
                                    input type="hidden" name="action" value="revoke";
                                    input type="hidden" name="token" value=(s(t, "id"));
                                    button.danger type="submit" aria-label={"Revoke " (s(t, "name"))} { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "New token" }
        form.stack method="post" action="/settings/user/developer" {
            (session.csrf_field())
            input type="hidden" name="action" value="create";
            label for="token-name" { "Name" }
            input #token-name type="text" name="name" required;
            fieldset {
                legend { "Scopes" }
                @for sc in scopes {
                    label.check {
                        input type="checkbox" name={"scope_" (s(sc, "name"))} value="on" checked[DEFAULT_SCOPES.contains(&s(sc, "name"))];
                        " " code { (s(sc, "name")) } " — " (s(sc, "description"))
                    }
                }
            }
            button type="submit" { "Create token" }
        }
        h2 { "Authorized apps" }
        @if apps.is_empty() { p { "No app holds a token of yours." } }
        ul.apps {
            @for a in apps {
                li {
                    span.app-name { (s(a, "name")) }
                    @if !s(a, "description").is_empty() { " — " (s(a, "description")) }
                    form.inline method="post" action="/settings/user/developer" {
                        (session.csrf_field())
                        input type="hidden" name="action" value="revoke_app";
                        input type="hidden" name="app" value=(s(a, "id"));
                        button.danger type="submit" aria-label={"Revoke access of " (s(a, "name"))} { "Revoke access" }
                    }
                }
            }
        }
    };
    page(state, session, notice.status(), "Tokens", body).await
}

async fn tokens(State(state): State<AppState>, session: Session) -> Response {
    tokens_page(&state, &session, Notice::NONE, None).await
}

async fn tokens_action(
    State(state): State<AppState>,
    Submitted { session, fields }: Submitted,
) -> Response {
    if !session.signed_in() {
        return session.finish(sign_in_first(TOKENS_PATH));
    }
    let (outcome, done) = match field(&fields, "action") {
        "create" => {
            let scopes: Vec<&str> = fields
                .keys()
                .filter_map(|k| k.strip_prefix("scope_"))
                .collect();
            let created = session
                .gql(
                    &state,
                    "mutation($t: ApiTokenCreateInput!) { apiTokenCreate(token: $t) }",
                    json!({"t": {"name": field(&fields, "name"), "scopes": scopes}}),
                )
                .await;
            (created, "Token created.")
        }
        "revoke_app" => {
            let revoked = session
                .gql(
                    &state,
                    "mutation($a: String!) { appRevokeAccess(appId: $a) }",
                    json!({"a": field(&fields, "app")}),
                )
                .await;
            (revoked, "The app's access is revoked.")
        }
        _ => {
            let revoked = session
                .gql(
                    &state,
                    "mutation($t: String!) { apiTokenRevoke(token: $t) }",
                    json!({"t": field(&fields, "token")}),
                )
                .await;
            (revoked, "Token revoked.")
        }
    };
    match outcome {
        Ok(data) => {
            // Only a created token is in the answer, and it is shown this once.
            let token = data["apiTokenCreate"].as_str();
            tokens_page(&state, &session, Notice::done(done), token).await
        }
        Err(e) => tokens_page(&state, &session, Notice::failed(&e), None).await,
    }
}

const ADMIN: &str = "{ serverInfo { name version company adminContact canonicalUrl inviteOnly } \
    admin { serverStatistics { totalProjectCount totalUserCount totalPendingInvites } \
    userList(limit: 100) { totalCount items { id name email role verified createdAt } } \
    projectList(limit: 100) { totalCount items { id name visibility updatedAt } } \
    inviteList(limit: 100) { totalCount items { id email invitedBy { name } } } } }";

async fn admin(State(state): State<AppState>, session: Session) -> Response {
    let data = match session
        .signed_in_query(&state, "/settings/server", ADMIN, json!({}))
        .await
    {
        Ok(d) => d,
        Err(res) => return res,
    };
    let info = &data["serverInfo"];
    let admin = &data["admin"];
    let stats = &admin["serverStatistics"];
    let body = html! {
        h1 { "Server" }
        dl.facts {
            dt { "Name" } dd { (s(info, "name")) }
            dt { "Speaks Speckle" } dd { (s(info, "version")) }
            dt { "Address" } dd { (s(info, "canonicalUrl")) }
            // A missing fact shows as no or 0.
            dt { "Invite only" } dd { (if info["inviteOnly"].as_bool().unwrap_or(false) { "yes" } else { "no" }) }
            dt { "Projects" } dd { (stats["totalProjectCount"].as_i64().unwrap_or(0)) }
            dt { "Users" } dd { (stats["totalUserCount"].as_i64().unwrap_or(0)) }
            dt { "Pending invites" } dd { (stats["totalPendingInvites"].as_i64().unwrap_or(0)) }
        }
        h2 { "Users" }
        table {
            thead { tr { th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Verified" } th scope="col" { "Since" } } }
            tbody {
                @for u in items(&admin["userList"]) {
                    tr { td { (s(u, "name")) } td { (s(u, "email")) } td { (s(u, "role").trim_start_matches("server:")) }
                        // Missing: shown as not verified.
                        td { (if u["verified"].as_bool().unwrap_or(false) { "yes" } else { "no" }) } td { (when(s(u, "createdAt"))) } }
                }
            }
        }
        h2 { "Projects" }
        ul { @for p in items(&admin["projectList"]) {
            li { a href={"/projects/" (s(p, "id"))} { (s(p, "name")) } " · " (s(p, "visibility").to_lowercase()) " · " (when(s(p, "updatedAt"))) }
        } }
        h2 { "Pending invites" }
        ul { @for i in items(&admin["inviteList"]) {
            li { (s(i, "email")) " (by " (s(&i["invitedBy"], "name")) ")" }
        } }
    };
    page(&state, &session, StatusCode::OK, "Server", body).await
}

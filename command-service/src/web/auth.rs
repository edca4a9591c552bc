//! Sign in, register, sign out, password reset, email verification and the connector sign-in
//! (`/authn/verify/:appId/:challenge`), at the original web app's paths.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use serde_json::json;

use super::{
    Fields, Frame, Session, Submitted, encode, error_page, field, layout, local_next, me,
    plain_page, respond, s, see_other, sign_in_first,
};
use crate::accounts::AccountError;
use crate::app::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/authn/login", get(login_page).post(login))
        .route("/authn/register", get(register_page).post(register))
        .route("/authn/logout", axum::routing::post(logout))
        .route(
            "/authn/forgotten-password",
            get(forgotten_page).post(forgotten),
        )
        .route("/authn/reset-password", get(reset_page).post(reset))
        .route("/authn/resetpassword/finalize", get(reset_page_legacy))
        .route("/verify-email", get(verify_page).post(verify))
        .route(
            "/authn/verify/{app_id}/{challenge}",
            get(authorize_page).post(authorize),
        )
}

/// The form of a signed-out page (`form` gets where to go afterwards); someone signed in goes
/// straight on to `next`.
fn signed_out_form(
    session: &Session,
    next: Option<&str>,
    title: &str,
    form: impl FnOnce(&str) -> Markup,
) -> Response {
    let next = local_next(next);
    if session.signed_in() {
        return session.finish(see_other(&next));
    }
    plain_page(session, StatusCode::OK, title, form(&next))
}

/// The form again (`form` gets the message), saying why the account flow failed, with the
/// status that failure answers with.
fn retry_form(
    session: &Session,
    error: &AccountError,
    title: &str,
    form: impl FnOnce(&str) -> Markup,
) -> Response {
    let (status, message) = account_message(error);
    plain_page(session, status, title, form(&message))
}

fn notice(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p.error role="alert" { (e) } }
    }
}

fn account_message(e: &AccountError) -> (StatusCode, String) {
    match e {
        AccountError::BadCredentials => (
            StatusCode::UNAUTHORIZED,
            "That email and password do not match an account.".to_owned(),
        ),
        AccountError::Internal(m) => {
            tracing::error!(error = format!("{m:#}"), "web sign-in failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on the server; try again.".to_owned(),
            )
        }
        AccountError::EmailTaken => (StatusCode::BAD_REQUEST, e.to_string()),
        AccountError::InviteOnly | AccountError::Forbidden(_) => {
            (StatusCode::FORBIDDEN, e.to_string())
        }
        _ => (StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Starts a session for `user_id` and sends the browser to `next`.
async fn start_session(
    state: &AppState,
    session: &Session,
    user_id: &str,
    next: &str,
) -> Result<Response, AccountError> {
    let (token, lifespan) = state.accounts().web_session(user_id).await?;
    let mut res = see_other(next);
    if let Some(cookie) = session.session_cookie(&token, lifespan.as_secs()) {
        res.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(session.finish(res))
}

#[derive(serde::Deserialize, Default)]
struct NextQuery {
    next: Option<String>,
    token: Option<String>,
}

fn login_form(session: &Session, next: &str, email: &str, error: Option<&str>) -> Markup {
    html! {
        h1 { "Sign in" }
        (notice(error))
        form.stack method="post" action="/authn/login" {
            (session.csrf_field())
            input type="hidden" name="next" value=(next);
            label for="email" { "Email" }
            input #email type="email" name="email" autocomplete="username" required value=(email);
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
        p {
            a href={"/authn/register?next=" (encode(next))} { "Create an account" }
            " · "
            a href="/authn/forgotten-password" { "Forgot your password?" }
        }
    }
}

async fn login_page(session: Session, Query(q): Query<NextQuery>) -> Response {
    signed_out_form(&session, q.next.as_deref(), "Sign in", |next| {
        login_form(&session, next, "", None)
    })
}

async fn login(
    State(state): State<AppState>,
    Submitted { session, fields }: Submitted,
) -> Response {
    let next = local_next(fields.get("next").map(String::as_str));
    let email = field(&fields, "email");
    let outcome = match state
        .accounts()
        .login(email, field(&fields, "password"))
        .await
    {
        Ok(user_id) => start_session(&state, &session, &user_id, &next).await,
        Err(e) => Err(e),
    };
    outcome.unwrap_or_else(|e| {
        retry_form(&session, &e, "Sign in", |message| {
            login_form(&session, &next, email, Some(message))
        })
    })
}

fn register_form(
    session: &Session,
    next: &str,
    invite: Option<&str>,
    values: &Fields,
    error: Option<&str>,
) -> Markup {
    html! {
        h1 { "Create an account" }
        (notice(error))
        form.stack method="post" action="/authn/register" {
            (session.csrf_field())
            input type="hidden" name="next" value=(next);
            @if let Some(t) = invite { input type="hidden" name="token" value=(t); }
            label for="name" { "Name" }
            input #name type="text" name="name" autocomplete="name" required value=(field(values, "name"));
            label for="email" { "Email" }
            input #email type="email" name="email" autocomplete="email" required value=(field(values, "email"));
            label for="company" { "Company (optional)" }
            input #company type="text" name="company" autocomplete="organization" value=(field(values, "company"));
            label for="password" { "Password" }
            input #password type="password" name="password" autocomplete="new-password" required;
            button type="submit" { "Create account" }
        }
        p { "Already have an account? " a href={"/authn/login?next=" (encode(next))} { "Sign in" } }
    }
}

async fn register_page(session: Session, Query(q): Query<NextQuery>) -> Response {
    signed_out_form(&session, q.next.as_deref(), "Create an account", |next| {
        register_form(&session, next, q.token.as_deref(), &Fields::new(), None)
    })
}

async fn register(
    State(state): State<AppState>,
    Submitted { session, fields }: Submitted,
) -> Response {
    let next = local_next(fields.get("next").map(String::as_str));
    let invite = fields.get("token").filter(|t| !t.is_empty());
    let company = fields
        .get("company")
        .filter(|c| !c.trim().is_empty())
        .cloned();
    let metadata = session.metadata();
    let outcome = match state
        .accounts()
        .register(
            field(&fields, "email"),
            field(&fields, "password"),
            field(&fields, "name"),
            company,
            invite.map(String::as_str),
            &metadata,
        )
        .await
    {
        Ok(user_id) => start_session(&state, &session, &user_id, &next).await,
        Err(e) => Err(e),
    };
    outcome.unwrap_or_else(|e| {
        retry_form(&session, &e, "Create an account", |message| {
            register_form(
                &session,
                &next,
                invite.map(String::as_str),
                &fields,
                Some(message),
            )
        })
    })
}

async fn logout(
    State(state): State<AppState>,
    Submitted { session, fields: _ }: Submitted,
) -> Response {
    if let (Some(user), Some(token)) = (session.user_id(), session.token())
        && let Err(e) = state.accounts().revoke_token(user, token).await
    {
        tracing::warn!(error = %e, "revoking a web session");
    }
    session.ended("/authn/login")
}

async fn forgotten_page(State(_state): State<AppState>, session: Session) -> Response {
    plain_page(
        &session,
        StatusCode::OK,
        "Reset your password",
        html! {
            h1 { "Reset your password" }
            form.stack method="post" action="/authn/forgotten-password" {
                (session.csrf_field())
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="email" required;
                button type="submit" { "Send me a reset link" }
            }
        },
    )
}

async fn forgotten(
    State(state): State<AppState>,
    Submitted { session, fields }: Submitted,
) -> Response {
    let metadata = session.metadata();
    let (status, message) = match state
        .accounts()
        .request_password_reset(field(&fields, "email"), &metadata)
        .await
    {
        Ok(()) => (
            StatusCode::OK,
            "If an account has that address, a reset link is on its way.".to_owned(),
        ),
        Err(e) => account_message(&e),
    };
    plain_page(
        &session,
        status,
        "Reset your password",
        html! { h1 { "Reset your password" } p role="status" { (message) } },
    )
}

#[derive(serde::Deserialize)]
struct ResetQuery {
    token: Option<String>,
    t: Option<String>,
}

fn reset_form(session: &Session, token: &str, error: Option<&str>) -> Markup {
    html! {
        h1 { "Choose a new password" }
        (notice(error))
        form.stack method="post" action="/authn/reset-password" {
            (session.csrf_field())
            input type="hidden" name="token" value=(token);
            label for="password" { "New password" }
            input #password type="password" name="password" autocomplete="new-password" required;
            button type="submit" { "Save password" }
        }
    }
}

async fn reset_page(
    State(_state): State<AppState>,
    session: Session,
    Query(q): Query<ResetQuery>,
) -> Response {
    let token = q.token.or(q.t).unwrap_or_default();
    let mut res = plain_page(
        &session,
        StatusCode::OK,
        "Choose a new password",
        reset_form(&session, &token, None),
    );
    // The link's secret must not leak to another site through a referrer.
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// Links mailed before the web app existed.
async fn reset_page_legacy(
    state: State<AppState>,
    session: Session,
    query: Query<ResetQuery>,
) -> Response {
    reset_page(state, session, query).await
}

async fn reset(
    State(state): State<AppState>,
    Submitted { session, fields }: Submitted,
) -> Response {
    let token = field(&fields, "token");
    let metadata = session.metadata();
    match state
        .accounts()
        .finalize_password_reset(token, field(&fields, "password"), &metadata)
        .await
    {
        Ok(()) => plain_page(
            &session,
            StatusCode::OK,
            "Password saved",
            html! {
                h1 { "Password saved" }
                p role="status" { "Your password was changed. " a href="/authn/login" { "Sign in" } }
            },
        ),
        Err(e) => retry_form(&session, &e, "Choose a new password", |message| {
            reset_form(&session, token, Some(message))
        }),
    }
}

async fn verify_form(state: &AppState, session: &Session, message: Option<(bool, &str)>) -> Markup {
    let (name, admin) = me(state, session).await;
    let email = session
        .gql(state, "{ activeUser { email verified } }", json!({}))
        .await
        .ok();
    // Unknown (the query failed): offer to verify.
    let verified = email
        .as_ref()
        .and_then(|d| d["activeUser"]["verified"].as_bool())
        .unwrap_or(false);
    let address = email
        .as_ref()
        .map(|d| s(&d["activeUser"], "email").to_owned())
        .unwrap_or_default();
    layout(
        &Frame {
            title: "Verify your email",
            session,
            user_name: name.as_deref(),
            admin,
        },
        html! {
            h1 { "Verify your email" }
            @match message {
                Some((true, m)) => p role="status" { (m) },
                Some((false, m)) => p.error role="alert" { (m) },
                None => {},
            }
            @if verified {
                p { (address) " is verified." }
            } @else {
                p { "Enter the code we sent to " strong { (address) } "." }
                form.stack method="post" action="/verify-email" {
                    (session.csrf_field())
                    input type="hidden" name="action" value="verify";
                    label for="code" { "Code" }
                    input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required;
                    button type="submit" { "Verify" }
                }
                form method="post" action="/verify-email" {
                    (session.csrf_field())
                    input type="hidden" name="action" value="resend";
                    button.secondary type="submit" { "Send a new code" }
                }
            }
        },
    )
}

async fn verify_page(State(state): State<AppState>, session: Session) -> Response {
    if !session.signed_in() {
        return session.finish(sign_in_first("/verify-email"));
    }
    let page = verify_form(&state, &session, None).await;
    respond(&session, StatusCode::OK, page)
}

async fn verify(
    State(state): State<AppState>,
    Submitted { session, fields }: Submitted,
) -> Response {
    if !session.signed_in() {
        return session.finish(sign_in_first("/verify-email"));
    }
    let email = session
        .gql(&state, "{ activeUser { email } }", json!({}))
        .await
        .map(|d| s(&d["activeUser"], "email").to_owned())
        .unwrap_or_default();
    let outcome = if field(&fields, "action") == "resend" {
        session
            .gql(&state, "mutation { requestVerification }", json!({}))
            .await
            .map(|_| "A new code is on its way.")
    } else {
        session
            .gql(
                &state,
                "mutation($e: String!, $c: String!) { activeUserMutations { emailMutations { verify(input: {email: $e, code: $c}) } } }",
                json!({"e": email, "c": field(&fields, "code").trim()}),
            )
            .await
            .map(|_| "Your email is verified.")
    };
    let (status, page) = match outcome {
        Ok(m) => (
            StatusCode::OK,
            verify_form(&state, &session, Some((true, m))).await,
        ),
        Err(e) => (
            e.status(),
            verify_form(&state, &session, Some((false, &e.message))).await,
        ),
    };
    respond(&session, status, page)
}

/// An app asking for access, as the authorization page shows it.
struct AskingApp {
    name: String,
    description: String,
    author: String,
    scopes: Vec<(String, String)>,
    redirect_url: String,
}

async fn asking_app(state: &AppState, session: &Session, app_id: &str) -> Option<AskingApp> {
    let data = session
        .gql(
            state,
            "query($id: String!) { app(id: $id) { name description redirectUrl author { name } scopes { name description } } }",
            json!({"id": app_id}),
        )
        .await
        .ok()?;
    let app = data.get("app").filter(|a| !a.is_null())?;
    Some(AskingApp {
        name: s(app, "name").to_owned(),
        description: s(app, "description").to_owned(),
        author: app
            .get("author")
            .map(|a| s(a, "name").to_owned())
            .unwrap_or_default(),
        scopes: app["scopes"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|sc| (s(sc, "name").to_owned(), s(sc, "description").to_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        redirect_url: s(app, "redirectUrl").to_owned(),
    })
}

/// The page for an app id no app has.
fn unknown_app(session: &Session) -> Response {
    error_page(
        session,
        StatusCode::NOT_FOUND,
        "Unknown app",
        "No app with this id is registered on this server.",
    )
}

/// `GET /authn/verify/:appId/:challenge`: a connector (or any registered app) asks the
/// signed-in person for access; they see who asks for what, and allow or deny.
async fn authorize_page(
    State(state): State<AppState>,
    session: Session,
    Path((app_id, challenge)): Path<(String, String)>,
) -> Response {
    let here = format!("/authn/verify/{}/{}", encode(&app_id), encode(&challenge));
    if !session.signed_in() {
        return session.finish(sign_in_first(&here));
    }
    let Some(app) = asking_app(&state, &session, &app_id).await else {
        return unknown_app(&session);
    };
    let (name, admin) = me(&state, &session).await;
    let body = html! {
        h1 { (app.name) " wants to access your account" }
        // Name unknown: shown blank.
        p { "Signed in as " strong { (name.as_deref().unwrap_or("")) } ". "
            a href={"/authn/login?next=" (encode(&here))} { "Not you?" } }
        section aria-labelledby="app-info" {
            h2 #app-info { "About the app" }
            @if !app.description.is_empty() { p { (app.description) } }
            @if !app.author.is_empty() { p { "Made by " (app.author) "." } }
            p { "After you decide, you are sent to " code { (app.redirect_url) } "." }
        }
        section aria-labelledby="scopes" {
            h2 #scopes { "It asks to (" (app.scopes.len()) ")" }
            ul.scopes {
                @for (scope, description) in &app.scopes {
                    li { code { (scope) } " — " (description) }
                }
            }
        }
        form.actions method="post" action=(here) {
            (session.csrf_field())
            button type="submit" name="decision" value="allow" { "Allow" }
            button.secondary type="submit" name="decision" value="deny" { "Deny" }
        }
    };
    respond(
        &session,
        StatusCode::OK,
        layout(
            &Frame {
                title: "Authorize an app",
                session: &session,
                user_name: name.as_deref(),
                admin,
            },
            body,
        ),
    )
}

fn with_query(url: &str, pair: &str) -> String {
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}{pair}")
}

/// `POST /authn/verify/:appId/:challenge`: allow (an access code bound to the challenge,
/// sent to the app's redirect URL) or deny (`?denied=true`, as the original's page does).
async fn authorize(
    State(state): State<AppState>,
    Path((app_id, challenge)): Path<(String, String)>,
    Submitted { session, fields }: Submitted,
) -> Response {
    let Some(user_id) = session.user_id().map(str::to_owned) else {
        return session.finish(sign_in_first(&format!(
            "/authn/verify/{}/{}",
            encode(&app_id),
            encode(&challenge)
        )));
    };
    let Some(app) = asking_app(&state, &session, &app_id).await else {
        return unknown_app(&session);
    };
    if field(&fields, "decision") != "allow" {
        return session.finish(see_other(&with_query(&app.redirect_url, "denied=true")));
    }
    match state
        .accounts()
        .issue_access_code(&app_id, &user_id, &challenge)
        .await
    {
        Ok(code) => session.finish(see_other(&with_query(
            &app.redirect_url,
            &format!("access_code={code}"),
        ))),
        Err(e) => {
            let (status, message) = account_message(&e);
            error_page(&session, status, "Could not authorize the app", &message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_query;

    #[test]
    fn redirects_keep_the_apps_own_query() {
        assert_eq!(
            with_query("http://localhost:29363", "denied=true"),
            "http://localhost:29363?denied=true"
        );
        assert_eq!(
            with_query("https://app.example/cb?x=1", "access_code=abc"),
            "https://app.example/cb?x=1&access_code=abc"
        );
    }
}

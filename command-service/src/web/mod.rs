//! The web app: server-rendered pages at `/` for people in a browser.
//!
//! Every page reads and writes through the GraphQL schema, executed in process as the signed-in
//! person ([`Session::gql`]): the same resolvers, the same `domain::policy` checks, the same
//! validation and error codes as the API, so a page can show nothing and do nothing the API
//! would refuse. The only JavaScript is the 3D viewer island (`deploy/viewer/src/app.js`,
//! served from `/_strata/viewer/app.js`).
//!
//! Sessions: signing in issues a token of the web app (`spklwebapp`) and keeps it in the
//! `strata_session` cookie (`HttpOnly`, `SameSite=Lax`, `Secure` behind https). Only the page
//! routes read that cookie: the API keeps authenticating bearer tokens (and the original's
//! `authn` cookie), so a page's cookie cannot be replayed against `/graphql`. Every form carries
//! a CSRF token that must equal the `strata_csrf` cookie (double submit; the cookie is
//! `SameSite=Strict` and unreadable by scripts). No token ever appears in a page URL.

mod account;
mod auth;
mod projects;

use std::fmt::Write as _;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use domain::policy::Principal;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use crate::app::AppState;
use crate::context::RequestContext;

/// The session cookie.
pub const SESSION_COOKIE: &str = "strata_session";
/// The CSRF cookie; forms echo it in the `csrf` field.
pub const CSRF_COOKIE: &str = "strata_csrf";

const CSS: &str = include_str!("web.css");

/// The page routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/_strata/web.css", get(css))
        .merge(auth::routes())
        .merge(projects::routes())
        .merge(account::routes())
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

async fn home(state: axum::extract::State<AppState>, headers: HeaderMap) -> Response {
    let session = Session::read(&state, &headers).await;
    if session.signed_in() {
        see_other("/projects")
    } else {
        see_other("/authn/login")
    }
}

/// A form's fields.
pub type Fields = std::collections::HashMap<String, String>;

/// A field of a form, or "".
pub fn field<'a>(fields: &'a Fields, key: &str) -> &'a str {
    fields.get(key).map(String::as_str).unwrap_or_default()
}

/// A submitted form: the session it came with and its fields, its CSRF token already
/// checked. Every form handler takes one, so none can forget the check (a mismatch answers
/// 403 and the handler never runs).
pub struct Submitted {
    /// Who sent it (with the request context its commands record).
    pub session: Session,
    /// Its fields (form-encoded or JSON).
    pub fields: Fields,
}

impl axum::extract::FromRequest<AppState> for Submitted {
    type Rejection = Response;

    async fn from_request(
        req: axum::extract::Request,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::FromRequestParts as _;
        let (mut parts, body) = req.into_parts();
        let Ok(context) = RequestContext::from_request_parts(&mut parts, state).await;
        let headers = parts.headers.clone();
        let req = axum::extract::Request::from_parts(parts, body);
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let session = Session::with_context(state, &headers, context).await;
        let fields = crate::auth::fields(&headers, &bytes).unwrap_or_default();
        if !session.csrf_ok(fields.get("csrf")) {
            return Err(csrf_refused(&session));
        }
        Ok(Self { session, fields })
    }
}

impl axum::extract::FromRequestParts<AppState> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::read(state, &parts.headers).await)
    }
}

/// Who is looking at a page, and the CSRF token its forms carry.
pub struct Session {
    /// The session token (the `strata_session` cookie), when it is valid.
    token: Option<String>,
    /// Who the token stands for (anonymous without one).
    principal: Principal,
    /// The CSRF token.
    csrf: String,
    /// Whether the CSRF cookie must be (re)set on the answer.
    new_csrf: bool,
    /// Whether a session cookie was sent but is no longer valid (then it is cleared).
    stale: bool,
    /// The request's context, for the commands a form runs.
    context: Option<RequestContext>,
    /// Whether cookies get `Secure`.
    secure: bool,
    /// The signed-in person's name for the page frame, read while the handler runs its own
    /// queries (one round trip fewer on every page).
    name: std::sync::Mutex<Option<NameRead>>,
}

/// The read of the signed-in person's name, under way.
type NameRead = tokio::task::JoinHandle<Result<Option<String>, sqlx::Error>>;

/// A value of a cookie the request carries.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_owned())
}

impl Session {
    /// The session of a request.
    pub async fn read(state: &AppState, headers: &HeaderMap) -> Self {
        Self::for_token(state, headers, cookie(headers, SESSION_COOKIE)).await
    }

    /// The session `token` stands for (CSRF from the request's cookie).
    pub async fn for_token(state: &AppState, headers: &HeaderMap, token: Option<String>) -> Self {
        let secure = state.public_url().starts_with("https://");
        let (csrf, new_csrf) = match cookie(headers, CSRF_COOKIE)
            .filter(|c| c.len() == 32 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            Some(c) => (c, false),
            None => (random_hex(16), true),
        };
        let mut stale = false;
        let (token, principal) = match token {
            Some(token) => match state.accounts().authenticate(&token).await {
                Ok(p) => (Some(token), p),
                Err(crate::accounts::TokenError::Invalid) => {
                    stale = true;
                    (None, Principal::anonymous())
                }
                // Not checkable now: the cookie is kept (a database blip must not sign the
                // person out); this request goes on without it.
                Err(crate::accounts::TokenError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "session token not checkable");
                    (None, Principal::anonymous())
                }
            },
            None => (None, Principal::anonymous()),
        };
        let name = principal.user_id.clone().map(|id| {
            let pool = state.pool().clone();
            tokio::spawn(async move { projections::speckle::query::user_name(&pool, &id).await })
        });
        Self {
            token,
            principal,
            csrf,
            new_csrf,
            stale,
            context: None,
            secure,
            name: std::sync::Mutex::new(name),
        }
    }

    /// The same, with the request context commands record.
    pub async fn with_context(
        state: &AppState,
        headers: &HeaderMap,
        context: RequestContext,
    ) -> Self {
        let mut session = Self::read(state, headers).await;
        session.context = Some(context);
        session
    }

    /// The metadata the commands of this request record.
    pub fn metadata(&self) -> domain::EventMetadata {
        self.context
            .as_ref()
            .map(|c| c.metadata(None, None))
            .unwrap_or_default()
    }

    /// Whether someone is signed in.
    pub fn signed_in(&self) -> bool {
        self.principal.user_id.is_some()
    }

    /// The signed-in user's id.
    pub fn user_id(&self) -> Option<&str> {
        self.principal.user_id.as_deref()
    }

    /// The session token.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether a form's `csrf` field matches the cookie.
    pub fn csrf_ok(&self, field: Option<&String>) -> bool {
        !self.new_csrf
            && field.is_some_and(|f| {
                f.len() == self.csrf.len()
                    && f.bytes()
                        .zip(self.csrf.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            })
    }

    /// The hidden CSRF field of a form.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    fn cookie_attributes(&self) -> &'static str {
        if self.secure {
            "Path=/; HttpOnly; Secure"
        } else {
            "Path=/; HttpOnly"
        }
    }

    /// Adds the cookies this session needs set or cleared to `res`.
    fn finish(&self, mut res: Response) -> Response {
        if self.new_csrf {
            let value = format!(
                "{CSRF_COOKIE}={}; {}; SameSite=Strict",
                self.csrf,
                self.cookie_attributes()
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        if self.stale {
            let value = format!(
                "{SESSION_COOKIE}=; {}; SameSite=Lax; Max-Age=0",
                self.cookie_attributes()
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        res
    }

    /// A `Set-Cookie` value starting a session with `token`.
    fn session_cookie(&self, token: &str, max_age_seconds: u64) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={token}; {}; SameSite=Lax; Max-Age={max_age_seconds}",
            self.cookie_attributes()
        ))
        .ok()
    }

    /// Ends the session in the browser and sends it to `location`.
    fn ended(&self, location: &str) -> Response {
        let mut res = see_other(location);
        if let Some(cookie) = self.cleared_cookie() {
            res.headers_mut().append(header::SET_COOKIE, cookie);
        }
        self.finish(res)
    }

    /// A `Set-Cookie` value ending the session.
    fn cleared_cookie(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}=; {}; SameSite=Lax; Max-Age=0",
            self.cookie_attributes()
        ))
        .ok()
    }

    /// Runs `query` for a page only the signed-in see: someone signed out is sent to sign in
    /// first (and back to `path`), and a failed query answers its error page.
    pub async fn signed_in_query(
        &self,
        state: &AppState,
        path: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, Response> {
        if !self.signed_in() {
            return Err(self.finish(sign_in_first(path)));
        }
        self.gql(state, query, variables)
            .await
            .map_err(|e| gql_error_page(self, &e))
    }

    /// Runs a GraphQL operation as this session's person, in process.
    pub async fn gql(&self, state: &AppState, query: &str, variables: Value) -> Result<Value, Gql> {
        let mut request = async_graphql::Request::new(query)
            .variables(async_graphql::Variables::from_json(variables))
            .data(self.principal.clone());
        crate::graphql::request_data(state, &mut request.data);
        if let Some(context) = &self.context {
            request = request.data(context.clone());
        }
        let response = state.schema().execute(request).await;
        if let Some(error) = response.errors.first() {
            let code = error
                .extensions
                .as_ref()
                .and_then(|e| e.get("code"))
                .and_then(|c| match c {
                    async_graphql::Value::String(s) => Some(s.clone()),
                    async_graphql::Value::Enum(e) => Some(e.to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| "INTERNAL_SERVER_ERROR".to_owned());
            return Err(Gql {
                code,
                message: error.message.clone(),
            });
        }
        response
            .data
            .into_json()
            .map_err(|e| Gql::internal(e.to_string()))
    }
}

/// A refused or failed GraphQL operation, as a page shows it.
#[derive(Debug)]
pub struct Gql {
    /// `extensions.code`.
    pub code: String,
    /// The message.
    pub message: String,
}

impl Gql {
    fn internal(message: String) -> Self {
        Self {
            code: "INTERNAL_SERVER_ERROR".to_owned(),
            message,
        }
    }

    /// The HTTP status a page answers with.
    pub fn status(&self) -> StatusCode {
        match self.code.as_str() {
            "FORBIDDEN" | "STREAM_NOT_FOUND_OR_FORBIDDEN" => StatusCode::FORBIDDEN,
            "UNAUTHORIZED" | "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
            c if c.contains("NOT_FOUND") => StatusCode::NOT_FOUND,
            "BAD_USER_INPUT" | "BAD_REQUEST_ERROR" | "GRAPHQL_VALIDATION_FAILED" => {
                StatusCode::BAD_REQUEST
            }
            c if c.starts_with("INTERNAL") => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// A random lower-case hex string of `bytes` bytes.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// 303 to `location`.
pub fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// The sign-in page for someone who must sign in to see `path`.
pub fn sign_in_first(path: &str) -> Response {
    see_other(&format!("/authn/login?next={}", encode(path)))
}

/// A local path to return to (never another site).
pub fn local_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/projects".to_owned(),
    }
}

/// Percent-encodes a query component.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What a page's frame shows of the signed-in person.
pub struct Frame<'a> {
    /// The title.
    pub title: &'a str,
    /// The session.
    pub session: &'a Session,
    /// The person's name, when signed in.
    pub user_name: Option<&'a str>,
    /// Whether the person is a server admin.
    pub admin: bool,
}

/// A whole page: header with navigation, `main`, the stylesheet.
pub fn layout(frame: &Frame<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) " · strata" }
                link rel="stylesheet" href="/_strata/web.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "strata" }
                    @if frame.session.signed_in() {
                        nav aria-label="Main" {
                            a href="/projects" { "Projects" }
                            a href="/settings/user/developer" { "Tokens" }
                            a href="/settings/user/profile" { "Profile" }
                            @if frame.admin { a href="/settings/server" { "Admin" } }
                        }
                        form.signout method="post" action="/authn/logout" {
                            (frame.session.csrf_field())
                            // Name unknown: shown blank.
                            span.me { (frame.user_name.unwrap_or("")) }
                            button type="submit" { "Sign out" }
                        }
                    } @else {
                        nav aria-label="Main" {
                            a href="/authn/login" { "Sign in" }
                            a href="/authn/register" { "Register" }
                        }
                    }
                }
                main #main { (body) }
            }
        }
    }
}

/// The content security policy of every page but the embed.
pub const PAGE_CSP: &str = "default-src 'self'; img-src 'self' data: blob:; \
     style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; \
     worker-src 'self' blob:; form-action 'self' http: https:; frame-ancestors 'none'; \
     base-uri 'none'";

/// The content security policy of the embed page: any site may frame it.
pub const EMBED_CSP: &str = "default-src 'self'; img-src 'self' data: blob:; \
     style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; \
     worker-src 'self' blob:; frame-ancestors *; base-uri 'none'";

/// Answers `markup` with `status`, the page headers and the session's cookies.
pub fn respond(session: &Session, status: StatusCode, markup: Markup) -> Response {
    respond_with_csp(session, status, markup, PAGE_CSP)
}

fn respond_with_csp(session: &Session, status: StatusCode, markup: Markup, csp: &str) -> Response {
    let mut res = (status, maud_html(markup)).into_response();
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    session.finish(res)
}

fn maud_html(markup: Markup) -> axum::response::Html<String> {
    axum::response::Html(markup.into_string())
}

/// A page in the frame without the person's name or admin link (the signed-out flows and the
/// error pages).
pub fn plain_page(session: &Session, status: StatusCode, title: &str, body: Markup) -> Response {
    let frame = Frame {
        title,
        session,
        user_name: None,
        admin: false,
    };
    respond(session, status, layout(&frame, body))
}

/// A page that only says what went wrong.
pub fn error_page(session: &Session, status: StatusCode, title: &str, message: &str) -> Response {
    plain_page(
        session,
        status,
        title,
        html! {
            h1 { (title) }
            p.error role="alert" { (message) }
            p { a href="/" { "Back to the start" } }
        },
    )
}

/// The page for a refused or failed operation.
pub fn gql_error_page(session: &Session, error: &Gql) -> Response {
    let status = error.status();
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::UNAUTHORIZED => "Sign in needed",
        _ => "Something went wrong",
    };
    error_page(
        session,
        status,
        title,
        &format!("{} ({})", error.message, error.code),
    )
}

/// The refusal of a form whose CSRF token does not match.
pub fn csrf_refused(session: &Session) -> Response {
    error_page(
        session,
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form could not be checked (its security token is missing or old). Go back, \
         reload the page and send it again.",
    )
}

/// A string field of a JSON value, or "".
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The items of a collection field.
pub fn items(v: &Value) -> &[Value] {
    v.get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        // A missing collection has no items.
        .unwrap_or(&[])
}

/// A timestamp as people read it (`2026-12-02 15:04 UTC`).
pub fn when(rfc3339: &str) -> String {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .format(time::macros::format_description!(
                    "[year]-[month]-[day] [hour]:[minute] UTC"
                ))
                .ok()
        })
        .unwrap_or_else(|| rfc3339.to_owned())
}

/// Raw markup, for the rare constant snippet.
pub fn raw(s: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(s)
}

/// A page for the signed-in person (or anyone, where the API allows): the frame around `body`.
pub async fn page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    title: &str,
    body: Markup,
) -> Response {
    let (name, admin) = me(state, session).await;
    respond(
        session,
        status,
        layout(
            &Frame {
                title,
                session,
                user_name: name.as_deref(),
                admin,
            },
            body,
        ),
    )
}

/// The outcome of a form, above the page it leaves the person on.
pub fn flash(message: Option<(&str, bool)>) -> Markup {
    html! {
        @if let Some((m, ok)) = message {
            @if ok { p.ok role="status" { (m) } } @else { p.error role="alert" { (m) } }
        }
    }
}

/// What a page says after a form: the status it answers with and its flash.
#[derive(Clone, Copy)]
pub struct Notice<'a> {
    status: StatusCode,
    message: Option<(&'a str, bool)>,
}

impl<'a> Notice<'a> {
    /// A plain view: 200 and no flash.
    pub const NONE: Notice<'static> = Notice {
        status: StatusCode::OK,
        message: None,
    };

    /// 200, with `message` as good news.
    pub fn done(message: &'a str) -> Self {
        Self {
            status: StatusCode::OK,
            message: Some((message, true)),
        }
    }

    /// The error's status, with its message as bad news.
    pub fn failed(error: &'a Gql) -> Self {
        Self {
            status: error.status(),
            message: Some((&error.message, false)),
        }
    }

    /// What a form's operation came to: `done` with its message, or `failed`.
    pub fn of(outcome: &'a Result<&'a str, Gql>) -> Self {
        match outcome {
            Ok(message) => Self::done(message),
            Err(e) => Self::failed(e),
        }
    }

    /// The status the page answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The flash above the page.
    pub fn flash(&self) -> Markup {
        flash(self.message)
    }
}

/// The name and admin flag of the signed-in person, for the page frame: one read of the
/// users read model (the frame shows only what its owner may see; what the admin link leads
/// to is checked by the admin queries themselves).
pub async fn me(state: &AppState, session: &Session) -> (Option<String>, bool) {
    let Some(user_id) = session.user_id() else {
        return (None, false);
    };
    let admin = session.principal.server_role == Some(domain::policy::ServerRole::Admin);
    let prefetched = session
        .name
        .lock()
        .map(|mut n| n.take())
        .unwrap_or_default();
    let name = match prefetched {
        Some(task) => match task.await {
            Ok(name) => name,
            Err(e) => Err(sqlx::Error::Protocol(format!("reading the name: {e}"))),
        },
        None => projections::speckle::query::user_name(state.pool(), user_id).await,
    };
    match name {
        Ok(name) => (name, admin),
        Err(e) => {
            tracing::warn!(error = %e, "reading the signed-in person's name");
            (None, admin)
        }
    }
}

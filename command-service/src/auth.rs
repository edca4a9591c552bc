//! Who is calling, and the sign-in routes.
//!
//! Tokens are read from `Authorization` (with or without `Bearer `) and the `authn` cookie, as
//! the original does (its `?embedToken=` comes with embed tokens). A token that is present but
//! not valid is refused with 403 even on public resources, like the original.
//!
//! Routes: `POST /auth/local/register?challenge=` and `POST /auth/local/login?challenge=` (form
//! or JSON bodies) answer 302 with an `access_code` for the web app; `POST /auth/token`
//! exchanges `{appId, appSecret, accessCode, challenge}` or `{appId, appSecret, refreshToken}`
//! for `{token, refreshToken}` (refresh tokens rotate: the old one stops working).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::policy::Principal;
use serde::Deserialize;
use serde_json::json;

use crate::accounts::{AccountError, TokenError};
use crate::app::AppState;
use crate::context::RequestContext;
use crate::error::AppError;

/// A credential that could not be taken: invalid (403, as the original), or not checkable
/// now because the credential store is unreachable (the error's own answer: 503 with
/// `Retry-After` when the database is gone), never confused with each other.
#[derive(Debug)]
pub enum InvalidToken {
    /// The token is not valid.
    Invalid,
    /// It could not be checked.
    Unavailable(AppError),
}

impl IntoResponse for InvalidToken {
    fn into_response(self) -> Response {
        match self {
            Self::Invalid => (
                StatusCode::FORBIDDEN,
                Json(json!({"error": "Your token is not valid."})),
            )
                .into_response(),
            Self::Unavailable(e) => e.into_response(),
        }
    }
}

impl From<TokenError> for InvalidToken {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Invalid => Self::Invalid,
            TokenError::Unavailable(cause) => Self::Unavailable(AppError::internal(cause)),
        }
    }
}

/// The token a request carries, if any.
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // A bare token is accepted too.
        let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        if !token.is_empty() {
            return Some(token.to_owned());
        }
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("authn="))
        .find(|t| !t.is_empty())
        .map(str::to_owned)
}

/// The principal of a request: anonymous without a token, refused with an invalid one.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, InvalidToken> {
    match presented_token(headers) {
        None => Ok(Principal::anonymous()),
        Some(token) => Ok(state.accounts().authenticate(&token).await?),
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"message": message.into(), "code": code}})),
    )
        .into_response()
}

/// The auth routes' answers: the original's bare shapes for bad credentials and rejected
/// codes (clients read `err`), the common envelope for everything else.
fn account_error(e: AccountError) -> Response {
    match e {
        AccountError::BadCredentials => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"err": true, "message": "Invalid credentials."})),
        )
            .into_response(),
        AccountError::Unauthorized(m) => {
            (StatusCode::UNAUTHORIZED, Json(json!({"err": m}))).into_response()
        }
        other => crate::error::AppError::from(other).into_response(),
    }
}

/// Reads a form or JSON body into string fields.
pub fn fields(headers: &HeaderMap, body: &Bytes) -> Result<HashMap<String, String>, String> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if is_json {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))?;
        let obj = value.as_object().ok_or("the body must be a JSON object")?;
        Ok(obj
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
            .collect())
    } else {
        serde_urlencoded_pairs(body)
    }
}

/// The string fields of a form or JSON body (as [`fields`] reads them); a body that is
/// neither answers 400.
pub struct BodyFields(pub HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for BodyFields {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        fields(&headers, &body)
            .map(Self)
            .map_err(|m| error(StatusCode::BAD_REQUEST, "BAD_REQUEST_ERROR", m))
    }
}

fn serde_urlencoded_pairs(body: &Bytes) -> Result<HashMap<String, String>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "")); // a key alone: empty value
        out.insert(decode_component(k)?, decode_component(v)?);
    }
    Ok(out)
}

fn decode_component(raw: &str) -> Result<String, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or("bad percent-encoding")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad percent-encoding")?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "the body is not UTF-8".to_owned())
}

/// The `challenge` query parameter of the sign-in routes.
#[derive(Deserialize)]
pub struct ChallengeQuery {
    challenge: Option<String>,
    /// On registration: an invite token (needed on invite-only servers).
    token: Option<String>,
}

/// The sign-in routes' query with its `challenge` present: a request without one answers 400
/// (before its body is read), as the original.
pub struct Challenge {
    challenge: String,
    /// On registration: an invite token (needed on invite-only servers).
    token: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Challenge {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Query(query) = Query::<ChallengeQuery>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Some(challenge) = query.challenge.filter(|c| !c.is_empty()) else {
            return Err((
                StatusCode::BAD_REQUEST,
                "Invalid request: no challenge detected.",
            )
                .into_response());
        };
        Ok(Self {
            challenge,
            token: query.token,
        })
    }
}

/// The answer to a local sign-in or registration of `user`: 302 to the web app with an access
/// code for `challenge`, or why not.
async fn access_code_redirect(
    state: &AppState,
    user: Result<String, AccountError>,
    challenge: &str,
    register: bool,
) -> Response {
    let user_id = match user {
        Ok(id) => id,
        Err(e) => return account_error(e),
    };
    let code = match state
        .accounts()
        .issue_access_code("spklwebapp", &user_id, challenge)
        .await
    {
        Ok(code) => code,
        Err(e) => return account_error(e),
    };
    let origin = state.public_url();
    let location = format!(
        "{origin}/?access_code={code}{}",
        if register { "&register=true" } else { "" }
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `POST /auth/local/register?challenge=`.
pub async fn register(
    State(state): State<AppState>,
    challenge: Challenge,
    context: RequestContext,
    BodyFields(fields): BodyFields,
) -> Response {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let metadata = context.metadata(None, None);
    let company = fields
        .get("company")
        .filter(|c| !c.trim().is_empty())
        .cloned();
    let user = state
        .accounts()
        .register(
            get("email"),
            get("password"),
            get("name"),
            company,
            challenge.token.as_deref(),
            &metadata,
        )
        .await;
    access_code_redirect(&state, user, &challenge.challenge, true).await
}

/// `POST /auth/local/login?challenge=`.
pub async fn login(
    State(state): State<AppState>,
    challenge: Challenge,
    BodyFields(fields): BodyFields,
) -> Response {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let user = state.accounts().login(get("email"), get("password")).await;
    access_code_redirect(&state, user, &challenge.challenge, false).await
}

/// `POST /auth/token`.
pub async fn token(State(state): State<AppState>, BodyFields(fields): BodyFields) -> Response {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let accounts = state.accounts();
    let issued = if let Some(refresh) = fields.get("refreshToken") {
        accounts
            .refresh(get("appId"), get("appSecret"), refresh)
            .await
    } else {
        accounts
            .exchange_code(
                get("appId"),
                get("appSecret"),
                get("accessCode"),
                get("challenge"),
            )
            .await
    };
    match issued {
        Ok((token, refresh_token)) => (
            StatusCode::OK,
            [
                (header::CACHE_CONTROL, "no-cache, no-store"),
                (header::PRAGMA, "no-cache"),
                (header::EXPIRES, "0"),
            ],
            Json(json!({"token": token, "refreshToken": refresh_token})),
        )
            .into_response(),
        Err(e) => account_error(e),
    }
}

/// `POST /auth/pwdreset/request` with `{email}`: mails a reset link. Answers the same whether
/// or not an account has that address.
pub async fn password_reset_request(
    State(state): State<AppState>,
    context: RequestContext,
    BodyFields(fields): BodyFields,
) -> Response {
    let email = fields.get("email").map(String::as_str).unwrap_or_default();
    let metadata = context.metadata(None, None);
    match state
        .accounts()
        .request_password_reset(email, &metadata)
        .await
    {
        Ok(()) => (StatusCode::OK, "Password reset email sent.").into_response(),
        Err(e) => account_error(e),
    }
}

/// `POST /auth/pwdreset/finalize` with `{tokenId, password}` (the link's `t`).
pub async fn password_reset_finalize(
    State(state): State<AppState>,
    context: RequestContext,
    BodyFields(fields): BodyFields,
) -> Response {
    let (Some(token), Some(password)) = (
        fields.get("tokenId").filter(|t| !t.is_empty()),
        fields.get("password").filter(|p| !p.is_empty()),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST_ERROR",
            "Invalid request.",
        );
    };
    let metadata = context.metadata(None, None);
    match state
        .accounts()
        .finalize_password_reset(token, password, &metadata)
        .await
    {
        Ok(()) => (StatusCode::OK, "Password reset. Please log in.").into_response(),
        Err(e) => account_error(e),
    }
}

/// The `GET /auth/accesscode` query.
#[derive(Deserialize)]
pub struct AccessCodeQuery {
    #[serde(rename = "appId")]
    app_id: Option<String>,
    challenge: Option<String>,
}

/// `GET /auth/accesscode?appId=&challenge=`: a signed-in user (token or `authn` cookie)
/// authorizes an app; answers 302 to the app's redirect URL with an `access_code` the app
/// exchanges at `POST /auth/token`.
pub async fn access_code(
    State(state): State<AppState>,
    Query(query): Query<AccessCodeQuery>,
    headers: HeaderMap,
) -> Response {
    let principal = match authenticate(&state, &headers).await {
        Ok(p) => p,
        Err(refused) => return refused.into_response(),
    };
    let Some(user_id) = principal.user_id else {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Sign in to authorize an app.",
        );
    };
    let (Some(app_id), Some(challenge)) = (
        query.app_id.filter(|a| !a.is_empty()),
        query.challenge.filter(|c| !c.is_empty()),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST_ERROR",
            "appId and challenge are required.",
        );
    };
    let app = match state.accounts().app_by_id(&app_id).await {
        Ok(Some(app)) => app,
        Ok(None) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST_ERROR", "Invalid app."),
        Err(e) => return account_error(e),
    };
    match state
        .accounts()
        .issue_access_code(&app.id, &user_id, &challenge)
        .await
    {
        Ok(code) => {
            let joiner = if app.redirect_url.contains('?') {
                '&'
            } else {
                '?'
            };
            let location = format!("{}{joiner}access_code={code}", app.redirect_url);
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        Err(e) => account_error(e),
    }
}

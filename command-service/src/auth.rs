//! Who is calling. Tokens are read from `Authorization: Bearer`, a bare `Authorization` and the
//! `authn` cookie, as the original does (its `?embedToken=` comes with embed tokens); a token
//! that is present but not valid is refused with 403 even on public resources.
//!
//! Token issuing and verification come with accounts (the Accounts issue): until then no
//! token is valid, so requests are anonymous or refused.

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::policy::Principal;

/// A refused credential.
#[derive(Debug)]
pub struct InvalidToken;

impl IntoResponse for InvalidToken {
    fn into_response(self) -> Response {
        (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({"error": "Your token is not valid."})),
        )
            .into_response()
    }
}

/// The token a request carries, if any.
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
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

/// The principal of a request.
pub fn authenticate(headers: &HeaderMap) -> Result<Principal, InvalidToken> {
    match presented_token(headers) {
        None => Ok(Principal::anonymous()),
        Some(_) => Err(InvalidToken),
    }
}

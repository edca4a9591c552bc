//! GraphQL over WebSocket on `/graphql`: both `graphql-ws` (the legacy Apollo
//! subscriptions-transport-ws protocol Speckle clients use, with a `ka` keep-alive) and
//! `graphql-transport-ws`. The token comes in the `connection_init` payload; anonymous
//! connections are refused.

use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::handler::Handler;
use axum::http::header::UPGRADE;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};

use super::subscriptions::SlowSubscriber;
use crate::app::AppState;

/// Whether a request asks for a WebSocket upgrade.
pub fn is_upgrade(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `GET /graphql`: a WebSocket upgrade, or an ordinary GraphQL GET.
pub async fn get(State(state): State<AppState>, request: Request) -> Response {
    if !is_upgrade(request.headers()) {
        return super::handler.call(request, state).await;
    }
    // The first offered subprotocol we speak; none offered means `graphql-ws`, which is
    // what Speckle's clients speak.
    let offered = request
        .headers()
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("graphql-ws")
        .to_owned();
    let Some(protocol) = offered
        .split(',')
        .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
    else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": {
                "message": "unsupported WebSocket subprotocol: use graphql-ws or graphql-transport-ws",
                "code": "BAD_REQUEST_ERROR"}})),
        )
            .into_response();
    };
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(state, socket, protocol))
}

/// The token in a `connection_init` payload: `Authorization`, `authorization`, or either
/// under `headers`, as `Bearer <token>`.
fn token_of(payload: &serde_json::Value) -> Option<String> {
    let value = ["Authorization", "authorization"]
        .iter()
        .find_map(|k| payload.get(*k))
        .or_else(|| {
            let headers = payload.get("headers")?;
            ["Authorization", "authorization"]
                .iter()
                .find_map(|k| headers.get(*k))
        })?
        .as_str()?;
    // A bare token is accepted too.
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// The close code of a `connection_init` refused because its user holds
/// `STRATA_SUBSCRIPTION_MAX_CONNECTIONS_PER_USER` connections already.
pub const TOO_MANY_CONNECTIONS: u16 = 4429;

/// Open subscription connections per user in this process.
static OPEN: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, usize>>> =
    std::sync::LazyLock::new(Default::default);

/// One counted connection of a user; dropping it gives the place back.
struct Counted(String);

impl Counted {
    fn take(user: &str, max: usize) -> Option<Self> {
        let mut open = OPEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(user.to_owned()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self(user.to_owned()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = OPEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.0);
            }
        }
    }
}

/// What a connection holds for as long as it is open: its place in its user's count, or why
/// it was refused one.
#[derive(Clone, Default)]
struct Place(std::sync::Arc<std::sync::Mutex<(Option<Counted>, bool)>>);

impl Place {
    fn refused(&self) -> bool {
        self.0
            .lock()
            .map(|p| p.1)
            .unwrap_or_else(|p| p.into_inner().1)
    }
}

async fn connection_data(
    state: AppState,
    payload: serde_json::Value,
    slow: SlowSubscriber,
    place: Place,
) -> async_graphql::Result<Data> {
    let token = token_of(&payload)
        .ok_or_else(|| async_graphql::Error::new("You need a token to subscribe"))?;
    let principal = state
        .accounts()
        .authenticate(&token)
        .await
        .map_err(|e| match e {
            crate::accounts::TokenError::Invalid => async_graphql::Error::new("Invalid token"),
            crate::accounts::TokenError::Unavailable(_) => async_graphql::Error::new(
                "The database is unavailable: the token cannot be checked now; connect again later",
            ),
        })?;
    if let Some(user) = &principal.user_id {
        let max = state.settings().subscription_max_connections_per_user;
        let mut held = place
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match Counted::take(user, max) {
            Some(counted) => held.0 = Some(counted),
            None => {
                held.1 = true;
                return Err(async_graphql::Error::new(format!(
                    "Too many live connections: a user may hold {max} at once"
                )));
            }
        }
    }
    let mut data = Data::default();
    data.insert(principal);
    data.insert(slow);
    super::request_data(&state, &mut data);
    Ok(data)
}

/// The close code of a subscription while live events cannot reach this process: 1013, "try
/// again later".
pub const REDIS_DOWN_CLOSE: u16 = 1013;

/// Why a connection is closed when its subscriber cannot keep up.
pub const TOO_SLOW: &str = "subscriber too slow: events were dropped";

async fn serve(state: AppState, socket: WebSocket, protocol: WebSocketProtocols) {
    let settings = state.settings();
    let keepalive = Duration::from_secs(settings.subscription_keepalive_seconds.max(1));
    let send_timeout = Duration::from_secs(settings.subscription_send_timeout_seconds.max(1));
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|m| futures::future::ready(m.is_ok()))
        .filter_map(|m| {
            futures::future::ready(match m {
                Ok(Message::Text(t)) => Some(t.as_str().as_bytes().to_vec()),
                Ok(Message::Binary(b)) => Some(b.to_vec()),
                _ => None,
            })
        });
    let slow = SlowSubscriber::default();
    let init_state = state.clone();
    let init_slow = slow.clone();
    // Dropped with this function: the user's place is given back when the connection ends.
    let place = Place::default();
    let init_place = place.clone();
    let mut connection =
        async_graphql::http::WebSocket::new(state.schema().clone(), input, protocol)
            .on_connection_init(move |payload| {
                connection_data(init_state, payload, init_slow, init_place)
            });
    let legacy = protocol == WebSocketProtocols::SubscriptionsTransportWS;
    let mut ticks = tokio::time::interval(keepalive);
    ticks.tick().await;
    let mut acknowledged = false;
    loop {
        let outgoing = tokio::select! {
            message = connection.next() => match message {
                Some(WsMessage::Text(text)) => {
                    acknowledged = true;
                    Message::Text(text.into())
                }
                Some(WsMessage::Close(code, reason)) => Message::Close(Some(CloseFrame {
                    // A refused `connection_init` is 4403 Forbidden in graphql-transport-ws,
                    // or 4429 when its user holds too many connections.
                    code: match code {
                        1002 if !acknowledged && place.refused() => TOO_MANY_CONNECTIONS,
                        1002 if !acknowledged => 4403,
                        code => code,
                    },
                    reason: reason.into(),
                })),
                None => break,
            },
            _ = ticks.tick(), if legacy && acknowledged => Message::Text("{\"type\":\"ka\"}".into()),
            () = slow.0.notified() => Message::Close(Some(CloseFrame {
                code: 4000,
                reason: TOO_SLOW.into(),
            })),
            // Events published while Redis is away never reach this process: say so (1013,
            // try again later) instead of leaving the subscriber waiting for what it missed.
            () = state.hub().lost() => Message::Close(Some(CloseFrame {
                code: REDIS_DOWN_CLOSE,
                reason: crate::realtime::REDIS_DOWN.into(),
            })),
        };
        let closing = matches!(outgoing, Message::Close(_));
        match tokio::time::timeout(send_timeout, sink.send(outgoing)).await {
            Ok(Ok(())) if !closing => {}
            Ok(Ok(())) | Ok(Err(_)) => break,
            Err(_) => {
                tracing::info!("closing a WebSocket whose client stopped reading");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::token_of;
    use serde_json::json;

    #[test]
    fn tokens_come_from_the_places_clients_put_them() {
        assert_eq!(
            token_of(&json!({"Authorization": "Bearer abc"})).as_deref(),
            Some("abc")
        );
        assert_eq!(
            token_of(&json!({"authorization": "Bearer abc"})).as_deref(),
            Some("abc")
        );
        assert_eq!(
            token_of(&json!({"headers": {"Authorization": "Bearer abc"}})).as_deref(),
            Some("abc")
        );
        assert_eq!(token_of(&json!({})), None);
        assert_eq!(token_of(&json!({"Authorization": "Bearer "})), None);
    }
}

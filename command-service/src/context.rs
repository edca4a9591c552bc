//! The context of a request that commands record in event metadata.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use domain::EventMetadata;

/// Header carrying the request id, set by the server when the client sent none.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What a command records about the request that caused it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The request id (`x-request-id`).
    pub request_id: Option<String>,
    /// Client application name: Apollo's `apollographql-client-name`, else the user agent's product.
    pub client_name: Option<String>,
    /// Client application version.
    pub client_version: Option<String>,
}

impl RequestContext {
    /// Reads the context from request headers.
    pub fn from_parts(parts: &Parts) -> Self {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .filter(|v| !v.is_empty())
        };
        // No User-Agent header: neither is known.
        let (agent_name, agent_version) = header("user-agent")
            .and_then(|ua| {
                let product = ua.split_whitespace().next()?.to_owned();
                Some(match product.split_once('/') {
                    Some((n, v)) => (Some(n.to_owned()), Some(v.to_owned())),
                    None => (Some(product), None),
                })
            })
            .unwrap_or((None, None));
        let apollo_name = header("apollographql-client-name");
        let apollo_version = header("apollographql-client-version");
        let from_apollo = apollo_name.is_some();
        Self {
            request_id: header(REQUEST_ID_HEADER),
            client_name: apollo_name.or(agent_name),
            client_version: if from_apollo {
                apollo_version
            } else {
                agent_version
            },
        }
    }

    /// Event metadata for a command made in this request by `actor`.
    pub fn metadata(
        &self,
        actor_user_id: Option<String>,
        token_id: Option<String>,
    ) -> EventMetadata {
        EventMetadata {
            actor_user_id,
            token_id,
            correlation_id: self.request_id.clone(),
            causation_id: None,
            request_id: self.request_id.clone(),
            client_name: self.client_name.clone(),
            client_version: self.client_version.clone(),
            traceparent: None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::builder();
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn request_id_and_client_reach_event_metadata() {
        let ctx = RequestContext::from_parts(&parts(&[
            ("x-request-id", "req-123"),
            ("user-agent", "specklepy/2026.9.1 python/3.11"),
        ]));
        let meta = ctx.metadata(Some("u1".into()), Some("tok1".into()));
        assert_eq!(meta.request_id.as_deref(), Some("req-123"));
        assert_eq!(meta.correlation_id.as_deref(), Some("req-123"));
        assert_eq!(meta.client_name.as_deref(), Some("specklepy"));
        assert_eq!(meta.client_version.as_deref(), Some("2026.9.1"));
        assert_eq!(meta.actor_user_id.as_deref(), Some("u1"));
        assert_eq!(meta.token_id.as_deref(), Some("tok1"));
    }

    #[test]
    fn apollo_client_headers_win_over_user_agent() {
        let ctx = RequestContext::from_parts(&parts(&[
            ("user-agent", "Mozilla/5.0"),
            ("apollographql-client-name", "frontend"),
            ("apollographql-client-version", "2.31.0"),
        ]));
        assert_eq!(ctx.client_name.as_deref(), Some("frontend"));
        assert_eq!(ctx.client_version.as_deref(), Some("2.31.0"));
        assert_eq!(
            RequestContext::from_parts(&parts(&[])),
            RequestContext::default()
        );
    }
}

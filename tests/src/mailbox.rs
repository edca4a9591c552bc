//! Reads the mail the dev stack's SMTP server (maildev) caught, through its HTTP API, so tests
//! can see what a user would find in their inbox.

use std::time::{Duration, Instant};

use serde_json::Value;

/// The SMTP host tests send through (`STRATA_TEST_SMTP_HOST`, `deploy/dev test` sets it).
pub fn smtp_host() -> String {
    std::env::var("STRATA_TEST_SMTP_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned())
}

/// The SMTP port tests send to (`STRATA_TEST_SMTP_PORT`).
pub fn smtp_port() -> u16 {
    std::env::var("STRATA_TEST_SMTP_PORT")
        .expect(
            "STRATA_TEST_SMTP_PORT must point at the test SMTP server (deploy/dev test sets it)",
        )
        .parse()
        .expect("STRATA_TEST_SMTP_PORT is a port")
}

/// One caught mail.
#[derive(Debug, Clone)]
pub struct Mail {
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// The `Message-ID` header (empty when none).
    pub message_id: String,
    /// HTML body.
    pub html: String,
    /// Sender as written.
    pub from: String,
}

/// The catcher's HTTP API (`STRATA_TEST_MAIL_API_URL`).
pub struct Mailbox {
    api: String,
    http: reqwest::Client,
}

impl Mailbox {
    /// The test stack's catcher.
    pub fn from_env() -> Self {
        Self::at(&std::env::var("STRATA_TEST_MAIL_API_URL").expect(
            "STRATA_TEST_MAIL_API_URL must point at maildev's HTTP API (deploy/dev test sets it)",
        ))
    }

    /// The catcher whose HTTP API is at `api` (`http://HOST:PORT`).
    pub fn at(api: &str) -> Self {
        Self {
            api: api.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Every mail caught so far for `to` (tests use addresses of their own, so parallel tests
    /// never see each other's mail).
    pub async fn to(&self, to: &str) -> Vec<Mail> {
        let all: Vec<Value> = self
            .http
            .get(format!("{}/email", self.api))
            .send()
            .await
            .expect("maildev answers")
            .json()
            .await
            .expect("maildev lists mail as JSON");
        all.iter()
            .filter(|m| {
                m["to"]
                    .as_array()
                    .is_some_and(|to_list| to_list.iter().any(|t| t["address"] == to))
            })
            .map(|m| Mail {
                subject: m["subject"].as_str().unwrap_or_default().to_owned(),
                text: m["text"].as_str().unwrap_or_default().to_owned(),
                html: m["html"].as_str().unwrap_or_default().to_owned(),
                message_id: m["headers"]["message-id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                from: m["from"][0]["address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            })
            .collect()
    }

    /// Waits (up to `within`) for the first mail to `to`: delivery is asynchronous, through
    /// the job queue.
    pub async fn wait_for(&self, to: &str, within: Duration) -> Mail {
        let deadline = Instant::now() + within;
        loop {
            if let Some(m) = self.to(to).await.into_iter().next() {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {to} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

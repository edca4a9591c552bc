//! Mail-borne account flows end to end: email verification codes and password reset links,
//! sent by the mail worker through the real SMTP server of the test stack and read back from
//! its inbox API, as a user would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tests::mailbox::{self, Mailbox};
use tests::{RequestExt, TestApp, TestDb, test_settings};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

struct World {
    app: TestApp,
    db: TestDb,
    settings: command_service::config::Settings,
    _stack: tokio_util::sync::DropGuard,
    worker: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

fn mail_settings(db: &TestDb, smtp_port: u16) -> command_service::config::Settings {
    command_service::config::Settings {
        smtp_host: Some(mailbox::smtp_host()),
        smtp_port,
        smtp_tls: "none".into(),
        email_from: "strata-tests@example.com".into(),
        public_url: Some("http://strata.example".into()),
        ..test_settings(db)
    }
}

async fn world() -> World {
    let db = TestDb::new().await;
    let settings = mail_settings(&db, mailbox::smtp_port());
    let (app, stack) = tests::spawn_stack(&db, settings.clone()).await;
    let mut w = World {
        app,
        db,
        settings,
        _stack: stack,
        worker: None,
    };
    w.start_worker(None);
    w
}

impl World {
    fn start_worker(&mut self, smtp_port: Option<u16>) {
        let mut settings = self.settings.clone();
        if let Some(port) = smtp_port {
            settings.smtp_port = port;
        }
        let runner = command_service::app::job_runner(&settings, self.db.pool.clone()).unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(runner.run(cancel.clone()));
        if let Some((old, task)) = self.worker.replace((cancel, task)) {
            old.cancel();
            task.abort();
        }
    }

    async fn gql(&self, token: &str, query: &str, variables: Value) -> Value {
        self.app.gql(token, query, variables).await
    }

    async fn post_json(&self, path: &str, body: Value) -> (u16, String) {
        let res = self
            .app
            .http
            .post(format!("{}{path}", self.app.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    }

    async fn login_status(&self, email: &str, password: &str) -> u16 {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        http.post(format!(
            "{}/auth/local/login?challenge=c",
            self.app.base_url
        ))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
    }
}

fn address(tag: &str) -> String {
    format!("{tag}-{}@example.com", uuid::Uuid::new_v4().simple())
}

fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no six-digit code in {text:?}"))
        .to_owned()
}

/// The token with its last hex digit changed (always to a different one).
fn tampered(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error: {body}"))
}

const ME: &str = "{ activeUser { verified hasPendingVerification } }";
const VERIFY: &str = "mutation($email: String!, $code: String!) { activeUserMutations { emailMutations { verify(input: {email: $email, code: $code}) } } }";

#[tokio::test]
async fn a_mailed_code_verifies_the_address_once_and_never_enters_the_log() {
    let w = world().await;
    let inbox = Mailbox::from_env();
    let email = address("verify");
    let token = tests::register(&w.app.base_url, &email).await;

    let me = w.gql(&token, ME, json!({})).await;
    assert_eq!(
        me["data"]["activeUser"],
        json!({"verified": false, "hasPendingVerification": false})
    );
    let sent = w
        .gql(&token, "mutation { requestVerification }", json!({}))
        .await;
    assert_eq!(sent["data"]["requestVerification"], true, "{sent}");

    let mail = inbox.wait_for(&email, WAIT).await;
    assert_eq!(mail.subject, "Speckle account email verification");
    assert_eq!(mail.from, "strata-tests@example.com");
    let code = code_in(&mail.text);
    assert!(mail.html.contains(&code));
    let me = w.gql(&token, ME, json!({})).await;
    assert_eq!(me["data"]["activeUser"]["hasPendingVerification"], true);

    // Once sent, only the keyed digest stays; the log never saw the code.
    let plain: Option<String> =
        sqlx::query_scalar("SELECT secret FROM email_tokens WHERE purpose = 'verify_email'")
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(plain, None);
    let in_log: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%' OR metadata::text LIKE '%' || $1 || '%'",
    )
    .bind(&code)
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(in_log, 0);

    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let refused = w
        .gql(&token, VERIFY, json!({"email": email, "code": wrong}))
        .await;
    assert_eq!(error_code(&refused), "BAD_REQUEST_ERROR");
    let other_address = w
        .gql(
            &token,
            VERIFY,
            json!({"email": address("someone-else"), "code": code}),
        )
        .await;
    assert_eq!(error_code(&other_address), "BAD_REQUEST_ERROR");

    let verified = w
        .gql(&token, VERIFY, json!({"email": email, "code": code}))
        .await;
    assert_eq!(
        verified["data"]["activeUserMutations"]["emailMutations"]["verify"], true,
        "{verified}"
    );
    let me = w.gql(&token, ME, json!({})).await;
    assert_eq!(
        me["data"]["activeUser"],
        json!({"verified": true, "hasPendingVerification": false})
    );
    let again = w
        .gql(&token, VERIFY, json!({"email": email, "code": code}))
        .await;
    assert_eq!(error_code(&again), "BAD_REQUEST_ERROR");
    let resend = w
        .gql(&token, "mutation { requestVerification }", json!({}))
        .await;
    assert_eq!(error_code(&resend), "BAD_REQUEST_ERROR");
    assert_eq!(inbox.to(&email).await.len(), 1);
}

#[tokio::test]
async fn a_code_survives_only_a_few_wrong_guesses() {
    let w = world().await;
    let inbox = Mailbox::from_env();
    let email = address("guess");
    let token = tests::register(&w.app.base_url, &email).await;
    w.gql(&token, "mutation { requestVerification }", json!({}))
        .await;
    let code = code_in(&inbox.wait_for(&email, WAIT).await.text);
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 7) % 1_000_000);
    for _ in 0..5 {
        let refused = w
            .gql(&token, VERIFY, json!({"email": email, "code": wrong}))
            .await;
        assert_eq!(error_code(&refused), "BAD_REQUEST_ERROR");
    }
    let late = w
        .gql(&token, VERIFY, json!({"email": email, "code": code}))
        .await;
    assert_eq!(error_code(&late), "BAD_REQUEST_ERROR", "the code is spent");
    let me = w.gql(&token, ME, json!({})).await;
    assert_eq!(me["data"]["activeUser"]["verified"], false);
}

#[tokio::test]
async fn a_reset_link_sets_a_new_password_once_and_revokes_every_token() {
    let w = world().await;
    let inbox = Mailbox::from_env();
    let email = address("reset");
    let token = tests::register(&w.app.base_url, &email).await;
    let nobody = address("nobody");

    let (status, body) = w
        .post_json("/auth/pwdreset/request", json!({"email": email}))
        .await;
    assert_eq!((status, body.as_str()), (200, "Password reset email sent."));
    // An unknown address gets the same answer, and nothing is stored or sent for it.
    let (status, body) = w
        .post_json("/auth/pwdreset/request", json!({"email": nobody}))
        .await;
    assert_eq!((status, body.as_str()), (200, "Password reset email sent."));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM email_tokens WHERE email = $1")
        .bind(&nobody)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let (status, _) = w
        .post_json("/auth/pwdreset/request", json!({"email": ""}))
        .await;
    assert_eq!(status, 400);

    let mail = inbox.wait_for(&email, WAIT).await;
    assert_eq!(mail.subject, "Speckle Account Password Reset");
    let link = mail
        .text
        .split_whitespace()
        .find(|w| w.starts_with("http://strata.example/authn/reset-password?token="))
        .unwrap_or_else(|| panic!("no reset link in {:?}", mail.text));
    let reset_token = link.rsplit("token=").next().unwrap().to_owned();

    let (status, body) = w
        .post_json(
            "/auth/pwdreset/finalize",
            json!({"tokenId": reset_token, "password": "short"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = w
        .post_json(
            "/auth/pwdreset/finalize",
            json!({"tokenId": tampered(&reset_token), "password": "a new password"}),
        )
        .await;
    assert_eq!(status, 400, "a tampered link does not work");
    let (status, body) = w
        .post_json(
            "/auth/pwdreset/finalize",
            json!({"tokenId": reset_token, "password": "a new password"}),
        )
        .await;
    assert_eq!(
        (status, body.as_str()),
        (200, "Password reset. Please log in.")
    );

    assert_eq!(w.login_status(&email, "correct horse").await, 401);
    assert_eq!(w.login_status(&email, "a new password").await, 302);
    let old = w
        .app
        .http
        .post(format!("{}/graphql", w.app.base_url))
        .bearer_auth(&token)
        .json(&json!({"query": "{ activeUser { id } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.status(),
        403,
        "tokens issued before the reset are revoked"
    );
    let (status, _) = w
        .post_json(
            "/auth/pwdreset/finalize",
            json!({"tokenId": reset_token, "password": "another password"}),
        )
        .await;
    assert_eq!(status, 400, "a link works once");
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE stream_id LIKE 'user:%' ORDER BY position",
    )
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(
        types,
        [
            "UserCreated",
            "UserPasswordResetRequested",
            "UserPasswordReset"
        ]
    );
}

#[tokio::test]
async fn a_mail_asked_for_while_smtp_is_down_goes_out_once_it_is_back() {
    let mut w = world().await;
    let inbox = Mailbox::from_env();
    // A port nothing listens on: the first worker cannot reach SMTP.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    w.start_worker(Some(closed));
    let email = address("later");
    let token = tests::register(&w.app.base_url, &email).await;
    w.gql(&token, "mutation { requestVerification }", json!({}))
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let failed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id \
             WHERE j.kind = 'email.send' AND a.error IS NOT NULL",
        )
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
        if failed > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no failed attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(inbox.to(&email).await.is_empty());

    w.start_worker(None);
    inbox.wait_for(&email, WAIT).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status: String =
            sqlx::query_scalar("SELECT status FROM jobs WHERE kind = 'email.send'")
                .fetch_one(&w.db.pool)
                .await
                .unwrap();
        if status == "done" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "job stays {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(inbox.to(&email).await.len(), 1, "sent exactly once");
}

#[tokio::test]
async fn without_smtp_the_mail_flows_are_refused_and_advertised_off() {
    let db = TestDb::new().await;
    let (app, _stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let token = tests::register(&app.base_url, &address("off")).await;
    let res: Value = app
        .http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&token)
        .json(&json!({"query": "mutation { requestVerification }"}))
        .json_ok()
        .await;
    assert_eq!(error_code(&res), "BAD_REQUEST_ERROR");
    let info: Value = app
        .http
        .post(format!("{}/graphql", app.base_url))
        .json(&json!({"query": "{ serverInfo { configuration { isEmailEnabled emailVerificationTimeoutMinutes } } }"}))
        .json_ok()
        .await;
    assert_eq!(
        info["data"]["serverInfo"]["configuration"],
        json!({"isEmailEnabled": false, "emailVerificationTimeoutMinutes": 5})
    );
    let res = app
        .http
        .post(format!("{}/auth/pwdreset/request", app.base_url))
        .json(&json!({"email": "x@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

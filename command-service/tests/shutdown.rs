//! Each process kind stops cleanly on SIGTERM within `STRATA_SHUTDOWN_TIMEOUT_SECONDS`: `serve`
//! finishes the request in flight, `work` hands back the job it cannot finish, `project` lets
//! another projector take over at once. The real binary, against a schema of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Seconds the processes get to stop.
const GRACE: u64 = 2;

struct Db {
    url: String,
    pool: PgPool,
}

async fn db() -> Db {
    let base = std::env::var("STRATA_TEST_DATABASE_URL")
        .expect("STRATA_TEST_DATABASE_URL (run through `deploy/dev test`)");
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPoolOptions::new().connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let pool = PgPoolOptions::new().connect(&url).await.unwrap();
    schema::migrate(&pool).await.unwrap();
    projections::install(&pool, &projections::registry())
        .await
        .unwrap();
    Db { url, pool }
}

/// Starts `strata <kind>` on `db` with the test Redis, stderr piped.
fn start(kind: &str, db: &Db, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg(kind);
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("STRATA_DATABASE_URL", &db.url)
        .env(
            "STRATA_REDIS_URL",
            std::env::var("STRATA_TEST_REDIS_URL").expect("STRATA_TEST_REDIS_URL"),
        )
        .env(
            "STRATA_TOKEN_PEPPER",
            "test-pepper-test-pepper-test-pepper-0123",
        )
        .env("STRATA_SHUTDOWN_TIMEOUT_SECONDS", GRACE.to_string())
        .env("STRATA_LOG_FORMAT", "json")
        .env("STRATA_PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("starting strata")
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for `child` to exit; returns its status and how long it took.
async fn exited(child: &mut Child, within: Duration) -> (ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "strata did not exit within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it holds, for at most 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_worker_hands_back_the_job_it_cannot_finish_and_exits_in_time() {
    let db = db().await;
    // An SMTP server that accepts and never greets: the mail job hangs in the handler.
    let smtp = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let smtp_port = smtp.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = smtp.accept().await {
            held.push(socket);
        }
    });
    sqlx::query(
        "INSERT INTO email_tokens (id, purpose, user_id, email, digest, secret, expires_at) \
         VALUES ('0123456789', 'verify_email', 'u000000001', 'ann@example.com', '\\x00', '123456', now() + interval '1 hour')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let job: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (kind, payload, max_attempts) \
         VALUES ('email.send', '{\"requestId\": \"0123456789\"}', 5) RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let mut worker = start(
        "work",
        &db,
        &[
            ("STRATA_SMTP_HOST", "127.0.0.1".into()),
            ("STRATA_SMTP_PORT", smtp_port.to_string()),
            ("STRATA_SMTP_TLS", "none".into()),
        ],
    );
    eventually("the worker to take the job", || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&db.pool)
            .await
            .unwrap()
            == "running"
    })
    .await;
    terminate(&worker);
    let (status, took) = exited(&mut worker, Duration::from_secs(GRACE + 5)).await;
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(GRACE + 2), "{took:?}");
    let (state, locked): (String, Option<String>) =
        sqlx::query_as("SELECT status, locked_by FROM jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), locked), ("pending", None));
    let (outcome, error): (String, String) =
        sqlx::query_as("SELECT outcome, error FROM job_attempts WHERE job_id = $1")
            .bind(job)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(outcome, "abandoned");
    assert!(error.contains("handed back"), "{error}");
}

#[tokio::test]
async fn a_stopping_projector_lets_the_other_take_over_at_once() {
    let db = db().await;
    let log = schema::EventLog::new(db.pool.clone());
    let append = |n: u64| {
        let log = log.clone();
        async move {
            log.append(&schema::AppendRequest {
                stream: domain::StreamId::new("project", &format!("{n:010}")).unwrap(),
                expected: schema::ExpectedVersion::NoStream,
                events: vec![
                    domain::ProjectEvent::ProjectCreated {
                        project_id: format!("{n:010}"),
                        name: format!("p{n}"),
                        description: String::new(),
                        visibility: domain::Visibility::Private,
                        allow_public_comments: false,
                        owner_id: "u000000001".into(),
                    }
                    .to_new_event()
                    .unwrap(),
                ],
                metadata: domain::EventMetadata::default(),
                command_id: None,
            })
            .await
            .unwrap()
        }
    };
    let projected = |name: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM projects WHERE name = $1")
                .bind(name)
                .fetch_one(&pool)
                .await
                .unwrap()
                == 1
        }
    };
    let mut first = start("project", &db, &[]);
    append(1).await;
    eventually("the first projector to apply", || projected("p1")).await;
    let mut second = start("project", &db, &[]);
    terminate(&first);
    let (status, took) = exited(&mut first, Duration::from_secs(GRACE + 5)).await;
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(GRACE + 2), "{took:?}");
    let stopped = Instant::now();
    append(2).await;
    eventually("the second projector to apply", || projected("p2")).await;
    // The standby retries the lock every second.
    assert!(
        stopped.elapsed() < Duration::from_secs(10),
        "{:?}",
        stopped.elapsed()
    );
    terminate(&second);
    let (status, _) = exited(&mut second, Duration::from_secs(GRACE + 5)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_server_finishes_the_request_in_flight_and_takes_no_new_one() {
    let db = db().await;
    let mut server = start("serve", &db, &[]);
    // The bound address is in the JSON log line "API listening".
    let mut stderr = tokio::process::ChildStderr::from_std(server.stderr.take().unwrap()).unwrap();
    let mut seen = String::new();
    let addr = loop {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), stderr.read(&mut buf))
            .await
            .expect("the server logs its address")
            .unwrap();
        assert!(n > 0, "strata serve exited: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(line) = seen.lines().find(|l| l.contains("API listening")) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = stderr.read_to_end(&mut sink).await;
    });
    // A request whose body is still to come when the signal arrives. It asks for `100
    // Continue`, which the server sends once the handler reads the body: proof the request is
    // in flight, not only queued in the kernel.
    assert!(answers_ping(&addr).await, "the probe sees a running server");
    let body = br#"{"query": "{ serverInfo { name } }"}"#;
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket
        .write_all(
            format!(
                "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut interim = Vec::new();
    while !String::from_utf8_lossy(&interim).contains("100 Continue") {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf))
            .await
            .expect("100 Continue")
            .unwrap();
        assert!(n > 0, "closed before 100 Continue");
        interim.extend_from_slice(&buf[..n]);
    }
    terminate(&server);
    // It takes no new request once told to stop.
    eventually("the server to stop taking requests", || async {
        !answers_ping(&addr).await
    })
    .await;
    // The one in flight is answered in full.
    socket.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut response))
        .await
        .expect("the answer")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    let answer = response.split("\r\n\r\n").last().unwrap_or_default();
    assert!(response.contains("HTTP/1.1 200"), "{response}");
    let answer: serde_json::Value = serde_json::from_str(answer).unwrap_or_default();
    assert!(
        answer["data"]["serverInfo"]["name"].is_string(),
        "{response}"
    );
    let (status, took) = exited(&mut server, Duration::from_secs(GRACE + 5)).await;
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(GRACE + 2), "{took:?}");
}

/// Whether a new connection to `addr` gets an answer to `GET /api/ping` within 500 ms.
async fn answers_ping(addr: &str) -> bool {
    let attempt = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await.ok()?;
        socket
            .write_all(b"GET /api/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

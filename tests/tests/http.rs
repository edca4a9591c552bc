//! The API's operational surface over real HTTP: health, readiness, metrics, request ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use command_service::config::Secret;
use tests::{TestApp, TestDb, test_settings};

#[tokio::test]
async fn ready_when_postgres_and_redis_answer() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_settings(&db)).await;
    let res = app.get("/liveness").await;
    assert_eq!(res.status(), 200);
    let res = app.get("/readiness").await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["details"]["postgres"]["ok"], true);
    assert_eq!(body["details"]["redis"]["ok"], true);
    assert_eq!(app.get("/api/ping").await.text().await.unwrap(), "pong");
}

#[tokio::test]
async fn not_ready_when_redis_is_unreachable() {
    let db = TestDb::new().await;
    // A port that was free a moment ago: nothing listens there.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = test_settings(&db);
    settings.redis_url = Some(Secret::new(format!("redis://127.0.0.1:{dead}")));
    settings.readiness_timeout_ms = 300;
    let app = TestApp::spawn(settings).await;
    let res = app.get("/readiness").await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["details"]["postgres"]["ok"], true);
    assert_eq!(body["details"]["redis"]["ok"], false);
    // Liveness does not depend on Redis.
    assert_eq!(app.get("/liveness").await.status(), 200);
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_echoed() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_settings(&db)).await;
    let res = app
        .http
        .get(format!("{}/liveness", app.base_url))
        .header("x-request-id", "my-request-7")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "my-request-7");
    let res = app.get("/liveness").await;
    let made = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&made).unwrap().get_version_num(), 4);
    assert_eq!(
        res.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_settings(&db)).await;
    let res = app.get("/no/such/thing").await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NOT_FOUND_ERROR");
}

#[tokio::test]
async fn metrics_count_requests_and_expose_the_read_horizon() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(test_settings(&db)).await;
    app.get("/liveness").await;
    // A transaction holding events open: they are stored but not yet readable.
    let log = schema::EventLog::new(db.pool.clone());
    let mut tx = db.pool.begin().await.unwrap();
    let request = schema::AppendRequest {
        stream: domain::StreamId::new("project", "held").unwrap(),
        expected: schema::ExpectedVersion::Any,
        events: vec![domain::NewEvent {
            event_type: "Held".into(),
            schema_version: 1,
            payload: serde_json::json!({}),
        }],
        metadata: domain::EventMetadata::default(),
        command_id: None,
    };
    log.append_on(&mut tx, &request).await.unwrap();
    // A later transaction commits while the first is open: its event is stored but held back.
    let other_stream = schema::AppendRequest {
        stream: domain::StreamId::new("project", "later").unwrap(),
        ..request.clone()
    };
    let later = log.append(&other_stream).await.unwrap();
    assert!(
        log.read_all(schema::LogCursor::START, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let text = app.get("/metrics").await.text().await.unwrap();
    tx.rollback().await.unwrap();
    assert!(
        text.contains(
            r#"strata_http_requests_total{method="GET",route="/liveness",status="200"} 1"#
        ),
        "{text}"
    );
    tests::wait_readable(&log, later.last).await;
    assert!(log.read_all(schema::LogCursor::START, 10).await.unwrap()[0].cursor == later.last);
    // Other tests' transactions may be open too; at least ours is held back.
    let held: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(r#"strata_event_log{measure="held_back_events"} "#))
        .expect("held_back_events gauge")
        .parse()
        .unwrap();
    assert!(held >= 1.0, "{text}");
}

/// A client that trickles a request's head (slowloris) is disconnected once the head deadline
/// passes, while a client that sends its request at once on another connection is served.
#[tokio::test]
async fn a_client_trickling_its_request_head_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::new().await;
    let mut settings = test_settings(&db);
    settings.http_header_read_timeout_seconds = 1;
    let app = TestApp::spawn(settings).await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();

    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /api/ping HTTP/1.1\r\nHost: strata\r\n")
        .await
        .unwrap();
    // Trickle one header line after another, far slower than any real client, until the
    // server hangs up; it must do so long before the trickle would finish.
    let mut closed = false;
    for i in 0..60 {
        let mut buf = [0u8; 512];
        match tokio::time::timeout(std::time::Duration::from_millis(250), slow.read(&mut buf)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => {
                // Hyper answers 408 before closing; whatever it sends, it is not a pong.
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(!text.contains("pong"), "{text}");
            }
            Err(_) => {
                if slow
                    .write_all(format!("X-Trickle-{i}: 1\r\n").as_bytes())
                    .await
                    .is_err()
                {
                    closed = true;
                    break;
                }
            }
        }
    }
    assert!(
        closed,
        "a 15-second trickle outlived a 1-second head deadline"
    );

    let mut quick = tokio::net::TcpStream::connect(&addr).await.unwrap();
    quick
        .write_all(b"GET /api/ping HTTP/1.1\r\nHost: strata\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    quick.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("pong"), "{answer}");
}

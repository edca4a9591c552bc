//! Hostile bodies on every route that reads one: random bytes, random text, random and deeply
//! nested JSON, broken form encodings, multipart with random parts or a closing boundary that
//! never comes, parts labelled gzip holding gzip, truncated gzip or random bytes (the
//! decompression bomb has its own test in `objects.rs`), sent as the owner of a real project. Every answer must be
//! one a client can act on (below 500; a failure of ours would be a 5xx), none may hang, and
//! the server must go on serving. It stands in for fuzzing, at once, the parsers behind every
//! route (issue 20); the seeds are fixed, so a failure names the one input that caused it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tests::{RequestExt, TestDb, test_settings};

/// Every route that reads a request body, with `{p}` for a project of the caller's, `{m}` for
/// one of its models. A route added with a POST handler and not listed here fails
/// `every_route_that_takes_a_body_is_swept`.
const ROUTES: &[&str] = &[
    "/graphql",
    "/auth/local/register",
    "/auth/local/login",
    "/auth/token",
    "/auth/pwdreset/request",
    "/auth/pwdreset/finalize",
    "/objects/{p}",
    "/api/diff/{p}",
    "/api/getobjects/{p}",
    "/api/v2/projects/{p}/object-stream",
    "/api/v2/projects/{p}/object-stream/",
    "/api/stream/{p}/blob",
    "/api/stream/{p}/blob/diff",
    "/api/file/ifc/{p}",
    "/api/file/ifc/{p}/{m}",
    "/api/v2/projects/{p}/modelingestion/0123456789/uploads/sign",
    "/api/v2/projects/{p}/modelingestion/0123456789/uploads/complete",
    "/authn/login",
    "/authn/register",
    "/authn/logout",
    "/authn/forgotten-password",
    "/authn/reset-password",
    "/authn/verify/spklwebapp/0123456789",
    "/verify-email",
    "/projects",
    "/projects/{p}",
    "/projects/{p}/collaborators",
    "/projects/{p}/settings",
    "/projects/{p}/settings/webhooks",
    "/projects/{p}/invite",
    "/settings/user/profile",
    "/settings/user/developer",
    "/settings/user/delete",
];

/// One hostile body: what it is, its content type (if any), its bytes.
struct Body {
    kind: &'static str,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; rng.random_range(0..max)];
    rng.fill(&mut bytes[..]);
    bytes
}

/// Text with what breaks naive handling: quotes, escapes, NUL, RTL marks, astral characters.
fn random_text(rng: &mut StdRng, max: usize) -> String {
    const PIECES: &[&str] = &[
        "a",
        "0",
        " ",
        "\"",
        "\\",
        "%",
        "%zz",
        "&",
        "=",
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\u{0}",
        "\u{202e}",
        "🏗",
        "Ω",
        "\r\n",
        "--",
        "null",
        "1e999",
        "-0",
        "__proto__",
    ];
    (0..rng.random_range(0..max))
        .map(|_| PIECES[rng.random_range(0..PIECES.len())])
        .collect()
}

fn random_json(rng: &mut StdRng, depth: usize) -> Value {
    match rng.random_range(0..if depth == 0 { 4 } else { 6 }) {
        0 => Value::Null,
        1 => json!(rng.random::<i64>()),
        2 => json!(random_text(rng, 12)),
        3 => json!(rng.random::<bool>()),
        4 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_json(rng, depth - 1))
                .collect(),
        ),
        _ => {
            // Field names the routes read, so the parsers get past the first check.
            const KEYS: &[&str] = &[
                "query",
                "variables",
                "operationName",
                "email",
                "password",
                "name",
                "accessCode",
                "appId",
                "appSecret",
                "challenge",
                "refreshToken",
                "token",
                "objects",
                "ids",
                "batch",
                "hashes",
                "fileName",
                "fileSize",
                "urls",
                "etags",
                "id",
                "extensions",
            ];
            Value::Object(
                (0..rng.random_range(0..5))
                    .map(|_| {
                        let key = KEYS[rng.random_range(0..KEYS.len())].to_owned();
                        (key, random_json(rng, depth - 1))
                    })
                    .collect(),
            )
        }
    }
}

/// A multipart body of one part with `content_type` and `bytes`.
fn multipart(boundary: &str, name: &str, file: &str, content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    write!(
        body,
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .unwrap();
    body.extend_from_slice(bytes);
    write!(body, "\r\n--{boundary}--\r\n").unwrap();
    body
}

/// The bodies for one seed. The gzip ones are multipart parts labelled `application/gzip`,
/// the one way a request body is decompressed (object batches).
fn bodies(seed: u64) -> Vec<Body> {
    let mut rng = StdRng::seed_from_u64(seed);
    let json_type = || Some("application/json".to_owned());
    let boundary = format!("b{}", rng.random::<u32>());
    let multipart_type = || Some(format!("multipart/form-data; boundary={boundary}"));
    let random = random_bytes(&mut rng, 4096);
    let (name, file, content_type) = (
        random_text(&mut rng, 8),
        random_text(&mut rng, 8),
        random_text(&mut rng, 8),
    );
    let odd_part = multipart(&boundary, &name, &file, &content_type, &random);
    let unclosed = odd_part[..odd_part.len() - boundary.len() - 6].to_vec();
    let zipped = gzip(random_json(&mut rng, 4).to_string().as_bytes());
    let gzip_part =
        |bytes: &[u8]| multipart(&boundary, "batch-1", "batch-1", "application/gzip", bytes);
    let form: String = (0..rng.random_range(1..8))
        .map(|_| format!("{}={}", random_text(&mut rng, 6), random_text(&mut rng, 20)))
        .collect::<Vec<_>>()
        .join("&");
    let body = |kind, content_type, bytes| Body {
        kind,
        content_type,
        bytes,
    };
    vec![
        body("random bytes, no type", None, random.clone()),
        body("random bytes as JSON", json_type(), random.clone()),
        body(
            "random JSON",
            json_type(),
            random_json(&mut rng, 4).to_string().into_bytes(),
        ),
        body(
            "JSON nested 100,000 deep",
            json_type(),
            "[".repeat(100_000).into_bytes(),
        ),
        body(
            "random form",
            Some("application/x-www-form-urlencoded".to_owned()),
            form.into_bytes(),
        ),
        body("multipart, a random part", multipart_type(), odd_part),
        body("multipart that never closes", multipart_type(), unclosed),
        body(
            "multipart, gzip of random JSON",
            multipart_type(),
            gzip_part(&zipped),
        ),
        body(
            "multipart, truncated gzip",
            multipart_type(),
            gzip_part(&zipped[..zipped.len() / 2]),
        ),
        body(
            "multipart, random bytes labelled gzip",
            multipart_type(),
            gzip_part(&random),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_hostile_bodies_with_a_refusal_it_can_explain() {
    let db = TestDb::new().await;
    let (app, _stack) = tests::spawn_stack(&db, test_settings(&db)).await;
    let token = tests::register(&app.base_url, "mallory@example.com").await;
    let (project, model) = app.project_with_model(&token, "main").await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut failures = Vec::new();
    let mut sent = 0;
    // What each route answered, for the log: a sweep that only ever met one early refusal
    // would test nothing behind it.
    let mut answers: std::collections::BTreeMap<String, std::collections::BTreeSet<u16>> =
        Default::default();
    for seed in 0..3 {
        for body in bodies(seed) {
            for route in ROUTES {
                let path = route.replace("{p}", &project).replace("{m}", &model);
                let mut request = http
                    .post(format!("{}{path}", app.base_url))
                    .bearer_auth(&token)
                    .body(body.bytes.clone());
                if let Some(t) = &body.content_type {
                    request = request.header("content-type", t);
                }
                sent += 1;
                match request.send().await {
                    Ok(res) if res.status().is_server_error() => {
                        let status = res.status();
                        let text = res.text().await.unwrap_or_default();
                        failures.push(format!(
                            "{path} ({}, seed {seed}): {status} {}",
                            body.kind,
                            text.chars().take(200).collect::<String>()
                        ));
                    }
                    Ok(res) => {
                        answers
                            .entry((*route).to_owned())
                            .or_default()
                            .insert(res.status().as_u16());
                    }
                    // The server may refuse a body by closing the connection once it has
                    // answered (a 413 before the rest arrives): that is an answer, not a hang.
                    Err(e) if e.is_timeout() => {
                        failures.push(format!("{path} ({}, seed {seed}): hung", body.kind));
                    }
                    Err(_) => {}
                }
            }
        }
    }
    for (route, statuses) in &answers {
        eprintln!("{route}: {statuses:?}");
    }
    assert!(
        failures.is_empty(),
        "{} of {sent} hostile requests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Still serving, and the project is as it was.
    let answer: Value = http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&token)
        .json(&json!({"query": "query($p: String!) { project(id: $p) { models { totalCount } } }", "variables": {"p": project}}))
        .json_ok()
        .await;
    assert_eq!(
        answer["data"]["project"]["models"]["totalCount"], 1,
        "{answer}"
    );
}

/// The path of every `.route(…)` in the server's source that registers a POST handler.
fn posted_routes() -> Vec<String> {
    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../command-service/src");
    rust_files(&src, &mut files);
    let mut routes = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices(".route(") {
            let call = &text[at + ".route(".len()..];
            let mut depth = 1;
            let end = call
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap();
            let call = &call[..end];
            if call.contains("post(") {
                routes.push(call.split('"').nth(1).unwrap().to_owned());
            }
        }
    }
    routes
}

#[test]
fn every_route_that_takes_a_body_is_swept() {
    let covers = |route: &str, listed: &str| {
        let (a, b): (Vec<&str>, Vec<&str>) =
            (route.split('/').collect(), listed.split('/').collect());
        a.len() == b.len() && a.iter().zip(&b).all(|(r, l)| r.starts_with('{') || r == l)
    };
    let routes = posted_routes();
    assert!(routes.len() >= 20, "the scan found only {routes:?}");
    let missing: Vec<&String> = routes
        .iter()
        .filter(|r| !ROUTES.iter().any(|l| covers(r, l)))
        .collect();
    assert!(
        missing.is_empty(),
        "POST routes the hostile-body sweep does not send to (add them to ROUTES): {missing:?}"
    );
}

//! The object API over real HTTP: multipart batches (gzip and plain), download with children,
//! single objects, diff, batch fetch, bad input and permissions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tests::{RequestExt, TestApp, TestDb, test_settings};

struct World {
    app: TestApp,
    http: reqwest::Client,
    token: String,
    project: String,
    _cancel: tokio_util::sync::DropGuard,
}

fn id(n: u32) -> String {
    format!("{n:032x}")
}

async fn world(part_limit: usize) -> (World, TestDb) {
    world_with(|s| s.object_multipart_upload_size_limit_bytes = part_limit).await
}

async fn world_with(tweak: impl FnOnce(&mut command_service::config::Settings)) -> (World, TestDb) {
    let db = TestDb::new().await;
    let mut settings = test_settings(&db);
    tweak(&mut settings);
    let (app, guard) = tests::spawn_stack(&db, settings).await;
    let http = reqwest::Client::new();
    let token = tests::register(&app.base_url, "ada@example.com").await;
    let created: Value = http
        .post(format!("{}/graphql", app.base_url))
        .bearer_auth(&token)
        .json(&json!({"query": "mutation { projectMutations { create(input: {name: \"o\"}) { id } } }"}))
        .json_ok()
        .await;
    let project = created["data"]["projectMutations"]["create"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (
        World {
            app,
            http,
            token,
            project,
            _cancel: guard,
        },
        db,
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

impl World {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app.base_url)
    }

    async fn upload(&self, parts: Vec<(Vec<u8>, &str)>, token: Option<&str>) -> reqwest::Response {
        let mut form = Form::new();
        for (i, (bytes, mime)) in parts.into_iter().enumerate() {
            form = form.part(
                format!("batch-{i}"),
                Part::bytes(bytes)
                    .file_name(format!("batch-{i}"))
                    .mime_str(mime)
                    .unwrap(),
            );
        }
        let mut req = self
            .http
            .post(self.url(&format!("/objects/{}", self.project)))
            .multipart(form);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap()
    }
}

impl World {
    /// Uploads [`tree`] in its two batches.
    async fn upload_tree(&self) {
        let (first, second) = tree();
        let res = self
            .upload(
                vec![
                    (first.into_bytes(), "text/plain"),
                    (second.into_bytes(), "text/plain"),
                ],
                Some(&self.token),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
}

fn tree() -> (String, String) {
    let children: Vec<String> = (1..=3)
        .map(|n| format!(r#"{{"id":"{}","speckle_type":"Base","n":{n}}}"#, id(n)))
        .collect();
    let root = format!(
        r#"{{"id":"{}","speckle_type":"Speckle.Core.Models.Collection","@elements":[{{"referencedId":"{}","speckle_type":"reference"}}],"__closure":{{"{}":1,"{}":1,"{}":2}}}}"#,
        id(100),
        id(1),
        id(1),
        id(2),
        id(3)
    );
    (
        format!("[{root},{}]", children[0]),
        format!("[{},{}]", children[1], children[2]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_round_trip_as_sent() {
    let (w, _db) = world(1 << 20).await;
    let (first, second) = tree();
    let res = w
        .upload(
            vec![
                (gzip(first.as_bytes()), "application/gzip"),
                (second.clone().into_bytes(), "text/plain"),
            ],
            Some(&w.token),
        )
        .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.text().await.unwrap(), "");

    let lines = w
        .http
        .get(w.url(&format!("/objects/{}/{}", w.project, id(100))))
        .bearer_auth(&w.token)
        .header("accept", "text/plain")
        .text_ok()
        .await;
    let ids: Vec<&str> = lines
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(ids, [id(100), id(1), id(2), id(3)]);
    // The JSON comes back exactly as sent.
    assert!(
        lines.contains(&format!(
            "{}\t{}",
            id(2),
            r#"{"id":"00000000000000000000000000000002","speckle_type":"Base","n":2}"#
        )),
        "{lines}"
    );
    let array: Value = w
        .http
        .get(w.url(&format!("/objects/{}/{}", w.project, id(100))))
        .bearer_auth(&w.token)
        .json_ok()
        .await;
    assert_eq!(array.as_array().unwrap().len(), 4);
    let single: Value = w
        .http
        .get(w.url(&format!("/objects/{}/{}/single", w.project, id(3))))
        .bearer_auth(&w.token)
        .json_ok()
        .await;
    assert_eq!(single["n"], 3);
    let missing = w
        .http
        .get(w.url(&format!("/objects/{}/{}/single", w.project, id(9))))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let diff: Value = w
        .http
        .post(w.url(&format!("/api/diff/{}", w.project)))
        .bearer_auth(&w.token)
        .form(&[("objects", json!([id(1), id(9)]).to_string())])
        .json_ok()
        .await;
    assert_eq!(diff, json!({id(1): true, id(9): false}));
    let got = w
        .http
        .post(w.url(&format!("/api/getobjects/{}", w.project)))
        .bearer_auth(&w.token)
        .header("accept", "text/plain")
        .form(&[("objects", json!([id(3), id(9), id(1)]).to_string())])
        .text_ok()
        .await;
    assert_eq!(got.lines().count(), 2, "unknown ids are skipped: {got}");

    // Re-sending is harmless: first write wins.
    let res = w
        .upload(
            vec![(second.into_bytes(), "application/json")],
            Some(&w.token),
        )
        .await;
    assert_eq!(res.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_and_store_nothing() {
    let (w, db) = world(4096).await;
    let cases: Vec<(Vec<u8>, &str, u16)> = vec![
        (b"not gzip at all".to_vec(), "application/gzip", 400),
        (
            br#"{"id":"00000000000000000000000000000001"}"#.to_vec(),
            "text/plain",
            400,
        ),
        (br#"[{"id":"short"}]"#.to_vec(), "text/plain", 400),
        (
            br#"[{"id":"00000000000000000000000000000001"}, {"id":"bad"}]"#.to_vec(),
            "text/plain",
            400,
        ),
        (b"[1, 2".to_vec(), "application/json", 400),
        (
            br#"[{"id":"00000000000000000000000000000001"}]"#.to_vec(),
            "image/png",
            400,
        ),
        (
            format!(r#"[{{"id":"{}","pad":"{}"}}]"#, id(5), "x".repeat(5000)).into_bytes(),
            "text/plain",
            413,
        ),
        // A gzip bomb: small on the wire, over the limit once inflated.
        (
            gzip(format!(r#"[{{"id":"{}","pad":"{}"}}]"#, id(6), " ".repeat(100_000)).as_bytes()),
            "application/gzip",
            413,
        ),
    ];
    for (body, mime, status) in cases {
        let res = w.upload(vec![(body, mime)], Some(&w.token)).await;
        assert_eq!(
            res.status().as_u16(),
            status,
            "{mime}: {}",
            res.text().await.unwrap()
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM objects")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0, "a refused batch stores nothing");

    // Anonymous callers may not write a private project; an unknown project is 404.
    let res = w
        .upload(vec![(br#"[]"#.to_vec(), "text/plain")], None)
        .await;
    assert_eq!(res.status(), 401);
    let res = w
        .http
        .get(w.url(&format!("/objects/{}/{}", w.project, id(1))))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = w
        .http
        .get(w.url(&format!("/objects/ffffffffff/{}", id(1))))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_reads_objects_and_children() {
    let (w, _db) = world(1 << 20).await;
    w.upload_tree().await;
    let query = "query($p: String!, $o: String!, $c: String) { project(id: $p) { object(id: $o) { id speckleType totalChildrenCount data \
                 children(limit: 2, depth: 2, select: [\"n\"], cursor: $c) { totalCount cursor objects { id data } } } } }";
    let page: Value = w
        .http
        .post(w.url("/graphql"))
        .bearer_auth(&w.token)
        .json(&json!({"query": query, "variables": {"p": w.project, "o": id(100)}}))
        .json_ok()
        .await;
    let object = &page["data"]["project"]["object"];
    assert_eq!(
        object["speckleType"], "Speckle.Core.Models.Collection",
        "{page}"
    );
    assert_eq!(object["totalChildrenCount"], 3, "filled from __closure");
    assert_eq!(object["data"]["@elements"][0]["referencedId"], id(1));
    let children = &object["children"];
    assert_eq!(children["totalCount"], 3);
    // depth 2 excludes the grandchild at depth 2; select keeps only `n`.
    assert_eq!(
        children["objects"],
        json!([{"id": id(1), "data": {"n": 1}}, {"id": id(2), "data": {"n": 2}}])
    );
    assert_eq!(children["cursor"], id(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_gzipped_for_clients_that_ask() {
    let (w, _db) = world(1 << 20).await;
    let res = download_of_tree_asking_for_gzip(&w).await;
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let text = gunzip(&res.bytes().await.unwrap());
    assert_eq!(
        serde_json::from_str::<Value>(&text)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_object_stream_masks_and_validates() {
    let (w, _db) = world(1 << 20).await;
    w.upload_tree().await;
    let stream = |body: Value| {
        w.http
            .post(w.url(&format!("/api/v2/projects/{}/object-stream/", w.project)))
            .bearer_auth(&w.token)
            .json(&body)
            .send()
    };
    let text =
        stream(json!({"objectIds": [id(3), id(1), id(9)], "attributeMask": {"include": ["n"]}}))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert_eq!(
        text,
        format!("{}\t{{\"n\":1}}\n{}\t{{\"n\":3}}\n", id(1), id(3))
    );
    let text =
        stream(json!({"objectIds": [id(2)], "attributeMask": {"exclude": ["n", "speckle_type"]}}))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert_eq!(text, format!("{}\t{{\"id\":\"{}\"}}\n", id(2), id(2)));
    for bad in [
        json!({"objectIds": []}),
        json!({"objectIds": [id(1)], "extra": 1}),
        json!({"objectIds": [id(1)], "attributeMask": {"include": []}}),
    ] {
        let res = stream(bad.clone()).await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    }
    let anonymous = w
        .http
        .post(w.url(&format!("/api/v2/projects/{}/object-stream", w.project)))
        .json(&json!({"objectIds": [id(1)]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_closures_stream_in_order_in_both_formats() {
    let (w, _db) = world(16 << 20).await;
    // 3,000 children of about 150 bytes: several download chunks.
    let children: Vec<String> = (1..=3000)
        .map(|n| {
            format!(
                r#"{{"id":"{}","speckle_type":"Base","payload":"{}"}}"#,
                id(n),
                "x".repeat(100)
            )
        })
        .collect();
    let closure: Vec<String> = (1..=3000).map(|n| format!(r#""{}":1"#, id(n))).collect();
    let root = format!(
        r#"{{"id":"{}","speckle_type":"Base","__closure":{{{}}}}}"#,
        id(100_000),
        closure.join(",")
    );
    let batch = format!("[{},{}]", root, children.join(","));
    let res = w
        .upload(vec![(batch.into_bytes(), "text/plain")], Some(&w.token))
        .await;
    assert_eq!(res.status(), 201);

    let url = w.url(&format!("/objects/{}/{}", w.project, id(100_000)));
    let json: Value = w.http.get(&url).bearer_auth(&w.token).json_ok().await;
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 3001);
    assert_eq!(items[0]["id"], id(100_000), "the root first");
    let ids: Vec<&str> = items[1..]
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "then the closure by id");

    let lines = w
        .http
        .get(&url)
        .bearer_auth(&w.token)
        .header("accept", "text/plain")
        .text_ok()
        .await;
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 3001);
    for (line, item) in lines.iter().zip(items) {
        let (line_id, data) = line.split_once('\t').unwrap();
        assert_eq!(line_id, item["id"]);
        assert_eq!(serde_json::from_str::<Value>(data).unwrap(), *item);
    }
}

/// Uploads [`tree`] and downloads it with `Accept-Encoding: gzip`. reqwest here has no gzip
/// feature, so the body comes as it was sent.
async fn download_of_tree_asking_for_gzip(w: &World) -> reqwest::Response {
    w.upload_tree().await;
    w.http
        .get(w.url(&format!("/objects/{}/{}", w.project, id(100))))
        .bearer_auth(&w.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(bytes), &mut text).unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getobjects_streams_each_chunk_by_id_gzipped_or_not() {
    // Small pieces, so the 2,500 objects cross many of them.
    let (w, _db) = world_with(|s| {
        s.object_multipart_upload_size_limit_bytes = 16 << 20;
        s.object_download_chunk_bytes = 4096;
    })
    .await;
    let children: Vec<String> = (1..=2500)
        .map(|n| format!(r#"{{"id":"{}","speckle_type":"Base","n":{n}}}"#, id(n)))
        .collect();
    let res = w
        .upload(
            vec![(
                format!("[{}]", children.join(",")).into_bytes(),
                "text/plain",
            )],
            Some(&w.token),
        )
        .await;
    assert_eq!(res.status(), 201);
    // Newest first, with unknown ids mixed in: 2,600 ids, so three lookup chunks.
    let mut asked: Vec<String> = (1..=2500).rev().map(id).collect();
    for n in 0..100u32 {
        asked.insert(n as usize * 26, id(900_000 + n));
    }
    let get = |encoding: &'static str, accept: &'static str| {
        w.http
            .post(w.url(&format!("/api/getobjects/{}", w.project)))
            .bearer_auth(&w.token)
            .header("accept", accept)
            .header("accept-encoding", encoding)
            .form(&[("objects", serde_json::to_string(&asked).unwrap())])
            .send()
    };
    let plain = get("identity", "text/plain").await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.text().await.unwrap();
    let zipped = get("gzip", "text/plain").await.unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(gunzip(&zipped.bytes().await.unwrap()), plain);
    let got: Vec<&str> = plain
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    let mut expected = Vec::new();
    for chunk in asked.chunks(1000) {
        let mut known: Vec<&str> = chunk
            .iter()
            .map(String::as_str)
            .filter(|i| i < &id(900_000).as_str())
            .collect();
        known.sort_unstable();
        expected.extend(known);
    }
    assert_eq!(got.len(), 2500);
    assert_eq!(
        got, expected,
        "by id within each chunk of 1,000, chunks in request order"
    );
    let json: Value = serde_json::from_str(&gunzip(
        &get("gzip", "application/json")
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    ))
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2500);
    // Nothing found: an empty array, still well-formed.
    let none = w
        .http
        .post(w.url(&format!("/api/getobjects/{}", w.project)))
        .bearer_auth(&w.token)
        .form(&[("objects", serde_json::to_string(&[id(999_999)]).unwrap())])
        .text_ok()
        .await;
    assert_eq!(none, "[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_can_turn_download_gzip_off() {
    let (w, _db) = world_with(|s| s.object_download_gzip = false).await;
    let res = download_of_tree_asking_for_gzip(&w).await;
    // Neither the route nor the router's compression layer encodes it.
    assert!(res.headers().get("content-encoding").is_none());
    let items: Value = res.json().await.unwrap();
    assert_eq!(items.as_array().unwrap().len(), 4);
}

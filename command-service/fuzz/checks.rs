//! What every parser of outside input promises for any bytes at all: one check per parser,
//! each panicking when a promise breaks. The libFuzzer targets beside this file run them
//! (`cargo fuzz run <target>`, see the README), and `tests/tests/parsers.rs` runs them on
//! proptest's inputs in every test run, so the two cannot drift apart.
//!
//! A check splits its input where the parser takes more than one thing (the first byte picks
//! a content type or a file kind), so that one byte string reaches every branch.
#![allow(dead_code, clippy::missing_panics_doc)] // each target uses one check

use std::collections::HashMap;
use std::io::Write;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};

/// Small limits, so the size checks are reached as well as the parsing.
pub const PART_LIMIT: usize = 4096;
/// The largest object a check lets through.
pub const OBJECT_LIMIT: usize = 1024;

/// The JSON array of an object batch (`POST /objects`, after inflating): objects whose JSON is
/// a slice of the input, each with a 32-character id and within the object limit, or a
/// message.
pub fn object_batch(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match command_service::objects::parse_batch(text, OBJECT_LIMIT) {
        Ok(objects) => {
            for object in objects {
                assert_eq!(object.id.len(), 32, "{}", object.id);
                assert!(object.data.len() <= OBJECT_LIMIT);
                assert!(text.contains(object.data.as_str()));
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
}

/// One part of an object upload: the first byte picks its `Content-Type` (and, for gzip,
/// whether the rest is sent as it is or compressed first, so the inflater meets real streams
/// as well as garbage). Objects within the limits, or 400/413 with a message; a gzip part
/// that inflates past the part limit is always 413 (a decompression bomb is refused).
pub fn object_part(data: &[u8]) {
    const TYPES: [&str; 5] = [
        "application/gzip",
        "application/json",
        "text/plain",
        "application/octet-stream",
        "image/png",
    ];
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(pick) % TYPES.len()];
    let compress = content_type == "application/gzip" && pick >= 128;
    let body = if compress { gzip(rest) } else { rest.to_vec() };
    match command_service::objects::decode_part(content_type, body, PART_LIMIT, OBJECT_LIMIT) {
        Ok(objects) => {
            assert!(!(compress && rest.len() > PART_LIMIT), "a bomb got through");
            for object in objects {
                assert_eq!(object.id.len(), 32, "{}", object.id);
                assert!(object.data.len() <= OBJECT_LIMIT);
            }
        }
        Err((status, message)) => {
            assert!(!message.is_empty());
            if compress && rest.len() > PART_LIMIT {
                assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{message}");
            } else {
                assert!(
                    status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
                    "{status} {message}"
                );
            }
        }
    }
}

/// `POST /api/v2/projects/:id/object-stream` (what the viewer loads with): the body before the
/// first NUL byte is the request, what follows a stored object. A read request names at least
/// one id; its mask turns an object into a JSON object holding only the keys it lets through.
pub fn object_stream(data: &[u8]) {
    use command_service::objects::{AttributeMask, ObjectStreamRequest};
    let (body, object) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let request = match ObjectStreamRequest::parse(body) {
        Ok(request) => request,
        Err(message) => return assert!(!message.is_empty()),
    };
    assert!(!request.object_ids().is_empty());
    let (Some(mask), Ok(object)) = (request.attribute_mask(), std::str::from_utf8(object)) else {
        return;
    };
    let Ok(kept) = mask.apply("0123456789abcdef0123456789abcdef", object) else {
        assert!(!matches!(
            serde_json::from_str::<serde_json::Value>(object),
            Ok(serde_json::Value::Object(_))
        ));
        return;
    };
    let Ok(serde_json::Value::Object(kept)) = serde_json::from_str(&kept) else {
        panic!("a masked object is not a JSON object: {kept}");
    };
    let Ok(serde_json::Value::Object(original)) = serde_json::from_str(object) else {
        panic!("a non-object was masked: {object}");
    };
    for (key, value) in &original {
        let listed = match mask {
            AttributeMask::Include(keys) => keys.contains(key),
            AttributeMask::Exclude(keys) => !keys.contains(key),
        };
        assert_eq!(kept.get(key), listed.then_some(value), "key {key:?}");
    }
    assert!(kept.keys().all(|k| original.contains_key(k)));
}

/// The ids a `POST /api/diff` or `/api/getobjects` body asks about: the first byte picks a
/// JSON or a form body. A list of ids, or a message.
pub fn requested_ids(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let headers = content_type(pick);
    match command_service::objects::requested_ids(&headers, &Bytes::copy_from_slice(rest)) {
        Ok(_) => {}
        Err(message) => assert!(!message.is_empty()),
    }
}

/// The auth routes' bodies (`/auth/local/login`, `/auth/token`, password reset, the web
/// forms): the first byte picks JSON or a form. A form's fields, encoded again, read back the
/// same; a JSON body's string fields are exactly its fields.
pub fn auth_form(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let headers = content_type(pick);
    let Ok(fields) = command_service::auth::fields(&headers, &Bytes::copy_from_slice(rest)) else {
        return;
    };
    if pick.is_multiple_of(2) {
        let encoded: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", percent(k), percent(v)))
            .collect();
        let again = command_service::auth::fields(&headers, &Bytes::from(encoded.join("&")));
        assert_eq!(again.as_ref(), Ok(&fields));
    } else {
        let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(rest) else {
            panic!("fields read from a body that is not a JSON object");
        };
        let strings: HashMap<String, String> = object
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_owned())))
            .collect();
        assert_eq!(fields, strings);
    }
}

/// A `POST /graphql` body (the first byte picks JSON, multipart or no content type) through
/// parsing and validation with the default limits: a refusal with a message, or answers
/// whose every error carries `extensions.code`.
pub fn graphql_request(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let content_type = match pick % 3 {
        0 => Some("application/json".to_owned()),
        1 => Some("multipart/form-data; boundary=X".to_owned()),
        _ => None,
    };
    match futures::executor::block_on(command_service::graphql::check_request(content_type, rest)) {
        Ok(answers) => {
            for answer in answers {
                for error in answer["errors"].as_array().into_iter().flatten() {
                    let code = error["extensions"]["code"].as_str();
                    assert!(code.is_some_and(|c| !c.is_empty()), "uncoded: {error}");
                }
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
}

/// A webhook's configuration (`webhookCreate`/`webhookUpdate`): a URL line, then triggers
/// separated by commas. What the checks accept they accept again unchanged, an accepted URL is
/// http(s), and triggers come back distinct and sorted.
pub fn webhook_config(data: &[u8]) {
    use domain::project::webhook::{check_literal_target, check_triggers, check_url};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (url, triggers) = text.split_once('\n').unwrap_or((text, ""));
    if let Ok(url) = check_url(url) {
        assert!(url.starts_with("http://") || url.starts_with("https://"));
        assert_eq!(check_url(&url).ok().as_ref(), Some(&url));
        if let Err(message) = check_literal_target(&url, false) {
            assert!(!message.is_empty());
        }
        // Allowing private targets only ever lets more through.
        assert!(
            check_literal_target(&url, false).is_err() || check_literal_target(&url, true).is_ok()
        );
    }
    let triggers: Vec<String> = triggers.split(',').map(str::to_owned).collect();
    if let Ok(checked) = check_triggers(triggers) {
        assert!(!checked.is_empty());
        assert!(checked.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(check_triggers(checked.clone()).ok(), Some(checked));
    }
}

/// An uploaded file for import, converted as the import job does: the first byte picks the
/// importer. A refusal with a message, or elements whose meshes the viewer can draw: whole
/// vertices of finite coordinates, and faces of at least three vertices that the mesh has
/// (checked here again, apart from `convert`'s own check).
pub fn imported_file(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let importers = workers::import::importers();
    let importer = &importers[usize::from(pick) % importers.len()];
    let name = format!("fuzz.{}", importer.extensions()[0]);
    match workers::import::convert(importer.as_ref(), &name, rest, &HashMap::new()) {
        Ok(imported) => {
            let mut stack: Vec<&workers::import::Element> = imported.elements.iter().collect();
            while let Some(element) = stack.pop() {
                for mesh in &element.meshes {
                    drawable(mesh);
                }
                stack.extend(element.children.iter());
            }
            let (root, _, objects) = workers::import::to_objects(&name, &imported);
            assert_eq!(
                objects.last().map(|o| o.id.as_str()),
                Some(root.as_str()),
                "root last"
            );
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn drawable(mesh: &workers::speckle::Mesh) {
    assert_eq!(mesh.vertices.len() % 3, 0, "a partial vertex");
    assert!(
        mesh.vertices.iter().all(|v| v.is_finite()),
        "a coordinate that is not a finite number"
    );
    let vertices = (mesh.vertices.len() / 3) as u64;
    let mut i = 0;
    while i < mesh.faces.len() {
        let n = usize::try_from(mesh.faces[i]).unwrap_or(usize::MAX);
        assert!(n >= 3, "a face of {n} vertices");
        let indices = mesh
            .faces
            .get(i + 1..i + 1 + n)
            .unwrap_or_else(|| panic!("a face runs past the end"));
        assert!(
            indices.iter().all(|&v| v < vertices),
            "a face names a missing vertex"
        );
        i += 1 + n;
    }
}

fn content_type(pick: u8) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = if pick.is_multiple_of(2) {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
    headers
}

fn percent(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("gzip into memory: {e}"));
    encoder
        .finish()
        .unwrap_or_else(|e| panic!("gzip into memory: {e}"))
}

//! The fuzz targets' checks (`command-service/fuzz/checks.rs`) on proptest's inputs, in every
//! test run: a short stand-in for the timed `cargo fuzz` runs. Each parser gets raw bytes and
//! inputs shaped like what it reads (so the checks reach past the first refusal).

#[path = "../../command-service/fuzz/checks.rs"]
mod checks;

use proptest::collection::vec;
use proptest::prelude::*;

/// A byte picking a branch, then the rest.
fn picked(rest: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), rest).prop_map(|(pick, rest)| {
        let mut data = vec![pick];
        data.extend(rest);
        data
    })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..512)
}

/// Text from a small alphabet of the characters a format is made of.
fn shaped(alphabet: &'static str) -> impl Strategy<Value = Vec<u8>> {
    proptest::string::string_regex(&format!("[{alphabet}]{{0,200}}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .prop_map(String::into_bytes)
}

/// A JSON value of objects, arrays and strings from a few names.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        "(id|speckle_type|__closure|data|a|b|[a-f0-9]{32})".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            vec(
                (
                    "(id|speckle_type|__closure|objectIds|attributeMask|include|exclude|a|b)",
                    inner
                ),
                0..6
            )
            .prop_map(|fields| serde_json::Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn json_bytes() -> impl Strategy<Value = Vec<u8>> {
    json().prop_map(|v| v.to_string().into_bytes())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn object_batch(data in prop_oneof![bytes(), json_bytes(), shaped("\\[\\]{}\":,a-f0-9 ")]) {
        checks::object_batch(&data);
    }

    #[test]
    fn object_part(data in picked(prop_oneof![bytes(), json_bytes(), vec(Just(b' '), 0..9000)])) {
        checks::object_part(&data);
    }

    #[test]
    fn object_stream(request in json_bytes(), object in json_bytes(), raw in bytes()) {
        let mut data = request;
        data.push(0);
        data.extend(object);
        checks::object_stream(&data);
        checks::object_stream(&raw);
    }

    #[test]
    fn requested_ids(data in picked(prop_oneof![bytes(), json_bytes(), shaped("a-z=&%0-9\\[\\]\"+")])) {
        checks::requested_ids(&data);
    }

    #[test]
    fn auth_form(data in picked(prop_oneof![bytes(), json_bytes(), shaped("a-zA-Z=&%0-9+\u{e9}")])) {
        checks::auth_form(&data);
    }

    #[test]
    fn graphql_request(
        data in picked(prop_oneof![
            bytes(),
            json_bytes(),
            shaped("a-zA-Z{}()\\[\\]:$!@ ,\"\\\\"),
            "(query|mutation|subscription)? ?\\{ ?(serverInfo|activeUser|project\\(id: \"x\"\\)|__typename|a: serverInfo)( ?\\{ ?(name|id|version|models \\{ items \\{ id \\} \\})? ?\\})? ?\\}"
                .prop_map(|q| serde_json::json!({"query": q, "variables": {"a": 1}}).to_string().into_bytes()),
        ])
    ) {
        checks::graphql_request(&data);
    }

    #[test]
    fn webhook_config(
        data in prop_oneof![
            bytes(),
            "(https?://)?[a-z0-9.:\\[\\]/ @%-]{0,40}\n(stream_update|commit_create|branch_delete|nope| ,){0,5}"
                .prop_map(String::into_bytes),
        ]
    ) {
        checks::webhook_config(&data);
    }

    #[test]
    fn imported_file(
        data in picked(prop_oneof![
            bytes(),
            shaped("vfo0-9. \n/-"),
            "(solid x\n( ?facet normal 0 0 1\n outer loop\n( vertex [0-9e.-]{1,6} [0-9.-]{1,4} [0-9.]{1,4}\n){3} endloop\n endfacet\n){0,3}endsolid x\n)"
                .prop_map(String::into_bytes),
        ])
    ) {
        checks::imported_file(&data);
    }
}

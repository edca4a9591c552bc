//! Property tests of the object batch parser, standing in for a fuzz target (cargo-fuzz needs
//! a nightly toolchain this project does not use): arbitrary input never panics and is either
//! a batch or a clear error; well-formed batches keep every object's JSON byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use command_service::objects::parse_batch;
use proptest::prelude::*;

fn object_id() -> impl Strategy<Value = String> {
    "[0-9a-f]{32}"
}

fn object() -> impl Strategy<Value = (String, String)> {
    (
        object_id(),
        "[ -~]{0,40}",
        proptest::collection::vec(object_id(), 0..4),
        any::<i32>(),
    )
        .prop_map(|(id, text, closure, n)| {
            let closure: Vec<String> = closure.iter().map(|c| format!("\"{c}\":1")).collect();
            let json = serde_json::json!({"id": id, "speckle_type": "Base", "text": text, "n": n});
            let mut data = json.to_string();
            if !closure.is_empty() {
                data.pop();
                data.push_str(&format!(",\"__closure\":{{{}}}}}", closure.join(",")));
            }
            (id, data)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&input);
        match parse_batch(&text, 1 << 20) {
            Ok(objects) => {
                for o in objects {
                    prop_assert_eq!(o.id.len(), 32);
                }
            }
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }

    #[test]
    fn json_shaped_noise_never_panics(input in r#"\[?(\{("id"|"hash"|"__closure"|"totalChildrenCount"|[a-z]{1,3})?:?("[0-9a-f]{0,33}"|[0-9]{1,3}|null|\{\}|\[\])?,?\}?,?){0,4}\]?"#) {
        let _ = parse_batch(&input, 1 << 20);
    }

    #[test]
    fn well_formed_batches_keep_every_object_exactly(objects in proptest::collection::vec(object(), 1..8)) {
        let batch = format!(
            "[{}]",
            objects.iter().map(|(_, d)| d.as_str()).collect::<Vec<_>>().join(",")
        );
        let parsed = parse_batch(&batch, 1 << 20).unwrap();
        prop_assert_eq!(parsed.len(), objects.len());
        for (p, (id, data)) in parsed.iter().zip(&objects) {
            prop_assert_eq!(&p.id, id);
            prop_assert_eq!(&p.data, data);
        }
    }

    #[test]
    fn objects_over_the_limit_are_refused(object in object()) {
        let (id, data) = object;
        let limit = data.len() - 1;
        let err = parse_batch(&format!("[{data}]"), limit).unwrap_err();
        prop_assert!(err.contains("too large"), "{}", err);
        prop_assert!(err.contains(&id));
    }
}

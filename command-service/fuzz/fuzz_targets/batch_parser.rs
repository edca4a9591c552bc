//! Any bytes a client can send as an object batch: the parser either returns objects whose
//! JSON is a slice of the input, each with a 32-character id, or a message; it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Small, so the size check is exercised too.
const MAX_OBJECT_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match command_service::objects::parse_batch(text, MAX_OBJECT_BYTES) {
        Ok(objects) => {
            for object in objects {
                assert_eq!(object.id.len(), 32);
                assert!(object.data.len() <= MAX_OBJECT_BYTES);
                assert!(text.contains(object.data.as_str()));
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});

//! `checks::graphql_request` on libFuzzer's inputs (the property is documented there).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::graphql_request(data));

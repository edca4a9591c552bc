//! `checks::requested_ids` on libFuzzer's inputs (the property is documented there).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::requested_ids(data));

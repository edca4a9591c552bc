//! `checks::webhook_config` on libFuzzer's inputs (the property is documented there).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::webhook_config(data));

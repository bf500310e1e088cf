#![no_main]
//! cargo-fuzz wrapper; the target is `microbot_fuzz_targets::attachment_http::attachment_http_path`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| microbot_fuzz_targets::attachment_http::attachment_http_path(data));

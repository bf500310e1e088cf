#![no_main]
//! cargo-fuzz wrapper; the target is `microbot_fuzz_targets::server_handler::server_handler`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| microbot_fuzz_targets::server_handler::server_handler(data));

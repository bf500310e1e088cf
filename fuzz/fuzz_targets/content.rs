#![no_main]
//! cargo-fuzz wrapper; the target is `microbot_fuzz_targets::messages::content`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| microbot_fuzz_targets::messages::content(data));

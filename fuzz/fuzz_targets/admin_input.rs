#![no_main]
//! cargo-fuzz wrapper; the target is `microbot_fuzz_targets::admin::admin_input`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| microbot_fuzz_targets::admin::admin_input(data));

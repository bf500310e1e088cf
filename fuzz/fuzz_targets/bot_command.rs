#![no_main]
//! cargo-fuzz wrapper; the target is `microbot_fuzz_targets::bot::bot_command`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| microbot_fuzz_targets::bot::bot_command(data));

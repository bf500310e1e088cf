#![no_main]
//! cargo-fuzz wrapper; the target is `microbot_fuzz_targets::conn_machine::conn_machine`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| microbot_fuzz_targets::conn_machine::conn_machine(data));

#![no_main]
//! cargo-fuzz wrapper; the target is `microbot_fuzz_targets::sealed_sender::sealed_sender_open`.

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| microbot_fuzz_targets::sealed_sender::sealed_sender_open(data)
);

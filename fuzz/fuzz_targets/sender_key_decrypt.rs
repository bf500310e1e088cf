#![no_main]
//! cargo-fuzz wrapper; the target is `microbot_fuzz_targets::sender_key::sender_key_decrypt`.

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| microbot_fuzz_targets::sender_key::sender_key_decrypt(data)
);

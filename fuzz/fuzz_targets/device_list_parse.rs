#![no_main]
//! cargo-fuzz wrapper; the target is `microbot_fuzz_targets::device_list::device_list_parse`.

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| microbot_fuzz_targets::device_list::device_list_parse(data)
);

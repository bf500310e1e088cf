//! The UniFFI binding generator, pinned to this crate's `uniffi` version:
//! `cargo run -p microbot-uniffi --bin uniffi-bindgen -- generate --library
//! target/debug/libmicrobot_uniffi.so --language python --out-dir DIR`
//! (see bindings/README.md).
fn main() {
    uniffi::uniffi_bindgen_main()
}

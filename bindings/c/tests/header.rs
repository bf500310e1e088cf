//! `include/microbot.h` is what cbindgen generates from the crate now:
//! regenerates it in memory and fails when the committed file differs.
//! `MICROBOT_UPDATE_HEADER=1` rewrites the file instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

#[test]
fn committed_header_is_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let bindings = cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .unwrap();
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let path = dir.join("include").join("microbot.h");
    if std::env::var_os("MICROBOT_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run `MICROBOT_UPDATE_HEADER=1 cargo test -p microbot-ffi --test header` and commit it",
        path.display()
    );
    let text = String::from_utf8(generated).unwrap();
    for name in [
        "microbot_account_set_event_callback",
        "microbot_last_error_message",
        "MICROBOT_STATUS_PANIC",
        "MICROBOT_EVENT_KIND_MESSAGE",
    ] {
        assert!(text.contains(name), "{name} missing from the header");
    }
}

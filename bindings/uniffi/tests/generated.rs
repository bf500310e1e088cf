//! The committed Kotlin and Swift bindings (bindings/uniffi/generated) are
//! what this crate's pinned uniffi-bindgen generates now.
//! `MICROBOT_UPDATE_BINDINGS=1` rewrites them instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn committed_kotlin_and_swift_bindings_are_current() {
    for language in ["kotlin", "swift"] {
        let committed = support::repo()
            .join("bindings/uniffi/generated")
            .join(language);
        if std::env::var_os("MICROBOT_UPDATE_BINDINGS").is_some() {
            let _ = std::fs::remove_dir_all(&committed);
            support::generate(language, &committed);
            continue;
        }
        let fresh = tempfile::tempdir().unwrap();
        support::generate(language, fresh.path());
        let (want, have) = (files(fresh.path()), files(&committed));
        assert!(!want.is_empty());
        assert_eq!(
            want.keys().collect::<Vec<_>>(),
            have.keys().collect::<Vec<_>>(),
            "{language}: file list differs; run MICROBOT_UPDATE_BINDINGS=1 cargo test -p microbot-uniffi --test generated"
        );
        for (name, bytes) in &want {
            assert!(
                have[name] == *bytes,
                "{language}/{name} is stale; run MICROBOT_UPDATE_BINDINGS=1 cargo test -p microbot-uniffi --test generated"
            );
        }
    }
}

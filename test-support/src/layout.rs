//! The one-binary layout of a crate's integration tests: every `.rs` file
//! in `tests/` is a module of `tests/main.rs` (Cargo.toml sets
//! `autotests = false`), or a `[[test]]` binary of its own named in
//! Cargo.toml, so no test file is left out silently.

use std::path::Path;

/// Panics naming every file in `<manifest_dir>/tests` that neither
/// `tests/main.rs` declares as a module nor Cargo.toml builds as a
/// `[[test]]` of its own.
pub fn assert_every_test_file_is_built(manifest_dir: &str) {
    let dir = Path::new(manifest_dir);
    let main = std::fs::read_to_string(dir.join("tests/main.rs")).unwrap();
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir.join("tests")).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        let module = format!("\nmod {stem};\n");
        let binary = format!("path = \"tests/{name}\"");
        if stem != "main" && !main.contains(&module) && !manifest.contains(&binary) {
            missing.push(name.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "test files built by nothing: {missing:?}"
    );
}

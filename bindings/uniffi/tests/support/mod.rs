//! Shared by the binding tests: the built library and the pinned generator.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>`, two levels above the test executable.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

/// The cdylib cargo built for this crate.
pub fn library() -> PathBuf {
    let lib = profile_dir().join(format!(
        "{}microbot_uniffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(lib.exists(), "{} is missing", lib.display());
    lib
}

/// Runs this crate's `uniffi-bindgen` for `language` into `out`.
pub fn generate(language: &str, out: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .args(["generate", "--no-format", "--library"])
        .arg(library())
        .args(["--language", language, "--out-dir"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "uniffi-bindgen {language} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

//! The Python package generated from this crate, tested with pytest
//! (bindings/uniffi/python) against a real server on loopback: two
//! clients chat, a group, a file, a listener, typed errors. The venv with
//! pinned pytest comes from scripts/python-env.sh (idempotent).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

use microbot_test_support::BlockingServer;

#[test]
fn pytest_suite_passes_against_a_live_server() {
    let package = tempfile::tempdir().unwrap();
    support::generate("python", package.path());
    let lib = support::library();
    std::fs::copy(&lib, package.path().join(lib.file_name().unwrap())).unwrap();

    let env_script = support::repo().join("scripts").join("python-env.sh");
    let out = Command::new("bash").arg(&env_script).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/python-env.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = String::from_utf8(out.stdout).unwrap();
    let python = python.lines().last().unwrap().trim().to_owned();

    let server = BlockingServer::start();
    let addr = server.addr.to_string();

    let tests = support::repo()
        .join("bindings")
        .join("uniffi")
        .join("python");
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&tests)
        .env("PYTHONPATH", package.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("MICROBOT_TEST_ADDR", &addr)
        .env("MICROBOT_TEST_FINGERPRINT", &server.fingerprint)
        .output()
        .unwrap();
    server.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "pytest failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(!stdout.contains("skipped"), "{stdout}");
}

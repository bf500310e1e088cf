//! The Python package generated from this crate, tested with pytest
//! (bindings/uniffi/python) against a real server on loopback: two
//! clients chat, a group, a file, a listener, typed errors. The venv with
//! pinned pytest comes from scripts/python-env.sh (idempotent).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::Duration;

use microbot_server::{Config, Server};

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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: data.path().to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        totp_skew_steps: 10,
        shutdown_grace_secs: 1,
        rate_register_per_ip: 0,
        rate_login_per_ip: 0,
        rate_login_per_account: 0,
        ..Config::default()
    };
    let (addr, fingerprint, handle, task) = runtime.block_on(async {
        let server = Server::bind(config).unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let fingerprint = server.fingerprint().to_owned();
        let (handle, rx) = server.handle();
        let task = tokio::spawn(server.run(rx));
        (addr, fingerprint, handle, task)
    });

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
        .env("MICROBOT_TEST_FINGERPRINT", &fingerprint)
        .output()
        .unwrap();
    handle.shutdown();
    let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
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

//! Attachment interop of the TypeScript SDK (web/sdk) with the Rust CLI
//! through a live server (issue 16): starts a real server in-process on
//! loopback (QUIC and its WebSocket on the same port number), then runs
//! `node --import tsx --test web/sdk/test/live_attachment.test.ts`: a
//! TypeScript client over `wss://` (pinned; attachment sockets on
//! `/v1/ws/attachment`, each transfer cut once and resumed) and this
//! package's `microbot` binary over QUIC send each other a 1 MiB file and
//! compare SHA-256 both ways. Skips with a printed reason when node or
//! web/node_modules is missing. (Set-up copied from typescript_interop.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use microbot_server::{Config, Server};

#[test]
fn typescript_client_and_rust_cli_exchange_1_mib_attachments_through_a_live_server() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = repo.join("web");
    if !web.join("node_modules").join("tsx").exists() {
        println!(
            "skipped: {} has no node_modules/tsx (run npm ci in web/)",
            web.display()
        );
        return;
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => {
            println!("skipped: node is not installed");
            return;
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_owned(),
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
        let addr = server.local_addr().unwrap();
        let fingerprint = server.fingerprint().to_owned();
        let (handle, rx) = server.handle();
        let task = tokio::spawn(server.run(rx));
        (addr, fingerprint, handle, task)
    });

    let out = Command::new("node")
        .current_dir(web.join("sdk"))
        .args(["--import", "tsx", "--test", "test/live_attachment.test.ts"])
        .env("MICROBOT_CLI_BIN", env!("CARGO_BIN_EXE_microbot"))
        .env("MICROBOT_SERVER_ADDR", addr.to_string())
        .env("MICROBOT_SERVER_FINGERPRINT", &fingerprint)
        .env("MICROBOT_SERVER_CERT_PEM", dir.path().join("cert.pem"))
        .env_remove("MICROBOT_SERVER_BIN")
        .output()
        .unwrap();
    handle.shutdown();
    let _ = runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node test failed:\n{stdout}\n{stderr}"
    );
    // The node test skips itself when its environment is incomplete: that must not pass here.
    assert!(
        stdout.contains("# pass 1"),
        "the interop test did not run:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("# skipped 0"),
        "the interop test skipped:\n{stdout}\n{stderr}"
    );
}

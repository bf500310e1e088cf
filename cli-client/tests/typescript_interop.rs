//! Interop of the TypeScript SDK (web/sdk) with the Rust CLI through a live
//! server (issue 16). Each test starts a real server in-process on loopback
//! (QUIC and its WebSocket on the same port number) and runs one of the
//! SDK's live node tests against it, which drives a TypeScript client over
//! `wss://` (certificate pinned) and this package's `microbot` binary over
//! QUIC:
//! - `web/sdk/test/live_interop.test.ts`: 1:1 messages both ways and the
//!   same safety number; a group of three (one TypeScript member, two CLI
//!   members) in which each member sends one message and every other member
//!   receives each exactly once;
//! - `web/sdk/test/live_attachment.test.ts`: a 1 MiB file each way
//!   (attachment sockets on `/v1/ws/attachment`, each transfer cut once and
//!   resumed), SHA-256 compared on both sides;
//! - `web/sdk/test/linking_interop.test.ts`: device linking (SPEC.md
//!   §12.14) both ways — `microbot devices link CODE --history 10` links a
//!   TypeScript new device, and a TypeScript existing device links a CLI
//!   `microbot link`; each linked device then chats with a contact and the
//!   account's other device sees its messages.
//!
//! Skips with a printed reason when node or web/node_modules is missing.
//! Builds nothing itself: cargo builds the `microbot` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::TestServer;

#[test]
fn typescript_client_and_rust_cli_chat_through_a_live_server() {
    run_live_node_test("test/live_interop.test.ts", 2);
}

#[test]
fn typescript_client_and_rust_cli_exchange_1_mib_attachments_through_a_live_server() {
    run_live_node_test("test/live_attachment.test.ts", 1);
}

#[test]
fn rust_cli_and_typescript_devices_link_each_other_through_a_live_server() {
    run_live_node_test("test/linking_interop.test.ts", 2);
}

/// Runs the SDK's node test `file` against a fresh server and checks that
/// exactly `tests` tests ran and passed (the node tests skip themselves
/// when their environment is incomplete, which must not pass here).
fn run_live_node_test(file: &str, tests: usize) {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../web");
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

    let server = TestServer::start();
    let out = Command::new("node")
        .current_dir(web.join("sdk"))
        .args(["--import", "tsx", "--test", file])
        .env("MICROBOT_CLI_BIN", env!("CARGO_BIN_EXE_microbot"))
        .env("MICROBOT_SERVER_ADDR", server.addr.to_string())
        .env("MICROBOT_SERVER_FINGERPRINT", &server.fingerprint)
        .env(
            "MICROBOT_SERVER_CERT_PEM",
            server.data_dir().join("cert.pem"),
        )
        .env_remove("MICROBOT_SERVER_BIN")
        .output()
        .unwrap();
    server.stop();

    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{file} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("# pass {tests}")),
        "{file} did not run its {tests} tests:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("# skipped 0"),
        "{file} skipped:\n{stdout}\n{stderr}"
    );
}

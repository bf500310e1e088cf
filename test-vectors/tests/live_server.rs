//! The live-server scenario passes against our server on loopback (a real
//! QUIC connection, a real SQLite file, real TOTP codes), and the runner
//! reports a failure when pinned to the wrong certificate, through the
//! library and through the `microbot-conformance server` command line.

use microbot_server::{Config, Server};
use microbot_test_vectors::live;

/// A reference server on loopback: its address, fingerprint, shutdown
/// handle, task and data directory.
async fn start() -> (
    std::net::SocketAddr,
    String,
    microbot_server::ShutdownHandle,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        ..Config::default()
    };
    let server = Server::bind(config).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    let fingerprint = server.fingerprint().to_owned();
    let (handle, stop) = server.handle();
    let task = tokio::spawn(server.run(stop));
    (addr, fingerprint, handle, task, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_passes_against_the_reference_server() {
    let (addr, fingerprint, handle, task, _dir) = start().await;
    let checks = live::run(addr, &fingerprint).await;
    for check in &checks {
        assert!(check.result.is_ok(), "{}: {:?}", check.name, check.result);
        assert!(!check.skipped, "{} was skipped", check.name);
    }
    assert!(checks.len() >= 15, "{checks:?}");

    let wrong_pin = "00".repeat(32);
    let checks = live::run(addr, &wrong_pin).await;
    assert!(
        checks.iter().any(|c| c.result.is_err()),
        "a wrong certificate pin must fail"
    );

    handle.shutdown();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), task).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_streams_checks_and_exits_by_the_verdict() {
    let (addr, fingerprint, handle, task, _dir) = start().await;
    let wrong_pin = "00".repeat(32);
    // The command line: results streamed, the closing line, exit status 0;
    // pinned to the wrong certificate, a failure, the closing line, status 1.
    // Run again at once, the registration limit of this address now spent:
    // the failure is told in plain words, the code by its protobuf name.
    let spent =
        "FAIL scenario ran to the end: register: received the error ERROR_CODE_RATE_LIMITED";
    for (pin, success, expected) in [
        (fingerprint.clone(), true, "PASS "),
        (fingerprint.clone(), false, spent),
        (wrong_pin, false, "FAIL "),
    ] {
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_microbot-conformance"))
                .args(["server", "--addr", &addr.to_string(), "--cert-sha256", &pin])
                .output()
                .expect("run microbot-conformance server")
        })
        .await
        .expect("join");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.success(), success, "{stdout}");
        assert!(stdout.contains(expected), "{stdout}");
        assert!(
            !stdout.contains("Error {") && !stdout.contains("Some("),
            "{stdout}"
        );
        let last = stdout.lines().last().unwrap_or_default();
        assert!(last.starts_with("conformance: "), "{stdout}");
        if success {
            assert!(last.ends_with(" passed, 0 failed, 0 skipped"), "{stdout}");
            assert!(stdout.lines().filter(|l| l.starts_with("PASS ")).count() >= 15);
        } else {
            assert!(
                stdout.contains("FAIL ") && stdout.contains("NOT CONFORMANT: "),
                "{stdout}"
            );
        }
    }

    handle.shutdown();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), task).await;
}

#[test]
fn a_silent_server_fails_within_the_timeout_with_the_closing_line() {
    // A UDP port that swallows every datagram: no QUIC handshake ever completes.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_microbot-conformance"))
        .args(["server", "--addr", &addr.to_string()])
        .args(["--cert-sha256", &"ab".repeat(32), "--timeout", "1"])
        .output()
        .expect("run microbot-conformance server");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL scenario ran to the end: no answer within 1s"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("conformance: 0 passed, 1 failed, 0 skipped"),
        "{stdout}"
    );
    drop(silent);
}

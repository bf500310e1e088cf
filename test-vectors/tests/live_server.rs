//! The live-server scenario passes against our server on loopback (a real
//! QUIC connection, a real SQLite file, real TOTP codes), and the runner
//! reports a failure when pinned to the wrong certificate.

use microbot_server::{Config, Server};
use microbot_test_vectors::live;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_passes_against_the_reference_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        ..Config::default()
    };
    let server = Server::bind(config).expect("bind");
    let addr = server.local_addr().expect("addr");
    let fingerprint = server.fingerprint().to_owned();
    let (handle, stop) = server.handle();
    let task = tokio::spawn(server.run(stop));

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

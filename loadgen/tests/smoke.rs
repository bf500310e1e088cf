//! Smoke test: tiny workloads against an in-process server and relay on
//! loopback; every message must arrive. Keeps the crate honest in CI
//! without measuring anything (figures come from `microbot-loadgen suite`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use microbot_loadgen::driver::DriveConfig;
use microbot_loadgen::provision::{provision, run_prefix};
use microbot_loadgen::relay::Relay;
use microbot_loadgen::wire::{Endpoints, Target};
use microbot_loadgen::{idle, logins, suite};
use microbot_server::{Config, Server};

/// A server configured like the bench server: rate limits off, cheap argon2.
async fn start_server(dir: &std::path::Path) -> (Target, microbot_server::ShutdownHandle) {
    let config = Config {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        totp_skew_steps: 2,
        rate_login_per_ip: 0,
        rate_login_per_account: 0,
        rate_register_per_ip: 0,
        rate_send_per_account: 0,
        max_connections_per_ip: 1000,
        shutdown_grace_secs: 1,
        ..Config::default()
    };
    let server = Server::bind(config).await.unwrap();
    let target = Target {
        addr: server.local_addr().unwrap(),
        fingerprint: server.fingerprint().to_owned(),
    };
    let (handle, rx) = server.handle();
    tokio::spawn(server.run(rx));
    (target, handle)
}

fn small() -> DriveConfig {
    DriveConfig {
        window: 4,
        ack_delay: Duration::from_millis(2),
        deadline: Duration::from_secs(30),
        ..DriveConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_delivers_everything_on_a_tiny_scale() {
    let dir = tempfile::tempdir().unwrap();
    let (target, shutdown) = start_server(dir.path()).await;
    let endpoints = Arc::new(Endpoints::new(&target, 2).unwrap());
    let devices = provision(&endpoints, &run_prefix(), 6, 3).await.unwrap();
    assert_eq!(devices.len(), 6);

    // (a) pairs, saturation and offered rate.
    let pairs = &devices[..4];
    let sat = suite::pairs_on_server(&endpoints, pairs, 25, &small())
        .await
        .unwrap();
    assert!(sat.complete(), "{sat:?}");
    assert_eq!(sat.delivered, 100);
    assert_eq!(sat.latency.len(), 100);
    let paced = DriveConfig {
        rate: Some(400.0),
        ..small()
    };
    let r = suite::pairs_on_server(&endpoints, pairs, 10, &paced)
        .await
        .unwrap();
    assert!(r.complete() && r.delivered == 40, "{r:?}");
    // 10 messages per device at 100/s per device take at least 90 ms.
    assert!(r.elapsed >= Duration::from_millis(90), "{:?}", r.elapsed);

    // (b) fan-out: 3 group messages from 2 senders to a group of 6.
    let g = suite::fanout_on_server(&endpoints, &devices, 3, 2, &small())
        .await
        .unwrap();
    assert!(g.complete(), "{g:?}");
    assert_eq!(g.sent_ok, 3);
    assert_eq!(g.delivered, 15);

    // (c) idle connections (no pid in-process: no RSS).
    let i = idle::run(&endpoints, &devices, 12, 4, None, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(i.connections, 12);
    assert!(i.per_connection().is_none());

    // (d) logins.
    let l = logins::run(&endpoints, &devices, 20, 4).await.unwrap();
    assert_eq!((l.logins, l.failures), (20, 0), "{:?}", l.first_error);

    endpoints.close().await;
    shutdown.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_floor_relays_every_frame() {
    let relay = Relay::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let target = relay.target().clone();
    let closer = relay.closer();
    tokio::spawn(relay.run());
    let r = suite::pairs_on_relay(&target, 4, 50, &small())
        .await
        .unwrap();
    assert!(r.complete(), "{r:?}");
    assert_eq!(r.delivered, 200);
    // Its group is every connection: 3 messages to 5 other members.
    let (g, _) = suite::fanout_on_relay(&target, None, 6, 3, 2, &small())
        .await
        .unwrap();
    assert!(g.complete(), "{g:?}");
    assert_eq!((g.sent_ok, g.delivered), (3, 15));
    closer.close(0u32.into(), b"done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_pairs_deliver_encrypted_texts() {
    let dir = tempfile::tempdir().unwrap();
    let (target, shutdown) = start_server(dir.path()).await;
    // Over QUIC and over the WebSocket binding (`pairs --transport ws`).
    for transport in [
        microbot_client::Transport::Quic,
        microbot_client::Transport::WebSocket,
    ] {
        let r = microbot_loadgen::sdk::run_pairs(&target, transport, 2, 5, &small())
            .await
            .unwrap();
        assert!(r.complete(), "{transport:?}: {r:?}");
        assert_eq!(r.delivered, 10);
    }
    shutdown.shutdown();
}

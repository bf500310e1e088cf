//! A two-node cluster (PostgreSQL + Redis) loses a node without a word —
//! as a `kill -9` of its host does: its UDP traffic vanishes, nothing is
//! closed — and the real `microbot` binary's one-shot commands from users
//! whose start node it was are served by the other node, every message
//! exactly once (issue 24). Needs `MICROBOT_TEST_POSTGRES` and
//! `MICROBOT_TEST_REDIS` (scripts/services.sh) and `psql`; skipped with a
//! note otherwise.
use crate::common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use microbot_client::config::start_index;
use microbot_server::config::SecretUrl;
use microbot_test_support::now_secs;

/// A fresh PostgreSQL schema (created and dropped with `psql`).
struct Schema {
    admin: String,
    name: String,
    url: String,
}

impl Schema {
    fn new(admin: &str) -> Option<Self> {
        let name = format!(
            "cli_cluster_{}_{}",
            std::process::id(),
            now_secs() % 100_000
        );
        let ok = Command::new("psql")
            .args([admin, "-q", "-c", &format!("CREATE SCHEMA {name}")])
            .status()
            .ok()?
            .success();
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-c%20search_path%3D{name}");
        ok.then(|| Self {
            admin: admin.to_owned(),
            name,
            url,
        })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                &self.admin,
                "-q",
                "-c",
                &format!("DROP SCHEMA {} CASCADE", self.name),
            ])
            .status();
    }
}

/// One node of the cluster on its own runtime: the shared schema and Redis
/// namespace, and the certificate of `cert`'s data directory if given (one
/// certificate for the whole cluster).
fn start_node(schema: &Schema, redis: &str, namespace: &str, cert: Option<&Path>) -> TestServer {
    TestServer::start_with("127.0.0.1:0".parse().unwrap(), |config| {
        config.storage = Some(SecretUrl::new(schema.url.clone()));
        config.storage_pool_size = 4;
        config.redis = Some(SecretUrl::new(redis));
        config.redis_namespace = namespace.to_owned();
        config.cert_pem = cert.map(|d| d.join("cert.pem"));
        config.key_pem = cert.map(|d| d.join("key.pem"));
    })
}

/// A UDP relay in front of `upstream` that forwards while `alive` and then
/// swallows everything, both ways (the host died).
fn relay(upstream: SocketAddr, alive: Arc<AtomicBool>) -> SocketAddr {
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    let back = UdpSocket::bind("127.0.0.1:0").unwrap();
    back.connect(upstream).unwrap();
    let addr = front.local_addr().unwrap();
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let (front2, back2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
    let (alive2, client2) = (Arc::clone(&alive), Arc::clone(&client));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = front.recv_from(&mut buf) {
            *client2.lock().unwrap() = Some(from);
            if alive2.load(Ordering::SeqCst) {
                let _ = back2.send(&buf[..n]);
            }
        }
    });
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        loop {
            let Ok(n) = back.recv(&mut buf) else {
                // ICMP errors surface as recv errors: keep going.
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let to = *client.lock().unwrap();
            if let Some(to) = to
                && alive.load(Ordering::SeqCst)
            {
                let _ = front2.send_to(&buf[..n], to);
            }
        }
    });
    addr
}

fn starting_at_first(prefix: &str, device_id: u64) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|name| start_index(name, device_id, 2) == 0)
        .unwrap()
}

fn texts(cli: &Cli, profile: &str, count: usize) -> Vec<String> {
    let count = count.to_string();
    let out = cli
        .run(
            profile,
            &[
                "recv",
                "--json",
                "--only",
                "message",
                "--count",
                &count,
                "--timeout",
                "40",
            ],
        )
        .ok();
    out.json_lines()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn one_shot_commands_move_to_the_live_node_when_theirs_dies_silently() {
    let (Ok(pg), Ok(redis)) = (
        std::env::var("MICROBOT_TEST_POSTGRES"),
        std::env::var("MICROBOT_TEST_REDIS"),
    ) else {
        eprintln!("MICROBOT_TEST_POSTGRES / MICROBOT_TEST_REDIS not set: cluster test skipped");
        return;
    };
    let Some(schema) = Schema::new(&pg) else {
        eprintln!("psql could not create a schema: cluster test skipped");
        return;
    };
    let namespace = format!("test-cli-cluster-{}", std::process::id());
    let first = start_node(&schema, &redis, &namespace, None);
    let second = start_node(&schema, &redis, &namespace, Some(first.data_dir()));
    assert_eq!(first.fingerprint, second.fingerprint, "one certificate");
    let alive = Arc::new(AtomicBool::new(true));
    let through_first = relay(first.addr, Arc::clone(&alive));

    let live = TestServerRef {
        addr: second.addr,
        fingerprint: second.fingerprint.clone(),
    };
    let mut cli = live.cli();
    cli.server = format!("{through_first},{}", second.addr);
    // Both users start at the node that will die (device ids 1 and 2 of a
    // fresh schema).
    let alice = starting_at_first("alice", 1);
    let bob = starting_at_first("bob", 2);
    cli.register(&alice);
    cli.register(&bob);

    let mut sent = Vec::new();
    for i in 0..3 {
        let text = format!("before {i}");
        cli.run(&alice, &["send", &bob, &text]).ok();
        sent.push(text);
    }
    // The first node's host dies: no close, no answer, ever.
    alive.store(false, Ordering::SeqCst);
    for i in 0..5 {
        let text = format!("after {i}");
        let out = cli.run(&alice, &["send", &bob, &text]);
        assert_eq!(out.code, 0, "send {i} after the node died: {out:#?}");
        sent.push(text);
    }
    let got = texts(&cli, &bob, sent.len());
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for text in &got {
        *counts.entry(text.as_str()).or_default() += 1;
    }
    for text in &sent {
        assert_eq!(
            counts.get(text.as_str()),
            Some(&1),
            "{text} not exactly once: {got:?}"
        );
    }
    assert_eq!(got.len(), sent.len(), "{got:?}");
    // Nothing more is waiting (no duplicate arrives later).
    let out = cli.run(
        &bob,
        &[
            "recv",
            "--json",
            "--only",
            "message",
            "--count",
            "1",
            "--timeout",
            "3",
        ],
    );
    assert_eq!(out.code, 7, "a message arrived twice: {out:#?}");
    drop((first, second));
    drop(schema);
}

/// Enough of a server for [`Cli::new`].
struct TestServerRef {
    addr: SocketAddr,
    fingerprint: String,
}

impl TestServerRef {
    fn cli(&self) -> Cli {
        Cli {
            home: tempfile::tempdir().unwrap(),
            server: self.addr.to_string(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

//! Three `microbot-server` processes on loopback share one PostgreSQL
//! schema and one Redis namespace.
//! Six SDK accounts, each given the list of all three node addresses
//! (SPEC.md §12.1), spread over the nodes by their stable start index and
//! exchange 1:1 and group messages; the node holding the most of them is
//! killed with SIGKILL in the middle of the traffic and its clients move on
//! to the next address of their list by themselves. Every message the
//! senders queued is acknowledged and delivered exactly once to every
//! recipient.
//! Needs `MICROBOT_TEST_POSTGRES` and `MICROBOT_TEST_REDIS` (`.ci/run` sets
//! them); skipped with a note otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::cluster as support;

use std::time::Duration;

use microbot_client::{Conversation, Event, ServerConfig};
use support::{ClusterSpec, Ledger, Node, Schema, services, user, wait_for};

const USERS: usize = 6;
const ROUNDS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_arrive_exactly_once_when_a_node_is_killed() {
    let Some((pg, redis)) = services("cluster") else {
        return;
    };
    let schema = Schema::new(&pg, "cluster");
    let shared = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec {
        storage_url: schema.url.clone(),
        redis_url: redis,
        namespace: format!("test-cluster-{}", support::random_hex(4)),
        attachments: shared.path().to_owned(),
        cert: None,
    };
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start(&mut spec)).collect();
    let pin = nodes[0].fingerprint.clone();
    assert!(
        nodes.iter().all(|n| n.fingerprint == pin),
        "one certificate for the whole cluster"
    );
    let server = ServerConfig::with_addresses(nodes.iter().map(|n| n.addr), &pin).unwrap();

    let mut devices = Vec::new();
    for i in 0..USERS {
        devices.push(user(&server, &format!("user{i}")).await);
    }
    // Which node each device logged in through; the busiest one dies.
    let node_of: Vec<usize> = devices
        .iter()
        .map(|d| {
            let addr = d.account.connected_to().expect("connected");
            nodes.iter().position(|n| n.addr == addr).unwrap()
        })
        .collect();
    let victim = (0..nodes.len())
        .max_by_key(|n| node_of.iter().filter(|m| *m == n).count())
        .unwrap();
    let moved: Vec<usize> = (0..USERS).filter(|i| node_of[*i] == victim).collect();
    assert!(
        moved.len() >= 2,
        "six devices over three nodes: {node_of:?}"
    );
    let survivor = (victim + 1) % nodes.len();
    // A group of everyone, created through node 0.
    let others: Vec<String> = (1..USERS).map(|i| format!("user{i}")).collect();
    let others: Vec<&str> = others.iter().map(String::as_str).collect();
    let group = devices[0]
        .account
        .create_group("all", &others)
        .await
        .unwrap();
    for device in &mut devices[1..] {
        let events = device.events.as_mut().unwrap();
        wait_for(events, Duration::from_secs(30), |e| {
            matches!(e, Event::GroupChanged { group_id, .. } if *group_id == group).then_some(())
        })
        .await;
    }

    // Every device's events are recorded from now on.
    let mut ledger = Ledger::default();
    for device in &mut devices {
        ledger.record(device.events.take().unwrap());
    }

    let group_chat = Conversation::Group(group);
    for round in 0..ROUNDS {
        if round == ROUNDS / 2 {
            // Mid-traffic: the busiest node dies without a goodbye; its
            // clients find the next address of their list.
            nodes[victim].kill();
        }
        for (i, device) in devices.iter().enumerate() {
            let to = (i + 1) % USERS;
            let direct = Conversation::Direct(format!("user{to}"));
            let id = device
                .account
                .send_text(&direct, &format!("direct {i}->{to} #{round}"))
                .unwrap();
            ledger.sent(i, id, [to]);
            if round % 2 == i % 2 {
                let id = device
                    .account
                    .send_text(&group_chat, &format!("group from {i} #{round}"))
                    .unwrap();
                ledger.sent(i, id, (0..USERS).filter(|r| *r != i));
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    ledger
        .assert_exactly_once(Duration::from_secs(90), || {
            format!("node logs:\n{}", nodes[survivor].log())
        })
        .await;
    for &i in &moved {
        assert!(
            ledger.logins(i) >= 1,
            "user{i} logged in again after node {victim} died"
        );
        let now = devices[i].account.connected_to().expect("connected");
        assert_ne!(now, nodes[victim].addr, "user{i} moved to another node");
    }
    assert!(
        nodes[survivor].log().matches("Redis bus linked").count() == 1,
        "node {survivor} kept its Redis link"
    );
    let total = ledger.total_expected();
    assert!(total >= USERS * ROUNDS, "traffic was exchanged ({total})");
    for device in &devices {
        device.account.disconnect().await;
    }
    drop(schema);
}

#[test]
fn backup_and_restore_refuse_a_postgres_configuration() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["backup", "--to", "x.sqlite3"],
        vec!["restore", "--from", "x.sqlite3"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_microbot-server"))
            .args(&args)
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(["--storage", "postgres://u:secret@127.0.0.1:1/db"])
            .env_remove("MICROBOT_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("pg_dump"), "{stderr}");
        assert!(!stderr.contains("secret"), "{stderr}");
    }
}

//! The `microbot` CLI sends sealed (SPEC.md §19) by default to a contact
//! whose profile key it holds: after one identified first message, the
//! reply is stored by the server without a sender, and the recipient's
//! `recv` still names the sender (from the certificate).
use crate::common;

use common::*;
use microbot_server::testing::storage::sqlite::SqliteStorage;
use microbot_server::testing::storage::{FetchPage, Storage as _};

/// `(sender_username, sender_device_id)` of every queued envelope.
fn queued_senders(server: &TestServer) -> Vec<(String, u64)> {
    let storage = SqliteStorage::open(&server.data_dir().join("microbot.sqlite3")).unwrap();
    let page = FetchPage {
        limit: 100,
        max_bytes: 1 << 20,
        overhead: 0,
        now_ms: 0,
    };
    // The storage is async; this synchronous test drives it on a
    // current-thread runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    (1..=8)
        .flat_map(|device| {
            runtime
                .block_on(storage.fetch_envelopes(device, 0, page))
                .unwrap()
                .0
        })
        .map(|e| (e.sender_username, e.sender_device_id))
        .collect()
}

fn recv_one(cli: &Cli, profile: &str) -> serde_json::Value {
    cli.recv(profile, "message", 1).remove(0)
}

#[test]
fn the_cli_replies_to_a_contact_sealed_by_default() {
    let server = TestServer::start();
    let cli = Cli::new(&server);
    cli.register("alice");
    cli.register("bob");

    // First contact: identified, and it carries Alice's profile key.
    cli.run("alice", &["send", "bob", "hello bob"]).ok();
    assert_eq!(recv_one(&cli, "bob")["from"], "alice");

    // Bob's reply waits in Alice's queue: no sender stored with it.
    cli.run("bob", &["send", "alice", "sealed reply"]).ok();
    let queued = queued_senders(&server);
    assert!(
        queued
            .iter()
            .any(|(name, device)| name.is_empty() && *device == 0),
        "{queued:?}"
    );
    assert!(
        queued.iter().all(|(name, _)| name != "bob"),
        "a queued envelope names Bob: {queued:?}"
    );

    let got = recv_one(&cli, "alice");
    assert_eq!(got["from"], "bob");
    assert_eq!(got["text"], "sealed reply");
}

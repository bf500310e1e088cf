//! Sealed sender (SPEC.md §19) through the SDK against a real server: the
//! first message to a contact is identified and carries the profile key;
//! from then on the contact's replies reach us sealed, the server stores
//! them without any sender, and we learn the sender from the certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::*;
use microbot_client::{Conversation, IdentitySource};

/// `(sender_username, sender_device_id)` of every envelope row the server
/// stores, read from its SQLite file.
fn stored_senders(server: &TestServer) -> Vec<(String, i64)> {
    let db = rusqlite::Connection::open(server.dir.path().join("microbot.sqlite3")).unwrap();
    let mut stmt = db
        .prepare("SELECT sender_username, sender_device_id FROM envelopes")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_to_a_contact_are_sealed_and_stored_without_a_sender() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    // Alice keeps what reaches her unacknowledged, so the server's rows stay
    // for the scan below.
    let mut keep = fast_config();
    microbot_client::fault_injection::skip_acks(&mut keep);
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, keep).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;

    // First contact: identified (Bob has no profile key of Alice's yet).
    let to_bob = Conversation::Direct("bob".into());
    alice.account.send_text(&to_bob, "hello bob").unwrap();
    let first = next_text(&mut bob.events).await;
    assert_eq!(first.author, "alice");

    // Bob now holds Alice's profile key: his reply goes sealed.
    let to_alice = Conversation::Direct("alice".into());
    let id = bob.account.send_text(&to_alice, "sealed hello").unwrap();
    let reply = next_text(&mut alice.events).await;
    assert_eq!(reply.message_id, id);
    assert_eq!(reply.author, "bob", "the sender comes from the certificate");
    assert_eq!(reply.text, "sealed hello");

    // Every envelope queued for Alice's device (Bob's reply, and his
    // delivery receipt for her message) names no sender.
    let rows = stored_senders(&server);
    assert!(!rows.is_empty(), "Alice acknowledged nothing");
    for (username, device) in &rows {
        assert_eq!(
            (username.as_str(), *device),
            ("", 0),
            "a stored sender: {rows:?}"
        );
    }
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sealed_sender_off_the_server_stores_the_sender() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut keep = fast_config();
    microbot_client::fault_injection::skip_acks(&mut keep);
    let mut identified = fast_config();
    identified.sealed_sender = false;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, keep).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, identified).await;
    alice
        .account
        .send_text(&Conversation::Direct("bob".into()), "hello bob")
        .unwrap();
    next_text(&mut bob.events).await;
    bob.account
        .send_text(&Conversation::Direct("alice".into()), "identified")
        .unwrap();
    assert_eq!(next_text(&mut alice.events).await.author, "bob");
    // The scan above can see senders: here they are stored.
    let rows = stored_senders(&server);
    assert!(
        rows.iter().any(|(username, _)| username == "bob"),
        "{rows:?}"
    );
    no_text_within(&mut alice.events, Duration::from_millis(100)).await;
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_message_that_waited_longer_than_its_certificate_lives_still_opens() {
    // Certificates live 2 s; Bob stays offline for longer than that.
    let server = TestServer::start_tweaked(
        tempfile::tempdir().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        |c| c.sender_certificate_ttl_secs = 2,
    )
    .await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_alice = Conversation::Direct("alice".into());
    let to_bob = Conversation::Direct("bob".into());
    // Profile keys both ways, so Alice's next message to Bob goes sealed.
    bob.account.send_text(&to_alice, "hi alice").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "hi alice");
    alice.account.send_text(&to_bob, "hi bob").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "hi bob");

    bob.account.disconnect().await;
    let away = alice
        .account
        .send_text(&to_bob, "while you were away")
        .unwrap();
    wait_for(&mut alice.events, |e| {
        matches!(e, microbot_client::Event::Sent { message_id, .. } if *message_id == away)
            .then_some(())
    })
    .await;
    let rows = stored_senders(&server);
    assert!(rows.contains(&(String::new(), 0)), "not sealed: {rows:?}");
    // Past the certificate's lifetime before Bob fetches it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    bob.account.connect();
    let got = next_text(&mut bob.events).await;
    assert_eq!(got.author, "alice");
    assert_eq!(got.text, "while you were away");
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_between_contacts_are_sealed_per_member() {
    let server = TestServer::start().await;
    let mut keep = fast_config();
    microbot_client::fault_injection::skip_acks(&mut keep);
    let mut users = Vec::new();
    for name in ["alice", "bob", "carol"] {
        users.push(register(&server, name).await);
    }
    let mut alice = online(&server, &mut users[0], IdentitySource::New, keep.clone()).await;
    let mut bob = online(&server, &mut users[1], IdentitySource::New, fast_config()).await;
    let mut carol = online(&server, &mut users[2], IdentitySource::New, keep).await;
    // Everyone writes to everyone once: all hold all profile keys.
    for (from, to) in [("alice", "bob"), ("alice", "carol"), ("bob", "carol")] {
        let device = match from {
            "alice" => &alice,
            _ => &bob,
        };
        device
            .account
            .send_text(&Conversation::Direct(to.into()), &format!("{from} to {to}"))
            .unwrap();
    }
    for _ in 0..2 {
        next_text(&mut carol.events).await;
    }
    next_text(&mut bob.events).await;
    for (from, to) in [("bob", "alice"), ("carol", "alice"), ("carol", "bob")] {
        let device = match from {
            "bob" => &bob,
            _ => &carol,
        };
        device
            .account
            .send_text(&Conversation::Direct(to.into()), &format!("{from} to {to}"))
            .unwrap();
    }
    for _ in 0..2 {
        next_text(&mut alice.events).await;
    }
    next_text(&mut bob.events).await;

    let group = alice
        .account
        .create_group("sealed club", &["bob", "carol"])
        .await
        .unwrap();
    for device in [&mut bob, &mut carol] {
        wait_for(&mut device.events, |e| {
            matches!(e, microbot_client::Event::GroupChanged { group_id, .. } if *group_id == group)
                .then_some(())
        })
        .await;
    }
    let rows_before = stored_senders(&server).len();
    let sent = bob
        .account
        .send_text(&Conversation::Group(group), "who said this?")
        .unwrap();
    for device in [&mut alice, &mut carol] {
        let got = wait_for(&mut device.events, |e| match e {
            microbot_client::Event::Message(m) if m.message_id == sent => Some((**m).clone()),
            _ => None,
        })
        .await;
        assert_eq!(got.author, "bob", "the sender comes from the certificate");
        assert_eq!(got.conversation, Conversation::Group(group));
        assert_eq!(got.text, "who said this?");
    }
    // Alice and Carol keep what reached them: Bob's group message is stored
    // for each of them without a sender.
    let rows = stored_senders(&server);
    let new_rows = &rows[rows_before.min(rows.len())..];
    assert!(
        new_rows
            .iter()
            .filter(|r| **r == (String::new(), 0))
            .count()
            >= 2,
        "the group message went identified: {new_rows:?}"
    );
    assert!(
        !new_rows.iter().any(|(name, _)| name == "bob"),
        "Bob is named: {new_rows:?}"
    );
    for d in [&alice, &bob, &carol] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_offline_when_the_group_was_made_learns_it_from_sealed_messages() {
    let server = TestServer::start().await;
    let mut users = Vec::new();
    for name in ["alice", "bob"] {
        users.push(register(&server, name).await);
    }
    let mut alice = online(&server, &mut users[0], IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut users[1], IdentitySource::New, fast_config()).await;
    // Contacts both ways: each holds the other's profile key.
    alice
        .account
        .send_text(&Conversation::Direct("bob".into()), "hi bob")
        .unwrap();
    next_text(&mut bob.events).await;
    bob.account
        .send_text(&Conversation::Direct("alice".into()), "hi alice")
        .unwrap();
    next_text(&mut alice.events).await;
    // Bob is offline while Alice makes a group with him and writes in it:
    // the announcement and the message reach his queue sealed, for a group
    // his device has never heard of.
    bob.account.disconnect().await;
    let rows_before = stored_senders(&server).len();
    let group = alice
        .account
        .create_group("made while away", &["bob"])
        .await
        .unwrap();
    let sent = alice
        .account
        .send_text(&Conversation::Group(group), "welcome back")
        .unwrap();
    wait_for(&mut alice.events, |e| {
        matches!(e, microbot_client::Event::Sent { message_id, .. } if *message_id == sent)
            .then_some(())
    })
    .await;
    let rows = stored_senders(&server);
    assert!(
        rows[rows_before.min(rows.len())..]
            .iter()
            .any(|r| *r == (String::new(), 0)),
        "nothing went sealed: {rows:?}"
    );
    // Back online, Bob fetches the group he did not know and reads the message.
    bob.account.connect();
    let got = wait_for(&mut bob.events, |e| match e {
        microbot_client::Event::Message(m) if m.message_id == sent => Some((**m).clone()),
        microbot_client::Event::DecryptionFailed { reason, .. } => {
            panic!("refused: {reason}")
        }
        _ => None,
    })
    .await;
    assert_eq!(got.author, "alice");
    assert_eq!(got.conversation, Conversation::Group(group));
    let info = bob
        .account
        .group(&group)
        .unwrap()
        .expect("bob knows the group");
    assert_eq!(info.name, "made while away");
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

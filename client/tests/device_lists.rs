//! Signed device lists (SPEC.md §20) through the SDK against a real server
//! on loopback. The server's storage is opened next to it to play a
//! malicious server: it adds a device to the account row (with a replayed,
//! validly signed prekey bundle) without a signed list, serves an older
//! list, and serves a list signed by another key. Senders encrypt only to
//! listed devices and refuse rollbacks and forgeries; linking a device and
//! removing one update the list, and the contact sees `DeviceAdded`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::*;
use microbot_client::{Conversation, Event, IdentitySource, KeyRefusal, SendFailureReason};
use microbot_crypto::IdentityKeyPair;
use microbot_crypto::device_list::{DeviceList, SignedDeviceList};
use microbot_server::testing::storage::sqlite::SqliteStorage;
use microbot_server::testing::storage::{DeviceListStorage as _, PrekeyUpload, Storage as _};

fn storage(server: &TestServer) -> SqliteStorage {
    SqliteStorage::open(&server.dir.path().join("microbot.sqlite3")).unwrap()
}

async fn account_id(storage: &SqliteStorage, username: &str) -> i64 {
    storage
        .account_by_username(username)
        .await
        .unwrap()
        .unwrap()
        .id
}

/// The account's stored list, verified under its identity.
async fn stored_list(
    storage: &SqliteStorage,
    username: &str,
    identity: &[u8; 32],
) -> SignedDeviceList {
    let stored = storage
        .device_list(account_id(storage, username).await)
        .await
        .unwrap()
        .expect("a signed list");
    let identity = microbot_crypto::IdentityKey::from_bytes(identity).unwrap();
    SignedDeviceList::verify_for(&stored.bytes, &identity, username).unwrap()
}

/// Waits for a `SendFailed` and returns its reason.
async fn send_failed(events: &mut microbot_client::Events) -> SendFailureReason {
    wait_for(events, |e| match e {
        Event::SendFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
}

/// The device-list refusal of alice's keys `reason` names.
fn alice_refusal(reason: &SendFailureReason) -> &KeyRefusal {
    match reason {
        SendFailureReason::KeysRefused { username, refusal } if username == "alice" => refusal,
        other => panic!("not a refusal of alice's keys: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_the_server_adds_without_a_signed_list_gets_nothing() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_alice = Conversation::Direct("alice".into());
    bob.account.send_text(&to_alice, "one").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "one");
    let identity = alice.account.identity_key();
    let listed = stored_list(&storage(&server), "alice", &identity).await;
    assert_eq!(listed.list().version(), 1, "registration signs version 1");
    assert_eq!(listed.list().device_ids(), &[alice.account.device_id()]);

    // The server adds a device to alice's account and gives it a copy of
    // her real device's signed prekey and KEM key (signatures by her
    // identity verify): everything but a signed list.
    let db = storage(&server);
    let alice_id = account_id(&db, "alice").await;
    let ghost = db
        .create_device(alice_id, &[0x42; 32], "ghost", 1)
        .await
        .unwrap();
    let real = db
        .take_bundles(&[alice.account.device_id()])
        .await
        .unwrap()
        .remove(0);
    db.upload_prekeys(
        ghost,
        &PrekeyUpload {
            identity_key: Some(real.identity_key.clone()),
            signed_prekey: Some(real.signed_prekey.clone()),
            one_time_prekeys: Vec::new(),
            kem_prekeys: Vec::new(),
            last_resort_kem_prekey: real.kem_prekey.clone().map(|(key, _)| key),
        },
    )
    .await
    .unwrap();

    // A second device of bob (no cached device list, so it fetches alice's
    // bundles now, the ghost's included) sends: alice's real device gets
    // it, the ghost gets nothing and is never announced.
    let mut bob2 = online(
        &server,
        &mut bob_user,
        IdentitySource::Linked(bob.account.export_identity()),
        fast_config(),
    )
    .await;
    bob2.account.send_text(&to_alice, "two").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "two");
    assert_eq!(
        db.queue_len(ghost, 0).await.unwrap(),
        0,
        "the ghost got a message"
    );
    no_text_within(&mut alice.events, Duration::from_millis(300)).await;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(50), bob2.events.next()).await
    {
        assert!(
            !matches!(&event, Event::DeviceAdded { device_id, .. } if *device_id == ghost),
            "the ghost was announced: {event:?}"
        );
    }

    alice.account.disconnect().await;
    bob.account.disconnect().await;
    bob2.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_and_removing_update_the_list_and_the_contact_sees_the_new_device() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_alice = Conversation::Direct("alice".into());
    bob.account.send_text(&to_alice, "before").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "before");
    let identity = alice.account.identity_key();

    // A second device of alice, holding her identity, signs itself in.
    let mut second = online(
        &server,
        &mut alice_user,
        IdentitySource::Linked(alice.account.export_identity()),
        fast_config(),
    )
    .await;
    let second_id = second.account.device_id();
    let listed = stored_list(&storage(&server), "alice", &identity).await;
    assert_eq!(listed.list().version(), 2);
    assert_eq!(
        listed.list().device_ids(),
        &[alice.account.device_id(), second_id]
    );

    // Bob's next send reaches it, and bob is told alice has a new device.
    bob.account.send_text(&to_alice, "after").unwrap();
    let added = wait_for(&mut bob.events, |e| match e {
        Event::DeviceAdded {
            username,
            device_id,
        } if username == "alice" => Some(*device_id),
        _ => None,
    })
    .await;
    assert_eq!(added, second_id);
    assert_eq!(next_text(&mut second.events).await.text, "after");
    assert_eq!(next_text(&mut alice.events).await.text, "after");

    // The first device removes the second: the list is signed without it.
    alice
        .account
        .remove_device(second_id, &alice_user.password, &alice_user.auth.fresh())
        .await
        .unwrap();
    let listed = stored_list(&storage(&server), "alice", &identity).await;
    assert_eq!(listed.list().version(), 3);
    assert_eq!(listed.list().device_ids(), &[alice.account.device_id()]);
    bob.account.send_text(&to_alice, "removed").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "removed");

    alice.account.disconnect().await;
    bob.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_refuses_a_rolled_back_or_forged_list() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    // Bob checks alice's devices before every send.
    let mut eager = fast_config();
    eager.device_refresh = Duration::ZERO;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, eager).await;
    let to_alice = Conversation::Direct("alice".into());
    bob.account.send_text(&to_alice, "v1").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "v1");
    let db = storage(&server);
    let alice_id = account_id(&db, "alice").await;
    let v1 = db.device_list(alice_id).await.unwrap().unwrap();

    // Alice's second device makes version 2; bob sees it.
    let second = online(
        &server,
        &mut alice_user,
        IdentitySource::Linked(alice.account.export_identity()),
        fast_config(),
    )
    .await;
    bob.account.send_text(&to_alice, "v2").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "v2");

    // The server serves version 1 again: bob refuses to send.
    assert!(
        db.put_device_list(alice_id, 1, &v1.bytes, true)
            .await
            .unwrap()
    );
    bob.account.send_text(&to_alice, "rolled back").unwrap();
    let reason = send_failed(&mut bob.events).await;
    assert!(
        reason.to_string().contains("went back from version 2 to 1"),
        "{reason}"
    );
    assert_eq!(
        alice_refusal(&reason),
        &KeyRefusal::DeviceListRollback { seen: 2, served: 1 }
    );

    // A list signed by another key, however new, is refused too.
    let forged = DeviceList::new(
        "alice",
        9,
        0,
        &[alice.account.device_id(), second.account.device_id()],
    )
    .unwrap()
    .sign(&IdentityKeyPair::from_seed(&[3; 32]));
    assert!(
        db.put_device_list(alice_id, 9, forged.as_bytes(), true)
            .await
            .unwrap()
    );
    bob.account.send_text(&to_alice, "forged").unwrap();
    let reason = send_failed(&mut bob.events).await;
    assert!(
        reason
            .to_string()
            .contains("not signed by the identity we trust"),
        "{reason}"
    );
    assert!(
        matches!(alice_refusal(&reason), KeyRefusal::ForgedDeviceList { .. }),
        "{reason:?}"
    );
    no_text_within(&mut alice.events, Duration::from_millis(300)).await;

    alice.account.disconnect().await;
    bob.account.disconnect().await;
    server.stop().await;
}

/// Waits for a message refused because its device is not in the sender
/// account's signed list (SPEC.md §20.5); returns the device and reason.
async fn refused_unlisted(events: &mut microbot_client::Events) -> (u64, String) {
    wait_for(events, |e| match e {
        Event::DecryptionFailed {
            sender_device,
            reason,
            ..
        } if reason.starts_with(microbot_client::UNLISTED_DEVICE) => {
            Some((*sender_device, reason.clone()))
        }
        Event::Message(m) => panic!("a message from an unlisted device was accepted: {m:?}"),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_under_another_identity_is_an_identity_change_not_a_list_question() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_bob = Conversation::Direct("bob".into());
    // Bob verifies alice's list (version 1, her one device) on his send.
    bob.account
        .send_text(&Conversation::Direct("alice".into()), "hi")
        .unwrap();
    alice.account.send_text(&to_bob, "one").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "one");
    let db = storage(&server);
    let alice_id = account_id(&db, "alice").await;
    let v1 = db.device_list(alice_id).await.unwrap().unwrap();

    // A device the server enrols on alice's account, with a key of its own
    // (it cannot have hers), signs a list of its own and writes to bob. To
    // bob that is indistinguishable from alice reinstalling, so it is an
    // identity change (SPEC.md §20.5, §8): he is told her safety number
    // changed, and alice's trusted list has no say over the new identity.
    let mut ghost = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    ghost.account.send_text(&to_bob, "it is me, alice").unwrap();
    let sent = wait_for(&mut ghost.events, |e| match e {
        Event::Sent { .. } => Some(String::new()),
        Event::SendFailed { reason, .. } => Some(reason.to_string()),
        _ => None,
    })
    .await;
    assert_eq!(sent, "", "the ghost could not send");
    wait_for(&mut bob.events, |e| {
        matches!(e, Event::SafetyNumberChanged { username, .. } if username == "alice")
            .then_some(())
    })
    .await;
    assert_eq!(next_text(&mut bob.events).await.text, "it is me, alice");

    // The server serves alice's own list again (her own device refuses
    // to send while it serves the ghost's).
    assert!(
        db.put_device_list(alice_id, 1, &v1.bytes, true)
            .await
            .unwrap()
    );
    // Alice's next message opens: nothing of bob's state moved.
    alice.account.send_text(&to_bob, "two").unwrap();
    let two = next_text(&mut bob.events).await;
    assert_eq!(
        (two.text.as_str(), two.author_device),
        ("two", alice.account.device_id())
    );

    alice.account.disconnect().await;
    bob.account.disconnect().await;
    ghost.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_devices_late_message_is_refused_and_a_new_devices_first_is_accepted() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut eager = fast_config();
    eager.device_refresh = Duration::ZERO;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, eager).await;
    let to_alice = Conversation::Direct("alice".into());
    let to_bob = Conversation::Direct("bob".into());
    bob.account.send_text(&to_alice, "v1").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "v1");

    // (c) A newly linked device writes first: bob's remembered list
    // (version 1) does not name it, so he looks again and finds version 2.
    let mut second = online(
        &server,
        &mut alice_user,
        IdentitySource::Linked(alice.account.export_identity()),
        fast_config(),
    )
    .await;
    let second_id = second.account.device_id();
    second
        .account
        .send_text(&to_bob, "from my new phone")
        .unwrap();
    let first = next_text(&mut bob.events).await;
    assert_eq!(
        (first.text.as_str(), first.author_device),
        ("from my new phone", second_id)
    );

    // (b) Bob is offline; the second device writes, the server holds the
    // envelope back (what no API call can make it do), alice removes the
    // second device and bob sees the new list before the envelope comes.
    bob.account.disconnect().await;
    let late = second.account.send_text(&to_bob, "late").unwrap();
    wait_for(&mut second.events, |e| {
        matches!(e, Event::Sent { message_id, .. } if *message_id == late).then_some(())
    })
    .await;
    let db = storage(&server);
    let bob_device = bob.account.device_id();
    let page = microbot_server::testing::storage::FetchPage {
        limit: 100,
        max_bytes: usize::MAX,
        overhead: 0,
        now_ms: 0,
    };
    let (held, _) = db.fetch_envelopes(bob_device, 0, page).await.unwrap();
    assert!(!held.is_empty(), "the late envelope is queued");
    let ids: Vec<u64> = held.iter().map(|e| e.id).collect();
    assert_eq!(
        db.ack_envelopes(bob_device, &ids).await.unwrap() as usize,
        ids.len()
    );
    alice
        .account
        .remove_device(second_id, &alice_user.password, &alice_user.auth.fresh())
        .await
        .unwrap();
    bob.account.connect();
    wait_connected(&mut bob.events).await;
    bob.account.send_text(&to_alice, "seen v3").unwrap();
    wait_for(&mut alice.events, |e| {
        matches!(e, Event::Message(m) if m.text == "seen v3").then_some(())
    })
    .await;
    // Back in the queue as they were (a sealed one names no sender).
    for envelope in &held {
        let meta = microbot_server::testing::storage::SendMeta {
            sender_username: &envelope.sender_username,
            sender_device_id: envelope.sender_device_id,
            now_ms: 1,
            expires_at_ms: u64::MAX / 2,
            max_queue_len: 1000,
            max_per_sender: 1000,
        };
        let again = microbot_server::testing::storage::OutgoingEnvelope {
            recipient_device_id: bob_device,
            ciphertext: envelope.ciphertext.clone(),
        };
        db.enqueue(&meta, &[again]).await.unwrap();
    }
    // Delivered on the next connection.
    bob.account.disconnect().await;
    bob.account.connect();
    let (device, reason) = refused_unlisted(&mut bob.events).await;
    assert_eq!(device, second_id);
    assert!(
        reason.contains("not in alice's signed device list"),
        "{reason}"
    );
    // Alice's next message still opens.
    alice.account.send_text(&to_bob, "still me").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "still me");

    alice.account.disconnect().await;
    bob.account.disconnect().await;
    second.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_whose_list_disappeared_is_not_sent_to() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut eager = fast_config();
    eager.device_refresh = Duration::ZERO;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, eager).await;
    let to_alice = Conversation::Direct("alice".into());
    bob.account.send_text(&to_alice, "seen").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "seen");

    // The stored list goes (a fault no request can cause): the server
    // would now count every device of alice's by the unsigned rule.
    let db = rusqlite::Connection::open(server.dir.path().join("microbot.sqlite3")).unwrap();
    let gone = db
        .execute(
            "DELETE FROM device_lists WHERE account_id = \
             (SELECT id FROM accounts WHERE username = 'alice')",
            [],
        )
        .unwrap();
    assert_eq!(gone, 1);
    bob.account.send_text(&to_alice, "downgraded").unwrap();
    let reason = send_failed(&mut bob.events).await;
    assert!(
        reason
            .to_string()
            .contains("signed device list (version 1) is missing"),
        "{reason}"
    );
    assert_eq!(
        alice_refusal(&reason),
        &KeyRefusal::DeviceListMissing { seen: 1 }
    );
    no_text_within(&mut alice.events, Duration::from_millis(200)).await;

    alice.account.disconnect().await;
    bob.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_enrolled_before_any_connected_still_get_a_list() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    // Both of alice's devices enrol before either connects.
    let mut first = enrol(
        &server,
        &mut alice_user,
        IdentitySource::New,
        fast_config(),
        None,
    )
    .await;
    let linked = first.account.export_identity();
    let mut second = enrol(
        &server,
        &mut alice_user,
        IdentitySource::Linked(linked),
        fast_config(),
        None,
    )
    .await;
    let identity = first.account.identity_key();
    let (first_id, second_id) = (first.account.device_id(), second.account.device_id());

    // The first to connect starts version 1 naming only itself (it
    // vouches for no device it has not heard from); the other signs itself
    // into it when it connects.
    first.account.connect();
    wait_connected(&mut first.events).await;
    let listed = stored_list(&storage(&server), "alice", &identity).await;
    assert_eq!(
        (listed.list().version(), listed.list().device_ids()),
        (1, &[first_id][..])
    );
    second.account.connect();
    wait_connected(&mut second.events).await;
    let listed = stored_list(&storage(&server), "alice", &identity).await;
    assert_eq!(
        (listed.list().version(), listed.list().device_ids()),
        (2, &[first_id, second_id][..])
    );

    let bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    bob.account
        .send_text(&Conversation::Direct("alice".into()), "both")
        .unwrap();
    assert_eq!(next_text(&mut first.events).await.text, "both");
    assert_eq!(next_text(&mut second.events).await.text, "both");

    first.account.disconnect().await;
    second.account.disconnect().await;
    bob.account.disconnect().await;
    server.stop().await;
}

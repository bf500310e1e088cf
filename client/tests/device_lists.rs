//! Signed device lists (SPEC.md §20) through the SDK against a real server
//! on loopback. The server's storage is opened next to it to play a
//! malicious server: it adds a device to the account row (with a replayed,
//! validly signed prekey bundle) without a signed list, serves an older
//! list, and serves a list signed by another key. Senders encrypt only to
//! listed devices and refuse rollbacks and forgeries; linking a device and
//! removing one update the list, and the contact sees `DeviceAdded`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use microbot_client::{Conversation, Event, IdentitySource};
use microbot_crypto::IdentityKeyPair;
use microbot_crypto::device_list::{DeviceList, SignedDeviceList};
use microbot_server::storage::sqlite::SqliteStorage;
use microbot_server::storage::{DeviceListStorage as _, PrekeyUpload, Storage as _};

fn storage(server: &TestServer) -> SqliteStorage {
    SqliteStorage::open(&server.dir.path().join("microbot.sqlite3")).unwrap()
}

fn account_id(storage: &SqliteStorage, username: &str) -> i64 {
    storage.account_by_username(username).unwrap().unwrap().id
}

/// The account's stored list, verified under its identity.
fn stored_list(storage: &SqliteStorage, username: &str, identity: &[u8; 32]) -> SignedDeviceList {
    let stored = storage
        .device_list(account_id(storage, username))
        .unwrap()
        .expect("a signed list");
    let identity = microbot_crypto::IdentityKey::from_bytes(identity).unwrap();
    SignedDeviceList::verify_for(&stored.bytes, &identity, username).unwrap()
}

/// Waits for a `SendFailed` and returns its reason.
async fn send_failed(events: &mut microbot_client::Events) -> String {
    wait_for(events, |e| match e {
        Event::SendFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
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
    let listed = stored_list(&storage(&server), "alice", &identity);
    assert_eq!(listed.list().version(), 1, "registration signs version 1");
    assert_eq!(listed.list().device_ids(), &[alice.account.device_id()]);

    // The server adds a device to alice's account and gives it a copy of
    // her real device's signed prekey and KEM key (signatures by her
    // identity verify): everything but a signed list.
    let db = storage(&server);
    let alice_id = account_id(&db, "alice");
    let ghost = db.create_device(alice_id, &[0x42; 32], "ghost", 1).unwrap();
    let real = db
        .take_bundles(&[alice.account.device_id()])
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
        db.queue_len(ghost, 0).unwrap(),
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
    let listed = stored_list(&storage(&server), "alice", &identity);
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
    let listed = stored_list(&storage(&server), "alice", &identity);
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
    let eager = microbot_client::AccountConfig {
        device_refresh: Duration::ZERO,
        ..fast_config()
    };
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, eager).await;
    let to_alice = Conversation::Direct("alice".into());
    bob.account.send_text(&to_alice, "v1").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "v1");
    let db = storage(&server);
    let alice_id = account_id(&db, "alice");
    let v1 = db.device_list(alice_id).unwrap().unwrap();

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
    assert!(db.put_device_list(alice_id, 1, &v1.bytes, true).unwrap());
    bob.account.send_text(&to_alice, "rolled back").unwrap();
    let reason = send_failed(&mut bob.events).await;
    assert!(reason.contains("went back from version 2 to 1"), "{reason}");

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
            .unwrap()
    );
    bob.account.send_text(&to_alice, "forged").unwrap();
    let reason = send_failed(&mut bob.events).await;
    assert!(
        reason.contains("not signed by the identity we trust"),
        "{reason}"
    );
    no_text_within(&mut alice.events, Duration::from_millis(300)).await;

    alice.account.disconnect().await;
    bob.account.disconnect().await;
    server.stop().await;
}

//! Device linking through a provisioning slot (SPEC.md §12.14), through the
//! SDK against a real server: the new device shows a code, an existing
//! device seals the account to it, the new device enrols with password and
//! TOTP and carries on with the account's identity and contacts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::*;
use microbot_client::{
    Account, ConnectionState, Conversation, Event, IdentitySource, LinkError, LinkRequest,
    MessageStatus, ProvisioningCode, SecondFactor, StoreConfig,
};
use zeroize::Zeroizing;

/// Every file under `dir` (the server's database and its WAL).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_links_through_the_server_and_gets_identity_and_contacts() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut old = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_bob = Conversation::Direct("bob".into());
    old.account.send_text(&to_bob, "hi bob").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "hi bob");

    // The new device: no account yet, opens a slot and shows the code.
    let request = LinkRequest::create(&server.config).await.unwrap();
    let code = request.code().to_text();
    assert_eq!(ProvisioningCode::parse(&code).unwrap(), *request.code());
    let waiting = tokio::spawn(request.wait(Duration::from_secs(30)));
    // The existing device "scans" it.
    old.account.link_device(&code).await.unwrap();
    let provisioned = waiting.await.unwrap().unwrap();
    assert_eq!(provisioned.username, "alice");
    assert_eq!(
        provisioned.identity.seed(),
        old.account.export_identity().seed()
    );
    assert!(provisioned.contacts.iter().any(|(name, _)| name == "bob"));

    // Only ciphertext went through the server: the identity seed is in none
    // of its files.
    let seed = *old.account.export_identity().seed();
    for file in files_under(server.dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(seed.len()).any(|w| w == seed),
            "{} holds the identity seed",
            file.display()
        );
    }

    // The same code cannot be used again: the slot was read and deleted.
    assert!(matches!(
        old.account.link_device(&code).await,
        Err(LinkError::SlotGone)
    ));

    // Enrol with password + TOTP like any device.
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(dir.path().join("client.sqlite3")).with_kdf(CHEAP_KDF);
    let (new, mut new_events) = Account::enrol_provisioned(
        &store,
        server.config.clone(),
        &provisioned,
        Zeroizing::new(alice_user.password.clone()),
        SecondFactor::Totp(alice_user.auth.fresh()),
        fast_config(),
    )
    .await
    .unwrap();
    new.connect();
    wait_connected(&mut new_events).await;
    assert_eq!(new.identity_key(), old.account.identity_key());
    assert_eq!(new.username(), "alice");
    // Bob is already a trusted contact, with the same safety number.
    assert_eq!(
        new.safety_number("bob").unwrap().unwrap().digits(),
        old.account.safety_number("bob").unwrap().unwrap().digits()
    );
    assert_eq!(old.account.list_devices().await.unwrap().len(), 2);

    // Bob's next message reaches the new device too; the new device can send.
    let to_alice = Conversation::Direct("alice".into());
    bob.account.send_text(&to_alice, "welcome").unwrap();
    assert_eq!(next_text(&mut new_events).await.text, "welcome");
    assert_eq!(next_text(&mut old.events).await.text, "welcome");
    new.send_text(&to_bob, "from the new device").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "from the new device");
    let copy = next_text(&mut old.events).await;
    assert_eq!(copy.conversation, to_bob);
    assert_eq!(copy.text, "from the new device");

    new.disconnect().await;
    old.account.disconnect().await;
    bob.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sealed_to_another_key_does_not_open_and_typos_are_refused() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let old = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let request = LinkRequest::create(&server.config).await.unwrap();
    // An attacker's code for the same slot (another public key).
    let forged = ProvisioningCode {
        public_key: [0x09; 32],
        slot_id: request.code().slot_id,
    };
    old.account.link_device(&forged.to_text()).await.unwrap();
    assert!(matches!(
        request.wait(Duration::from_secs(10)).await,
        Err(LinkError::Seal(_))
    ));
    assert!(matches!(
        old.account.link_device("not-a-code").await,
        Err(LinkError::InvalidCode)
    ));
    old.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_ends_when_nothing_arrives() {
    let server = TestServer::start().await;
    let request = LinkRequest::create(&server.config).await.unwrap();
    assert!(matches!(
        request.wait(Duration::from_millis(800)).await,
        Err(LinkError::TimedOut)
    ));
    server.stop().await;
}

/// Links a new device of `user` from `old` through the server.
async fn link_new_device(server: &TestServer, user: &mut User, old: &Device) -> Device {
    let request = LinkRequest::create(&server.config).await.unwrap();
    let code = request.code().to_text();
    let waiting = tokio::spawn(request.wait(Duration::from_secs(30)));
    old.account.link_device(&code).await.unwrap();
    let provisioned = waiting.await.unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(dir.path().join("client.sqlite3")).with_kdf(CHEAP_KDF);
    let (account, mut events) = Account::enrol_provisioned(
        &store,
        server.config.clone(),
        &provisioned,
        Zeroizing::new(user.password.clone()),
        SecondFactor::Totp(user.auth.fresh()),
        fast_config(),
    )
    .await
    .unwrap();
    account.connect();
    wait_connected(&mut events).await;
    Device {
        account,
        events,
        store,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_and_the_other_devices_are_told_when_a_device_is_added() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice1 = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_alice = Conversation::Direct("alice".into());
    let to_bob = Conversation::Direct("bob".into());
    bob.account.send_text(&to_alice, "before").unwrap();
    assert_eq!(next_text(&mut alice1.events).await.text, "before");

    let mut alice2 = link_new_device(&server, &mut alice_user, &alice1).await;
    let new_id = alice2.account.device_id();
    // Bob's next send learns of the device (MISSING_DEVICES) and says so.
    bob.account.send_text(&to_alice, "after").unwrap();
    let added = wait_for(&mut bob.events, |e| match e {
        Event::DeviceAdded {
            username,
            device_id,
        } => Some((username.clone(), *device_id)),
        _ => None,
    })
    .await;
    assert_eq!(added, ("alice".to_owned(), new_id));
    assert_eq!(next_text(&mut alice2.events).await.text, "after");
    // Alice's first device is told too, at its next send.
    alice1.account.send_text(&to_bob, "hello").unwrap();
    let added = wait_for(&mut alice1.events, |e| match e {
        Event::DeviceAdded {
            username,
            device_id,
        } => Some((username.clone(), *device_id)),
        _ => None,
    })
    .await;
    assert_eq!(added, ("alice".to_owned(), new_id));
    for d in [&alice1, &alice2, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlinked_device_can_no_longer_fetch_or_send() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice1 = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let mut alice2 = link_new_device(&server, &mut alice_user, &alice1).await;
    let to_alice = Conversation::Direct("alice".into());
    let to_bob = Conversation::Direct("bob".into());
    bob.account.send_text(&to_alice, "to both").unwrap();
    assert_eq!(next_text(&mut alice1.events).await.text, "to both");
    assert_eq!(next_text(&mut alice2.events).await.text, "to both");

    let removed = alice2.account.device_id();
    alice1
        .account
        .remove_device(removed, &alice_user.password, &alice_user.auth.fresh())
        .await
        .unwrap();
    // The removed device is disconnected and refused from now on.
    wait_for(&mut alice2.events, |e| {
        matches!(e, Event::Connection(ConnectionState::Refused { .. })).then_some(())
    })
    .await;
    alice2.account.connect();
    wait_for(&mut alice2.events, |e| {
        matches!(e, Event::Connection(ConnectionState::Refused { .. })).then_some(())
    })
    .await;
    assert!(!alice2.account.is_connected());
    // What it queues never leaves.
    alice2
        .account
        .send_text(&to_bob, "from a removed device")
        .unwrap();
    // Bob's sends reach the remaining device; nothing waits for the removed one.
    bob.account.send_text(&to_alice, "after removal").unwrap();
    assert_eq!(next_text(&mut alice1.events).await.text, "after removal");
    alice1.account.send_text(&to_bob, "still here").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "still here");
    no_text_within(&mut bob.events, Duration::from_millis(500)).await;
    assert_eq!(alice1.account.list_devices().await.unwrap().len(), 1);
    // Its text (and any receipt) still waits in its outbox.
    assert!(alice2.account.outbox_len().unwrap() >= 1);
    for d in [&alice1, &alice2, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_outlives_the_servers_login_deadline() {
    // The server closes a connection that does not log in within a second;
    // the new device keeps waiting on fresh connections.
    let server = TestServer::start_tweaked(
        tempfile::tempdir().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        |config| config.login_timeout_secs = 1,
    )
    .await;
    let mut alice_user = register(&server, "alice").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let request = LinkRequest::create(&server.config).await.unwrap();
    let code = request.code().to_text();
    let waiting = tokio::spawn(request.wait(Duration::from_secs(30)));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    alice.account.link_device(&code).await.unwrap();
    let provisioned = waiting.await.unwrap().unwrap();
    assert_eq!(provisioned.username, "alice");
    alice.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_goes_to_the_new_device_only_when_asked_for() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice1 = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_bob = Conversation::Direct("bob".into());
    let to_alice = Conversation::Direct("alice".into());
    let first = alice1.account.send_text(&to_bob, "one").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "one");
    bob.account.send_text(&to_alice, "two").unwrap();
    assert_eq!(next_text(&mut alice1.events).await.text, "two");
    alice1.account.edit(&to_bob, first, "one, edited").unwrap();
    wait_for(&mut bob.events, |e| {
        matches!(e, Event::Edited { .. }).then_some(())
    })
    .await;

    // Without agreement: identity and contacts, no history.
    let plain = link_new_device(&server, &mut alice_user, &alice1).await;
    assert!(plain.account.history(&to_bob, 10).unwrap().is_empty());

    // With it: the newest messages, edits applied.
    let request = LinkRequest::create(&server.config).await.unwrap();
    let code = request.code().to_text();
    let waiting = tokio::spawn(request.wait(Duration::from_secs(30)));
    alice1
        .account
        .link_device_with_history(&code, 50)
        .await
        .unwrap();
    let provisioned = waiting.await.unwrap().unwrap();
    assert_eq!(provisioned.history_len(), 3, "two messages and one edit");
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(dir.path().join("client.sqlite3")).with_kdf(CHEAP_KDF);
    let (with_history, _events) = Account::enrol_provisioned(
        &store,
        server.config.clone(),
        &provisioned,
        Zeroizing::new(alice_user.password.clone()),
        SecondFactor::Totp(alice_user.auth.fresh()),
        fast_config(),
    )
    .await
    .unwrap();
    let history = with_history.history(&to_bob, 10).unwrap();
    let shown: Vec<(String, MessageStatus)> =
        history.into_iter().map(|m| (m.author, m.status)).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        matches!(&shown[0], (a, MessageStatus::Visible { text, .. }) if a == "alice" && text == "one, edited")
    );
    assert!(
        matches!(&shown[1], (a, MessageStatus::Visible { text, .. }) if a == "bob" && text == "two")
    );
    // History arrives already shown.
    assert!(with_history.unshown(0, 10).unwrap().is_empty());
    for d in [&alice1, &plain, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

//! Offline behaviour: the outbox survives a restart and drains in order,
//! reconnect after the server comes back, and ack-after-store across a crash.
use crate::common;

use std::time::Duration;

use common::*;
use microbot_client::{Account, ConnectionState, Conversation, Event, IdentitySource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_survives_a_restart_and_drains_in_order() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    alice.account.disconnect().await;
    assert!(!alice.account.is_connected());

    let to_bob = Conversation::Direct("bob".into());
    for text in ["first", "second", "third"] {
        alice.account.send_text(&to_bob, text).unwrap();
    }
    assert_eq!(alice.account.outbox_len().unwrap(), 3);
    let store = alice.store.clone();
    let _dir = alice.dir;
    drop(alice.account);
    no_text_within(&mut bob.events, Duration::from_millis(300)).await;

    // "Restart": reopen the store; the outbox is still there and leaves in order.
    let (account, mut events) = Account::open(&store, fast_config()).unwrap();
    assert_eq!(account.outbox_len().unwrap(), 3);
    account.connect();
    for expected in ["first", "second", "third"] {
        assert_eq!(next_text(&mut bob.events).await.text, expected);
    }
    let mut sent = 0;
    while sent < 3 {
        wait_for(&mut events, |e| {
            matches!(e, Event::Sent { .. }).then_some(())
        })
        .await;
        sent += 1;
    }
    assert_eq!(account.outbox_len().unwrap(), 0);
    account.disconnect().await;
    bob.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_with_backoff_when_the_server_comes_back() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_bob = Conversation::Direct("bob".into());
    alice.account.send_text(&to_bob, "before").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "before");

    let addr = server.addr;
    let dir = server.stop().await;
    let retry = wait_for(&mut alice.events, |e| match e {
        Event::Connection(ConnectionState::Disconnected { retry_in_ms, .. }) => Some(*retry_in_ms),
        _ => None,
    })
    .await;
    assert!(retry <= 600, "first retry is short: {retry} ms");
    alice.account.send_text(&to_bob, "while down").unwrap();
    // Let a few attempts fail (backoff grows to reconnect_max).
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(alice.account.outbox_len().unwrap(), 1);

    let server = TestServer::start_in(dir, addr).await;
    wait_connected(&mut alice.events).await;
    assert_eq!(next_text(&mut bob.events).await.text, "while down");
    alice.account.disconnect().await;
    bob.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_store_and_ack_loses_nothing_and_delivers_once() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut crashing = fast_config();
    microbot_client::fault_injection::skip_acks(&mut crashing);
    crashing.delivery_receipts = false;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, crashing).await;
    let to_bob = Conversation::Direct("bob".into());
    let first = alice
        .account
        .send_text(&to_bob, "stored, never acked")
        .unwrap();
    assert_eq!(next_text(&mut bob.events).await.message_id, first);
    // The process dies after storing, before acknowledging.
    let store = bob.store.clone();
    let _dir = bob.dir;
    drop(bob.account);

    let (bob_again, mut events) = Account::open(&store, fast_config()).unwrap();
    bob_again.connect();
    wait_connected(&mut events).await;
    // The redelivered envelope was recognised: the next message event is the new one.
    let second = alice.account.send_text(&to_bob, "after restart").unwrap();
    let got = wait_for(&mut events, |e| match e {
        Event::DecryptionFailed { reason, .. } => panic!("redelivery not recognised: {reason}"),
        Event::Message(m) => Some((**m).clone()),
        _ => None,
    })
    .await;
    assert_eq!(got.message_id, second);
    let history = bob_again
        .account_history(&Conversation::Direct("alice".into()))
        .await;
    assert_eq!(history, vec![first, second]);
    let _ = &mut alice.events;
    alice.account.disconnect().await;
    bob_again.disconnect().await;
    server.stop().await;
}

trait HistoryIds {
    async fn account_history(&self, conversation: &Conversation)
    -> Vec<microbot_client::MessageId>;
}

impl HistoryIds for Account {
    async fn account_history(
        &self,
        conversation: &Conversation,
    ) -> Vec<microbot_client::MessageId> {
        self.history(conversation, 100)
            .unwrap()
            .into_iter()
            .map(|m| m.message_id)
            .collect()
    }
}

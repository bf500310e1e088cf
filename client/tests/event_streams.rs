//! The embedder's event API (issue 15): a way to await the connection,
//! more than one consumer of events, and `Connected` before the queued
//! messages it announces, `CaughtUp` after them.

use std::time::Duration;

use crate::common;

use common::*;
use microbot_client::{ConnectionState, Conversation, Event, IdentitySource};

#[tokio::test(flavor = "multi_thread")]
async fn requests_that_need_the_connection_work_once_it_is_awaited() {
    let server = TestServer::start().await;
    let mut user = register(&server, "ida").await;
    let mut bob = register(&server, "bob").await;
    let _bob = online(&server, &mut bob, IdentitySource::New, fast_config()).await;
    let device = enrol(&server, &mut user, IdentitySource::New, fast_config(), None).await;
    device.account.connect();
    tokio::time::timeout(Duration::from_secs(20), device.account.wait_connected())
        .await
        .expect("connected in time");
    // No event was read: awaiting the account is enough.
    let devices = device.account.list_devices().await.unwrap();
    assert_eq!(devices.len(), 1);
    device
        .account
        .create_group("right away", &["bob"])
        .await
        .unwrap();
    // Already connected: returns at once.
    tokio::time::timeout(Duration::from_millis(50), device.account.wait_connected())
        .await
        .expect("no wait when connected");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_subscriber_gets_every_event_and_a_dropped_one_costs_nothing() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let mut ui = bob.account.subscribe();
    let dropped = bob.account.subscribe();
    drop(dropped);
    let to_bob = Conversation::Direct("bob".into());
    alice.account.send_text(&to_bob, "one").unwrap();
    alice.account.send_text(&to_bob, "two").unwrap();
    for stream in [&mut bob.events, &mut ui] {
        assert_eq!(next_text(stream).await.text, "one");
        assert_eq!(next_text(stream).await.text, "two");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connected_comes_before_the_queued_messages() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    // Bob enrols and publishes prekeys, then goes offline.
    let bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    bob.account.disconnect().await;
    let (store, dir) = (bob.store.clone(), bob.dir);
    drop(bob.account);
    drop(bob.events);
    let to_bob = Conversation::Direct("bob".into());
    for text in ["queued 1", "queued 2"] {
        alice.account.send_text(&to_bob, text).unwrap();
    }
    let mut alice_events = alice.events;
    for _ in 0..2 {
        wait_for(&mut alice_events, |e| {
            matches!(e, Event::Sent { .. }).then_some(())
        })
        .await;
    }
    let (account, mut events) = microbot_client::Account::open(&store, fast_config()).unwrap();
    account.connect();
    let mut seen = Vec::new();
    while !seen.iter().any(|s: &String| s == "caught up") {
        let event = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("events in time")
            .expect("stream open");
        match event {
            Event::Connection(ConnectionState::Connected) => seen.push("connected".into()),
            Event::Connection(ConnectionState::CaughtUp) => seen.push("caught up".into()),
            Event::Message(m) => seen.push(format!("text {}", m.text)),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        ["connected", "text queued 1", "text queued 2", "caught up"]
    );
    drop(dir);
    server.stop().await;
}

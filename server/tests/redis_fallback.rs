//! Redis briefly unavailable: delivery falls back to the durable queue and
//! nothing is lost. Two nodes share PostgreSQL and a private `redis-server`
//! this test starts on a free port. Alice is behind node A, Bob behind
//! node B. While Redis is up, Alice's message reaches Bob through the bus
//! without Bob reconnecting. Then Redis is killed (SIGKILL); Alice's sends
//! are still acknowledged (they are stored in PostgreSQL); Redis comes back
//! on the same port; Bob receives every message exactly once.
//! Needs `MICROBOT_TEST_POSTGRES` and the `redis-server` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::cluster as support;

use std::collections::HashMap;

use std::time::Duration;

use microbot_client::{ConnectionState, Conversation, Event, Events, ServerConfig};
use support::{ClusterSpec, Node, Schema, free_port, redis_server, services, user, wait_for};

/// Texts received within `wait`, and how many logins happened meanwhile.
async fn collect(events: &mut Events, want: usize, wait: Duration) -> (Vec<String>, usize) {
    let mut texts = Vec::new();
    let mut logins = 0;
    let deadline = tokio::time::Instant::now() + wait;
    while texts.len() < want {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(Event::Message(m))) => texts.push(m.text.clone()),
            Ok(Some(Event::Connection(ConnectionState::Connected))) => logins += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    (texts, logins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_sent_while_redis_is_down_arrive_from_the_queue() {
    let Some((pg, _)) = services("redis_fallback") else {
        return;
    };
    let port = free_port();
    let mut redis = redis_server(port);
    let schema = Schema::new(&pg, "fallback");
    let shared = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec {
        storage_url: schema.url.clone(),
        redis_url: format!("redis://127.0.0.1:{port}/"),
        namespace: format!("test-fallback-{}", support::random_hex(4)),
        attachments: shared.path().to_owned(),
        cert: None,
    };
    let node_a = Node::start(&mut spec);
    let node_b = Node::start(&mut spec);
    let pin = node_a.fingerprint.clone();
    let alice = user(&ServerConfig::new(node_a.addr, &pin).unwrap(), "alice").await;
    let mut bob = user(&ServerConfig::new(node_b.addr, &pin).unwrap(), "bob").await;
    let mut bob_events = bob.events.take().unwrap();
    let to_bob = Conversation::Direct("bob".to_owned());

    // Through the bus: Bob stays connected and gets the push from node A.
    alice.account.send_text(&to_bob, "via redis").unwrap();
    let (texts, logins) = collect(&mut bob_events, 1, Duration::from_secs(30)).await;
    assert_eq!(texts, ["via redis"]);
    assert_eq!(logins, 0, "delivered by a push, not by a reconnect");

    // Redis dies; sends are still acknowledged (PostgreSQL has them).
    redis.stop();
    let mut alice_events = alice.events.unwrap_or_else(|| unreachable!());
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            alice
                .account
                .send_text(&to_bob, &format!("queued {i}"))
                .unwrap(),
        );
    }
    for _ in 0..sent.len() {
        wait_for(&mut alice_events, Duration::from_secs(30), |e| {
            matches!(e, Event::Sent { .. }).then_some(())
        })
        .await;
    }

    // Redis is back: Bob ends up with every message exactly once.
    let _redis = redis_server(port);
    let (texts, _) = collect(&mut bob_events, 5, Duration::from_secs(60)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &texts {
        *counts.entry(t.clone()).or_default() += 1;
    }
    for i in 0..5 {
        assert_eq!(
            counts.get(&format!("queued {i}")),
            Some(&1),
            "got {texts:?}; node B log:\n{}",
            node_b.log()
        );
    }
    let (late, _) = collect(&mut bob_events, 1, Duration::from_secs(2)).await;
    assert!(late.is_empty(), "no duplicate arrives later: {late:?}");
    assert!(
        node_b.log().contains("Redis link lost"),
        "node B noticed the outage"
    );
    alice.account.disconnect().await;
    bob.account.disconnect().await;
}

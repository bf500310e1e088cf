//! What the outbox tells the application, through the public API against
//! a real server on loopback: a send that can never succeed fails with a
//! typed [`SendFailureReason`] naming its cause (an unknown username, a
//! group this account was removed from, the server's refusal with its
//! code), and only the messages the application sent are announced — the
//! delivery receipts and group control messages the SDK sends by itself
//! leave without `Sent`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use microbot_client::{
    Conversation, DeliveryStage, ErrorCode, Event, Events, GroupUpdate, MessageId,
    SendFailureReason,
};

/// Waits for the `Sent` or `SendFailed` of `id`: `Ok(())` or the reason.
async fn outcome(events: &mut Events, id: MessageId) -> Result<(), SendFailureReason> {
    wait_for(events, |e| match e {
        Event::Sent { message_id, .. } if *message_id == id => Some(Ok(())),
        Event::SendFailed { message_id, reason } if *message_id == id => Some(Err(reason.clone())),
        _ => None,
    })
    .await
}

/// Every event up to and including the `Sent` of `id` (panics on its
/// `SendFailed`).
async fn events_until_sent(events: &mut Events, id: MessageId) -> Vec<Event> {
    let mut seen = Vec::new();
    wait_for(events, |e| {
        seen.push(e.clone());
        match e {
            Event::Sent { message_id, .. } if *message_id == id => Some(()),
            Event::SendFailed { message_id, reason } if *message_id == id => {
                panic!("{reason}")
            }
            _ => None,
        }
    })
    .await;
    seen
}

/// The ids of the outbox events (`Sent`, `NotDelivered`, `SendFailed`) in `events`.
fn announced(events: &[Event]) -> Vec<MessageId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Sent { message_id, .. }
            | Event::NotDelivered { message_id, .. }
            | Event::SendFailed { message_id, .. } => Some(*message_id),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_an_unknown_username_fails_naming_it() {
    let server = TestServer::start().await;
    let mut alice = online_as(&server, "alice").await;

    let id = alice
        .account
        .send_text(&Conversation::Direct("frank".into()), "anyone?")
        .unwrap();
    let reason = outcome(&mut alice.events, id).await.unwrap_err();
    assert_eq!(
        reason,
        SendFailureReason::UnknownAccount {
            username: "frank".into()
        }
    );
    assert_eq!(reason.kind(), "unknown_account");
    assert_eq!(reason.to_string(), "no account named frank");
    assert_eq!(alice.account.outbox_len().unwrap(), 0, "dropped");
    // History shows it failed, and why.
    let delivery = alice
        .account
        .message("alice", &id)
        .unwrap()
        .and_then(|m| m.delivery)
        .unwrap();
    assert_eq!(delivery.stage, DeliveryStage::Failed);
    let failure = delivery.failure.unwrap();
    assert_eq!(failure.kind, "unknown_account");
    assert_eq!(failure.text, "no account named frank");
    alice.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_queued_before_a_removal_fails_as_not_a_member() {
    let server = TestServer::start().await;
    let alice = online_as(&server, "alice").await;
    let mut carol = online_as(&server, "carol").await;
    let group_id = alice
        .account
        .create_group("team", &["carol"])
        .await
        .unwrap();
    wait_for(&mut carol.events, |e| match e {
        Event::GroupChanged {
            group_id: g,
            update: GroupUpdate::Created { .. },
            ..
        } if *g == group_id => Some(()),
        _ => None,
    })
    .await;

    // Carol writes while offline, not knowing she was removed meanwhile.
    carol.account.disconnect().await;
    alice
        .account
        .remove_group_members(&group_id, &["carol"])
        .await
        .unwrap();
    let id = carol
        .account
        .send_text(&Conversation::Group(group_id), "still here?")
        .unwrap();
    carol.account.connect();
    let reason = outcome(&mut carol.events, id).await.unwrap_err();
    assert_eq!(reason, SendFailureReason::NotGroupMember { group_id });
    assert_eq!(reason.kind(), "not_group_member");
    assert_eq!(
        reason.to_string(),
        "this account is not a member of the group"
    );
    for d in [&alice, &carol] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_the_servers_refusal_with_its_code() {
    let server = TestServer::start_tweaked(
        tempfile::tempdir().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        |c| {
            c.max_queue_len = 3;
            c.queue_sender_share_percent = 100;
        },
    )
    .await;
    let mut alice = online_as(&server, "alice").await;
    let bob = online_as(&server, "bob").await;
    bob.account.disconnect().await;

    let to_bob = Conversation::Direct("bob".into());
    let mut refused = None;
    for n in 0..6 {
        let id = alice
            .account
            .send_text(&to_bob, &format!("message {n}"))
            .unwrap();
        if let Err(reason) = outcome(&mut alice.events, id).await {
            refused = Some((n, reason));
            break;
        }
    }
    let (n, reason) = refused.expect("bob's full queue never refused a send");
    assert_eq!(n, 3, "the queue holds 3");
    let SendFailureReason::ServerRefused { code, message } = &reason else {
        panic!("not the server's refusal: {reason:?}");
    };
    assert_eq!(*code, ErrorCode::QueueFull);
    assert!(message.contains("queue full"), "{message}");
    assert_eq!(reason.kind(), "server_refused");
    assert!(reason.to_string().contains("QueueFull"), "{reason}");
    alice.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_delivery_receipts_are_not_announced_the_apps_sends_are() {
    let server = TestServer::start().await;
    let mut alice = online_as(&server, "alice").await;
    let mut bob = online_as(&server, "bob").await;
    assert!(fast_config().delivery_receipts);

    let hello = alice
        .account
        .send_text(&Conversation::Direct("bob".into()), "hello")
        .unwrap();
    let got = next_text(&mut bob.events).await;
    assert_eq!(got.message_id, hello);
    // Bob's SDK sent a delivery receipt by itself: alice gets it.
    wait_for(&mut alice.events, |e| match e {
        Event::Receipt { message_ids, .. } if message_ids.contains(&hello) => Some(()),
        _ => None,
    })
    .await;

    // Bob's own sends leave after the receipt (the outbox keeps order), so
    // a `Sent` for the receipt would come before theirs.
    let to_alice = Conversation::Direct("alice".into());
    let read = bob.account.mark_read(&to_alice, &[hello]).unwrap();
    let reply = bob.account.send_text(&to_alice, "hi alice").unwrap();
    let mut seen = events_until_sent(&mut bob.events, read).await;
    seen.extend(events_until_sent(&mut bob.events, reply).await);
    assert_eq!(
        announced(&seen),
        vec![read, reply],
        "only bob's own sends are announced: {seen:?}"
    );
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_changes_are_not_announced() {
    let server = TestServer::start().await;
    let mut alice = online_as(&server, "alice").await;
    let bob = online_as(&server, "bob").await;
    let mut carol = online_as(&server, "carol").await;

    let group_id = alice.account.create_group("team", &["bob"]).await.unwrap();
    alice
        .account
        .add_group_members(&group_id, &["carol"])
        .await
        .unwrap();
    // The group messages queued for the two changes leave before this one.
    let hello = alice
        .account
        .send_text(&Conversation::Group(group_id), "hello team")
        .unwrap();
    let seen = events_until_sent(&mut alice.events, hello).await;
    assert_eq!(announced(&seen), vec![hello], "{seen:?}");
    assert_eq!(next_text(&mut carol.events).await.text, "hello team");
    assert_eq!(alice.account.outbox_len().unwrap(), 0);
    for d in [&alice, &bob, &carol] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

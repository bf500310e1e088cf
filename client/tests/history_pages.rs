//! History in pages and the delivery state of our own messages, through
//! a real server: paging with a cursor (stable while new messages arrive,
//! bound to its conversation), and queued → sent → delivered → read as the
//! recipient receives and reads, with receipts never moving a message
//! backwards and receipts from outsiders ignored.
use crate::common;

use common::*;
use microbot_client::{
    Account, Conversation, DeliveryStage, Event, HistoryCursor, HistoryError, IdentitySource,
    MessageId, MessageSnapshot, MessageStatus, ReceiptKind,
};

fn text_of(snapshot: &MessageSnapshot) -> String {
    match &snapshot.status {
        MessageStatus::Visible { text, .. } => text.clone(),
        other => panic!("not visible: {other:?}"),
    }
}

fn texts(snapshots: &[MessageSnapshot]) -> Vec<String> {
    snapshots.iter().map(text_of).collect()
}

/// The delivery stage of our message `id`.
fn stage(account: &Account, id: &MessageId) -> DeliveryStage {
    account
        .message(account.username(), id)
        .unwrap()
        .expect("our message is stored")
        .delivery
        .expect("our own message has a delivery state")
        .stage
}

/// Waits for a receipt of `kind` from `from` naming `id`.
async fn receipt(
    events: &mut microbot_client::Events,
    kind: ReceiptKind,
    from: &str,
    id: MessageId,
) {
    wait_for(events, |e| match e {
        Event::Receipt {
            kind: k,
            from: f,
            message_ids,
            ..
        } if *k == kind && f == from && message_ids.contains(&id) => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_back_ten_at_a_time_gets_every_message_once_and_in_order() {
    let server = TestServer::start().await;
    let mut alice = online_as(&server, "alice").await;
    let mut bob = online_as(&server, "bob").await;
    let _carol = online_as(&server, "carol").await;
    let to_bob = Conversation::Direct("bob".into());
    let to_alice = Conversation::Direct("alice".into());

    // 25 messages, both directions, each stored before the next is written.
    let expected: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
    for (i, text) in expected.iter().enumerate() {
        if i % 3 == 1 {
            bob.account.send_text(&to_alice, text).unwrap();
            assert_eq!(next_text(&mut alice.events).await.text, *text);
        } else {
            alice.account.send_text(&to_bob, text).unwrap();
            assert_eq!(next_text(&mut bob.events).await.text, *text);
        }
    }

    let first = alice.account.history_page(&to_bob, None, 10).unwrap();
    assert_eq!(texts(&first.messages), expected[15..]);
    let older = first.older.expect("older messages exist");
    // The newest page is what `history` shows.
    assert_eq!(
        texts(&alice.account.history(&to_bob, 10).unwrap()),
        texts(&first.messages)
    );

    // A message arriving between pages does not shift them.
    bob.account.send_text(&to_alice, "late").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "late");

    // The cursor goes through its text form, as an app would keep it.
    let older = HistoryCursor::from_text(&older.to_text()).unwrap();
    let second = alice
        .account
        .history_page(&to_bob, Some(&older), 10)
        .unwrap();
    assert_eq!(texts(&second.messages), expected[5..15]);
    let third = alice
        .account
        .history_page(&to_bob, second.older.as_ref(), 10)
        .unwrap();
    assert_eq!(texts(&third.messages), expected[..5]);
    assert_eq!(third.older, None, "nothing older than the first message");

    let mut all = texts(&third.messages);
    all.extend(texts(&second.messages));
    all.extend(texts(&first.messages));
    assert_eq!(all, expected, "every message exactly once, in order");
    let newest = alice.account.history(&to_bob, 10).unwrap();
    assert_eq!(texts(&newest).last().map(String::as_str), Some("late"));
    assert_eq!(texts(&newest)[..9], expected[16..]);

    // A cursor of the conversation with Carol does not page Bob's.
    let to_carol = Conversation::Direct("carol".into());
    alice.account.send_text(&to_carol, "c1").unwrap();
    alice.account.send_text(&to_carol, "c2").unwrap();
    let carol_page = alice.account.history_page(&to_carol, None, 1).unwrap();
    assert_eq!(texts(&carol_page.messages), ["c2"]);
    let carol_cursor = carol_page.older.expect("c1 is older");
    assert!(matches!(
        alice.account.history_page(&to_bob, Some(&carol_cursor), 10),
        Err(HistoryError::ForeignCursor)
    ));
    let carol_rest = alice
        .account
        .history_page(&to_carol, Some(&carol_cursor), 10)
        .unwrap();
    assert_eq!(texts(&carol_rest.messages), ["c1"]);
    assert_eq!(carol_rest.older, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_message_goes_queued_sent_delivered_read_and_stays_read() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    // Alice enrolled, not connected yet; Bob published his keys and went
    // offline.
    let mut alice = enrol(
        &server,
        &mut alice_user,
        IdentitySource::New,
        fast_config(),
        None,
    )
    .await;
    let mut bob = online_as(&server, "bob").await;
    bob.account.disconnect().await;
    let carol = online_as(&server, "carol").await;
    let to_bob = Conversation::Direct("bob".into());
    let to_alice = Conversation::Direct("alice".into());

    let id = alice.account.send_text(&to_bob, "how far?").unwrap();
    assert_eq!(stage(&alice.account, &id), DeliveryStage::Queued);
    let page = alice.account.history_page(&to_bob, None, 10).unwrap();
    let delivery = page.messages[0].delivery.clone().expect("ours");
    assert_eq!(delivery.stage, DeliveryStage::Queued);
    assert!(delivery.delivered_to.is_empty() && delivery.read_by.is_empty());

    // Online: the server stores it; Bob is offline, so nothing more yet.
    alice.account.connect();
    let stored_at = wait_for(&mut alice.events, |e| match e {
        Event::Sent {
            message_id,
            server_timestamp_ms,
        } if *message_id == id => Some(*server_timestamp_ms),
        _ => None,
    })
    .await;
    assert_eq!(stage(&alice.account, &id), DeliveryStage::Sent);
    let sent = alice
        .account
        .message("alice", &id)
        .unwrap()
        .and_then(|m| m.delivery)
        .unwrap();
    assert_eq!(
        sent.server_timestamp_ms,
        Some(stored_at),
        "the server's time stamp is kept"
    );

    // Bob comes online, receives it and sends a delivery receipt.
    bob.account.connect();
    assert_eq!(next_text(&mut bob.events).await.message_id, id);
    receipt(&mut alice.events, ReceiptKind::Delivered, "bob", id).await;
    let delivered = alice.account.message("alice", &id).unwrap().unwrap();
    let state = delivered.delivery.expect("ours");
    assert_eq!(state.stage, DeliveryStage::Delivered);
    assert_eq!(state.delivered_to, ["bob"]);
    assert!(state.read_by.is_empty());
    // Bob's copy is someone else's message: no delivery state.
    let bobs = bob.account.message("alice", &id).unwrap().unwrap();
    assert_eq!(bobs.delivery, None);

    // Carol is not in this conversation: her receipt naming it is ignored.
    carol
        .account
        .mark_read(&Conversation::Direct("alice".into()), &[id])
        .unwrap();
    receipt(&mut alice.events, ReceiptKind::Read, "carol", id).await;
    assert_eq!(stage(&alice.account, &id), DeliveryStage::Delivered);

    bob.account.mark_read(&to_alice, &[id]).unwrap();
    receipt(&mut alice.events, ReceiptKind::Read, "bob", id).await;
    let read = alice.account.message("alice", &id).unwrap().unwrap();
    let state = read.delivery.expect("ours");
    assert_eq!(state.stage, DeliveryStage::Read);
    assert_eq!(state.read_by, ["bob"]);
    assert_eq!(state.delivered_to, ["bob"]);

    // A late delivery receipt does not move it back.
    bob.account.mark_delivered(&to_alice, &[id]).unwrap();
    receipt(&mut alice.events, ReceiptKind::Delivered, "bob", id).await;
    assert_eq!(stage(&alice.account, &id), DeliveryStage::Read);
    let newest = alice.account.history(&to_bob, 1).unwrap();
    assert_eq!(
        newest[0].delivery.as_ref().map(|d| d.stage),
        Some(DeliveryStage::Read)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_names_the_members_it_reached_and_who_read_it() {
    let server = TestServer::start().await;
    let mut alice = online_as(&server, "alice").await;
    let mut bob = online_as(&server, "bob").await;
    let mut carol = online_as(&server, "carol").await;
    let group_id = alice
        .account
        .create_group("team", &["bob", "carol"])
        .await
        .unwrap();
    let group = Conversation::Group(group_id);

    let id = alice.account.send_text(&group, "hello team").unwrap();
    assert_eq!(next_text(&mut bob.events).await.message_id, id);
    assert_eq!(next_text(&mut carol.events).await.message_id, id);
    // No automatic receipts in groups: sent until members say more.
    wait_for(&mut alice.events, |e| match e {
        Event::Sent { message_id, .. } if *message_id == id => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(stage(&alice.account, &id), DeliveryStage::Sent);

    carol.account.mark_delivered(&group, &[id]).unwrap();
    receipt(&mut alice.events, ReceiptKind::Delivered, "carol", id).await;
    bob.account.mark_read(&group, &[id]).unwrap();
    receipt(&mut alice.events, ReceiptKind::Read, "bob", id).await;
    let state = alice
        .account
        .message("alice", &id)
        .unwrap()
        .unwrap()
        .delivery
        .expect("ours");
    assert_eq!(state.stage, DeliveryStage::Read);
    assert_eq!(state.delivered_to, ["bob", "carol"]);
    assert_eq!(state.read_by, ["bob"]);
}

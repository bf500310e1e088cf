//! Own-device sync (SPEC.md §11.7) through the SDK against a real server:
//! what one device of an account sends or reads shows on its other devices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use common::*;
use microbot_client::{Conversation, Event, IdentitySource, ReceiptKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_on_one_device_shows_as_sent_with_its_destination_on_the_other() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let alice_a = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let linked = IdentitySource::Linked(alice_a.account.export_identity());
    let mut alice_b = online(&server, &mut alice_user, linked, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;

    let to_bob = Conversation::Direct("bob".into());
    let id = alice_a.account.send_text(&to_bob, "hello bob").unwrap();
    assert_eq!(next_text(&mut bob.events).await.message_id, id);
    let copy = next_text(&mut alice_b.events).await;
    assert_eq!(
        (copy.author.as_str(), copy.text.as_str()),
        ("alice", "hello bob")
    );
    assert_eq!(copy.conversation, to_bob);
    assert_eq!(copy.message_id, id);

    // An edit and a delete from device A reach device B's copy too.
    alice_a.account.edit(&to_bob, id, "hello, bob").unwrap();
    wait_for(&mut alice_b.events, |e| match e {
        Event::Edited { target, text, .. } if *target == id => Some(text.clone()),
        _ => None,
    })
    .await;
    let history = alice_b.account.history(&to_bob, 5).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].author, "alice");
    assert!(matches!(
        &history[0].status,
        microbot_client::MessageStatus::Visible { text, .. } if text == "hello, bob"
    ));
    alice_a.account.delete(&to_bob, id).unwrap();
    wait_for(&mut alice_b.events, |e| match e {
        Event::Deleted {
            target,
            conversation,
            ..
        } if *target == id => Some(conversation.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        alice_b
            .account
            .message("alice", &id)
            .unwrap()
            .unwrap()
            .status,
        microbot_client::MessageStatus::Deleted
    );
    for d in [&alice_a, &alice_b, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_one_device_marks_the_message_read_on_the_other() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice_a = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let linked = IdentitySource::Linked(alice_a.account.export_identity());
    let mut alice_b = online(&server, &mut alice_user, linked, fast_config()).await;
    let bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;

    let to_alice = Conversation::Direct("alice".into());
    let id = bob.account.send_text(&to_alice, "read me").unwrap();
    assert_eq!(next_text(&mut alice_a.events).await.message_id, id);
    assert_eq!(next_text(&mut alice_b.events).await.message_id, id);
    let unshown_ids = |device: &Device| -> Vec<microbot_client::MessageId> {
        device
            .account
            .unshown(0, 100)
            .unwrap()
            .into_iter()
            .filter_map(|u| match u.event {
                Some(Event::Message(m)) => Some(m.message_id),
                _ => None,
            })
            .collect()
    };
    assert_eq!(unshown_ids(&alice_b), vec![id]);

    let to_bob = Conversation::Direct("bob".into());
    alice_a.account.mark_read(&to_bob, &[id]).unwrap();
    let (from, conversation) = wait_for(&mut alice_b.events, |e| match e {
        Event::Receipt {
            from,
            conversation,
            kind: ReceiptKind::Read,
            message_ids,
        } if message_ids.contains(&id) => Some((from.clone(), conversation.clone())),
        _ => None,
    })
    .await;
    assert_eq!((from.as_str(), conversation), ("alice", to_bob));
    assert!(
        unshown_ids(&alice_b).is_empty(),
        "device B still lists the message device A read"
    );
    for d in [&alice_a, &alice_b, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

//! Edits and deletes converge to one state on every device, whatever order
//! they arrive in; and the prekey stock is refilled when it runs low.
use crate::common;

use std::time::Duration;

use common::*;
use microbot_client::{Conversation, Event, IdentitySource, MessageStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_and_a_delete_converge_on_every_device() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice1 = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let linked = IdentitySource::Linked(alice1.account.export_identity());
    let mut alice2 = online(&server, &mut alice_user, linked, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_bob = Conversation::Direct("bob".into());

    let original = alice1.account.send_text(&to_bob, "original").unwrap();
    assert_eq!(next_text(&mut bob.events).await.message_id, original);
    assert_eq!(next_text(&mut alice2.events).await.message_id, original);

    // Both of Alice's devices edit while offline from each other: each sees
    // its own edit first and the other's later; Bob sees them in send order.
    alice1.account.disconnect().await;
    alice2.account.disconnect().await;
    alice1
        .account
        .edit(&to_bob, original, "edit from one")
        .unwrap();
    alice2
        .account
        .edit(&to_bob, original, "edit from two")
        .unwrap();
    alice2.account.connect();
    alice1.account.connect();
    wait_for(&mut bob.events, |e| {
        matches!(e, Event::Edited { .. }).then_some(())
    })
    .await;
    wait_for(&mut bob.events, |e| {
        matches!(e, Event::Edited { .. }).then_some(())
    })
    .await;
    wait_for(&mut alice1.events, |e| {
        matches!(e, Event::Edited { .. }).then_some(())
    })
    .await;
    wait_for(&mut alice2.events, |e| {
        matches!(e, Event::Edited { .. }).then_some(())
    })
    .await;

    let views: Vec<_> = [&alice1, &alice2, &bob]
        .iter()
        .map(|d| {
            d.account
                .message("alice", &original)
                .unwrap()
                .unwrap()
                .status
        })
        .collect();
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1], views[2]);
    let MessageStatus::Visible { text, edited, .. } = &views[0] else {
        panic!("{:?}", views[0])
    };
    assert!(text == "edit from one" || text == "edit from two");
    assert_eq!(edited.map(|(revision, _)| revision), Some(1));

    // A later edit (revision 2) wins everywhere; then a delete wins over all.
    alice2
        .account
        .edit(&to_bob, original, "final words")
        .unwrap();
    for d in [&mut alice1, &mut bob] {
        let text = wait_for(&mut d.events, |e| match e {
            Event::Edited { text, .. } => Some(text.clone()),
            _ => None,
        })
        .await;
        assert_eq!(text, "final words");
    }
    alice1.account.delete(&to_bob, original).unwrap();
    for d in [&mut alice2, &mut bob] {
        wait_for(&mut d.events, |e| {
            matches!(e, Event::Deleted { .. }).then_some(())
        })
        .await;
    }
    // Give the sender's own state a moment (it applied its delete locally).
    tokio::time::sleep(Duration::from_millis(50)).await;
    for d in [&alice1, &alice2, &bob] {
        assert_eq!(
            d.account
                .message("alice", &original)
                .unwrap()
                .unwrap()
                .status,
            MessageStatus::Deleted
        );
    }
    // Bob cannot edit Alice's message.
    assert!(
        bob.account
            .edit(&Conversation::Direct("alice".into()), original, "x")
            .is_err()
    );
    for d in [&alice1, &alice2, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prekey_stock_is_refilled_when_the_server_says_it_is_low() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut small = fast_config();
    small.prekey_batch = 11;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, small).await;
    assert_eq!(
        alice
            .account
            .prekey_status()
            .await
            .unwrap()
            .one_time_prekeys,
        11
    );
    // Bob re-fetches Alice's bundles on every send: each takes a one-time prekey.
    let mut eager = fast_config();
    eager.device_refresh = Duration::ZERO;
    let bob = online(&server, &mut bob_user, IdentitySource::New, eager).await;
    let to_alice = Conversation::Direct("alice".into());
    bob.account.send_text(&to_alice, "one").unwrap();
    next_text(&mut alice.events).await;
    bob.account.send_text(&to_alice, "two").unwrap();
    // The low-stock push comes with the second fetch, before the message.
    let (mut uploaded, mut got_two) = (None, false);
    while uploaded.is_none() || !got_two {
        wait_for(&mut alice.events, |e| match e {
            Event::PrekeysRefilled { uploaded: n } => {
                uploaded = Some(*n);
                Some(())
            }
            Event::Message(m) if m.text == "two" => {
                got_two = true;
                Some(())
            }
            _ => None,
        })
        .await;
    }
    let uploaded = uploaded.unwrap();
    assert_eq!(uploaded, 11);
    let stock = alice
        .account
        .prekey_status()
        .await
        .unwrap()
        .one_time_prekeys;
    assert!(stock >= 11 + 9, "stock after refill: {stock}");
    // Sessions made with the refilled keys work.
    bob.account.send_text(&to_alice, "three").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "three");
    alice.account.disconnect().await;
    bob.account.disconnect().await;
    server.stop().await;
}

//! The shown flag of received messages (issue 14, what the CLI's `recv`
//! builds on): every received text, edit and reaction waits as unshown,
//! rebuilt as the event it raised, until marked; our own sends never do.
use crate::common;

use common::*;
use microbot_client::{Conversation, Event, IdentitySource};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_messages_wait_unshown_until_marked() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_bob = Conversation::Direct("bob".into());
    let id = alice.account.send_text(&to_bob, "one").unwrap();
    alice.account.edit(&to_bob, id, "uno").unwrap();
    alice.account.react(&to_bob, id, "👍", false).unwrap();
    wait_for(&mut bob.events, |e| {
        matches!(e, Event::Reaction { .. }).then_some(())
    })
    .await;

    let unshown = bob.account.unshown(0, 10).unwrap();
    assert_eq!(unshown.len(), 3, "{unshown:?}");
    // Each as it was raised: the text before its edit, then the edit.
    match &unshown[0].event {
        Some(Event::Message(m)) => assert_eq!((m.text.as_str(), m.message_id), ("one", id)),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&unshown[1].event, Some(Event::Edited { text, target, .. }) if text == "uno" && *target == id)
    );
    assert!(matches!(&unshown[2].event, Some(Event::Reaction { emoji, .. }) if emoji == "👍"));
    assert!(unshown[0].seq < unshown[1].seq && unshown[1].seq < unshown[2].seq);
    // Paging from a position, and nothing of our own.
    assert_eq!(bob.account.unshown(unshown[1].seq, 10).unwrap().len(), 1);
    assert!(alice.account.unshown(0, 10).unwrap().is_empty());

    bob.account.mark_shown(unshown[0].seq).unwrap();
    assert_eq!(bob.account.unshown(0, 10).unwrap().len(), 2);
    // A view that showed the message as it is now marks its edit and reactions too.
    bob.account.mark_message_shown("alice", &id).unwrap();
    assert!(bob.account.unshown(0, 10).unwrap().is_empty());
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

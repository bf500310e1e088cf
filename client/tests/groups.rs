//! Groups through a real server: every content kind in a group (with an
//! own second device), removal with sender-key rotation, leave and rename
//! announcements, a new member reading only later messages, concurrent
//! admin changes resolved by refetch-and-retry, and offline group sends
//! leaving the outbox in order.
use crate::common;

use std::time::Duration;

use common::*;
use microbot_client::{
    Conversation, Event, GroupError, GroupId, GroupRole, GroupUpdate, IdentitySource,
    MessageStatus, ReceiptKind, SendError,
};

/// Waits for a `GroupChanged` of `id` that `f` accepts.
async fn group_update<T>(
    events: &mut microbot_client::Events,
    id: GroupId,
    mut f: impl FnMut(&GroupUpdate) -> Option<T>,
) -> T {
    wait_for(events, |e| match e {
        Event::GroupChanged {
            group_id, update, ..
        } if *group_id == id => f(update),
        _ => None,
    })
    .await
}

async fn created(events: &mut microbot_client::Events, id: GroupId) -> (String, String) {
    group_update(events, id, |u| match u {
        GroupUpdate::Created { by, name } => Some((by.clone(), name.clone())),
        _ => None,
    })
    .await
}

fn names(members: &[microbot_client::GroupMember]) -> Vec<String> {
    let mut names: Vec<String> = members.iter().map(|m| m.username.clone()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_carries_every_content_kind_to_every_member_device() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut carol_user = register(&server, "carol").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let linked = IdentitySource::Linked(alice.account.export_identity());
    let mut alice2 = online(&server, &mut alice_user, linked, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let mut carol = online(&server, &mut carol_user, IdentitySource::New, fast_config()).await;

    let id = alice
        .account
        .create_group("friends", &["bob", "carol"])
        .await
        .unwrap();
    let group = Conversation::Group(id);
    assert_eq!(
        created(&mut alice.events, id).await,
        ("alice".into(), "friends".into())
    );
    for device in [&mut bob, &mut carol, &mut alice2] {
        assert_eq!(
            created(&mut device.events, id).await,
            ("alice".into(), "friends".into())
        );
    }
    let info = bob.account.group(&id).unwrap().unwrap();
    assert_eq!(info.name, "friends");
    assert_eq!(names(&info.members), ["alice", "bob", "carol"]);
    assert!(info.active);
    let alice_role = info
        .members
        .iter()
        .find(|m| m.username == "alice")
        .unwrap()
        .role;
    assert_eq!(alice_role, GroupRole::Admin);
    assert_eq!(carol.account.groups().unwrap().len(), 1);

    // A text reaches every other member device, and Alice's second device.
    let hello = alice.account.send_text(&group, "hello group").unwrap();
    for device in [&mut bob, &mut carol, &mut alice2] {
        let got = next_text(&mut device.events).await;
        assert_eq!(
            (got.author.as_str(), got.text.as_str()),
            ("alice", "hello group")
        );
        assert_eq!(got.conversation, group);
        assert_eq!(got.message_id, hello);
    }
    // A reply from Bob (his first group message: his own sender key).
    let reply = bob
        .account
        .send_reply(&group, "hi all", "alice", hello, "hello group")
        .unwrap();
    for device in [&mut alice, &mut carol, &mut alice2] {
        let got = next_text(&mut device.events).await;
        assert_eq!((got.author.as_str(), got.text.as_str()), ("bob", "hi all"));
        assert_eq!(got.reply_to, Some(hello));
        assert_eq!(got.message_id, reply);
    }
    // Reaction, read receipt, typing from Carol.
    carol.account.react(&group, hello, "🎉", false).unwrap();
    carol.account.mark_read(&group, &[hello]).unwrap();
    carol.account.typing(&group, true).unwrap();
    let reaction = wait_for(&mut alice.events, |e| match e {
        Event::Reaction {
            conversation,
            from,
            emoji,
            ..
        } if *conversation == group => Some((from.clone(), emoji.clone())),
        _ => None,
    })
    .await;
    assert_eq!(reaction, ("carol".into(), "🎉".into()));
    wait_for(&mut alice.events, |e| match e {
        Event::Receipt {
            conversation,
            kind: ReceiptKind::Read,
            from,
            message_ids,
        } if *conversation == group && from == "carol" => {
            message_ids.contains(&hello).then_some(())
        }
        _ => None,
    })
    .await;
    wait_for(&mut bob.events, |e| match e {
        Event::Typing {
            conversation, from, ..
        } if *conversation == group && from == "carol" => Some(()),
        _ => None,
    })
    .await;
    // Edit and delete by the author converge on every device.
    alice.account.edit(&group, hello, "hello, edited").unwrap();
    for device in [&mut bob, &mut carol, &mut alice2] {
        let text = wait_for(&mut device.events, |e| match e {
            Event::Edited { target, text, .. } if *target == hello => Some(text.clone()),
            _ => None,
        })
        .await;
        assert_eq!(text, "hello, edited");
    }
    bob.account.delete(&group, reply).unwrap();
    for device in [&mut alice, &mut carol] {
        wait_for(&mut device.events, |e| match e {
            Event::Deleted { target, author, .. } if *target == reply && author == "bob" => {
                Some(())
            }
            _ => None,
        })
        .await;
    }
    let history = carol.account.history(&group, 10).unwrap();
    let shown: Vec<_> = history
        .iter()
        .map(|m| (m.author.clone(), m.status.clone()))
        .collect();
    assert!(
        matches!(&shown[0], (a, MessageStatus::Visible { text, .. }) if a == "alice" && text == "hello, edited")
    );
    assert!(matches!(&shown[1], (a, MessageStatus::Deleted) if a == "bob"));
    assert_eq!(
        carol.account.reactions(&hello).unwrap(),
        vec![("carol".to_owned(), "🎉".to_owned())]
    );
    // No automatic delivery receipts in groups.
    assert!(
        !std::iter::from_fn(|| carol.events.try_next()).any(|e| matches!(
            e,
            Event::Receipt {
                kind: ReceiptKind::Delivered,
                ..
            }
        ))
    );
    for d in [&alice, &alice2, &bob, &carol] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_receives_nothing_after_its_removal() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut carol_user = register(&server, "carol").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let mut carol = online(&server, &mut carol_user, IdentitySource::New, fast_config()).await;
    let id = alice
        .account
        .create_group("team", &["bob", "carol"])
        .await
        .unwrap();
    let group = Conversation::Group(id);
    alice.account.send_text(&group, "before").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "before");
    bob.account.send_text(&group, "bob before").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "bob before");
    for _ in 0..2 {
        next_text(&mut carol.events).await;
    }

    let info = alice
        .account
        .remove_group_members(&id, &["carol"])
        .await
        .unwrap();
    assert_eq!(names(&info.members), ["alice", "bob"]);
    for device in [&mut carol, &mut bob] {
        let removed = group_update(&mut device.events, id, |u| match u {
            GroupUpdate::MembersRemoved { usernames } => Some(usernames.clone()),
            _ => None,
        })
        .await;
        assert_eq!(removed, ["carol"]);
    }
    let carol_view = carol.account.group(&id).unwrap().unwrap();
    assert!(!carol_view.active);
    assert!(matches!(
        carol.account.send_text(&group, "still here?"),
        Err(SendError::NotGroupMember)
    ));

    // Both remaining members send (Alice with a rotated key); only Bob and
    // Alice read it, Carol's device gets nothing at all.
    alice.account.send_text(&group, "after").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "after");
    bob.account.send_text(&group, "bob after").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "bob after");
    let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, carol.events.next()).await {
        assert!(
            !matches!(event, Event::Message(_) | Event::DecryptionFailed { .. }),
            "the removed member got {event:?}"
        );
    }
    let texts: Vec<_> = carol
        .account
        .history(&group, 10)
        .unwrap()
        .into_iter()
        .map(|m| m.author)
        .collect();
    assert_eq!(texts, ["alice", "bob"], "only the messages from before");
    // The name was re-keyed: Bob still has it.
    assert_eq!(bob.account.group(&id).unwrap().unwrap().name, "team");
    for d in [&alice, &bob, &carol] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_renaming_are_announced_to_the_members() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut carol_user = register(&server, "carol").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let mut carol = online(&server, &mut carol_user, IdentitySource::New, fast_config()).await;
    let id = alice
        .account
        .create_group("old name", &["bob", "carol"])
        .await
        .unwrap();
    let group = Conversation::Group(id);
    created(&mut bob.events, id).await;
    created(&mut carol.events, id).await;

    bob.account.send_text(&group, "bye").unwrap();
    bob.account.leave_group(&id).await.unwrap();
    for device in [&mut alice, &mut carol] {
        assert_eq!(next_text(&mut device.events).await.text, "bye");
        let left = group_update(&mut device.events, id, |u| match u {
            GroupUpdate::Left { username } => Some(username.clone()),
            GroupUpdate::MembersRemoved { .. } => panic!("a leave reported as a removal"),
            _ => None,
        })
        .await;
        assert_eq!(left, "bob");
    }
    let bob_view = bob.account.group(&id).unwrap().unwrap();
    assert!(!bob_view.active);
    assert!(matches!(
        bob.account.send_text(&group, "x"),
        Err(SendError::NotGroupMember)
    ));
    assert!(matches!(
        bob.account.leave_group(&id).await,
        Err(GroupError::NotMember)
    ));

    let info = alice.account.rename_group(&id, "new name").await.unwrap();
    assert_eq!(info.name, "new name");
    let renamed = group_update(&mut carol.events, id, |u| match u {
        GroupUpdate::Renamed { name } => Some(name.clone()),
        _ => None,
    })
    .await;
    assert_eq!(renamed, "new name");
    assert_eq!(carol.account.group(&id).unwrap().unwrap().name, "new name");
    assert_eq!(
        names(&carol.account.group(&id).unwrap().unwrap().members),
        ["alice", "carol"]
    );
    // Bob left before the rename: he keeps the old name.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bob.account.group(&id).unwrap().unwrap().name, "old name");
    // Only admins rename.
    let refused = carol.account.rename_group(&id, "mine").await.unwrap_err();
    match refused {
        GroupError::Transport(e) => {
            assert_eq!(
                e.server_code(),
                Some(microbot_client::ErrorCode::NotGroupAdmin)
            );
        }
        other => panic!("{other:?}"),
    }
    for d in [&alice, &bob, &carol] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_gets_the_name_and_only_later_messages() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut dave_user = register(&server, "dave").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let mut dave = online(&server, &mut dave_user, IdentitySource::New, fast_config()).await;
    let id = alice.account.create_group("club", &["bob"]).await.unwrap();
    let group = Conversation::Group(id);
    alice.account.send_text(&group, "one").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "one");

    let info = alice
        .account
        .add_group_members(&id, &["dave", "bob"])
        .await
        .unwrap();
    assert_eq!(names(&info.members), ["alice", "bob", "dave"]);
    let added = group_update(&mut dave.events, id, |u| match u {
        GroupUpdate::MembersAdded { usernames } => Some(usernames.clone()),
        _ => None,
    })
    .await;
    assert_eq!(added, ["dave"]);
    let added = group_update(&mut bob.events, id, |u| match u {
        GroupUpdate::MembersAdded { usernames } => Some(usernames.clone()),
        _ => None,
    })
    .await;
    assert_eq!(added, ["dave"]);
    alice.account.send_text(&group, "two").unwrap();
    bob.account.send_text(&group, "three").unwrap();
    let mut got = [
        next_text(&mut dave.events).await,
        next_text(&mut dave.events).await,
    ];
    got.sort_by(|a, b| a.text.cmp(&b.text));
    assert_eq!(
        got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["three", "two"]
    );
    assert_eq!(dave.account.group(&id).unwrap().unwrap().name, "club");
    assert_eq!(
        dave.account.history(&group, 10).unwrap().len(),
        2,
        "nothing from before"
    );
    for d in [&alice, &bob, &dave] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admin_changes_are_retried_on_a_stale_version() {
    let server = TestServer::start().await;
    let mut users = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        users.push(register(&server, name).await);
    }
    let mut alice = online(&server, &mut users[0], IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut users[1], IdentitySource::New, fast_config()).await;
    let id = alice
        .account
        .create_group("admins", &["bob"])
        .await
        .unwrap();
    alice
        .account
        .set_group_role(&id, "bob", GroupRole::Admin)
        .await
        .unwrap();
    group_update(&mut bob.events, id, |u| {
        matches!(u, GroupUpdate::RolesChanged).then_some(())
    })
    .await;
    assert_eq!(bob.account.group(&id).unwrap().unwrap().version, 2);

    // Both admins change the group at version 2 at once: the server takes
    // one, refuses the other as stale, which refetches and retries.
    let (a, b) = tokio::join!(
        alice.account.add_group_members(&id, &["carol"]),
        bob.account.add_group_members(&id, &["dave"]),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.version.max(b.version),
        4,
        "two changes, one after the other"
    );
    let refreshed = alice.account.refresh_group(&id).await.unwrap().unwrap();
    assert_eq!(refreshed.version, 4);
    assert_eq!(names(&refreshed.members), ["alice", "bob", "carol", "dave"]);
    // Re-adding a member already present is no change at all.
    let again = bob
        .account
        .add_group_members(&id, &["carol"])
        .await
        .unwrap();
    assert_eq!(again.version, 4);
    let _ = &mut alice.events;
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_sends_made_offline_wait_in_the_outbox_and_leave_in_order() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let id = alice.account.create_group("later", &["bob"]).await.unwrap();
    created(&mut bob.events, id).await;
    let group = Conversation::Group(id);
    alice.account.disconnect().await;
    assert!(matches!(
        alice.account.create_group("offline", &["bob"]).await,
        Err(GroupError::NotConnected)
    ));
    let mut ids = Vec::new();
    for text in ["first", "second", "third"] {
        ids.push(alice.account.send_text(&group, text).unwrap());
    }
    assert_eq!(alice.account.outbox_len().unwrap(), 3);
    no_text_within(&mut bob.events, Duration::from_millis(300)).await;
    alice.account.connect();
    for expected in ["first", "second", "third"] {
        assert_eq!(next_text(&mut bob.events).await.text, expected);
    }
    // (The outbox drains before `Connected` is reported.)
    while !ids.is_empty() {
        let sent = wait_for(&mut alice.events, |e| match e {
            Event::Sent { message_id, .. } => Some(*message_id),
            _ => None,
        })
        .await;
        ids.retain(|id| *id != sent);
    }
    assert_eq!(alice.account.outbox_len().unwrap(), 0);
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_offline_at_creation_learns_the_group_and_its_name_on_connect() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    bob.account.disconnect().await;
    let id = alice
        .account
        .create_group("while away", &["bob"])
        .await
        .unwrap();
    let group = Conversation::Group(id);
    alice.account.send_text(&group, "welcome").unwrap();
    alice
        .account
        .rename_group(&id, "renamed while away")
        .await
        .unwrap();
    while alice.account.outbox_len().unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(bob.account.groups().unwrap().is_empty());

    bob.account.connect();
    // The creation is reported once the name is confirmed by the server's
    // sealed copy (here: after the rename's key arrived), so the message
    // may come first.
    let (mut creation, mut text) = (None, None);
    while creation.is_none() || text.is_none() {
        wait_for(&mut bob.events, |e| match e {
            Event::GroupChanged {
                group_id,
                update: GroupUpdate::Created { by, name },
                ..
            } if *group_id == id => {
                creation = Some((by.clone(), name.clone()));
                Some(())
            }
            Event::Message(m) => {
                text = Some((m.conversation.clone(), m.text.clone()));
                Some(())
            }
            _ => None,
        })
        .await;
    }
    assert_eq!(
        creation.unwrap(),
        ("alice".to_owned(), "renamed while away".to_owned())
    );
    assert_eq!(text.unwrap(), (group, "welcome".to_owned()));
    let info = bob.account.group(&id).unwrap().unwrap();
    assert_eq!(info.name, "renamed while away");
    assert_eq!(info.version, 2);
    assert!(info.active);
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_new_device_gets_the_sender_key_for_later_messages() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut config = fast_config();
    config.device_refresh = Duration::ZERO;
    let alice = online(&server, &mut alice_user, IdentitySource::New, config).await;
    let mut bob1 = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let id = alice
        .account
        .create_group("devices", &["bob"])
        .await
        .unwrap();
    let group = Conversation::Group(id);
    alice.account.send_text(&group, "one").unwrap();
    assert_eq!(next_text(&mut bob1.events).await.text, "one");

    let linked = IdentitySource::Linked(bob1.account.export_identity());
    let mut bob2 = online(&server, &mut bob_user, linked, fast_config()).await;
    alice.account.send_text(&group, "two").unwrap();
    assert_eq!(next_text(&mut bob1.events).await.text, "two");
    let got = next_text(&mut bob2.events).await;
    assert_eq!(
        (got.conversation, got.text.as_str()),
        (group.clone(), "two")
    );
    // Bob's new device writes to the group too.
    bob2.account.send_text(&group, "from bob2").unwrap();
    assert_eq!(next_text(&mut bob1.events).await.text, "from bob2");
    for d in [&alice, &bob1, &bob2] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

/// Issue 14: with the default 600 s device-list cache, a member's device
/// linked after the last group message gets the sender key before the very
/// next one (SPEC.md §12.10, `key_holders`), from another member and from
/// the account's own first device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_newly_linked_device_gets_the_very_next_group_message() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    assert_eq!(fast_config().device_refresh, Duration::from_secs(600));
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob1 = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let id = alice.account.create_group("fresh", &["bob"]).await.unwrap();
    let group = Conversation::Group(id);
    alice.account.send_text(&group, "one").unwrap();
    assert_eq!(next_text(&mut bob1.events).await.text, "one");
    bob1.account.send_text(&group, "one back").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "one back");

    let linked = IdentitySource::Linked(bob1.account.export_identity());
    let mut bob2 = online(&server, &mut bob_user, linked, fast_config()).await;
    alice.account.send_text(&group, "two").unwrap();
    let got = next_text(&mut bob2.events).await;
    assert_eq!(
        (got.conversation, got.text.as_str()),
        (group.clone(), "two")
    );
    assert_eq!(next_text(&mut bob1.events).await.text, "two");
    // Bob's first device, whose list of its own devices is fresh, too.
    bob1.account.send_text(&group, "two back").unwrap();
    assert_eq!(next_text(&mut bob2.events).await.text, "two back");
    assert_eq!(next_text(&mut alice.events).await.text, "two back");
    for d in [&alice, &bob1, &bob2] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_offline_are_caught_up_on_connect() {
    let server = TestServer::start().await;
    let mut users = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        users.push(register(&server, name).await);
    }
    let alice = online(&server, &mut users[0], IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut users[1], IdentitySource::New, fast_config()).await;
    let mut carol = online(&server, &mut users[2], IdentitySource::New, fast_config()).await;
    let mut dave = online(&server, &mut users[3], IdentitySource::New, fast_config()).await;
    let id = alice
        .account
        .create_group("catch up", &["bob", "carol", "dave"])
        .await
        .unwrap();
    for device in [&mut bob, &mut carol, &mut dave] {
        created(&mut device.events, id).await;
    }
    carol.account.disconnect().await;
    dave.account.disconnect().await;
    bob.account.leave_group(&id).await.unwrap();
    alice
        .account
        .remove_group_members(&id, &["dave"])
        .await
        .unwrap();
    alice
        .account
        .send_text(&Conversation::Group(id), "news")
        .unwrap();
    while alice.account.outbox_len().unwrap() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    carol.account.connect();
    let (mut left, mut removed, mut news) = (None, None, None);
    while left.is_none() || removed.is_none() || news.is_none() {
        wait_for(&mut carol.events, |e| match e {
            Event::GroupChanged { update, .. } => match update {
                GroupUpdate::Left { username } => {
                    left = Some(username.clone());
                    Some(())
                }
                GroupUpdate::MembersRemoved { usernames } => {
                    assert!(
                        !usernames.contains(&"bob".to_owned()),
                        "bob left, was not removed"
                    );
                    removed = Some(usernames.clone());
                    Some(())
                }
                _ => None,
            },
            Event::Message(m) => {
                news = Some(m.text.clone());
                Some(())
            }
            _ => None,
        })
        .await;
    }
    assert_eq!(left.unwrap(), "bob");
    assert_eq!(removed.unwrap(), ["dave"]);
    assert_eq!(news.unwrap(), "news");
    let view = carol.account.group(&id).unwrap().unwrap();
    assert_eq!(names(&view.members), ["alice", "carol"]);

    dave.account.connect();
    let removed = group_update(&mut dave.events, id, |u| match u {
        GroupUpdate::MembersRemoved { usernames } => Some(usernames.clone()),
        _ => None,
    })
    .await;
    assert_eq!(removed, ["dave"]);
    assert!(!dave.account.group(&id).unwrap().unwrap().active);
    no_text_within(&mut dave.events, Duration::from_millis(300)).await;
    for d in [&alice, &bob, &carol, &dave] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_queue_is_full_is_reported_not_delivered_and_the_others_get_the_message() {
    // Small queues, and one sender may fill a whole queue: the group send
    // reaches every queue with room and names the full ones (SPEC §12.10).
    let server = TestServer::start_tweaked(
        tempfile::tempdir().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        |c| {
            c.max_queue_len = 8;
            c.queue_sender_share_percent = 100;
        },
    )
    .await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut carol_user = register(&server, "carol").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let mut carol = online(&server, &mut carol_user, IdentitySource::New, fast_config()).await;
    let id = alice
        .account
        .create_group("small queues", &["bob", "carol"])
        .await
        .unwrap();
    created(&mut bob.events, id).await;
    created(&mut carol.events, id).await;
    let group = Conversation::Group(id);
    alice.account.send_text(&group, "hello").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "hello");
    assert_eq!(next_text(&mut carol.events).await.text, "hello");

    // Carol goes offline; her queue fills while bob keeps reading his.
    carol.account.disconnect().await;
    let mut skipped = None;
    for n in 0..12 {
        let text = format!("message {n}");
        let message_id = alice.account.send_text(&group, &text).unwrap();
        assert_eq!(next_text(&mut bob.events).await.text, text);
        let report = wait_for(&mut alice.events, |e| match e {
            Event::Sent { message_id: m, .. } if *m == message_id => Some(None),
            Event::NotDelivered {
                message_id: m,
                usernames,
                device_ids,
            } if *m == message_id => Some(Some((usernames.clone(), device_ids.clone()))),
            _ => None,
        })
        .await;
        // `Sent` comes first; a skip follows it at once.
        let report = match report {
            Some(report) => Some(report),
            None => tokio::time::timeout(Duration::from_millis(300), async {
                loop {
                    match alice.events.next().await {
                        Some(Event::NotDelivered {
                            message_id: m,
                            usernames,
                            device_ids,
                        }) if m == message_id => return Some((usernames, device_ids)),
                        Some(_) => continue,
                        None => return None,
                    }
                }
            })
            .await
            .ok()
            .flatten(),
        };
        if let Some(report) = report {
            skipped = Some((n, report));
            break;
        }
    }
    let (n, (usernames, device_ids)) = skipped.expect("carol's full queue was never reported");
    assert!(n >= 4, "reported after only {n} messages in a queue of 8");
    assert_eq!(usernames, vec!["carol".to_owned()]);
    assert_eq!(device_ids, vec![carol.account.device_id()]);
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

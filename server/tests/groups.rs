//! Groups over QUIC: roles, versions, stale-version refusal, concurrent
//! changes in one order, opaque metadata, fan-out stored once, and new
//! members seeing only later messages (SPEC.md §12.10).

use crate::common;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    self, ErrorCode, GroupInfo, GroupRole, client_frame::Request, push, response,
};

fn gid(n: u8) -> Bytes {
    Bytes::from(vec![n; 16])
}

async fn group_ok(client: &mut Client, request: Request) -> GroupInfo {
    match client.request(request).await {
        response::Result::Group(g) => g,
        other => panic!("group request failed: {other:?}"),
    }
}

fn create(id: &Bytes, members: &[&str], metadata: &[u8]) -> Request {
    Request::CreateGroup(transport::CreateGroupRequest {
        group_id: id.clone(),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
        encrypted_metadata: Bytes::copy_from_slice(metadata),
    })
}

fn add(id: &Bytes, version: u64, names: &[&str]) -> Request {
    Request::AddGroupMembers(transport::AddGroupMembersRequest {
        group_id: id.clone(),
        expected_version: version,
        usernames: names.iter().map(|m| (*m).to_owned()).collect(),
    })
}

fn get(id: &Bytes) -> Request {
    Request::GetGroup(transport::GetGroupRequest {
        group_id: id.clone(),
    })
}

fn send_group(id: &Bytes, ciphertext: &[u8]) -> Request {
    Request::SendGroup(transport::SendGroupRequest {
        group_id: id.clone(),
        ciphertext: Bytes::copy_from_slice(ciphertext),
        ..transport::SendGroupRequest::default()
    })
}

fn role_of(group: &GroupInfo, name: &str) -> Option<GroupRole> {
    group
        .members
        .iter()
        .find(|m| m.username == name)
        .map(|m| GroupRole::try_from(m.role).unwrap())
}

/// Group-changed pushes until one with `version` arrives.
async fn changes_until(client: &mut Client, version: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        if let Some(push::Event::GroupChanged(g)) = client.next_push().await.event {
            seen.push(g.version);
            if g.version >= version {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn roles_versions_stale_refusal_and_opaque_metadata() {
    let server = TestServer::start().await;
    let mut alice = new_device(&server, "alice").await;
    let mut bob = new_device(&server, "bob").await;
    let mut carol = new_device(&server, "carol").await;
    let id = gid(1);
    let blob = b"\x00encrypted name+avatar\xff";
    let g = group_ok(&mut alice.client, create(&id, &["bob"], blob)).await;
    assert_eq!(g.version, 1);
    assert_eq!(role_of(&g, "alice"), Some(GroupRole::Admin));
    assert_eq!(role_of(&g, "bob"), Some(GroupRole::Member));
    assert_eq!(g.encrypted_metadata.as_ref(), blob);
    assert!(g.members.iter().all(|m| m.joined_at_version == 1));
    // Bob learns by push.
    assert_eq!(changes_until(&mut bob.client, 1).await, vec![1]);

    // Members only: carol cannot read it; bob (member) cannot add.
    let e = carol.client.request_err(get(&id)).await;
    assert_eq!(code(&e), ErrorCode::NotGroupMember);
    let e = bob.client.request_err(add(&id, 1, &["carol"])).await;
    assert_eq!(code(&e), ErrorCode::NotGroupAdmin);
    let e = alice.client.request_err(get(&gid(9))).await;
    assert_eq!(code(&e), ErrorCode::UnknownGroup);

    // Add bumps the version; a stale version is refused with the current one.
    let g = group_ok(&mut alice.client, add(&id, 1, &["carol"])).await;
    assert_eq!(g.version, 2);
    assert_eq!(role_of(&g, "carol").map(|_| ()), Some(()));
    assert_eq!(
        g.members
            .iter()
            .find(|m| m.username == "carol")
            .unwrap()
            .joined_at_version,
        2
    );
    let e = alice.client.request_err(add(&id, 1, &["dave"])).await;
    assert_eq!(code(&e), ErrorCode::StaleGroupVersion);
    assert_eq!(e.current_group_version, 2);
    let e = alice.client.request_err(add(&id, 2, &["nobody"])).await;
    assert_eq!(code(&e), ErrorCode::UnknownAccount);

    // Promote bob; now bob may remove carol.
    let g = group_ok(
        &mut alice.client,
        Request::SetGroupRole(transport::SetGroupRoleRequest {
            group_id: id.clone(),
            expected_version: 2,
            username: "bob".into(),
            role: GroupRole::Admin as i32,
        }),
    )
    .await;
    assert_eq!((g.version, role_of(&g, "bob")), (3, Some(GroupRole::Admin)));
    let g = group_ok(
        &mut bob.client,
        Request::RemoveGroupMembers(transport::RemoveGroupMembersRequest {
            group_id: id.clone(),
            expected_version: 3,
            usernames: vec!["carol".into()],
        }),
    )
    .await;
    assert_eq!(g.version, 4);
    assert_eq!(role_of(&g, "carol"), None);
    // Carol was told (the push shows her gone), and can no longer read it.
    let seen = changes_until(&mut carol.client, 4).await;
    assert_eq!(seen, vec![2, 3, 4]);
    let e = carol.client.request_err(get(&id)).await;
    assert_eq!(code(&e), ErrorCode::NotGroupMember);

    // Metadata is replaced as an opaque blob; demote; leave.
    let g = group_ok(
        &mut bob.client,
        Request::SetGroupMetadata(transport::SetGroupMetadataRequest {
            group_id: id.clone(),
            expected_version: 4,
            encrypted_metadata: Bytes::from_static(b"new opaque blob"),
        }),
    )
    .await;
    assert_eq!(
        (g.version, g.encrypted_metadata.as_ref()),
        (5, &b"new opaque blob"[..])
    );
    let g = group_ok(
        &mut bob.client,
        Request::SetGroupRole(transport::SetGroupRoleRequest {
            group_id: id.clone(),
            expected_version: 5,
            username: "alice".into(),
            role: GroupRole::Member as i32,
        }),
    )
    .await;
    assert_eq!(
        (g.version, role_of(&g, "alice")),
        (6, Some(GroupRole::Member))
    );
    // The last admin leaving hands the role on.
    let reply = bob
        .client
        .request(Request::LeaveGroup(transport::LeaveGroupRequest {
            group_id: id.clone(),
        }))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    let g = group_ok(&mut alice.client, get(&id)).await;
    assert_eq!(g.version, 7);
    assert_eq!(g.members.len(), 1);
    assert_eq!(role_of(&g, "alice"), Some(GroupRole::Admin));
    server.stop().await;
}

#[tokio::test]
async fn concurrent_changes_resolve_to_one_order_for_every_member() {
    let server = TestServer::start().await;
    let mut alice = new_device(&server, "alice").await;
    let mut bob = new_device(&server, "bob").await;
    let names: Vec<String> = (0..5).map(|i| format!("user{i}")).collect();
    for name in &names {
        let mut c = server.client().await;
        register_active(&mut c, name).await;
    }
    let id = gid(2);
    group_ok(&mut alice.client, create(&id, &["bob"], b"m")).await;
    // Five admin connections race to add one user each, all starting from
    // version 1; each retries with the version the refusal names.
    let mut tasks = Vec::new();
    for name in names.clone() {
        let mut client = reconnect(&server, alice.device_id, &alice.key).await;
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut version = 1;
            let mut stale = 0;
            loop {
                match client.request(add(&id, version, &[&name])).await {
                    response::Result::Group(g) => return (g.version, stale),
                    response::Result::Error(e) => {
                        assert_eq!(code(&e), ErrorCode::StaleGroupVersion, "{e:?}");
                        assert!(e.current_group_version > version);
                        version = e.current_group_version;
                        stale += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
        }));
    }
    let mut versions = Vec::new();
    let mut stale_total = 0;
    for t in tasks {
        let (v, stale) = t.await.unwrap();
        versions.push(v);
        stale_total += stale;
    }
    versions.sort_unstable();
    assert_eq!(versions, vec![2, 3, 4, 5, 6], "one version per change");
    assert!(
        stale_total >= 1,
        "racing changes from one version must conflict"
    );
    // Every member observes the same order.
    let bob_seen = changes_until(&mut bob.client, 6).await;
    let alice_seen = changes_until(&mut alice.client, 6).await;
    assert_eq!(bob_seen, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(alice_seen, bob_seen);
    let g = group_ok(&mut bob.client, get(&id)).await;
    assert_eq!(g.version, 6);
    assert_eq!(g.members.len(), 7);
    server.stop().await;
}

#[tokio::test]
async fn send_to_group_fans_out_once_and_new_members_get_only_later_messages() {
    let server = TestServer::start().await;
    let mut alice = new_device(&server, "alice").await;
    let mut bob = new_device(&server, "bob").await;
    let mut carol = new_device(&server, "carol").await;
    // Bob's second device (offline) and alice's second device.
    let (bob2, _bob2_key) = enrol(&mut server.client().await, &mut bob.account).await;
    let (alice2, alice2_key) = enrol(&mut server.client().await, &mut alice.account).await;
    let id = gid(3);
    group_ok(&mut alice.client, create(&id, &["bob"], b"m")).await;

    let e = carol.client.request_err(send_group(&id, b"intruder")).await;
    assert_eq!(code(&e), ErrorCode::NotGroupMember);

    let first = b"GROUP-CIPHERTEXT-ONE-before-carol";
    let reply = alice.client.request(send_group(&id, first)).await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
    // Connected bob gets it pushed with the group id and the sender.
    let env = loop {
        if let Some(push::Event::Envelope(e)) = bob.client.next_push().await.event {
            break e;
        }
    };
    assert_eq!(
        (env.ciphertext.as_ref(), env.group_id.clone()),
        (&first[..], id.clone())
    );
    assert_eq!(
        (env.sender_username.as_str(), env.sender_device_id),
        ("alice", alice.device_id)
    );
    // Offline devices have it queued: bob's second, alice's own second.
    let mut a2 = reconnect(&server, alice2, &alice2_key).await;
    let queued = fetch(&mut a2).await.envelopes;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].group_id, id);
    // The sending device itself gets nothing.
    assert!(fetch(&mut alice.client).await.envelopes.is_empty());

    let g = group_ok(&mut alice.client, add(&id, 1, &["carol"])).await;
    assert_eq!(g.version, 2);
    let second = b"GROUP-CIPHERTEXT-TWO-after-carol";
    alice.client.request(send_group(&id, second)).await;
    let carol_sees = fetch(&mut carol.client).await.envelopes;
    assert_eq!(carol_sees.len(), 1, "only messages after joining");
    assert_eq!(carol_sees[0].ciphertext.as_ref(), second);

    // Stored once per send, referenced by every recipient queue.
    let db = rusqlite::Connection::open(server.db_path()).unwrap();
    let (messages, refs): (i64, i64) = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM group_messages), \
             (SELECT COUNT(*) FROM envelopes WHERE group_message_id IS NOT NULL)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(messages, 2);
    // First send: bob, bob2, alice2 (3); second: + carol (4).
    assert_eq!(refs, 7);
    let _ = bob2;
    // Acknowledging every copy deletes the stored ciphertext.
    let ids: Vec<u64> = queued.iter().map(|e| e.envelope_id).collect();
    ack(&mut a2, ids).await;
    server.stop().await;
}

//! Issue 14, groups and prekeys: group changes are rate-limited per account
//! and per group (the `group_changed` pushes a member gets whether or not it
//! asked to join), an account may keep only so many groups it created, a
//! device's prekey stock is capped, uploads are rate-limited, one account
//! cannot drain another's one-time prekeys, and a drained device gets one
//! low-stock push a minute (SPEC.md §12.6, §12.10, §12.12). The storage
//! stories run on SQLite and on PostgreSQL (when `MICROBOT_TEST_POSTGRES` is
//! set).

use crate::common;
use crate::support::backends;

use std::time::Duration;

use backends::backends;
use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    CreateGroupRequest, ErrorCode, FetchPrekeysRequest, LeaveGroupRequest, PrekeyStatusRequest,
    SetGroupMetadataRequest, client_frame::Request, push, response,
};

async fn create(client: &mut Client, members: &[&str]) -> response::Result {
    client
        .request(Request::CreateGroup(CreateGroupRequest {
            group_id: random_bytes(16),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            encrypted_metadata: Bytes::from_static(b"name"),
        }))
        .await
}

fn group_id(reply: &response::Result) -> Bytes {
    match reply {
        response::Result::Group(g) => g.group_id.clone(),
        other => panic!("expected a group, got {other:?}"),
    }
}

fn refusal(reply: &response::Result) -> ErrorCode {
    match reply {
        response::Result::Error(e) => code(e),
        other => panic!("expected an error, got {other:?}"),
    }
}

async fn set_metadata(client: &mut Client, group: &Bytes, version: u64) -> response::Result {
    client
        .request(Request::SetGroupMetadata(SetGroupMetadataRequest {
            group_id: group.clone(),
            expected_version: version,
            encrypted_metadata: random_bytes(64 * 1024),
        }))
        .await
}

/// Group-changed pushes that reach `client` before a round trip and a
/// short quiet spell.
async fn group_pushes(client: &mut Client) -> usize {
    let _ = client
        .request(Request::PrekeyStatus(PrekeyStatusRequest {}))
        .await;
    let mut n = 0;
    while let Some(p) = client.push_within(Duration::from_millis(300)).await {
        if matches!(p.event, Some(push::Event::GroupChanged(_))) {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn group_changes_are_limited_per_account() {
    let server = TestServer::start_with(|c| c.rate_group_change_per_account = 3).await;
    let mut alice = new_device(&server, "alice").await;
    let _bob = new_device(&server, "bob").await;
    for _ in 0..3 {
        group_id(&create(&mut alice.client, &["bob"]).await);
    }
    let fourth = create(&mut alice.client, &["bob"]).await;
    assert_eq!(refusal(&fourth), ErrorCode::RateLimited);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_pushes_to_an_unwilling_member_are_limited_per_group() {
    let server = TestServer::start_with(|c| {
        c.rate_group_change_per_account = 0;
        c.rate_group_change_per_group = 3;
    })
    .await;
    let mut alice = new_device(&server, "alice").await;
    let mut victim = new_device(&server, "victim").await;
    let _carol = new_device(&server, "carol").await;
    // The victim never asked to join; alice (then a second admin) push
    // 64 KiB of metadata to it as fast as the server lets them.
    let reply = create(&mut alice.client, &["victim", "carol"]).await;
    let group = group_id(&reply);
    let mut version = 1;
    let mut refused = 0;
    for _ in 0..10 {
        match set_metadata(&mut alice.client, &group, version).await {
            response::Result::Group(g) => version = g.version,
            other => {
                assert_eq!(refusal(&other), ErrorCode::RateLimited);
                refused += 1;
            }
        }
    }
    assert_eq!(version, 3, "create + 2 changes fill the group's bucket");
    assert_eq!(refused, 8);
    assert_eq!(group_pushes(&mut victim.client).await, 3);
    // Leaving is never limited.
    let left = victim
        .client
        .request(Request::LeaveGroup(LeaveGroupRequest {
            group_id: group.clone(),
        }))
        .await;
    assert!(matches!(left, response::Result::Ok(_)), "{left:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_keeps_only_so_many_groups_it_created() {
    for be in backends("group_cap") {
        let server = be.start(|c| c.max_groups_per_account = 2).await;
        let mut alice = new_device(&server, "alice").await;
        let mut bob = new_device(&server, "bob").await;
        let first = group_id(&create(&mut alice.client, &["bob"]).await);
        group_id(&create(&mut alice.client, &["bob"]).await);
        let third = create(&mut alice.client, &[]).await;
        assert_eq!(refusal(&third), ErrorCode::QuotaExceeded, "{}", be.name);
        // Membership does not count: bob, in both, may create his own.
        group_id(&create(&mut bob.client, &[]).await);
        // A group counts for its creator until its last member leaves.
        for member in [&mut alice, &mut bob] {
            let left = member
                .client
                .request(Request::LeaveGroup(LeaveGroupRequest {
                    group_id: first.clone(),
                }))
                .await;
            assert!(matches!(left, response::Result::Ok(_)), "{left:?}");
            if member.account.username == "alice" {
                let still = create(&mut member.client, &[]).await;
                assert_eq!(refusal(&still), ErrorCode::QuotaExceeded, "{}", be.name);
            }
        }
        group_id(&create(&mut alice.client, &[]).await);
        server.stop().await;
    }
}

async fn upload(client: &mut Client, first: u32, one_time: u32, kem: u32) -> response::Result {
    client
        .request(Request::UploadPrekeys(prekey_upload(first, one_time, kem)))
        .await
}

async fn stock(client: &mut Client) -> (u32, u32) {
    match client
        .request(Request::PrekeyStatus(PrekeyStatusRequest {}))
        .await
    {
        response::Result::PrekeyStatus(s) => (s.one_time_prekeys, s.kem_prekeys),
        other => panic!("status failed: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_devices_prekey_stock_is_capped() {
    for be in backends("prekey_cap") {
        let server = be
            .start(|c| {
                c.max_one_time_prekeys = 150;
                c.max_kem_prekeys = 5;
            })
            .await;
        let mut alice = new_device(&server, "alice").await;
        assert!(matches!(
            upload(&mut alice.client, 1, 100, 3).await,
            response::Result::Ok(_)
        ));
        let over = upload(&mut alice.client, 101, 100, 0).await;
        assert_eq!(refusal(&over), ErrorCode::QuotaExceeded, "{}", be.name);
        assert_eq!(
            stock(&mut alice.client).await,
            (100, 3),
            "{}: nothing of it",
            be.name
        );
        assert!(matches!(
            upload(&mut alice.client, 101, 50, 0).await,
            response::Result::Ok(_)
        ));
        // Replacing stored ids adds nothing.
        assert!(matches!(
            upload(&mut alice.client, 1, 100, 5).await,
            response::Result::Ok(_)
        ));
        assert_eq!(stock(&mut alice.client).await, (150, 5), "{}", be.name);
        let kem_over = upload(&mut alice.client, 6, 0, 1).await;
        assert_eq!(refusal(&kem_over), ErrorCode::QuotaExceeded, "{}", be.name);
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prekey_uploads_are_rate_limited() {
    let server = TestServer::start_with(|c| c.rate_prekey_upload_per_account = 2).await;
    let mut alice = new_device(&server, "alice").await;
    for first in [1, 11] {
        assert!(matches!(
            upload(&mut alice.client, first, 10, 0).await,
            response::Result::Ok(_)
        ));
    }
    let third = upload(&mut alice.client, 21, 10, 0).await;
    assert_eq!(refusal(&third), ErrorCode::RateLimited);
    server.stop().await;
}

async fn fetch_bundles(client: &mut Client, username: &str) -> response::Result {
    client
        .request(Request::FetchPrekeys(FetchPrekeysRequest {
            username: username.into(),
            device_ids: Vec::new(),
        }))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn one_account_cannot_drain_anothers_prekeys_or_spam_its_pushes() {
    let server = TestServer::start_with(|c| c.rate_prekey_fetch_per_target = 2).await;
    let mut victim = new_device(&server, "victim").await;
    let mut mallory = new_device(&server, "mallory").await;
    let mut carol = new_device(&server, "carol").await;
    let mut other = new_device(&server, "other").await;
    assert!(matches!(
        upload(&mut victim.client, 1, 5, 0).await,
        response::Result::Ok(_)
    ));
    assert!(matches!(
        upload(&mut other.client, 1, 5, 0).await,
        response::Result::Ok(_)
    ));
    for _ in 0..2 {
        assert!(matches!(
            fetch_bundles(&mut mallory.client, "victim").await,
            response::Result::PrekeyBundles(_)
        ));
    }
    let third = fetch_bundles(&mut mallory.client, "victim").await;
    assert_eq!(refusal(&third), ErrorCode::RateLimited);
    // Other targets and other fetchers are not held up.
    assert!(matches!(
        fetch_bundles(&mut mallory.client, "other").await,
        response::Result::PrekeyBundles(_)
    ));
    assert!(matches!(
        fetch_bundles(&mut carol.client, "victim").await,
        response::Result::PrekeyBundles(_)
    ));
    assert_eq!(stock(&mut victim.client).await.0, 2);
    // Three fetches drained the stock below the threshold: one push.
    let mut low = 0;
    while let Some(p) = victim.client.push_within(Duration::from_millis(300)).await {
        if matches!(p.event, Some(push::Event::PrekeyLowStock(_))) {
            low += 1;
        }
    }
    assert_eq!(low, 1, "one low-stock push a minute");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_without_keys_is_left_out_of_a_fetch_never_an_error() {
    let server = TestServer::start().await;
    let mut alice = new_device(&server, "alice").await;
    let mut bob = new_device(&server, "bob").await;
    assert!(matches!(
        upload(&mut bob.client, 1, 3, 0).await,
        response::Result::Ok(_)
    ));
    // Bob's second device never uploads keys.
    let mut second = server.client().await;
    let (keyless, keyless_key) = enrol(&mut second, &mut bob.account).await;
    match fetch_bundles(&mut alice.client, "bob").await {
        response::Result::PrekeyBundles(b) => {
            let devices: Vec<u64> = b.bundles.iter().map(|x| x.device_id).collect();
            assert_eq!(devices, vec![bob.device_id]);
        }
        other => panic!("{other:?}"),
    }
    let only_keyless = alice
        .client
        .request(Request::FetchPrekeys(FetchPrekeysRequest {
            username: "bob".into(),
            device_ids: vec![keyless],
        }))
        .await;
    match only_keyless {
        response::Result::PrekeyBundles(b) => assert!(b.bundles.is_empty()),
        other => panic!("a keyless device is omitted, not an error: {other:?}"),
    }
    // NO_PREKEYS is the answer to an incomplete first upload.
    login(&mut second, keyless, &keyless_key).await;
    let mut incomplete = prekey_upload(1, 3, 0);
    incomplete.identity_key = Bytes::new();
    let reply = second.request(Request::UploadPrekeys(incomplete)).await;
    assert_eq!(refusal(&reply), ErrorCode::NoPrekeys);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn members_and_outsiders_cannot_spend_a_groups_change_tokens() {
    let server = TestServer::start_with(|c| {
        c.rate_group_change_per_account = 0;
        c.rate_group_change_per_group = 3;
    })
    .await;
    let mut alice = new_device(&server, "alice").await;
    let mut member = new_device(&server, "member").await;
    let mut outsider = new_device(&server, "outsider").await;
    let group = group_id(&create(&mut alice.client, &["member"]).await);
    for _ in 0..10 {
        let by_member = set_metadata(&mut member.client, &group, 1).await;
        assert_eq!(refusal(&by_member), ErrorCode::NotGroupAdmin);
        let by_outsider = set_metadata(&mut outsider.client, &group, 1).await;
        assert_eq!(refusal(&by_outsider), ErrorCode::NotGroupMember);
    }
    // The admin still has the two changes left after the creation.
    let mut version = 1;
    for _ in 0..2 {
        match set_metadata(&mut alice.client, &group, version).await {
            response::Result::Group(g) => version = g.version,
            other => panic!("the admin was held up: {other:?}"),
        }
    }
    assert_eq!(version, 3);
    server.stop().await;
}

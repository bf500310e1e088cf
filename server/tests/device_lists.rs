//! Signed device lists (SPEC.md §20) against a live server: the upload's
//! checks (identity key, signature, version that only grows, the uploader
//! listed, every listed device live and of the account) with their typed
//! errors; the list comes back with `ListDevices` and `PrekeyBundles`; once
//! an account has a list only its listed devices count for
//! `complete_accounts` (`MISSING_DEVICES`) and for the group fan-out. Runs on SQLite and on
//! PostgreSQL (when `MICROBOT_TEST_POSTGRES` is set).

use crate::common;
use crate::support::backends;

use bytes::Bytes;
use common::*;
use microbot_crypto::IdentityKeyPair;
use microbot_crypto::device_list::{DeviceList, SignedDeviceList};
use microbot_protocol::transport::{
    CreateGroupRequest, ErrorCode, FetchPrekeysRequest, ListDevicesRequest, OutgoingEnvelope,
    RemoveDeviceRequest, SendGroupRequest, SendRequest, UploadDeviceListRequest,
    UploadPrekeysRequest, client_frame::Request, response,
};

fn upload(list: &SignedDeviceList) -> Request {
    Request::UploadDeviceList(UploadDeviceListRequest {
        signed_device_list: Bytes::copy_from_slice(list.as_bytes()),
    })
}

fn signed(identity: &IdentityKeyPair, user: &str, version: u64, ids: &[u64]) -> SignedDeviceList {
    DeviceList::new(user, version, 1_700_000_000_000, ids)
        .unwrap()
        .sign(identity)
}

/// Prekeys carrying `identity` as the account identity key.
fn prekeys_of(identity: &IdentityKeyPair) -> Request {
    Request::UploadPrekeys(UploadPrekeysRequest {
        identity_key: Bytes::copy_from_slice(&identity.public().to_bytes()),
        ..prekey_upload(1, 3, 0)
    })
}

fn send_claiming(device: u64, complete: &str) -> Request {
    Request::Send(SendRequest {
        envelopes: vec![OutgoingEnvelope {
            recipient_device_id: device,
            ciphertext: Bytes::from_static(b"ciphertext"),
        }],
        complete_accounts: vec![complete.to_owned()],
    })
}

async fn expect_ok(client: &mut Client, request: Request) {
    let reply = client.request(request).await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
}

async fn expect_err(client: &mut Client, request: Request, expected: ErrorCode) -> Vec<u64> {
    let e = client.request_err(request).await;
    assert_eq!(code(&e), expected, "{e:?}");
    e.device_ids
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_checks_stores_and_serves_signed_device_lists() {
    for be in backends::backends("device_lists") {
        eprintln!("backend {}", be.name);
        story(be.start(|_| {}).await).await;
    }
}

async fn story(server: TestServer) {
    let identity = IdentityKeyPair::from_seed(&[7; 32]);
    let mut alice = new_device(&server, "alice").await;
    let mut bob = new_device(&server, "bob").await;
    let a1 = alice.device_id;
    let v1 = signed(&identity, "alice", 1, &[a1]);

    // No identity key on the server yet: nothing to check the list against.
    expect_err(&mut alice.client, upload(&v1), ErrorCode::NoPrekeys).await;
    expect_ok(&mut alice.client, prekeys_of(&identity)).await;
    expect_ok(
        &mut bob.client,
        Request::UploadPrekeys(prekey_upload(1, 3, 0)),
    )
    .await;

    // Refused before anything is stored: a forged signature, garbage,
    // another account's list, a list without the uploader.
    let forged = signed(&IdentityKeyPair::from_seed(&[8; 32]), "alice", 1, &[a1]);
    expect_err(&mut alice.client, upload(&forged), ErrorCode::BadSignature).await;
    let mut flipped = v1.as_bytes().to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let garbage = Request::UploadDeviceList(UploadDeviceListRequest {
        signed_device_list: Bytes::from(flipped),
    });
    expect_err(&mut alice.client, garbage, ErrorCode::BadSignature).await;
    let truncated = Request::UploadDeviceList(UploadDeviceListRequest {
        signed_device_list: Bytes::copy_from_slice(&v1.as_bytes()[..20]),
    });
    expect_err(&mut alice.client, truncated, ErrorCode::InvalidArgument).await;
    let other = signed(&identity, "bob", 1, &[a1]);
    expect_err(
        &mut alice.client,
        upload(&other),
        ErrorCode::InvalidArgument,
    )
    .await;
    let without_me = signed(&identity, "alice", 1, &[bob.device_id]);
    expect_err(
        &mut alice.client,
        upload(&without_me),
        ErrorCode::InvalidArgument,
    )
    .await;
    let with_bobs = signed(&identity, "alice", 1, &[a1, bob.device_id, 999_999]);
    let ids = expect_err(
        &mut alice.client,
        upload(&with_bobs),
        ErrorCode::UnknownDevice,
    )
    .await;
    assert_eq!(ids, vec![bob.device_id, 999_999]);
    let listed = alice
        .client
        .request(Request::ListDevices(ListDevicesRequest {}))
        .await;
    let response::Result::DeviceList(listed) = listed else {
        panic!("{listed:?}")
    };
    assert!(listed.signed_device_list.is_empty(), "nothing stored yet");

    // Version 1 is stored and served to the account and to its contacts.
    expect_ok(&mut alice.client, upload(&v1)).await;
    let listed = alice
        .client
        .request(Request::ListDevices(ListDevicesRequest {}))
        .await;
    let response::Result::DeviceList(listed) = listed else {
        panic!("{listed:?}")
    };
    assert_eq!(listed.signed_device_list.as_ref(), v1.as_bytes());
    let bundles = bob
        .client
        .request(Request::FetchPrekeys(FetchPrekeysRequest {
            username: "alice".into(),
            device_ids: Vec::new(),
        }))
        .await;
    let response::Result::PrekeyBundles(bundles) = bundles else {
        panic!("{bundles:?}")
    };
    assert_eq!(bundles.signed_device_list.as_ref(), v1.as_bytes());
    // Bob never uploaded a list: his bundles carry none.
    let bundles = alice
        .client
        .request(Request::FetchPrekeys(FetchPrekeysRequest {
            username: "bob".into(),
            device_ids: Vec::new(),
        }))
        .await;
    let response::Result::PrekeyBundles(bundles) = bundles else {
        panic!("{bundles:?}")
    };
    assert!(bundles.signed_device_list.is_empty());

    // A second device with keys but not listed: it does not count for
    // MISSING_DEVICES, as a device added to the account row by the server
    // alone would not.
    let mut enrolling = server.client().await;
    let (a2, a2_key) = enrol(&mut enrolling, &mut alice.account).await;
    let mut second = reconnect(&server, a2, &a2_key).await;
    expect_ok(&mut second, prekeys_of(&identity)).await;
    let reply = bob.client.request(send_claiming(a1, "alice")).await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
    // Nor does a group message reach it: the fan-out skips unlisted devices.
    let gid = random_bytes(16);
    let reply = bob
        .client
        .request(Request::CreateGroup(CreateGroupRequest {
            group_id: gid.clone(),
            members: vec!["alice".into()],
            encrypted_metadata: Bytes::new(),
        }))
        .await;
    assert!(matches!(reply, response::Result::Group(_)), "{reply:?}");
    let reply = bob
        .client
        .request(Request::SendGroup(SendGroupRequest {
            group_id: gid,
            ciphertext: Bytes::from_static(b"group"),
            key_holders: vec![a1],
            check_key_holders: true,
        }))
        .await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
    assert!(
        fetch(&mut second).await.envelopes.is_empty(),
        "an unlisted device got a message"
    );
    let to_first = fetch(&mut alice.client).await.envelopes;
    assert!(to_first.iter().any(|e| e.ciphertext.as_ref() == b"group"));

    // The second device signs version 2 with itself: now it counts.
    expect_err(&mut second, upload(&v1), ErrorCode::InvalidArgument).await;
    let v2 = signed(&identity, "alice", 2, &[a1, a2]);
    expect_ok(&mut second, upload(&v2)).await;
    let ids = expect_err(
        &mut bob.client,
        send_claiming(a1, "alice"),
        ErrorCode::MissingDevices,
    )
    .await;
    assert_eq!(ids, vec![a2]);

    // No rollback, not even to an equal version.
    expect_err(&mut alice.client, upload(&v1), ErrorCode::StaleDeviceList).await;
    let also_two = signed(&identity, "alice", 2, &[a1]);
    expect_err(
        &mut alice.client,
        upload(&also_two),
        ErrorCode::StaleDeviceList,
    )
    .await;

    // Removing the second device: a list still naming it is refused, the
    // list without it is stored, and the send claims alice complete again.
    expect_ok(
        &mut alice.client,
        Request::RemoveDevice(RemoveDeviceRequest {
            device_id: a2,
            password: alice.account.password.clone(),
            totp_code: alice.account.auth.fresh(),
            second_factor: None,
        }),
    )
    .await;
    let stale_members = signed(&identity, "alice", 3, &[a1, a2]);
    let ids = expect_err(
        &mut alice.client,
        upload(&stale_members),
        ErrorCode::DeviceRemoved,
    )
    .await;
    assert_eq!(ids, vec![a2]);
    let v3 = signed(&identity, "alice", 3, &[a1]);
    expect_ok(&mut alice.client, upload(&v3)).await;
    let reply = bob.client.request(send_claiming(a1, "alice")).await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");

    // A new identity (a reinstall) starts its own history at any version.
    let reinstalled = IdentityKeyPair::from_seed(&[9; 32]);
    expect_ok(&mut alice.client, prekeys_of(&reinstalled)).await;
    let fresh = signed(&reinstalled, "alice", 1, &[a1]);
    expect_ok(&mut alice.client, upload(&fresh)).await;
    expect_err(
        &mut alice.client,
        upload(&fresh),
        ErrorCode::StaleDeviceList,
    )
    .await;
    server.stop().await;
}

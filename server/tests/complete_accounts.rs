//! `SendRequest.complete_accounts` (SPEC.md §12.7, issue 14): a send that
//! names an account complete but leaves out one of its devices with
//! published prekeys is refused with `MISSING_DEVICES` listing them, and
//! nothing is stored; the sender's own device never counts; bad lists are
//! refused before any lookup. The same for a group send's `key_holders`
//! (§12.10). Runs on SQLite and on PostgreSQL (when
//! `MICROBOT_TEST_POSTGRES` is set).

use crate::common;
use crate::support::backends;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    CreateGroupRequest, ErrorCode, OutgoingEnvelope, SendGroupRequest, SendRequest,
    client_frame::Request, response,
};

fn send(envelopes: &[(u64, &'static [u8])], complete: &[&str]) -> Request {
    Request::Send(SendRequest {
        envelopes: envelopes
            .iter()
            .map(|(device, body)| OutgoingEnvelope {
                recipient_device_id: *device,
                ciphertext: Bytes::from_static(body),
            })
            .collect(),
        complete_accounts: complete.iter().map(|s| (*s).to_owned()).collect(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_that_leaves_out_a_device_of_a_complete_account_is_refused() {
    for be in backends::backends("complete") {
        eprintln!("backend {}", be.name);
        story(be.start(|_| {}).await).await;
    }
}

async fn story(server: TestServer) {
    let mut olga = new_device(&server, "olga").await;
    let mut pete = new_device(&server, "pete").await;
    let reply = pete
        .client
        .request(Request::UploadPrekeys(prekey_upload(1, 3, 0)))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");

    // Pete enrols a second device: without prekeys it cannot be addressed,
    // so it is not required.
    let mut enrolling = server.client().await;
    let (pete2, pete2_key) = enrol(&mut enrolling, &mut pete.account).await;
    let reply = olga
        .client
        .request(send(&[(pete.device_id, b"one")], &["pete", "olga"]))
        .await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");

    // Once it has published prekeys, leaving it out is refused, by id.
    let mut pete2_client = reconnect(&server, pete2, &pete2_key).await;
    let reply = pete2_client
        .request(Request::UploadPrekeys(prekey_upload(1, 3, 0)))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    let e = olga
        .client
        .request_err(send(&[(pete.device_id, b"two")], &["pete"]))
        .await;
    assert_eq!(code(&e), ErrorCode::MissingDevices, "{e:?}");
    assert_eq!(e.device_ids, vec![pete2]);
    // Nothing was stored, and without the claim the same send goes through.
    let reply = olga
        .client
        .request(send(&[(pete.device_id, b"three")], &[]))
        .await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
    let reply = olga
        .client
        .request(send(
            &[(pete.device_id, b"four"), (pete2, b"four")],
            &["pete"],
        ))
        .await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
    let bodies: Vec<Bytes> = fetch(&mut pete.client)
        .await
        .envelopes
        .into_iter()
        .map(|e| e.ciphertext)
        .collect();
    assert_eq!(bodies, [&b"one"[..], b"three", b"four"]);

    // The sending device itself never counts: Pete's second device names
    // its own account complete while addressing only the first.
    let reply = pete2_client
        .request(send(&[(pete.device_id, b"note")], &["pete"]))
        .await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");

    // Bad lists: unknown account, duplicates, too many, invalid names.
    let e = olga
        .client
        .request_err(send(&[(pete.device_id, b"x")], &["nobody"]))
        .await;
    assert_eq!(code(&e), ErrorCode::UnknownAccount, "{e:?}");
    for bad in [
        vec!["pete", "pete"],
        vec!["pete"; 9],
        vec!["Not A Name"],
        vec![""],
    ] {
        let e = olga
            .client
            .request_err(send(&[(pete.device_id, b"x")], &bad))
            .await;
        assert_eq!(code(&e), ErrorCode::InvalidArgument, "{bad:?}: {e:?}");
    }
    let bodies = fetch(&mut pete.client).await.envelopes.len();
    assert_eq!(bodies, 4, "only the accepted sends were stored");
    server.stop().await;
}

fn send_group(gid: &Bytes, holders: &[u64], check: bool) -> Request {
    Request::SendGroup(SendGroupRequest {
        group_id: gid.clone(),
        ciphertext: Bytes::from_static(b"group"),
        key_holders: holders.to_vec(),
        check_key_holders: check,
    })
}

/// `SendGroupRequest.key_holders` (SPEC.md §12.10): a checked group send
/// that leaves out a member device with prekeys is refused, by id.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_send_that_leaves_out_a_member_device_is_refused() {
    for be in backends::backends("key_holders") {
        eprintln!("backend {}", be.name);
        group_story(be.start(|_| {}).await).await;
    }
}

async fn group_story(server: TestServer) {
    let mut olga = new_device(&server, "olga").await;
    let mut pete = new_device(&server, "pete").await;
    let gid = Bytes::from(vec![3u8; 16]);
    let reply = olga
        .client
        .request(Request::CreateGroup(CreateGroupRequest {
            group_id: gid.clone(),
            members: vec!["pete".into()],
            encrypted_metadata: Bytes::new(),
        }))
        .await;
    assert!(matches!(reply, response::Result::Group(_)), "{reply:?}");
    // Devices without prekeys cannot hold the key: none are required.
    let reply = olga.client.request(send_group(&gid, &[], true)).await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");

    for client in [&mut pete.client, &mut olga.client] {
        let reply = client
            .request(Request::UploadPrekeys(prekey_upload(1, 3, 0)))
            .await;
        assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    }
    let mut enrolling = server.client().await;
    let (olga2, olga2_key) = enrol(&mut enrolling, &mut olga.account).await;
    let mut olga2_client = reconnect(&server, olga2, &olga2_key).await;
    let reply = olga2_client
        .request(Request::UploadPrekeys(prekey_upload(1, 3, 0)))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");

    // Pete's device and Olga's own second device must both be listed.
    let e = olga
        .client
        .request_err(send_group(&gid, &[pete.device_id], true))
        .await;
    assert_eq!(code(&e), ErrorCode::MissingDevices, "{e:?}");
    assert_eq!(e.device_ids, vec![olga2]);
    let e = olga
        .client
        .request_err(send_group(&gid, &[olga2], true))
        .await;
    assert_eq!(e.device_ids, vec![pete.device_id]);
    let reply = olga
        .client
        .request(send_group(&gid, &[pete.device_id, olga2], true))
        .await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
    // Unchecked, the list is ignored; an over-long list is refused.
    let reply = olga.client.request(send_group(&gid, &[], false)).await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
    let many: Vec<u64> = (0..65_537).collect();
    let e = olga.client.request_err(send_group(&gid, &many, true)).await;
    assert_eq!(code(&e), ErrorCode::InvalidArgument, "{e:?}");
    // Only the accepted sends reached Pete.
    assert_eq!(fetch(&mut pete.client).await.envelopes.len(), 3);
    server.stop().await;
}

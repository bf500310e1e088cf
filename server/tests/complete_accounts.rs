//! `SendRequest.complete_accounts` (SPEC.md §12.7, issue 14): a send that
//! names an account complete but leaves out one of its devices with
//! published prekeys is refused with `MISSING_DEVICES` listing them, and
//! nothing is stored; the sender's own device never counts; bad lists are
//! refused before any lookup. Runs on SQLite and on PostgreSQL (when
//! `MICROBOT_TEST_POSTGRES` is set).

#[path = "support/backends.rs"]
mod backends;
mod common;
#[path = "support/engines.rs"]
mod engines;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    ErrorCode, OutgoingEnvelope, SendRequest, client_frame::Request, response,
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

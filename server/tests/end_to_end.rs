//! The whole happy path over real QUIC: register → confirm → enrol → login →
//! upload/fetch prekeys → send → push → fetch → ack.

use crate::common;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{FetchPrekeysRequest, client_frame::Request, push, response};

#[tokio::test(flavor = "multi_thread")]
async fn register_enrol_login_prekeys_send_push_fetch_ack() {
    let server = TestServer::start().await;
    let mut alice = new_device(&server, "alice").await;
    let mut bob = new_device(&server, "bob").await;
    assert!(
        alice
            .account
            .otpauth_uri
            .starts_with("otpauth://totp/Microbot:alice?secret=")
    );
    assert_eq!(alice.account.recovery_codes.len(), 10);

    let upload = prekey_upload(1, 20, 2);
    let reply = bob
        .client
        .request(Request::UploadPrekeys(upload.clone()))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");

    let reply = alice
        .client
        .request(Request::FetchPrekeys(FetchPrekeysRequest {
            username: "bob".into(),
            device_ids: vec![],
        }))
        .await;
    let response::Result::PrekeyBundles(bundles) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(bundles.bundles.len(), 1);
    let bundle = &bundles.bundles[0];
    assert_eq!(bundle.device_id, bob.device_id);
    assert_eq!(bundle.identity_key, upload.identity_key);
    assert_eq!(bundle.signed_prekey.as_ref(), upload.signed_prekey.as_ref());
    assert_eq!(
        bundle.one_time_prekey.as_ref(),
        upload.one_time_prekeys.first()
    );
    assert_eq!(bundle.kem_prekey.as_ref(), upload.kem_prekeys.first());
    assert!(!bundle.kem_prekey_is_last_resort);

    let ciphertext = Bytes::from_static(b"opaque ciphertext bytes");
    let reply = send_to(&mut alice.client, &[(bob.device_id, ciphertext.clone())]).await;
    assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");

    let pushed = bob.client.next_push().await;
    let Some(push::Event::Envelope(envelope)) = pushed.event else {
        panic!("{pushed:?}")
    };
    assert_eq!(envelope.ciphertext, ciphertext);
    assert_eq!(envelope.sender_username, "alice");
    assert_eq!(envelope.sender_device_id, alice.device_id);

    let fetched = fetch(&mut bob.client).await;
    assert_eq!(fetched.envelopes.len(), 1);
    assert_eq!(fetched.envelopes[0].envelope_id, envelope.envelope_id);
    assert!(!fetched.more);

    assert_eq!(ack(&mut bob.client, vec![envelope.envelope_id]).await, 1);
    assert!(fetch(&mut bob.client).await.envelopes.is_empty());
    server.stop().await;
}

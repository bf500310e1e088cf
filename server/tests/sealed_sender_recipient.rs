//! The recipient's side of sealed sender (SPEC.md §19.4, §19.5) through a
//! live server: sealed envelopes whose sender certificate is forged (signed
//! by a key other than the server's) or expired are sent from an
//! unauthenticated connection, as an attacker would; the recipient's SDK
//! refuses each one (`DecryptionFailed`, nothing shown), and its state is
//! unchanged: a genuine message from the impersonated contact still opens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use crate::support::cluster;

use std::time::Duration;

use bytes::Bytes;
use cluster::{Device, fast_config, user, user_with, wait_for};
use common::*;
use microbot_client::{Conversation, Event, ServerConfig};
use microbot_crypto::identity::{IdentityKey, IdentityKeyPair};
use microbot_crypto::sealed_sender::certificate::ServerSigningKey;
use microbot_crypto::sealed_sender::{self, ContentType};
use microbot_protocol::transport::{
    OutgoingEnvelope, SendSealedRequest, client_frame::Request, response,
};

const WAIT: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The deployment's certificate signing key, read from the server's SQLite
/// file (what an attacker who stole it would hold; used here only to make
/// a certificate that is genuine but expired).
fn server_signing_key(server: &TestServer) -> ServerSigningKey {
    let db = rusqlite::Connection::open(server.dir.path().join("microbot.sqlite3")).unwrap();
    let (key_id, secret): (u32, Vec<u8>) = db
        .query_row(
            "SELECT key_id, secret FROM server_keys WHERE name = 'sender_certificate'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    ServerSigningKey::from_seed(key_id, &secret.try_into().unwrap())
}

async fn next_text(device: &mut Device) -> (String, String) {
    wait_for(device.events.as_mut().unwrap(), WAIT, |e| match e {
        Event::Message(m) => Some((m.author.clone(), m.text.clone())),
        _ => None,
    })
    .await
}

async fn next_refusal(device: &mut Device) -> String {
    wait_for(device.events.as_mut().unwrap(), WAIT, |e| match e {
        Event::Message(m) => panic!("a forged envelope was shown: {m:?}"),
        Event::DecryptionFailed { reason, .. } => Some(reason.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_expired_sender_certificate_is_refused_by_the_recipient() {
    let server = TestServer::start().await;
    let config = ServerConfig::new(server.addr, &server.fingerprint).unwrap();
    let mut alice = user(&config, "alice").await;
    // Bob accepts sealed sends with any access key, so the attacker below
    // gets past the server and only the recipient's checks stand.
    let mut open_to_anyone = fast_config();
    open_to_anyone.allow_unidentified_from_anyone = true;
    let mut bob = user_with(&config, "bob", open_to_anyone).await;

    // Alice and Bob talk; Bob's reply goes sealed, so Bob has fetched a
    // certificate and trusts the server's certificate key.
    alice
        .account
        .send_text(&Conversation::Direct("bob".into()), "hello bob")
        .unwrap();
    assert_eq!(next_text(&mut bob).await.1, "hello bob");
    bob.account
        .send_text(&Conversation::Direct("alice".into()), "hello alice")
        .unwrap();
    assert_eq!(
        next_text(&mut alice).await,
        ("bob".into(), "hello alice".into())
    );

    // Mallory claims to be Alice with a certificate she signed herself, and
    // with a genuine certificate (the server's key) that has expired.
    let mut rng = rand::rng();
    let mallory = IdentityKeyPair::generate(&mut rng);
    let real = server_signing_key(&server);
    let forged_signer = ServerSigningKey::generate(real.public().key_id(), &mut rng);
    let bob_identity = IdentityKey::from_bytes(&bob.account.identity_key()).unwrap();
    let alice_device = alice.account.device_id();
    let forged = forged_signer
        .issue(
            "alice",
            alice_device,
            mallory.public(),
            now_ms() + 3_600_000,
        )
        .unwrap();
    let expired = real
        .issue("alice", alice_device, mallory.public(), now_ms() - 60_000)
        .unwrap();
    let mut anon = server.client().await;
    for certificate in [&forged, &expired] {
        let sealed = sealed_sender::seal(
            &mut rng,
            &mallory,
            certificate,
            &bob_identity,
            ContentType::Session,
            b"not a session message",
        )
        .unwrap();
        let accepted = anon
            .request(Request::SendSealed(SendSealedRequest {
                recipient_username: "bob".into(),
                access_key: Bytes::from_static(&[7; 16]),
                envelopes: vec![OutgoingEnvelope {
                    recipient_device_id: bob.account.device_id(),
                    ciphertext: Bytes::from(sealed),
                }],
            }))
            .await;
        assert!(
            matches!(accepted, response::Result::Send(_)),
            "the server cannot tell a forged certificate: {accepted:?}"
        );
    }
    let first = next_refusal(&mut bob).await;
    assert!(first.contains("signature does not verify"), "{first}");
    let second = next_refusal(&mut bob).await;
    assert!(second.contains("expired"), "{second}");

    // Nothing of Bob's changed: Alice's next message opens and shows.
    alice
        .account
        .send_text(&Conversation::Direct("bob".into()), "still me")
        .unwrap();
    assert_eq!(
        next_text(&mut bob).await,
        ("alice".into(), "still me".into())
    );
    for device in [&alice, &bob] {
        device.account.disconnect().await;
    }
    server.stop().await;
}

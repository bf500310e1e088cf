//! Sealed sender on the server (SPEC.md §19.6-§19.9) over the wire, on
//! SQLite and (when configured) PostgreSQL: certificates signed by the
//! deployment's persisted key, sealed sends admitted only with the
//! recipient's access key on a connection that never logged in, stored and
//! logged without any sender, and rate-limited.

#[path = "support/backends.rs"]
mod backends;
mod common;
use microbot_test_support::engines;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    self, ErrorCode, FetchEnvelopesRequest, GetSenderCertificateRequest, OutgoingEnvelope,
    SendSealedRequest, SetUnidentifiedAccessRequest, client_frame::Request, response,
};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_logs() -> Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        captured
    })
    .clone()
}

fn set_access(key: &[u8], allow_anyone: bool) -> Request {
    Request::SetUnidentifiedAccess(SetUnidentifiedAccessRequest {
        access_key: Bytes::copy_from_slice(key),
        allow_anyone,
    })
}

fn sealed(to: &str, key: &[u8], devices: &[u64]) -> Request {
    Request::SendSealed(SendSealedRequest {
        recipient_username: to.to_owned(),
        access_key: Bytes::copy_from_slice(key),
        envelopes: devices
            .iter()
            .map(|d| OutgoingEnvelope {
                recipient_device_id: *d,
                ciphertext: random_bytes(120),
            })
            .collect(),
    })
}

async fn certificate(client: &mut Client) -> transport::SenderCertificateResponse {
    match client
        .request(Request::GetSenderCertificate(
            GetSenderCertificateRequest {},
        ))
        .await
    {
        response::Result::SenderCertificate(c) => c,
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test]
async fn sealed_sends_need_the_access_key_and_store_and_log_no_sender() {
    let logs = captured_logs();
    for backend in backends::backends("sealed_rows") {
        let server = backend.start(|_| {}).await;
        let mut bob = new_device(&server, "sealedbob").await;
        assert!(matches!(
            bob.client
                .request(Request::UploadPrekeys(prekey_upload(1, 2, 2)))
                .await,
            response::Result::Ok(_)
        ));
        let key = [0x5a; 16];
        assert!(matches!(
            bob.client.request(set_access(&key, false)).await,
            response::Result::Ok(_)
        ));
        let mut alice = new_device(&server, "sealedalicezq").await;
        let alice_device = alice.device_id.to_string();
        let mut anon = server.client().await;
        let start = logs.0.lock().unwrap().len();

        // A wrong key, an unknown account and no key at all look the same.
        for request in [
            sealed("sealedbob", &[0x5b; 16], &[bob.device_id]),
            sealed("nobodyhere", &key, &[bob.device_id]),
        ] {
            let e = anon.request_err(request).await;
            assert_eq!(
                code(&e),
                ErrorCode::UnidentifiedAccessDenied,
                "{}",
                backend.name
            );
        }
        let e = anon
            .request_err(sealed("sealedbob", &key[..15], &[bob.device_id]))
            .await;
        assert_eq!(code(&e), ErrorCode::InvalidArgument);
        // Only the recipient's own devices, all of them.
        let e = anon
            .request_err(sealed("sealedbob", &key, &[alice.device_id]))
            .await;
        assert_eq!(code(&e), ErrorCode::UnknownDevice);
        // A logged-in connection may not send sealed: it would name the sender.
        let e = alice
            .client
            .request_err(sealed("sealedbob", &key, &[bob.device_id]))
            .await;
        assert_eq!(code(&e), ErrorCode::AlreadyAuthenticated);

        match anon
            .request(sealed("sealedbob", &key, &[bob.device_id]))
            .await
        {
            response::Result::Send(r) => assert!(r.server_timestamp_ms > 0),
            other => panic!("unexpected answer {other:?}"),
        }
        // Stored (and pushed) without a sender.
        let push = bob.client.next_push().await;
        let Some(transport::push::Event::Envelope(pushed)) = push.event else {
            panic!("expected an envelope push");
        };
        assert_eq!(
            (pushed.sender_username.as_str(), pushed.sender_device_id),
            ("", 0)
        );
        match bob
            .client
            .request(Request::FetchEnvelopes(FetchEnvelopesRequest {
                after_envelope_id: 0,
                limit: 10,
            }))
            .await
        {
            response::Result::Envelopes(page) => {
                assert_eq!(page.envelopes.len(), 1, "{}", backend.name);
                let stored = &page.envelopes[0];
                assert_eq!(
                    (stored.sender_username.as_str(), stored.sender_device_id),
                    ("", 0)
                );
            }
            other => panic!("unexpected answer {other:?}"),
        }
        if backend.name == "sqlite" {
            let db = rusqlite::Connection::open(server.db_path()).unwrap();
            let rows: Vec<(String, i64)> = db
                .prepare("SELECT sender_username, sender_device_id FROM envelopes")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(rows, [(String::new(), 0)]);
        }
        // Nothing logged since the sealed sends began names Alice.
        let log = String::from_utf8_lossy(&logs.0.lock().unwrap()[start..]).into_owned();
        assert!(log.contains("sealed envelopes stored"), "the capture works");
        assert!(!log.contains("sealedalicezq"), "{log}");
        assert!(!log.contains(&format!("device_id={alice_device}")), "{log}");
        // Allowing anyone admits any key.
        assert!(matches!(
            bob.client.request(set_access(&[], true)).await,
            response::Result::Ok(_)
        ));
        assert!(matches!(
            anon.request(sealed("sealedbob", &[1; 16], &[bob.device_id]))
                .await,
            response::Result::Send(_)
        ));
        server.stop().await;
    }
}

#[tokio::test]
async fn sealed_sends_are_rate_limited() {
    let server = TestServer::start_with(|c| c.rate_send_per_account = 3).await;
    let mut bob = new_device(&server, "ratebob").await;
    let key = [7; 16];
    assert!(matches!(
        bob.client.request(set_access(&key, false)).await,
        response::Result::Ok(_)
    ));
    let mut anon = server.client().await;
    for _ in 0..3 {
        assert!(matches!(
            anon.request(sealed("ratebob", &key, &[bob.device_id]))
                .await,
            response::Result::Send(_)
        ));
    }
    let e = anon
        .request_err(sealed("ratebob", &key, &[bob.device_id]))
        .await;
    assert_eq!(code(&e), ErrorCode::RateLimited);
    assert!(e.retry_after_ms > 0);
    server.stop().await;
}

#[tokio::test]
async fn certificates_are_signed_by_one_persisted_key() {
    let server = TestServer::start().await;
    let mut alice = new_device(&server, "certalice").await;
    let e = alice
        .client
        .request_err(Request::GetSenderCertificate(
            GetSenderCertificateRequest {},
        ))
        .await;
    assert_eq!(code(&e), ErrorCode::NoPrekeys);
    let upload = prekey_upload(1, 1, 1);
    let identity = upload.identity_key.clone();
    assert!(matches!(
        alice.client.request(Request::UploadPrekeys(upload)).await,
        response::Result::Ok(_)
    ));
    let first = certificate(&mut alice.client).await;
    let cert = &first.certificate;
    assert_eq!(cert.len(), 118 + "certalice".len());
    assert_eq!(&cert[13..21], &alice.device_id.to_be_bytes());
    assert_eq!(&cert[21..53], identity.as_ref());
    let now = now_secs() * 1000;
    assert!(first.expires_at_ms > now + 23 * 3600 * 1000);
    assert_eq!(&cert[5..13], &first.expires_at_ms.to_be_bytes());
    let (body, signature) = cert.split_at(cert.len() - 64);
    let mut signed = b"Microbot SenderCertificate v1".to_vec();
    signed.extend_from_slice(body);
    let server_key = ed25519_dalek::VerifyingKey::from_bytes(
        first.server_public_key.as_ref().try_into().unwrap(),
    )
    .unwrap();
    server_key
        .verify_strict(
            &signed,
            &ed25519_dalek::Signature::from_slice(signature).unwrap(),
        )
        .unwrap();
    // The key is the deployment's: a restart on the same data signs alike.
    let key_id = alice.device_id;
    let device_key = alice.key;
    let dir = server.stop_keep_dir().await;
    let server = TestServer::start_in(dir, |_| {}).await;
    let mut again = reconnect(&server, key_id, &device_key).await;
    let second = certificate(&mut again).await;
    assert_eq!(second.server_public_key, first.server_public_key);
    assert_eq!(second.server_key_id, first.server_key_id);
    server.stop().await;
}

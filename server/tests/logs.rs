//! `tracing` output never carries envelope bytes, passwords, TOTP or
//! recovery codes, upload tokens or group metadata (SPEC.md §14.4): a run at
//! TRACE level with known markers, then a scan of everything logged.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{self, client_frame::Request, response};

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

#[tokio::test]
async fn logs_hold_no_envelope_bytes_or_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let server = TestServer::start().await;
    let mut alice = new_device(&server, "alice").await;
    let mut bob = new_device(&server, "bob").await;
    let marker = b"ENVELOPE-MARKER-7f3a9c";
    send_to(
        &mut alice.client,
        &[(bob.device_id, Bytes::from_static(marker))],
    )
    .await;
    let gid = Bytes::from(vec![3u8; 16]);
    alice
        .client
        .request(Request::CreateGroup(transport::CreateGroupRequest {
            group_id: gid.clone(),
            members: vec!["bob".into()],
            encrypted_metadata: Bytes::from_static(b"METADATA-MARKER-55e1"),
        }))
        .await;
    alice
        .client
        .request(Request::SendGroup(transport::SendGroupRequest {
            group_id: gid,
            ciphertext: Bytes::from_static(b"GROUP-MARKER-91bd"),
            ..transport::SendGroupRequest::default()
        }))
        .await;
    let token = match alice
        .client
        .request(Request::AttachmentUpload(
            transport::AttachmentUploadRequest {
                size: 10,
                attachment_id: Bytes::new(),
            },
        ))
        .await
    {
        response::Result::AttachmentUpload(d) => d.upload_token,
        other => panic!("{other:?}"),
    };
    // Failed credential checks log too: wrong password, wrong code.
    let mut c = server.client().await;
    c.request(Request::ConfirmRegistration(
        transport::ConfirmRegistrationRequest {
            username: "alice".into(),
            password: "PASSWORD-MARKER-wrong-1234".into(),
            totp_code: "123456".into(),
        },
    ))
    .await;
    fetch(&mut bob.client).await;
    server.stop().await;

    let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        log.contains("connection"),
        "the capture works: {} bytes",
        log.len()
    );
    let mut secrets: Vec<String> = vec![
        "ENVELOPE-MARKER".into(),
        "GROUP-MARKER".into(),
        "METADATA-MARKER".into(),
        "PASSWORD-MARKER".into(),
        alice.account.password.clone(),
        hex::encode(&token),
        format!("{:?}", token.as_ref()),
    ];
    secrets.extend(alice.account.recovery_codes.iter().cloned());
    let secret_b32 = alice.account.otpauth_uri.split("secret=").nth(1).unwrap();
    secrets.push(secret_b32.split('&').next().unwrap().to_owned());
    for secret in secrets {
        assert!(!log.contains(&secret), "log contains a secret: {secret}");
    }
    // Nor any raw byte array dump of the envelope.
    assert!(!log.contains(&format!("{:?}", &marker[..8])));
}

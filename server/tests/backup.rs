//! Online backup under load and restore (SPEC.md §18.4): senders keep
//! sending while `microbot-server backup` runs; the restored data directory
//! serves every envelope acknowledged before the backup started, the
//! attachments and the same certificate; restore refuses a running
//! server's directory.

use crate::common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{self, client_frame::Request, response};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_microbot-server"))
}

async fn fetch_all(client: &mut Client) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = match client
            .request(Request::FetchEnvelopes(transport::FetchEnvelopesRequest {
                after_envelope_id: after,
                limit: 1000,
            }))
            .await
        {
            response::Result::Envelopes(e) => e,
            other => panic!("{other:?}"),
        };
        if let Some(last) = page.envelopes.last() {
            after = last.envelope_id;
        }
        out.extend(page.envelopes.into_iter().map(|e| e.ciphertext));
        if !page.more {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_restores_every_acknowledged_envelope() {
    // The senders run flat out: the per-account send limit (0 = off) must not
    // refuse them on a fast machine, and one sender may fill bob's whole
    // queue (the per-sender share, SPEC §12.7, is not what this test is about).
    let server = TestServer::start_with(|config| {
        config.rate_send_per_account = 0;
        config.queue_sender_share_percent = 100;
    })
    .await;
    let alice = new_device(&server, "alice").await;
    let bob = new_device(&server, "bob").await;
    drop(bob.client); // bob is offline: everything stays queued

    // An attachment committed before the backup.
    let mut c = reconnect(&server, alice.device_id, &alice.key).await;
    let blob = random_bytes(70_000);
    let d = match c
        .request(Request::AttachmentUpload(
            transport::AttachmentUploadRequest {
                size: 70_000,
                attachment_id: Bytes::new(),
            },
        ))
        .await
    {
        response::Result::AttachmentUpload(d) => d,
        other => panic!("{other:?}"),
    };
    let (mut send, mut recv) = c.connection.open_bi().await.unwrap();
    let mut header = bytes::BytesMut::new();
    microbot_protocol::codec::encode_frame(
        &transport::AttachmentStreamHeader {
            kind: Some(transport::attachment_stream_header::Kind::Upload(
                transport::AttachmentUploadStart {
                    attachment_id: d.attachment_id.clone(),
                    upload_token: d.upload_token.clone(),
                    offset: 0,
                },
            )),
        },
        &mut header,
    )
    .unwrap();
    send.write_all(&header).await.unwrap();
    send.write_all(&blob).await.unwrap();
    send.finish().unwrap();
    let _ = recv.read_to_end(1024).await.unwrap();

    // Three senders on their own connections, recording acknowledgements.
    let acked: Arc<Mutex<Vec<Bytes>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..3 {
        let mut client = reconnect(&server, alice.device_id, &alice.key).await;
        let (acked, stop, bob_id) = (Arc::clone(&acked), Arc::clone(&stop), bob.device_id);
        senders.push(tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ct = Bytes::from(format!("sender{s}-message{i}"));
                let r = send_to(&mut client, &[(bob_id, ct.clone())]).await;
                assert!(matches!(r, response::Result::Send(_)), "{r:?}");
                acked.lock().unwrap().push(ct);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Restore into the running server's directory is refused.
    let out = bin()
        .args([
            "restore",
            "--from",
            "/nonexistent-but-checked-later",
            "--data-dir",
        ])
        .arg(server.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let backup_dir = tempfile::tempdir().unwrap();
    let file = backup_dir.path().join("snapshot.sqlite3");

    let before: Vec<Bytes> = acked.lock().unwrap().clone();
    let data_dir = server.dir.path().to_owned();
    let file2 = file.clone();
    let out = tokio::task::spawn_blocking(move || {
        bin()
            .args(["backup", "--to"])
            .arg(&file2)
            .arg("--data-dir")
            .arg(&data_dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let during = acked.lock().unwrap().len();
    assert!(
        during > before.len(),
        "senders kept going during the backup"
    );

    // Restoring over the live directory is refused (its lock is held).
    let out = bin()
        .args(["restore", "--force", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(server.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let fingerprint = server.fingerprint.clone();
    server.stop().await;

    let restored = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(restored.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second restore without --force refuses to replace the database.
    let out = bin()
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--data-dir")
        .arg(restored.path())
        .output()
        .unwrap();
    assert!(!out.status.success());

    let server = TestServer::start_in(restored, |_| {}).await;
    assert_eq!(server.fingerprint, fingerprint, "certificate restored");
    let mut bob_client = reconnect(&server, bob.device_id, &bob.key).await;
    let queued = fetch_all(&mut bob_client).await;
    let queued: std::collections::HashSet<Bytes> = queued.into_iter().collect();
    assert!(!before.is_empty());
    for ct in &before {
        assert!(
            queued.contains(ct),
            "acknowledged before the backup but missing: {ct:?}"
        );
    }
    let file = server
        .dir
        .path()
        .join("attachments")
        .join(hex::encode(&d.attachment_id));
    assert_eq!(std::fs::read(file).unwrap(), blob.as_ref());
    server.stop().await;
}

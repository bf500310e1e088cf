//! Files through a real server: 1:1 and group transfers of a few MiB with
//! progress reports, an upload resumed (from the outbox) after the
//! connection dropped, and
//! corrupted downloads refused with a typed error and no file left behind.
use crate::common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use microbot_client::{
    AttachmentDecryptError, AttachmentError, Conversation, FileOptions, IdentitySource, Progress,
};
use rand::Rng as _;

fn random_file(dir: &Path, name: &str, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// A progress callback that records every report.
fn recorder() -> (Arc<Mutex<Vec<Progress>>>, impl Fn(Progress) + Send + Sync) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (seen, move |p| sink.lock().unwrap().push(p))
}

/// Reports never go backwards, all name the same total, and end at it.
fn assert_progress(seen: &Mutex<Vec<Progress>>, total: u64) {
    let seen = seen.lock().unwrap();
    assert!(
        seen.len() >= 3,
        "a few MiB report progress along the way: {seen:?}"
    );
    assert!(seen.iter().all(|p| p.total_bytes == total));
    assert!(
        seen.windows(2).all(|w| w[0].done_bytes <= w[1].done_bytes),
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap().done_bytes, total);
}

fn attachment_files(server: &TestServer) -> usize {
    std::fs::read_dir(server.dir.path().join("attachments"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_file())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_a_few_mib_goes_one_to_one_with_progress() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let (path, data) = random_file(alice.dir.path(), "report.pdf", 3 * 1024 * 1024 + 12_345);
    let (sent_progress, callback) = recorder();
    let id = alice
        .account
        .send_file(&Conversation::Direct("bob".into()), &path, callback)
        .await
        .unwrap();
    assert_progress(&sent_progress, data.len() as u64);

    let got = next_text(&mut bob.events).await;
    assert_eq!(got.message_id, id);
    let pointer = got.attachment.expect("a file message");
    assert_eq!(pointer.file_name, "report.pdf");
    assert_eq!(pointer.content_type, "application/pdf");
    assert_eq!(pointer.size, data.len() as u64);
    assert_eq!(
        bob.account.attachment(&id).unwrap().as_ref(),
        Some(&pointer)
    );

    let dest = bob.dir.path().join("downloaded.pdf");
    let (received, callback) = recorder();
    let len = bob
        .account
        .download_attachment(&id, &dest, callback)
        .await
        .unwrap();
    assert_eq!(len, data.len() as u64);
    assert!(
        std::fs::read(&dest).unwrap() == data,
        "the file arrives intact"
    );
    assert_progress(&received, data.len() as u64);
    // The sender can fetch its own file again too.
    let again = alice.dir.path().join("again.pdf");
    alice
        .account
        .download_attachment(&id, &again, |_| {})
        .await
        .unwrap();
    assert!(std::fs::read(&again).unwrap() == data);
    // Nothing but ciphertext on the server.
    let stored = std::fs::read(
        server
            .dir
            .path()
            .join("attachments")
            .join(hex::encode(&pointer.attachment_id)),
    )
    .unwrap();
    assert!(stored.windows(64).all(|w| w != &data[..64]));
    // Without the connection the file is queued like a text
    // (queued_files.rs follows it to the recipient).
    alice.account.disconnect().await;
    alice
        .account
        .send_file(&Conversation::Direct("bob".into()), &path, |_| {})
        .await
        .unwrap();
    assert_eq!(alice.account.outbox_len().unwrap(), 1);
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_reaches_every_group_member() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut carol_user = register(&server, "carol").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let mut carol = online(&server, &mut carol_user, IdentitySource::New, fast_config()).await;
    let id = alice
        .account
        .create_group("files", &["bob", "carol"])
        .await
        .unwrap();
    let group = Conversation::Group(id);
    let (path, data) = random_file(alice.dir.path(), "photo.bin", 2 * 1024 * 1024 + 7);
    let options = FileOptions {
        file_name: Some("holiday.jpg".into()),
        content_type: Some("image/jpeg".into()),
        caption: "look".into(),
    };
    let message = alice
        .account
        .send_attachment(&group, &path, options, |_| {})
        .await
        .unwrap();
    for device in [&mut bob, &mut carol] {
        let got = next_text(&mut device.events).await;
        assert_eq!(got.conversation, group);
        assert_eq!(got.text, "look");
        let pointer = got.attachment.unwrap();
        assert_eq!(
            (pointer.file_name.as_str(), pointer.content_type.as_str()),
            ("holiday.jpg", "image/jpeg")
        );
        let dest = device.dir.path().join("holiday.jpg");
        let (seen, callback) = recorder();
        device
            .account
            .download_attachment(&message, &dest, callback)
            .await
            .unwrap();
        assert!(std::fs::read(&dest).unwrap() == data);
        assert_progress(&seen, data.len() as u64);
    }
    for d in [&alice, &bob, &carol] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_where_the_server_committed() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut config = fast_config();
    microbot_client::fault_injection::interrupt_upload_at(&mut config, 1536 * 1024);
    let alice = online(&server, &mut alice_user, IdentitySource::New, config).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let (path, data) = random_file(alice.dir.path(), "big.bin", 3 * 1024 * 1024);
    let (seen, callback) = recorder();
    let id = alice
        .account
        .send_file(&Conversation::Direct("bob".into()), &path, callback)
        .await
        .unwrap();
    // The send returned once the file was staged; the upload runs in the
    // outbox, is cut at 1.5 MiB, and resumes after the reconnection.
    assert_progress(&seen, data.len() as u64);
    let got = next_text(&mut bob.events).await;
    assert_eq!(got.message_id, id);
    // The same upload was continued (one attachment on the server, not two).
    assert_eq!(attachment_files(&server), 1);
    let dest = bob.dir.path().join("big.bin");
    bob.account
        .download_attachment(&id, &dest, |_| {})
        .await
        .unwrap();
    assert!(
        std::fs::read(&dest).unwrap() == data,
        "the resumed file arrives intact"
    );
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_download_is_refused_and_leaves_no_file() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let (path, _) = random_file(alice.dir.path(), "doc.txt", 300_000);
    let id = alice
        .account
        .send_file(&Conversation::Direct("bob".into()), &path, |_| {})
        .await
        .unwrap();
    let pointer = next_text(&mut bob.events).await.attachment.unwrap();

    // A pointer whose digest does not match: refused after the last byte.
    let dest = bob.dir.path().join("doc.txt");
    let mut forged = pointer.clone();
    let mut digest = forged.digest.to_vec();
    digest[0] ^= 1;
    forged.digest = digest.into();
    let err = bob
        .account
        .download_pointer(&forged, &dest, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttachmentError::Corrupt(AttachmentDecryptError::DigestMismatch)
        ),
        "{err:?}"
    );
    assert!(!dest.exists());

    // One flipped byte in the server's copy: refused at its segment.
    let stored = server
        .dir
        .path()
        .join("attachments")
        .join(hex::encode(&pointer.attachment_id));
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[100_000] ^= 0x80;
    std::fs::write(&stored, &bytes).unwrap();
    let err = bob
        .account
        .download_attachment(&id, &dest, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AttachmentError::Corrupt(AttachmentDecryptError::Corrupt { segment: 1 })
        ),
        "{err:?}"
    );
    assert!(!dest.exists(), "nothing appears at the destination");
    let leftovers: Vec<_> = std::fs::read_dir(bob.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Unknown ids are typed errors too.
    let err = bob
        .account
        .download_attachment(&[7u8; 16], &dest, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, AttachmentError::UnknownMessage));
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

//! Files queued like texts, through a real server: a file sent while not
//! connected shows in history as queued and arrives intact after
//! `connect()` with a `Sent` event; a queued file survives a restart and
//! keeps its place before a later text; a file the server or the
//! recipient refuses fails with a typed reason and leaves no staging copy;
//! a staging copy removed by hand fails the send instead of a panic.
use crate::common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use microbot_client::{
    Account, Conversation, DeliveryStage, ErrorCode, Event, IdentitySource, MessageId, Progress,
    SendFailureReason,
};
use microbot_test_support::UdpLink;
use rand::Rng as _;

fn random_file(dir: &Path, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// The staging copies next to `device`'s store.
fn staging_files(device: &Device) -> Vec<String> {
    let mut dir = device.store.path.as_os_str().to_owned();
    dir.push(".uploads");
    match std::fs::read_dir(PathBuf::from(dir)) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn sent(events: &mut microbot_client::Events, id: MessageId) -> u64 {
    wait_for(events, |e| match e {
        Event::Sent {
            message_id,
            server_timestamp_ms,
        } if *message_id == id => Some(*server_timestamp_ms),
        Event::SendFailed { message_id, reason } if *message_id == id => {
            panic!("the file failed: {reason:?}")
        }
        _ => None,
    })
    .await
}

async fn failed(events: &mut microbot_client::Events, id: MessageId) -> SendFailureReason {
    wait_for(events, |e| match e {
        Event::SendFailed { message_id, reason } if *message_id == id => Some(reason.clone()),
        Event::Sent { message_id, .. } if *message_id == id => panic!("the file was sent"),
        _ => None,
    })
    .await
}

/// Downloads the file message `id` on `device` and compares the bytes
/// (the download verifies the digest the pointer names).
async fn assert_arrives_intact(device: &Device, id: MessageId, data: &[u8]) {
    let dest = device.dir.path().join(format!("got-{}", hex::encode(id)));
    let len = device
        .account
        .download_attachment(&id, &dest, |_| {})
        .await
        .unwrap();
    assert_eq!(len, data.len() as u64);
    assert!(
        std::fs::read(&dest).unwrap() == data,
        "the file arrives intact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_sent_offline_is_queued_and_arrives_after_connect() {
    let server = TestServer::start().await;
    let mut alice = online_as(&server, "alice").await;
    let mut bob = online_as(&server, "bob").await;
    alice.account.disconnect().await;
    let to_bob = Conversation::Direct("bob".into());
    let (path, data) = random_file(alice.dir.path(), "notes.txt", 1024 * 1024 + 333);

    let seen = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let sink = Arc::clone(&seen);
    let id = alice
        .account
        .send_file(&to_bob, &path, move |p| sink.lock().unwrap().push(p))
        .await
        .expect("a file is accepted offline");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.first().unwrap().done_bytes, 0);
        assert_eq!(seen.last().unwrap().done_bytes, data.len() as u64);
        assert!(seen.windows(2).all(|w| w[0].done_bytes <= w[1].done_bytes));
    }
    // The original may go: the staging copy is what leaves.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(alice.account.outbox_len().unwrap(), 1);
    assert_eq!(staging_files(&alice).len(), 1);
    let page = alice.account.history_page(&to_bob, None, 10).unwrap();
    let mine = page
        .messages
        .iter()
        .find(|m| m.message_id == id)
        .expect("the queued file is in history");
    assert_eq!(mine.author, "alice");
    let pointer = mine.attachment.as_ref().expect("a file message");
    assert_eq!(pointer.file_name, "notes.txt");
    assert_eq!(pointer.size, data.len() as u64);
    assert_eq!(
        mine.delivery.as_ref().map(|d| d.stage),
        Some(DeliveryStage::Queued)
    );
    no_text_within(&mut bob.events, Duration::from_millis(300)).await;

    alice.account.connect();
    sent(&mut alice.events, id).await;
    let got = next_text(&mut bob.events).await;
    assert_eq!(got.message_id, id);
    assert_eq!(got.attachment.as_ref().unwrap().attachment_id.len(), 16);
    assert_arrives_intact(&bob, id, &data).await;
    assert!(staging_files(&alice).is_empty(), "the staging copy is gone");
    assert_eq!(alice.account.outbox_len().unwrap(), 0);
    let page = alice.account.history_page(&to_bob, None, 10).unwrap();
    let mine = page.messages.iter().find(|m| m.message_id == id).unwrap();
    assert!(mine.delivery.as_ref().unwrap().stage >= DeliveryStage::Sent);
    // Our own history now names the uploaded file: we can fetch it too.
    assert_arrives_intact(&alice, id, &data).await;
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_file_survives_a_restart_and_stays_before_a_later_text() {
    let server = TestServer::start().await;
    let alice = online_as(&server, "alice").await;
    let mut bob = online_as(&server, "bob").await;
    alice.account.disconnect().await;
    let to_bob = Conversation::Direct("bob".into());
    let (path, data) = random_file(alice.dir.path(), "album.zip", 2 * 1024 * 1024 + 5);
    let file = alice
        .account
        .send_file(&to_bob, &path, |_| {})
        .await
        .unwrap();
    let text = alice.account.send_text(&to_bob, "did you get it?").unwrap();
    assert_eq!(alice.account.outbox_len().unwrap(), 2);
    let store = alice.store.clone();
    let dir = alice.dir;
    drop(alice.account);
    drop(alice.events);

    // "Restart": the queued file and the text after it are still there.
    let (account, mut events) = Account::open(&store, fast_config()).unwrap();
    assert_eq!(account.outbox_len().unwrap(), 2);
    account.connect();
    let first = next_text(&mut bob.events).await;
    assert_eq!(first.message_id, file, "the file leaves first");
    let second = next_text(&mut bob.events).await;
    assert_eq!(second.message_id, text);
    assert_eq!(second.text, "did you get it?");
    let file_sent = sent(&mut events, file).await;
    assert_arrives_intact(&bob, file, &data).await;
    assert_eq!(account.outbox_len().unwrap(), 0);
    assert!(file_sent > 0);
    let mut staging = store.path.as_os_str().to_owned();
    staging.push(".uploads");
    assert_eq!(
        std::fs::read_dir(PathBuf::from(staging)).unwrap().count(),
        0,
        "no staging copy is left"
    );
    account.disconnect().await;
    drop(dir);
    bob.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_sent_right_after_a_file_arrives_after_it() {
    let server = TestServer::start().await;
    let mut alice = online_as(&server, "alice").await;
    let mut bob = online_as(&server, "bob").await;
    let to_bob = Conversation::Direct("bob".into());
    let (path, data) = random_file(alice.dir.path(), "video.mp4", 3 * 1024 * 1024);
    let file = alice
        .account
        .send_file(&to_bob, &path, |_| {})
        .await
        .unwrap();
    // Queued while the file is still uploading.
    let text = alice
        .account
        .send_text(&to_bob, "that was the video")
        .unwrap();
    assert_eq!(next_text(&mut bob.events).await.message_id, file);
    assert_eq!(next_text(&mut bob.events).await.message_id, text);
    sent(&mut alice.events, file).await;
    sent(&mut alice.events, text).await;
    assert_arrives_intact(&bob, file, &data).await;
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

/// The upload of a queued file runs beside the connection's other work:
/// a message sent to the uploader meanwhile arrives before the upload
/// ends (it used to wait in the connection's buffer behind the upload).
/// Alice's uplink is slowed to 1 MiB/s by a relay, so her 3 MiB upload
/// takes at least 3 s whatever the machine's speed, and Bob's message,
/// which comes down the unslowed downlink, has that long to arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_keep_arriving_while_a_queued_file_uploads() {
    let server = TestServer::start().await;
    let slow_uplink = UdpLink::with_slow_uplink(server.addr, 1024 * 1024).await;
    let mut user = register(&server, "alice").await;
    let mut alice = enrol_via(
        &slow_uplink.server_config(&server.config),
        &mut user,
        IdentitySource::New,
        fast_config(),
        None,
    )
    .await;
    alice.account.connect();
    wait_connected(&mut alice.events).await;
    let mut bob = online_as(&server, "bob").await;
    let (to_alice, to_bob) = (
        Conversation::Direct("alice".into()),
        Conversation::Direct("bob".into()),
    );
    // Sessions both ways first, so Bob's later message is one request.
    alice.account.send_text(&to_bob, "hi").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "hi");
    bob.account.send_text(&to_alice, "hi back").unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, "hi back");

    let (path, data) = random_file(alice.dir.path(), "big.bin", 3 * 1024 * 1024);
    let file = alice
        .account
        .send_file(&to_bob, &path, |_| {})
        .await
        .unwrap();
    let upload_began = std::time::Instant::now();
    bob.account
        .send_text(&to_alice, "while you upload")
        .unwrap();
    let message_first = wait_for(&mut alice.events, |e| match e {
        Event::Message(m) if m.text == "while you upload" => Some(true),
        Event::Sent { message_id, .. } if *message_id == file => Some(false),
        _ => None,
    })
    .await;
    assert!(message_first, "Bob's message waited for Alice's upload");
    sent(&mut alice.events, file).await;
    assert!(
        upload_began.elapsed() >= Duration::from_secs(2),
        "the uplink was not slow: the upload took {:?}",
        upload_began.elapsed()
    );
    assert_eq!(next_text(&mut bob.events).await.message_id, file);
    assert_arrives_intact(&bob, file, &data).await;
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_to_an_unknown_account_fails_typed_and_leaves_no_copy() {
    let server = TestServer::start().await;
    let mut alice = online_as(&server, "alice").await;
    let (path, _) = random_file(alice.dir.path(), "a.bin", 200_000);
    let id = alice
        .account
        .send_file(&Conversation::Direct("nobody".into()), &path, |_| {})
        .await
        .expect("accepted: whether the account exists is the server's to say");
    let reason = failed(&mut alice.events, id).await;
    assert_eq!(
        reason,
        SendFailureReason::UnknownAccount {
            username: "nobody".into()
        }
    );
    assert!(
        staging_files(&alice).is_empty(),
        "{:?}",
        staging_files(&alice)
    );
    assert_eq!(alice.account.outbox_len().unwrap(), 0);
    // Nothing was uploaded for an account that does not exist.
    let server_db = rusqlite::Connection::open(server.dir.path().join("microbot.sqlite3")).unwrap();
    let uploads: i64 = server_db
        .query_row("SELECT COUNT(*) FROM attachments", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        uploads, 0,
        "the file was uploaded before the recipient was known"
    );
    alice.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_too_large_for_the_server_fails_typed_and_a_later_text_still_leaves() {
    let server = TestServer::start_tweaked(
        tempfile::tempdir().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        |config| config.max_attachment_len = 64 * 1024,
    )
    .await;
    let mut alice = online_as(&server, "alice").await;
    let mut bob = online_as(&server, "bob").await;
    alice.account.disconnect().await;
    let to_bob = Conversation::Direct("bob".into());
    let (path, _) = random_file(alice.dir.path(), "huge.bin", 200_000);
    let id = alice
        .account
        .send_file(&to_bob, &path, |_| {})
        .await
        .unwrap();
    let text = alice.account.send_text(&to_bob, "too big, sorry").unwrap();
    alice.account.connect();
    let reason = failed(&mut alice.events, id).await;
    assert!(
        matches!(
            &reason,
            SendFailureReason::ServerRefused {
                code: ErrorCode::AttachmentTooLarge,
                ..
            }
        ),
        "{reason:?}"
    );
    assert_eq!(reason.kind(), "server_refused");
    let got = next_text(&mut bob.events).await;
    assert_eq!(
        got.message_id, text,
        "the file never arrives; the text does"
    );
    assert!(staging_files(&alice).is_empty());
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_copy_removed_by_hand_fails_the_send_with_a_typed_reason() {
    let server = TestServer::start().await;
    let mut alice = online_as(&server, "alice").await;
    let mut bob = online_as(&server, "bob").await;
    alice.account.disconnect().await;
    let to_bob = Conversation::Direct("bob".into());
    let (path, _) = random_file(alice.dir.path(), "gone.bin", 100_000);
    let id = alice
        .account
        .send_file(&to_bob, &path, |_| {})
        .await
        .unwrap();
    let mut staging = alice.store.path.as_os_str().to_owned();
    staging.push(".uploads");
    let staging = PathBuf::from(staging);
    for entry in std::fs::read_dir(&staging).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    alice.account.connect();
    let reason = failed(&mut alice.events, id).await;
    assert!(
        matches!(reason, SendFailureReason::FileUnavailable { .. }),
        "{reason:?}"
    );
    assert_eq!(reason.kind(), "file_unavailable");
    assert_eq!(alice.account.outbox_len().unwrap(), 0);
    // The account goes on sending.
    let text = alice.account.send_text(&to_bob, "still here").unwrap();
    assert_eq!(next_text(&mut bob.events).await.message_id, text);
    for d in [&alice, &bob] {
        d.account.disconnect().await;
    }
    server.stop().await;
}

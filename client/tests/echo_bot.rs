//! The `echo_bot` example (the bot API in one screen) run as a real process
//! against a real server on loopback: enrolled with a real TOTP code, it
//! answers a 1:1 text and a group text with the same words, fetches a file
//! it is sent and says how big it was, and after a restart (`run STORE`)
//! reopens its profile and keeps answering.
//!
//! `cargo test` builds the workspace's examples before running tests; the
//! binary is looked up next to this test's executable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestServer, fast_config, next_text, online, register, wait_for};
use microbot_client::{Conversation, Event, IdentitySource};

/// `target/<profile>/examples/echo_bot`, beside `target/<profile>/deps/<this test>`.
fn echo_bot_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = profile_dir
        .join("examples")
        .join(format!("echo_bot{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test -p microbot-client` (which builds the examples)",
        bin.display()
    );
    bin
}

/// The bot process; killed when dropped.
struct Bot(Child);

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the bot with `args` in `dir` and waits until it reports its
/// first completed sync (prekeys published, queue fetched).
fn start_bot(dir: &std::path::Path, args: &[String]) -> Bot {
    let mut child = Command::new(echo_bot_binary())
        .args(args)
        .current_dir(dir)
        .env_remove("MICROBOT_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == "connection: Connected" {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the bot reported that it connected");
    Bot(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_bot_answers_texts_in_chats_and_groups_and_fetches_files() {
    let server = TestServer::start().await;
    let mut bot_user = register(&server, "echobot").await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("bot.sqlite3");
    let enrol_args = vec![
        "enrol".to_owned(),
        store.display().to_string(),
        server.addr.to_string(),
        server.config.fingerprint_hex(),
        bot_user.username.clone(),
        bot_user.password.clone(),
        bot_user.auth.fresh(),
    ];
    let bot = start_bot(dir.path(), &enrol_args);

    // 1:1: the same words come back.
    let direct = Conversation::Direct("echobot".into());
    alice.account.send_text(&direct, "ping").unwrap();
    let reply = next_text(&mut alice.events).await;
    assert_eq!(
        (reply.author.as_str(), reply.text.as_str()),
        ("echobot", "ping")
    );
    assert_eq!(reply.conversation, direct);

    // A group: the answer goes to the group, so Bob sees it too.
    let group = alice
        .account
        .create_group("bots", &["echobot", "bob"])
        .await
        .unwrap();
    wait_for(&mut bob.events, |e| {
        matches!(e, Event::GroupChanged { group_id, .. } if *group_id == group).then_some(())
    })
    .await;
    let chat = Conversation::Group(group);
    // The bot learns of the group (and gets Alice's sender key) with the
    // message; give its membership a moment to be announced.
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.account.send_text(&chat, "hello group").unwrap();
    let echoed = wait_for(&mut bob.events, |e| match e {
        Event::Message(m) if m.author == "echobot" => Some((**m).clone()),
        _ => None,
    })
    .await;
    assert_eq!(echoed.text, "hello group");
    assert_eq!(echoed.conversation, chat);

    // A file: the bot downloads and decrypts it, then reports its size.
    let file = dir.path().join("notes.txt");
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    alice
        .account
        .send_file(&direct, &file, |_| {})
        .await
        .unwrap();
    let answer = wait_for(&mut alice.events, |e| match e {
        Event::Message(m) if m.author == "echobot" && m.conversation == direct => {
            Some((**m).clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(answer.text, format!("got your file ({} bytes)", data.len()));
    assert_eq!(
        std::fs::read(dir.path().join("received-notes.txt")).unwrap(),
        data
    );

    // Restarted from its store, it keeps answering (messages sent while it
    // was down wait in its queue).
    drop(bot);
    alice.account.send_text(&direct, "are you back?").unwrap();
    let _bot = start_bot(dir.path(), &["run".to_owned(), store.display().to_string()]);
    let back = wait_for(&mut alice.events, |e| match e {
        Event::Message(m) if m.author == "echobot" && m.text == "are you back?" => Some(()),
        _ => None,
    })
    .await;
    let () = back;

    for device in [&alice, &bob] {
        device.account.disconnect().await;
    }
    server.stop().await;
}

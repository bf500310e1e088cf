//! The two sample bots against a real server on loopback, with a user on
//! the client SDK talking to them: the echo bot through every kind of
//! handler (commands, /start, /help, unknown and mistyped commands, plain
//! messages, edits, reactions, a file, a group join), and the reminder bot
//! keeping a reminder across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use microbot_test_support::sdk as common;

use std::time::Duration;

use common::*;
use microbot_bot::samples::{echo, reminder};
use microbot_bot::{Bot, PacingConfig};
use microbot_client::{Account, Conversation, Event, Events, IdentitySource, IncomingMessage};
use tokio::sync::oneshot;

/// The next message from `bot` (skipping other events), with a longer
/// wait than [`common::WAIT`] for reminders.
async fn from_bot(events: &mut Events, bot: &str) -> IncomingMessage {
    wait_for(events, |e| match e {
        Event::Message(m) if m.author == bot => Some((**m).clone()),
        _ => None,
    })
    .await
}

async fn text_from_bot(events: &mut Events, bot: &str) -> String {
    from_bot(events, bot).await.text
}

/// Runs a bot task; the sender stops it.
fn spawn_bot(bot: Bot) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(bot.run(async {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// Stops a reminder bot started by the test and checks it ended cleanly.
async fn stop_reminder_bot(
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), microbot_bot::BotError>>,
) {
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Fast pacing for tests (the pacing itself is unit-tested).
const QUICK: PacingConfig = PacingConfig {
    per_conversation_per_sec: 50.0,
    per_conversation_burst: 50.0,
    overall_per_sec: 50.0,
    overall_burst: 50.0,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_bot_answers_every_kind_of_event() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bot_user = register_bot(&server, "echobot").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    // Online first, so its prekeys are published before anyone writes to it.
    let bot_device = online(&server, &mut bot_user, IdentitySource::New, fast_config()).await;
    let bot =
        Bot::with_pacing(bot_device.account, bot_device.events, echo::router(), QUICK).unwrap();
    let (stop, task) = spawn_bot(bot);
    let chat = Conversation::Direct("echobot".into());
    let events = &mut alice.events;

    alice.account.send_text(&chat, "/start").unwrap();
    let start = text_from_bot(events, "echobot").await;
    assert!(
        start.starts_with(echo::ABOUT) && start.contains("/help"),
        "{start}"
    );
    // Registered as a bot: Alice's client knows it from the keys it fetched.
    assert!(alice.account.is_bot("echobot").unwrap());
    assert!(!alice.account.is_bot("alice").unwrap());

    alice.account.send_text(&chat, "/help").unwrap();
    let help = text_from_bot(events, "echobot").await;
    for line in [
        "/echo <text> — say <text> back",
        "/file <text>",
        "/start",
        "/help",
    ] {
        assert!(help.contains(line), "{line} missing from {help}");
    }

    alice
        .account
        .send_text(&chat, "/echo  hello  there ")
        .unwrap();
    assert_eq!(text_from_bot(events, "echobot").await, "hello  there");
    alice
        .account
        .send_text(&chat, "/ECHO@echobot \"quoted\"")
        .unwrap();
    assert_eq!(text_from_bot(events, "echobot").await, "\"quoted\"");
    alice.account.send_text(&chat, "/echo").unwrap();
    assert_eq!(
        text_from_bot(events, "echobot").await,
        "Usage: /echo <text>"
    );
    alice.account.send_text(&chat, "/frobnicate").unwrap();
    assert!(
        text_from_bot(events, "echobot")
            .await
            .starts_with("I don't know /frobnicate")
    );
    alice.account.send_text(&chat, "/echo \"open").unwrap();
    assert!(
        text_from_bot(events, "echobot")
            .await
            .contains("not closed")
    );
    // A command for another bot is not answered; the next message is.
    alice.account.send_text(&chat, "/echo@otherbot hi").unwrap();
    let plain = alice.account.send_text(&chat, "just text").unwrap();
    assert_eq!(text_from_bot(events, "echobot").await, "just text");

    alice.account.edit(&chat, plain, "edited text").unwrap();
    assert_eq!(
        text_from_bot(events, "echobot").await,
        "You edited a message: edited text"
    );
    alice.account.react(&chat, plain, "👍", false).unwrap();
    assert_eq!(text_from_bot(events, "echobot").await, "You reacted 👍");

    alice
        .account
        .send_text(&chat, "/file the file's words")
        .unwrap();
    let file = from_bot(events, "echobot").await;
    assert!(file.attachment.is_some(), "{file:?}");
    let dest = alice.dir.path().join("got.txt");
    alice
        .account
        .download_attachment(&file.message_id, &dest, |_| {})
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"the file's words");

    let group = alice
        .account
        .create_group("club", &["echobot"])
        .await
        .unwrap();
    let greeting = from_bot(events, "echobot").await;
    assert_eq!(greeting.conversation, Conversation::Group(group));
    assert!(greeting.text.starts_with("Hello, group!"), "{greeting:?}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminder_bot_keeps_its_reminders_across_a_restart() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bot_user = register(&server, "remindbot").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    // Online first, so its prekeys are published before anyone writes to it.
    let bot_device = online(&server, &mut bot_user, IdentitySource::New, fast_config()).await;
    let state = bot_device.dir.path().join("reminders.json");
    let store = bot_device.store.clone();
    let chat = Conversation::Direct("remindbot".into());
    let events = &mut alice.events;

    let start = |account: Account, events: Events| {
        let state = state.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            reminder::run(account, events, &state, async {
                let _ = stopped.await;
            })
            .await
        });
        (stop, task)
    };
    let (stop, task) = start(bot_device.account, bot_device.events);

    alice.account.send_text(&chat, "/remind soon tea").unwrap();
    assert!(
        text_from_bot(events, "remindbot")
            .await
            .starts_with("a delay looks like")
    );
    alice.account.send_text(&chat, "/remind 5m").unwrap();
    assert!(
        text_from_bot(events, "remindbot")
            .await
            .starts_with("Usage: /remind")
    );
    let set_at = tokio::time::Instant::now();
    alice
        .account
        .send_text(&chat, "/remind 12s tea time")
        .unwrap();
    assert_eq!(
        text_from_bot(events, "remindbot").await,
        "Reminder 1 set for 12s."
    );
    alice
        .account
        .send_text(&chat, "/remind 1h30m call home")
        .unwrap();
    assert_eq!(
        text_from_bot(events, "remindbot").await,
        "Reminder 2 set for 1h 30m."
    );
    alice.account.send_text(&chat, "/reminders").unwrap();
    let list = text_from_bot(events, "remindbot").await;
    assert!(
        list.starts_with("1: tea time (in ") && list.contains("\n2: call home (in 1h 29m"),
        "{list}"
    );
    alice.account.send_text(&chat, "/cancel 2").unwrap();
    assert_eq!(
        text_from_bot(events, "remindbot").await,
        "Reminder 2 cancelled."
    );
    alice.account.send_text(&chat, "/cancel 2").unwrap();
    assert_eq!(
        text_from_bot(events, "remindbot").await,
        "There is no reminder 2 here."
    );

    // The bot goes down before the reminder is due, and stays down past it.
    stop_reminder_bot(stop, task).await;
    let due = set_at + Duration::from_secs(12);
    assert!(
        tokio::time::Instant::now() < due,
        "the machine is too slow for this test: the bot stopped after the reminder was due"
    );
    no_text_within(
        events,
        due - tokio::time::Instant::now() + Duration::from_secs(1),
    )
    .await;

    // Back up (same store, same file): the overdue reminder fires once.
    let (account, bot_events) = Account::open(&store, fast_config()).unwrap();
    let (stop, task) = start(account, bot_events);
    let fired = from_bot(events, "remindbot").await;
    assert_eq!(fired.text, "⏰ Reminder: tea time");
    assert_eq!(fired.conversation, Conversation::Direct("remindbot".into()));
    alice.account.send_text(&chat, "/reminders").unwrap();
    assert_eq!(
        text_from_bot(events, "remindbot").await,
        "No reminders here."
    );
    stop_reminder_bot(stop, task).await;

    // A state file it cannot read stops it with a typed error, untouched.
    std::fs::write(&state, b"{ not json").unwrap();
    let (account, bot_events) = Account::open(&store, fast_config()).unwrap();
    let refused = reminder::run(account, bot_events, &state, async {}).await;
    assert!(
        matches!(refused, Err(microbot_bot::BotError::State(_))),
        "{refused:?}"
    );
    assert_eq!(std::fs::read(&state).unwrap(), b"{ not json");
    server.stop().await;
}

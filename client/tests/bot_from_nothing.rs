//! The crate README's first example, run for real: a bot account is
//! registered, confirmed and enrolled with codes from `TotpGenerator`
//! alone (two codes back to back, both accepted), connects and answers.

use crate::common;

use common::*;
use microbot_client::{
    Account, Conversation, Enrolment, Event, IdentitySource, SecondFactor, StoreConfig,
    TotpGenerator, confirm_registration, register_bot,
};
use zeroize::Zeroizing;

#[tokio::test(flavor = "multi_thread")]
async fn a_bot_registers_and_enrols_from_nothing_with_the_totp_helper() {
    let server = TestServer::start().await;
    let (username, password) = ("echo_bot", "a long bot password");
    let registration = register_bot(&server.config, username, password)
        .await
        .unwrap();
    let mut totp = TotpGenerator::from_base32(&registration.totp_secret_base32).unwrap();
    confirm_registration(&server.config, username, password, &totp.next_code().await)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(dir.path().join("bot.sqlite3")).with_kdf(CHEAP_KDF);
    let (bot, mut bot_events) = Account::enrol(
        &store,
        server.config.clone(),
        Enrolment {
            username: username.into(),
            password: Zeroizing::new(password.into()),
            second_factor: SecondFactor::Totp(totp.next_code().await.to_string()),
            identity: IdentitySource::New,
        },
        fast_config(),
    )
    .await
    .expect("the second code in a row is accepted");
    bot.connect();
    wait_connected(&mut bot_events).await;

    let mut carol_user = register(&server, "carol").await;
    let carol = online(&server, &mut carol_user, IdentitySource::New, fast_config()).await;
    let mut carol_events = carol.events;
    carol
        .account
        .send_text(&Conversation::Direct(username.into()), "hi bot")
        .unwrap();
    let heard = wait_for(&mut bot_events, |e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (heard.author.as_str(), heard.text.as_str()),
        ("carol", "hi bot")
    );
    bot.send_text(
        &Conversation::Direct(heard.author.clone()),
        &format!("you said: {}", heard.text),
    )
    .unwrap();
    assert_eq!(next_text(&mut carol_events).await.text, "you said: hi bot");
    server.stop().await;
}

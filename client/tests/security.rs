//! Identity changes and encryption at rest.
use crate::common;

use std::time::Duration;

use common::*;
use microbot_client::{
    Account, Conversation, ErrorCode, Event, IdentitySource, OpenError, SendError, StoreConfig,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_identity_is_surfaced_and_must_be_acknowledged() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    let to_bob = Conversation::Direct("bob".into());
    alice.account.send_text(&to_bob, "hi").unwrap();
    assert_eq!(next_text(&mut bob.events).await.text, "hi");
    let old_number = alice.account.safety_number("bob").unwrap().unwrap();

    // Bob "reinstalls": deletes the account, registers again, new identity.
    let code = bob_user.auth.fresh();
    bob.account
        .delete_account(&bob_user.password, &code)
        .await
        .unwrap();
    bob.account.disconnect().await;
    let mut bob_user = register(&server, "bob").await;
    let mut bob2 = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;

    // Alice's next send finds Bob's old device gone, re-fetches, sees the new key.
    let held = alice
        .account
        .send_text(&to_bob, "are you still you?")
        .unwrap();
    let new_number = wait_for(&mut alice.events, |e| match e {
        Event::SafetyNumberChanged {
            username,
            safety_number,
        } if username == "bob" => Some(safety_number.clone()),
        _ => None,
    })
    .await;
    assert_ne!(new_number.digits(), old_number.digits());
    assert!(matches!(
        alice.account.send_text(&to_bob, "refused"),
        Err(SendError::UntrustedIdentity { .. })
    ));
    assert_eq!(
        alice.account.contacts().unwrap(),
        vec![("bob".to_owned(), true)]
    );
    no_text_within(&mut bob2.events, Duration::from_millis(300)).await;
    assert_eq!(alice.account.outbox_len().unwrap(), 1);

    alice.account.acknowledge_identity_change("bob").unwrap();
    let got = next_text(&mut bob2.events).await;
    assert_eq!(got.message_id, held);
    alice.account.send_text(&to_bob, "verified").unwrap();
    assert_eq!(next_text(&mut bob2.events).await.text, "verified");
    assert!(alice.account.acknowledge_identity_change("bob").is_err());
    alice.account.disconnect().await;
    bob2.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_store_refuses_a_wrong_passphrase_and_holds_no_plaintext() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = enrol(
        &server,
        &mut alice_user,
        IdentitySource::New,
        fast_config(),
        Some("correct horse battery"),
    )
    .await;
    alice.account.connect();
    wait_connected(&mut alice.events).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;
    const MARKER: &str = "PLAINTEXT-MARKER-7f3a9c";
    bob.account
        .send_text(&Conversation::Direct("alice".into()), MARKER)
        .unwrap();
    assert_eq!(next_text(&mut alice.events).await.text, MARKER);
    alice
        .account
        .send_text(
            &Conversation::Direct("bob".into()),
            &format!("{MARKER} reply"),
        )
        .unwrap();
    next_text(&mut bob.events).await;
    // A group: its name, sender keys and messages are sealed at rest too.
    let group_id = bob
        .account
        .create_group(&format!("{MARKER} group"), &["alice"])
        .await
        .unwrap();
    let group = Conversation::Group(group_id);
    bob.account
        .send_text(&group, &format!("{MARKER} in group"))
        .unwrap();
    assert_eq!(
        next_text(&mut alice.events).await.text,
        format!("{MARKER} in group")
    );
    alice.account.disconnect().await;
    let path = alice.path();
    let _dir = alice.dir;
    drop(alice.account);

    let wrong = StoreConfig::new(&path)
        .with_passphrase("wrong horse")
        .with_kdf(CHEAP_KDF);
    assert!(matches!(
        Account::open(&wrong, fast_config()),
        Err(OpenError::WrongPassphrase)
    ));
    assert!(matches!(
        Account::open(&StoreConfig::new(&path), fast_config()),
        Err(OpenError::PassphraseRequired)
    ));
    // Neither the message texts nor the identity seed are in the file or its WAL.
    for suffix in ["", "-wal"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        if let Ok(bytes) = std::fs::read(&file) {
            assert!(
                !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
                "marker found in {file:?}"
            );
        }
    }
    let (reopened, _events) = Account::open(&alice.store, fast_config()).unwrap();
    let groups = reopened.groups().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, format!("{MARKER} group"));
    assert_eq!(reopened.history(&group, 10).unwrap().len(), 1);
    let history = reopened
        .history(&Conversation::Direct("bob".into()), 10)
        .unwrap();
    assert_eq!(history.len(), 2);
    assert!(matches!(
        &history[0].status,
        microbot_client::MessageStatus::Visible { text, .. } if text == MARKER
    ));
    bob.account.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_errors_are_typed() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let taken = microbot_client::register(&server.config, "alice", "another password").await;
    let Err(microbot_client::AuthError::Transport(error)) = taken else {
        panic!("expected a refusal")
    };
    assert_eq!(error.server_code(), Some(ErrorCode::UsernameTaken));
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(dir.path().join("s.sqlite3"));
    let wrong_code = Account::enrol(
        &store,
        server.config.clone(),
        microbot_client::Enrolment {
            username: "alice".into(),
            password: zeroize::Zeroizing::new(alice_user.password.clone()),
            second_factor: microbot_client::SecondFactor::Totp("000000".into()),
            identity: IdentitySource::New,
        },
        fast_config(),
    )
    .await;
    let Err(microbot_client::AuthError::Transport(error)) = wrong_code else {
        panic!("expected a refusal")
    };
    // Enrolment answers one error for a wrong password or code (SPEC §13.6).
    assert_eq!(error.server_code(), Some(ErrorCode::InvalidCredentials));
    // A recovery code works once as a second factor.
    let code = alice_user.recovery_codes[0].clone();
    let (account, _events) = Account::enrol(
        &store,
        server.config.clone(),
        microbot_client::Enrolment {
            username: "alice".into(),
            password: zeroize::Zeroizing::new(alice_user.password.clone()),
            second_factor: microbot_client::SecondFactor::RecoveryCode(code.into()),
            identity: IdentitySource::New,
        },
        fast_config(),
    )
    .await
    .unwrap();
    assert!(account.device_id() > 0);
    let _ = alice_user.auth.fresh();
    server.stop().await;
}

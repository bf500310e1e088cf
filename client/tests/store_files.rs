//! The store's file (issue 15, the embedder's API): opening a mistyped
//! path is an error and creates nothing, a failed enrolment leaves no
//! file, and two handles cannot run one store at once.

use crate::common;

use common::*;
use microbot_client::{
    Account, AuthError, Conversation, Enrolment, IdentitySource, OpenError, SecondFactor,
    StoreConfig,
};
use zeroize::Zeroizing;

#[tokio::test(flavor = "multi_thread")]
async fn opening_a_missing_store_is_an_error_and_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("clinet.sqlite3");
    let result = Account::open(&StoreConfig::new(&typo), fast_config());
    match result {
        Err(OpenError::NotFound { path }) => assert_eq!(path, typo),
        other => panic!("expected NotFound, got {:?}", other.map(|_| ())),
    }
    assert!(!typo.exists(), "opening must not create {typo:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_enrolment_leaves_no_file_and_an_old_file_is_kept() {
    let server = TestServer::start().await;
    let mut user = register(&server, "frida").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client.sqlite3");
    let store = StoreConfig::new(&path).with_kdf(CHEAP_KDF);
    let wrong_password = Enrolment {
        username: user.username.clone(),
        password: Zeroizing::new("not the password".into()),
        second_factor: SecondFactor::Totp(user.auth.fresh()),
        identity: IdentitySource::New,
    };
    let refused = Account::enrol(&store, server.config.clone(), wrong_password, fast_config())
        .await
        .map(|_| ());
    assert!(
        matches!(refused, Err(AuthError::Transport(ref e)) if e.server_code().is_some()),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a refused enrolment left files behind"
    );

    // An enrolled store is kept, and a second enrolment into it is
    // refused without touching it.
    let device = enrol_into(&server, &mut user, &store).await;
    drop(device);
    let again = try_enrol(
        &server.config,
        &store,
        &mut user,
        IdentitySource::New,
        fast_config(),
    )
    .await
    .map(|_| ());
    assert!(
        matches!(again, Err(AuthError::Open(OpenError::AlreadyEnrolled))),
        "{again:?}"
    );
    assert!(path.exists(), "the enrolled store was removed");
    let (reopened, _events) = Account::open(&store, fast_config()).unwrap();
    assert_eq!(reopened.username(), "frida");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_handles_cannot_open_one_store() {
    let server = TestServer::start().await;
    let mut user = register(&server, "gus").await;
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(dir.path().join("client.sqlite3")).with_kdf(CHEAP_KDF);
    let (first, _events) = enrol_into(&server, &mut user, &store).await;
    match Account::open(&store, fast_config()) {
        Err(OpenError::InUse { path }) => assert_eq!(path, store.path),
        other => panic!("expected InUse, got {:?}", other.map(|_| ())),
    }
    // Enrolling into it is refused the same way, and leaves it intact.
    let racing = try_enrol(
        &server.config,
        &store,
        &mut user,
        IdentitySource::New,
        fast_config(),
    )
    .await
    .map(|_| ());
    assert!(
        matches!(racing, Err(AuthError::Open(OpenError::InUse { .. }))),
        "{racing:?}"
    );
    // Once the first handle is gone the store opens, with its account.
    drop(first);
    let (reopened, _events) = Account::open(&store, fast_config()).unwrap();
    assert_eq!(reopened.username(), "gus");
    server.stop().await;
}

async fn enrol_into(
    server: &TestServer,
    user: &mut User,
    store: &StoreConfig,
) -> (Account, microbot_client::Events) {
    try_enrol(
        &server.config,
        store,
        user,
        IdentitySource::New,
        fast_config(),
    )
    .await
    .unwrap()
}

/// A store in memory runs an account like a file does (two of them side
/// by side, a text each way, a file), writes no store file, and is gone
/// with its account: opening it again finds nothing.
#[tokio::test(flavor = "multi_thread")]
async fn stores_in_memory_run_accounts_and_leave_nothing_behind() {
    let server = TestServer::start().await;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let memory = StoreConfig::in_memory();
    let (alice, mut alice_events) = try_enrol(
        &server.config,
        &memory,
        &mut alice_user,
        IdentitySource::New,
        fast_config(),
    )
    .await
    .unwrap();
    let (bob, mut bob_events) = try_enrol(
        &server.config,
        &memory,
        &mut bob_user,
        IdentitySource::New,
        fast_config(),
    )
    .await
    .expect("a second store in memory is its own store");
    alice.connect();
    bob.connect();
    wait_connected(&mut alice_events).await;
    wait_connected(&mut bob_events).await;

    let to_bob = Conversation::Direct("bob".into());
    alice.send_text(&to_bob, "from memory").unwrap();
    assert_eq!(next_text(&mut bob_events).await.text, "from memory");
    bob.send_text(&Conversation::Direct("alice".into()), "to memory")
        .unwrap();
    assert_eq!(next_text(&mut alice_events).await.text, "to memory");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("note.txt");
    std::fs::write(&path, b"kept in a staging copy until sent").unwrap();
    let file = alice.send_file(&to_bob, &path, |_| {}).await.unwrap();
    assert_eq!(next_text(&mut bob_events).await.message_id, file);
    assert_eq!(alice.history(&to_bob, 10).unwrap().len(), 3);

    drop(alice);
    match Account::open(&memory, fast_config()) {
        Err(OpenError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {:?}", other.map(|_| ())),
    }
    assert!(!memory.path.exists(), "a store in memory wrote a file");
    bob.disconnect().await;
    server.stop().await;
}

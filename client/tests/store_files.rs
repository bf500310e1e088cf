//! The store's file (issue 15, the embedder's API): opening a mistyped
//! path is an error and creates nothing, a failed enrolment leaves no
//! file, and two handles cannot run one store at once.

use crate::common;

use common::*;
use microbot_client::{
    Account, AuthError, Enrolment, IdentitySource, OpenError, SecondFactor, StoreConfig,
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

//! The hybrid handshake cannot be downgraded through the SDK (SPEC.md §4.1,
//! §4.2): a server that strips a contact's KEM prekey from its bundles gets
//! no classical session; the send fails with a reason instead.
use crate::common;

use std::time::Duration;

use common::*;
use microbot_client::{Conversation, Event, IdentitySource, KeyRefusal, SendFailureReason};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_stripped_of_its_kem_prekey_gets_no_classical_session() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let mut alice_user = register(&server, "alice").await;
    let mut bob_user = register(&server, "bob").await;
    let mut alice = online(&server, &mut alice_user, IdentitySource::New, fast_config()).await;
    let mut bob = online(&server, &mut bob_user, IdentitySource::New, fast_config()).await;

    // The server turns malicious: it forgets every KEM prekey, so the
    // bundles it serves carry only X25519 keys (a classical handshake).
    let dir = server.stop().await;
    let db = rusqlite::Connection::open(dir.path().join("microbot.sqlite3")).unwrap();
    db.execute_batch(
        "UPDATE device_keys SET last_resort_kem_id = NULL, last_resort_kem = NULL,
             last_resort_kem_signature = NULL;
         DELETE FROM kem_prekeys;",
    )
    .unwrap();
    drop(db);
    let server = TestServer::start_in(dir, addr).await;
    wait_connected(&mut alice.events).await;

    let sent = alice
        .account
        .send_text(&Conversation::Direct("bob".into()), "secret")
        .unwrap();
    let reason = wait_for(&mut alice.events, |e| match e {
        Event::SendFailed { message_id, reason } if *message_id == sent => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.to_string().contains("downgrade"), "{reason}");
    assert!(
        matches!(
            &reason,
            SendFailureReason::KeysRefused {
                username,
                refusal: KeyRefusal::Downgrade { device_ids },
            } if username == "bob" && !device_ids.is_empty()
        ),
        "{reason:?}"
    );
    no_text_within(&mut bob.events, Duration::from_millis(500)).await;
    alice.account.disconnect().await;
    bob.account.disconnect().await;
    server.stop().await;
}

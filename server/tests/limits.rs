//! Limits over QUIC: token buckets with retry hints, credential back-off
//! that stops TOTP guessing, IP allow/deny lists, connection caps and the
//! idle timeout (SPEC.md §12.12).

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    self, ErrorCode, client_frame::Request, response, second_factor,
};

/// Tries a QUIC handshake; Err when the server refuses it.
async fn try_connect(server: &TestServer) -> Result<quinn::Connection, quinn::ConnectionError> {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client_config(&server.fingerprint));
    let connecting = endpoint.connect(server.addr, "localhost").unwrap();
    tokio::time::timeout(TIMEOUT, connecting).await.unwrap()
}

fn wrong_code(right: &str) -> String {
    let n: u32 = right.parse().unwrap();
    format!("{:06}", (n + 500_000) % 1_000_000)
}

#[tokio::test]
async fn totp_guessing_is_rate_limited_and_the_right_code_is_refused_while_locked() {
    let server = TestServer::start_with(|c| {
        c.login_backoff_after_failures = 3;
        c.login_backoff_base_ms = 1500;
    })
    .await;
    let mut client = server.client().await;
    let mut account = register_active(&mut client, "alice").await;
    let key = device_key();
    let guess = |code: String| enrol_request(&account, &key, second_factor::Factor::TotpCode(code));
    let right = account.auth.code_at(now_secs());
    for _ in 0..3 {
        let e = client.request_err(guess(wrong_code(&right))).await;
        assert_eq!(code(&e), ErrorCode::InvalidCredentials);
    }
    // Locked now: further guesses are refused before any check...
    let e = client.request_err(guess(wrong_code(&right))).await;
    assert_eq!(code(&e), ErrorCode::RateLimited);
    assert!((1..=1500).contains(&e.retry_after_ms), "{e:?}");
    // ...and so is the right code while the lock lasts.
    let fresh = account.auth.fresh();
    let e = client
        .request_err(enrol_request(
            &account,
            &key,
            second_factor::Factor::TotpCode(fresh.clone()),
        ))
        .await;
    assert_eq!(code(&e), ErrorCode::RateLimited);
    // A wrong password is locked out the same way (same account).
    let mut other = server.client().await;
    let e = other
        .request_err(Request::ConfirmRegistration(
            transport::ConfirmRegistrationRequest {
                username: "alice".into(),
                password: "wrong password".into(),
                totp_code: fresh.clone(),
            },
        ))
        .await;
    assert_eq!(code(&e), ErrorCode::RateLimited);
    // After the lock the right code works and clears the count.
    tokio::time::sleep(Duration::from_millis(e.retry_after_ms + 50)).await;
    let reply = client
        .request(enrol_request(
            &account,
            &key,
            second_factor::Factor::TotpCode(fresh),
        ))
        .await;
    assert!(
        matches!(reply, response::Result::EnrolDevice(_)),
        "{reply:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn backoff_grows_exponentially_with_each_failure() {
    let server = TestServer::start_with(|c| {
        c.login_backoff_after_failures = 1;
        c.login_backoff_base_ms = 100;
    })
    .await;
    let mut client = server.client().await;
    let mut account = register_active(&mut client, "bob").await;
    let key = device_key();
    let mut locks = Vec::new();
    for _ in 0..4 {
        let right = account.auth.code_at(now_secs());
        let e = client
            .request_err(enrol_request(
                &account,
                &key,
                second_factor::Factor::TotpCode(wrong_code(&right)),
            ))
            .await;
        assert_eq!(code(&e), ErrorCode::InvalidCredentials);
        let e = client
            .request_err(enrol_request(
                &account,
                &key,
                second_factor::Factor::TotpCode(account.auth.code_at(now_secs())),
            ))
            .await;
        assert_eq!(code(&e), ErrorCode::RateLimited);
        locks.push(e.retry_after_ms);
        tokio::time::sleep(Duration::from_millis(e.retry_after_ms + 20)).await;
    }
    // 100, 200, 400, 800 ms (minus the time already passed).
    for (i, lock) in locks.iter().enumerate() {
        let full = 100u64 << i;
        assert!(
            *lock <= full && *lock > full / 2,
            "lock {i}: {lock} vs {full}"
        );
    }
    let _ = account.auth.fresh();
    server.stop().await;
}

#[tokio::test]
async fn token_buckets_refuse_with_retry_after() {
    let server = TestServer::start_with(|c| {
        c.rate_register_per_ip = 3;
        c.rate_send_per_account = 2;
        c.rate_prekey_fetch_per_account = 1;
        c.rate_upload_per_account = 1;
        c.rate_login_per_ip = 8;
    })
    .await;
    let mut alice = new_device(&server, "alice").await;
    let bob = new_device(&server, "bob").await;
    // Third registration from this IP: refused (alice and bob used two).
    let mut c = server.client().await;
    register(&mut c, "carol").await;
    let e = c
        .request_err(Request::Register(transport::RegisterRequest {
            username: "dave".into(),
            password: "long enough password".into(),
            bot: false,
        }))
        .await;
    assert_eq!(code(&e), ErrorCode::RateLimited);
    assert!(e.retry_after_ms > 0 && e.retry_after_ms <= 20_000, "{e:?}");

    let ct = Bytes::from_static(b"x");
    for _ in 0..2 {
        let r = send_to(&mut alice.client, &[(bob.device_id, ct.clone())]).await;
        assert!(matches!(r, response::Result::Send(_)), "{r:?}");
    }
    let r = send_to(&mut alice.client, &[(bob.device_id, ct.clone())]).await;
    let response::Result::Error(e) = r else {
        panic!("{r:?}")
    };
    assert_eq!(code(&e), ErrorCode::RateLimited);
    assert!(e.retry_after_ms > 0 && e.retry_after_ms <= 30_000);
    // Per account: bob still may send.
    let mut bob_client = bob.client;
    let r = send_to(&mut bob_client, &[(alice.device_id, ct)]).await;
    assert!(matches!(r, response::Result::Send(_)), "{r:?}");

    let fetch_keys = || {
        Request::FetchPrekeys(transport::FetchPrekeysRequest {
            username: "bob".into(),
            device_ids: vec![],
        })
    };
    alice.client.request(fetch_keys()).await;
    let e = alice.client.request_err(fetch_keys()).await;
    assert_eq!(code(&e), ErrorCode::RateLimited);

    let upload = || {
        Request::AttachmentUpload(transport::AttachmentUploadRequest {
            size: 10,
            attachment_id: Bytes::new(),
        })
    };
    let r = alice.client.request(upload()).await;
    assert!(matches!(r, response::Result::AttachmentUpload(_)), "{r:?}");
    let e = alice.client.request_err(upload()).await;
    assert_eq!(code(&e), ErrorCode::RateLimited);

    // Credential checks and logins per IP: alice and bob used 3 each
    // (confirm, enrol, login); 2 more are allowed.
    let mut c = server.client().await;
    let mut last = None;
    for _ in 0..3 {
        let sig = login_signature(&alice.key, &c.challenge.clone(), alice.device_id);
        let r = c
            .request(Request::Login(transport::LoginRequest {
                device_id: alice.device_id,
                signature: sig,
            }))
            .await;
        last = Some(r);
        c = server.client().await;
    }
    let Some(response::Result::Error(e)) = last else {
        panic!("{last:?}")
    };
    assert_eq!(code(&e), ErrorCode::RateLimited);
    server.stop().await;
}

#[tokio::test]
async fn ip_deny_and_allow_lists_are_enforced() {
    let denied =
        TestServer::start_with(|c| c.deny_ips = vec!["127.0.0.0/8".parse().unwrap()]).await;
    assert!(try_connect(&denied).await.is_err());
    denied.stop().await;

    let not_allowed =
        TestServer::start_with(|c| c.allow_ips = vec!["10.0.0.0/8".parse().unwrap()]).await;
    assert!(try_connect(&not_allowed).await.is_err());
    not_allowed.stop().await;

    let allowed = TestServer::start_with(|c| {
        c.allow_ips = vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
        c.deny_ips = vec!["192.168.0.0/16".parse().unwrap()];
    })
    .await;
    let mut client = allowed.client().await;
    register(&mut client, "alice").await;
    allowed.stop().await;
}

#[tokio::test]
async fn connection_caps_per_ip_and_in_total() {
    let server = TestServer::start_with(|c| c.max_connections_per_ip = 2).await;
    let a = server.client().await;
    let _b = server.client().await;
    assert!(try_connect(&server).await.is_err(), "third from one IP");
    a.connection.close(0u32.into(), b"bye");
    drop(a);
    // The slot frees once the server sees the close.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if try_connect(&server).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "a freed slot is usable again");
    server.stop().await;

    let server = TestServer::start_with(|c| c.max_connections = 1).await;
    let _a = server.client().await;
    assert!(try_connect(&server).await.is_err(), "total cap");
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_time_out() {
    let server = TestServer::start_with(|c| c.idle_timeout_secs = 1).await;
    let client = server.client().await;
    let reason = tokio::time::timeout(Duration::from_secs(5), client.connection.closed())
        .await
        .expect("idle connection must be closed");
    assert!(
        matches!(reason, quinn::ConnectionError::TimedOut),
        "{reason:?}"
    );
    server.stop().await;
}

//! Issue 14 (independent review), server hardening: unauthenticated
//! memory exhaustion through usernames, credential back-off races and
//! lock-outs (SPEC.md §12.12, §13). Connection-level hardening is in
//! review_connections.rs.

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    self, ErrorCode, client_frame::Request, response, second_factor,
};
use microbot_server::testing::limits::Limits;

fn wrong_code(right: &str) -> String {
    let n: u32 = right.parse().unwrap();
    format!("{:06}", (n + 500_000) % 1_000_000)
}

#[tokio::test(flavor = "multi_thread")]
async fn megabyte_usernames_are_refused_before_any_limiter_keeps_them() {
    let server = TestServer::start_with(|_| {}).await;
    let mut client = Client::connect(server.addr, &server.fingerprint).await;
    let key = device_key();
    for i in 0..40 {
        let username = format!("{i:02}{}", "a".repeat(1_000_000));
        let request = match i % 4 {
            0 => Request::EnrolDevice(transport::EnrolDeviceRequest {
                username,
                password: "some password".into(),
                second_factor: Some(transport::SecondFactor {
                    factor: Some(second_factor::Factor::TotpCode("123456".into())),
                }),
                device_public_key: Bytes::copy_from_slice(key.verifying_key().as_bytes()),
                device_name: "x".into(),
            }),
            1 => Request::ConfirmRegistration(transport::ConfirmRegistrationRequest {
                username,
                password: "some password".into(),
                totp_code: "123456".into(),
            }),
            2 => Request::Register(transport::RegisterRequest {
                username,
                password: "some password".into(),
                bot: false,
            }),
            _ => Request::EnrolDevice(transport::EnrolDeviceRequest {
                username: username.to_uppercase(),
                password: "some password".into(),
                second_factor: None,
                device_public_key: Bytes::new(),
                device_name: String::new(),
            }),
        };
        let e = client.request_err(request).await;
        assert_eq!(code(&e), ErrorCode::InvalidArgument, "{}", e.message);
    }
    let footprint = server.limits.footprint();
    assert!(
        footprint.key_bytes < 64 * 1024,
        "limiter maps hold {footprint:?} after 40 MB of usernames"
    );
    // Logged-in requests naming users are checked the same way.
    let mut account = register_active(&mut client, "alice").await;
    let (device_id, device) = enrol(&mut client, &mut account).await;
    let mut me = Client::connect(server.addr, &server.fingerprint).await;
    let signature = login_signature(&device, &me.challenge.clone(), device_id);
    let reply = me
        .request(Request::Login(transport::LoginRequest {
            device_id,
            signature,
        }))
        .await;
    assert!(matches!(reply, response::Result::Login(_)), "{reply:?}");
    let e = me
        .request_err(Request::FetchPrekeys(transport::FetchPrekeysRequest {
            username: "b".repeat(1_000_000),
            device_ids: Vec::new(),
        }))
        .await;
    assert_eq!(code(&e), ErrorCode::InvalidArgument);
    let e = me
        .request_err(Request::CreateGroup(transport::CreateGroupRequest {
            group_id: Bytes::from(vec![7u8; 16]),
            members: vec!["alice".into(), "Not A Name".into()],
            encrypted_metadata: Bytes::new(),
        }))
        .await;
    assert_eq!(code(&e), ErrorCode::InvalidArgument);
    assert!(server.limits.footprint().key_bytes < 64 * 1024);
    server.stop().await;
}

/// One fresh connection per guess, all sent at once.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_wrong_codes_are_evaluated_at_most_threshold_times() {
    let server = TestServer::start_with(|c| {
        c.login_backoff_after_failures = 3;
        c.login_backoff_base_ms = 60_000;
        c.rate_login_per_account = 0;
        c.rate_login_per_ip = 0;
        // Slow enough that the 20 checks overlap.
        c.argon2_memory_kib = 8 * 1024;
    })
    .await;
    let mut client = Client::connect(server.addr, &server.fingerprint).await;
    let account = register_active(&mut client, "carol").await;
    let key = device_key();
    let right = account.auth.code_at(now_secs());
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(Client::connect(server.addr, &server.fingerprint).await);
    }
    let guesses = clients.into_iter().map(|mut c| {
        let request = enrol_request(
            &account,
            &key,
            second_factor::Factor::TotpCode(wrong_code(&right)),
        );
        tokio::spawn(async move { code(&c.request_err(request).await) })
    });
    let mut evaluated = 0;
    let mut limited = 0;
    for guess in guesses.collect::<Vec<_>>() {
        match guess.await.unwrap() {
            ErrorCode::RateLimited => limited += 1,
            ErrorCode::InvalidCredentials | ErrorCode::InvalidSecondFactor => evaluated += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(evaluated <= 3, "{evaluated} guesses evaluated, threshold 3");
    assert_eq!(evaluated + limited, 20);
    server.stop().await;
}

fn enrol_with_password(account: &Account, password: &str, code: String) -> Request {
    let mut request = enrol_request(
        account,
        &device_key(),
        second_factor::Factor::TotpCode(code),
    );
    if let Request::EnrolDevice(r) = &mut request {
        r.password = password.into();
    }
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn a_strangers_guesses_do_not_lock_the_owner_out() {
    let server = TestServer::start_with(|c| {
        c.login_backoff_after_failures = 3;
        c.login_backoff_base_ms = 60_000;
    })
    .await;
    let mut owner = server.client().await;
    let mut account = register_active(&mut owner, "dave").await;
    // A stranger on another address guesses dave's password until locked.
    let mut stranger = Client::connect_from(
        "127.0.0.2:0".parse().unwrap(),
        server.addr,
        &server.fingerprint,
    )
    .await;
    for _ in 0..3 {
        let e = stranger
            .request_err(enrol_with_password(
                &account,
                "not the password",
                "123456".into(),
            ))
            .await;
        assert_eq!(code(&e), ErrorCode::InvalidCredentials);
    }
    let fresh = account.auth.fresh();
    let e = stranger
        .request_err(enrol_with_password(&account, &account.password, fresh))
        .await;
    assert_eq!(code(&e), ErrorCode::RateLimited, "the stranger is locked");
    // The owner, from her own address, enrols at once.
    let (device_id, key) = enrol(&mut owner, &mut account).await;
    assert!(device_id > 0);
    // The same stranger guessing from the owner's address locks that
    // address; the owner's logged-in device is still not locked.
    let mut me = server.client().await;
    login(&mut me, device_id, &key).await;
    let (other_id, _) = enrol(&mut owner, &mut account).await;
    let mut nearby = server.client().await;
    for _ in 0..4 {
        let _ = nearby
            .request_err(enrol_with_password(
                &account,
                "not the password",
                "123456".into(),
            ))
            .await;
    }
    let fresh = account.auth.fresh();
    let e = nearby
        .request_err(enrol_with_password(&account, &account.password, fresh))
        .await;
    assert_eq!(code(&e), ErrorCode::RateLimited);
    let reply = me
        .request(Request::RemoveDevice(transport::RemoveDeviceRequest {
            device_id: other_id,
            password: account.password.clone(),
            totp_code: account.auth.fresh(),
            second_factor: None,
        }))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logged_in_devices_own_failures_lock_only_that_device() {
    let server = TestServer::start_with(|c| {
        c.login_backoff_after_failures = 2;
        c.login_backoff_base_ms = 60_000;
    })
    .await;
    let mut client = server.client().await;
    let mut account = register_active(&mut client, "erin").await;
    let (first, first_key) = enrol(&mut client, &mut account).await;
    let (second, second_key) = enrol(&mut client, &mut account).await;
    let (third, _) = enrol(&mut client, &mut account).await;
    let mut thief = server.client().await;
    login(&mut thief, first, &first_key).await;
    let remove = |password: &str, code: String, device_id: u64| {
        Request::RemoveDevice(transport::RemoveDeviceRequest {
            device_id,
            password: password.into(),
            totp_code: code,
            second_factor: None,
        })
    };
    for _ in 0..2 {
        let e = thief
            .request_err(remove("guessed password", "123456".into(), second))
            .await;
        assert_eq!(code(&e), ErrorCode::InvalidCredentials);
    }
    let e = thief
        .request_err(remove(&account.password, account.auth.fresh(), second))
        .await;
    assert_eq!(code(&e), ErrorCode::RateLimited, "that device is locked");
    // Another device of the account (same address) is not.
    let mut owner = server.client().await;
    login(&mut owner, second, &second_key).await;
    let reply = owner
        .request(remove(&account.password, account.auth.fresh(), third))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_code_authorises_remove_device() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut account = register_active(&mut client, "frank").await;
    let (stolen, _) = enrol(&mut client, &mut account).await;
    // The authenticator went with the stolen phone: a new device enrolled
    // with a recovery code removes the stolen one with another.
    let key = device_key();
    let reply = client
        .request(enrol_request(
            &account,
            &key,
            second_factor::Factor::RecoveryCode(account.recovery_codes[0].clone()),
        ))
        .await;
    let response::Result::EnrolDevice(enrolled) = reply else {
        panic!("{reply:?}")
    };
    let mut me = server.client().await;
    login(&mut me, enrolled.device_id, &key).await;
    let remove = |code: &str| {
        Request::RemoveDevice(transport::RemoveDeviceRequest {
            device_id: stolen,
            password: account.password.clone(),
            totp_code: String::new(),
            second_factor: Some(transport::SecondFactor {
                factor: Some(second_factor::Factor::RecoveryCode(code.into())),
            }),
        })
    };
    let e = me.request_err(remove("AAAA-BBBB-CCCC-DDDD")).await;
    assert_eq!(code(&e), ErrorCode::InvalidSecondFactor);
    let e = me.request_err(remove(&account.recovery_codes[0])).await;
    assert_eq!(code(&e), ErrorCode::InvalidSecondFactor, "used already");
    let reply = me.request(remove(&account.recovery_codes[1])).await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    let mut again = server.client().await;
    let signature = login_signature(&device_key(), &again.challenge.clone(), stolen);
    let e = again
        .request_err(Request::Login(transport::LoginRequest {
            device_id: stolen,
            signature,
        }))
        .await;
    assert_eq!(code(&e), ErrorCode::DeviceRemoved);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_codes_are_served_with_dashes_that_are_optional_on_input() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let account = register_active(&mut client, "gina").await;
    for served in &account.recovery_codes {
        let groups: Vec<&str> = served.split('-').collect();
        assert_eq!(groups.len(), 4, "{served}");
        assert!(groups.iter().all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        }));
    }
    let bare = account.recovery_codes[2].replace('-', "").to_lowercase();
    assert_eq!(bare.len(), 16);
    let reply = client
        .request(enrol_request(
            &account,
            &device_key(),
            second_factor::Factor::RecoveryCode(bare),
        ))
        .await;
    assert!(
        matches!(reply, response::Result::EnrolDevice(_)),
        "{reply:?}"
    );
    server.stop().await;
}

/// No password oracle: a wrong password and a wrong code get the same
/// answer, byte for byte (SPEC.md §13.6).
#[tokio::test(flavor = "multi_thread")]
async fn enrol_answers_one_error_for_a_wrong_password_and_a_wrong_code() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let account = register_active(&mut client, "hank").await;
    let right = account.auth.code_at(now_secs());
    // A missing second factor is a malformed request, not a credential.
    let mut missing = enrol_with_password(&account, &account.password, right.clone());
    if let Request::EnrolDevice(r) = &mut missing {
        r.second_factor = None;
    }
    let e = client.request_err(missing).await;
    assert_eq!(code(&e), ErrorCode::InvalidArgument);
    let wrong_password = client
        .request_err(enrol_with_password(
            &account,
            "not the password",
            right.clone(),
        ))
        .await;
    let wrong_code = client
        .request_err(enrol_with_password(
            &account,
            &account.password,
            wrong_code(&right),
        ))
        .await;
    let wrong_recovery = client
        .request_err(enrol_request(
            &account,
            &device_key(),
            second_factor::Factor::RecoveryCode("AAAA-BBBB-CCCC-DDDD".into()),
        ))
        .await;
    assert_eq!(code(&wrong_password), ErrorCode::InvalidCredentials);
    assert_eq!(wrong_password, wrong_code);
    assert_eq!(wrong_password, wrong_recovery);
    server.stop().await;
}

/// A login racing the removal of its device ends either refused or
/// disconnected, never logged in (SPEC.md §13.7). The race window is
/// narrow, so this runs it many times; it cannot prove the window closed,
/// only that no round leaves the device connected.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_removed_while_it_logs_in_does_not_stay_connected() {
    let server = TestServer::start_with(|c| {
        c.rate_register_per_ip = 0;
        c.rate_login_per_ip = 0;
    })
    .await;
    for round in 0..12 {
        let mut setup = server.client().await;
        let mut account = register_active(&mut setup, &format!("race{round}")).await;
        let (victim, victim_key) = enrol(&mut setup, &mut account).await;
        let (keeper, keeper_key) = enrol(&mut setup, &mut account).await;
        let mut owner = server.client().await;
        login(&mut owner, keeper, &keeper_key).await;
        let mut racer = server.client().await;
        let signature = login_signature(&victim_key, &racer.challenge.clone(), victim);
        let removal = Request::RemoveDevice(transport::RemoveDeviceRequest {
            device_id: victim,
            password: account.password.clone(),
            totp_code: account.auth.fresh(),
            second_factor: None,
        });
        let removed = tokio::spawn(async move { owner.request(removal).await });
        let logged_in = racer
            .request(Request::Login(transport::LoginRequest {
                device_id: victim,
                signature,
            }))
            .await;
        let removed = removed.await.unwrap();
        assert!(matches!(removed, response::Result::Ok(_)), "{removed:?}");
        match logged_in {
            response::Result::Login(_) => {
                let closed = racer.closed().await;
                assert_eq!(
                    closed.closing.map(|e| e.code),
                    Some(ErrorCode::DeviceRemoved as i32),
                    "round {round}"
                );
            }
            response::Result::Error(e) => {
                assert_eq!(code(&e), ErrorCode::DeviceRemoved, "round {round}");
            }
            other => panic!("{other:?}"),
        }
    }
    server.stop().await;
}

/// Per-IP limits key an IPv6 address on its /64 (one subscriber usually
/// holds a whole /64), buckets and connection caps alike (SPEC.md §12.12).
#[test]
fn ipv6_addresses_of_one_64_share_their_limits() {
    let config = microbot_server::Config {
        rate_register_per_ip: 1,
        max_connections_per_ip: 1,
        ..microbot_server::Config::default()
    };
    let limits = Arc::new(Limits::new(&config));
    let metrics = microbot_server::testing::metrics::Metrics::default();
    let register = Request::Register(transport::RegisterRequest {
        username: "someone".into(),
        password: "some password".into(),
        bot: false,
    });
    let a: std::net::IpAddr = "2001:db8:5:6:1::1".parse().unwrap();
    let b: std::net::IpAddr = "2001:db8:5:6:ffff::2".parse().unwrap();
    let elsewhere: std::net::IpAddr = "2001:db8:5:7::1".parse().unwrap();
    assert!(limits.check_request(&metrics, a, None, &register).is_ok());
    let e = microbot_server::testing::error::ApiError::from(
        limits
            .check_request(&metrics, b, None, &register)
            .unwrap_err(),
    );
    assert_eq!(e.code, ErrorCode::RateLimited);
    assert!(
        limits
            .check_request(&metrics, elsewhere, None, &register)
            .is_ok()
    );
    let _slot = limits.admit(a).unwrap();
    assert!(limits.admit(b).is_err(), "one connection per /64");
    assert!(limits.admit(elsewhere).is_ok());
}

/// Confirming an account that is already active does not confirm its
/// password alone: without a valid code the answer is the wrong-password
/// one (SPEC.md §13.1).
#[tokio::test(flavor = "multi_thread")]
async fn confirm_on_an_active_account_is_no_password_oracle() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let account = register_active(&mut client, "ivan").await;
    let confirm = |password: &str, code: String| {
        Request::ConfirmRegistration(transport::ConfirmRegistrationRequest {
            username: "ivan".into(),
            password: password.into(),
            totp_code: code,
        })
    };
    let right = account.auth.code_at(now_secs());
    let wrong_password = client
        .request_err(confirm("not the password", right.clone()))
        .await;
    let right_password = client
        .request_err(confirm(&account.password, wrong_code(&right)))
        .await;
    assert_eq!(code(&wrong_password), ErrorCode::InvalidCredentials);
    assert_eq!(wrong_password, right_password);
    let e = client.request_err(confirm(&account.password, right)).await;
    assert_eq!(code(&e), ErrorCode::AccountAlreadyActive);
    server.stop().await;
}

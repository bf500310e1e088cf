//! Registration, TOTP rules, enrolment, challenge login, and the operations
//! that need password + fresh TOTP (issue 4 points 2–4, 7).

use crate::common;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{
    ChallengeRequest, ChangePasswordRequest, ConfirmRegistrationRequest, DeleteAccountRequest,
    ErrorCode, ListDevicesRequest, LoginRequest, RegisterRequest, RemoveDeviceRequest,
    client_frame::Request, response, second_factor::Factor,
};

#[tokio::test(flavor = "multi_thread")]
async fn account_is_inactive_until_confirmed_with_a_valid_code() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut account = register(&mut client, "carol").await;
    assert!(account.otpauth_uri.contains("algorithm=SHA1"));
    assert!(account.otpauth_uri.contains("digits=6") && account.otpauth_uri.contains("period=30"));

    // Inactive: enrolment refused.
    let key = device_key();
    let code = account.auth.fresh();
    let err = client
        .request_err(enrol_request(&account, &key, Factor::TotpCode(code)))
        .await;
    assert_eq!(common::code(&err), ErrorCode::AccountInactive);

    // Wrong code, wrong password.
    let confirm = |password: &str, code: String| {
        Request::ConfirmRegistration(ConfirmRegistrationRequest {
            username: "carol".into(),
            password: password.into(),
            totp_code: code,
        })
    };
    let err = client
        .request_err(confirm(&account.password, "000000".into()))
        .await;
    assert_eq!(common::code(&err), ErrorCode::InvalidSecondFactor);
    let err = client
        .request_err(confirm("wrong password", account.auth.fresh()))
        .await;
    assert_eq!(common::code(&err), ErrorCode::InvalidCredentials);

    let reply = client
        .request(confirm(&account.password, account.auth.fresh()))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    let err = client
        .request_err(confirm(&account.password, account.auth.fresh()))
        .await;
    assert_eq!(common::code(&err), ErrorCode::AccountAlreadyActive);

    // Taken and invalid usernames.
    let err = client
        .request_err(Request::Register(RegisterRequest {
            username: "carol".into(),
            password: "another password".into(),
            bot: false,
        }))
        .await;
    assert_eq!(common::code(&err), ErrorCode::UsernameTaken);
    let err = client
        .request_err(Request::Register(RegisterRequest {
            username: "Bad:Name".into(),
            password: "another password".into(),
            bot: false,
        }))
        .await;
    assert_eq!(common::code(&err), ErrorCode::InvalidArgument);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_totp_step_is_accepted_once_and_the_window_is_one_step() {
    // Default window: ±1 step.
    let server = TestServer::start_with(|c| c.totp_skew_steps = 1).await;
    let mut client = server.client().await;
    let account = register(&mut client, "dave").await;
    let now = now_secs();
    // Three steps ahead is outside the window.
    let err = client
        .request_err(Request::ConfirmRegistration(ConfirmRegistrationRequest {
            username: "dave".into(),
            password: account.password.clone(),
            totp_code: account.auth.code_at(now + 90),
        }))
        .await;
    assert_eq!(common::code(&err), ErrorCode::InvalidSecondFactor);
    // The previous step is inside it.
    let previous = account.auth.code_at(now - 30);
    let reply = client
        .request(Request::ConfirmRegistration(ConfirmRegistrationRequest {
            username: "dave".into(),
            password: account.password.clone(),
            totp_code: previous.clone(),
        }))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    // The same code again: replay.
    let key = device_key();
    let err = client
        .request_err(enrol_request(&account, &key, Factor::TotpCode(previous)))
        .await;
    assert_eq!(common::code(&err), ErrorCode::TotpReplayed);
    // A newer step inside the window works.
    let reply = client
        .request(enrol_request(
            &account,
            &key,
            Factor::TotpCode(account.auth.code_at(now + 30)),
        ))
        .await;
    assert!(
        matches!(reply, response::Result::EnrolDevice(_)),
        "{reply:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn enrolment_with_a_recovery_code_works_once() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let account = register_active(&mut client, "erin").await;
    let recovery = account.recovery_codes[3].clone();
    let reply = client
        .request(enrol_request(
            &account,
            &device_key(),
            Factor::RecoveryCode(recovery.to_lowercase()),
        ))
        .await;
    assert!(
        matches!(reply, response::Result::EnrolDevice(_)),
        "{reply:?}"
    );
    let err = client
        .request_err(enrol_request(
            &account,
            &device_key(),
            Factor::RecoveryCode(recovery),
        ))
        .await;
    assert_eq!(
        common::code(&err),
        ErrorCode::InvalidCredentials,
        "one error for enrol (SPEC §13.6)"
    );
    let err = client
        .request_err(enrol_request(
            &account,
            &device_key(),
            Factor::RecoveryCode("AAAA-BBBB-CCCC-DDDD".into()),
        ))
        .await;
    assert_eq!(
        common::code(&err),
        ErrorCode::InvalidCredentials,
        "one error for enrol (SPEC §13.6)"
    );
    // Wrong password and unknown user look the same.
    let mut wrong = enrol_request(
        &account,
        &device_key(),
        Factor::RecoveryCode(account.recovery_codes[4].clone()),
    );
    if let Request::EnrolDevice(r) = &mut wrong {
        r.password = "not the password".into();
    }
    assert_eq!(
        common::code(&client.request_err(wrong).await),
        ErrorCode::InvalidCredentials
    );
    let mut unknown = enrol_request(
        &account,
        &device_key(),
        Factor::RecoveryCode(account.recovery_codes[4].clone()),
    );
    if let Request::EnrolDevice(r) = &mut unknown {
        r.username = "nobody".into();
    }
    assert_eq!(
        common::code(&client.request_err(unknown).await),
        ErrorCode::InvalidCredentials
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn challenge_login_refuses_bad_signature_unknown_and_removed_devices() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut account = register_active(&mut client, "frank").await;
    let (device_id, key) = enrol(&mut client, &mut account).await;
    let (other_id, other_key) = enrol(&mut client, &mut account).await;

    // Wrong key, then the challenge is used up.
    let mut c = server.client().await;
    let signature = login_signature(&other_key, &c.challenge.clone(), device_id);
    let err = c
        .request_err(Request::Login(LoginRequest {
            device_id,
            signature,
        }))
        .await;
    assert_eq!(common::code(&err), ErrorCode::BadSignature);
    let signature = login_signature(&key, &c.challenge.clone(), device_id);
    let err = c
        .request_err(Request::Login(LoginRequest {
            device_id,
            signature,
        }))
        .await;
    assert_eq!(
        common::code(&err),
        ErrorCode::NoChallenge,
        "a challenge is single-use"
    );
    // A signature over an old challenge fails with a fresh one.
    let old = c.challenge.clone();
    let response::Result::Challenge(fresh) =
        c.request(Request::Challenge(ChallengeRequest {})).await
    else {
        panic!()
    };
    assert_ne!(fresh.challenge, old);
    let err = c
        .request_err(Request::Login(LoginRequest {
            device_id,
            signature: login_signature(&key, &old, device_id),
        }))
        .await;
    assert_eq!(common::code(&err), ErrorCode::BadSignature);
    c.request(Request::Challenge(ChallengeRequest {})).await;

    // Unknown device.
    let mut u = server.client().await;
    let signature = login_signature(&key, &u.challenge.clone(), 987_654);
    let err = u
        .request_err(Request::Login(LoginRequest {
            device_id: 987_654,
            signature,
        }))
        .await;
    assert_eq!(common::code(&err), ErrorCode::UnknownDevice);
    u.request(Request::Challenge(ChallengeRequest {})).await;
    let err = u
        .request_err(Request::Login(LoginRequest {
            device_id,
            signature: Bytes::from_static(b"short"),
        }))
        .await;
    assert_eq!(common::code(&err), ErrorCode::InvalidArgument);

    // Logged in, the device removes the other one (password + fresh TOTP);
    // the other's live connection is closed and it cannot log in again.
    let mut me = reconnect(&server, device_id, &key).await;
    let mut other = reconnect(&server, other_id, &other_key).await;
    let err = me
        .request_err(Request::RemoveDevice(RemoveDeviceRequest {
            device_id: other_id,
            password: account.password.clone(),
            totp_code: "123456".into(),
            second_factor: None,
        }))
        .await;
    assert!(matches!(
        common::code(&err),
        ErrorCode::InvalidSecondFactor | ErrorCode::TotpReplayed
    ));
    let reply = me
        .request(Request::RemoveDevice(RemoveDeviceRequest {
            device_id: other_id,
            password: account.password.clone(),
            totp_code: account.auth.fresh(),
            second_factor: None,
        }))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    let closed = other.closed().await;
    assert_eq!(
        closed.closing.map(|e| e.code),
        Some(ErrorCode::DeviceRemoved as i32)
    );
    assert_eq!(closed.close_code, Some(ErrorCode::DeviceRemoved as u64));
    let mut again = server.client().await;
    let signature = login_signature(&other_key, &again.challenge.clone(), other_id);
    let err = again
        .request_err(Request::Login(LoginRequest {
            device_id: other_id,
            signature,
        }))
        .await;
    assert_eq!(common::code(&err), ErrorCode::DeviceRemoved);
    let response::Result::DeviceList(list) = me
        .request(Request::ListDevices(ListDevicesRequest {}))
        .await
    else {
        panic!()
    };
    assert_eq!(
        list.devices.iter().map(|d| d.device_id).collect::<Vec<_>>(),
        vec![device_id]
    );
    assert!(list.devices[0].last_login_ms > 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn password_change_and_account_deletion_need_password_and_fresh_totp() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut account = register_active(&mut client, "grace").await;
    let (device_id, key) = enrol(&mut client, &mut account).await;
    let mut me = reconnect(&server, device_id, &key).await;

    let change = |current: &str, code: String| {
        Request::ChangePassword(ChangePasswordRequest {
            current_password: current.into(),
            totp_code: code,
            new_password: "a brand new password".into(),
        })
    };
    let err = me
        .request_err(change("wrong password", account.auth.fresh()))
        .await;
    assert_eq!(common::code(&err), ErrorCode::InvalidCredentials);
    let used = account.auth.fresh();
    let reply = me.request(change(&account.password, used.clone())).await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    account.password = "a brand new password".into();
    let err = me.request_err(change(&account.password, used)).await;
    assert_eq!(
        common::code(&err),
        ErrorCode::TotpReplayed,
        "the TOTP must be fresh"
    );
    // The new password enrols, the old one does not.
    let (_, _) = enrol(&mut client, &mut account).await;

    let err = me
        .request_err(Request::DeleteAccount(DeleteAccountRequest {
            password: "pw-grace-secret".into(),
            totp_code: account.auth.fresh(),
        }))
        .await;
    assert_eq!(common::code(&err), ErrorCode::InvalidCredentials);
    let reply = me
        .request(Request::DeleteAccount(DeleteAccountRequest {
            password: account.password.clone(),
            totp_code: account.auth.fresh(),
        }))
        .await;
    assert!(matches!(reply, response::Result::Ok(_)), "{reply:?}");
    let closed = me.closed().await;
    assert_eq!(closed.close_code, Some(ErrorCode::DeviceRemoved as u64));
    // The device is gone and the username is free again.
    let mut c = server.client().await;
    let signature = login_signature(&key, &c.challenge.clone(), device_id);
    let err = c
        .request_err(Request::Login(LoginRequest {
            device_id,
            signature,
        }))
        .await;
    assert_eq!(common::code(&err), ErrorCode::DeviceRemoved);
    register(&mut c, "grace").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_before_login_is_refused() {
    use microbot_protocol::transport::*;
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let requests = vec![
        Request::UploadPrekeys(prekey_upload(1, 1, 0)),
        Request::FetchPrekeys(FetchPrekeysRequest::default()),
        Request::PrekeyStatus(PrekeyStatusRequest {}),
        Request::Send(SendRequest::default()),
        Request::FetchEnvelopes(FetchEnvelopesRequest::default()),
        Request::AckEnvelopes(AckEnvelopesRequest {
            envelope_ids: vec![1],
        }),
        Request::ListDevices(ListDevicesRequest {}),
        Request::ChangePassword(ChangePasswordRequest::default()),
        Request::RemoveDevice(RemoveDeviceRequest::default()),
        Request::DeleteAccount(DeleteAccountRequest::default()),
        Request::SendGroup(SendGroupRequest::default()),
        Request::CreateGroup(CreateGroupRequest::default()),
        Request::AttachmentUpload(AttachmentUploadRequest::default()),
    ];
    for request in requests {
        let err = c.request_err(request).await;
        assert_eq!(common::code(&err), ErrorCode::NotAuthenticated);
    }
    server.stop().await;
}

/// The last login time is kept to the minute (SPEC.md §12.5): a device
/// that reconnects within a minute leaves it, one a minute later moves it.
#[tokio::test(flavor = "multi_thread")]
async fn last_login_time_is_kept_to_the_minute() {
    let clock = std::sync::Arc::new(microbot_server::testing::clock::ManualClock::at_system_time());
    let server = TestServer::start_with_clock(clock.clone(), |_| {}).await;
    let mut me = new_device(&server, "lena").await;
    let last_login = |list: response::Result| {
        let response::Result::DeviceList(list) = list else {
            panic!("not a device list")
        };
        list.devices[0].last_login_ms
    };
    let first = last_login(
        me.client
            .request(Request::ListDevices(ListDevicesRequest {}))
            .await,
    );
    assert!(first > 0, "the first login is recorded");

    clock.advance(59_000);
    let mut again = reconnect(&server, me.device_id, &me.key).await;
    let kept = last_login(
        again
            .request(Request::ListDevices(ListDevicesRequest {}))
            .await,
    );
    assert_eq!(kept, first, "a login within the minute leaves it");

    clock.advance(1_000);
    let mut later = reconnect(&server, me.device_id, &me.key).await;
    let moved = last_login(
        later
            .request(Request::ListDevices(ListDevicesRequest {}))
            .await,
    );
    assert_eq!(moved, first + 60_000, "a login a minute later moves it");
    server.stop().await;
}

//! Registration, TOTP confirmation, device enrolment and device login
//! (SPEC.md §13), as the client speaks them.
//!
//! Login signature (transport.proto, `LoginRequest`):
//! `Ed25519(device key, "Microbot device login v1" ‖ 0x00 ‖ challenge (32) ‖ device_id (u64 BE))`.
//!
//! Not owned here: keeping the device key (store/) or when to log in (sync.rs).

use std::fmt;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use microbot_protocol::transport::{
    ConfirmRegistrationRequest, EnrolDeviceRequest, LoginResponse, Push, RegisterRequest,
    client_frame::Request, response, second_factor,
};
use zeroize::Zeroizing;

use crate::config::ServerConfig;
use crate::error::{AuthError, TransportError};
use crate::transport::{CONNECT_TIMEOUT, Connection};

pub use crate::device_login::LOGIN_CONTEXT;
use crate::device_login::login_request;

/// What the server returns when an account is created. Show the URI (as a
/// QR code) and the recovery codes once; nothing here is stored by the SDK.
pub struct Registration {
    /// `otpauth://totp/...` for authenticator apps.
    pub otpauth_uri: Zeroizing<String>,
    /// The TOTP secret in base32 (the same as in the URI).
    pub totp_secret_base32: Zeroizing<String>,
    /// One-time recovery codes.
    pub recovery_codes: Vec<Zeroizing<String>>,
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("recovery_codes", &self.recovery_codes.len())
            .finish_non_exhaustive()
    }
}

/// The second factor of a device enrolment.
#[derive(Clone)]
pub enum SecondFactor {
    /// A current 6-digit TOTP code.
    Totp(String),
    /// An unused recovery code (consumed).
    RecoveryCode(Zeroizing<String>),
}

impl fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecondFactor::Totp(_) => "SecondFactor::Totp(..)",
            SecondFactor::RecoveryCode(_) => "SecondFactor::RecoveryCode(..)",
        })
    }
}

pub(crate) const CLIENT_AGENT: &str = concat!("microbot-client/", env!("CARGO_PKG_VERSION"));

/// Whether `username` is a valid account name (3..=32 bytes of `[a-z0-9_.-]`).
pub fn valid_username(username: &str) -> bool {
    (3..=32).contains(&username.len())
        && username.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

fn check_credentials(username: &str, password: &str) -> Result<(), AuthError> {
    if !valid_username(username) {
        return Err(AuthError::InvalidInput(
            "username must be 3 to 32 characters of a-z, 0-9, '_', '.', '-'",
        ));
    }
    if !(8..=1024).contains(&password.len()) {
        return Err(AuthError::InvalidInput("password must be 8 to 1024 bytes"));
    }
    Ok(())
}

/// Creates an account (inactive until [`confirm_registration`]).
///
/// # Errors
/// [`AuthError::InvalidInput`], or the server's refusal (`USERNAME_TAKEN`, …).
pub async fn register(
    server: &ServerConfig,
    username: &str,
    password: &str,
) -> Result<Registration, AuthError> {
    register_as(server, username, password, false).await
}

/// [`register`] for a bot account: the server keeps the flag and hands it
/// to anyone who fetches the account's keys, so clients can show that they
/// talk to a program (SPEC.md §12.3).
///
/// # Errors
/// As [`register`].
pub async fn register_bot(
    server: &ServerConfig,
    username: &str,
    password: &str,
) -> Result<Registration, AuthError> {
    register_as(server, username, password, true).await
}

async fn register_as(
    server: &ServerConfig,
    username: &str,
    password: &str,
    bot: bool,
) -> Result<Registration, AuthError> {
    check_credentials(username, password)?;
    let (conn, _pushes) = connect_before_login(server, username, CONNECT_TIMEOUT).await?;
    match conn
        .request(Request::Register(RegisterRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            bot,
        }))
        .await?
    {
        response::Result::Register(r) => Ok(Registration {
            otpauth_uri: Zeroizing::new(r.otpauth_uri),
            totp_secret_base32: Zeroizing::new(r.totp_secret_base32),
            recovery_codes: r.recovery_codes.into_iter().map(Zeroizing::new).collect(),
        }),
        _ => Err(TransportError::UnexpectedResponse {
            expected: "RegisterResponse",
        }
        .into()),
    }
}

/// Activates an account with its first TOTP code.
///
/// # Errors
/// [`AuthError::InvalidInput`], or the server's refusal
/// (`INVALID_SECOND_FACTOR`, `ACCOUNT_ALREADY_ACTIVE`, …).
pub async fn confirm_registration(
    server: &ServerConfig,
    username: &str,
    password: &str,
    totp_code: &str,
) -> Result<(), AuthError> {
    check_credentials(username, password)?;
    let (conn, _pushes) = connect_before_login(server, username, CONNECT_TIMEOUT).await?;
    expect_ok(
        conn.request(Request::ConfirmRegistration(ConfirmRegistrationRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            totp_code: totp_code.to_owned(),
        }))
        .await?,
    )?;
    Ok(())
}

/// A connection for a request made before this device has an id: the
/// addresses are tried from the one device id 0 of `username` starts at
/// (SPEC.md §12.1), so registrations spread over a cluster too.
async fn connect_before_login(
    server: &ServerConfig,
    username: &str,
    timeout: std::time::Duration,
) -> Result<(Connection, tokio::sync::mpsc::UnboundedReceiver<Push>), TransportError> {
    Connection::connect_any(
        server,
        server.start_index(username, 0),
        CLIENT_AGENT,
        timeout,
    )
    .await
}

pub(crate) fn expect_ok(result: response::Result) -> Result<(), TransportError> {
    match result {
        response::Result::Ok(_) => Ok(()),
        _ => Err(TransportError::UnexpectedResponse { expected: "Ok" }),
    }
}

/// Enrols `device_key` on the account; returns the new device id.
pub(crate) async fn enrol_device(
    server: &ServerConfig,
    username: &str,
    password: &str,
    factor: &SecondFactor,
    device_key: &SigningKey,
    device_name: &str,
    connect_timeout: std::time::Duration,
) -> Result<u64, AuthError> {
    check_credentials(username, password)?;
    let (conn, _pushes) = connect_before_login(server, username, connect_timeout).await?;
    let factor = match factor {
        SecondFactor::Totp(code) => second_factor::Factor::TotpCode(code.clone()),
        SecondFactor::RecoveryCode(code) => second_factor::Factor::RecoveryCode(code.to_string()),
    };
    match conn
        .request(Request::EnrolDevice(EnrolDeviceRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            second_factor: Some(microbot_protocol::transport::SecondFactor {
                factor: Some(factor),
            }),
            device_public_key: Bytes::copy_from_slice(device_key.verifying_key().as_bytes()),
            device_name: device_name.chars().take(64).collect(),
        }))
        .await?
    {
        response::Result::EnrolDevice(r) => Ok(r.device_id),
        _ => Err(TransportError::UnexpectedResponse {
            expected: "EnrolDeviceResponse",
        }
        .into()),
    }
}

/// Logs `conn` in as the device, signing the challenge from Hello.
pub(crate) async fn login(
    conn: &Connection,
    device_id: u64,
    device_key: &SigningKey,
) -> Result<LoginResponse, TransportError> {
    match conn
        .request(Request::Login(login_request(
            &conn.hello.challenge,
            device_id,
            device_key,
        )))
        .await?
    {
        response::Result::Login(r) => {
            // Attachment sockets of a WebSocket connection log in again.
            conn.remember_login(device_id, device_key);
            Ok(r)
        }
        _ => Err(TransportError::UnexpectedResponse {
            expected: "LoginResponse",
        }),
    }
}

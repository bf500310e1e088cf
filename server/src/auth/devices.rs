//! Devices (SPEC.md §13.6, §13.7): enrolment with password + second factor,
//! challenge-signature login, listing and removal.
//!
//! Login signature input (normative):
//! `"Microbot device login v1" || 0x00 || challenge (32 B) || device_id (u64 BE)`,
//! signed with the device's Ed25519 key, verified with `verify_strict`.
//!
//! Not owned here: the connection's login state (connection.rs).

use std::sync::Arc;

use ed25519_dalek::{Signature, VerifyingKey};
use microbot_protocol::transport::{
    DeviceInfo, DeviceList, EnrolDeviceRequest, ErrorCode, LoginRequest, RemoveDeviceRequest,
    second_factor,
};

use super::accounts::{check_password, check_password_and_factor, check_second_factor};
use super::{AuthError, login_records};
use crate::bus::BusEvent;
use crate::error::Internal;
use crate::state::ServerState;
use crate::storage::suspension::SuspensionTarget;

/// Context string opening every login signature input.
pub const LOGIN_CONTEXT: &[u8] = b"Microbot device login v1";
/// Length of a login challenge.
pub const CHALLENGE_LEN: usize = 32;

/// The bytes a device signs to log in.
pub fn login_message(challenge: &[u8; CHALLENGE_LEN], device_id: u64) -> Vec<u8> {
    let mut message = Vec::with_capacity(LOGIN_CONTEXT.len() + 1 + CHALLENGE_LEN + 8);
    message.extend_from_slice(LOGIN_CONTEXT);
    message.push(0);
    message.extend_from_slice(challenge);
    message.extend_from_slice(&device_id.to_be_bytes());
    message
}

/// A fresh random challenge.
pub fn new_challenge(rng: &dyn crate::clock::Rng) -> [u8; CHALLENGE_LEN] {
    let mut challenge = [0u8; CHALLENGE_LEN];
    rng.fill(&mut challenge);
    challenge
}

/// Who a connection is logged in as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The device.
    pub device_id: u64,
    /// Its account.
    pub account_id: i64,
    /// The account's username.
    pub username: String,
}

/// The one message of a refused enrolment (wrong username, password or
/// second factor alike).
pub const ENROL_REFUSED: &str = "wrong username, password or second factor";

/// `EnrolDeviceRequest`: adds a device key to an active account. Checks,
/// in order (SPEC.md §13.6): the request's shape, the password, the
/// account being active, the second factor.
///
/// # Errors
/// The request's shape ([`AuthError::DeviceKeyLength`] …);
/// [`AuthError::EnrolRefused`] for a wrong password and a wrong second
/// factor alike; [`AuthError::TotpReplayed`]; [`AuthError::AccountInactive`].
pub async fn enrol(
    state: &Arc<ServerState>,
    request: EnrolDeviceRequest,
) -> Result<u64, AuthError> {
    let public_key: [u8; 32] = request
        .device_public_key
        .as_ref()
        .try_into()
        .map_err(|_| AuthError::DeviceKeyLength)?;
    VerifyingKey::from_bytes(&public_key).map_err(|_| AuthError::DeviceKeyNotAPoint)?;
    if request.device_name.len() > 64 {
        return Err(AuthError::DeviceNameTooLong);
    }
    let factor = request
        .second_factor
        .and_then(|f| f.factor)
        .ok_or(AuthError::NoSecondFactor)?;
    // One error for a wrong password and a wrong second factor, so the
    // answer never tells which was right (SPEC.md §13.6).
    let generic = |e: AuthError| {
        if e.is_wrong_credential() {
            AuthError::EnrolRefused
        } else {
            e
        }
    };
    let password = zeroize::Zeroizing::new(request.password);
    let factor = ZeroizingFactor(factor);
    let account = check_password(state, &request.username, &password)
        .await
        .map_err(generic)?;
    if !account.active {
        return Err(AuthError::AccountInactive);
    }
    check_second_factor(state, &account, &factor.0)
        .await
        .map_err(generic)?;
    let device_id = state
        .storage
        .create_device(
            account.id,
            &public_key,
            &request.device_name,
            state.now_ms(),
        )
        .await?;
    tracing::info!(username = %account.username, device_id, "device enrolled");
    Ok(device_id)
}

/// `LoginRequest`: checks the signature over the connection's challenge.
///
/// # Errors
/// [`AuthError::SignatureLength`], [`AuthError::UnknownDevice`],
/// [`AuthError::DeviceRemoved`], [`AuthError::AccountDeleted`],
/// [`AuthError::BadSignature`], [`AuthError::AccountSuspended`],
/// [`AuthError::DeviceSuspended`].
pub async fn login(
    state: &Arc<ServerState>,
    challenge: [u8; CHALLENGE_LEN],
    request: LoginRequest,
) -> Result<Caller, AuthError> {
    let signature =
        Signature::from_slice(&request.signature).map_err(|_| AuthError::SignatureLength)?;
    let device = state
        .storage
        .device(request.device_id)
        .await?
        .ok_or(AuthError::UnknownDevice)?;
    if device.removed {
        return Err(AuthError::DeviceRemoved);
    }
    let account = state
        .storage
        .account_by_id(device.account_id)
        .await?
        .ok_or(AuthError::AccountDeleted)?;
    let key_bytes: [u8; 32] = device
        .public_key
        .as_slice()
        .try_into()
        .map_err(|_| Internal::new("stored device key has the wrong length"))?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(Internal::new)?;
    key.verify_strict(&login_message(&challenge, device.id), &signature)
        .map_err(|_| AuthError::BadSignature)?;
    // A suspension (SPEC.md §18.7) refuses the login on every node:
    // the table is shared. Checked after the signature, so only the
    // device's holder learns of it.
    if let Some(target) = state.storage.suspension_of(account.id, device.id).await? {
        return Err(match target {
            SuspensionTarget::Account(_) => AuthError::AccountSuspended,
            SuspensionTarget::Device(_) => AuthError::DeviceSuspended,
        });
    }
    let now = state.now_ms();
    // Only writes that change something (login_records.rs); both are
    // issued at once, so the embedded store commits them in one batch (one
    // fsync) rather than one after the other.
    let (recorded, counted) = tokio::join!(
        async {
            if !login_records::last_login_due(device.last_login_ms, now) {
                return Ok(());
            }
            state.storage.record_login(device.id, now).await
        },
        async {
            if state.counted_today.contains(device.id, now) {
                return Ok(());
            }
            let counted = state
                .storage
                .record_active(account.id, device.id, now)
                .await;
            if counted.is_ok() {
                state.counted_today.insert(device.id, now);
            }
            counted
        },
    );
    recorded?;
    // Usage analytics (SPEC.md §14.1) never cost a user a login.
    if let Err(error) = counted {
        tracing::warn!(%error, "could not record the login in the analytics");
    }
    tracing::info!(username = %account.username, device_id = device.id, "device logged in");
    Ok(Caller {
        device_id: device.id,
        account_id: account.id,
        username: account.username,
    })
}

/// `ListDevicesRequest`.
///
/// # Errors
/// Storage errors.
pub async fn list(state: &Arc<ServerState>, account_id: i64) -> Result<DeviceList, AuthError> {
    let devices = state.storage.account_devices(account_id).await?;
    let signed_device_list =
        crate::device_lists::signed_bytes(state.storage.as_ref(), account_id).await?;
    Ok(DeviceList {
        signed_device_list,
        devices: devices
            .into_iter()
            .map(|d| DeviceInfo {
                device_id: d.id,
                name: d.name,
                created_at_ms: d.created_at_ms,
                last_login_ms: d.last_login_ms,
            })
            .collect(),
    })
}

/// A second factor wiped from memory when dropped.
struct ZeroizingFactor(second_factor::Factor);

impl Drop for ZeroizingFactor {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        match &mut self.0 {
            second_factor::Factor::TotpCode(code) | second_factor::Factor::RecoveryCode(code) => {
                code.zeroize();
            }
        }
    }
}

/// `RemoveDeviceRequest`: needs the password and a fresh TOTP code or, in
/// `second_factor`, a TOTP or recovery code; disconnects the device.
///
/// # Errors
/// Credential errors, `UNKNOWN_DEVICE`, `DEVICE_REMOVED`.
pub async fn remove(
    state: &Arc<ServerState>,
    account_id: i64,
    request: RemoveDeviceRequest,
) -> Result<(), AuthError> {
    let device_id = request.device_id;
    let factor = request
        .second_factor
        .and_then(|f| f.factor)
        .unwrap_or(second_factor::Factor::TotpCode(request.totp_code));
    let password = zeroize::Zeroizing::new(request.password);
    let factor = ZeroizingFactor(factor);
    check_password_and_factor(state, account_id, &password, &factor.0).await?;
    state.storage.remove_device(account_id, device_id).await?;
    state
        .bus
        .publish(device_id, BusEvent::Disconnect(ErrorCode::DeviceRemoved));
    tracing::info!(account_id, device_id, "device removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_message_layout() {
        let message = login_message(&[7u8; 32], 0x0102_0304_0506_0708);
        assert_eq!(message.len(), 24 + 1 + 32 + 8);
        assert_eq!(&message[..24], b"Microbot device login v1");
        assert_eq!(message[24], 0);
        assert_eq!(&message[25..57], &[7u8; 32]);
        assert_eq!(&message[57..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }
}

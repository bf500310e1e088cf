//! What can go wrong in account and device handling (SPEC.md §13): the
//! shape of a request, credentials, the account's or device's state.
//!
//! The messages are the ones the client reads in `Response.error`; the
//! error code of each variant is chosen where every domain error becomes
//! the wire form (`crate::error`). A credential failure never says which
//! part was wrong where SPEC.md §13.6 asks for one answer.

use crate::error::Internal;
use crate::storage::StorageError;

/// Why an account or device request failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A username outside [`super::USERNAME_RULE`]: fix the name.
    #[error("{}", super::USERNAME_RULE)]
    InvalidUsername,
    /// A password of the wrong length: choose another.
    #[error("password must be 8..=1024 bytes")]
    InvalidPassword,
    /// A new password of the wrong length: choose another.
    #[error("new password must be 8..=1024 bytes")]
    InvalidNewPassword,
    /// `device_public_key` is not 32 bytes.
    #[error("device_public_key must be 32 bytes")]
    DeviceKeyLength,
    /// `device_public_key` is not an Ed25519 point.
    #[error("device_public_key is not an Ed25519 point")]
    DeviceKeyNotAPoint,
    /// `device_name` is longer than 64 bytes.
    #[error("device_name must be at most 64 bytes")]
    DeviceNameTooLong,
    /// An enrolment without a second factor.
    #[error("second_factor is required")]
    NoSecondFactor,
    /// A login signature that is not 64 bytes.
    #[error("signature must be 64 bytes")]
    SignatureLength,
    /// No such username, or the wrong password (one answer for both, and
    /// the same argon2 work).
    #[error("unknown username or wrong password")]
    UnknownUserOrWrongPassword,
    /// The logged-in account was deleted meanwhile.
    #[error("account no longer exists")]
    AccountGone,
    /// The logged-in account's password is not this one.
    #[error("wrong password")]
    WrongPassword,
    /// An enrolment with a wrong username, password or second factor (one
    /// answer for all three, SPEC.md §13.6).
    #[error("{}", super::devices::ENROL_REFUSED)]
    EnrolRefused,
    /// The TOTP code matches no step in the accepted window.
    #[error("wrong TOTP code")]
    WrongTotp,
    /// The TOTP step was accepted before: wait for the next code.
    #[error("this TOTP code was already used; wait for the next one")]
    TotpReplayed,
    /// The recovery code is wrong or already used.
    #[error("wrong or already used recovery code")]
    WrongRecoveryCode,
    /// Confirming an account that is already active.
    #[error("account is already active")]
    AccountAlreadyActive,
    /// Enrolling a device on an account not confirmed yet.
    #[error("confirm the account with a TOTP code first")]
    AccountInactive,
    /// Logging in as a device that does not exist.
    #[error("unknown device")]
    UnknownDevice,
    /// Logging in as a removed device.
    #[error("device was removed")]
    DeviceRemoved,
    /// Logging in as a device whose account was deleted.
    #[error("device's account was deleted")]
    AccountDeleted,
    /// The login signature does not verify over the challenge.
    #[error("login signature does not verify")]
    BadSignature,
    /// The operator suspended the account (SPEC.md §18.7).
    #[error("this account is suspended by the operator")]
    AccountSuspended,
    /// The operator suspended the device (SPEC.md §18.7).
    #[error("this device is suspended by the operator")]
    DeviceSuspended,
    /// The store refused or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A failure on the server's side.
    #[error(transparent)]
    Internal(#[from] Internal),
}

impl AuthError {
    /// Whether this is a wrong password or second factor (what enrolment
    /// answers with one [`AuthError::EnrolRefused`]).
    pub fn is_wrong_credential(&self) -> bool {
        matches!(
            self,
            Self::UnknownUserOrWrongPassword
                | Self::AccountGone
                | Self::WrongPassword
                | Self::WrongTotp
                | Self::WrongRecoveryCode
        )
    }
}

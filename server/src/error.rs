//! The wire form of a request failure (SPEC.md §12.8 "Errors"), and the
//! one place domain errors become it.
//!
//! Domain code says what went wrong in its own enum: [`AuthError`]
//! (accounts, devices), [`GroupError`], [`QueueError`], [`KeyError`],
//! [`SealedError`], [`DeviceListUploadError`], [`ProvisioningError`],
//! [`AttachmentError`], [`RateLimited`] (limits), [`StorageError`] (what
//! the store refused) and [`Internal`]. The `From` impls below are the one
//! place each becomes an [`ApiError`]: the request dispatcher applies them
//! to a handler's result (`Response.error`), the attachment transfer to a
//! stream's (`AttachmentStreamResult.error`). The dispatcher itself builds
//! only the errors of the connection's state (not logged in, no challenge,
//! Hello twice, unknown request). Messages never contain secrets, envelope
//! bytes or codes.

use microbot_protocol::transport::{self, ErrorCode};

use crate::attachments::AttachmentError;
use crate::auth::AuthError;
use crate::device_lists::DeviceListUploadError;
use crate::groups::GroupError;
use crate::keys::KeyError;
use crate::limits::RateLimited;
use crate::provisioning::ProvisioningError;
use crate::queues::QueueError;
use crate::sealed::SealedError;
use crate::storage::StorageError;

/// A failure on the server's side (a task that died, a stored value that
/// cannot be read, a hashing library error). The client learns only
/// `ERROR_CODE_INTERNAL`; the detail goes to the log when the failure
/// becomes a wire error.
#[derive(Debug)]
pub struct Internal {
    detail: String,
}

impl Internal {
    /// A failure described by `detail` (for the log: never a secret).
    pub fn new(detail: impl std::fmt::Display) -> Self {
        Self {
            detail: detail.to_string(),
        }
    }
}

impl std::fmt::Display for Internal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Internal {}

impl From<tokio::task::JoinError> for Internal {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::new(error)
    }
}

/// A request failure as sent to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The code clients switch on.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// Recipient devices concerned (queue full, unknown or removed device).
    pub device_ids: Vec<u64>,
    /// Milliseconds after which a retry may succeed (0: no hint).
    pub retry_after_ms: u64,
    /// With `STALE_GROUP_VERSION`: the group's current version.
    pub current_group_version: u64,
}

impl ApiError {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            device_ids: Vec::new(),
            retry_after_ms: 0,
            current_group_version: 0,
        }
    }

    /// `ERROR_CODE_INVALID_ARGUMENT`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// `ERROR_CODE_INTERNAL`; the detail goes to the log, not the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(ErrorCode::Internal, "internal server error")
    }

    /// The wire form.
    pub fn to_proto(&self) -> transport::Error {
        transport::Error {
            code: self.code as i32,
            message: self.message.clone(),
            retry_after_ms: self.retry_after_ms,
            supported_versions: Vec::new(),
            current_group_version: self.current_group_version,
            device_ids: self.device_ids.clone(),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::UsernameTaken => {
                Self::new(ErrorCode::UsernameTaken, "username already taken")
            }
            StorageError::UnknownDevice(id) => Self {
                device_ids: vec![id],
                ..Self::new(ErrorCode::UnknownDevice, "unknown device")
            },
            StorageError::DeviceRemoved(id) => Self {
                device_ids: vec![id],
                ..Self::new(ErrorCode::DeviceRemoved, "device was removed")
            },
            StorageError::QueueFull(ids) => Self {
                device_ids: ids,
                ..Self::new(
                    ErrorCode::QueueFull,
                    "recipient queue full; nothing was stored",
                )
            },
            StorageError::NoPrekeys => Self::new(
                ErrorCode::NoPrekeys,
                "first upload must contain the identity key and a signed prekey",
            ),
            StorageError::UnknownAccount(name) => Self::new(
                ErrorCode::UnknownAccount,
                format!("no active account {name:?}"),
            ),
            StorageError::UnknownGroup => Self::new(ErrorCode::UnknownGroup, "unknown group"),
            StorageError::GroupExists => Self::invalid("group id already taken"),
            StorageError::NotGroupMember => {
                Self::new(ErrorCode::NotGroupMember, "not a member of this group")
            }
            StorageError::NotGroupAdmin => {
                Self::new(ErrorCode::NotGroupAdmin, "only group admins may do this")
            }
            StorageError::StaleGroupVersion(current) => Self {
                current_group_version: current,
                ..Self::new(
                    ErrorCode::StaleGroupVersion,
                    "group changed meanwhile; refetch and retry",
                )
            },
            StorageError::InvalidGroupChange(why) => Self::invalid(why),
            StorageError::UnknownAttachment => Self::new(
                ErrorCode::UnknownAttachment,
                "unknown or expired attachment",
            ),
            StorageError::QuotaExceeded => Self::new(
                ErrorCode::QuotaExceeded,
                "attachment quota of this account exceeded",
            ),
            StorageError::TooManyGroups => Self::new(
                ErrorCode::QuotaExceeded,
                "this account created the most groups it may keep (a group counts until its last member leaves)",
            ),
            StorageError::PrekeyStockFull => Self::new(
                ErrorCode::QuotaExceeded,
                "the device would hold more unused prekeys than the server keeps",
            ),
            StorageError::Database(detail) => Self::internal(detail),
        }
    }
}

impl From<RateLimited> for ApiError {
    /// `ERROR_CODE_RATE_LIMITED` with a retry hint (at least 1 ms).
    fn from(error: RateLimited) -> Self {
        Self {
            retry_after_ms: error.retry_after_ms.max(1),
            ..Self::new(ErrorCode::RateLimited, error.to_string())
        }
    }
}

impl From<Internal> for ApiError {
    fn from(error: Internal) -> Self {
        Self::internal(error)
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let code = match error {
            AuthError::Storage(e) => return e.into(),
            AuthError::Internal(e) => return e.into(),
            AuthError::InvalidUsername
            | AuthError::InvalidPassword
            | AuthError::InvalidNewPassword
            | AuthError::DeviceKeyLength
            | AuthError::DeviceKeyNotAPoint
            | AuthError::DeviceNameTooLong
            | AuthError::NoSecondFactor
            | AuthError::SignatureLength => ErrorCode::InvalidArgument,
            AuthError::UnknownUserOrWrongPassword
            | AuthError::AccountGone
            | AuthError::WrongPassword
            | AuthError::EnrolRefused => ErrorCode::InvalidCredentials,
            AuthError::WrongTotp | AuthError::WrongRecoveryCode => ErrorCode::InvalidSecondFactor,
            AuthError::TotpReplayed => ErrorCode::TotpReplayed,
            AuthError::AccountAlreadyActive => ErrorCode::AccountAlreadyActive,
            AuthError::AccountInactive => ErrorCode::AccountInactive,
            AuthError::UnknownDevice => ErrorCode::UnknownDevice,
            AuthError::DeviceRemoved | AuthError::AccountDeleted => ErrorCode::DeviceRemoved,
            AuthError::BadSignature => ErrorCode::BadSignature,
            AuthError::AccountSuspended | AuthError::DeviceSuspended => ErrorCode::AccountSuspended,
        };
        Self::new(code, error.to_string())
    }
}

impl From<GroupError> for ApiError {
    fn from(error: GroupError) -> Self {
        let message = error.to_string();
        match error {
            GroupError::RateLimited(e) => e.into(),
            GroupError::Storage(e) => e.into(),
            GroupError::Internal(e) => e.into(),
            GroupError::MissingKeyHolders(missing) => Self {
                device_ids: missing,
                ..Self::new(ErrorCode::MissingDevices, message)
            },
            GroupError::GroupIdLength
            | GroupError::UsernameCount
            | GroupError::TooManyMembers
            | GroupError::MetadataTooLarge
            | GroupError::BadRole
            | GroupError::TooManyKeyHolders
            | GroupError::CiphertextLength => Self::invalid(message),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        let message = error.to_string();
        match error {
            QueueError::RateLimited(e) => e.into(),
            QueueError::Storage(e) => e.into(),
            QueueError::Internal(e) => e.into(),
            QueueError::IncompleteAccounts(missing) => Self {
                device_ids: missing,
                ..Self::new(ErrorCode::MissingDevices, message)
            },
            QueueError::UnknownCompleteAccount => Self::new(ErrorCode::UnknownAccount, message),
            QueueError::EnvelopeCount { .. }
            | QueueError::CiphertextLength
            | QueueError::DuplicateRecipient
            | QueueError::TooManyCompleteAccounts
            | QueueError::BadCompleteAccounts
            | QueueError::TooManyAcks => Self::invalid(message),
        }
    }
}

impl From<SealedError> for ApiError {
    fn from(error: SealedError) -> Self {
        let message = error.to_string();
        match error {
            SealedError::Queue(e) => e.into(),
            SealedError::Storage(e) => e.into(),
            SealedError::Internal(e) => e.into(),
            SealedError::MissingDevices(missing) => Self {
                device_ids: missing,
                ..Self::new(ErrorCode::MissingDevices, message)
            },
            SealedError::NoIdentityKey => Self::new(ErrorCode::NoPrekeys, message),
            SealedError::Denied => Self::new(ErrorCode::UnidentifiedAccessDenied, message),
            SealedError::ForeignDevice => Self::new(ErrorCode::UnknownDevice, message),
            SealedError::AccessKeyFormat | SealedError::AccessKeyLength => Self::invalid(message),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        let message = error.to_string();
        match error {
            KeyError::RateLimited(e) => e.into(),
            KeyError::Storage(e) => e.into(),
            KeyError::Internal(e) => e.into(),
            KeyError::UnknownAccount => Self::new(ErrorCode::UnknownAccount, message),
            KeyError::IdentityKeyLength
            | KeyError::SignedPrekeyShape
            | KeyError::KemPrekeyShape
            | KeyError::OneTimePrekeyLength
            | KeyError::TooManyOneTimePrekeys
            | KeyError::TooManyKemPrekeys
            | KeyError::TooManyDevices => Self::invalid(message),
        }
    }
}

impl From<DeviceListUploadError> for ApiError {
    fn from(error: DeviceListUploadError) -> Self {
        let message = error.to_string();
        match error {
            DeviceListUploadError::Storage(e) => e.into(),
            DeviceListUploadError::Internal(e) => e.into(),
            DeviceListUploadError::UnknownDevices(ids) => Self {
                device_ids: ids,
                ..Self::new(ErrorCode::UnknownDevice, message)
            },
            DeviceListUploadError::RemovedDevices(ids) => Self {
                device_ids: ids,
                ..Self::new(ErrorCode::DeviceRemoved, message)
            },
            DeviceListUploadError::NoIdentityKey => Self::new(ErrorCode::NoPrekeys, message),
            DeviceListUploadError::BadSignature => Self::new(ErrorCode::BadSignature, message),
            DeviceListUploadError::Stale { .. } => Self::new(ErrorCode::StaleDeviceList, message),
            DeviceListUploadError::Malformed(_)
            | DeviceListUploadError::OtherAccount
            | DeviceListUploadError::UploaderNotListed
            | DeviceListUploadError::VersionTooHigh => Self::invalid(message),
        }
    }
}

impl From<ProvisioningError> for ApiError {
    fn from(error: ProvisioningError) -> Self {
        let message = error.to_string();
        match error {
            ProvisioningError::Storage(e) => e.into(),
            ProvisioningError::Internal(e) => e.into(),
            ProvisioningError::TooManySlots { retry_after_ms } => Self {
                retry_after_ms,
                ..Self::new(ErrorCode::Unavailable, message)
            },
            ProvisioningError::MessageTooLarge => {
                Self::new(ErrorCode::ProvisioningMessageTooLarge, message)
            }
            ProvisioningError::UnknownSlot => {
                Self::new(ErrorCode::UnknownProvisioningSlot, message)
            }
            ProvisioningError::SlotIdLength | ProvisioningError::EmptyMessage => {
                Self::invalid(message)
            }
        }
    }
}

impl From<AttachmentError> for ApiError {
    fn from(error: AttachmentError) -> Self {
        let message = error.to_string();
        let code = match error {
            AttachmentError::Storage(e) => return e.into(),
            AttachmentError::Internal(e) => return e.into(),
            AttachmentError::UploadRunning { retry_after_ms } => {
                return Self {
                    retry_after_ms,
                    ..Self::new(ErrorCode::Unavailable, message)
                };
            }
            AttachmentError::IdLength
            | AttachmentError::EmptySize
            | AttachmentError::HeaderMissing
            | AttachmentError::HeaderTruncated
            | AttachmentError::HeaderEmpty
            | AttachmentError::WrongOffset { .. }
            | AttachmentError::RangeOutside => ErrorCode::InvalidArgument,
            AttachmentError::TooLarge { .. } | AttachmentError::BeyondDeclaredSize => {
                ErrorCode::AttachmentTooLarge
            }
            AttachmentError::Unknown => ErrorCode::UnknownAttachment,
            AttachmentError::NotLoggedIn => ErrorCode::NotAuthenticated,
            AttachmentError::HeaderTimeout => ErrorCode::ProtocolViolation,
            AttachmentError::HeaderTooLarge => ErrorCode::FrameTooLarge,
            AttachmentError::HeaderMalformed => ErrorCode::MalformedFrame,
            AttachmentError::WrongToken => ErrorCode::InvalidCredentials,
            AttachmentError::StreamBroke => ErrorCode::Unavailable,
        };
        Self::new(code, message)
    }
}

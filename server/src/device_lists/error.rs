//! Why an uploaded signed device list is refused (SPEC.md §20): what the
//! server can check before storing it.
//!
//! The messages are the ones the client reads in `Response.error`; the
//! error code of each variant is chosen where every domain error becomes
//! the wire form (`crate::error`).

use microbot_crypto::device_list::DeviceListError;

use crate::error::Internal;
use crate::storage::StorageError;

/// Why a device list upload failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceListUploadError {
    /// The device has no identity key on the server yet: upload prekeys
    /// first.
    #[error("upload the identity key with the prekeys before a device list")]
    NoIdentityKey,
    /// The signature does not verify under the device's identity key.
    #[error("the device list's signature does not verify under the identity key")]
    BadSignature,
    /// The bytes are not a device list.
    #[error("malformed device list: {0}")]
    Malformed(DeviceListError),
    /// The list is another account's.
    #[error("the device list names another account")]
    OtherAccount,
    /// The uploading device is not in the list.
    #[error("the uploading device must be listed")]
    UploaderNotListed,
    /// A version the store cannot hold.
    #[error("device list version above 2^63 - 1")]
    VersionTooHigh,
    /// Listed devices that are not the account's.
    #[error("the list names a device of no such account")]
    UnknownDevices(Vec<u64>),
    /// Listed devices that were removed.
    #[error("the list names a removed device")]
    RemovedDevices(Vec<u64>),
    /// The stored list is at this version or above: fetch it and sign the
    /// next.
    #[error(
        "the account's device list is at version {stored} or above; fetch it and sign the next"
    )]
    Stale {
        /// The version the account's list has reached.
        stored: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A failure on the server's side.
    #[error(transparent)]
    Internal(#[from] Internal),
}

impl From<DeviceListError> for DeviceListUploadError {
    fn from(error: DeviceListError) -> Self {
        match error {
            DeviceListError::BadSignature => Self::BadSignature,
            other => Self::Malformed(other),
        }
    }
}

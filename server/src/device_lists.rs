//! `UploadDeviceListRequest` and the server's use of signed device lists
//! (SPEC.md §20): the checks before a list is stored, and which devices of
//! an account count once it has one.
//!
//! The server checks what it can (signature under the uploading device's
//! identity key, a growing version, the uploader listed, every listed device
//! one of the account's live devices) so an honest server never serves a
//! list a client would refuse; clients verify again and never rely on it.
//!
//! Not owned here: the layout and signature (crypto-core `device_list`),
//! storage (storage/device_lists.rs).

use std::collections::HashSet;
use std::sync::Arc;

use microbot_crypto::IdentityKey;
use microbot_crypto::device_list::SignedDeviceList;
use microbot_protocol::transport::UploadDeviceListRequest;

use crate::auth::devices::Caller;
use crate::error::Internal;
use crate::state::ServerState;
use crate::storage::{Storage, StorageResult};

mod error;

pub use error::DeviceListUploadError;

/// `UploadDeviceListRequest` (logged in).
///
/// # Errors
/// The [`DeviceListUploadError`] saying which check failed.
pub async fn upload(
    state: &Arc<ServerState>,
    caller: &Caller,
    request: UploadDeviceListRequest,
) -> Result<(), DeviceListUploadError> {
    let storage = state.storage.as_ref();
    let identity = storage
        .device_identity_key(caller.device_id)
        .await?
        .ok_or(DeviceListUploadError::NoIdentityKey)?;
    let identity = IdentityKey::from_bytes(&identity)
        .map_err(|_| Internal::new("stored identity key does not decode"))?;
    let signed = SignedDeviceList::verify(&request.signed_device_list, &identity)?;
    let list = signed.list();
    if list.username() != caller.username {
        return Err(DeviceListUploadError::OtherAccount);
    }
    if !list.contains(caller.device_id) {
        return Err(DeviceListUploadError::UploaderNotListed);
    }
    if i64::try_from(list.version()).is_err() {
        return Err(DeviceListUploadError::VersionTooHigh);
    }
    check_devices(storage, caller.account_id, list.device_ids()).await?;
    // A stored list that does not verify under this identity was
    // signed by an identity the account no longer uses (a reinstall
    // with a new identity, which contacts see as a new safety
    // number): the new identity starts its own history.
    let stored = storage.device_list(caller.account_id).await?;
    let same_identity = stored
        .as_ref()
        .is_some_and(|s| SignedDeviceList::verify(&s.bytes, &identity).is_ok());
    if let Some(stored) = stored.as_ref().filter(|_| same_identity)
        && stored.version >= list.version()
    {
        return Err(DeviceListUploadError::Stale {
            stored: stored.version,
        });
    }
    let stored_now = storage
        .put_device_list(
            caller.account_id,
            list.version(),
            signed.as_bytes(),
            !same_identity,
        )
        .await?;
    if !stored_now {
        return Err(DeviceListUploadError::Stale {
            stored: list.version(),
        });
    }
    tracing::info!(
        device_id = caller.device_id,
        version = list.version(),
        devices = list.device_ids().len(),
        "device list stored"
    );
    Ok(())
}

/// Every listed device must be a live device of the account.
async fn check_devices(
    storage: &dyn Storage,
    account_id: i64,
    ids: &[u64],
) -> Result<(), DeviceListUploadError> {
    let mut unknown = Vec::new();
    let mut removed = Vec::new();
    for id in ids {
        match storage.device(*id).await? {
            Some(device) if device.account_id == account_id => {
                if device.removed {
                    removed.push(*id);
                }
            }
            _ => unknown.push(*id),
        }
    }
    if !unknown.is_empty() {
        return Err(DeviceListUploadError::UnknownDevices(unknown));
    }
    if !removed.is_empty() {
        return Err(DeviceListUploadError::RemovedDevices(removed));
    }
    Ok(())
}

/// The devices of the account's stored signed list, or `None` when it never
/// uploaded one (then every device counts, the rule before §20). The stored
/// bytes were verified on upload; a row that no longer parses counts as no
/// list, and is logged.
///
/// # Errors
/// A storage failure.
pub async fn listed_devices(
    storage: &dyn Storage,
    account_id: i64,
) -> StorageResult<Option<HashSet<u64>>> {
    Ok(crate::storage::device_lists::listed_in(
        storage
            .device_list(account_id)
            .await?
            .as_ref()
            .map(|s| s.bytes.as_slice()),
    ))
}

/// The account's stored signed list as sent to clients (empty: none).
///
/// # Errors
/// A storage failure.
pub async fn signed_bytes(storage: &dyn Storage, account_id: i64) -> StorageResult<bytes::Bytes> {
    Ok(storage
        .device_list(account_id)
        .await?
        .map(|s| bytes::Bytes::from(s.bytes))
        .unwrap_or_default())
}

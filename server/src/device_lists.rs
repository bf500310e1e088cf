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
use microbot_crypto::device_list::{DeviceListError, SignedDeviceList};
use microbot_protocol::transport::{ErrorCode, UploadDeviceListRequest};

use crate::auth::devices::DeviceSession;
use crate::error::ApiError;
use crate::state::ServerState;
use crate::storage::{Storage, StorageResult};

/// `UploadDeviceListRequest` (logged in).
///
/// # Errors
/// `NO_PREKEYS` (the device has no identity key on the server yet),
/// `INVALID_ARGUMENT` (malformed, another account's, the uploader not
/// listed, a version above 2^63 − 1), `BAD_SIGNATURE`, `UNKNOWN_DEVICE` /
/// `DEVICE_REMOVED` (with the listed devices concerned),
/// `STALE_DEVICE_LIST` (version not above the stored one).
pub async fn upload(
    state: &Arc<ServerState>,
    session: &DeviceSession,
    request: UploadDeviceListRequest,
) -> Result<(), ApiError> {
    let session = session.clone();
    state
        .blocking(move |state| {
            let storage = state.storage.as_ref();
            let identity = storage
                .device_identity_key(session.device_id)?
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::NoPrekeys,
                        "upload the identity key with the prekeys before a device list",
                    )
                })?;
            let identity = IdentityKey::from_bytes(&identity)
                .map_err(|_| ApiError::internal("stored identity key does not decode"))?;
            let signed = SignedDeviceList::verify(&request.signed_device_list, &identity)
                .map_err(refusal)?;
            let list = signed.list();
            if list.username() != session.username {
                return Err(ApiError::invalid("the device list names another account"));
            }
            if !list.contains(session.device_id) {
                return Err(ApiError::invalid("the uploading device must be listed"));
            }
            if i64::try_from(list.version()).is_err() {
                return Err(ApiError::invalid("device list version above 2^63 - 1"));
            }
            check_devices(storage, session.account_id, list.device_ids())?;
            // A stored list that does not verify under this identity was
            // signed by an identity the account no longer uses (a reinstall
            // with a new identity, which contacts see as a new safety
            // number): the new identity starts its own history.
            let stored = storage.device_list(session.account_id)?;
            let same_identity = stored
                .as_ref()
                .is_some_and(|s| SignedDeviceList::verify(&s.bytes, &identity).is_ok());
            if let Some(stored) = stored.as_ref().filter(|_| same_identity)
                && stored.version >= list.version()
            {
                return Err(stale(stored.version));
            }
            let stored_now = storage.put_device_list(
                session.account_id,
                list.version(),
                signed.as_bytes(),
                !same_identity,
            )?;
            if !stored_now {
                return Err(stale(list.version()));
            }
            tracing::info!(
                device_id = session.device_id,
                version = list.version(),
                devices = list.device_ids().len(),
                "device list stored"
            );
            Ok(())
        })
        .await
}

fn stale(stored: u64) -> ApiError {
    ApiError::new(
        ErrorCode::StaleDeviceList,
        format!(
            "the account's device list is at version {stored} or above; fetch it and sign the next"
        ),
    )
}

fn refusal(error: DeviceListError) -> ApiError {
    match error {
        DeviceListError::BadSignature => ApiError::new(
            ErrorCode::BadSignature,
            "the device list's signature does not verify under the identity key",
        ),
        other => ApiError::invalid(format!("malformed device list: {other}")),
    }
}

/// Every listed device must be a live device of the account.
fn check_devices(storage: &dyn Storage, account_id: i64, ids: &[u64]) -> Result<(), ApiError> {
    let mut unknown = Vec::new();
    let mut removed = Vec::new();
    for id in ids {
        match storage.device(*id)? {
            Some(device) if device.account_id == account_id => {
                if device.removed {
                    removed.push(*id);
                }
            }
            _ => unknown.push(*id),
        }
    }
    if !unknown.is_empty() {
        return Err(ApiError {
            device_ids: unknown,
            ..ApiError::new(
                ErrorCode::UnknownDevice,
                "the list names a device of no such account",
            )
        });
    }
    if !removed.is_empty() {
        return Err(ApiError {
            device_ids: removed,
            ..ApiError::new(ErrorCode::DeviceRemoved, "the list names a removed device")
        });
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
pub fn listed_devices(
    storage: &dyn Storage,
    account_id: i64,
) -> StorageResult<Option<HashSet<u64>>> {
    Ok(crate::storage::device_lists::listed_in(
        storage
            .device_list(account_id)?
            .as_ref()
            .map(|s| s.bytes.as_slice()),
    ))
}

/// The account's stored signed list as sent to clients (empty: none).
///
/// # Errors
/// A storage failure.
pub fn signed_bytes(storage: &dyn Storage, account_id: i64) -> StorageResult<bytes::Bytes> {
    Ok(storage
        .device_list(account_id)?
        .map(|s| bytes::Bytes::from(s.bytes))
        .unwrap_or_default())
}

//! Device and prekey decisions written once for both backends: which
//! device may be removed or sent to, what a first prekey upload must
//! carry, and when a device holds too many one-time prekeys (SPEC.md
//! §12.6). Pure: a backend reads the rows, asks here, and writes (or rolls
//! back).
//!
//! Not owned here: reading and writing rows (sqlite.rs, postgres.rs),
//! request validation (the handlers).

use super::{PrekeyCaps, PrekeyStock, PrekeyUpload, SignedKey, StorageError, StorageResult};

/// Whether `account_id` may remove `device_id`, given the device row as
/// `(owner account, removed)` (`None`: no such row).
///
/// # Errors
/// [`StorageError::UnknownDevice`] when there is no such device or another
/// account owns it; [`StorageError::DeviceRemoved`] when it is already
/// removed.
pub(crate) fn check_removable(
    device_id: u64,
    account_id: i64,
    row: Option<(i64, bool)>,
) -> StorageResult<()> {
    match row {
        Some((owner, _)) if owner != account_id => Err(StorageError::UnknownDevice(device_id)),
        None => Err(StorageError::UnknownDevice(device_id)),
        Some((_, true)) => Err(StorageError::DeviceRemoved(device_id)),
        Some((_, false)) => Ok(()),
    }
}

/// Whether a message may be queued for `device_id`, given its row's
/// `removed` flag (`None`: no such device).
///
/// # Errors
/// [`StorageError::UnknownDevice`] or [`StorageError::DeviceRemoved`].
pub(crate) fn check_recipient(device_id: u64, removed: Option<bool>) -> StorageResult<()> {
    match removed {
        None => Err(StorageError::UnknownDevice(device_id)),
        Some(true) => Err(StorageError::DeviceRemoved(device_id)),
        Some(false) => Ok(()),
    }
}

/// The identity key and signed prekey of a device's first upload, which
/// must carry both.
///
/// # Errors
/// [`StorageError::NoPrekeys`] when either is missing.
pub(crate) fn first_keys(upload: &PrekeyUpload) -> StorageResult<(&[u8], &SignedKey)> {
    match (&upload.identity_key, &upload.signed_prekey) {
        (Some(identity), Some(spk)) => Ok((identity, spk)),
        _ => Err(StorageError::NoPrekeys),
    }
}

/// Whether `upload` adds one-time (or one-time KEM) prekeys, so that the
/// device's stock must be counted against its caps afterwards.
pub(crate) fn adds_one_time_keys(upload: &PrekeyUpload) -> bool {
    !upload.one_time_prekeys.is_empty() || !upload.kem_prekeys.is_empty()
}

/// Checks a device's stock after an upload against `caps`.
///
/// # Errors
/// [`StorageError::PrekeyStockFull`] when either kind is over its cap (the
/// backend then rolls the upload back).
pub(crate) fn check_stock(stock: PrekeyStock, caps: PrekeyCaps) -> StorageResult<()> {
    if stock.one_time > caps.one_time || stock.kem > caps.kem {
        Err(StorageError::PrekeyStockFull)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_removes_a_live_device() {
        assert!(check_removable(9, 1, Some((1, false))).is_ok());
        assert!(matches!(
            check_removable(9, 1, Some((2, false))),
            Err(StorageError::UnknownDevice(9))
        ));
        assert!(matches!(
            check_removable(9, 1, None),
            Err(StorageError::UnknownDevice(9))
        ));
        assert!(matches!(
            check_removable(9, 1, Some((1, true))),
            Err(StorageError::DeviceRemoved(9))
        ));
        // Another account's removed device is unknown, not removed.
        assert!(matches!(
            check_removable(9, 1, Some((2, true))),
            Err(StorageError::UnknownDevice(9))
        ));
    }

    #[test]
    fn only_live_devices_receive() {
        assert!(check_recipient(5, Some(false)).is_ok());
        assert!(matches!(
            check_recipient(5, None),
            Err(StorageError::UnknownDevice(5))
        ));
        assert!(matches!(
            check_recipient(5, Some(true)),
            Err(StorageError::DeviceRemoved(5))
        ));
    }

    #[test]
    fn a_first_upload_needs_both_keys_and_the_stock_is_capped() {
        let spk = SignedKey {
            id: 1,
            public_key: vec![1],
            signature: vec![2],
        };
        let mut upload = PrekeyUpload {
            identity_key: Some(vec![3]),
            signed_prekey: None,
            one_time_prekeys: Vec::new(),
            kem_prekeys: Vec::new(),
            last_resort_kem_prekey: None,
        };
        assert!(matches!(first_keys(&upload), Err(StorageError::NoPrekeys)));
        upload.signed_prekey = Some(spk.clone());
        assert!(first_keys(&upload).is_ok());
        assert!(!adds_one_time_keys(&upload));
        upload.kem_prekeys.push(spk);
        assert!(adds_one_time_keys(&upload));
        let caps = PrekeyCaps {
            one_time: 2,
            kem: 2,
        };
        let stock = |one_time, kem| PrekeyStock {
            one_time,
            kem,
            signed_prekey_id: 0,
        };
        assert!(check_stock(stock(2, 2), caps).is_ok());
        assert!(matches!(
            check_stock(stock(3, 0), caps),
            Err(StorageError::PrekeyStockFull)
        ));
        assert!(matches!(
            check_stock(stock(0, 3), caps),
            Err(StorageError::PrekeyStockFull)
        ));
    }
}

//! The [`DeviceListStorage`] half of the storage trait: each account's
//! latest signed device list (SPEC.md §20, §14.1), kept as the exact bytes
//! its device uploaded, with its version for the "only grows" rule.
//!
//! Not owned here: checking the signature and the devices it names
//! (device_lists.rs at the crate root).

use super::StorageResult;

/// An account's stored signed device list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDeviceList {
    /// The list's version.
    pub version: u64,
    /// The signed list as uploaded (SPEC.md §20 layout).
    pub bytes: Vec<u8>,
}

/// Device-list operations of [`super::Storage`].
#[async_trait::async_trait]
pub trait DeviceListStorage {
    /// The account's latest signed device list, if it ever uploaded one.
    async fn device_list(&self, account_id: i64) -> StorageResult<Option<StoredDeviceList>>;
    /// Stores `bytes` as the account's list when none is stored or the
    /// stored version is below `version` (one atomic step, so of two
    /// concurrent uploads of one version only one is stored); with
    /// `replace_any` it replaces whatever is stored (a list signed by a new
    /// identity, SPEC.md §20). Returns whether it was stored.
    async fn put_device_list(
        &self,
        account_id: i64,
        version: u64,
        bytes: &[u8],
        replace_any: bool,
    ) -> StorageResult<bool>;
}

/// The devices a stored list names, or `None` without a list (every
/// device counts, the rule before §20). The bytes were verified on upload;
/// a list that no longer parses counts as none, and is logged.
pub(crate) fn listed_in(bytes: Option<&[u8]>) -> Option<std::collections::HashSet<u64>> {
    match microbot_crypto::device_list::parse_unverified(bytes?) {
        Ok((list, _)) => Some(list.device_ids().iter().copied().collect()),
        Err(error) => {
            tracing::error!(%error, "stored device list does not parse; ignored");
            None
        }
    }
}

/// Of `devices` (account id, device id), the ones a message goes to: for
/// an account with a stored list in `lists`, only the devices that list
/// names (SPEC.md §20.3); every device of an account without one. Each
/// list is parsed once, whatever the number of devices.
pub(crate) fn keep_listed(
    devices: impl IntoIterator<Item = (i64, u64)>,
    lists: impl IntoIterator<Item = (i64, Vec<u8>)>,
) -> Vec<u64> {
    let listed: std::collections::HashMap<i64, Option<std::collections::HashSet<u64>>> = lists
        .into_iter()
        .map(|(account, bytes)| (account, listed_in(Some(&bytes))))
        .collect();
    devices
        .into_iter()
        .filter(|(account, device)| {
            listed
                .get(account)
                .and_then(Option::as_ref)
                .is_none_or(|names| names.contains(device))
        })
        .map(|(_, device)| device)
        .collect()
}

/// A version as stored (SQL integers are signed; larger versions are
/// refused before they reach storage).
pub(crate) fn sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

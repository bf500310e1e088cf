//! Account and device suspensions made on the dashboard (SPEC.md §18.7
//! "Suspensions", §14.1): the [`SuspensionStorage`] half of the storage
//! trait. One row per suspended account or device, shared by every node,
//! deleted when lifted, and when the list is read after the account was
//! deleted or the device removed.
//!
//! Not owned here: who may suspend (admin/suspensions.rs), refusing the
//! login (auth/devices.rs), closing open connections (the bus).

use super::StorageResult;
use super::values::{net_id, sql_id};

/// What is suspended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SuspensionTarget {
    /// Every device of the account.
    Account(i64),
    /// One device.
    Device(u64),
}

impl SuspensionTarget {
    /// `account` or `device`.
    pub fn kind(self) -> &'static str {
        match self {
            SuspensionTarget::Account(_) => "account",
            SuspensionTarget::Device(_) => "device",
        }
    }

    /// The row key both backends store: `(kind, target_id)`.
    pub(crate) fn key(self) -> (&'static str, i64) {
        match self {
            SuspensionTarget::Account(id) => ("account", id),
            SuspensionTarget::Device(id) => ("device", sql_id(id)),
        }
    }

    /// The target of a stored `(kind, target_id)`: `account`, or else a
    /// device.
    pub(crate) fn from_key(kind: &str, id: i64) -> Self {
        if kind == "account" {
            SuspensionTarget::Account(id)
        } else {
            SuspensionTarget::Device(net_id(id))
        }
    }
}

/// Which suspension keeps `account_id` on `device_id` out, given the kinds
/// of the rows found for either: the account's when it has one, else the
/// device's, else none.
pub(crate) fn effective_suspension<'k>(
    account_id: i64,
    device_id: u64,
    kinds: impl IntoIterator<Item = &'k str>,
) -> Option<SuspensionTarget> {
    let mut device = false;
    for kind in kinds {
        match kind {
            "account" => return Some(SuspensionTarget::Account(account_id)),
            _ => device = true,
        }
    }
    device.then_some(SuspensionTarget::Device(device_id))
}

/// One suspension as stored, with the names an operator reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuspensionRecord {
    /// What is suspended.
    pub target: SuspensionTarget,
    /// The account's username (a device's: its owner's).
    pub username: String,
    /// The admin who suspended it (name at the time).
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_at_ms: u64,
}

/// Suspension operations of [`super::Storage`].
#[async_trait::async_trait]
pub trait SuspensionStorage {
    /// Suspends `target`; `false` when it was suspended already.
    async fn suspend(&self, target: SuspensionTarget, by: &str, now_ms: u64)
    -> StorageResult<bool>;
    /// Lifts the suspension of `target`; `false` when there was none.
    async fn unsuspend(&self, target: SuspensionTarget) -> StorageResult<bool>;
    /// Every suspension, oldest first; the suspensions of deleted accounts
    /// and removed devices are deleted first.
    async fn suspensions(&self) -> StorageResult<Vec<SuspensionRecord>>;
    /// Whether the device or its account is suspended (the account's
    /// suspension is named when both are).
    async fn suspension_of(
        &self,
        account_id: i64,
        device_id: u64,
    ) -> StorageResult<Option<SuspensionTarget>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_the_account_wins() {
        for target in [SuspensionTarget::Account(3), SuspensionTarget::Device(4)] {
            let (kind, id) = target.key();
            assert_eq!(SuspensionTarget::from_key(kind, id), target);
        }
        assert_eq!(effective_suspension(3, 4, []), None);
        assert_eq!(
            effective_suspension(3, 4, ["device"]),
            Some(SuspensionTarget::Device(4))
        );
        assert_eq!(
            effective_suspension(3, 4, ["device", "account"]),
            Some(SuspensionTarget::Account(3))
        );
    }
}

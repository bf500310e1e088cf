//! Account and device suspensions made on the dashboard (SPEC.md §18.7
//! "Suspensions", §14.1): the [`SuspensionStorage`] half of the storage
//! trait. One row per suspended account or device, shared by every node,
//! deleted when lifted, and when the list is read after the account was
//! deleted or the device removed.
//!
//! Not owned here: who may suspend (admin/suspensions.rs), refusing the
//! login (auth/devices.rs), closing open connections (the bus).

use super::StorageResult;

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

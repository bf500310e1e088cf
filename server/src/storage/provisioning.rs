//! Provisioning slots and the [`ProvisioningStorage`] half of the storage
//! trait (SPEC.md §12.14 "Device linking", §14.1).
//!
//! A slot is a random 16-byte id, an expiry, and at most one sealed
//! message (ciphertext only: the server cannot open it). A slot is read at
//! most once with a message in it: the read that returns the message
//! deletes the slot in the same transaction. Expired slots read as absent
//! and are purged when slots are created.
//!
//! Not owned here: the request handling and limits (provisioning.rs).

use super::StorageResult;
use super::values::net_id;

/// Length of a provisioning slot id.
pub const SLOT_ID_LEN: usize = 16;

/// What reading a slot found.
#[derive(Clone, PartialEq, Eq)]
pub enum SlotRead {
    /// No such slot: never created, expired, or already read.
    Missing,
    /// The slot exists but holds no message yet.
    Waiting,
    /// The sealed message; the slot is now deleted.
    Ready(Vec<u8>),
}

impl std::fmt::Debug for SlotRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlotRead::Missing => f.write_str("Missing"),
            SlotRead::Waiting => f.write_str("Waiting"),
            SlotRead::Ready(sealed) => write!(f, "Ready({} bytes)", sealed.len()),
        }
    }
}

/// Whether another slot may open while `open` unexpired slots (the stored
/// count) exist and at most `max_open` may.
pub(crate) fn slot_room(open: i64, max_open: u64) -> bool {
    net_id(open) < max_open
}

/// Provisioning slot operations of [`super::Storage`].
#[async_trait::async_trait]
pub trait ProvisioningStorage {
    /// Deletes expired slots, then creates the slot `id` expiring at
    /// `expires_at_ms` unless `max_open` unexpired slots exist already
    /// (then returns `false` and creates nothing).
    async fn create_provisioning_slot(
        &self,
        id: &[u8; SLOT_ID_LEN],
        expires_at_ms: u64,
        now_ms: u64,
        max_open: u64,
    ) -> StorageResult<bool>;
    /// Stores `sealed` in the unexpired, still empty slot `id`; `false`
    /// when there is no such slot (missing, expired, or already filled).
    async fn put_provisioning_message(
        &self,
        id: &[u8; SLOT_ID_LEN],
        sealed: &[u8],
        now_ms: u64,
    ) -> StorageResult<bool>;
    /// Reads the slot `id`; a slot holding a message is deleted by the same
    /// transaction that returns it.
    async fn take_provisioning_message(
        &self,
        id: &[u8; SLOT_ID_LEN],
        now_ms: u64,
    ) -> StorageResult<SlotRead>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped() {
        assert!(slot_room(0, 1));
        assert!(!slot_room(1, 1));
        assert!(!slot_room(0, 0));
    }
}

//! What can go wrong with a provisioning slot (SPEC.md §12.14).
//!
//! The messages are the ones the client reads in `Response.error`; the
//! error code of each variant is chosen where every domain error becomes
//! the wire form (`crate::error`).

use super::MAX_SEALED_LEN;
use crate::error::Internal;
use crate::storage::StorageError;
use crate::storage::provisioning::SLOT_ID_LEN;

/// Why a provisioning slot request failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    /// A `slot_id` of the wrong length.
    #[error("slot_id must be {SLOT_ID_LEN} bytes")]
    SlotIdLength,
    /// [`super::MAX_OPEN_SLOTS`] slots are open: retry after
    /// `retry_after_ms`.
    #[error("too many provisioning slots open")]
    TooManySlots {
        /// When a slot may have expired.
        retry_after_ms: u64,
    },
    /// An empty sealed message.
    #[error("sealed must not be empty")]
    EmptyMessage,
    /// A sealed message over [`MAX_SEALED_LEN`].
    #[error("a provisioning message is at most {MAX_SEALED_LEN} bytes")]
    MessageTooLarge,
    /// The slot expired, was read, or already holds a message.
    #[error("no such provisioning slot (expired, already read, or already filled)")]
    UnknownSlot,
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A failure on the server's side.
    #[error(transparent)]
    Internal(#[from] Internal),
}

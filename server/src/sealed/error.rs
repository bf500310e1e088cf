//! What can go wrong in a sealed-sender request (SPEC.md §19.6–§19.8): a
//! certificate asked for too early, an access key of the wrong shape, a
//! sealed send the recipient does not accept or that misses devices.
//!
//! The messages are the ones the client reads in `Response.error`; the
//! error code of each variant is chosen where every domain error becomes
//! the wire form (`crate::error`). A refused sealed send never says whether
//! the account exists, the key was wrong or sealed sends are off.

use crate::error::Internal;
use crate::queues::QueueError;
use crate::storage::StorageError;

/// Why a sealed-sender request failed.
#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    /// A certificate asked for before the device uploaded its identity
    /// key: upload prekeys first.
    #[error("upload the identity key (prekeys) before asking for a certificate")]
    NoIdentityKey,
    /// An access key to store that is neither empty nor 16 bytes.
    #[error("access_key is empty or 16 bytes")]
    AccessKeyFormat,
    /// A presented access key that is not 16 bytes.
    #[error("access_key is 16 bytes")]
    AccessKeyLength,
    /// Wrong key, sealed sends not accepted, or no such account (one
    /// answer for all three).
    #[error("the recipient does not accept this sealed send")]
    Denied,
    /// An addressed device that is not a live device of the recipient.
    #[error("a recipient device is not a device of this account")]
    ForeignDevice,
    /// Devices of the recipient the send leaves out: address them too.
    #[error("the sealed send leaves devices of the account out")]
    MissingDevices(Vec<u64>),
    /// The envelopes' shape, or the store refusing them (queue full).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The store refused or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A failure on the server's side.
    #[error(transparent)]
    Internal(#[from] Internal),
}

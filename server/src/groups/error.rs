//! What can go wrong in a group request (SPEC.md §12.10): the request's
//! shape, the key holders a send left out, a limit; the membership and
//! version rules themselves are the store's (`StorageError::NotGroupMember`,
//! `StaleGroupVersion`, …), decided inside its transaction.
//!
//! The messages are the ones the client reads in `Response.error`; the
//! error code of each variant is chosen where every domain error becomes
//! the wire form (`crate::error`).

use crate::error::Internal;
use crate::limits::RateLimited;
use crate::storage::StorageError;

/// Why a group request failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// `group_id` is not 16 bytes.
    #[error("group_id must be 16 bytes")]
    GroupIdLength,
    /// No username, or more than the request may name.
    #[error("name 1..=1000 usernames")]
    UsernameCount,
    /// A creation naming more members than one request may.
    #[error("at most 1000 members per request")]
    TooManyMembers,
    /// `encrypted_metadata` over [`super::MAX_METADATA_LEN`].
    #[error("encrypted_metadata is at most 65536 bytes")]
    MetadataTooLarge,
    /// A role other than `MEMBER` or `ADMIN`.
    #[error("role must be MEMBER or ADMIN")]
    BadRole,
    /// `key_holders` over [`super::MAX_KEY_HOLDERS`].
    #[error("at most 65536 key holders")]
    TooManyKeyHolders,
    /// An empty group ciphertext or one over `max_envelope_len`.
    #[error("group ciphertext must be 1..=max_envelope_len bytes")]
    CiphertextLength,
    /// Member devices with prekeys that `key_holders` leaves out: send
    /// them the sender key, then retry. Nothing was stored.
    #[error("member devices without the sender key; nothing was stored")]
    MissingKeyHolders(Vec<u64>),
    /// A group-change or fan-out limit: retry later.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The store refused (unknown group, not a member or admin, stale
    /// version, …) or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A failure on the server's side.
    #[error(transparent)]
    Internal(#[from] Internal),
}

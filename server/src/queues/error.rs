//! What can go wrong in a send, fetch or ack (SPEC.md §12.7): the shape of
//! the request, accounts a send claims to reach completely, a limit; what
//! the store refuses (`QueueFull`, `UnknownDevice`, …) passes through.
//!
//! The messages are the ones the client reads in `Response.error`; the
//! error code of each variant is chosen where every domain error becomes
//! the wire form (`crate::error`).

use crate::error::Internal;
use crate::limits::RateLimited;
use crate::storage::StorageError;

/// Why a send, fetch or ack failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No envelope, or more than the request (`what`) may carry.
    #[error("{what} carries 1..={max} envelopes")]
    EnvelopeCount {
        /// The request, in the message's words ("a send").
        what: &'static str,
        /// Most envelopes it may carry.
        max: usize,
    },
    /// An empty envelope ciphertext or one over `max_envelope_len`.
    #[error("envelope ciphertext must be 1..=max_envelope_len bytes")]
    CiphertextLength,
    /// Two envelopes for the same recipient device.
    #[error("at most one envelope per recipient device")]
    DuplicateRecipient,
    /// `complete_accounts` names more than
    /// [`super::MAX_COMPLETE_ACCOUNTS`] accounts.
    #[error("a send names at most 8 complete accounts")]
    TooManyCompleteAccounts,
    /// `complete_accounts` holds an invalid or repeated username.
    #[error("complete_accounts holds valid usernames, each once")]
    BadCompleteAccounts,
    /// `complete_accounts` names no active account.
    #[error("no such account")]
    UnknownCompleteAccount,
    /// Devices of a complete account the send leaves out: address them
    /// too (they may be new), then retry. Nothing was stored.
    #[error("the send leaves out devices of a complete account; nothing was stored")]
    IncompleteAccounts(Vec<u64>),
    /// An ack naming more than [`super::MAX_ACK_IDS`] envelopes.
    #[error("at most 1000 ids per ack")]
    TooManyAcks,
    /// The sender's fan-out limit: retry later.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The store refused (queue full, unknown or removed device) or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A failure on the server's side.
    #[error(transparent)]
    Internal(#[from] Internal),
}

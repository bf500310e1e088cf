//! What can go wrong in a prekey request (SPEC.md §12.6): a key of the
//! wrong size, an upload or fetch naming too many keys or devices, an
//! account that does not exist, a limit; what the store refuses (first
//! upload incomplete, stock full) passes through.
//!
//! The messages are the ones the client reads in `Response.error`; the
//! error code of each variant is chosen where every domain error becomes
//! the wire form (`crate::error`).

use crate::error::Internal;
use crate::limits::RateLimited;
use crate::storage::StorageError;

/// Why a prekey upload, fetch or status request failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// An identity key that is neither absent nor 32 bytes.
    #[error("identity_key must be 32 bytes")]
    IdentityKeyLength,
    /// A signed prekey whose key or signature has the wrong size.
    #[error("signed prekey: public_key must be 32 bytes, signature 64")]
    SignedPrekeyShape,
    /// A KEM prekey whose key or signature has the wrong size.
    #[error("KEM prekey: public_key must be 1184 bytes, signature 64")]
    KemPrekeyShape,
    /// A one-time prekey that is not 32 bytes.
    #[error("one-time prekey public_key must be 32 bytes")]
    OneTimePrekeyLength,
    /// More one-time prekeys than one upload may carry.
    #[error("at most 1000 one-time prekeys per upload")]
    TooManyOneTimePrekeys,
    /// More KEM prekeys than one upload may carry.
    #[error("at most 100 KEM prekeys per upload")]
    TooManyKemPrekeys,
    /// A fetch naming more devices than one fetch may.
    #[error("at most 100 device ids per fetch")]
    TooManyDevices,
    /// A fetch for a username with no active account.
    #[error("no such account")]
    UnknownAccount,
    /// An upload or fetch limit: retry later.
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    /// The store refused (first upload incomplete, stock full) or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A failure on the server's side.
    #[error(transparent)]
    Internal(#[from] Internal),
}

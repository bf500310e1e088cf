//! Sealed-sender state and the [`SealedStorage`] half of the storage trait
//! (SPEC.md §19.6, §19.7, §14.1).
//!
//! Two things are kept: the server's certificate signing key (one for the
//! whole deployment, so every node of a cluster signs with the same key:
//! the first node to start stores its candidate, every later one reads it),
//! and per account the unidentified-access key its owner registered plus
//! whether it accepts sealed sends from anyone. Neither names a sender.
//!
//! Not owned here: issuing certificates and checking access (sealed.rs).

use zeroize::Zeroizing;

use super::StorageResult;

/// Length of an unidentified-access key (SPEC.md §19.7).
pub const ACCESS_KEY_LEN: usize = 16;

/// What an account accepts from senders that do not identify themselves.
#[derive(Clone, PartialEq, Eq)]
pub struct UnidentifiedAccess {
    /// The account.
    pub account_id: i64,
    /// The registered access key, if any.
    pub access_key: Option<[u8; ACCESS_KEY_LEN]>,
    /// Whether any access key is accepted.
    pub allow_anyone: bool,
}

impl std::fmt::Debug for UnidentifiedAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnidentifiedAccess")
            .field("account_id", &self.account_id)
            .field("has_access_key", &self.access_key.is_some())
            .field("allow_anyone", &self.allow_anyone)
            .finish()
    }
}

/// Sealed-sender operations of [`super::Storage`].
#[async_trait::async_trait]
pub trait SealedStorage {
    /// Stores `(key_id, candidate)` as the deployment's certificate key
    /// unless one is stored already; returns the stored one either way.
    async fn certificate_key(
        &self,
        key_id: u32,
        candidate: &[u8; 32],
    ) -> StorageResult<(u32, Zeroizing<[u8; 32]>)>;
    /// Sets (or with `None` clears) the account's access key and whether it
    /// accepts sealed sends from anyone.
    async fn set_unidentified_access(
        &self,
        account_id: i64,
        access_key: Option<&[u8; ACCESS_KEY_LEN]>,
        allow_anyone: bool,
    ) -> StorageResult<()>;
    /// The access settings of the active account `username`; `None` for an
    /// unknown or inactive account.
    async fn unidentified_access(
        &self,
        username: &str,
    ) -> StorageResult<Option<UnidentifiedAccess>>;
    /// The identity key the device uploaded with its prekeys, if any.
    async fn device_identity_key(&self, device_id: u64) -> StorageResult<Option<Vec<u8>>>;
}

/// An access key as stored (16 bytes), or `None` for anything else.
pub(crate) fn access_key_from(bytes: Option<Vec<u8>>) -> Option<[u8; ACCESS_KEY_LEN]> {
    bytes.and_then(|b| <[u8; ACCESS_KEY_LEN]>::try_from(b.as_slice()).ok())
}

/// The stored key row as `(key_id, seed)`; a corrupt row is a storage error.
pub(crate) fn stored_key(id: i64, secret: &[u8]) -> StorageResult<(u32, Zeroizing<[u8; 32]>)> {
    let key_id = u32::try_from(id)
        .map_err(|_| super::StorageError::Database("server key id out of range".into()))?;
    let seed = <[u8; 32]>::try_from(secret)
        .map_err(|_| super::StorageError::Database("server key is not 32 bytes".into()))?;
    Ok((key_id, Zeroizing::new(seed)))
}

//! The store as the account handle and its background task share it: one
//! backend behind a lock, used one transaction at a time. A poisoned lock
//! is taken over (a panic elsewhere leaves no half-done transaction: the
//! backend's transaction was dropped uncommitted, so rolled back). Not
//! owned here: the rows (mod.rs, rows.rs, groups.rs, the backends).

use std::sync::{Mutex, PoisonError};

use super::{Store, Tx};
use crate::error::StoreError;

/// The account's store, shared between threads.
pub(crate) struct SharedStore(Mutex<Store>);

impl SharedStore {
    /// Shares `store`.
    pub(crate) fn new(store: Store) -> Self {
        Self(Mutex::new(store))
    }

    /// Runs `f` in one store transaction.
    pub(crate) fn tx<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).tx(f)
    }

    /// The directory of the staging copies of queued files.
    pub(crate) fn staging_dir(&self) -> std::path::PathBuf {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .staging_dir()
            .to_owned()
    }
}

//! The store of skipped message keys (SPEC.md §5.6).
//!
//! Keys are grouped by the peer ratchet key of their chain, in the order the
//! chains were received, and within a chain by message number. That order is
//! also the age order, so eviction takes the front chain's lowest key. The
//! store never holds more than `MAX_SKIPPED_KEYS_TOTAL` keys after a commit.
//! This module does not decide when keys are skipped; the session does.

use std::collections::{BTreeMap, VecDeque};

use crate::labels::{KEY_LEN, MAX_SKIPPED_KEYS_TOTAL};

use super::keys::MessageKey;

/// Skipped keys of one receiving chain.
pub(crate) struct SkippedChain {
    pub(crate) ratchet_key: [u8; KEY_LEN],
    pub(crate) keys: BTreeMap<u32, MessageKey>,
}

/// Every skipped message key of a session, oldest first.
#[derive(Default)]
pub(crate) struct SkippedKeys {
    chains: VecDeque<SkippedChain>,
    total: usize,
}

impl SkippedKeys {
    /// Builds a store from chains already validated (non-empty, distinct
    /// ratchet keys, total within the cap).
    pub(crate) fn from_chains(chains: VecDeque<SkippedChain>) -> Self {
        let total = chains.iter().map(|c| c.keys.len()).sum();
        Self { chains, total }
    }

    /// The chains, oldest first.
    pub(crate) fn chains(&self) -> impl Iterator<Item = &SkippedChain> {
        self.chains.iter()
    }

    /// Number of keys stored.
    pub(crate) fn len(&self) -> usize {
        self.total
    }

    fn chain(&self, ratchet_key: &[u8; KEY_LEN]) -> Option<&SkippedChain> {
        self.chains.iter().find(|c| &c.ratchet_key == ratchet_key)
    }

    /// The key for message `n` of the chain under `ratchet_key`, if stored.
    pub(crate) fn get(&self, ratchet_key: &[u8; KEY_LEN], n: u32) -> Option<&MessageKey> {
        self.chain(ratchet_key).and_then(|c| c.keys.get(&n))
    }

    /// Whether any key of the chain under `ratchet_key` is still stored.
    pub(crate) fn has_chain(&self, ratchet_key: &[u8; KEY_LEN]) -> bool {
        self.chain(ratchet_key).is_some()
    }

    /// Removes (and zeroizes) the key for message `n` of `ratchet_key`'s chain.
    pub(crate) fn remove(&mut self, ratchet_key: &[u8; KEY_LEN], n: u32) {
        let Some(index) = self
            .chains
            .iter()
            .position(|c| &c.ratchet_key == ratchet_key)
        else {
            return;
        };
        let Some(chain) = self.chains.get_mut(index) else {
            return;
        };
        if chain.keys.remove(&n).is_some() {
            self.total -= 1;
        }
        if chain.keys.is_empty() {
            self.chains.remove(index);
        }
    }

    /// Adds the keys of `ratchet_key`'s chain (in ascending message number).
    /// Call [`Self::enforce_cap`] once all keys of one decryption are in.
    pub(crate) fn insert(&mut self, ratchet_key: [u8; KEY_LEN], keys: Vec<(u32, MessageKey)>) {
        if keys.is_empty() {
            return;
        }
        let index = match self
            .chains
            .iter()
            .position(|c| c.ratchet_key == ratchet_key)
        {
            Some(index) => index,
            None => {
                self.chains.push_back(SkippedChain {
                    ratchet_key,
                    keys: BTreeMap::new(),
                });
                self.chains.len() - 1
            }
        };
        let Some(chain) = self.chains.get_mut(index) else {
            return;
        };
        for (n, key) in keys {
            if chain.keys.insert(n, key).is_none() {
                self.total += 1;
            }
        }
    }

    /// Evicts the oldest keys until at most `MAX_SKIPPED_KEYS_TOTAL` remain.
    pub(crate) fn enforce_cap(&mut self) {
        while self.total > MAX_SKIPPED_KEYS_TOTAL {
            let Some(front) = self.chains.front_mut() else {
                self.total = 0;
                return;
            };
            if front.keys.pop_first().is_some() {
                self.total -= 1;
            }
            if front.keys.is_empty() {
                self.chains.pop_front();
            }
        }
    }
}

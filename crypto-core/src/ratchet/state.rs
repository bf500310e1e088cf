//! Persistence of a [`RatchetSession`] as a versioned protobuf message
//! (SPEC.md §5.7). The wire structs are private and exist only at this edge:
//! the session's own types never double as protobuf.
//!
//! Decoding refuses an unknown version, wrong key lengths, contradictory
//! fields and a skipped-key store that breaks the rules the session keeps
//! (distinct non-empty chains, ascending message numbers, the total cap), so
//! `from_bytes(to_bytes(s))` re-encodes to the same bytes. Buffers holding
//! secrets are zeroized when dropped.

use std::collections::{BTreeMap, VecDeque};

use prost::Message;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::labels::{KEY_LEN, MAX_SKIPPED_KEYS_TOTAL, STATE_VERSION};

use super::StateError;
use super::keys::{ChainKey, MessageKey, RootKey, Secret32};
use super::session::{Chain, OwnRatchetKey, RatchetSession};
use super::skipped::{SkippedChain, SkippedKeys};

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
struct RatchetState {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    associated_data: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    root_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    own_ratchet_private_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    remote_ratchet_key: Vec<u8>,
    #[prost(message, optional, tag = "6")]
    sending_chain: Option<ChainState>,
    #[prost(message, optional, tag = "7")]
    receiving_chain: Option<ChainState>,
    #[prost(uint32, tag = "8")]
    previous_sending_chain_length: u32,
    #[prost(message, repeated, tag = "9")]
    skipped_chains: Vec<SkippedChainState>,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
struct ChainState {
    #[prost(bytes = "vec", tag = "1")]
    chain_key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    index: u32,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
struct SkippedChainState {
    #[prost(bytes = "vec", tag = "1")]
    ratchet_key: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    keys: Vec<SkippedMessageKey>,
}

#[derive(Clone, PartialEq, Message)]
#[prost(skip_debug)]
struct SkippedMessageKey {
    #[prost(uint32, tag = "1")]
    message_number: u32,
    #[prost(bytes = "vec", tag = "2")]
    message_key: Vec<u8>,
}

impl Drop for RatchetState {
    fn drop(&mut self) {
        self.root_key.zeroize();
        self.own_ratchet_private_key.zeroize();
    }
}

impl Drop for ChainState {
    fn drop(&mut self) {
        self.chain_key.zeroize();
    }
}

impl Drop for SkippedMessageKey {
    fn drop(&mut self) {
        self.message_key.zeroize();
    }
}

fn key32(field: &'static str, bytes: &[u8]) -> Result<[u8; KEY_LEN], StateError> {
    bytes.try_into().map_err(|_| StateError::InvalidLength {
        field,
        expected: KEY_LEN,
        actual: bytes.len(),
    })
}

fn secret32(field: &'static str, bytes: &[u8]) -> Result<Secret32, StateError> {
    Ok(Secret32::new(&Zeroizing::new(key32(field, bytes)?)))
}

fn chain_to_state(chain: &Chain) -> ChainState {
    ChainState {
        chain_key: chain.key.0.as_bytes().to_vec(),
        index: chain.index,
    }
}

fn chain_from_state(field: &'static str, state: &ChainState) -> Result<Chain, StateError> {
    Ok(Chain {
        key: ChainKey(secret32(field, &state.chain_key)?),
        index: state.index,
    })
}

fn skipped_from_state(chains: &[SkippedChainState]) -> Result<SkippedKeys, StateError> {
    let count: usize = chains.iter().map(|c| c.keys.len()).sum();
    if count > MAX_SKIPPED_KEYS_TOTAL {
        return Err(StateError::TooManySkippedKeys {
            count,
            max: MAX_SKIPPED_KEYS_TOTAL,
        });
    }
    let mut out: VecDeque<SkippedChain> = VecDeque::with_capacity(chains.len());
    for chain in chains {
        let ratchet_key = key32("skipped_chains.ratchet_key", &chain.ratchet_key)?;
        if chain.keys.is_empty() {
            return Err(StateError::Inconsistent {
                reason: "a skipped chain holds no keys",
            });
        }
        if out.iter().any(|c| c.ratchet_key == ratchet_key) {
            return Err(StateError::Inconsistent {
                reason: "two skipped chains share a ratchet key",
            });
        }
        let mut keys = BTreeMap::new();
        let mut previous: Option<u32> = None;
        for key in &chain.keys {
            if previous.is_some_and(|p| p >= key.message_number) {
                return Err(StateError::Inconsistent {
                    reason: "skipped message numbers are not strictly ascending",
                });
            }
            previous = Some(key.message_number);
            let secret = secret32("skipped_chains.keys.message_key", &key.message_key)?;
            keys.insert(key.message_number, MessageKey(secret));
        }
        out.push_back(SkippedChain { ratchet_key, keys });
    }
    Ok(SkippedKeys::from_chains(out))
}

impl RatchetSession {
    /// Serialises the session to a `RatchetState` protobuf message
    /// (SPEC.md §5.7). The bytes contain every secret of the session; they
    /// are zeroized when the returned buffer is dropped.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let state = RatchetState {
            version: STATE_VERSION,
            associated_data: self.associated_data.clone(),
            root_key: self.root_key.0.as_bytes().to_vec(),
            own_ratchet_private_key: self.own_ratchet.secret.as_bytes().to_vec(),
            remote_ratchet_key: self
                .remote_ratchet_key
                .map(|key| key.to_bytes().to_vec())
                .unwrap_or_default(),
            sending_chain: self.sending.as_ref().map(chain_to_state),
            receiving_chain: self.receiving.as_ref().map(chain_to_state),
            previous_sending_chain_length: self.previous_sending_length,
            skipped_chains: self
                .skipped
                .chains()
                .map(|chain| SkippedChainState {
                    ratchet_key: chain.ratchet_key.to_vec(),
                    keys: chain
                        .keys
                        .iter()
                        .map(|(&message_number, key)| SkippedMessageKey {
                            message_number,
                            message_key: key.0.as_bytes().to_vec(),
                        })
                        .collect(),
                })
                .collect(),
        };
        Zeroizing::new(state.encode_to_vec())
    }

    /// Restores a session written by [`Self::to_bytes`]. Refuses an unknown
    /// version and any malformed or contradictory field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let state = RatchetState::decode(bytes)?;
        if state.version != STATE_VERSION {
            return Err(StateError::UnsupportedVersion {
                version: state.version,
                expected: STATE_VERSION,
            });
        }
        let root_key = RootKey(secret32("root_key", &state.root_key)?);
        let own_secret = Zeroizing::new(key32(
            "own_ratchet_private_key",
            &state.own_ratchet_private_key,
        )?);
        let own_ratchet = OwnRatchetKey::new(StaticSecret::from(*own_secret));
        let remote_ratchet_key = match state.remote_ratchet_key.len() {
            0 => None,
            _ => Some(PublicKey::from(key32(
                "remote_ratchet_key",
                &state.remote_ratchet_key,
            )?)),
        };
        let sending = state
            .sending_chain
            .as_ref()
            .map(|c| chain_from_state("sending_chain.chain_key", c))
            .transpose()?;
        let receiving = state
            .receiving_chain
            .as_ref()
            .map(|c| chain_from_state("receiving_chain.chain_key", c))
            .transpose()?;
        if remote_ratchet_key.is_some() != sending.is_some() {
            return Err(StateError::Inconsistent {
                reason: "a sending chain exists exactly when the remote ratchet key is known",
            });
        }
        if receiving.is_some() && remote_ratchet_key.is_none() {
            return Err(StateError::Inconsistent {
                reason: "a receiving chain without a remote ratchet key",
            });
        }
        let skipped = skipped_from_state(&state.skipped_chains)?;
        Ok(Self {
            associated_data: state.associated_data.clone(),
            root_key,
            own_ratchet,
            remote_ratchet_key,
            sending,
            receiving,
            previous_sending_length: state.previous_sending_chain_length,
            skipped,
        })
    }
}

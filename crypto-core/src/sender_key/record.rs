//! All generations of one sender's key that a receiver keeps (SPEC.md §6.6),
//! so messages sent just before a rotation still decrypt after it.

use std::collections::VecDeque;
use std::fmt;

use prost::Message as _;
use zeroize::Zeroizing;

use crate::labels::{MAX_SENDER_KEY_GENERATIONS, STATE_VERSION};

use super::inbound::InboundSenderKey;
use super::message::SenderKeyMessage;
use super::state::SenderKeyRecordState;
use super::{SenderKeyError, StateError};

/// Up to [`MAX_SENDER_KEY_GENERATIONS`](crate::labels::MAX_SENDER_KEY_GENERATIONS)
/// inbound generations of one (group, sender device), oldest first, looked
/// up by key id.
#[derive(Clone, Default)]
pub struct SenderKeyRecord {
    generations: VecDeque<InboundSenderKey>,
}

impl SenderKeyRecord {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a generation and returns whether it was stored. A generation whose
    /// key id and signing key are already present is ignored (re-processing a
    /// distribution must not rewind its chain and re-open old iterations);
    /// one with a known key id but another signing key replaces the old one.
    /// Beyond the limit the oldest generation is dropped.
    pub fn add(&mut self, generation: InboundSenderKey) -> bool {
        if let Some(position) = self
            .generations
            .iter()
            .position(|g| g.key_id() == generation.key_id())
        {
            let same_key = self
                .generations
                .get(position)
                .is_some_and(|g| g.signing_key() == generation.signing_key());
            if same_key {
                return false;
            }
            self.generations.remove(position);
        }
        self.generations.push_back(generation);
        while self.generations.len() > MAX_SENDER_KEY_GENERATIONS {
            self.generations.pop_front();
        }
        true
    }

    /// The generation with this key id, if kept.
    pub fn generation(&self, key_id: u32) -> Option<&InboundSenderKey> {
        self.generations.iter().find(|g| g.key_id() == key_id)
    }

    /// Number of generations kept.
    pub fn len(&self) -> usize {
        self.generations.len()
    }

    /// Whether no generation is kept.
    pub fn is_empty(&self) -> bool {
        self.generations.is_empty()
    }

    /// Decrypts with the generation the message names. On error the record is
    /// unchanged.
    pub fn decrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, SenderKeyError> {
        let message = SenderKeyMessage::parse(message)?;
        let generation = self
            .generations
            .iter_mut()
            .find(|g| g.key_id() == message.key_id())
            .ok_or(SenderKeyError::UnknownKeyId {
                key_id: message.key_id(),
            })?;
        generation.decrypt_parsed(&message)
    }

    /// Serialises to the versioned `SenderKeyRecordState` message (SPEC.md §6.7).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let state = SenderKeyRecordState {
            version: STATE_VERSION,
            generations: self.generations.iter().map(|g| g.to_state()).collect(),
        };
        Zeroizing::new(state.encode_to_vec())
    }

    /// Restores from [`to_bytes`](Self::to_bytes) output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let state = SenderKeyRecordState::decode(bytes)?;
        if state.version != STATE_VERSION {
            return Err(StateError::UnsupportedVersion {
                found: state.version,
                expected: STATE_VERSION,
            });
        }
        if state.generations.len() > MAX_SENDER_KEY_GENERATIONS {
            return Err(StateError::InvalidField("generations"));
        }
        let mut generations = VecDeque::with_capacity(state.generations.len());
        for generation in &state.generations {
            let generation = InboundSenderKey::from_state(generation)?;
            if generations
                .iter()
                .any(|g: &InboundSenderKey| g.key_id() == generation.key_id())
            {
                return Err(StateError::InvalidField("generations"));
            }
            generations.push_back(generation);
        }
        Ok(Self { generations })
    }
}

impl fmt::Debug for SenderKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.generations.iter()).finish()
    }
}

//! A member's copy of another device's sender key (SPEC.md §6.6): verifies,
//! then decrypts, with out-of-order delivery inside a bounded window.

use std::collections::VecDeque;
use std::fmt;

use ed25519_dalek::VerifyingKey;
use prost::Message as _;
use zeroize::Zeroizing;

use crate::identity::{hex_prefix, verify_ed25519};
use crate::labels::{KEY_LEN, MAX_SENDER_KEY_SKIP, MAX_SENDER_KEY_SKIPPED, STATE_VERSION};

use super::chain::{MessageKeys, SecretKey, step};
use super::distribution::{SenderKeyDistribution, parse_signing_key};
use super::message::SenderKeyMessage;
use super::state::{InboundSenderKeyState, SkippedSenderMessageKey};
use super::{GroupId, SenderKeyError, StateError};

/// A message key kept for an iteration that was skipped over.
#[derive(Clone)]
struct SkippedKey {
    iteration: u32,
    message_key: SecretKey,
}

/// One generation of a sender's key, as a receiver holds it: the chain key
/// for the next expected iteration, the sender's public signing key, and the
/// message keys of skipped iterations (oldest first).
#[derive(Clone)]
pub struct InboundSenderKey {
    group_id: GroupId,
    key_id: u32,
    iteration: u32,
    chain_key: SecretKey,
    signing_key: VerifyingKey,
    skipped: VecDeque<SkippedKey>,
}

impl InboundSenderKey {
    /// Builds the receiving side for `group_id` from a sender's distribution.
    pub fn new(group_id: GroupId, distribution: &SenderKeyDistribution) -> Self {
        Self {
            group_id,
            key_id: distribution.key_id,
            iteration: distribution.iteration,
            chain_key: distribution.chain_key.clone(),
            signing_key: distribution.signing_key,
            skipped: VecDeque::new(),
        }
    }

    /// The group this key is bound to.
    pub fn group_id(&self) -> &GroupId {
        &self.group_id
    }

    /// The generation's key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The next iteration the chain expects.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The sender's Ed25519 public signing key for this generation.
    pub fn signing_key(&self) -> [u8; KEY_LEN] {
        self.signing_key.to_bytes()
    }

    /// Number of skipped message keys currently stored.
    pub fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// Verifies and decrypts one sender-key message. The signature is checked
    /// before the chain is touched; on any error the state is unchanged.
    pub fn decrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, SenderKeyError> {
        let message = SenderKeyMessage::parse(message)?;
        self.decrypt_parsed(&message)
    }

    pub(super) fn decrypt_parsed(
        &mut self,
        message: &SenderKeyMessage<'_>,
    ) -> Result<Vec<u8>, SenderKeyError> {
        if message.key_id() != self.key_id {
            return Err(SenderKeyError::UnknownKeyId {
                key_id: message.key_id(),
            });
        }
        verify_ed25519(
            &self.signing_key,
            message.signed_part(),
            message.signature(),
        )
        .map_err(|_| SenderKeyError::BadSignature)?;
        let ad = message.associated_data(&self.group_id);
        let iteration = message.iteration();

        if iteration < self.iteration {
            let position = self
                .skipped
                .iter()
                .position(|k| k.iteration == iteration)
                .ok_or(SenderKeyError::DuplicateOrExpired { iteration })?;
            let plaintext = self
                .skipped
                .get(position)
                .and_then(|k| {
                    MessageKeys::expand(&k.message_key).open(ad.as_bytes(), message.sealed())
                })
                .ok_or(SenderKeyError::DecryptionFailed)?;
            self.skipped.remove(position);
            return Ok(plaintext);
        }

        let jump = iteration - self.iteration;
        if jump > MAX_SENDER_KEY_SKIP {
            return Err(SenderKeyError::TooFarAhead {
                iteration,
                current: self.iteration,
            });
        }
        // Work on copies; commit only once the AEAD has accepted the message.
        let mut chain_key = self.chain_key.clone();
        let mut newly_skipped = Vec::new();
        for skipped_iteration in self.iteration..iteration {
            let (message_key, next) = step(&chain_key);
            newly_skipped.push(SkippedKey {
                iteration: skipped_iteration,
                message_key,
            });
            chain_key = next;
        }
        let (message_key, next_chain_key) = step(&chain_key);
        let plaintext = MessageKeys::expand(&message_key)
            .open(ad.as_bytes(), message.sealed())
            .ok_or(SenderKeyError::DecryptionFailed)?;

        self.skipped.extend(newly_skipped);
        while self.skipped.len() > MAX_SENDER_KEY_SKIPPED {
            self.skipped.pop_front();
        }
        self.chain_key = next_chain_key;
        // `parse` refuses iteration u32::MAX, so this cannot overflow; a
        // chain at u32::MAX is exhausted and accepts only skipped keys.
        self.iteration = iteration.saturating_add(1);
        Ok(plaintext)
    }

    pub(super) fn to_state(&self) -> InboundSenderKeyState {
        InboundSenderKeyState {
            version: STATE_VERSION,
            group_id: self.group_id.as_bytes().to_vec(),
            key_id: self.key_id,
            iteration: self.iteration,
            chain_key: self.chain_key.to_vec(),
            signing_key: self.signing_key.to_bytes().to_vec(),
            skipped: self
                .skipped
                .iter()
                .map(|k| SkippedSenderMessageKey {
                    iteration: k.iteration,
                    message_key: k.message_key.to_vec(),
                })
                .collect(),
        }
    }

    pub(super) fn from_state(state: &InboundSenderKeyState) -> Result<Self, StateError> {
        if state.version != STATE_VERSION {
            return Err(StateError::UnsupportedVersion {
                found: state.version,
                expected: STATE_VERSION,
            });
        }
        let group_id =
            GroupId::new(&state.group_id).map_err(|_| StateError::InvalidField("group_id"))?;
        let chain_key = secret_key(&state.chain_key, "chain_key")?;
        let signing_key =
            parse_signing_key(&state.signing_key).ok_or(StateError::InvalidField("signing_key"))?;
        if state.skipped.len() > MAX_SENDER_KEY_SKIPPED {
            return Err(StateError::InvalidField("skipped"));
        }
        let mut skipped = VecDeque::with_capacity(state.skipped.len());
        let mut previous: Option<u32> = None;
        for key in &state.skipped {
            let ordered = previous.is_none_or(|p| p < key.iteration);
            if !ordered || key.iteration >= state.iteration {
                return Err(StateError::InvalidField("skipped"));
            }
            previous = Some(key.iteration);
            skipped.push_back(SkippedKey {
                iteration: key.iteration,
                message_key: secret_key(&key.message_key, "skipped.message_key")?,
            });
        }
        Ok(Self {
            group_id,
            key_id: state.key_id,
            iteration: state.iteration,
            chain_key,
            signing_key,
            skipped,
        })
    }

    /// Serialises to the versioned `InboundSenderKeyState` message (SPEC.md §6.7).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.to_state().encode_to_vec())
    }

    /// Restores from [`to_bytes`](Self::to_bytes) output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        Self::from_state(&InboundSenderKeyState::decode(bytes)?)
    }
}

fn secret_key(bytes: &[u8], field: &'static str) -> Result<SecretKey, StateError> {
    let array: [u8; KEY_LEN] = bytes
        .try_into()
        .map_err(|_| StateError::InvalidField(field))?;
    Ok(Zeroizing::new(array))
}

impl fmt::Debug for InboundSenderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundSenderKey")
            .field("group_id", &self.group_id)
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("chain_key", &"<redacted>")
            .field("signing_key", &hex_prefix(&self.signing_key.to_bytes()))
            .field("skipped", &self.skipped.len())
            .finish()
    }
}

//! The sender's own sender key (SPEC.md §6.1, §6.5): creates generations,
//! encrypts and signs group messages.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey};
use prost::Message as _;
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::identity::hex_prefix;
use crate::labels::{KEY_LEN, NONCE_LEN, SIGNATURE_LEN, STATE_VERSION, TAG_LEN};

use super::chain::{MessageKeys, SecretKey, step};
use super::distribution::SenderKeyDistribution;
use super::message::{AssociatedData, HEADER_LEN, header};
use super::state::OutboundSenderKeyState;
use super::{ChainExhausted, GroupId, StateError};

/// Our sending chain for one group: key id, chain key, iteration and
/// Ed25519 signing key. Secrets are zeroized on drop and never printed.
pub struct OutboundSenderKey {
    group_id: GroupId,
    key_id: u32,
    iteration: u32,
    chain_key: SecretKey,
    signing_key: SigningKey,
}

/// Every intermediate value of one [`OutboundSenderKey::encrypt_traced`]
/// call, for test vectors. Holds secrets: zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SenderKeyMessageTrace {
    /// Generation the message was sent under.
    pub key_id: u32,
    /// Position of the message in the chain.
    pub iteration: u32,
    /// Chain key `ck_i` the message key was derived from.
    pub chain_key: [u8; KEY_LEN],
    /// `HMAC-SHA256(ck_i, 0x01)`.
    pub message_key: [u8; KEY_LEN],
    /// First 32 bytes of the HKDF expansion of the message key.
    pub aead_key: [u8; KEY_LEN],
    /// Last 12 bytes of the HKDF expansion of the message key.
    pub nonce: [u8; NONCE_LEN],
    /// The AEAD associated data.
    pub associated_data: Vec<u8>,
    /// ChaCha20-Poly1305 ciphertext ‖ tag.
    pub ciphertext: Vec<u8>,
    /// Ed25519 signature over the message bytes before it.
    pub signature: [u8; SIGNATURE_LEN],
    /// The complete wire message.
    pub message: Vec<u8>,
}

impl OutboundSenderKey {
    /// Starts a new generation for `group_id`. Draws, in this order: 4 bytes
    /// (the key id, big-endian), 32 bytes (the chain key), 32 bytes (the
    /// Ed25519 signing seed). The iteration starts at 0.
    pub fn create<R: CryptoRng + ?Sized>(rng: &mut R, group_id: GroupId) -> Self {
        let mut key_id = [0u8; 4];
        rng.fill_bytes(&mut key_id);
        let mut chain_key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(chain_key.as_mut());
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self {
            group_id,
            key_id: u32::from_be_bytes(key_id),
            iteration: 0,
            chain_key,
            signing_key: SigningKey::from_bytes(&seed),
        }
    }

    /// A new generation for the same group, with fresh key id, chain key and
    /// signing key (drawn as in [`create`](Self::create)). If the drawn key id
    /// equals this one, it is incremented (mod 2^32) so generations differ.
    /// Distribute the result to the remaining members only.
    pub fn rotate<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Self {
        let mut next = Self::create(rng, self.group_id.clone());
        if next.key_id == self.key_id {
            next.key_id = next.key_id.wrapping_add(1);
        }
        next
    }

    /// The group this key is bound to.
    pub fn group_id(&self) -> &GroupId {
        &self.group_id
    }

    /// The generation's key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The iteration the next message will carry.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The distribution for a member who should read messages from the
    /// current iteration on.
    pub fn distribution(&self) -> SenderKeyDistribution {
        SenderKeyDistribution {
            key_id: self.key_id,
            iteration: self.iteration,
            chain_key: self.chain_key.clone(),
            signing_key: self.signing_key.verifying_key(),
        }
    }

    /// Encrypts and signs `plaintext` as the next message of the chain.
    pub fn encrypt(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, ChainExhausted> {
        Ok(self.seal_next(plaintext)?.message)
    }

    /// [`encrypt`](Self::encrypt), also returning every intermediate value.
    /// Deterministic given the state (Ed25519 signing is deterministic).
    pub fn encrypt_traced(
        &mut self,
        plaintext: &[u8],
    ) -> Result<SenderKeyMessageTrace, ChainExhausted> {
        let key_id = self.key_id;
        let iteration = self.iteration;
        let sealed = self.seal_next(plaintext)?;
        let message = sealed.message;
        let (signed, signature) = message.split_at(message.len() - SIGNATURE_LEN);
        let (header_bytes, ciphertext) = signed.split_at(HEADER_LEN);
        let mut signature_bytes = [0u8; SIGNATURE_LEN];
        signature_bytes.copy_from_slice(signature);
        let header = header(key_id, iteration);
        debug_assert_eq!(header_bytes, header);
        Ok(SenderKeyMessageTrace {
            key_id,
            iteration,
            chain_key: *sealed.chain_key,
            message_key: *sealed.message_key,
            aead_key: sealed.keys.key,
            nonce: sealed.keys.nonce,
            associated_data: AssociatedData::new(&self.group_id, &header)
                .as_bytes()
                .to_vec(),
            ciphertext: ciphertext.to_vec(),
            signature: signature_bytes,
            message,
        })
    }

    /// One step of the chain: the message `header ‖ ciphertext ‖ tag ‖
    /// signature`, built in one buffer (the plaintext is copied in and
    /// encrypted in place, the capacity reserved up front so no copy of it
    /// is left behind), and the keys it used. Advances the chain.
    fn seal_next(&mut self, plaintext: &[u8]) -> Result<SealedNext, ChainExhausted> {
        if self.iteration == u32::MAX {
            return Err(ChainExhausted);
        }
        let (message_key, next_chain_key) = step(&self.chain_key);
        let keys = MessageKeys::expand(&message_key);
        let header = header(self.key_id, self.iteration);
        let ad = AssociatedData::new(&self.group_id, &header);
        let mut message =
            Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN + SIGNATURE_LEN);
        message.extend_from_slice(&header);
        message.extend_from_slice(plaintext);
        let (_, body) = message.split_at_mut(HEADER_LEN);
        let tag = keys.seal_in_place(ad.as_bytes(), body);
        message.extend_from_slice(&tag);
        let signature = self.signing_key.sign(&message).to_bytes();
        message.extend_from_slice(&signature);
        let chain_key = std::mem::replace(&mut self.chain_key, next_chain_key);
        self.iteration += 1;
        Ok(SealedNext {
            chain_key,
            message_key,
            keys,
            message,
        })
    }

    /// Serialises to the versioned `OutboundSenderKeyState` message (SPEC.md §6.7).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let state = OutboundSenderKeyState {
            version: STATE_VERSION,
            group_id: self.group_id.as_bytes().to_vec(),
            key_id: self.key_id,
            iteration: self.iteration,
            chain_key: self.chain_key.to_vec(),
            signing_seed: self.signing_key.to_bytes().to_vec(),
        };
        Zeroizing::new(state.encode_to_vec())
    }

    /// Restores from [`to_bytes`](Self::to_bytes) output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let state = OutboundSenderKeyState::decode(bytes)?;
        if state.version != STATE_VERSION {
            return Err(StateError::UnsupportedVersion {
                found: state.version,
                expected: STATE_VERSION,
            });
        }
        let group_id =
            GroupId::new(&state.group_id).map_err(|_| StateError::InvalidField("group_id"))?;
        let chain_key: [u8; KEY_LEN] = state
            .chain_key
            .as_slice()
            .try_into()
            .map_err(|_| StateError::InvalidField("chain_key"))?;
        let seed: [u8; KEY_LEN] = state
            .signing_seed
            .as_slice()
            .try_into()
            .map_err(|_| StateError::InvalidField("signing_seed"))?;
        let seed = Zeroizing::new(seed);
        Ok(Self {
            group_id,
            key_id: state.key_id,
            iteration: state.iteration,
            chain_key: Zeroizing::new(chain_key),
            signing_key: SigningKey::from_bytes(&seed),
        })
    }
}

/// What [`OutboundSenderKey::seal_next`] produced: the message and the
/// secrets behind it (all zeroized on drop).
struct SealedNext {
    chain_key: SecretKey,
    message_key: SecretKey,
    keys: MessageKeys,
    message: Vec<u8>,
}

impl fmt::Debug for OutboundSenderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundSenderKey")
            .field("group_id", &self.group_id)
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("chain_key", &"<redacted>")
            .field(
                "signing_key",
                &hex_prefix(&self.signing_key.verifying_key().to_bytes()),
            )
            .finish()
    }
}

impl fmt::Debug for SenderKeyMessageTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyMessageTrace")
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("secrets", &"<redacted>")
            .field("message_len", &self.message.len())
            .finish()
    }
}

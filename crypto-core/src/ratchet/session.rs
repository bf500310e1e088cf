//! The Double Ratchet session state machine (SPEC.md §5.2, §5.5, §5.6, §5.8): symmetric
//! chain steps on every message, a Diffie-Hellman ratchet step whenever the
//! peer's ratchet key changes, bounded skipping for out-of-order delivery.
//!
//! Invariant: a decryption stages every change (new keys, counters, skipped
//! keys) next to the session and commits only after the AEAD has verified,
//! so any failure leaves the session exactly as it was. The key schedule is
//! in `keys`, the wire layout in `header`, persistence in `state`.

use std::fmt;

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::ZeroizeOnDrop;

use crate::dh::diffie_hellman;
use crate::identity::{KeyError, hex_prefix};
use crate::kdf::{aead_open, aead_seal};
use crate::labels::{KEY_LEN, MAX_SKIP_PER_CHAIN};

use super::header::{
    RATCHET_HEADER_LEN, RATCHET_MESSAGE_VERSION, RatchetHeader, RatchetMessage, encode_message,
    message_associated_data,
};
use super::keys::{ChainKey, MessageKey, RootKey, Secret32, kdf_rk};
use super::skipped::SkippedKeys;
use super::trace::{MessageStep, MessageTrace, NoTrace, RootStep, RootStepTrace, TraceSink};
use super::{DecryptError, EncryptError};

/// Our ratchet key pair; the public half is computed once and cached.
pub(crate) struct OwnRatchetKey {
    pub(crate) secret: Box<StaticSecret>,
    pub(crate) public: PublicKey,
}

impl OwnRatchetKey {
    pub(crate) fn new(secret: StaticSecret) -> Self {
        let public = PublicKey::from(&secret);
        Self {
            secret: Box::new(secret),
            public,
        }
    }

    fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::new(StaticSecret::random_from_rng(rng))
    }
}

/// A sending or receiving chain: its next chain key and how many message
/// keys it has produced (Ns or Nr).
pub(crate) struct Chain {
    pub(crate) key: ChainKey,
    pub(crate) index: u32,
}

/// A Double Ratchet session with one peer device.
///
/// Not `Clone`: two copies of a session would encrypt different messages
/// under the same message keys.
pub struct RatchetSession {
    pub(crate) associated_data: Vec<u8>,
    pub(crate) root_key: RootKey,
    pub(crate) own_ratchet: OwnRatchetKey,
    pub(crate) remote_ratchet_key: Option<PublicKey>,
    pub(crate) sending: Option<Chain>,
    pub(crate) receiving: Option<Chain>,
    pub(crate) previous_sending_length: u32,
    pub(crate) skipped: SkippedKeys,
}

// Every secret field (root key, chain keys, own ratchet secret, skipped keys)
// zeroizes itself on drop.
impl ZeroizeOnDrop for RatchetSession {}

/// The DH ratchet step of a decryption, staged until the AEAD verifies.
struct StagedStep {
    root_key: RootKey,
    own_ratchet: OwnRatchetKey,
    remote_ratchet_key: PublicKey,
    sending: Chain,
    previous_sending_length: u32,
}

/// Message keys skipped at the end of the chain under `ratchet_key`.
struct SkippedRun {
    ratchet_key: [u8; KEY_LEN],
    keys: Vec<(u32, MessageKey)>,
}

/// Everything a decryption changes, staged until the AEAD verifies.
struct ReceivePlan {
    /// Keys skipped at the end of the chain being left (up to PN).
    skipped_old: Option<SkippedRun>,
    step: Option<StagedStep>,
    /// Keys skipped in the message's own chain (before N).
    skipped_new: Vec<(u32, MessageKey)>,
    /// The receiving chain after this message.
    receiving: Chain,
    /// The chain key message N was derived from.
    chain_key: ChainKey,
    message_key: MessageKey,
}

/// Derives the message keys of `chain` from its index up to `until`
/// (exclusive) and the chain positioned at `until`. Callers bound the count.
fn skip_keys(chain: &Chain, until: u32) -> (Vec<(u32, MessageKey)>, Chain) {
    let count = until.saturating_sub(chain.index);
    let mut keys = Vec::with_capacity(count as usize);
    let mut key = chain.key.clone();
    for n in chain.index..until {
        keys.push((n, key.message_key()));
        key = key.next();
    }
    (
        keys,
        Chain {
            key,
            index: chain.index.max(until),
        },
    )
}

/// Refuses a skip of more than `MAX_SKIP_PER_CHAIN` keys from `from` to `until`.
fn check_skip(from: u32, until: u32) -> Result<(), DecryptError> {
    let skip = u64::from(until).saturating_sub(u64::from(from));
    if skip > u64::from(MAX_SKIP_PER_CHAIN) {
        return Err(DecryptError::TooFarAhead {
            skip,
            max: MAX_SKIP_PER_CHAIN,
        });
    }
    Ok(())
}

/// KDF_RK on `DH(own, remote)`, reported to the sink.
fn root_step<S: TraceSink>(
    root_key: &RootKey,
    own: &OwnRatchetKey,
    remote: &PublicKey,
    sink: &mut S,
) -> Result<(RootKey, ChainKey), KeyError> {
    let dh_output = diffie_hellman(&own.secret, remote)?;
    let (next_root, chain_key) = kdf_rk(root_key, &dh_output);
    sink.root_step(RootStep {
        own_ratchet_key: own.public.as_bytes(),
        remote_ratchet_key: remote.as_bytes(),
        dh_output: &dh_output,
        previous_root_key: root_key,
        root_key: &next_root,
        chain_key: &chain_key,
    });
    Ok((next_root, chain_key))
}

impl RatchetSession {
    /// Alice, the initiator: `shared_secret` (SK) and `associated_data` come
    /// from the handshake, `remote_ratchet_key` is Bob's signed prekey, his
    /// first ratchet key. Draws Alice's first ratchet key pair from `rng` and
    /// takes the first sending step. Refuses a low-order `remote_ratchet_key`.
    pub fn new_initiator<R: CryptoRng + ?Sized>(
        rng: &mut R,
        shared_secret: &[u8; 32],
        associated_data: &[u8],
        remote_ratchet_key: &PublicKey,
    ) -> Result<Self, KeyError> {
        Self::initiator_with(
            rng,
            shared_secret,
            associated_data,
            remote_ratchet_key,
            &mut NoTrace,
        )
    }

    /// [`Self::new_initiator`], also returning the initial root step. For
    /// test vectors and conformance tests only.
    pub fn new_initiator_traced<R: CryptoRng + ?Sized>(
        rng: &mut R,
        shared_secret: &[u8; 32],
        associated_data: &[u8],
        remote_ratchet_key: &PublicKey,
    ) -> Result<(Self, RootStepTrace), KeyError> {
        let mut trace = RootStepTrace::default();
        let session = Self::initiator_with(
            rng,
            shared_secret,
            associated_data,
            remote_ratchet_key,
            &mut trace,
        )?;
        Ok((session, trace))
    }

    fn initiator_with<R: CryptoRng + ?Sized, S: TraceSink>(
        rng: &mut R,
        shared_secret: &[u8; 32],
        associated_data: &[u8],
        remote_ratchet_key: &PublicKey,
        sink: &mut S,
    ) -> Result<Self, KeyError> {
        let own_ratchet = OwnRatchetKey::generate(rng);
        let initial_root = RootKey(Secret32::new(shared_secret));
        let (root_key, sending_key) =
            root_step(&initial_root, &own_ratchet, remote_ratchet_key, sink)?;
        Ok(Self {
            associated_data: associated_data.to_vec(),
            root_key,
            own_ratchet,
            remote_ratchet_key: Some(*remote_ratchet_key),
            sending: Some(Chain {
                key: sending_key,
                index: 0,
            }),
            receiving: None,
            previous_sending_length: 0,
            skipped: SkippedKeys::default(),
        })
    }

    /// Bob, the responder: `shared_secret` (SK) and `associated_data` come
    /// from the handshake; his signed-prekey key pair is his first ratchet
    /// key pair. He can encrypt once he has decrypted Alice's first message.
    pub fn new_responder(
        shared_secret: &[u8; 32],
        associated_data: &[u8],
        own_ratchet_key: StaticSecret,
    ) -> Self {
        Self {
            associated_data: associated_data.to_vec(),
            root_key: RootKey(Secret32::new(shared_secret)),
            own_ratchet: OwnRatchetKey::new(own_ratchet_key),
            remote_ratchet_key: None,
            sending: None,
            receiving: None,
            previous_sending_length: 0,
            skipped: SkippedKeys::default(),
        }
    }

    /// The session's associated data (the handshake's AD), bound into every
    /// message's AEAD.
    pub fn associated_data(&self) -> &[u8] {
        &self.associated_data
    }

    /// Our current ratchet public key (the one our next message carries).
    pub fn own_ratchet_key(&self) -> &PublicKey {
        &self.own_ratchet.public
    }

    /// Number of skipped message keys currently stored.
    pub fn skipped_key_count(&self) -> usize {
        self.skipped.len()
    }

    /// Encrypts `plaintext` into `RatchetMessage` bytes (SPEC.md §5.4).
    ///
    /// Sending draws no randomness (the DH ratchet step happens on receive);
    /// `rng` is taken so that both directions have the same shape and a
    /// future sending-side step does not change the API.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        _rng: &mut R,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, EncryptError> {
        self.encrypt_with(plaintext, &mut NoTrace)
    }

    /// [`Self::encrypt`], also returning every intermediate value. For test
    /// vectors and conformance tests only.
    pub fn encrypt_traced<R: CryptoRng + ?Sized>(
        &mut self,
        _rng: &mut R,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, MessageTrace), EncryptError> {
        let mut trace = MessageTrace::default();
        let message = self.encrypt_with(plaintext, &mut trace)?;
        Ok((message, trace))
    }

    fn encrypt_with<S: TraceSink>(
        &mut self,
        plaintext: &[u8],
        sink: &mut S,
    ) -> Result<Vec<u8>, EncryptError> {
        let chain = self.sending.as_mut().ok_or(EncryptError::NoSendingChain)?;
        // N = 0xFFFFFFFF is never sent, so the receiver's counter N + 1 fits.
        if chain.index == u32::MAX {
            return Err(EncryptError::ChainExhausted);
        }
        let header = RatchetHeader {
            ratchet_key: self.own_ratchet.public.to_bytes(),
            previous_chain_length: self.previous_sending_length,
            message_number: chain.index,
        }
        .encode();
        let message_key = chain.key.message_key();
        let secrets = message_key.expand();
        let ad = message_associated_data(&self.associated_data, RATCHET_MESSAGE_VERSION, &header);
        let sealed = aead_seal(&secrets.aead_key, &secrets.nonce, &ad, plaintext);
        sink.message(MessageStep {
            header: &header,
            chain_key: Some(&chain.key),
            message_key: &message_key,
            secrets: &secrets,
            associated_data: &ad,
            sealed: &sealed,
        });
        chain.key = chain.key.next();
        chain.index += 1;
        Ok(encode_message(&header, &sealed))
    }

    /// Decrypts `RatchetMessage` bytes. Takes a DH ratchet step (drawing a
    /// new ratchet key pair from `rng`) when the header carries a new peer
    /// ratchet key. On any error the session is left unchanged.
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        message: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        self.decrypt_with(rng, message, &[RATCHET_MESSAGE_VERSION], &mut NoTrace)
    }

    /// [`Self::decrypt`], also returning every intermediate value. For test
    /// vectors and conformance tests only.
    pub fn decrypt_traced<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        message: &[u8],
    ) -> Result<(Vec<u8>, MessageTrace), DecryptError> {
        let mut trace = MessageTrace::default();
        let plaintext = self.decrypt_with(rng, message, &[RATCHET_MESSAGE_VERSION], &mut trace)?;
        Ok((plaintext, trace))
    }

    /// Decrypts with `accepted` as the version bytes [`RatchetMessage`] parsing
    /// lets through (only `RATCHET_MESSAGE_VERSION` outside this module's tests).
    fn decrypt_with<R: CryptoRng + ?Sized, S: TraceSink>(
        &mut self,
        rng: &mut R,
        message: &[u8],
        accepted: &[u8],
        sink: &mut S,
    ) -> Result<Vec<u8>, DecryptError> {
        let parsed = RatchetMessage::parse_accepting(message, accepted)?;
        let header = parsed.header;
        let ad =
            message_associated_data(&self.associated_data, parsed.version, parsed.header_bytes);

        if let Some(message_key) = self.skipped.get(&header.ratchet_key, header.message_number) {
            let plaintext = open(
                parsed.header_bytes,
                None,
                message_key,
                &ad,
                parsed.sealed,
                sink,
            )?;
            self.skipped
                .remove(&header.ratchet_key, header.message_number);
            return Ok(plaintext);
        }

        let plan = self.plan_receive(rng, &header, sink)?;
        let plaintext = open(
            parsed.header_bytes,
            Some(&plan.chain_key),
            &plan.message_key,
            &ad,
            parsed.sealed,
            sink,
        )?;
        self.commit(plan);
        Ok(plaintext)
    }

    /// Stages the chain steps (and the DH ratchet step, if the peer's ratchet
    /// key is new) that produce the key of `header`'s message. Checks every
    /// bound before deriving any key; mutates nothing.
    fn plan_receive<R: CryptoRng + ?Sized, S: TraceSink>(
        &self,
        rng: &mut R,
        header: &RatchetHeader,
        sink: &mut S,
    ) -> Result<ReceivePlan, DecryptError> {
        let n = header.message_number;
        if n == u32::MAX {
            return Err(DecryptError::MessageNumberOutOfRange);
        }
        let is_current = self
            .remote_ratchet_key
            .is_some_and(|key| key.as_bytes() == &header.ratchet_key);

        if is_current {
            let chain = self
                .receiving
                .as_ref()
                .ok_or(DecryptError::NoReceivingChain)?;
            if n < chain.index {
                return Err(DecryptError::Duplicate { message_number: n });
            }
            check_skip(chain.index, n)?;
            let (skipped_new, at_n) = skip_keys(chain, n);
            return Ok(finish_plan(None, None, skipped_new, at_n));
        }

        // A chain we have left: its remaining keys are all in the store.
        if self.skipped.has_chain(&header.ratchet_key) {
            return Err(DecryptError::Duplicate { message_number: n });
        }

        // A new peer ratchet key: close the current receiving chain up to PN,
        // then take the DH ratchet step.
        let received = self.receiving.as_ref().map_or(0, |chain| chain.index);
        check_skip(received, header.previous_chain_length)?;
        check_skip(0, n)?;

        let skipped_old = match (&self.receiving, &self.remote_ratchet_key) {
            (Some(chain), Some(remote)) => {
                let (keys, _) = skip_keys(chain, header.previous_chain_length);
                Some(SkippedRun {
                    ratchet_key: remote.to_bytes(),
                    keys,
                })
            }
            _ => None,
        };

        let remote = PublicKey::from(header.ratchet_key);
        let (root_after_receive, receiving_key) =
            root_step(&self.root_key, &self.own_ratchet, &remote, sink)?;
        let own_ratchet = OwnRatchetKey::generate(rng);
        let (root_key, sending_key) = root_step(&root_after_receive, &own_ratchet, &remote, sink)?;
        let step = StagedStep {
            root_key,
            own_ratchet,
            remote_ratchet_key: remote,
            sending: Chain {
                key: sending_key,
                index: 0,
            },
            previous_sending_length: self.sending.as_ref().map_or(0, |chain| chain.index),
        };
        let new_chain = Chain {
            key: receiving_key,
            index: 0,
        };
        let (skipped_new, at_n) = skip_keys(&new_chain, n);
        Ok(finish_plan(skipped_old, Some(step), skipped_new, at_n))
    }

    /// Applies a plan whose message authenticated.
    fn commit(&mut self, plan: ReceivePlan) {
        let ReceivePlan {
            skipped_old,
            step,
            skipped_new,
            receiving,
            ..
        } = plan;
        if let Some(run) = skipped_old {
            self.skipped.insert(run.ratchet_key, run.keys);
        }
        if let Some(step) = step {
            self.root_key = step.root_key;
            self.own_ratchet = step.own_ratchet;
            self.remote_ratchet_key = Some(step.remote_ratchet_key);
            self.sending = Some(step.sending);
            self.previous_sending_length = step.previous_sending_length;
        }
        if let Some(remote) = self.remote_ratchet_key {
            self.skipped.insert(remote.to_bytes(), skipped_new);
        }
        self.skipped.enforce_cap();
        self.receiving = Some(receiving);
    }
}

/// Derives message N's key from the chain positioned at N and the chain after it.
fn finish_plan(
    skipped_old: Option<SkippedRun>,
    step: Option<StagedStep>,
    skipped_new: Vec<(u32, MessageKey)>,
    at_n: Chain,
) -> ReceivePlan {
    let message_key = at_n.key.message_key();
    let receiving = Chain {
        key: at_n.key.next(),
        index: at_n.index.saturating_add(1),
    };
    ReceivePlan {
        skipped_old,
        step,
        skipped_new,
        receiving,
        chain_key: at_n.key,
        message_key,
    }
}

/// Opens the AEAD of one message with `message_key`.
fn open<S: TraceSink>(
    header: &[u8; RATCHET_HEADER_LEN],
    chain_key: Option<&ChainKey>,
    message_key: &MessageKey,
    ad: &[u8],
    sealed: &[u8],
    sink: &mut S,
) -> Result<Vec<u8>, DecryptError> {
    let secrets = message_key.expand();
    let plaintext = aead_open(&secrets.aead_key, &secrets.nonce, ad, sealed)
        .map_err(|_| DecryptError::AuthenticationFailed)?;
    sink.message(MessageStep {
        header,
        chain_key,
        message_key,
        secrets: &secrets,
        associated_data: ad,
        sealed,
    });
    Ok(plaintext)
}

impl fmt::Debug for RatchetSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatchetSession")
            .field(
                "own_ratchet_key",
                &hex_prefix(self.own_ratchet.public.as_bytes()),
            )
            .field(
                "remote_ratchet_key",
                &self
                    .remote_ratchet_key
                    .map(|key| hex_prefix(key.as_bytes())),
            )
            .field("sent", &self.sending.as_ref().map(|chain| chain.index))
            .field(
                "received",
                &self.receiving.as_ref().map(|chain| chain.index),
            )
            .field("previous_sending_length", &self.previous_sending_length)
            .field("skipped_keys", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The version byte is inside the AEAD's associated data (SPEC.md §5.4):
    /// even a parser that accepted another version (a future one) could not
    /// pass a message off under it, because the tag no longer verifies.
    #[test]
    fn version_byte_is_authenticated() {
        let mut rng = rand::rng();
        let bob_key = StaticSecret::random_from_rng(&mut rng);
        let bob_public = PublicKey::from(&bob_key);
        let secret = [7u8; 32];
        let ad = [9u8; 64];
        let mut alice = RatchetSession::new_initiator(&mut rng, &secret, &ad, &bob_public).unwrap();
        let mut bob = RatchetSession::new_responder(&secret, &ad, bob_key);
        let accepted = [RATCHET_MESSAGE_VERSION, 0x02];

        let mut flipped = alice.encrypt(&mut rng, b"first").unwrap();
        flipped[0] = 0x02;
        let before = bob.to_bytes();
        assert_eq!(
            bob.decrypt_with(&mut rng, &flipped, &accepted, &mut NoTrace),
            Err(DecryptError::AuthenticationFailed)
        );
        assert_eq!(bob.to_bytes(), before);
        // The normal parser refuses the byte before any key is touched.
        assert_eq!(
            bob.decrypt(&mut rng, &flipped),
            Err(DecryptError::UnsupportedVersion { version: 0x02 })
        );
        // The same bytes with the real version byte decrypt with either parser.
        flipped[0] = RATCHET_MESSAGE_VERSION;
        assert_eq!(
            bob.decrypt_with(&mut rng, &flipped, &accepted, &mut NoTrace)
                .unwrap(),
            b"first"
        );
    }
}

//! A 1:1 session with one remote device (SPEC.md §4.3): the handshake, the
//! Double Ratchet, and the wire form of session messages.
//!
//! Until the initiator has decrypted a first reply, every message it sends is
//! a *prekey message*: it repeats the handshake header so the responder can
//! build the session from whichever message arrives first. After that,
//! messages are plain ratchet messages.
//!
//! ```text
//! SessionMessage = type (1 byte) ‖ body
//!   type 0x01: body = RatchetMessage                         (SPEC.md §5)
//!   type 0x02: body = PreKeyMessage, a protobuf message:
//!     uint32 version = 1; bytes identity_key = 2; bytes base_key = 3;
//!     uint32 signed_prekey_id = 4; optional uint32 one_time_prekey_id = 5;
//!     optional uint32 kem_prekey_id = 6; bytes kem_ciphertext = 7;
//!     bytes message = 8  (a RatchetMessage)
//! ```
//! This module does not own key agreement ([`crate::handshake`]) or message
//! keys ([`crate::ratchet`]).

use std::fmt;

use prost::Message;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::handshake::{self, HandshakeError, HandshakeHeader, HandshakeMode};
use crate::identity::{IdentityKey, IdentityKeyPair};
use crate::labels::{KEY_LEN, STATE_VERSION};
use crate::prekeys::{LocalPreKeys, PreKeyBundle};
use crate::ratchet::{DecryptError, EncryptError, RatchetSession, RootStepTrace, StateError};

/// Type byte of a plain ratchet message.
pub const MESSAGE_TYPE_RATCHET: u8 = 0x01;
/// Type byte of a prekey message.
pub const MESSAGE_TYPE_PREKEY: u8 = 0x02;
/// Version carried inside prekey messages.
pub const PREKEY_MESSAGE_VERSION: u32 = 1;

/// Why a session operation failed. A failed decrypt leaves the session as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The message is empty, has an unknown type byte, or its fields are malformed.
    #[error("malformed session message: {0}")]
    Malformed(&'static str),
    /// The prekey message has a version this build does not speak.
    #[error("prekey message version {0} is not supported")]
    UnsupportedVersion(u32),
    /// The handshake failed (bad bundle, unknown or used prekey, bad KEM ciphertext).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The ratchet refused the message (tampered, replayed, too far ahead …).
    #[error("decryption failed: {0}")]
    Decrypt(#[from] DecryptError),
    /// The ratchet cannot encrypt now (its sending chain is exhausted).
    #[error("encryption failed: {0}")]
    Encrypt(#[from] EncryptError),
    /// A prekey message for a different handshake than this session's: the
    /// peer started a new session; build it with [`Session::accept`].
    #[error("this prekey message starts a new session; accept it as one")]
    NewSessionRequired,
    /// The persisted session could not be read.
    #[error("persisted session is invalid: {0}")]
    State(String),
}

impl From<StateError> for SessionError {
    fn from(error: StateError) -> Self {
        SessionError::State(error.to_string())
    }
}

/// What kind of message some bytes are, read without decrypting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// A plain ratchet message for an existing session.
    Ratchet,
    /// A prekey message from this identity with this base key.
    PreKey {
        /// The sender's claimed identity (authenticated only once it decrypts).
        identity: Box<IdentityKey>,
        /// The handshake's base key, which identifies the session.
        base_key: [u8; KEY_LEN],
    },
}

/// How the initiator's handshake seeded its ratchet, for test vectors only:
/// `SK` and `AD` (SPEC.md §4.2) and the first `KDF_RK` (§5.2), whose previous
/// root key is `SK`. Secrets are zeroized on drop; `Debug` prints none.
pub struct SessionTrace {
    /// SK, the handshake's shared secret.
    pub shared_secret: Zeroizing<[u8; KEY_LEN]>,
    /// AD = IK_A ‖ IK_B.
    pub associated_data: Vec<u8>,
    /// The initiator's first root step: `KDF_RK(SK, X25519(DHs, SPK_B))`.
    pub initial_root_step: RootStepTrace,
}

impl fmt::Debug for SessionTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTrace").finish_non_exhaustive()
    }
}

/// A 1:1 session with one remote device.
pub struct Session {
    ratchet: RatchetSession,
    remote_identity: IdentityKey,
    base_key: [u8; KEY_LEN],
    mode: HandshakeMode,
    /// The header to repeat while no reply has been decrypted (initiator only).
    pending: Option<HandshakeHeader>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("remote_identity", &self.remote_identity)
            .field("mode", &self.mode)
            .field("pending_prekey", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session with the device that published `bundle` (the
    /// initiator's side). Fails if any signature in the bundle is bad.
    pub fn initiate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        bundle: &PreKeyBundle,
    ) -> Result<Self, SessionError> {
        Self::initiate_traced(rng, identity, bundle).map(|(session, _)| session)
    }

    /// [`Session::initiate`], also returning how the handshake fed the
    /// ratchet (SPEC.md §4.2 → §5.2). For test vectors and conformance only.
    pub fn initiate_traced<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        bundle: &PreKeyBundle,
    ) -> Result<(Self, SessionTrace), SessionError> {
        let (output, header) = handshake::initiate(rng, identity, bundle)?;
        let remote_ratchet_key = x25519_dalek::PublicKey::from(bundle.signed_prekey.public_key);
        let (ratchet, initial_root_step) = RatchetSession::new_initiator_traced(
            rng,
            &output.shared_secret,
            &output.associated_data,
            &remote_ratchet_key,
        )
        .map_err(HandshakeError::from)?;
        let trace = SessionTrace {
            shared_secret: output.shared_secret.clone(),
            associated_data: output.associated_data.clone(),
            initial_root_step,
        };
        let session = Self {
            ratchet,
            remote_identity: bundle.identity,
            base_key: header.base_key,
            mode: output.mode,
            pending: Some(header),
        };
        Ok((session, trace))
    }

    /// Builds the responder's session from a prekey message and returns it with
    /// the first plaintext. The one-time prekey used is removed from `prekeys`
    /// only when the message decrypts, so a replay of it is refused later.
    pub fn accept<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        prekeys: &mut LocalPreKeys,
        message: &[u8],
    ) -> Result<(Self, Vec<u8>), SessionError> {
        let (header, inner) = match split_type(message)? {
            (MESSAGE_TYPE_PREKEY, body) => decode_prekey_message(body)?,
            _ => return Err(SessionError::Malformed("expected a prekey message")),
        };
        let (output, own_ratchet_key) = handshake::respond(identity, prekeys, &header)?;
        let mut ratchet = RatchetSession::new_responder(
            &output.shared_secret,
            &output.associated_data,
            own_ratchet_key,
        );
        let plaintext = ratchet.decrypt(rng, &inner)?;
        if let Some(id) = header.one_time_prekey_id {
            prekeys.remove_one_time(id);
        }
        let session = Self {
            ratchet,
            remote_identity: header.identity,
            base_key: header.base_key,
            mode: output.mode,
            pending: None,
        };
        Ok((session, plaintext))
    }

    /// Reads the type of `message` and, for a prekey message, who claims to send it.
    pub fn peek(message: &[u8]) -> Result<MessageKind, SessionError> {
        match split_type(message)? {
            (MESSAGE_TYPE_RATCHET, _) => Ok(MessageKind::Ratchet),
            (_, body) => {
                let (header, _) = decode_prekey_message(body)?;
                Ok(MessageKind::PreKey {
                    identity: Box::new(header.identity),
                    base_key: header.base_key,
                })
            }
        }
    }

    /// Encrypts `plaintext` as the next message of this session.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        let inner = self.ratchet.encrypt(rng, plaintext)?;
        Ok(match &self.pending {
            None => {
                let mut out = Vec::with_capacity(inner.len() + 1);
                out.push(MESSAGE_TYPE_RATCHET);
                out.extend_from_slice(&inner);
                out
            }
            Some(header) => encode_prekey_message(header, inner),
        })
    }

    /// Decrypts a message of this session. On any error the session is unchanged.
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        message: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        let plaintext = match split_type(message)? {
            (MESSAGE_TYPE_RATCHET, body) => self.ratchet.decrypt(rng, body)?,
            (_, body) => {
                let (header, inner) = decode_prekey_message(body)?;
                let same_session = header.identity == self.remote_identity
                    && bool::from(subtle::ConstantTimeEq::ct_eq(
                        &header.base_key[..],
                        &self.base_key[..],
                    ));
                if !same_session || self.pending.is_some() {
                    return Err(SessionError::NewSessionRequired);
                }
                self.ratchet.decrypt(rng, &inner)?
            }
        };
        // A decrypted reply proves the responder has the session.
        self.pending = None;
        Ok(plaintext)
    }

    /// The remote device's identity.
    pub fn remote_identity(&self) -> &IdentityKey {
        &self.remote_identity
    }

    /// Classical or hybrid.
    pub fn mode(&self) -> HandshakeMode {
        self.mode
    }

    /// The handshake's base key (EK_A), which names this session.
    pub fn base_key(&self) -> &[u8; KEY_LEN] {
        &self.base_key
    }

    /// Whether outgoing messages still carry the handshake (no reply decrypted yet).
    pub fn awaiting_reply(&self) -> bool {
        self.pending.is_some()
    }

    /// Serialises to the versioned `SessionState` message (SPEC.md §9).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let pending = self.pending.as_ref();
        let state = SessionState {
            version: STATE_VERSION,
            ratchet: self.ratchet.to_bytes().to_vec(),
            remote_identity: self.remote_identity.to_bytes().to_vec(),
            base_key: self.base_key.to_vec(),
            hybrid: self.mode == HandshakeMode::Hybrid,
            pending_signed_prekey_id: pending.map(|h| h.signed_prekey_id),
            pending_one_time_prekey_id: pending.and_then(|h| h.one_time_prekey_id),
            pending_kem_prekey_id: pending.and_then(|h| h.kem.as_ref().map(|k| k.0)),
            pending_kem_ciphertext: pending
                .and_then(|h| h.kem.as_ref().map(|k| k.1.clone()))
                .unwrap_or_default(),
            local_identity: pending
                .map(|h| h.identity.to_bytes().to_vec())
                .unwrap_or_default(),
        };
        Zeroizing::new(state.encode_to_vec())
    }

    /// Restores a session from [`Session::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SessionError> {
        let state = SessionState::decode(bytes)
            .map_err(|_| SessionError::State("not a SessionState message".into()))?;
        if state.version != STATE_VERSION {
            return Err(SessionError::State(format!(
                "unsupported version {}",
                state.version
            )));
        }
        let ratchet = RatchetSession::from_bytes(&state.ratchet)?;
        let remote_identity = IdentityKey::from_bytes(&state.remote_identity)
            .map_err(|e| SessionError::State(format!("remote identity: {e}")))?;
        let base_key: [u8; KEY_LEN] = state
            .base_key
            .as_slice()
            .try_into()
            .map_err(|_| SessionError::State("base key length".into()))?;
        let pending = match state.pending_signed_prekey_id {
            None => None,
            Some(signed_prekey_id) => Some(HandshakeHeader {
                identity: IdentityKey::from_bytes(&state.local_identity)
                    .map_err(|e| SessionError::State(format!("local identity: {e}")))?,
                base_key,
                signed_prekey_id,
                one_time_prekey_id: state.pending_one_time_prekey_id,
                kem: state
                    .pending_kem_prekey_id
                    .map(|id| (id, state.pending_kem_ciphertext.clone())),
            }),
        };
        Ok(Self {
            ratchet,
            remote_identity,
            base_key,
            mode: if state.hybrid {
                HandshakeMode::Hybrid
            } else {
                HandshakeMode::Classical
            },
            pending,
        })
    }
}

fn split_type(message: &[u8]) -> Result<(u8, &[u8]), SessionError> {
    match message.split_first() {
        Some((&kind @ (MESSAGE_TYPE_RATCHET | MESSAGE_TYPE_PREKEY), body)) => Ok((kind, body)),
        Some(_) => Err(SessionError::Malformed("unknown message type byte")),
        None => Err(SessionError::Malformed("empty message")),
    }
}

fn encode_prekey_message(header: &HandshakeHeader, inner: Vec<u8>) -> Vec<u8> {
    let message = PreKeyMessage {
        version: PREKEY_MESSAGE_VERSION,
        identity_key: header.identity.to_bytes().to_vec(),
        base_key: header.base_key.to_vec(),
        signed_prekey_id: header.signed_prekey_id,
        one_time_prekey_id: header.one_time_prekey_id,
        kem_prekey_id: header.kem.as_ref().map(|k| k.0),
        kem_ciphertext: header.kem.as_ref().map(|k| k.1.clone()).unwrap_or_default(),
        message: inner,
    };
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    out.push(MESSAGE_TYPE_PREKEY);
    message.encode(&mut out).unwrap_or_default();
    out
}

fn decode_prekey_message(body: &[u8]) -> Result<(HandshakeHeader, Vec<u8>), SessionError> {
    let message = PreKeyMessage::decode(body)
        .map_err(|_| SessionError::Malformed("prekey message is not valid protobuf"))?;
    if message.version != PREKEY_MESSAGE_VERSION {
        return Err(SessionError::UnsupportedVersion(message.version));
    }
    let identity = IdentityKey::from_bytes(&message.identity_key)
        .map_err(|e| SessionError::Handshake(HandshakeError::InvalidKey(e)))?;
    let base_key: [u8; KEY_LEN] = message
        .base_key
        .as_slice()
        .try_into()
        .map_err(|_| SessionError::Malformed("base key must be 32 bytes"))?;
    let kem = match (message.kem_prekey_id, message.kem_ciphertext.is_empty()) {
        (Some(id), false) => Some((id, message.kem_ciphertext)),
        (None, true) => None,
        _ => return Err(HandshakeError::InvalidKemCiphertext.into()),
    };
    let header = HandshakeHeader {
        identity,
        base_key,
        signed_prekey_id: message.signed_prekey_id,
        one_time_prekey_id: message.one_time_prekey_id,
        kem,
    };
    Ok((header, message.message))
}

/// Wire form of a prekey message (after the 0x02 type byte).
#[derive(Clone, PartialEq, prost::Message)]
struct PreKeyMessage {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    identity_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    base_key: Vec<u8>,
    #[prost(uint32, tag = "4")]
    signed_prekey_id: u32,
    #[prost(uint32, optional, tag = "5")]
    one_time_prekey_id: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    kem_prekey_id: Option<u32>,
    #[prost(bytes = "vec", tag = "7")]
    kem_ciphertext: Vec<u8>,
    #[prost(bytes = "vec", tag = "8")]
    message: Vec<u8>,
}

/// Persisted form of a session (SPEC.md §9).
#[derive(Clone, PartialEq, prost::Message)]
struct SessionState {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    ratchet: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    remote_identity: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    base_key: Vec<u8>,
    #[prost(bool, tag = "5")]
    hybrid: bool,
    #[prost(uint32, optional, tag = "6")]
    pending_signed_prekey_id: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pending_one_time_prekey_id: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pending_kem_prekey_id: Option<u32>,
    #[prost(bytes = "vec", tag = "9")]
    pending_kem_ciphertext: Vec<u8>,
    #[prost(bytes = "vec", tag = "10")]
    local_identity: Vec<u8>,
}

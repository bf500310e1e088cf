//! The X3DH key agreement, hybrid with ML-KEM-768 as in PQXDH (SPEC.md §4).
//!
//! ```text
//! DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)
//! DH4 = DH(EK_A, OPK_B)   (only with a one-time prekey)
//! SS  = ML-KEM-768.Encaps(PQPK_B)   (only in hybrid mode)
//! SK  = HKDF-SHA256(salt = 0x00×32, ikm = 0xFF×32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] [‖ SS],
//!                   info = X3DH_INFO | PQXDH_INFO) → 32 bytes
//! AD  = IK_A ‖ IK_B   (Ed25519 encodings, 64 bytes)
//! ```
//! This module computes the shared secret on both sides. It does not own the
//! ratchet or the wire form of the initial message (see [`crate::session`]),
//! and it never removes a one-time prekey: the session does that once the
//! first message has decrypted.

use ml_kem::{B32, Decapsulate};
use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::dh::diffie_hellman;
use crate::identity::{IdentityKey, IdentityKeyPair, KeyError};
use crate::kdf::hkdf_sha256;
use crate::labels::{KEY_LEN, PQXDH_INFO, X3DH_INFO};
use crate::prekeys::{KEM_CIPHERTEXT_LEN, LocalPreKeys, PreKeyBundle};

/// Which key agreement produced a session; the initial message carries it
/// implicitly (a KEM ciphertext is present exactly in hybrid mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeMode {
    /// X3DH only: the responder published no KEM prekey.
    Classical,
    /// X3DH + ML-KEM-768 (PQXDH).
    Hybrid,
}

/// Why a handshake could not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A key in the bundle or message is malformed, of low order, or a signature
    /// does not verify: do not talk to this peer with these keys.
    #[error("invalid key material: {0}")]
    InvalidKey(#[from] KeyError),
    /// The initial message names a signed prekey this device does not have
    /// (rotated away long ago, or never ours).
    #[error("unknown signed prekey {0}")]
    UnknownSignedPreKey(u32),
    /// The initial message names a one-time prekey this device does not have:
    /// already used (a replay) or never ours.
    #[error("unknown or already used one-time prekey {0}")]
    UnknownOneTimePreKey(u32),
    /// The initial message names a KEM prekey this device does not have.
    #[error("unknown KEM prekey {0}")]
    UnknownKemPreKey(u32),
    /// A KEM prekey id was given without a ciphertext, or the reverse, or the
    /// ciphertext has the wrong length.
    #[error("KEM ciphertext missing or malformed")]
    InvalidKemCiphertext,
    /// The responder's signed prekey advertises KEM prekeys (its signature
    /// covers `kem_flag = 0x01`, SPEC.md §4.1), but the bundle carries no KEM
    /// prekey (the initiator's side: someone stripped it, a downgrade
    /// attempt) or the initial message is classical (the responder's side).
    /// Only a hybrid handshake is accepted with such a device.
    #[error("the peer advertises ML-KEM prekeys: only a hybrid handshake is accepted")]
    HybridRequired,
}

/// Every intermediate value of one handshake side, for test vectors and
/// conformance tests. Zeroized on drop.
#[derive(Clone, Default)]
pub struct HandshakeTrace {
    /// DH1 = DH(IK_A, SPK_B).
    pub dh1: Zeroizing<Vec<u8>>,
    /// DH2 = DH(EK_A, IK_B).
    pub dh2: Zeroizing<Vec<u8>>,
    /// DH3 = DH(EK_A, SPK_B).
    pub dh3: Zeroizing<Vec<u8>>,
    /// DH4 = DH(EK_A, OPK_B), empty without a one-time prekey.
    pub dh4: Zeroizing<Vec<u8>>,
    /// The ML-KEM-768 shared secret, empty in classical mode.
    pub kem_shared_secret: Zeroizing<Vec<u8>>,
}

/// What the initiator sends so the responder can repeat the agreement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeHeader {
    /// The initiator's identity.
    pub identity: IdentityKey,
    /// The initiator's ephemeral X25519 public key (EK_A, the "base key").
    pub base_key: [u8; KEY_LEN],
    /// Which signed prekey of the responder was used.
    pub signed_prekey_id: u32,
    /// Which one-time prekey was used, if any.
    pub one_time_prekey_id: Option<u32>,
    /// Which KEM prekey was used and the KEM ciphertext, in hybrid mode.
    pub kem: Option<(u32, Vec<u8>)>,
}

/// The result of a handshake on either side.
pub struct HandshakeOutput {
    /// SK, the 32-byte shared secret that seeds the ratchet.
    pub shared_secret: Zeroizing<[u8; KEY_LEN]>,
    /// AD = IK_A ‖ IK_B.
    pub associated_data: Vec<u8>,
    /// Classical or hybrid.
    pub mode: HandshakeMode,
    /// Intermediate values (for vectors).
    pub trace: HandshakeTrace,
}

impl std::fmt::Debug for HandshakeOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeOutput")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The initiator's side: verifies the bundle (signatures, FIPS 203 key check,
/// and [`HandshakeError::HybridRequired`] for a bundle stripped of the KEM
/// prekey its signed prekey advertises), draws EK_A (32 random bytes) and,
/// in hybrid mode, the 32-byte ML-KEM encapsulation randomness `m`, in that
/// order. Hybrid mode is used exactly when the bundle has a KEM prekey.
pub fn initiate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    identity: &IdentityKeyPair,
    bundle: &PreKeyBundle,
) -> Result<(HandshakeOutput, HandshakeHeader), HandshakeError> {
    bundle.verify()?;
    let mut ephemeral_bytes = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill_bytes(ephemeral_bytes.as_mut());
    let ephemeral = StaticSecret::from(*ephemeral_bytes);
    let base_key = PublicKey::from(&ephemeral).to_bytes();
    let signed_prekey = PublicKey::from(bundle.signed_prekey.public_key);

    let mut trace = HandshakeTrace {
        dh1: Zeroizing::new(identity.diffie_hellman(&signed_prekey)?.to_vec()),
        dh2: Zeroizing::new(diffie_hellman(&ephemeral, bundle.identity.x25519())?.to_vec()),
        dh3: Zeroizing::new(diffie_hellman(&ephemeral, &signed_prekey)?.to_vec()),
        ..HandshakeTrace::default()
    };
    if let Some(one_time) = &bundle.one_time_prekey {
        let public = PublicKey::from(one_time.public_key);
        trace.dh4 = Zeroizing::new(diffie_hellman(&ephemeral, &public)?.to_vec());
    }
    let mut kem = None;
    if let Some(kem_prekey) = &bundle.kem_prekey {
        let encapsulation_key = kem_prekey.encapsulation_key()?;
        let mut m = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(m.as_mut());
        let (ciphertext, shared) = encapsulation_key.encapsulate_deterministic(&B32::from(*m));
        trace.kem_shared_secret = Zeroizing::new(shared.to_vec());
        kem = Some((kem_prekey.id, ciphertext.to_vec()));
    }
    let header = HandshakeHeader {
        identity: *identity.public(),
        base_key,
        signed_prekey_id: bundle.signed_prekey.id,
        one_time_prekey_id: bundle.one_time_prekey.map(|k| k.id),
        kem,
    };
    let output = finish(trace, identity.public(), &bundle.identity);
    Ok((output, header))
}

/// The responder's side: repeats the agreement from the initiator's header
/// and this device's prekeys. Refuses a classical header naming a signed
/// prekey that advertises KEM prekeys ([`HandshakeError::HybridRequired`]).
/// Does not remove the one-time prekey.
pub fn respond(
    identity: &IdentityKeyPair,
    prekeys: &LocalPreKeys,
    header: &HandshakeHeader,
) -> Result<(HandshakeOutput, StaticSecret), HandshakeError> {
    let signed = prekeys
        .signed(header.signed_prekey_id)
        .ok_or(HandshakeError::UnknownSignedPreKey(header.signed_prekey_id))?;
    if signed.publishes_kem_prekeys() && header.kem.is_none() {
        return Err(HandshakeError::HybridRequired);
    }
    let base_key = PublicKey::from(header.base_key);
    let mut trace = HandshakeTrace {
        dh1: Zeroizing::new(diffie_hellman(signed.secret(), header.identity.x25519())?.to_vec()),
        dh2: Zeroizing::new(identity.diffie_hellman(&base_key)?.to_vec()),
        dh3: Zeroizing::new(diffie_hellman(signed.secret(), &base_key)?.to_vec()),
        ..HandshakeTrace::default()
    };
    if let Some(id) = header.one_time_prekey_id {
        let one_time = prekeys
            .one_time(id)
            .ok_or(HandshakeError::UnknownOneTimePreKey(id))?;
        trace.dh4 = Zeroizing::new(diffie_hellman(one_time.secret(), &base_key)?.to_vec());
    }
    if let Some((id, ciphertext)) = &header.kem {
        let kem = prekeys
            .kem(*id)
            .ok_or(HandshakeError::UnknownKemPreKey(*id))?;
        if ciphertext.len() != KEM_CIPHERTEXT_LEN {
            return Err(HandshakeError::InvalidKemCiphertext);
        }
        let shared = kem
            .decapsulation_key()
            .decapsulate_slice(ciphertext)
            .map_err(|_| HandshakeError::InvalidKemCiphertext)?;
        trace.kem_shared_secret = Zeroizing::new(shared.to_vec());
    }
    let output = finish(trace, &header.identity, identity.public());
    Ok((output, signed.secret().clone()))
}

fn finish(
    trace: HandshakeTrace,
    initiator: &IdentityKey,
    responder: &IdentityKey,
) -> HandshakeOutput {
    let mode = if trace.kem_shared_secret.is_empty() {
        HandshakeMode::Classical
    } else {
        HandshakeMode::Hybrid
    };
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * 5 + 32));
    ikm.extend_from_slice(&[0xFF; 32]);
    for part in [
        &trace.dh1,
        &trace.dh2,
        &trace.dh3,
        &trace.dh4,
        &trace.kem_shared_secret,
    ] {
        ikm.extend_from_slice(part);
    }
    let info = match mode {
        HandshakeMode::Classical => X3DH_INFO,
        HandshakeMode::Hybrid => PQXDH_INFO,
    };
    let shared_secret = hkdf_sha256::<KEY_LEN>(&[0u8; 32], &ikm, info);
    let mut associated_data = Vec::with_capacity(64);
    associated_data.extend_from_slice(&initiator.to_bytes());
    associated_data.extend_from_slice(&responder.to_bytes());
    HandshakeOutput {
        shared_secret,
        associated_data,
        mode,
        trace,
    }
}

//! Prekeys (SPEC.md §4.1): the keys a device publishes so others can start a
//! session with it while it is offline.
//!
//! - a signed prekey: X25519, signed by the identity over
//!   `SIGNED_PREKEY_CONTEXT ‖ id (u32 BE) ‖ public key ‖ kem_flag`, where
//!   `kem_flag` (one byte) says whether the device publishes KEM prekeys, so
//!   a server that strips the KEM prekey from a bundle is detected (§4.1);
//! - one-time prekeys: X25519, unsigned, each used by at most one handshake;
//! - a signed ML-KEM-768 prekey for the post-quantum hybrid, signed over
//!   `KEM_PREKEY_CONTEXT ‖ id (u32 BE) ‖ encapsulation key`. KEM prekeys are
//!   reused until rotated, like the signed prekey.
//!
//! [`LocalPreKeys`] is a device's private collection; [`PreKeyBundle`] is what
//! the server hands to an initiator. This module does not run the handshake.

use std::collections::BTreeMap;
use std::fmt;

use ml_kem::{DecapsulationKey, EncapsulationKey, MlKem768, Seed, TryKeyInit};
use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::handshake::HandshakeError;
use crate::identity::{IdentityKey, IdentityKeyPair, KeyError, hex_prefix};
use crate::labels::{
    KEM_PREKEY_CONTEXT, KEY_LEN, SIGNATURE_LEN, SIGNED_PREKEY_CONTEXT, STATE_VERSION,
};

/// Length of an ML-KEM-768 encapsulation (public) key.
pub const KEM_PUBLIC_KEY_LEN: usize = 1184;
/// Length of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// Length of the seed an ML-KEM-768 decapsulation key is stored as.
pub const KEM_SEED_LEN: usize = 64;

/// `kem_flag` of a signed prekey whose device publishes KEM prekeys (SPEC.md §4.1).
pub const KEM_FLAG_PUBLISHES: u8 = 0x01;
/// `kem_flag` of a signed prekey whose device publishes no KEM prekey.
pub const KEM_FLAG_CLASSICAL: u8 = 0x00;

/// `SIGNED_PREKEY_CONTEXT ‖ id ‖ public ‖ kem_flag`, what the identity signs.
fn signed_prekey_message(id: u32, public: &[u8; KEY_LEN], publishes_kem: bool) -> Vec<u8> {
    let mut message = signed_message(SIGNED_PREKEY_CONTEXT, id, public);
    message.push(if publishes_kem {
        KEM_FLAG_PUBLISHES
    } else {
        KEM_FLAG_CLASSICAL
    });
    message
}

fn signed_message(context: &[u8], id: u32, public: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(context.len() + 4 + public.len());
    message.extend_from_slice(context);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(public);
    message
}

/// A signed X25519 prekey with its secret. Zeroized on drop.
#[derive(Clone)]
pub struct SignedPreKey {
    id: u32,
    secret: StaticSecret,
    publishes_kem: bool,
    public: SignedPreKeyPublic,
}

/// The public part of a signed prekey, as published.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedPreKeyPublic {
    /// Identifier chosen by the owner.
    pub id: u32,
    /// X25519 public key.
    pub public_key: [u8; KEY_LEN],
    /// Ed25519 signature by the identity over
    /// `SIGNED_PREKEY_CONTEXT ‖ id ‖ public_key ‖ kem_flag` (SPEC.md §4.1).
    /// The flag is not sent: a verifier learns it from which value verifies.
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedPreKey {
    /// Draws a new signed prekey (32 random bytes) and signs it with
    /// `identity`, advertising that this device publishes KEM prekeys
    /// (`kem_flag = 0x01`): initiators then refuse any bundle of this device
    /// without a KEM prekey, and this device refuses classical handshakes
    /// naming this prekey. The device MUST keep a KEM prekey published.
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        id: u32,
    ) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_secret(identity, id, StaticSecret::from(*bytes), true)
    }

    /// Like [`SignedPreKey::generate`], for a device that publishes no KEM
    /// prekey (`kem_flag = 0x00`): handshakes with it are classical.
    pub fn generate_classical<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        id: u32,
    ) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_secret(identity, id, StaticSecret::from(*bytes), false)
    }

    fn from_secret(
        identity: &IdentityKeyPair,
        id: u32,
        secret: StaticSecret,
        publishes_kem: bool,
    ) -> Self {
        let public_key = PublicKey::from(&secret).to_bytes();
        let signature = identity.sign(&signed_prekey_message(id, &public_key, publishes_kem));
        Self {
            id,
            secret,
            publishes_kem,
            public: SignedPreKeyPublic {
                id,
                public_key,
                signature,
            },
        }
    }

    /// The identifier.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// What is published.
    pub fn public(&self) -> &SignedPreKeyPublic {
        &self.public
    }

    /// Whether the signature advertises that this device publishes KEM prekeys.
    pub fn publishes_kem_prekeys(&self) -> bool {
        self.publishes_kem
    }

    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }
}

impl SignedPreKeyPublic {
    /// Checks the identity's signature with either `kem_flag`; a bad
    /// signature is [`KeyError::BadSignature`].
    pub fn verify(&self, identity: &IdentityKey) -> Result<(), KeyError> {
        self.verify_kem_flag(identity).map(|_| ())
    }

    /// Checks the identity's signature and returns the `kem_flag` it covers:
    /// `true` when the device advertises KEM prekeys (SPEC.md §4.1). Tries
    /// `0x01` first; a signature valid under neither flag is
    /// [`KeyError::BadSignature`].
    pub fn verify_kem_flag(&self, identity: &IdentityKey) -> Result<bool, KeyError> {
        for publishes_kem in [true, false] {
            let message = signed_prekey_message(self.id, &self.public_key, publishes_kem);
            if identity.verify(&message, &self.signature).is_ok() {
                return Ok(publishes_kem);
            }
        }
        Err(KeyError::BadSignature)
    }
}

impl fmt::Debug for SignedPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPreKey")
            .field("id", &self.id)
            .field("publishes_kem_prekeys", &self.publishes_kem)
            .field("public", &hex_prefix(&self.public.public_key))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SignedPreKeyPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPreKeyPublic")
            .field("id", &self.id)
            .field("public_key", &hex_prefix(&self.public_key))
            .finish_non_exhaustive()
    }
}

/// A one-time X25519 prekey with its secret. Zeroized on drop.
#[derive(Clone)]
pub struct OneTimePreKey {
    id: u32,
    secret: StaticSecret,
    public: OneTimePreKeyPublic,
}

/// The public part of a one-time prekey, as published.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OneTimePreKeyPublic {
    /// Identifier chosen by the owner.
    pub id: u32,
    /// X25519 public key.
    pub public_key: [u8; KEY_LEN],
}

impl OneTimePreKey {
    /// Draws a new one-time prekey (32 random bytes).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, id: u32) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(bytes.as_mut());
        let secret = StaticSecret::from(*bytes);
        let public_key = PublicKey::from(&secret).to_bytes();
        Self {
            id,
            secret,
            public: OneTimePreKeyPublic { id, public_key },
        }
    }

    /// The identifier.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// What is published.
    pub fn public(&self) -> &OneTimePreKeyPublic {
        &self.public
    }

    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }
}

impl fmt::Debug for OneTimePreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimePreKey")
            .field("id", &self.id)
            .field("public", &hex_prefix(&self.public.public_key))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for OneTimePreKeyPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OneTimePreKeyPublic({}, {})",
            self.id,
            hex_prefix(&self.public_key)
        )
    }
}

/// A signed ML-KEM-768 prekey, kept as its 64-byte seed. Zeroized on drop.
pub struct KemPreKey {
    id: u32,
    seed: Zeroizing<[u8; KEM_SEED_LEN]>,
    decapsulation_key: DecapsulationKey<MlKem768>,
    public: KemPreKeyPublic,
}

/// The public part of a signed ML-KEM-768 prekey, as published.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPreKeyPublic {
    /// Identifier chosen by the owner.
    pub id: u32,
    /// ML-KEM-768 encapsulation key (1184 bytes).
    pub public_key: Vec<u8>,
    /// Ed25519 signature by the identity over `KEM_PREKEY_CONTEXT ‖ id ‖ public_key`.
    pub signature: [u8; SIGNATURE_LEN],
}

impl KemPreKey {
    /// Draws a new KEM prekey (a 64-byte seed, FIPS 203 `ML-KEM.KeyGen_internal(d, z)`)
    /// and signs its encapsulation key with `identity`.
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &IdentityKeyPair,
        id: u32,
    ) -> Self {
        let mut seed = Zeroizing::new([0u8; KEM_SEED_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(identity, id, &seed)
    }

    fn from_seed(identity: &IdentityKeyPair, id: u32, seed: &[u8; KEM_SEED_LEN]) -> Self {
        let decapsulation_key = DecapsulationKey::<MlKem768>::from_seed(Seed::from(*seed));
        let public_key = kem_public_bytes(decapsulation_key.encapsulation_key());
        let signature = identity.sign(&signed_message(KEM_PREKEY_CONTEXT, id, &public_key));
        Self {
            id,
            seed: Zeroizing::new(*seed),
            decapsulation_key,
            public: KemPreKeyPublic {
                id,
                public_key,
                signature,
            },
        }
    }

    /// The identifier.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// What is published.
    pub fn public(&self) -> &KemPreKeyPublic {
        &self.public
    }

    pub(crate) fn decapsulation_key(&self) -> &DecapsulationKey<MlKem768> {
        &self.decapsulation_key
    }
}

impl Clone for KemPreKey {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            seed: self.seed.clone(),
            decapsulation_key: DecapsulationKey::<MlKem768>::from_seed(Seed::from(*self.seed)),
            public: self.public.clone(),
        }
    }
}

pub(crate) fn kem_public_bytes(key: &EncapsulationKey<MlKem768>) -> Vec<u8> {
    use ml_kem::KeyExport;
    key.to_bytes().to_vec()
}

impl KemPreKeyPublic {
    /// Checks the identity's signature, then the key itself: 1184 bytes and
    /// the FIPS 203 §7.2 encapsulation-key check (every 12-bit coefficient
    /// of `ek[0..1152]` below q = 3329), refused as [`KeyError::InvalidPublicKey`].
    pub fn verify(&self, identity: &IdentityKey) -> Result<(), KeyError> {
        identity.verify(
            &signed_message(KEM_PREKEY_CONTEXT, self.id, &self.public_key),
            &self.signature,
        )?;
        self.encapsulation_key().map(|_| ())
    }

    pub(crate) fn encapsulation_key(&self) -> Result<EncapsulationKey<MlKem768>, KeyError> {
        if self.public_key.len() != KEM_PUBLIC_KEY_LEN {
            return Err(KeyError::InvalidLength {
                expected: KEM_PUBLIC_KEY_LEN,
                actual: self.public_key.len(),
            });
        }
        EncapsulationKey::<MlKem768>::new_from_slice(&self.public_key)
            .map_err(|_| KeyError::InvalidPublicKey)
    }
}

impl fmt::Debug for KemPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemPreKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for KemPreKeyPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemPreKeyPublic")
            .field("id", &self.id)
            .field("public_key", &hex_prefix(&self.public_key))
            .finish_non_exhaustive()
    }
}

/// What an initiator needs to start a session with one device (fetched from the server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The responder's identity.
    pub identity: IdentityKey,
    /// The responder's current signed prekey.
    pub signed_prekey: SignedPreKeyPublic,
    /// A one-time prekey, when the server still had one.
    pub one_time_prekey: Option<OneTimePreKeyPublic>,
    /// A signed ML-KEM-768 prekey, when the responder published one (hybrid mode).
    pub kem_prekey: Option<KemPreKeyPublic>,
}

impl PreKeyBundle {
    /// Checks every signature in the bundle against its identity, the KEM
    /// key (FIPS 203 check), and that a device whose signed prekey advertises
    /// KEM prekeys did send one: a bundle stripped of it is
    /// [`HandshakeError::HybridRequired`] (SPEC.md §4.1, a downgrade attempt).
    pub fn verify(&self) -> Result<(), HandshakeError> {
        let publishes_kem = self.signed_prekey.verify_kem_flag(&self.identity)?;
        match &self.kem_prekey {
            Some(kem) => kem.verify(&self.identity)?,
            None if publishes_kem => return Err(HandshakeError::HybridRequired),
            None => {}
        }
        Ok(())
    }
}

/// Errors decoding persisted prekeys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreKeyStateError {
    /// The bytes are not a valid protobuf message of the expected type.
    #[error("persisted prekeys are not a valid protobuf message: {0}")]
    Malformed(String),
    /// The state was written by an unknown format version.
    #[error("persisted prekeys have format version {found}, this build reads {expected}")]
    UnsupportedVersion {
        /// Version in the bytes.
        found: u32,
        /// Version this build understands.
        expected: u32,
    },
    /// A field has the wrong length.
    #[error("persisted prekey field {field} has the wrong length")]
    InvalidField {
        /// Name of the field.
        field: &'static str,
    },
}

/// A device's private prekeys: what the responder side of a handshake reads.
///
/// One-time prekeys are removed by [`LocalPreKeys::remove_one_time`] once a
/// handshake that used them has succeeded, so a replayed initial message
/// naming a used one-time prekey is refused.
#[derive(Clone, Default)]
pub struct LocalPreKeys {
    signed: BTreeMap<u32, SignedPreKey>,
    one_time: BTreeMap<u32, OneTimePreKey>,
    kem: BTreeMap<u32, KemPreKey>,
    next_one_time_id: u32,
}

impl fmt::Debug for LocalPreKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalPreKeys")
            .field("signed", &self.signed.keys().collect::<Vec<_>>())
            .field("one_time", &self.one_time.len())
            .field("kem", &self.kem.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl LocalPreKeys {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a signed prekey (older ones stay until removed, for in-flight handshakes).
    pub fn add_signed(&mut self, key: SignedPreKey) {
        self.signed.insert(key.id, key);
    }

    /// Keeps a one-time prekey made elsewhere (most callers use
    /// [`LocalPreKeys::generate_one_time`]).
    pub fn add_one_time(&mut self, key: OneTimePreKey) {
        self.next_one_time_id = self.next_one_time_id.max(key.id.wrapping_add(1));
        self.one_time.insert(key.id, key);
    }

    /// Keeps a KEM prekey.
    pub fn add_kem(&mut self, key: KemPreKey) {
        self.kem.insert(key.id, key);
    }

    /// Draws `count` new one-time prekeys with fresh ids and returns their public parts to publish.
    pub fn generate_one_time<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        count: u32,
    ) -> Vec<OneTimePreKeyPublic> {
        (0..count)
            .map(|_| {
                let id = self.next_one_time_id;
                self.next_one_time_id = self.next_one_time_id.wrapping_add(1);
                let key = OneTimePreKey::generate(rng, id);
                let public = key.public;
                self.one_time.insert(id, key);
                public
            })
            .collect()
    }

    /// Removes a signed prekey (after rotation, once in-flight handshakes had their time).
    pub fn remove_signed(&mut self, id: u32) -> bool {
        self.signed.remove(&id).is_some()
    }

    /// Removes a KEM prekey.
    pub fn remove_kem(&mut self, id: u32) -> bool {
        self.kem.remove(&id).is_some()
    }

    /// Removes a one-time prekey; returns whether it was there.
    pub fn remove_one_time(&mut self, id: u32) -> bool {
        self.one_time.remove(&id).is_some()
    }

    /// Number of unused one-time prekeys.
    pub fn one_time_count(&self) -> usize {
        self.one_time.len()
    }

    /// A signed prekey by id.
    pub fn signed(&self, id: u32) -> Option<&SignedPreKey> {
        self.signed.get(&id)
    }

    /// A one-time prekey by id.
    pub fn one_time(&self, id: u32) -> Option<&OneTimePreKey> {
        self.one_time.get(&id)
    }

    /// A KEM prekey by id.
    pub fn kem(&self, id: u32) -> Option<&KemPreKey> {
        self.kem.get(&id)
    }

    /// The newest signed prekey (highest id), to publish.
    pub fn latest_signed(&self) -> Option<&SignedPreKey> {
        self.signed.values().next_back()
    }

    /// The newest KEM prekey (highest id), to publish.
    pub fn latest_kem(&self) -> Option<&KemPreKey> {
        self.kem.values().next_back()
    }

    /// Serialises to the versioned `LocalPreKeysState` message (SPEC.md §9).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        use prost::Message;
        let state = state::LocalPreKeysState {
            version: STATE_VERSION,
            signed: self
                .signed
                .values()
                .map(|k| state::StoredSignedPreKey {
                    id: k.id,
                    secret: k.secret.to_bytes().to_vec(),
                    signature: k.public.signature.to_vec(),
                    publishes_kem_prekeys: k.publishes_kem,
                })
                .collect(),
            one_time: self
                .one_time
                .values()
                .map(|k| state::StoredOneTimePreKey {
                    id: k.id,
                    secret: k.secret.to_bytes().to_vec(),
                })
                .collect(),
            kem: self
                .kem
                .values()
                .map(|k| state::StoredKemPreKey {
                    id: k.id,
                    seed: k.seed.to_vec(),
                    signature: k.public.signature.to_vec(),
                })
                .collect(),
            next_one_time_id: self.next_one_time_id,
        };
        let bytes = Zeroizing::new(state.encode_to_vec());
        drop(Zeroizing::new(state));
        bytes
    }

    /// Restores from [`LocalPreKeys::to_bytes`]. Signatures are recomputed from
    /// `identity` (deterministic) and must match what was stored.
    pub fn from_bytes(identity: &IdentityKeyPair, bytes: &[u8]) -> Result<Self, PreKeyStateError> {
        use prost::Message;
        let state = Zeroizing::new(
            state::LocalPreKeysState::decode(bytes)
                .map_err(|e| PreKeyStateError::Malformed(e.to_string()))?,
        );
        if state.version != STATE_VERSION {
            return Err(PreKeyStateError::UnsupportedVersion {
                found: state.version,
                expected: STATE_VERSION,
            });
        }
        let key32 = |bytes: &[u8], field| -> Result<Zeroizing<[u8; 32]>, PreKeyStateError> {
            <[u8; 32]>::try_from(bytes)
                .map(Zeroizing::new)
                .map_err(|_| PreKeyStateError::InvalidField { field })
        };
        let mut out = Self {
            next_one_time_id: state.next_one_time_id,
            ..Self::default()
        };
        for stored in &state.signed {
            let secret = key32(&stored.secret, "signed.secret")?;
            let key = SignedPreKey::from_secret(
                identity,
                stored.id,
                StaticSecret::from(*secret),
                stored.publishes_kem_prekeys,
            );
            if key.public.signature.as_slice() != stored.signature.as_slice() {
                return Err(PreKeyStateError::InvalidField {
                    field: "signed.signature",
                });
            }
            out.signed.insert(stored.id, key);
        }
        for stored in &state.one_time {
            let secret = StaticSecret::from(*key32(&stored.secret, "one_time.secret")?);
            let public_key = PublicKey::from(&secret).to_bytes();
            out.one_time.insert(
                stored.id,
                OneTimePreKey {
                    id: stored.id,
                    secret,
                    public: OneTimePreKeyPublic {
                        id: stored.id,
                        public_key,
                    },
                },
            );
        }
        for stored in &state.kem {
            let seed: Zeroizing<[u8; KEM_SEED_LEN]> =
                <[u8; KEM_SEED_LEN]>::try_from(stored.seed.as_slice())
                    .map(Zeroizing::new)
                    .map_err(|_| PreKeyStateError::InvalidField { field: "kem.seed" })?;
            let key = KemPreKey::from_seed(identity, stored.id, &seed);
            if key.public.signature.as_slice() != stored.signature.as_slice() {
                return Err(PreKeyStateError::InvalidField {
                    field: "kem.signature",
                });
            }
            out.kem.insert(stored.id, key);
        }
        Ok(out)
    }
}

/// Persisted form (SPEC.md §9).
mod state {
    use zeroize::{Zeroize, ZeroizeOnDrop};

    #[derive(Clone, PartialEq, prost::Message, Zeroize, ZeroizeOnDrop)]
    pub struct LocalPreKeysState {
        #[prost(uint32, tag = "1")]
        pub version: u32,
        #[prost(message, repeated, tag = "2")]
        pub signed: Vec<StoredSignedPreKey>,
        #[prost(message, repeated, tag = "3")]
        pub one_time: Vec<StoredOneTimePreKey>,
        #[prost(message, repeated, tag = "4")]
        pub kem: Vec<StoredKemPreKey>,
        #[prost(uint32, tag = "5")]
        pub next_one_time_id: u32,
    }

    #[derive(Clone, PartialEq, prost::Message, Zeroize)]
    pub struct StoredSignedPreKey {
        #[prost(uint32, tag = "1")]
        pub id: u32,
        #[prost(bytes = "vec", tag = "2")]
        pub secret: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub signature: Vec<u8>,
        #[prost(bool, tag = "4")]
        pub publishes_kem_prekeys: bool,
    }

    #[derive(Clone, PartialEq, prost::Message, Zeroize)]
    pub struct StoredOneTimePreKey {
        #[prost(uint32, tag = "1")]
        pub id: u32,
        #[prost(bytes = "vec", tag = "2")]
        pub secret: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message, Zeroize)]
    pub struct StoredKemPreKey {
        #[prost(uint32, tag = "1")]
        pub id: u32,
        #[prost(bytes = "vec", tag = "2")]
        pub seed: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub signature: Vec<u8>,
    }
}

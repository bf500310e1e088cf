//! Sealed sender (SPEC.md §19): an envelope whose sender the server cannot
//! read. The sender's identity key and its server-issued certificate
//! ([`certificate`]) travel encrypted to the recipient's identity key, in
//! two layers as in Signal's sealed sender v1:
//!
//! ```text
//! E          = X25519 public key of a fresh ephemeral secret e
//! R, S       = X25519 forms of the recipient's and sender's identity keys (§3)
//! eph        = X25519(e, R)                                   (refused if all-zero)
//! chain_key ‖ key1 ‖ nonce1 = HKDF-SHA256(salt = "", ikm = eph ‖ E ‖ R,
//!                                         info = SEALED_SENDER_EPHEMERAL_INFO, 76 bytes)
//! c1         = ChaCha20-Poly1305(key1, nonce1, ad = 0x01 ‖ E ‖ R, sender identity key (32, Ed25519))
//! stat       = X25519(sender identity secret, R)              (refused if all-zero)
//! key2 ‖ nonce2 = HKDF-SHA256(salt = chain_key, ikm = stat ‖ c1,
//!                             info = SEALED_SENDER_STATIC_INFO, 44 bytes)
//! inner      = content_type (u8) ‖ certificate_len (u16 BE) ‖ certificate ‖ message
//! c2         = ChaCha20-Poly1305(key2, nonce2, ad = 0x01 ‖ E ‖ R ‖ c1, inner)
//! sealed     = 0x01 ‖ E (32) ‖ c1 (48) ‖ c2
//! ```
//!
//! Only the holder of the recipient's identity secret opens layer 1; only
//! the holder of the identity secret named in layer 1 can have produced
//! layer 2, and the certificate inside must name that same identity. The
//! recipient's key is bound into both KDFs and both associated data.
//! Not owned here: whether the identity is the one the recipient's session
//! with that username expects (the client checks), the inner message's
//! own encryption (session or sender key), delivery (server, access keys).

pub mod certificate;

use subtle::ConstantTimeEq as _;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::CryptoRng;
use crate::dh::diffie_hellman;
use crate::identity::{IdentityKey, IdentityKeyPair};
use crate::kdf::{aead_open, aead_seal, hkdf_sha256};
use crate::labels::{
    ACCESS_KEY_INFO, ACCESS_KEY_LEN, KEY_LEN, NONCE_LEN, PROFILE_KEY_LEN,
    SEALED_SENDER_EPHEMERAL_INFO, SEALED_SENDER_STATIC_INFO, SEALED_SENDER_VERSION, TAG_LEN,
};
use certificate::{CertificateError, MAX_CERTIFICATE_LEN, SenderCertificate, ServerPublicKey};

/// Length of layer 1 (the sealed sender identity key).
pub const STATIC_CIPHERTEXT_LEN: usize = KEY_LEN + TAG_LEN;
/// Bytes an envelope adds before layer 2.
pub const HEADER_LEN: usize = 1 + KEY_LEN + STATIC_CIPHERTEXT_LEN;
/// Smallest envelope: header, layer-2 tag, content type and certificate length.
pub const MIN_SEALED_LEN: usize = HEADER_LEN + TAG_LEN + 3;

/// What the inner message is, so the recipient knows how to decrypt it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// A 1:1 `SessionMessage` (ratchet or prekey message, §5, §4.3).
    Session,
    /// A group `SenderKeyMessage` (§6).
    SenderKey,
}

impl ContentType {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Session => 0x01,
            Self::SenderKey => 0x02,
        }
    }

    /// The type of a byte, if known.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x01 => Some(Self::Session),
            0x02 => Some(Self::SenderKey),
            _ => None,
        }
    }
}

/// Why an envelope could not be sealed or opened. The recipient's state is
/// never touched by a refusal: nothing is decrypted past the failing layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealedSenderError {
    /// Shorter than the smallest envelope, another version byte, or an inner
    /// layout that does not add up.
    #[error("not a sealed-sender envelope of version 1")]
    Malformed,
    /// A public key of low order (the shared secret would be all-zero).
    #[error("a key in the envelope is not usable for key agreement")]
    WeakKey,
    /// Not for this recipient, or altered (either layer).
    #[error("the envelope does not open with this identity")]
    AuthenticationFailed,
    /// The inner content type is not one this version knows.
    #[error("unknown sealed content type {0}")]
    UnknownContentType(u8),
    /// The certificate names another identity key than the one that sealed.
    #[error("the sender certificate does not name the identity that sealed the envelope")]
    SenderMismatch,
    /// The certificate was refused (forged, expired, unknown server key).
    #[error("sender certificate refused: {0}")]
    Certificate(#[from] CertificateError),
}

/// An opened envelope: who sent it (by the verified certificate) and the
/// inner message to decrypt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsealed {
    /// The verified sender certificate.
    pub certificate: SenderCertificate,
    /// How to decrypt `message`.
    pub content_type: ContentType,
    /// The inner message, still encrypted by its session or sender key.
    pub message: Vec<u8>,
}

/// Seals `message` from `sender` (whose certificate is `certificate`) to
/// `recipient`, with a fresh ephemeral key.
///
/// # Errors
/// [`SealedSenderError::WeakKey`]; [`SealedSenderError::SenderMismatch`] if
/// `certificate` is not `sender`'s.
pub fn seal(
    rng: &mut impl CryptoRng,
    sender: &IdentityKeyPair,
    certificate: &SenderCertificate,
    recipient: &IdentityKey,
    content_type: ContentType,
    message: &[u8],
) -> Result<Vec<u8>, SealedSenderError> {
    let mut secret = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill_bytes(secret.as_mut());
    seal_with_ephemeral(
        &secret,
        sender,
        certificate,
        recipient,
        content_type,
        message,
    )
}

/// [`seal`] with the ephemeral secret given (test vectors; never reuse one).
///
/// # Errors
/// As [`seal`].
pub fn seal_with_ephemeral(
    ephemeral_secret: &[u8; KEY_LEN],
    sender: &IdentityKeyPair,
    certificate: &SenderCertificate,
    recipient: &IdentityKey,
    content_type: ContentType,
    message: &[u8],
) -> Result<Vec<u8>, SealedSenderError> {
    if !certificate.is_for_identity(sender.public()) {
        return Err(SealedSenderError::SenderMismatch);
    }
    let secret = StaticSecret::from(*ephemeral_secret);
    let ephemeral = PublicKey::from(&secret).to_bytes();
    let r = recipient.x25519().to_bytes();
    let eph =
        diffie_hellman(&secret, recipient.x25519()).map_err(|_| SealedSenderError::WeakKey)?;
    let layer1 = EphemeralKeys::derive(&eph, &ephemeral, &r);
    let c1 = aead_seal(
        &layer1.key,
        &layer1.nonce,
        &header_ad(&ephemeral, &r, &[]),
        &sender.public().to_bytes(),
    );
    let stat = sender
        .diffie_hellman(recipient.x25519())
        .map_err(|_| SealedSenderError::WeakKey)?;
    let (key2, nonce2) = static_keys(&layer1.chain_key, &stat, &c1);
    let cert = certificate.as_bytes();
    let cert_len = u16::try_from(cert.len()).map_err(|_| SealedSenderError::Malformed)?;
    let mut inner = Zeroizing::new(Vec::with_capacity(3 + cert.len() + message.len()));
    inner.push(content_type.to_byte());
    inner.extend_from_slice(&cert_len.to_be_bytes());
    inner.extend_from_slice(cert);
    inner.extend_from_slice(message);
    let c2 = aead_seal(&key2, &nonce2, &header_ad(&ephemeral, &r, &c1), &inner);
    let mut out = Vec::with_capacity(HEADER_LEN + c2.len());
    out.push(SEALED_SENDER_VERSION);
    out.extend_from_slice(&ephemeral);
    out.extend_from_slice(&c1);
    out.extend_from_slice(&c2);
    Ok(out)
}

/// Opens an envelope sealed to `recipient`, verifying the certificate with
/// `trusted` at `now_ms` (Unix ms).
///
/// # Errors
/// [`SealedSenderError`]; the certificate's refusals as
/// [`SealedSenderError::Certificate`].
pub fn open(
    recipient: &IdentityKeyPair,
    trusted: &ServerPublicKey,
    now_ms: u64,
    sealed: &[u8],
) -> Result<Unsealed, SealedSenderError> {
    if sealed.len() < MIN_SEALED_LEN || sealed[0] != SEALED_SENDER_VERSION {
        return Err(SealedSenderError::Malformed);
    }
    let ephemeral: [u8; KEY_LEN] = sealed[1..1 + KEY_LEN]
        .try_into()
        .map_err(|_| SealedSenderError::Malformed)?;
    let c1 = &sealed[1 + KEY_LEN..HEADER_LEN];
    let c2 = &sealed[HEADER_LEN..];
    let r = recipient.public().x25519().to_bytes();
    let eph = recipient
        .diffie_hellman(&PublicKey::from(ephemeral))
        .map_err(|_| SealedSenderError::WeakKey)?;
    let layer1 = EphemeralKeys::derive(&eph, &ephemeral, &r);
    let sender_bytes = aead_open(
        &layer1.key,
        &layer1.nonce,
        &header_ad(&ephemeral, &r, &[]),
        c1,
    )
    .map_err(|_| SealedSenderError::AuthenticationFailed)?;
    let sender = IdentityKey::from_bytes(&sender_bytes)
        .map_err(|_| SealedSenderError::AuthenticationFailed)?;
    let stat = recipient
        .diffie_hellman(sender.x25519())
        .map_err(|_| SealedSenderError::WeakKey)?;
    let (key2, nonce2) = static_keys(&layer1.chain_key, &stat, c1);
    let inner = Zeroizing::new(
        aead_open(&key2, &nonce2, &header_ad(&ephemeral, &r, c1), c2)
            .map_err(|_| SealedSenderError::AuthenticationFailed)?,
    );
    let (type_byte, cert, message) = split_inner(&inner)?;
    let content_type = ContentType::from_byte(type_byte)
        .ok_or(SealedSenderError::UnknownContentType(type_byte))?;
    let certificate = SenderCertificate::parse(cert)?;
    if !bool::from(
        certificate
            .identity_key
            .to_bytes()
            .ct_eq(&sender.to_bytes()),
    ) {
        return Err(SealedSenderError::SenderMismatch);
    }
    certificate.verify(trusted, now_ms)?;
    Ok(Unsealed {
        certificate,
        content_type,
        message: message.to_vec(),
    })
}

/// The unidentified-access key of an account whose profile key is
/// `profile_key` (SPEC.md §19.7): what a sender presents to the server for
/// a sealed send, and what the account registers.
pub fn access_key(profile_key: &[u8; PROFILE_KEY_LEN]) -> [u8; ACCESS_KEY_LEN] {
    *hkdf_sha256::<ACCESS_KEY_LEN>(&[], profile_key, ACCESS_KEY_INFO)
}

fn split_inner(inner: &[u8]) -> Result<(u8, &[u8], &[u8]), SealedSenderError> {
    if inner.len() < 3 {
        return Err(SealedSenderError::Malformed);
    }
    let cert_len = usize::from(u16::from_be_bytes([inner[1], inner[2]]));
    if cert_len > MAX_CERTIFICATE_LEN || inner.len() < 3 + cert_len {
        return Err(SealedSenderError::Malformed);
    }
    let (cert, message) = inner[3..].split_at(cert_len);
    Ok((inner[0], cert, message))
}

struct EphemeralKeys {
    chain_key: Zeroizing<[u8; KEY_LEN]>,
    key: Zeroizing<[u8; KEY_LEN]>,
    nonce: [u8; NONCE_LEN],
}

impl EphemeralKeys {
    fn derive(eph: &[u8; KEY_LEN], ephemeral: &[u8; KEY_LEN], recipient: &[u8; KEY_LEN]) -> Self {
        let mut ikm = Zeroizing::new([0u8; 3 * KEY_LEN]);
        ikm[..KEY_LEN].copy_from_slice(eph);
        ikm[KEY_LEN..2 * KEY_LEN].copy_from_slice(ephemeral);
        ikm[2 * KEY_LEN..].copy_from_slice(recipient);
        let okm = hkdf_sha256::<{ 2 * KEY_LEN + NONCE_LEN }>(
            &[],
            ikm.as_slice(),
            SEALED_SENDER_EPHEMERAL_INFO,
        );
        let mut chain_key = Zeroizing::new([0u8; KEY_LEN]);
        chain_key.copy_from_slice(&okm[..KEY_LEN]);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&okm[KEY_LEN..2 * KEY_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&okm[2 * KEY_LEN..]);
        Self {
            chain_key,
            key,
            nonce,
        }
    }
}

fn static_keys(
    chain_key: &[u8; KEY_LEN],
    stat: &[u8; KEY_LEN],
    c1: &[u8],
) -> (Zeroizing<[u8; KEY_LEN]>, [u8; NONCE_LEN]) {
    let mut ikm = Zeroizing::new(Vec::with_capacity(KEY_LEN + c1.len()));
    ikm.extend_from_slice(stat);
    ikm.extend_from_slice(c1);
    let okm = hkdf_sha256::<{ KEY_LEN + NONCE_LEN }>(chain_key, &ikm, SEALED_SENDER_STATIC_INFO);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&okm[..KEY_LEN]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&okm[KEY_LEN..]);
    (key, nonce)
}

fn header_ad(ephemeral: &[u8; KEY_LEN], recipient: &[u8; KEY_LEN], c1: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(1 + 2 * KEY_LEN + c1.len());
    ad.push(SEALED_SENDER_VERSION);
    ad.extend_from_slice(ephemeral);
    ad.extend_from_slice(recipient);
    ad.extend_from_slice(c1);
    ad
}

#[cfg(test)]
mod tests {
    use super::certificate::ServerSigningKey;
    use super::*;
    use rand::SeedableRng as _;

    struct Fixture {
        rng: rand_chacha::ChaCha20Rng,
        server: ServerSigningKey,
        alice: IdentityKeyPair,
        bob: IdentityKeyPair,
        cert: SenderCertificate,
    }

    const NOW: u64 = 1_800_000_000_000;

    fn fixture() -> Fixture {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(19);
        let server = ServerSigningKey::generate(1, &mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let cert = server
            .issue("alice", 2, alice.public(), NOW + 1000)
            .unwrap();
        Fixture {
            rng,
            server,
            alice,
            bob,
            cert,
        }
    }

    #[test]
    fn opens_to_the_certified_sender_and_message() {
        let mut f = fixture();
        let sealed = seal(
            &mut f.rng,
            &f.alice,
            &f.cert,
            f.bob.public(),
            ContentType::Session,
            b"ratchet bytes",
        )
        .unwrap();
        let opened = open(&f.bob, &f.server.public(), NOW, &sealed).unwrap();
        assert_eq!(opened.certificate.username, "alice");
        assert_eq!(opened.certificate.device_id, 2);
        assert_eq!(opened.content_type, ContentType::Session);
        assert_eq!(opened.message, b"ratchet bytes");
        // Not for Alice herself, nor for anyone else.
        assert_eq!(
            open(&f.alice, &f.server.public(), NOW, &sealed),
            Err(SealedSenderError::AuthenticationFailed)
        );
    }

    #[test]
    fn expired_forged_and_foreign_certificates_are_refused() {
        let mut f = fixture();
        let sealed = seal(
            &mut f.rng,
            &f.alice,
            &f.cert,
            f.bob.public(),
            ContentType::SenderKey,
            b"m",
        )
        .unwrap();
        assert!(matches!(
            open(&f.bob, &f.server.public(), NOW + 1001, &sealed),
            Err(SealedSenderError::Certificate(
                CertificateError::Expired { .. }
            ))
        ));
        let forger = ServerSigningKey::generate(1, &mut f.rng);
        assert_eq!(
            open(&f.bob, &forger.public(), NOW, &sealed),
            Err(SealedSenderError::Certificate(
                CertificateError::BadSignature
            ))
        );
        let other = ServerSigningKey::generate(2, &mut f.rng);
        assert_eq!(
            open(&f.bob, &other.public(), NOW, &sealed),
            Err(SealedSenderError::Certificate(
                CertificateError::UnknownServerKey(1)
            ))
        );
        // A certificate for another identity cannot be used by Alice.
        let mallory = IdentityKeyPair::generate(&mut f.rng);
        let mallory_cert = f.server.issue("bob", 1, mallory.public(), NOW).unwrap();
        assert_eq!(
            seal(
                &mut f.rng,
                &f.alice,
                &mallory_cert,
                f.bob.public(),
                ContentType::Session,
                b"m"
            ),
            Err(SealedSenderError::SenderMismatch)
        );
    }

    #[test]
    fn altered_bytes_and_short_inputs_are_refused() {
        let mut f = fixture();
        let sealed = seal(
            &mut f.rng,
            &f.alice,
            &f.cert,
            f.bob.public(),
            ContentType::Session,
            b"m",
        )
        .unwrap();
        for i in [1, 40, HEADER_LEN + 2, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[i] ^= 1;
            assert!(open(&f.bob, &f.server.public(), NOW, &altered).is_err());
        }
        assert_eq!(
            open(
                &f.bob,
                &f.server.public(),
                NOW,
                &sealed[..MIN_SEALED_LEN - 1]
            ),
            Err(SealedSenderError::Malformed)
        );
        let mut version = sealed.clone();
        version[0] = 2;
        assert_eq!(
            open(&f.bob, &f.server.public(), NOW, &version),
            Err(SealedSenderError::Malformed)
        );
    }

    #[test]
    fn access_keys_depend_on_the_whole_profile_key() {
        let a = access_key(&[1; 32]);
        let mut other = [1; 32];
        other[31] = 2;
        assert_ne!(a, access_key(&other));
        assert_eq!(a, access_key(&[1; 32]));
    }

    #[test]
    fn certificates_round_trip_and_refuse_bad_layouts() {
        let f = fixture();
        let parsed = SenderCertificate::parse(f.cert.as_bytes()).unwrap();
        assert_eq!(parsed, f.cert);
        assert!(parsed.is_for_identity(f.alice.public()));
        assert!(!parsed.is_for_identity(f.bob.public()));
        let bytes = f.cert.as_bytes();
        assert_eq!(
            SenderCertificate::parse(&bytes[..bytes.len() - 1]),
            Err(CertificateError::Malformed)
        );
        assert_eq!(
            f.server.issue("", 1, f.alice.public(), NOW),
            Err(CertificateError::InvalidUsername)
        );
        assert_eq!(
            f.server.issue(&"a".repeat(65), 1, f.alice.public(), NOW),
            Err(CertificateError::InvalidUsername)
        );
        assert!(!format!("{:?}", f.server).contains(&format!("{:?}", *f.server.to_seed())));
    }
}

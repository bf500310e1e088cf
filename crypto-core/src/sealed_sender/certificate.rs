//! Sender certificates (SPEC.md §19.2): the server's signed word that an
//! identity key belongs to an account's device, until an expiry time.
//!
//! ```text
//! certificate = 0x01 ‖ server_key_id (u32 BE) ‖ expires_at_ms (u64 BE)
//!             ‖ device_id (u64 BE) ‖ identity_key (32, Ed25519)
//!             ‖ username_len (u8, 1..=64) ‖ username (UTF-8)
//!             ‖ signature (64)
//! signature   = Ed25519(server key, SENDER_CERTIFICATE_LABEL ‖ every byte before the signature)
//! ```
//!
//! The server signs with an Ed25519 key of its own ([`ServerSigningKey`]),
//! separate from its TLS key; clients know its public half
//! ([`ServerPublicKey`]) and verify with [`SenderCertificate::verify`].
//! Not owned here: when the server issues, how clients fetch the key, the
//! sealed envelope that carries the certificate ([`super`]).

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::CryptoRng;
use crate::identity::{IdentityKey, hex_prefix, parse_ed25519_public, verify_ed25519};
use crate::labels::{
    KEY_LEN, MAX_CERTIFICATE_USERNAME_LEN, SEALED_SENDER_VERSION, SENDER_CERTIFICATE_LABEL,
    SIGNATURE_LEN,
};

/// Bytes of a certificate besides its username.
pub const CERTIFICATE_FIXED_LEN: usize = 1 + 4 + 8 + 8 + KEY_LEN + 1 + SIGNATURE_LEN;
/// Longest certificate.
pub const MAX_CERTIFICATE_LEN: usize = CERTIFICATE_FIXED_LEN + MAX_CERTIFICATE_USERNAME_LEN;

/// Why a sender certificate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// Wrong length or version, an empty, overlong or non-UTF-8 username, or
    /// an identity key that is not a valid Ed25519 point.
    #[error("not a sender certificate of version 1")]
    Malformed,
    /// Signed by a server key this client does not know (fetch the server's
    /// current key, SPEC.md §19.6).
    #[error("the certificate names server key {0}, which is not the trusted one")]
    UnknownServerKey(u32),
    /// The server's signature does not verify: forged or altered.
    #[error("the certificate's server signature does not verify")]
    BadSignature,
    /// Past its expiry time: the sender must renew it.
    #[error("the certificate expired at {expires_at_ms} ms (now {now_ms} ms)")]
    Expired {
        /// The certificate's expiry (Unix ms).
        expires_at_ms: u64,
        /// The verifier's clock (Unix ms).
        now_ms: u64,
    },
    /// The fields cannot be certified (username empty, too long).
    #[error("the username must be 1 to 64 bytes")]
    InvalidUsername,
}

/// What a certificate says.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderCertificate {
    /// Id of the server key that signed it.
    pub server_key_id: u32,
    /// Unix time in ms after which it is refused.
    pub expires_at_ms: u64,
    /// The sender's device.
    pub device_id: u64,
    /// The sender's identity key.
    pub identity_key: IdentityKey,
    /// The sender's account.
    pub username: String,
    bytes: Vec<u8>,
}

impl fmt::Debug for SenderCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderCertificate")
            .field("server_key_id", &self.server_key_id)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("device_id", &self.device_id)
            .field("identity_key", &self.identity_key)
            .field("username", &self.username)
            .finish()
    }
}

impl SenderCertificate {
    /// Parses a certificate without checking its signature or expiry.
    ///
    /// # Errors
    /// [`CertificateError::Malformed`].
    pub fn parse(bytes: &[u8]) -> Result<Self, CertificateError> {
        if bytes.len() < CERTIFICATE_FIXED_LEN + 1
            || bytes.len() > MAX_CERTIFICATE_LEN
            || bytes[0] != SEALED_SENDER_VERSION
        {
            return Err(CertificateError::Malformed);
        }
        let be = |range: std::ops::Range<usize>| {
            bytes[range]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        };
        let server_key_id = u32::try_from(be(1..5)).map_err(|_| CertificateError::Malformed)?;
        let expires_at_ms = be(5..13);
        let device_id = be(13..21);
        let identity_key = IdentityKey::from_bytes(&bytes[21..21 + KEY_LEN])
            .map_err(|_| CertificateError::Malformed)?;
        let name_len = usize::from(bytes[21 + KEY_LEN]);
        if name_len == 0 || bytes.len() != CERTIFICATE_FIXED_LEN + name_len {
            return Err(CertificateError::Malformed);
        }
        let start = 22 + KEY_LEN;
        let username = std::str::from_utf8(&bytes[start..start + name_len])
            .map_err(|_| CertificateError::Malformed)?
            .to_owned();
        Ok(Self {
            server_key_id,
            expires_at_ms,
            device_id,
            identity_key,
            username,
            bytes: bytes.to_vec(),
        })
    }

    /// The encoded certificate, signature included.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks the server's signature with `trusted` and that `now_ms` is not
    /// past the expiry.
    ///
    /// # Errors
    /// [`CertificateError::UnknownServerKey`], [`CertificateError::BadSignature`],
    /// [`CertificateError::Expired`].
    pub fn verify(&self, trusted: &ServerPublicKey, now_ms: u64) -> Result<(), CertificateError> {
        if self.server_key_id != trusted.key_id {
            return Err(CertificateError::UnknownServerKey(self.server_key_id));
        }
        let (body, signature) = self.bytes.split_at(self.bytes.len() - SIGNATURE_LEN);
        verify_ed25519(&trusted.key, &signed_bytes(body), signature)
            .map_err(|_| CertificateError::BadSignature)?;
        if now_ms > self.expires_at_ms {
            return Err(CertificateError::Expired {
                expires_at_ms: self.expires_at_ms,
                now_ms,
            });
        }
        Ok(())
    }

    /// Whether this certificate names `identity` (constant-time).
    pub fn is_for_identity(&self, identity: &IdentityKey) -> bool {
        self.identity_key
            .to_bytes()
            .ct_eq(&identity.to_bytes())
            .into()
    }
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(SENDER_CERTIFICATE_LABEL.len() + body.len());
    signed.extend_from_slice(SENDER_CERTIFICATE_LABEL);
    signed.extend_from_slice(body);
    signed
}

/// The public half of a server's certificate key, with its id.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ServerPublicKey {
    key_id: u32,
    key: VerifyingKey,
}

impl fmt::Debug for ServerPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ServerPublicKey({}, {})",
            self.key_id,
            hex_prefix(&self.key.to_bytes())
        )
    }
}

impl ServerPublicKey {
    /// Parses the 32-byte Ed25519 key published as server key `key_id`.
    ///
    /// # Errors
    /// [`CertificateError::Malformed`] for a key that is not a valid point.
    pub fn from_bytes(key_id: u32, bytes: &[u8]) -> Result<Self, CertificateError> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CertificateError::Malformed)?;
        let key = parse_ed25519_public(&array).ok_or(CertificateError::Malformed)?;
        Ok(Self { key_id, key })
    }

    /// The key's id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte Ed25519 key.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.key.to_bytes()
    }
}

/// The server's certificate signing key. Zeroized on drop, never printed.
pub struct ServerSigningKey {
    key_id: u32,
    signing: SigningKey,
}

impl fmt::Debug for ServerSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSigningKey")
            .field("public", &self.public())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ServerSigningKey {
    /// A fresh key with id `key_id`.
    pub fn generate(key_id: u32, rng: &mut impl CryptoRng) -> Self {
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(key_id, &seed)
    }

    /// The key of a 32-byte Ed25519 seed (as persisted by the server).
    pub fn from_seed(key_id: u32, seed: &[u8; KEY_LEN]) -> Self {
        Self {
            key_id,
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The seed, for persistence. Handle with care.
    pub fn to_seed(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public half clients verify with.
    pub fn public(&self) -> ServerPublicKey {
        ServerPublicKey {
            key_id: self.key_id,
            key: self.signing.verifying_key(),
        }
    }

    /// Issues a certificate for `username`'s device `device_id` with
    /// `identity_key`, valid until `expires_at_ms`.
    ///
    /// # Errors
    /// [`CertificateError::InvalidUsername`] for an empty or overlong name.
    pub fn issue(
        &self,
        username: &str,
        device_id: u64,
        identity_key: &IdentityKey,
        expires_at_ms: u64,
    ) -> Result<SenderCertificate, CertificateError> {
        let name = username.as_bytes();
        let name_len = u8::try_from(name.len()).map_err(|_| CertificateError::InvalidUsername)?;
        if name.is_empty() || name.len() > MAX_CERTIFICATE_USERNAME_LEN {
            return Err(CertificateError::InvalidUsername);
        }
        let mut bytes = Vec::with_capacity(CERTIFICATE_FIXED_LEN + name.len());
        bytes.push(SEALED_SENDER_VERSION);
        bytes.extend_from_slice(&self.key_id.to_be_bytes());
        bytes.extend_from_slice(&expires_at_ms.to_be_bytes());
        bytes.extend_from_slice(&device_id.to_be_bytes());
        bytes.extend_from_slice(&identity_key.to_bytes());
        bytes.push(name_len);
        bytes.extend_from_slice(name);
        let signature = self.signing.sign(&signed_bytes(&bytes)).to_bytes();
        bytes.extend_from_slice(&signature);
        SenderCertificate::parse(&bytes)
    }
}

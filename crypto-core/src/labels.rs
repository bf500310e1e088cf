//! Every protocol label, length and limit in one place (SPEC.md §2).
//!
//! Changing any value here changes the wire format: it needs a new protocol
//! version, a SPEC.md change and regenerated test vectors.

/// Version of every persisted state message (SPEC.md §9). Decoding refuses others.
pub const STATE_VERSION: u32 = 1;

/// Length of X25519 and Ed25519 public keys, and of symmetric keys.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a ChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 12;
/// Length of a ChaCha20-Poly1305 tag.
pub const TAG_LEN: usize = 16;

/// HKDF info for the classical X3DH handshake (SPEC.md §4).
pub const X3DH_INFO: &[u8] = b"Microbot X3DH X25519 SHA-256 v1";
/// HKDF info for the hybrid handshake (X3DH + ML-KEM-768, SPEC.md §4).
pub const PQXDH_INFO: &[u8] = b"Microbot PQXDH X25519 SHA-256 ML-KEM-768 v1";
/// Prefix (context) signed together with every signed prekey's public bytes.
pub const SIGNED_PREKEY_CONTEXT: &[u8] = b"Microbot signed prekey v1";
/// Prefix (context) signed together with every ML-KEM prekey's public bytes.
pub const KEM_PREKEY_CONTEXT: &[u8] = b"Microbot KEM prekey v1";

/// HKDF info for KDF_RK, the root-key step of the Double Ratchet (SPEC.md §5).
pub const RATCHET_ROOT_INFO: &[u8] = b"Microbot Ratchet Root v1";
/// HKDF info expanding a 1:1 message key into AEAD key and nonce (SPEC.md §5).
pub const RATCHET_MESSAGE_INFO: &[u8] = b"Microbot Ratchet Message Keys v1";
/// HMAC input deriving a message key from a chain key.
pub const CHAIN_MESSAGE_KEY_SEED: u8 = 0x01;
/// HMAC input deriving the next chain key from a chain key.
pub const CHAIN_NEXT_KEY_SEED: u8 = 0x02;
/// Largest number of message keys one incoming chain may skip in one step.
pub const MAX_SKIP_PER_CHAIN: u32 = 1000;
/// Largest number of skipped message keys a session stores in total.
pub const MAX_SKIPPED_KEYS_TOTAL: usize = 2000;

/// HKDF info expanding a sender-key message key into AEAD key and nonce (SPEC.md §6).
pub const SENDER_KEY_MESSAGE_INFO: &[u8] = b"Microbot Sender Key Message Keys v1";
/// Largest forward jump a sender-key message may make over the receiver's chain.
pub const MAX_SENDER_KEY_SKIP: u32 = 2000;
/// Most skipped sender-key message keys kept per sender.
pub const MAX_SENDER_KEY_SKIPPED: usize = 2000;

/// HKDF info deriving per-file attachment keys (SPEC.md §7).
pub const ATTACHMENT_INFO: &[u8] = b"Microbot Attachment STREAM v1";
/// Plaintext bytes per attachment segment (the last one may be shorter).
pub const ATTACHMENT_SEGMENT_LEN: usize = 64 * 1024;

/// Safety-number iterations of SHA-512 (SPEC.md §8).
pub const FINGERPRINT_ITERATIONS: u32 = 5200;
/// Version tag prefixed to the fingerprint hash input and QR payloads.
pub const FINGERPRINT_VERSION: u16 = 1;

/// Version byte opening every sender-key message (SPEC.md §6.4).
pub const SENDER_KEY_MESSAGE_VERSION: u8 = 0x01;
/// Version byte opening every encoded sender-key distribution (SPEC.md §6.3).
pub const SENDER_KEY_DISTRIBUTION_VERSION: u8 = 0x01;
/// Longest group id (bytes) a sender key may be bound to; it is length-prefixed by one byte.
pub const MAX_GROUP_ID_LEN: usize = 255;
/// Most sender-key generations (key ids) a `SenderKeyRecord` keeps per sender.
pub const MAX_SENDER_KEY_GENERATIONS: usize = 5;

/// Length of the per-file nonce prefix of an attachment (SPEC.md §7).
pub const ATTACHMENT_NONCE_PREFIX_LEN: usize = 7;

/// Bytes of each party's iterated hash shown as digits (SPEC.md §8).
pub const FINGERPRINT_DISPLAY_BYTES: usize = 30;
/// Bytes of each party's iterated hash carried in the QR payload (SPEC.md §8).
pub const FINGERPRINT_SCANNABLE_LEN: usize = 32;

/// HKDF info deriving the key and nonce of a sealed provisioning message
/// (device linking, SPEC.md §12.14).
pub const PROVISIONING_INFO: &[u8] = b"Microbot Provisioning v1";
/// Version byte opening every sealed provisioning message (SPEC.md §12.14).
pub const PROVISIONING_VERSION: u8 = 0x01;

/// Version byte opening every sealed-sender envelope and sender certificate
/// (SPEC.md §19).
pub const SEALED_SENDER_VERSION: u8 = 0x01;
/// HKDF info of the sealed-sender ephemeral layer: chain key, key and nonce
/// sealing the sender's identity key (SPEC.md §19.3).
pub const SEALED_SENDER_EPHEMERAL_INFO: &[u8] = b"Microbot SealedSender Ephemeral v1";
/// HKDF info of the sealed-sender static layer: key and nonce sealing the
/// certificate and inner message, keyed by the sender's identity (SPEC.md §19.3).
pub const SEALED_SENDER_STATIC_INFO: &[u8] = b"Microbot SealedSender Static v1";
/// Prefix of the bytes a server signs in a sender certificate (SPEC.md §19.2).
pub const SENDER_CERTIFICATE_LABEL: &[u8] = b"Microbot SenderCertificate v1";
/// HKDF info deriving an account's unidentified-access key from its
/// profile key (SPEC.md §19.7).
pub const ACCESS_KEY_INFO: &[u8] = b"Microbot Unidentified Access v1";
/// Length of an unidentified-access key (SPEC.md §19.7).
pub const ACCESS_KEY_LEN: usize = 16;
/// Length of a profile key (SPEC.md §19.7).
pub const PROFILE_KEY_LEN: usize = 32;
/// Longest username a sender certificate carries (bytes, SPEC.md §19.2).
pub const MAX_CERTIFICATE_USERNAME_LEN: usize = 64;
/// Prefix of the bytes an identity signs in a device list (SPEC.md §20).
pub const DEVICE_LIST_LABEL: &[u8] = b"Microbot DeviceList v1";
/// First byte of an encoded device list (SPEC.md §20).
pub const DEVICE_LIST_VERSION: u8 = 0x01;
/// Most devices one device list may name (SPEC.md §20).
pub const MAX_DEVICE_LIST_DEVICES: usize = 100;
/// Shortest and longest username in a device list (bytes, SPEC.md §13.1, §20).
pub const MIN_DEVICE_LIST_USERNAME_LEN: usize = 3;
/// Longest username in a device list (bytes).
pub const MAX_DEVICE_LIST_USERNAME_LEN: usize = 32;

/**
 * Labels, lengths and limits of SPEC.md §2, with the same names.
 * Every label is the ASCII string shown, without a terminating NUL.
 */
import { utf8 } from "./bytes.js";

/** `X3DH_INFO` (§4.2). */
export const X3DH_INFO = utf8("Microbot X3DH X25519 SHA-256 v1");
/** `PQXDH_INFO` (§4.2). */
export const PQXDH_INFO = utf8("Microbot PQXDH X25519 SHA-256 ML-KEM-768 v1");
/** `SIGNED_PREKEY_CONTEXT` (§4.1). */
export const SIGNED_PREKEY_CONTEXT = utf8("Microbot signed prekey v1");
/** `KEM_PREKEY_CONTEXT` (§4.1). */
export const KEM_PREKEY_CONTEXT = utf8("Microbot KEM prekey v1");
/** `RATCHET_ROOT_INFO` (§5.3). */
export const RATCHET_ROOT_INFO = utf8("Microbot Ratchet Root v1");
/** `RATCHET_MESSAGE_INFO` (§5.3). */
export const RATCHET_MESSAGE_INFO = utf8("Microbot Ratchet Message Keys v1");
/** `SENDER_KEY_MESSAGE_INFO` (§6.2). */
export const SENDER_KEY_MESSAGE_INFO = utf8("Microbot Sender Key Message Keys v1");
/** `ATTACHMENT_INFO` (§7.1). */
export const ATTACHMENT_INFO = utf8("Microbot Attachment STREAM v1");

/** X25519 keys, shared secrets, chain and root keys: 32 bytes. */
export const KEY_LEN = 32;
/** Ed25519 signatures: 64 bytes. */
export const SIGNATURE_LEN = 64;
/** AEAD tag (ChaCha20-Poly1305): 16 bytes. */
export const TAG_LEN = 16;
/** AEAD nonce: 12 bytes. */
export const NONCE_LEN = 12;
/** ML-KEM-768 encapsulation key length. */
export const KEM_PUBLIC_KEY_LEN = 1184;
/** ML-KEM-768 ciphertext length. */
export const KEM_CIPHERTEXT_LEN = 1088;
/** ML-KEM-768 decapsulation keys are stored as their 64-byte seed `d ‖ z`. */
export const KEM_SEED_LEN = 64;

/** `MAX_SKIP_PER_CHAIN`: message keys one ratchet chain may skip. */
export const MAX_SKIP_PER_CHAIN = 1000;
/** `MAX_SKIPPED_KEYS_TOTAL`: stored skipped keys per ratchet session. */
export const MAX_SKIPPED_KEYS_TOTAL = 2000;
/** `MAX_SENDER_KEY_SKIP`: sender-key forward jump. */
export const MAX_SENDER_KEY_SKIP = 2000;
/** `MAX_SENDER_KEY_SKIPPED`: stored skipped sender keys per sender. */
export const MAX_SENDER_KEY_SKIPPED = 2000;
/** `ATTACHMENT_SEGMENT_LEN`: plaintext bytes per attachment segment. */
export const ATTACHMENT_SEGMENT_LEN = 65536;
/** `FINGERPRINT_ITERATIONS` (§8). */
export const FINGERPRINT_ITERATIONS = 5200;
/** `STATE_VERSION` of persisted state (§9). */
export const STATE_VERSION = 1;
/** `SENDER_KEY_MESSAGE_VERSION` (§6.4). */
export const SENDER_KEY_MESSAGE_VERSION = 0x01;
/** `SENDER_KEY_DISTRIBUTION_VERSION` (§6.3). */
export const SENDER_KEY_DISTRIBUTION_VERSION = 0x01;
/** `MAX_GROUP_ID_LEN` (§6.1). */
export const MAX_GROUP_ID_LEN = 255;
/** `MAX_SENDER_KEY_GENERATIONS` inbound generations kept per sender (§6.6). */
export const MAX_SENDER_KEY_GENERATIONS = 5;
/** `ATTACHMENT_NONCE_PREFIX_LEN` (§7.1). */
export const ATTACHMENT_NONCE_PREFIX_LEN = 7;
/** `FINGERPRINT_VERSION` (§8). */
export const FINGERPRINT_VERSION = 1;
/** `FINGERPRINT_DISPLAY_BYTES` (§8.1). */
export const FINGERPRINT_DISPLAY_BYTES = 30;
/** `FINGERPRINT_SCANNABLE_LEN` (§8.3). */
export const FINGERPRINT_SCANNABLE_LEN = 32;
/** `RATCHET_MESSAGE_VERSION` (§5.4). */
export const RATCHET_MESSAGE_VERSION = 0x01;
/** `PROVISIONING_INFO` (device linking, §12.14). */
export const PROVISIONING_INFO = utf8("Microbot Provisioning v1");
/** `PROVISIONING_VERSION` (sealed provisioning message, §12.14). */
export const PROVISIONING_VERSION = 0x01;

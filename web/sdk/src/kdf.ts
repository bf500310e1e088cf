/**
 * Key derivation (SPEC.md §2, §5.3, §6.2): HKDF-SHA256, the ratchet's root
 * and chain steps and the message-key expansion to an AEAD key and nonce.
 * Pure functions; every output is a fresh array the caller owns.
 */
import { hkdf as nobleHkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { KEY_LEN, NONCE_LEN, RATCHET_MESSAGE_INFO, RATCHET_ROOT_INFO } from "./labels.js";

/** `CHAIN_MESSAGE_KEY_SEED` (§5.3, §6.2). */
export const CHAIN_MESSAGE_KEY_SEED = Uint8Array.of(0x01);
/** `CHAIN_NEXT_KEY_SEED` (§5.3, §6.2). */
export const CHAIN_NEXT_KEY_SEED = Uint8Array.of(0x02);

/**
 * HKDF-SHA256 (RFC 5869). `salt` undefined or empty is "no salt": the RFC
 * default of 32 zero bytes, which is the same HMAC key.
 */
export function hkdf(
  salt: Uint8Array | undefined,
  ikm: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array {
  return nobleHkdf(sha256, ikm, salt, info, length);
}

/** HMAC-SHA256 (RFC 2104). */
export function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  return hmac(sha256, key, data);
}

/** Output of `KDF_RK`. */
export interface RootStep {
  /** The new root key `RK`. */
  rootKey: Uint8Array;
  /** The new chain key. */
  chainKey: Uint8Array;
}

/** `KDF_RK(rk, dh_out)` (§5.3). */
export function kdfRk(rootKey: Uint8Array, dhOutput: Uint8Array): RootStep {
  const okm = hkdf(rootKey, dhOutput, RATCHET_ROOT_INFO, 2 * KEY_LEN);
  return { rootKey: okm.slice(0, KEY_LEN), chainKey: okm.slice(KEY_LEN) };
}

/** Output of `KDF_CK`. */
export interface ChainStep {
  /** `ck'`, the next chain key. */
  nextChainKey: Uint8Array;
  /** `mk`, the message key of this step. */
  messageKey: Uint8Array;
}

/** `KDF_CK(ck)` (§5.3; the same step drives sender keys, §6.2). */
export function kdfCk(chainKey: Uint8Array): ChainStep {
  return {
    messageKey: hmacSha256(chainKey, CHAIN_MESSAGE_KEY_SEED),
    nextChainKey: hmacSha256(chainKey, CHAIN_NEXT_KEY_SEED),
  };
}

/** An AEAD key and nonce expanded from a message key. */
export interface MessageKeys {
  /** ChaCha20-Poly1305 key, 32 bytes. */
  aeadKey: Uint8Array;
  /** ChaCha20-Poly1305 nonce, 12 bytes. */
  nonce: Uint8Array;
}

/**
 * `MESSAGE_KEYS(mk)` (§5.3): HKDF with no salt and `info` (the ratchet's
 * `RATCHET_MESSAGE_INFO` by default; sender keys pass `SENDER_KEY_MESSAGE_INFO`).
 */
export function messageKeys(messageKey: Uint8Array, info: Uint8Array = RATCHET_MESSAGE_INFO): MessageKeys {
  const okm = hkdf(undefined, messageKey, info, KEY_LEN + NONCE_LEN);
  return { aeadKey: okm.slice(0, KEY_LEN), nonce: okm.slice(KEY_LEN) };
}

/**
 * Sealed sender (SPEC.md §19), mirroring crypto-core `sealed_sender`:
 * server-signed sender certificates and the two-layer envelope whose sender
 * only the recipient learns.
 *
 *   certificate = 0x01 ‖ server_key_id u32 ‖ expires_at_ms u64 ‖ device_id u64 ‖ identity_key (32)
 *               ‖ username_len u8 ‖ username ‖ Ed25519(server, SENDER_CERTIFICATE_LABEL ‖ all before)
 *   eph = X25519(e, R);  chain_key ‖ key1 ‖ nonce1 = HKDF("", eph ‖ E ‖ R, EPHEMERAL_INFO, 76)
 *   c1  = AEAD(key1, nonce1, 0x01 ‖ E ‖ R, sender identity key)
 *   stat = X25519(sender identity, R);  key2 ‖ nonce2 = HKDF(chain_key, stat ‖ c1, STATIC_INFO, 44)
 *   c2  = AEAD(key2, nonce2, 0x01 ‖ E ‖ R ‖ c1, content_type ‖ cert_len u16 ‖ certificate ‖ message)
 *   sealed = 0x01 ‖ E ‖ c1 ‖ c2
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519 } from "@noble/curves/ed25519.js";

import { concat, constantTimeEqual, u32be, utf8, wipe } from "./bytes.js";
import { IdentityKey, IdentityKeyPair, isValidEd25519PublicKey, verifyEd25519Strict, x25519Dh, x25519PublicKey } from "./identity.js";
import { hkdf } from "./kdf.js";
import { KEY_LEN, NONCE_LEN, SIGNATURE_LEN, TAG_LEN } from "./labels.js";

/** `SEALED_SENDER_VERSION` (§19). */
export const SEALED_SENDER_VERSION = 0x01;
/** `SEALED_SENDER_EPHEMERAL_INFO` (§2, §19.3). */
export const SEALED_SENDER_EPHEMERAL_INFO = utf8("Microbot SealedSender Ephemeral v1");
/** `SEALED_SENDER_STATIC_INFO` (§2, §19.3). */
export const SEALED_SENDER_STATIC_INFO = utf8("Microbot SealedSender Static v1");
/** `SENDER_CERTIFICATE_LABEL` (§2, §19.2). */
export const SENDER_CERTIFICATE_LABEL = utf8("Microbot SenderCertificate v1");
/** `ACCESS_KEY_INFO` (§2, §19.7). */
export const ACCESS_KEY_INFO = utf8("Microbot Unidentified Access v1");
/** Bytes of a profile key (§19.7). */
export const PROFILE_KEY_LEN = 32;
/** Bytes of an access key (§19.7). */
export const ACCESS_KEY_LEN = 16;

/**
 * The unidentified-access key of an account whose profile key is
 * `profileKey` (§19.7): what a sealed sender presents to the server.
 * Throws `RangeError` for a profile key that is not 32 bytes.
 */
export function accessKey(profileKey: Uint8Array): Uint8Array {
  if (profileKey.length !== PROFILE_KEY_LEN) {
    throw new RangeError(`a profile key is ${PROFILE_KEY_LEN} bytes`);
  }
  return hkdf(undefined, profileKey, ACCESS_KEY_INFO, ACCESS_KEY_LEN);
}

/** Longest certified username in bytes (§19.2). */
export const MAX_CERTIFICATE_USERNAME_LEN = 64;

const CERTIFICATE_FIXED_LEN = 1 + 4 + 8 + 8 + KEY_LEN + 1 + SIGNATURE_LEN;
const MAX_CERTIFICATE_LEN = CERTIFICATE_FIXED_LEN + MAX_CERTIFICATE_USERNAME_LEN;
const HEADER_LEN = 1 + KEY_LEN + KEY_LEN + TAG_LEN;
/** Smallest envelope: header, layer-2 tag, content type and certificate length. */
export const MIN_SEALED_LEN = HEADER_LEN + TAG_LEN + 3;

/** The refusals of §19.5, named as SPEC names them. */
export type SealedSenderErrorKind =
  | "Malformed"
  | "WeakKey"
  | "AuthenticationFailed"
  | "UnknownContentType"
  | "SenderMismatch"
  | "Expired"
  | "BadSignature"
  | "UnknownServerKey"
  | "InvalidUsername";

/** Why a certificate or envelope was refused; nothing past the failing layer was used. */
export class SealedSenderError extends Error {
  /** The refusal (§19.5). */
  readonly kind: SealedSenderErrorKind;

  /** @param kind the refusal */
  constructor(kind: SealedSenderErrorKind) {
    super(`sealed sender: ${kind}`);
    this.name = "SealedSenderError";
    this.kind = kind;
  }
}

/** 1: a 1:1 `SessionMessage`; 2: a group `SenderKeyMessage`. */
export type ContentType = 1 | 2;

/** A server's certificate key as clients trust it. */
export interface ServerPublicKey {
  /** The key's id (u32). */
  keyId: number;
  /** The 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
}

/** A parsed sender certificate. */
export interface SenderCertificate {
  /** Id of the signing server key. */
  serverKeyId: number;
  /** Expiry, Unix ms. */
  expiresAtMs: bigint;
  /** The sender's device. */
  deviceId: bigint;
  /** The sender's identity key. */
  identityKey: IdentityKey;
  /** The sender's account. */
  username: string;
  /** The encoded certificate, signature included. */
  bytes: Uint8Array;
}

function u64be(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, value);
  return out;
}

/** Issues a certificate with the server key of `seed` (servers and test vectors). */
export function issueCertificate(
  serverSeed: Uint8Array,
  serverKeyId: number,
  username: string,
  deviceId: bigint,
  identityKey: IdentityKey,
  expiresAtMs: bigint,
): SenderCertificate {
  const name = utf8(username);
  if (name.length === 0 || name.length > MAX_CERTIFICATE_USERNAME_LEN) {
    throw new SealedSenderError("InvalidUsername");
  }
  const body = concat(
    Uint8Array.of(SEALED_SENDER_VERSION),
    u32be(serverKeyId),
    u64be(expiresAtMs),
    u64be(deviceId),
    identityKey.toBytes(),
    Uint8Array.of(name.length),
    name,
  );
  const signature = ed25519.sign(concat(SENDER_CERTIFICATE_LABEL, body), serverSeed);
  return parseCertificate(concat(body, signature));
}

/** Parses a certificate without checking signature or expiry (`Malformed`). */
export function parseCertificate(bytes: Uint8Array): SenderCertificate {
  if (bytes.length < CERTIFICATE_FIXED_LEN + 1 || bytes.length > MAX_CERTIFICATE_LEN || bytes[0] !== SEALED_SENDER_VERSION) {
    throw new SealedSenderError("Malformed");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const identity = bytes.slice(21, 21 + KEY_LEN);
  if (!isValidEd25519PublicKey(identity)) {
    throw new SealedSenderError("Malformed");
  }
  const nameLen = bytes[21 + KEY_LEN]!;
  if (nameLen === 0 || bytes.length !== CERTIFICATE_FIXED_LEN + nameLen) {
    throw new SealedSenderError("Malformed");
  }
  let username: string;
  try {
    username = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(22 + KEY_LEN, 22 + KEY_LEN + nameLen));
  } catch {
    throw new SealedSenderError("Malformed");
  }
  return {
    serverKeyId: view.getUint32(1),
    expiresAtMs: view.getBigUint64(5),
    deviceId: view.getBigUint64(13),
    identityKey: IdentityKey.fromBytes(identity),
    username,
    bytes: Uint8Array.from(bytes),
  };
}

/** Checks the server signature with `trusted` and the expiry at `nowMs` (UnknownServerKey, BadSignature, Expired). */
export function verifyCertificate(certificate: SenderCertificate, trusted: ServerPublicKey, nowMs: bigint): void {
  if (certificate.serverKeyId !== trusted.keyId) {
    throw new SealedSenderError("UnknownServerKey");
  }
  const split = certificate.bytes.length - SIGNATURE_LEN;
  const signed = concat(SENDER_CERTIFICATE_LABEL, certificate.bytes.subarray(0, split));
  if (!verifyEd25519Strict(trusted.publicKey, signed, certificate.bytes.subarray(split))) {
    throw new SealedSenderError("BadSignature");
  }
  if (nowMs > certificate.expiresAtMs) {
    throw new SealedSenderError("Expired");
  }
}

function dh(secret: Uint8Array, peer: Uint8Array): Uint8Array {
  try {
    return x25519Dh(secret, peer);
  } catch {
    throw new SealedSenderError("WeakKey");
  }
}

function headerAd(ephemeral: Uint8Array, recipient: Uint8Array, c1: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(SEALED_SENDER_VERSION), ephemeral, recipient, c1);
}

function ephemeralKeys(eph: Uint8Array, ephemeral: Uint8Array, recipient: Uint8Array): { chainKey: Uint8Array; key: Uint8Array; nonce: Uint8Array } {
  const okm = hkdf(undefined, concat(eph, ephemeral, recipient), SEALED_SENDER_EPHEMERAL_INFO, 2 * KEY_LEN + NONCE_LEN);
  const keys = { chainKey: okm.slice(0, KEY_LEN), key: okm.slice(KEY_LEN, 2 * KEY_LEN), nonce: okm.slice(2 * KEY_LEN) };
  wipe(okm);
  return keys;
}

function staticKeys(chainKey: Uint8Array, stat: Uint8Array, c1: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const okm = hkdf(chainKey, concat(stat, c1), SEALED_SENDER_STATIC_INFO, KEY_LEN + NONCE_LEN);
  const keys = { key: okm.slice(0, KEY_LEN), nonce: okm.slice(KEY_LEN) };
  wipe(okm);
  return keys;
}

/** Seals `message` from `sender` (holding `certificate`) to `recipient` with the fresh ephemeral secret `e`. */
export function sealSealedSender(
  ephemeralSecret: Uint8Array,
  sender: IdentityKeyPair,
  certificate: SenderCertificate,
  recipient: IdentityKey,
  contentType: ContentType,
  message: Uint8Array,
): Uint8Array {
  if (!constantTimeEqual(certificate.identityKey.toBytes(), sender.publicKey.toBytes())) {
    throw new SealedSenderError("SenderMismatch");
  }
  const ephemeral = x25519PublicKey(ephemeralSecret);
  const r = recipient.toX25519();
  const eph = dh(ephemeralSecret, r);
  const layer1 = ephemeralKeys(eph, ephemeral, r);
  const c1 = chacha20poly1305(layer1.key, layer1.nonce, headerAd(ephemeral, r, new Uint8Array())).encrypt(sender.publicKey.toBytes());
  const senderSecret = sender.x25519PrivateKey();
  const stat = dh(senderSecret, r);
  const layer2 = staticKeys(layer1.chainKey, stat, c1);
  const certLen = new Uint8Array(2);
  new DataView(certLen.buffer).setUint16(0, certificate.bytes.length);
  const inner = concat(Uint8Array.of(contentType), certLen, certificate.bytes, message);
  const c2 = chacha20poly1305(layer2.key, layer2.nonce, headerAd(ephemeral, r, c1)).encrypt(inner);
  wipe(eph, stat, senderSecret, inner, layer1.chainKey, layer1.key, layer2.key);
  return concat(Uint8Array.of(SEALED_SENDER_VERSION), ephemeral, c1, c2);
}

/** An opened envelope. */
export interface Unsealed {
  /** The verified certificate: the only word on who sent it. */
  certificate: SenderCertificate;
  /** How to decrypt `message`. */
  contentType: ContentType;
  /** The inner message, still encrypted by its session or sender key. */
  message: Uint8Array;
}

/** Opens an envelope sealed to `recipient` and verifies its certificate with `trusted` at `nowMs` (`SealedSenderError`). */
export function openSealedSender(recipient: IdentityKeyPair, trusted: ServerPublicKey, nowMs: bigint, sealed: Uint8Array): Unsealed {
  if (sealed.length < MIN_SEALED_LEN || sealed[0] !== SEALED_SENDER_VERSION) {
    throw new SealedSenderError("Malformed");
  }
  const ephemeral = sealed.slice(1, 1 + KEY_LEN);
  const c1 = sealed.slice(1 + KEY_LEN, HEADER_LEN);
  const c2 = sealed.subarray(HEADER_LEN);
  const r = recipient.publicKey.toX25519();
  const secret = recipient.x25519PrivateKey();
  try {
    const eph = dh(secret, ephemeral);
    const layer1 = ephemeralKeys(eph, ephemeral, r);
    let senderBytes: Uint8Array;
    try {
      senderBytes = chacha20poly1305(layer1.key, layer1.nonce, headerAd(ephemeral, r, new Uint8Array())).decrypt(c1);
    } catch {
      throw new SealedSenderError("AuthenticationFailed");
    }
    if (!isValidEd25519PublicKey(senderBytes)) {
      throw new SealedSenderError("AuthenticationFailed");
    }
    const sender = IdentityKey.fromBytes(senderBytes);
    const stat = dh(secret, sender.toX25519());
    const layer2 = staticKeys(layer1.chainKey, stat, c1);
    let inner: Uint8Array;
    try {
      inner = chacha20poly1305(layer2.key, layer2.nonce, headerAd(ephemeral, r, c1)).decrypt(c2);
    } catch {
      throw new SealedSenderError("AuthenticationFailed");
    } finally {
      wipe(eph, stat, layer1.chainKey, layer1.key, layer2.key);
    }
    if (inner.length < 3) {
      throw new SealedSenderError("Malformed");
    }
    const certLen = (inner[1]! << 8) | inner[2]!;
    if (certLen > MAX_CERTIFICATE_LEN || inner.length < 3 + certLen) {
      throw new SealedSenderError("Malformed");
    }
    const typeByte = inner[0]!;
    if (typeByte !== 1 && typeByte !== 2) {
      throw new SealedSenderError("UnknownContentType");
    }
    const certificate = parseCertificate(inner.subarray(3, 3 + certLen));
    if (!constantTimeEqual(certificate.identityKey.toBytes(), sender.toBytes())) {
      throw new SealedSenderError("SenderMismatch");
    }
    verifyCertificate(certificate, trusted, nowMs);
    return { certificate, contentType: typeByte, message: inner.slice(3 + certLen) };
  } finally {
    wipe(secret);
  }
}

/**
 * Identity keys (SPEC.md §3): one Ed25519 key pair per account, generated
 * from a 32-byte seed, and its X25519 form for the handshake (§4.2) by the
 * birational map (`u = (1 + y) / (1 − y)`; private scalar = first 32 bytes of
 * SHA-512(seed), clamped by X25519).
 *
 * Ed25519 verification here is strict (§2): non-canonical encodings and
 * small-order public keys or `R` components are refused. This module does
 * not own device transport keys (§13), which never touch end-to-end crypto.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { sha512 } from "@noble/hashes/sha2.js";

import { copy, isAllZero, redactSecrets, wipe } from "./bytes.js";
import { IdentityStateSchema } from "./gen/state_pb.js";
import { KEY_LEN, SIGNATURE_LEN, STATE_VERSION } from "./labels.js";
import type { Rng } from "./rng.js";
import { decodeState, requireLength } from "./state.js";

/** A key or signature was refused. */
export class KeyError extends Error {
  /** `invalid_key`: not a valid point or of small order; `bad_signature`; `non_contributory_dh`: an all-zero X25519 output. */
  readonly kind: "invalid_key" | "bad_signature" | "non_contributory_dh";

  /** @param kind the failure */
  constructor(kind: KeyError["kind"], message?: string) {
    super(message ?? kind.replaceAll("_", " "));
    this.name = "KeyError";
    this.kind = kind;
  }
}

type EdPoint = ReturnType<typeof ed25519.Point.fromBytes>;

/** Parses a strict, canonical Ed25519 point of order other than small; undefined otherwise. */
function strictPoint(bytes: Uint8Array): EdPoint | undefined {
  if (bytes.length !== KEY_LEN) {
    return undefined;
  }
  try {
    const point = ed25519.Point.fromBytes(bytes, false);
    return point.isSmallOrder() ? undefined : point;
  } catch {
    return undefined;
  }
}

/** True when `publicKey` is a canonical Ed25519 encoding of a point not of small order (§2, §3). */
export function isValidEd25519PublicKey(publicKey: Uint8Array): boolean {
  return strictPoint(publicKey) !== undefined;
}

/**
 * Strict Ed25519 verification (§2): canonical `A` and `R`, neither of small
 * order, `S` below the group order, cofactorless equation.
 */
export function verifyEd25519Strict(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== SIGNATURE_LEN || strictPoint(publicKey) === undefined) {
    return false;
  }
  if (strictPoint(signature.subarray(0, 32)) === undefined) {
    return false;
  }
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/**
 * X25519 with the all-zero check of §2: throws `KeyError`
 * (`non_contributory_dh`) when the peer key has small order.
 */
export function x25519Dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  let out: Uint8Array;
  try {
    out = x25519.getSharedSecret(privateKey, publicKey);
  } catch (cause) {
    throw new KeyError("non_contributory_dh", `X25519 refused the peer key: ${String(cause)}`);
  }
  if (isAllZero(out)) {
    throw new KeyError("non_contributory_dh");
  }
  return out;
}

/** The X25519 public key of a private key. */
export function x25519PublicKey(privateKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(privateKey);
}

/** A public identity key: a validated Ed25519 public key (§3). */
export class IdentityKey {
  private readonly bytes: Uint8Array;

  private constructor(bytes: Uint8Array) {
    this.bytes = copy(bytes);
  }

  /** Parses a received identity key; `KeyError` (`invalid_key`) if not a valid point or of small order. */
  static fromBytes(bytes: Uint8Array): IdentityKey {
    if (!isValidEd25519PublicKey(bytes)) {
      throw new KeyError("invalid_key", "identity key is not a valid Ed25519 point");
    }
    return new IdentityKey(bytes);
  }

  /** The 32-byte wire encoding. */
  toBytes(): Uint8Array {
    return copy(this.bytes);
  }

  /** Strict verification of `signature` over `message` by this identity. */
  verify(message: Uint8Array, signature: Uint8Array): boolean {
    return verifyEd25519Strict(this.bytes, message, signature);
  }

  /** The X25519 form: the Montgomery u-coordinate of the point (§3). */
  toX25519(): Uint8Array {
    return ed25519.utils.toMontgomery(this.bytes);
  }

  /** Equality of the encodings. */
  equals(other: IdentityKey): boolean {
    const a = this.bytes;
    const b = other.bytes;
    return a.length === b.length && a.every((x, i) => x === b[i]);
  }
}

/** An identity key pair held by every device of an account (§3). */
export class IdentityKeyPair {
  private readonly seed: Uint8Array;
  /** The public identity key. */
  readonly publicKey: IdentityKey;

  private constructor(seed: Uint8Array) {
    this.seed = copy(seed);
    this.publicKey = IdentityKey.fromBytes(ed25519.getPublicKey(this.seed));
  }

  /** Draws a 32-byte seed from `rng` (one draw) and derives the pair. */
  static generate(rng: Rng): IdentityKeyPair {
    const seed = rng.fill(KEY_LEN);
    const pair = new IdentityKeyPair(seed);
    wipe(seed);
    return pair;
  }

  /** The pair of a 32-byte seed (RFC 8032 private key). */
  static fromSeed(seed: Uint8Array): IdentityKeyPair {
    if (seed.length !== KEY_LEN) {
      throw new KeyError("invalid_key", "an identity seed is 32 bytes");
    }
    return new IdentityKeyPair(seed);
  }

  /** The persisted `IdentityState` (§9.3); holds the secret seed. */
  toBytes(): Uint8Array {
    return toBinary(IdentityStateSchema, create(IdentityStateSchema, { version: STATE_VERSION, seed: this.seed }));
  }

  /** Restores from `IdentityState` bytes (`StateError`). */
  static fromBytes(bytes: Uint8Array): IdentityKeyPair {
    const state = decodeState(IdentityStateSchema, bytes);
    return new IdentityKeyPair(requireLength(state.seed, KEY_LEN, "seed"));
  }

  /** The seed, for persisted state (§9.3); a secret. */
  exportSeed(): Uint8Array {
    return copy(this.seed);
  }

  /** Ed25519 signature (deterministic) over `message`. */
  sign(message: Uint8Array): Uint8Array {
    return ed25519.sign(message, this.seed);
  }

  /** The X25519 private scalar: the first 32 bytes of SHA-512(seed) (§3). */
  x25519PrivateKey(): Uint8Array {
    const digest = sha512(this.seed);
    const scalar = digest.slice(0, KEY_LEN);
    wipe(digest);
    return scalar;
  }

  /** Clears the seed held by this object. */
  dispose(): void {
    wipe(this.seed);
  }
}

redactSecrets(IdentityKeyPair);

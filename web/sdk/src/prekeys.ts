/**
 * Prekeys (SPEC.md §4.1): the signed X25519 prekey (its signature covers a
 * `kem_flag` saying whether the device publishes KEM prekeys), one-time
 * X25519 prekeys, and the signed ML-KEM-768 prekey; the prekey bundle an
 * initiator fetches; the device's own prekey store.
 *
 * Key generation draws exactly one RNG call per key, of the key's size: 32
 * bytes for an X25519 private key, 64 bytes (`d ‖ z`) for a KEM prekey seed.
 * The store persists as `LocalPreKeysState` (§9.1). This module does not
 * upload prekeys (the client's job, §12.6).
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";

import { bytesEqual, concat, copy, redactSecrets, u32be, wipe } from "./bytes.js";
import { LocalPreKeysStateSchema } from "./gen/state_pb.js";
import { type IdentityKeyPair, x25519PublicKey } from "./identity.js";
import {
  KEM_CIPHERTEXT_LEN,
  KEM_PREKEY_CONTEXT,
  KEM_PUBLIC_KEY_LEN,
  KEM_SEED_LEN,
  KEY_LEN,
  SIGNED_PREKEY_CONTEXT,
  STATE_VERSION,
} from "./labels.js";
import type { Rng } from "./rng.js";
import { decodeState, requireField, requireLength } from "./state.js";

/** `kem_flag` of a device that publishes KEM prekeys (§4.1). */
export const KEM_FLAG_PUBLISHES = 0x01;
/** `kem_flag` of a device that publishes none (§4.1). */
export const KEM_FLAG_CLASSICAL = 0x00;

/** What the identity signs for a signed prekey: `SIGNED_PREKEY_CONTEXT ‖ u32be(id) ‖ public ‖ kem_flag` (62 bytes). */
export function signedPreKeyMessage(id: number, publicKey: Uint8Array, publishesKem: boolean): Uint8Array {
  return concat(SIGNED_PREKEY_CONTEXT, u32be(id), publicKey, Uint8Array.of(publishesKem ? KEM_FLAG_PUBLISHES : KEM_FLAG_CLASSICAL));
}

/** What the identity signs for a KEM prekey: `KEM_PREKEY_CONTEXT ‖ u32be(id) ‖ encapsulation key`. */
export function kemPreKeyMessage(id: number, encapsulationKey: Uint8Array): Uint8Array {
  return concat(KEM_PREKEY_CONTEXT, u32be(id), encapsulationKey);
}

/**
 * FIPS 203 §7.2 input checks on an encapsulation key: the type check (1184
 * bytes) and the modulus check (every 12-bit coefficient of `ek[0..1152]`
 * below q = 3329).
 */
export function isValidKemPublicKey(encapsulationKey: Uint8Array): boolean {
  if (encapsulationKey.length !== KEM_PUBLIC_KEY_LEN) {
    return false;
  }
  for (let i = 0; i < 1152; i += 3) {
    const b0 = encapsulationKey[i]!;
    const b1 = encapsulationKey[i + 1]!;
    const b2 = encapsulationKey[i + 2]!;
    const c0 = b0 | ((b1 & 0x0f) << 8);
    const c1 = (b1 >> 4) | (b2 << 4);
    if (c0 >= 3329 || c1 >= 3329) {
      return false;
    }
  }
  return true;
}

/** The public half of a signed prekey, as published in a bundle. */
export interface SignedPreKeyPublic {
  /** Chosen by the device. */
  id: number;
  /** X25519 public key, 32 bytes. */
  publicKey: Uint8Array;
  /** Ed25519 signature over `signedPreKeyMessage(id, publicKey, kem_flag)`. */
  signature: Uint8Array;
}

/** A signed prekey with its private key. */
export class SignedPreKey {
  /** The id. */
  readonly id: number;
  /** Whether its signature says the device publishes KEM prekeys (`kem_flag = 0x01`). */
  readonly publishesKemPreKeys: boolean;
  private readonly privateKey: Uint8Array;
  private readonly pub: SignedPreKeyPublic;

  private constructor(identity: IdentityKeyPair, id: number, privateKey: Uint8Array, publishesKem: boolean) {
    this.id = id;
    this.publishesKemPreKeys = publishesKem;
    this.privateKey = copy(privateKey);
    const publicKey = x25519PublicKey(this.privateKey);
    this.pub = { id, publicKey, signature: identity.sign(signedPreKeyMessage(id, publicKey, publishesKem)) };
  }

  /**
   * Draws a signed prekey (one 32-byte draw) and signs it. `publishesKem`
   * (default true) is the `kem_flag`: a device that signs it MUST keep a KEM
   * prekey published.
   */
  static generate(rng: Rng, identity: IdentityKeyPair, id: number, publishesKem = true): SignedPreKey {
    const secret = rng.fill(KEY_LEN);
    const key = new SignedPreKey(identity, id, secret, publishesKem);
    wipe(secret);
    return key;
  }

  /** A signed prekey from its stored secret (the signature is recomputed). */
  static fromSecret(identity: IdentityKeyPair, id: number, secret: Uint8Array, publishesKem: boolean): SignedPreKey {
    return new SignedPreKey(identity, id, secret, publishesKem);
  }

  /** The published half. */
  public(): SignedPreKeyPublic {
    return { id: this.pub.id, publicKey: copy(this.pub.publicKey), signature: copy(this.pub.signature) };
  }

  /** @internal the X25519 private key (for the handshake and the responder ratchet). */
  secret(): Uint8Array {
    return copy(this.privateKey);
  }
}

/** The public half of a one-time prekey. */
export interface OneTimePreKeyPublic {
  /** Chosen by the device. */
  id: number;
  /** X25519 public key. */
  publicKey: Uint8Array;
}

/** A one-time prekey with its private key (unsigned, used by at most one handshake). */
export class OneTimePreKey {
  /** The id. */
  readonly id: number;
  private readonly privateKey: Uint8Array;
  /** The X25519 public key. */
  readonly publicKey: Uint8Array;

  private constructor(id: number, privateKey: Uint8Array) {
    this.id = id;
    this.privateKey = copy(privateKey);
    this.publicKey = x25519PublicKey(this.privateKey);
  }

  /** Draws a one-time prekey (one 32-byte draw). */
  static generate(rng: Rng, id: number): OneTimePreKey {
    const secret = rng.fill(KEY_LEN);
    const key = new OneTimePreKey(id, secret);
    wipe(secret);
    return key;
  }

  /** A one-time prekey from its stored secret. */
  static fromSecret(id: number, secret: Uint8Array): OneTimePreKey {
    return new OneTimePreKey(id, secret);
  }

  /** The published half. */
  public(): OneTimePreKeyPublic {
    return { id: this.id, publicKey: copy(this.publicKey) };
  }

  /** @internal the X25519 private key. */
  secret(): Uint8Array {
    return copy(this.privateKey);
  }

  /** Clears the private key (after the handshake that used it decrypted). */
  dispose(): void {
    wipe(this.privateKey);
  }
}

/** The public half of a KEM prekey. */
export interface KemPreKeyPublic {
  /** Chosen by the device. */
  id: number;
  /** ML-KEM-768 encapsulation key, 1184 bytes. */
  publicKey: Uint8Array;
  /** Ed25519 signature over `kemPreKeyMessage(id, publicKey)`. */
  signature: Uint8Array;
}

/** A signed ML-KEM-768 prekey (last resort in version 1), stored as its 64-byte seed. */
export class KemPreKey {
  /** The id. */
  readonly id: number;
  private readonly seed: Uint8Array;
  private readonly pub: KemPreKeyPublic;

  private constructor(identity: IdentityKeyPair, id: number, seed: Uint8Array) {
    this.id = id;
    this.seed = copy(seed);
    const { publicKey, secretKey } = ml_kem768.keygen(this.seed);
    wipe(secretKey);
    this.pub = { id, publicKey, signature: identity.sign(kemPreKeyMessage(id, publicKey)) };
  }

  /** Draws a KEM prekey (one 64-byte draw, `d ‖ z`) and signs it. */
  static generate(rng: Rng, identity: IdentityKeyPair, id: number): KemPreKey {
    const seed = rng.fill(KEM_SEED_LEN);
    const key = new KemPreKey(identity, id, seed);
    wipe(seed);
    return key;
  }

  /** A KEM prekey from its stored 64-byte seed (the signature is recomputed). */
  static fromSeed(identity: IdentityKeyPair, id: number, seed: Uint8Array): KemPreKey {
    return new KemPreKey(identity, id, seed);
  }

  /** @internal the seed, for persisted state. */
  exportSeed(): Uint8Array {
    return copy(this.seed);
  }

  /** The published half. */
  public(): KemPreKeyPublic {
    return { id: this.pub.id, publicKey: copy(this.pub.publicKey), signature: copy(this.pub.signature) };
  }

  /** `ML-KEM-768.Decaps` (implicit rejection); the caller checks the ciphertext length. */
  decapsulate(ciphertext: Uint8Array): Uint8Array {
    if (ciphertext.length !== KEM_CIPHERTEXT_LEN) {
      throw new RangeError("a KEM ciphertext is 1088 bytes");
    }
    const { secretKey } = ml_kem768.keygen(this.seed);
    try {
      return ml_kem768.decapsulate(ciphertext, secretKey);
    } finally {
      wipe(secretKey);
    }
  }
}

/** What an initiator fetches for one device (§4.1). */
export interface PreKeyBundle {
  /** The device's account identity key (Ed25519, 32 bytes). */
  identityKey: Uint8Array;
  /** The signed prekey. */
  signedPreKey: SignedPreKeyPublic;
  /** One one-time prekey, if the server had one. */
  oneTimePreKey?: OneTimePreKeyPublic | undefined;
  /** The KEM prekey, if the device publishes one. */
  kemPreKey?: KemPreKeyPublic | undefined;
}

/** A device's own prekeys, looked up by id when a PreKeyMessage arrives (§4.3). */
export class LocalPreKeys {
  private readonly signed = new Map<number, SignedPreKey>();
  private readonly oneTime = new Map<number, OneTimePreKey>();
  private readonly kem = new Map<number, KemPreKey>();
  private nextOneTimeId = 0;

  /** `next_one_time_id` (§9.1): the id of the next generated one-time prekey, raised to `(id + 1) mod 2^32` by each added key with a higher id. */
  get nextOneTimePreKeyId(): number {
    return this.nextOneTimeId;
  }

  /** The persisted `LocalPreKeysState` (§9.1), each list in ascending id. */
  toBytes(): Uint8Array {
    const byId = <T extends { id: number }>(m: Map<number, T>) => [...m.values()].sort((a, b) => a.id - b.id);
    return toBinary(
      LocalPreKeysStateSchema,
      create(LocalPreKeysStateSchema, {
        version: STATE_VERSION,
        signed: byId(this.signed).map((k) => ({
          id: k.id,
          secret: k.secret(),
          signature: k.public().signature,
          publishesKemPrekeys: k.publishesKemPreKeys,
        })),
        oneTime: byId(this.oneTime).map((k) => ({ id: k.id, secret: k.secret() })),
        kem: byId(this.kem).map((k) => ({ id: k.id, seed: k.exportSeed(), signature: k.public().signature })),
        nextOneTimeId: this.nextOneTimeId,
      }),
    );
  }

  /**
   * Restores the store of `identity` (`StateError`): public keys are
   * recomputed and signatures re-made, and each MUST equal the stored one.
   */
  static fromBytes(identity: IdentityKeyPair, bytes: Uint8Array): LocalPreKeys {
    const state = decodeState(LocalPreKeysStateSchema, bytes);
    const store = new LocalPreKeys();
    for (const k of state.signed) {
      const key = SignedPreKey.fromSecret(identity, k.id, requireLength(k.secret, KEY_LEN, "signed.secret"), k.publishesKemPrekeys);
      requireField(bytesEqual(key.public().signature, k.signature), "signed.signature");
      requireField(!store.signed.has(k.id), "signed.id");
      store.signed.set(k.id, key);
    }
    for (const k of state.oneTime) {
      requireField(!store.oneTime.has(k.id), "one_time.id");
      store.oneTime.set(k.id, OneTimePreKey.fromSecret(k.id, requireLength(k.secret, KEY_LEN, "one_time.secret")));
    }
    for (const k of state.kem) {
      const key = KemPreKey.fromSeed(identity, k.id, requireLength(k.seed, KEM_SEED_LEN, "kem.seed"));
      requireField(bytesEqual(key.public().signature, k.signature), "kem.signature");
      requireField(!store.kem.has(k.id), "kem.id");
      store.kem.set(k.id, key);
    }
    store.nextOneTimeId = state.nextOneTimeId;
    return store;
  }

  /**
   * Generates `count` one-time prekeys with ids from `next_one_time_id` on
   * (one 32-byte draw each, §4.1), keeps them and returns them for upload.
   */
  generateOneTime(rng: Rng, count: number): OneTimePreKey[] {
    const keys: OneTimePreKey[] = [];
    for (let i = 0; i < count; i++) {
      const key = OneTimePreKey.generate(rng, this.nextOneTimeId);
      this.oneTime.set(key.id, key);
      this.nextOneTimeId = (this.nextOneTimeId + 1) >>> 0;
      keys.push(key);
    }
    return keys;
  }

  /** Keeps a signed prekey (old ones stay for in-flight handshakes). */
  addSigned(key: SignedPreKey): void {
    this.signed.set(key.id, key);
  }

  /** Keeps a one-time prekey. */
  addOneTime(key: OneTimePreKey): void {
    this.oneTime.set(key.id, key);
    this.nextOneTimeId = Math.max(this.nextOneTimeId, (key.id + 1) >>> 0);
  }

  /** Keeps a KEM prekey. */
  addKem(key: KemPreKey): void {
    this.kem.set(key.id, key);
  }

  /** The signed prekey with `id`. */
  signedPreKey(id: number): SignedPreKey | undefined {
    return this.signed.get(id);
  }

  /** The one-time prekey with `id`, if not yet used. */
  oneTimePreKey(id: number): OneTimePreKey | undefined {
    return this.oneTime.get(id);
  }

  /** The KEM prekey with `id`. */
  kemPreKey(id: number): KemPreKey | undefined {
    return this.kem.get(id);
  }

  /** Deletes (and clears) a one-time prekey once its handshake decrypted a message. */
  removeOneTime(id: number): void {
    this.oneTime.get(id)?.dispose();
    this.oneTime.delete(id);
  }
}

redactSecrets(SignedPreKey);
redactSecrets(OneTimePreKey);
redactSecrets(KemPreKey);
redactSecrets(LocalPreKeys);

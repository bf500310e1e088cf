/**
 * The handshake (SPEC.md §4.1, §4.2): X3DH, hybrid with ML-KEM-768 (PQXDH)
 * when the responder publishes a KEM prekey.
 *
 * The initiator validates the bundle in the SPEC's order (signed prekey
 * signature with either `kem_flag`; KEM prekey signature and FIPS 203 input
 * checks; no stripped KEM prekey when `kem_flag = 0x01`), then draws `EK_A`
 * (32 bytes) and, in hybrid mode, `m` (32 bytes). Both sides derive
 * `SK = HKDF(0x00×32, 0xFF×32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] [‖ SS], INFO, 32)` and
 * `AD = IK_A ‖ IK_B`. This module does not build the ratchet (see
 * `ratchet/session.ts`) nor the wire `PreKeyMessage` (see `session.ts`).
 */
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";

import { concat, copy, wipe } from "./bytes.js";
import { IdentityKey, type IdentityKeyPair, KeyError, x25519Dh, x25519PublicKey } from "./identity.js";
import { hkdf } from "./kdf.js";
import { KEM_CIPHERTEXT_LEN, KEY_LEN, PQXDH_INFO, X3DH_INFO } from "./labels.js";
import {
  isValidKemPublicKey,
  kemPreKeyMessage,
  type LocalPreKeys,
  type PreKeyBundle,
  signedPreKeyMessage,
  type SignedPreKeyPublic,
} from "./prekeys.js";
import type { Rng } from "./rng.js";

/** Handshake failures (SPEC.md §4). */
export type HandshakeErrorKind =
  | "invalid_identity_key"
  | "bad_signature"
  | "invalid_kem_public_key"
  | "hybrid_required"
  | "non_contributory_dh"
  | "invalid_base_key"
  | "unknown_signed_prekey"
  | "unknown_one_time_prekey"
  | "unknown_kem_prekey"
  | "invalid_kem_ciphertext";

/** A handshake was refused; nothing was created. */
export class HandshakeError extends Error {
  /** Which failure. */
  readonly kind: HandshakeErrorKind;

  /** @param kind the failure */
  constructor(kind: HandshakeErrorKind, message?: string) {
    super(message ?? kind.replaceAll("_", " "));
    this.name = "HandshakeError";
    this.kind = kind;
  }
}

/** Classical X3DH, or hybrid with ML-KEM-768. */
export type HandshakeMode = "classical" | "hybrid";

/** The initiator's handshake fields of a `PreKeyMessage` (§4.3). */
export interface InitialHeader {
  /** `IK_A`, Ed25519, 32 bytes. */
  identityKey: Uint8Array;
  /** `EK_A` public, 32 bytes. */
  baseKey: Uint8Array;
  /** The signed prekey used. */
  signedPreKeyId: number;
  /** The one-time prekey used, if any. */
  oneTimePreKeyId?: number | undefined;
  /** The KEM prekey used (exactly in hybrid mode). */
  kemPreKeyId?: number | undefined;
  /** `CT`, 1088 bytes (exactly in hybrid mode). */
  kemCiphertext?: Uint8Array | undefined;
}

/** Intermediate values, for test vectors only (SPEC.md §17.1). */
export interface HandshakeTrace {
  /** X25519(IK_A, SPK_B). */
  dh1: Uint8Array;
  /** X25519(EK_A, IK_B). */
  dh2: Uint8Array;
  /** X25519(EK_A, SPK_B). */
  dh3: Uint8Array;
  /** X25519(EK_A, OPK_B), empty without a one-time prekey. */
  dh4: Uint8Array;
  /** ML-KEM shared secret, empty in classical mode. */
  kemSharedSecret: Uint8Array;
}

/** What a handshake gives the ratchet (§4.2). */
export interface HandshakeOutput {
  /** `SK`, 32 bytes. */
  sharedSecret: Uint8Array;
  /** `AD = IK_A ‖ IK_B`, 64 bytes. */
  associatedData: Uint8Array;
  /** The mode, reported to the application. */
  mode: HandshakeMode;
  /** The peer's identity key (authenticated only once a message decrypts, §4.3). */
  remoteIdentity: IdentityKey;
  /** Intermediate values. */
  trace: HandshakeTrace;
}

/**
 * Verifies a signed prekey's signature and returns its `kem_flag`: true when
 * the device publishes KEM prekeys. Tries `0x01`, then `0x00`.
 */
export function verifySignedPreKey(identity: IdentityKey, spk: SignedPreKeyPublic): boolean {
  if (spk.publicKey.length !== KEY_LEN) {
    throw new HandshakeError("bad_signature", "signed prekey is not 32 bytes");
  }
  for (const publishesKem of [true, false]) {
    if (identity.verify(signedPreKeyMessage(spk.id, spk.publicKey, publishesKem), spk.signature)) {
      return publishesKem;
    }
  }
  throw new HandshakeError("bad_signature", "signed prekey signature does not verify");
}

function deriveSecret(mode: HandshakeMode, parts: Uint8Array[]): Uint8Array {
  const ikm = concat(new Uint8Array(32).fill(0xff), ...parts);
  const sk = hkdf(new Uint8Array(32), ikm, mode === "hybrid" ? PQXDH_INFO : X3DH_INFO, KEY_LEN);
  wipe(ikm);
  return sk;
}

function dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  try {
    return x25519Dh(privateKey, publicKey);
  } catch (e) {
    if (e instanceof KeyError) {
      throw new HandshakeError("non_contributory_dh");
    }
    throw e;
  }
}

function parseIdentity(bytes: Uint8Array): IdentityKey {
  try {
    return IdentityKey.fromBytes(bytes);
  } catch {
    throw new HandshakeError("invalid_identity_key");
  }
}

/**
 * The initiator's checks of a bundle (§4.1), in the SPEC's order: the signed
 * prekey's signature (either `kem_flag`); a KEM prekey's signature, then the
 * FIPS 203 type and modulus checks; no KEM prekey while `kem_flag = 0x01` is
 * `hybrid_required`. Returns the bundle's identity key.
 */
export function verifyBundle(bundle: PreKeyBundle): IdentityKey {
  const remote = parseIdentity(bundle.identityKey);
  const publishesKem = verifySignedPreKey(remote, bundle.signedPreKey);
  const kem = bundle.kemPreKey;
  if (kem !== undefined) {
    if (!remote.verify(kemPreKeyMessage(kem.id, kem.publicKey), kem.signature)) {
      throw new HandshakeError("bad_signature", "KEM prekey signature does not verify");
    }
    if (!isValidKemPublicKey(kem.publicKey)) {
      throw new HandshakeError("invalid_kem_public_key");
    }
  } else if (publishesKem) {
    throw new HandshakeError("hybrid_required", "the bundle lacks the KEM prekey its signed prekey announces");
  }
  return remote;
}

/**
 * The initiator's side (§4.2): validates `bundle`, draws `EK_A` then (hybrid)
 * `m`, and returns the output and the header to send.
 */
export function initiate(
  rng: Rng,
  identity: IdentityKeyPair,
  bundle: PreKeyBundle,
): { output: HandshakeOutput; header: InitialHeader } {
  const remote = verifyBundle(bundle);
  const kem = bundle.kemPreKey;
  const mode: HandshakeMode = kem !== undefined ? "hybrid" : "classical";
  const ephemeral = rng.fill(KEY_LEN);
  const m = mode === "hybrid" ? rng.fill(32) : undefined;

  const ikA = identity.x25519PrivateKey();
  const spkB = bundle.signedPreKey.publicKey;
  try {
    const dh1 = dh(ikA, spkB);
    const dh2 = dh(ephemeral, remote.toX25519());
    const dh3 = dh(ephemeral, spkB);
    const dh4 = bundle.oneTimePreKey !== undefined ? dh(ephemeral, bundle.oneTimePreKey.publicKey) : new Uint8Array(0);
    let kemSharedSecret: Uint8Array = new Uint8Array(0);
    let kemCiphertext: Uint8Array | undefined;
    if (kem !== undefined && m !== undefined) {
      const encapsulated = ml_kem768.encapsulate(kem.publicKey, m);
      kemSharedSecret = encapsulated.sharedSecret;
      kemCiphertext = encapsulated.cipherText;
    }
    const sharedSecret = deriveSecret(mode, [dh1, dh2, dh3, dh4, kemSharedSecret]);
    const ownIdentity = identity.publicKey.toBytes();
    return {
      output: {
        sharedSecret,
        associatedData: concat(ownIdentity, remote.toBytes()),
        mode,
        remoteIdentity: remote,
        trace: { dh1, dh2, dh3, dh4, kemSharedSecret },
      },
      header: {
        identityKey: ownIdentity,
        baseKey: x25519PublicKey(ephemeral),
        signedPreKeyId: bundle.signedPreKey.id,
        oneTimePreKeyId: bundle.oneTimePreKey?.id,
        kemPreKeyId: kem?.id,
        kemCiphertext,
      },
    };
  } finally {
    wipe(ikA, ephemeral, m);
  }
}

/**
 * The responder's side (§4.2, §4.3 step 2): looks up the named prekeys and
 * derives the same `SK` and `AD`. It deletes nothing: the caller removes the
 * one-time prekey only once the inner message decrypted.
 */
export function respond(identity: IdentityKeyPair, prekeys: LocalPreKeys, header: InitialHeader): HandshakeOutput {
  const remote = parseIdentity(header.identityKey);
  if (header.baseKey.length !== KEY_LEN) {
    throw new HandshakeError("invalid_base_key");
  }
  const signed = prekeys.signedPreKey(header.signedPreKeyId);
  if (signed === undefined) {
    throw new HandshakeError("unknown_signed_prekey");
  }
  const hybrid = header.kemPreKeyId !== undefined;
  if (hybrid !== (header.kemCiphertext !== undefined)) {
    throw new HandshakeError("invalid_kem_ciphertext", "a KEM prekey id and a ciphertext come together");
  }
  if (!hybrid && signed.publishesKemPreKeys) {
    throw new HandshakeError("hybrid_required", "classical handshake on a signed prekey that announces KEM prekeys");
  }
  let oneTimeSecret: Uint8Array | undefined;
  if (header.oneTimePreKeyId !== undefined) {
    const oneTime = prekeys.oneTimePreKey(header.oneTimePreKeyId);
    if (oneTime === undefined) {
      throw new HandshakeError("unknown_one_time_prekey");
    }
    oneTimeSecret = oneTime.secret();
  }
  let kemSharedSecret: Uint8Array = new Uint8Array(0);
  if (hybrid) {
    const kem = prekeys.kemPreKey(header.kemPreKeyId!);
    if (kem === undefined) {
      throw new HandshakeError("unknown_kem_prekey");
    }
    if (header.kemCiphertext!.length !== KEM_CIPHERTEXT_LEN) {
      throw new HandshakeError("invalid_kem_ciphertext");
    }
    kemSharedSecret = kem.decapsulate(header.kemCiphertext!);
  }
  const spkSecret = signed.secret();
  const ikB = identity.x25519PrivateKey();
  try {
    const dh1 = dh(spkSecret, remote.toX25519());
    const dh2 = dh(ikB, header.baseKey);
    const dh3 = dh(spkSecret, header.baseKey);
    const dh4 = oneTimeSecret !== undefined ? dh(oneTimeSecret, header.baseKey) : new Uint8Array(0);
    const mode: HandshakeMode = hybrid ? "hybrid" : "classical";
    return {
      sharedSecret: deriveSecret(mode, [dh1, dh2, dh3, dh4, kemSharedSecret]),
      associatedData: concat(remote.toBytes(), identity.publicKey.toBytes()),
      mode,
      remoteIdentity: remote,
      trace: { dh1, dh2, dh3, dh4, kemSharedSecret: copy(kemSharedSecret) },
    };
  } finally {
    wipe(spkSecret, ikB, oneTimeSecret);
  }
}

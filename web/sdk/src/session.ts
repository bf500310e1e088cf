/**
 * 1:1 sessions (SPEC.md §4.3): the `SessionMessage` (`type ‖ body`: 0x01 a
 * `RatchetMessage`, 0x02 a protobuf `PreKeyMessage`), the initiator that
 * repeats its handshake header until it has decrypted a first reply, and the
 * responder that builds a session from a `PreKeyMessage` and keeps it (and
 * deletes the one-time prekey) only when the inner message decrypts.
 *
 * The identity in a `PreKeyMessage` is authenticated only by the successful
 * decrypt: the application MUST compare `remoteIdentity` with the identity
 * it knows for the account and surface a change (§8). A session persists as
 * `SessionState` (§9.2).
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import { bytesEqual, concat, copy, redactSecrets } from "./bytes.js";
import { PreKeyMessageSchema } from "./gen/session_pb.js";
import { SessionStateSchema } from "./gen/state_pb.js";
import { type HandshakeMode, type InitialHeader, initiate, respond } from "./handshake.js";
import { IdentityKey, type IdentityKeyPair } from "./identity.js";
import { KEM_CIPHERTEXT_LEN, KEY_LEN, STATE_VERSION } from "./labels.js";
import type { LocalPreKeys, PreKeyBundle } from "./prekeys.js";
import { RatchetSession, type RootStepTrace } from "./ratchet/session.js";
import { type Rng, systemRng } from "./rng.js";
import { decodeState, requireField, requireLength, StateError } from "./state.js";

/** `SessionMessage` type byte of a `RatchetMessage`. */
export const SESSION_MESSAGE_RATCHET = 0x01;
/** `SessionMessage` type byte of a `PreKeyMessage`. */
export const SESSION_MESSAGE_PREKEY = 0x02;
/** `PreKeyMessage.version`. */
export const PREKEY_MESSAGE_VERSION = 1;

/** A `SessionMessage` that is not well formed (§4.3). */
export class SessionError extends Error {
  /**
   * `malformed` (unknown type byte, not a protobuf `PreKeyMessage`, KEM id
   * without ciphertext or the reverse), `invalid_length` (a base key or
   * identity key not 32 bytes),
   * `unsupported_version` (`PreKeyMessage.version` ≠ 1), `wrong_session` (a
   * prekey message of another handshake), `new_session_required` (a ratchet
   * message from a device with no session).
   */
  readonly kind: "malformed" | "invalid_length" | "unsupported_version" | "wrong_session" | "new_session_required";

  /** @param kind the failure */
  constructor(kind: SessionError["kind"], message?: string) {
    super(message ?? kind.replaceAll("_", " "));
    this.name = "SessionError";
    this.kind = kind;
  }
}

/** A decoded `SessionMessage`. */
export type SessionMessage =
  | { type: "ratchet"; message: Uint8Array }
  | { type: "prekey"; header: InitialHeader; message: Uint8Array };

/** Encodes a `SessionMessage` of type 0x02. */
export function encodePreKeyMessage(header: InitialHeader, ratchetMessage: Uint8Array): Uint8Array {
  const body = create(PreKeyMessageSchema, {
    version: PREKEY_MESSAGE_VERSION,
    identityKey: header.identityKey,
    baseKey: header.baseKey,
    signedPrekeyId: header.signedPreKeyId,
    oneTimePrekeyId: header.oneTimePreKeyId,
    kemPrekeyId: header.kemPreKeyId,
    kemCiphertext: header.kemCiphertext ?? new Uint8Array(0),
    message: ratchetMessage,
  });
  return concat(Uint8Array.of(SESSION_MESSAGE_PREKEY), toBinary(PreKeyMessageSchema, body));
}

/** Decodes a `SessionMessage`, refusing what §4.3 refuses. */
export function decodeSessionMessage(bytes: Uint8Array): SessionMessage {
  if (bytes[0] === SESSION_MESSAGE_RATCHET) {
    return { type: "ratchet", message: bytes.slice(1) };
  }
  if (bytes[0] !== SESSION_MESSAGE_PREKEY) {
    throw new SessionError("malformed", "unknown SessionMessage type");
  }
  let body;
  try {
    body = fromBinary(PreKeyMessageSchema, bytes.subarray(1));
  } catch {
    throw new SessionError("malformed", "not a PreKeyMessage");
  }
  if (body.version !== PREKEY_MESSAGE_VERSION) {
    throw new SessionError("unsupported_version", `version ${body.version}`);
  }
  if (body.baseKey.length !== KEY_LEN || body.identityKey.length !== KEY_LEN) {
    throw new SessionError("invalid_length", "base key and identity key are 32 bytes");
  }
  const hybrid = body.kemPrekeyId !== undefined;
  if (hybrid !== (body.kemCiphertext.length > 0)) {
    throw new SessionError("malformed", "KEM prekey id and ciphertext must come together");
  }
  if (hybrid && body.kemCiphertext.length !== KEM_CIPHERTEXT_LEN) {
    throw new SessionError("malformed", "KEM ciphertext is not 1088 bytes");
  }
  return {
    type: "prekey",
    header: {
      identityKey: body.identityKey,
      baseKey: body.baseKey,
      signedPreKeyId: body.signedPrekeyId,
      oneTimePreKeyId: body.oneTimePrekeyId,
      kemPreKeyId: body.kemPrekeyId,
      kemCiphertext: hybrid ? body.kemCiphertext : undefined,
    },
    message: body.message,
  };
}

/** One pairwise session with one remote device. */
export class Session {
  private readonly ratchet: RatchetSession;
  /** The peer's identity key (compare it with the known one, §8). */
  readonly remoteIdentity: IdentityKey;
  /** `EK_A` public: names the handshake. */
  readonly baseKey: Uint8Array;
  /** Classical or hybrid. */
  readonly mode: HandshakeMode;
  private pending: InitialHeader | undefined;

  private constructor(ratchet: RatchetSession, remoteIdentity: IdentityKey, baseKey: Uint8Array, mode: HandshakeMode, pending?: InitialHeader) {
    this.ratchet = ratchet;
    this.remoteIdentity = remoteIdentity;
    this.baseKey = copy(baseKey);
    this.mode = mode;
    this.pending = pending;
  }

  /** Starts a session from a fetched bundle (§4.2): draws `EK_A`, (hybrid) `m`, then the first `DHs`. */
  static initiate(rng: Rng, identity: IdentityKeyPair, bundle: PreKeyBundle): Session {
    return Session.initiateTraced(rng, identity, bundle).session;
  }

  /** `initiate` with the hand-off to the ratchet (`SK`, `AD`, first root step), for test vectors only. */
  static initiateTraced(
    rng: Rng,
    identity: IdentityKeyPair,
    bundle: PreKeyBundle,
  ): { session: Session; sharedSecret: Uint8Array; associatedData: Uint8Array; rootStep: RootStepTrace } {
    const { output, header } = initiate(rng, identity, bundle);
    const { session: ratchet, rootStep } = RatchetSession.initiatorTraced(
      rng,
      output.sharedSecret,
      output.associatedData,
      bundle.signedPreKey.publicKey,
    );
    return {
      session: new Session(ratchet, output.remoteIdentity, header.baseKey, output.mode, header),
      sharedSecret: output.sharedSecret,
      associatedData: output.associatedData,
      rootStep,
    };
  }

  /**
   * The responder on a `PreKeyMessage` with no usable session (§4.3 step 2):
   * builds the session and decrypts the inner message; only then deletes the
   * one-time prekey. Throws (and keeps nothing) on any failure.
   */
  static respond(
    identity: IdentityKeyPair,
    prekeys: LocalPreKeys,
    header: InitialHeader,
    ratchetMessage: Uint8Array,
    rng: Rng = systemRng,
  ): { session: Session; plaintext: Uint8Array } {
    const output = respond(identity, prekeys, header);
    const signed = prekeys.signedPreKey(header.signedPreKeyId)!;
    const ratchet = RatchetSession.responder(output.sharedSecret, output.associatedData, signed.secret());
    const plaintext = ratchet.decrypt(ratchetMessage, rng);
    if (header.oneTimePreKeyId !== undefined) {
      prekeys.removeOneTime(header.oneTimePreKeyId);
    }
    return { session: new Session(ratchet, output.remoteIdentity, header.baseKey, output.mode), plaintext };
  }

  /**
   * The responder on a `SessionMessage` from a device it has no session with:
   * it must be a `PreKeyMessage`; then as `respond`.
   */
  static accept(
    rng: Rng,
    identity: IdentityKeyPair,
    prekeys: LocalPreKeys,
    bytes: Uint8Array,
  ): { session: Session; plaintext: Uint8Array } {
    const message = decodeSessionMessage(bytes);
    if (message.type !== "prekey") {
      throw new SessionError("new_session_required");
    }
    return Session.respond(identity, prekeys, message.header, message.message, rng);
  }

  /** The persisted `SessionState` (§9.2); the pending fields only while awaiting a reply. */
  toBytes(): Uint8Array {
    const p = this.pending;
    return toBinary(
      SessionStateSchema,
      create(SessionStateSchema, {
        version: STATE_VERSION,
        ratchet: this.ratchet.toBytes(),
        remoteIdentity: this.remoteIdentity.toBytes(),
        baseKey: this.baseKey,
        hybrid: this.mode === "hybrid",
        pendingSignedPrekeyId: p?.signedPreKeyId,
        pendingOneTimePrekeyId: p?.oneTimePreKeyId,
        pendingKemPrekeyId: p?.kemPreKeyId,
        pendingKemCiphertext: p?.kemCiphertext ?? new Uint8Array(0),
        localIdentity: p?.identityKey ?? new Uint8Array(0),
      }),
    );
  }

  /** Restores a session from `SessionState` bytes (`StateError`). */
  static fromBytes(bytes: Uint8Array): Session {
    const state = decodeState(SessionStateSchema, bytes);
    const ratchet = RatchetSession.fromBytes(state.ratchet);
    let remote: IdentityKey;
    try {
      remote = IdentityKey.fromBytes(state.remoteIdentity);
    } catch {
      throw new StateError("invalid_field", "remote_identity");
    }
    requireLength(state.baseKey, KEY_LEN, "base_key");
    let pending: InitialHeader | undefined;
    if (state.pendingSignedPrekeyId !== undefined) {
      requireLength(state.localIdentity, KEY_LEN, "local_identity");
      const hybrid = state.pendingKemPrekeyId !== undefined;
      requireField(hybrid === state.hybrid, "pending_kem_prekey_id");
      if (hybrid) {
        requireLength(state.pendingKemCiphertext, KEM_CIPHERTEXT_LEN, "pending_kem_ciphertext");
      }
      pending = {
        identityKey: state.localIdentity,
        baseKey: state.baseKey,
        signedPreKeyId: state.pendingSignedPrekeyId,
        oneTimePreKeyId: state.pendingOneTimePrekeyId,
        kemPreKeyId: state.pendingKemPrekeyId,
        kemCiphertext: hybrid ? state.pendingKemCiphertext : undefined,
      };
    }
    return new Session(ratchet, remote, state.baseKey, state.hybrid ? "hybrid" : "classical", pending);
  }

  /** True while the initiator has not yet decrypted a reply (it sends PreKeyMessages). */
  get awaitingReply(): boolean {
    return this.pending !== undefined;
  }

  /** True when a `PreKeyMessage` with `header` belongs to this session (§4.3 step 1). */
  matches(header: InitialHeader): boolean {
    return (
      !this.awaitingReply &&
      bytesEqual(this.remoteIdentity.toBytes(), header.identityKey) &&
      bytesEqual(this.baseKey, header.baseKey)
    );
  }

  /** Encrypts a `SessionMessage`: type 0x02 while awaiting a reply, 0x01 after. */
  encrypt(plaintext: Uint8Array): Uint8Array {
    const inner = this.ratchet.encrypt(plaintext);
    if (this.pending !== undefined) {
      return encodePreKeyMessage(this.pending, inner);
    }
    return concat(Uint8Array.of(SESSION_MESSAGE_RATCHET), inner);
  }

  /**
   * Decrypts a `SessionMessage` addressed to this session: a ratchet message,
   * or a prekey message that `matches` it. The first successful decrypt ends
   * the initiator's wait for a reply.
   */
  decrypt(bytes: Uint8Array, rng: Rng = systemRng): Uint8Array {
    const message = decodeSessionMessage(bytes);
    if (message.type === "prekey" && !this.matches(message.header)) {
      throw new SessionError("wrong_session", "prekey message of another handshake");
    }
    const plaintext = this.ratchet.decrypt(message.message, rng);
    this.pending = undefined;
    return plaintext;
  }
}

redactSecrets(Session);

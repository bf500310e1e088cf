/**
 * Sender Keys for group messages (SPEC.md §6): a sender's chain key,
 * iteration and Ed25519 signing key per generation; the 73-byte
 * `SenderKeyDistribution`; signed messages `H ‖ C ‖ S`; receivers that verify
 * before touching the chain and keep at most 2000 skipped keys and 5
 * generations per sender.
 *
 * Every decrypt works on copies: a refused message leaves the state exactly
 * as it was. Persisted as the §6.7 states (`toBytes` / `fromBytes`). This
 * module does not decide who gets a distribution (§6.3, the client's job).
 */
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { ed25519 } from "@noble/curves/ed25519.js";

import { bytesEqual, concat, copy, readU32be, redactSecrets, u32be, wipe } from "./bytes.js";
import {
  type InboundSenderKeyState,
  InboundSenderKeyStateSchema,
  OutboundSenderKeyStateSchema,
  SenderKeyRecordStateSchema,
} from "./gen/state_pb.js";
import { isValidEd25519PublicKey, verifyEd25519Strict } from "./identity.js";
import { kdfCk, messageKeys } from "./kdf.js";
import {
  KEY_LEN,
  MAX_GROUP_ID_LEN,
  MAX_SENDER_KEY_GENERATIONS,
  MAX_SENDER_KEY_SKIP,
  MAX_SENDER_KEY_SKIPPED,
  SENDER_KEY_DISTRIBUTION_VERSION,
  SENDER_KEY_MESSAGE_INFO,
  SENDER_KEY_MESSAGE_VERSION,
  SIGNATURE_LEN,
  STATE_VERSION,
  TAG_LEN,
} from "./labels.js";
import type { Rng } from "./rng.js";
import { decodeState, requireField, requireLength, StateError } from "./state.js";

function stateGroupId(groupId: Uint8Array): Uint8Array {
  requireField(groupId.length >= 1 && groupId.length <= MAX_GROUP_ID_LEN, "group_id");
  return copy(groupId);
}

/** The reserved iteration (§6.2). */
export const RESERVED_ITERATION = 0xffffffff;
/** Length of a `SenderKeyDistribution` (§6.3). */
export const SENDER_KEY_DISTRIBUTION_LEN = 73;
/** Length of the header `H` (§6.4). */
export const SENDER_KEY_HEADER_LEN = 9;
/** The shortest sender-key message: 9 + 16 + 64 = 89 bytes (§6.4). */
export const MIN_SENDER_KEY_MESSAGE_LEN = SENDER_KEY_HEADER_LEN + TAG_LEN + SIGNATURE_LEN;

/** Sender-key failures, with the names of SPEC.md §6. */
export type SenderKeyErrorKind =
  | "invalid_group_id"
  | "invalid_length"
  | "unsupported_version"
  | "reserved_iteration"
  | "invalid_signing_key"
  | "chain_exhausted"
  | "too_short"
  | "unknown_key_id"
  | "bad_signature"
  | "duplicate_or_expired"
  | "too_far_ahead"
  | "decryption_failed";

/** A sender-key operation was refused; the state is unchanged. */
export class SenderKeyError extends Error {
  /** Which failure. */
  readonly kind: SenderKeyErrorKind;

  /** @param kind the failure */
  constructor(kind: SenderKeyErrorKind, message?: string) {
    super(message ?? kind.replaceAll("_", " "));
    this.name = "SenderKeyError";
    this.kind = kind;
  }
}

/** Checks a group id: 1..=255 bytes (§6.1). Returns a copy. */
export function checkGroupId(groupId: Uint8Array): Uint8Array {
  if (groupId.length === 0 || groupId.length > MAX_GROUP_ID_LEN) {
    throw new SenderKeyError("invalid_group_id");
  }
  return copy(groupId);
}

/** The fixed 73-byte distribution of one generation (§6.3). */
export interface SenderKeyDistribution {
  /** Names the generation. */
  keyId: number;
  /** The sender's next iteration. */
  iteration: number;
  /** `CK_iteration`, 32 bytes. */
  chainKey: Uint8Array;
  /** The generation's Ed25519 public signing key. */
  signingKey: Uint8Array;
}

/** Encodes a distribution (73 bytes). */
export function encodeSenderKeyDistribution(d: SenderKeyDistribution): Uint8Array {
  return concat(Uint8Array.of(SENDER_KEY_DISTRIBUTION_VERSION), u32be(d.keyId), u32be(d.iteration), d.chainKey, d.signingKey);
}

/** Parses a distribution, refusing per §6.3 (`SenderKeyError`, no state created). */
export function decodeSenderKeyDistribution(bytes: Uint8Array): SenderKeyDistribution {
  if (bytes.length !== SENDER_KEY_DISTRIBUTION_LEN) {
    throw new SenderKeyError("invalid_length");
  }
  if (bytes[0] !== SENDER_KEY_DISTRIBUTION_VERSION) {
    throw new SenderKeyError("unsupported_version");
  }
  const iteration = readU32be(bytes, 5);
  if (iteration === RESERVED_ITERATION) {
    throw new SenderKeyError("reserved_iteration");
  }
  const signingKey = bytes.slice(41, 73);
  if (!isValidEd25519PublicKey(signingKey)) {
    throw new SenderKeyError("invalid_signing_key");
  }
  return { keyId: readU32be(bytes, 1), iteration, chainKey: bytes.slice(9, 41), signingKey };
}

function associatedData(groupId: Uint8Array, header: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(groupId.length), groupId, header);
}

function header(keyId: number, iteration: number): Uint8Array {
  return concat(Uint8Array.of(SENDER_KEY_MESSAGE_VERSION), u32be(keyId), u32be(iteration));
}

/** Every value of one encryption, for test vectors only (SPEC.md §17). */
export interface SenderKeyMessageTrace {
  /** Generation. */
  keyId: number;
  /** The message's iteration. */
  iteration: number;
  /** `CK_i`. */
  chainKey: Uint8Array;
  /** `MK_i`. */
  messageKey: Uint8Array;
  /** AEAD key. */
  aeadKey: Uint8Array;
  /** AEAD nonce. */
  nonce: Uint8Array;
  /** `u8(len(group_id)) ‖ group_id ‖ H`. */
  associatedData: Uint8Array;
  /** `ciphertext ‖ tag`. */
  ciphertext: Uint8Array;
  /** Ed25519 signature over `H ‖ C`. */
  signature: Uint8Array;
  /** `H ‖ C ‖ S`. */
  message: Uint8Array;
}

/** The sending side of one generation (§6.1, §6.5). */
export class OutboundSenderKey {
  private readonly groupId: Uint8Array;
  private readonly keyId: number;
  private iteration: number;
  private chainKey: Uint8Array;
  private readonly signingSeed: Uint8Array;
  private readonly signingKey: Uint8Array;

  private constructor(groupId: Uint8Array, keyId: number, iteration: number, chainKey: Uint8Array, signingSeed: Uint8Array) {
    this.groupId = groupId;
    this.keyId = keyId;
    this.iteration = iteration;
    this.chainKey = chainKey;
    this.signingSeed = signingSeed;
    this.signingKey = ed25519.getPublicKey(signingSeed);
  }

  /**
   * Creates a generation: draws 4 bytes (key id), 32 (`CK_0`), 32 (signing
   * seed), in that order (§6.1). On rotation pass the previous key id: an
   * equal draw becomes `key_id + 1 mod 2^32`.
   */
  static create(rng: Rng, groupId: Uint8Array, previousKeyId?: number): OutboundSenderKey {
    const gid = checkGroupId(groupId);
    let keyId = readU32be(rng.fill(4), 0);
    const chainKey = rng.fill(KEY_LEN);
    const seed = rng.fill(KEY_LEN);
    if (previousKeyId !== undefined && keyId === previousKeyId) {
      keyId = (keyId + 1) >>> 0;
    }
    return new OutboundSenderKey(gid, keyId, 0, chainKey, seed);
  }

  /** The persisted `OutboundSenderKeyState` (§6.7). */
  toBytes(): Uint8Array {
    return toBinary(
      OutboundSenderKeyStateSchema,
      create(OutboundSenderKeyStateSchema, {
        version: STATE_VERSION,
        groupId: this.groupId,
        keyId: this.keyId,
        iteration: this.iteration,
        chainKey: this.chainKey,
        signingSeed: this.signingSeed,
      }),
    );
  }

  /** Restores from `OutboundSenderKeyState` bytes (`StateError` on anything §6.7 refuses). */
  static fromBytes(bytes: Uint8Array): OutboundSenderKey {
    const state = decodeState(OutboundSenderKeyStateSchema, bytes);
    return new OutboundSenderKey(
      stateGroupId(state.groupId),
      state.keyId,
      state.iteration,
      copy(requireLength(state.chainKey, KEY_LEN, "chain_key")),
      copy(requireLength(state.signingSeed, KEY_LEN, "signing_seed")),
    );
  }

  /** The generation's key id. */
  get currentKeyId(): number {
    return this.keyId;
  }

  /** The next iteration to send. */
  get nextIteration(): number {
    return this.iteration;
  }

  /** The distribution of the current position (§6.3); refused at the reserved iteration. */
  distribution(): SenderKeyDistribution {
    if (this.iteration === RESERVED_ITERATION) {
      throw new SenderKeyError("chain_exhausted");
    }
    return { keyId: this.keyId, iteration: this.iteration, chainKey: copy(this.chainKey), signingKey: copy(this.signingKey) };
  }

  /** Encrypts and signs one group message (§6.5). */
  encrypt(plaintext: Uint8Array): Uint8Array {
    return this.encryptTraced(plaintext).message;
  }

  /** `encrypt` with every intermediate value, for test vectors and conformance only. */
  encryptTraced(plaintext: Uint8Array): SenderKeyMessageTrace {
    const i = this.iteration;
    if (i === RESERVED_ITERATION) {
      throw new SenderKeyError("chain_exhausted");
    }
    const chainKey = this.chainKey;
    const { messageKey, nextChainKey } = kdfCk(chainKey);
    const { aeadKey, nonce } = messageKeys(messageKey, SENDER_KEY_MESSAGE_INFO);
    const h = header(this.keyId, i);
    const ad = associatedData(this.groupId, h);
    const ciphertext = chacha20poly1305(aeadKey, nonce, ad).encrypt(plaintext);
    const signed = concat(h, ciphertext);
    const signature = ed25519.sign(signed, this.signingSeed);
    this.chainKey = nextChainKey;
    this.iteration = i + 1;
    return {
      keyId: this.keyId,
      iteration: i,
      chainKey,
      messageKey,
      aeadKey,
      nonce,
      associatedData: ad,
      ciphertext,
      signature,
      message: concat(signed, signature),
    };
  }
}

/** A parsed sender-key message (§6.4). */
interface ParsedMessage {
  keyId: number;
  iteration: number;
  header: Uint8Array;
  ciphertext: Uint8Array;
  signed: Uint8Array;
  signature: Uint8Array;
}

function parseMessage(message: Uint8Array): ParsedMessage {
  if (message.length < MIN_SENDER_KEY_MESSAGE_LEN) {
    throw new SenderKeyError("too_short");
  }
  if (message[0] !== SENDER_KEY_MESSAGE_VERSION) {
    throw new SenderKeyError("unsupported_version");
  }
  const iteration = readU32be(message, 5);
  if (iteration === RESERVED_ITERATION) {
    throw new SenderKeyError("reserved_iteration");
  }
  const split = message.length - SIGNATURE_LEN;
  return {
    keyId: readU32be(message, 1),
    iteration,
    header: message.subarray(0, SENDER_KEY_HEADER_LEN),
    ciphertext: message.subarray(SENDER_KEY_HEADER_LEN, split),
    signed: message.subarray(0, split),
    signature: message.subarray(split),
  };
}

/** The receiving side of one generation (§6.6). */
export class InboundSenderKey {
  private readonly groupId: Uint8Array;
  /** The generation. */
  readonly keyId: number;
  /** The public signing key. */
  readonly signingKey: Uint8Array;
  private iteration: number;
  private chainKey: Uint8Array;
  private skipped = new Map<number, Uint8Array>();

  /** Builds the receiving state of `distribution` for `groupId` (the enclosing message's group). */
  constructor(groupId: Uint8Array, distribution: SenderKeyDistribution) {
    this.groupId = checkGroupId(groupId);
    if (distribution.iteration === RESERVED_ITERATION) {
      throw new SenderKeyError("reserved_iteration");
    }
    if (!isValidEd25519PublicKey(distribution.signingKey)) {
      throw new SenderKeyError("invalid_signing_key");
    }
    if (distribution.chainKey.length !== KEY_LEN) {
      throw new SenderKeyError("invalid_length");
    }
    this.keyId = distribution.keyId;
    this.signingKey = copy(distribution.signingKey);
    this.iteration = distribution.iteration;
    this.chainKey = copy(distribution.chainKey);
  }

  /** The next expected iteration `n`. */
  get nextIteration(): number {
    return this.iteration;
  }

  /** @internal the §6.7 message of this generation. */
  toState(): MessageInitShape<typeof InboundSenderKeyStateSchema> {
    return {
      version: STATE_VERSION,
      groupId: this.groupId,
      keyId: this.keyId,
      iteration: this.iteration,
      chainKey: this.chainKey,
      signingKey: this.signingKey,
      skipped: [...this.skipped].map(([iteration, messageKey]) => ({ iteration, messageKey })),
    };
  }

  /** The persisted `InboundSenderKeyState` (§6.7). */
  toBytes(): Uint8Array {
    return toBinary(InboundSenderKeyStateSchema, create(InboundSenderKeyStateSchema, this.toState()));
  }

  /** Restores from `InboundSenderKeyState` bytes (`StateError`). */
  static fromBytes(bytes: Uint8Array): InboundSenderKey {
    return InboundSenderKey.fromState(decodeState(InboundSenderKeyStateSchema, bytes));
  }

  /** @internal restores a decoded generation, checking every field of §6.7. */
  static fromState(state: InboundSenderKeyState): InboundSenderKey {
    if (state.version !== STATE_VERSION) {
      throw new StateError("unsupported_version");
    }
    const groupId = stateGroupId(state.groupId);
    requireLength(state.chainKey, KEY_LEN, "chain_key");
    requireField(isValidEd25519PublicKey(state.signingKey), "signing_key");
    requireField(state.skipped.length <= MAX_SENDER_KEY_SKIPPED, "skipped");
    // A stored next iteration may be 0xFFFFFFFF (after iteration 0xFFFFFFFE
    // the skipped keys stay usable, §6.2), which a distribution may not carry.
    const generation = new InboundSenderKey(groupId, {
      keyId: state.keyId,
      iteration: 0,
      chainKey: state.chainKey,
      signingKey: state.signingKey,
    });
    generation.iteration = state.iteration;
    let last = -1;
    for (const key of state.skipped) {
      requireField(key.iteration > last && key.iteration < state.iteration, "skipped.iteration");
      last = key.iteration;
      generation.skipped.set(key.iteration, copy(requireLength(key.messageKey, KEY_LEN, "skipped.message_key")));
    }
    return generation;
  }

  /** @internal the group id. */
  get groupIdBytes(): Uint8Array {
    return this.groupId;
  }

  /** Stored skipped keys. */
  get skippedCount(): number {
    return this.skipped.size;
  }

  /** Decrypts one message of this generation (§6.6); `SenderKeyError` leaves the state unchanged. */
  decrypt(message: Uint8Array): Uint8Array {
    const parsed = parseMessage(message);
    if (parsed.keyId !== this.keyId) {
      throw new SenderKeyError("unknown_key_id");
    }
    return this.decryptParsed(parsed);
  }

  /** @internal decrypts a message already parsed and dispatched by key id. */
  decryptParsed(parsed: ParsedMessage): Uint8Array {
    if (!verifyEd25519Strict(this.signingKey, parsed.signed, parsed.signature)) {
      throw new SenderKeyError("bad_signature");
    }
    const ad = associatedData(this.groupId, parsed.header);
    const j = parsed.iteration;
    const n = this.iteration;
    if (j < n) {
      const mk = this.skipped.get(j);
      if (mk === undefined) {
        throw new SenderKeyError("duplicate_or_expired");
      }
      const plaintext = open(mk, ad, parsed.ciphertext);
      this.skipped.delete(j);
      wipe(mk);
      return plaintext;
    }
    if (j - n > MAX_SENDER_KEY_SKIP) {
      throw new SenderKeyError("too_far_ahead");
    }
    const staged: [number, Uint8Array][] = [];
    let ck = this.chainKey;
    for (let i = n; i < j; i++) {
      const step = kdfCk(ck);
      staged.push([i, step.messageKey]);
      if (ck !== this.chainKey) {
        wipe(ck);
      }
      ck = step.nextChainKey;
    }
    const step = kdfCk(ck);
    if (ck !== this.chainKey) {
      wipe(ck);
    }
    let plaintext: Uint8Array;
    try {
      plaintext = open(step.messageKey, ad, parsed.ciphertext);
    } catch (error) {
      wipe(step.nextChainKey, step.messageKey, ...staged.map(([, k]) => k));
      throw error;
    }
    for (const [i, key] of staged) {
      this.skipped.set(i, key);
    }
    for (const [i, key] of this.skipped) {
      if (this.skipped.size <= MAX_SENDER_KEY_SKIPPED) {
        break;
      }
      wipe(key);
      this.skipped.delete(i);
    }
    wipe(this.chainKey, step.messageKey);
    this.chainKey = step.nextChainKey;
    this.iteration = j + 1;
    return plaintext;
  }
}

function open(messageKey: Uint8Array, ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  const { aeadKey, nonce } = messageKeys(messageKey, SENDER_KEY_MESSAGE_INFO);
  try {
    return chacha20poly1305(aeadKey, nonce, ad).decrypt(ciphertext);
  } catch {
    throw new SenderKeyError("decryption_failed");
  } finally {
    wipe(aeadKey);
  }
}

/** What one (group, sender device) record keeps: up to 5 generations, dispatched by key id (§6.6). */
export class SenderKeyRecord {
  private readonly groupId: Uint8Array | undefined;
  private generations: InboundSenderKey[] = [];

  /** @param groupId the group this record belongs to (unknown only for an empty restored record) */
  constructor(groupId?: Uint8Array) {
    this.groupId = groupId === undefined ? undefined : checkGroupId(groupId);
  }

  /** Number of generations kept. */
  get size(): number {
    return this.generations.length;
  }

  /**
   * Adds a generation from a distribution received pairwise. A known key id
   * with the same signing key is ignored (a replay must not rewind the
   * chain); a known key id with another signing key replaces it; the oldest
   * generation is evicted beyond 5.
   */
  addDistribution(distribution: SenderKeyDistribution): void {
    const existing = this.generations.findIndex((g) => g.keyId === distribution.keyId);
    if (existing >= 0 && bytesEqual(this.generations[existing]!.signingKey, distribution.signingKey)) {
      return;
    }
    const groupId = this.groupId ?? this.generations[0]?.groupIdBytes;
    if (groupId === undefined) {
      throw new SenderKeyError("invalid_group_id", "a record restored empty has no group");
    }
    const generation = new InboundSenderKey(groupId, distribution);
    if (existing >= 0) {
      this.generations.splice(existing, 1);
    }
    this.generations.push(generation);
    while (this.generations.length > MAX_SENDER_KEY_GENERATIONS) {
      this.generations.shift();
    }
  }

  /** The generation with `keyId`, if kept. */
  generation(keyId: number): InboundSenderKey | undefined {
    return this.generations.find((g) => g.keyId === keyId);
  }

  /** The persisted `SenderKeyRecordState` (§6.7), generations oldest first. */
  toBytes(): Uint8Array {
    return toBinary(
      SenderKeyRecordStateSchema,
      create(SenderKeyRecordStateSchema, { version: STATE_VERSION, generations: this.generations.map((g) => g.toState()) }),
    );
  }

  /** Restores a record (`StateError`: more than 5 generations, a repeated key id, any invalid generation). */
  static fromBytes(bytes: Uint8Array): SenderKeyRecord {
    const state = decodeState(SenderKeyRecordStateSchema, bytes);
    requireField(state.generations.length <= MAX_SENDER_KEY_GENERATIONS, "generations");
    const generations = state.generations.map((g) => InboundSenderKey.fromState(g));
    requireField(new Set(generations.map((g) => g.keyId)).size === generations.length, "generations.key_id");
    const record = new SenderKeyRecord(generations[0]?.groupIdBytes);
    record.generations = generations;
    return record;
  }

  /** Decrypts a group message with the generation its key id names. */
  decrypt(message: Uint8Array): Uint8Array {
    const parsed = parseMessage(message);
    const generation = this.generations.find((g) => g.keyId === parsed.keyId);
    if (generation === undefined) {
      throw new SenderKeyError("unknown_key_id");
    }
    return generation.decryptParsed(parsed);
  }
}

redactSecrets(OutboundSenderKey);
redactSecrets(InboundSenderKey);
redactSecrets(SenderKeyRecord);

/**
 * The Double Ratchet session (SPEC.md §5): initialisation (§5.2), encrypt
 * (§5.5) and decrypt (§5.6) with the skipped-key store bounded per chain
 * (`MAX_SKIP_PER_CHAIN`, 1000) and in total (`MAX_SKIPPED_KEYS_TOTAL`, 2000,
 * oldest chain first, then ascending `N`).
 *
 * Failure semantics (§5.8): every bound is checked before any key is
 * derived; decrypt stages all changes in locals and commits them only after
 * the AEAD verified, so a refused message leaves the session exactly as it
 * was (a ratchet key pair drawn for a DH step is discarded). The AEAD
 * associated data is `AD ‖ version ‖ header`, the message's first 41 bytes
 * after the handshake's `AD`.
 *
 * Persisted as `RatchetState` (§5.7): `toBytes` / `fromBytes`.
 * Not owned here: the handshake (`handshake.ts`) and the prekey-message
 * wrapping (`session.ts`).
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";

import { create, toBinary } from "@bufbuild/protobuf";

import { bytesEqual, concat, copy, fromHex, redactSecrets, toHex, wipe } from "../bytes.js";
import { RatchetStateSchema } from "../gen/state_pb.js";
import { KeyError, x25519Dh, x25519PublicKey } from "../identity.js";
import { kdfCk, kdfRk, messageKeys, type RootStep } from "../kdf.js";
import { KEY_LEN, MAX_SKIP_PER_CHAIN, MAX_SKIPPED_KEYS_TOTAL, RATCHET_MESSAGE_VERSION, STATE_VERSION } from "../labels.js";
import { type Rng, systemRng } from "../rng.js";
import { decodeState, requireField, requireLength, StateError } from "../state.js";
import { encodeHeader, MAX_MESSAGE_NUMBER, parseRatchetMessage, RatchetError } from "./header.js";

/** A chain key and its index (`Ns` or `Nr`: keys already derived). */
interface Chain {
  key: Uint8Array;
  index: number;
}

/** One `KDF_RK` as traced for the test vectors (§5.9, §17.1). */
export interface RootStepTrace {
  /** Our ratchet public key in the DH. */
  ownRatchetKey: Uint8Array;
  /** The peer's ratchet public key in the DH. */
  remoteRatchetKey: Uint8Array;
  /** The X25519 output. */
  dhOutput: Uint8Array;
  /** `RK` before. */
  previousRootKey: Uint8Array;
  /** `RK` after. */
  rootKey: Uint8Array;
  /** The new chain key. */
  chainKey: Uint8Array;
}

/** Every value of one encrypt or decrypt, for test vectors and conformance only (§5.9). */
export interface MessageTrace {
  /** Root steps taken (decrypt with a DH step: two). */
  rootSteps: RootStepTrace[];
  /** The 40 header bytes. */
  header: Uint8Array;
  /** The chain key `mk` came from; undefined when `mk` came from the skipped-key store. */
  chainKey: Uint8Array | undefined;
  /** `mk`. */
  messageKey: Uint8Array;
  /** AEAD key. */
  aeadKey: Uint8Array;
  /** AEAD nonce. */
  nonce: Uint8Array;
  /** The AEAD associated data (`AD ‖ version ‖ header`). */
  associatedData: Uint8Array;
  /** `ciphertext ‖ tag`. */
  sealed: Uint8Array;
}

/** Keys derived along a chain, not yet committed. */
interface Derived {
  skipped: [number, Uint8Array][];
  chainKey: Uint8Array;
  messageKey: Uint8Array;
  nextChainKey: Uint8Array;
}

/** Derives the keys `from … target−1` as skipped and `mk` for `target`. */
function deriveTo(chainKey: Uint8Array, from: number, target: number): Derived {
  const skipped: [number, Uint8Array][] = [];
  let ck = chainKey;
  for (let n = from; n < target; n++) {
    const step = kdfCk(ck);
    skipped.push([n, step.messageKey]);
    if (ck !== chainKey) {
      wipe(ck);
    }
    ck = step.nextChainKey;
  }
  const step = kdfCk(ck);
  return { skipped, chainKey: ck, messageKey: step.messageKey, nextChainKey: step.nextChainKey };
}

/** Derives the keys `from … end−1` as skipped (the rest of a chain being left). */
function deriveSkipped(chainKey: Uint8Array, from: number, end: number): [number, Uint8Array][] {
  const skipped: [number, Uint8Array][] = [];
  let ck = chainKey;
  for (let n = from; n < end; n++) {
    const step = kdfCk(ck);
    skipped.push([n, step.messageKey]);
    if (ck !== chainKey) {
      wipe(ck);
    }
    ck = step.nextChainKey;
  }
  if (ck !== chainKey) {
    wipe(ck);
  }
  return skipped;
}

function ratchetDh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  try {
    return x25519Dh(privateKey, publicKey);
  } catch (e) {
    if (e instanceof KeyError) {
      throw new RatchetError("invalid_ratchet_key", "non-contributory X25519 output");
    }
    throw e;
  }
}

function traceRoot(own: Uint8Array, remote: Uint8Array, dh: Uint8Array, before: Uint8Array, step: RootStep): RootStepTrace {
  return {
    ownRatchetKey: copy(own),
    remoteRatchetKey: copy(remote),
    dhOutput: dh,
    previousRootKey: copy(before),
    rootKey: copy(step.rootKey),
    chainKey: copy(step.chainKey),
  };
}

/** One pairwise Double Ratchet session. */
export class RatchetSession {
  private readonly ad: Uint8Array;
  private rootKey: Uint8Array;
  private dhsPrivate: Uint8Array;
  private dhsPublic: Uint8Array;
  private dhr: Uint8Array | undefined;
  private sending: Chain | undefined;
  private receiving: Chain | undefined;
  private previousChainLength = 0;
  /** Skipped message keys: peer ratchet key (hex) → N → mk; chains in the order first stored. */
  private readonly skipped = new Map<string, Map<number, Uint8Array>>();
  private skippedTotal = 0;

  private constructor(ad: Uint8Array, rootKey: Uint8Array, dhsPrivate: Uint8Array) {
    this.ad = copy(ad);
    this.rootKey = rootKey;
    this.dhsPrivate = dhsPrivate;
    this.dhsPublic = x25519PublicKey(dhsPrivate);
  }

  /** The initiator (§5.2): draws `DHs` (32 bytes) and takes the peer's signed prekey as `DHr`. */
  static initiator(rng: Rng, sharedSecret: Uint8Array, associatedData: Uint8Array, remoteRatchetKey: Uint8Array): RatchetSession {
    return RatchetSession.initiatorTraced(rng, sharedSecret, associatedData, remoteRatchetKey).session;
  }

  /** `initiator` with the trace of its root step, for test vectors only. */
  static initiatorTraced(
    rng: Rng,
    sharedSecret: Uint8Array,
    associatedData: Uint8Array,
    remoteRatchetKey: Uint8Array,
  ): { session: RatchetSession; rootStep: RootStepTrace } {
    if (sharedSecret.length !== KEY_LEN || remoteRatchetKey.length !== KEY_LEN) {
      throw new RangeError("shared secret and ratchet key are 32 bytes");
    }
    const dhs = rng.fill(KEY_LEN);
    const session = new RatchetSession(associatedData, copy(sharedSecret), dhs);
    const dh = ratchetDh(dhs, remoteRatchetKey);
    const step = kdfRk(sharedSecret, dh);
    const rootStep = traceRoot(session.dhsPublic, remoteRatchetKey, dh, sharedSecret, step);
    session.rootKey = step.rootKey;
    session.dhr = copy(remoteRatchetKey);
    session.sending = { key: step.chainKey, index: 0 };
    return { session, rootStep };
  }

  /** The responder (§5.2), with its signed prekey pair as first ratchet key pair; it cannot encrypt before a decrypt. */
  static responder(sharedSecret: Uint8Array, associatedData: Uint8Array, signedPreKeyPrivate: Uint8Array): RatchetSession {
    if (sharedSecret.length !== KEY_LEN || signedPreKeyPrivate.length !== KEY_LEN) {
      throw new RangeError("shared secret and ratchet key are 32 bytes");
    }
    return new RatchetSession(associatedData, copy(sharedSecret), copy(signedPreKeyPrivate));
  }

  /** The persisted `RatchetState` (§5.7): fields in number order, skipped chains oldest first. */
  toBytes(): Uint8Array {
    const chain = (c: Chain | undefined) => (c === undefined ? undefined : { chainKey: c.key, index: c.index });
    const state = create(RatchetStateSchema, {
      version: STATE_VERSION,
      associatedData: this.ad,
      rootKey: this.rootKey,
      ownRatchetPrivateKey: this.dhsPrivate,
      remoteRatchetKey: this.dhr ?? new Uint8Array(0),
      sendingChain: chain(this.sending),
      receivingChain: chain(this.receiving),
      previousSendingChainLength: this.previousChainLength,
      skippedChains: [...this.skipped].map(([keyHex, keys]) => ({
        ratchetKey: fromHex(keyHex),
        keys: [...keys].map(([messageNumber, messageKey]) => ({ messageNumber, messageKey })),
      })),
    });
    return toBinary(RatchetStateSchema, state);
  }

  /** Restores a session from `RatchetState` bytes, refusing what §5.7 refuses (`StateError`). */
  static fromBytes(bytes: Uint8Array): RatchetSession {
    const state = decodeState(RatchetStateSchema, bytes);
    requireLength(state.rootKey, KEY_LEN, "root_key");
    requireLength(state.ownRatchetPrivateKey, KEY_LEN, "own_ratchet_private_key");
    requireField(state.remoteRatchetKey.length === 0 || state.remoteRatchetKey.length === KEY_LEN, "remote_ratchet_key");
    const hasRemote = state.remoteRatchetKey.length === KEY_LEN;
    requireField(hasRemote === (state.sendingChain !== undefined), "sending_chain");
    requireField(state.receivingChain === undefined || hasRemote, "receiving_chain");
    const session = new RatchetSession(state.associatedData, copy(state.rootKey), copy(state.ownRatchetPrivateKey));
    session.dhr = hasRemote ? copy(state.remoteRatchetKey) : undefined;
    if (state.sendingChain !== undefined) {
      session.sending = { key: copy(requireLength(state.sendingChain.chainKey, KEY_LEN, "sending_chain.chain_key")), index: state.sendingChain.index };
    }
    if (state.receivingChain !== undefined) {
      session.receiving = { key: copy(requireLength(state.receivingChain.chainKey, KEY_LEN, "receiving_chain.chain_key")), index: state.receivingChain.index };
    }
    session.previousChainLength = state.previousSendingChainLength;
    let total = 0;
    for (const chain of state.skippedChains) {
      const keyHex = toHex(requireLength(chain.ratchetKey, KEY_LEN, "skipped_chains.ratchet_key"));
      requireField(chain.keys.length > 0, "skipped_chains.keys");
      requireField(!session.skipped.has(keyHex), "skipped_chains.ratchet_key");
      const keys = new Map<number, Uint8Array>();
      let last = -1;
      for (const key of chain.keys) {
        requireField(key.messageNumber > last, "skipped_chains.keys.message_number");
        last = key.messageNumber;
        keys.set(key.messageNumber, copy(requireLength(key.messageKey, KEY_LEN, "skipped_chains.keys.message_key")));
      }
      total += keys.size;
      if (total > MAX_SKIPPED_KEYS_TOTAL) {
        throw new StateError("invalid_field", "skipped_chains");
      }
      session.skipped.set(keyHex, keys);
    }
    session.skippedTotal = total;
    return session;
  }

  /** True once this session has a sending chain (the responder after its first decrypt). */
  get canEncrypt(): boolean {
    return this.sending !== undefined;
  }

  /** Skipped message keys stored. */
  get skippedKeyCount(): number {
    return this.skippedTotal;
  }

  /** Encrypts one message (§5.5); draws no randomness. */
  encrypt(plaintext: Uint8Array): Uint8Array {
    return this.encryptTraced(plaintext).message;
  }

  /** `encrypt` with its trace, for test vectors and conformance only. */
  encryptTraced(plaintext: Uint8Array): { message: Uint8Array; trace: MessageTrace } {
    const chain = this.sending;
    if (chain === undefined) {
      throw new RatchetError("no_sending_chain");
    }
    if (chain.index === MAX_MESSAGE_NUMBER) {
      throw new RatchetError("chain_exhausted");
    }
    const { messageKey, nextChainKey } = kdfCk(chain.key);
    const header = encodeHeader({
      ratchetKey: this.dhsPublic,
      previousChainLength: this.previousChainLength,
      messageNumber: chain.index,
    });
    const prefix = concat(Uint8Array.of(RATCHET_MESSAGE_VERSION), header);
    const { aeadKey, nonce } = messageKeys(messageKey);
    const associatedData = concat(this.ad, prefix);
    const sealed = chacha20poly1305(aeadKey, nonce, associatedData).encrypt(plaintext);
    const chainKey = chain.key;
    this.sending = { key: nextChainKey, index: chain.index + 1 };
    return {
      message: concat(prefix, sealed),
      trace: { rootSteps: [], header, chainKey, messageKey, aeadKey, nonce, associatedData, sealed },
    };
  }

  /** Decrypts one message (§5.6); a DH step draws a new ratchet key from `rng`. */
  decrypt(message: Uint8Array, rng: Rng = systemRng): Uint8Array {
    return this.decryptTraced(message, rng).plaintext;
  }

  /** `decrypt` with its trace, for test vectors and conformance only. */
  decryptTraced(message: Uint8Array, rng: Rng = systemRng): { plaintext: Uint8Array; trace: MessageTrace } {
    const parsed = parseRatchetMessage(message);
    const h = parsed.header;
    const keyHex = toHex(h.ratchetKey);
    const associatedData = concat(this.ad, parsed.authenticatedPrefix);

    // Step 2: a skipped key.
    const stored = this.skipped.get(keyHex);
    const skippedKey = stored?.get(h.messageNumber);
    if (stored !== undefined && skippedKey !== undefined) {
      const { plaintext, aeadKey, nonce } = open(skippedKey, associatedData, parsed.sealed);
      const trace: MessageTrace = {
        rootSteps: [],
        header: parsed.headerBytes,
        chainKey: undefined,
        messageKey: copy(skippedKey),
        aeadKey,
        nonce,
        associatedData,
        sealed: parsed.sealed,
      };
      stored.delete(h.messageNumber);
      this.skippedTotal -= 1;
      if (stored.size === 0) {
        this.skipped.delete(keyHex);
      }
      wipe(skippedKey);
      return { plaintext, trace };
    }
    // Step 3.
    if (h.messageNumber === MAX_MESSAGE_NUMBER) {
      throw new RatchetError("message_number_out_of_range");
    }
    // Step 4: the current receiving chain.
    if (this.dhr !== undefined && bytesEqual(h.ratchetKey, this.dhr)) {
      const chain = this.receiving;
      if (chain === undefined) {
        throw new RatchetError("no_receiving_chain");
      }
      if (h.messageNumber < chain.index) {
        throw new RatchetError("duplicate", `message ${h.messageNumber}`);
      }
      if (h.messageNumber - chain.index > MAX_SKIP_PER_CHAIN) {
        throw new RatchetError("too_far_ahead", `skip ${h.messageNumber - chain.index}`);
      }
      const derived = deriveTo(chain.key, chain.index, h.messageNumber);
      const opened = this.openStaged(derived, [], associatedData, parsed.sealed);
      const trace = this.messageTrace([], parsed.headerBytes, derived, opened, associatedData, parsed.sealed);
      this.receiving = { key: derived.nextChainKey, index: h.messageNumber + 1 };
      wipe(chain.key);
      this.storeSkipped(keyHex, derived.skipped);
      return { plaintext: opened.plaintext, trace };
    }
    // Step 5: a chain already left.
    if (stored !== undefined) {
      throw new RatchetError("duplicate", `message ${h.messageNumber} of a chain already left`);
    }
    // Step 6: a new chain, a DH ratchet step; bounds first.
    const nr = this.receiving?.index ?? 0;
    if (h.previousChainLength > nr && h.previousChainLength - nr > MAX_SKIP_PER_CHAIN) {
      throw new RatchetError("too_far_ahead", `skip ${h.previousChainLength - nr}`);
    }
    if (h.messageNumber > MAX_SKIP_PER_CHAIN) {
      throw new RatchetError("too_far_ahead", `skip ${h.messageNumber}`);
    }
    const oldChain =
      this.receiving !== undefined && this.dhr !== undefined && h.previousChainLength > nr
        ? deriveSkipped(this.receiving.key, nr, h.previousChainLength)
        : [];
    let dh1: Uint8Array;
    try {
      dh1 = ratchetDh(this.dhsPrivate, h.ratchetKey);
    } catch (e) {
      wipeEntries(oldChain);
      throw e;
    }
    const step1 = kdfRk(this.rootKey, dh1);
    const trace1 = traceRoot(this.dhsPublic, h.ratchetKey, dh1, this.rootKey, step1);
    const newPrivate = rng.fill(KEY_LEN);
    const newPublic = x25519PublicKey(newPrivate);
    const dh2 = ratchetDh(newPrivate, h.ratchetKey);
    const step2 = kdfRk(step1.rootKey, dh2);
    const trace2 = traceRoot(newPublic, h.ratchetKey, dh2, step1.rootKey, step2);
    const derived = deriveTo(step1.chainKey, 0, h.messageNumber);
    let opened: Opened;
    try {
      opened = this.openStaged(derived, oldChain, associatedData, parsed.sealed);
    } catch (e) {
      wipe(newPrivate, step1.rootKey, step2.rootKey, step2.chainKey);
      throw e;
    }
    // Step 8: commit.
    const oldDhr = this.dhr;
    this.previousChainLength = this.sending?.index ?? 0;
    wipe(this.sending?.key, this.receiving?.key, this.rootKey, this.dhsPrivate, step1.rootKey);
    this.sending = { key: step2.chainKey, index: 0 };
    this.receiving = { key: derived.nextChainKey, index: h.messageNumber + 1 };
    this.rootKey = step2.rootKey;
    this.dhsPrivate = newPrivate;
    this.dhsPublic = newPublic;
    this.dhr = copy(h.ratchetKey);
    if (oldDhr !== undefined) {
      this.storeSkipped(toHex(oldDhr), oldChain);
    }
    this.storeSkipped(keyHex, derived.skipped);
    return {
      plaintext: opened.plaintext,
      trace: this.messageTrace([trace1, trace2], parsed.headerBytes, derived, opened, associatedData, parsed.sealed),
    };
  }

  /** Opens with a staged `mk`; on failure wipes everything staged and refuses. */
  private openStaged(
    derived: Derived,
    oldChain: [number, Uint8Array][],
    associatedData: Uint8Array,
    sealed: Uint8Array,
  ): Opened {
    try {
      return open(derived.messageKey, associatedData, sealed);
    } catch (e) {
      wipeEntries(derived.skipped);
      wipeEntries(oldChain);
      wipe(derived.messageKey, derived.nextChainKey);
      throw e;
    }
  }

  private messageTrace(
    rootSteps: RootStepTrace[],
    header: Uint8Array,
    derived: Derived,
    opened: Opened,
    associatedData: Uint8Array,
    sealed: Uint8Array,
  ): MessageTrace {
    return {
      rootSteps,
      header,
      chainKey: copy(derived.chainKey),
      messageKey: derived.messageKey,
      aeadKey: opened.aeadKey,
      nonce: opened.nonce,
      associatedData,
      sealed,
    };
  }

  /** Adds skipped keys under a chain, then evicts the oldest beyond the total cap. */
  private storeSkipped(keyHex: string, entries: [number, Uint8Array][]): void {
    if (entries.length === 0) {
      return;
    }
    let chain = this.skipped.get(keyHex);
    if (chain === undefined) {
      chain = new Map();
      this.skipped.set(keyHex, chain);
    }
    for (const [n, key] of entries) {
      chain.set(n, key);
    }
    this.skippedTotal += entries.length;
    for (const [chainHex, keys] of this.skipped) {
      if (this.skippedTotal <= MAX_SKIPPED_KEYS_TOTAL) {
        break;
      }
      for (const [n, key] of keys) {
        if (this.skippedTotal <= MAX_SKIPPED_KEYS_TOTAL) {
          break;
        }
        wipe(key);
        keys.delete(n);
        this.skippedTotal -= 1;
      }
      if (keys.size === 0) {
        this.skipped.delete(chainHex);
      }
    }
  }
}

/** An opened message with the AEAD key and nonce used. */
interface Opened {
  plaintext: Uint8Array;
  aeadKey: Uint8Array;
  nonce: Uint8Array;
}

function open(messageKey: Uint8Array, associatedData: Uint8Array, sealed: Uint8Array): Opened {
  const { aeadKey, nonce } = messageKeys(messageKey);
  try {
    return { plaintext: chacha20poly1305(aeadKey, nonce, associatedData).decrypt(sealed), aeadKey, nonce };
  } catch {
    wipe(aeadKey);
    throw new RatchetError("authentication_failed");
  }
}

function wipeEntries(entries: [number, Uint8Array][]): void {
  for (const [, key] of entries) {
    wipe(key);
  }
}

redactSecrets(RatchetSession);

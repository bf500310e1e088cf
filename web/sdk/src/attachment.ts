/**
 * Attachments (SPEC.md §7): a fresh 32-byte key per file, STREAM over
 * ChaCha20-Poly1305 in 65 536-byte segments, each sealed with the nonce
 * `nonce_prefix (7) ‖ u32be(i) ‖ last (1)`, and the SHA-256 digest of the
 * whole ciphertext.
 *
 * Both directions hold at most one segment in memory. The decryptor releases
 * each segment's plaintext once it authenticates; the file is authentic only
 * when `finish` returns without error — on any error the caller MUST discard
 * everything already released, and the decryptor refuses further input.
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { sha256 } from "@noble/hashes/sha2.js";

import { ByteQueue } from "./buffer.js";
import { concat, constantTimeEqual, copy, redactSecrets, u32be, wipe } from "./bytes.js";
import { hkdf } from "./kdf.js";
import { ATTACHMENT_INFO, ATTACHMENT_NONCE_PREFIX_LEN, ATTACHMENT_SEGMENT_LEN, KEY_LEN, TAG_LEN } from "./labels.js";
import type { Rng } from "./rng.js";

/** Bytes of one sealed full segment (65 552). */
export const SEALED_SEGMENT_LEN = ATTACHMENT_SEGMENT_LEN + TAG_LEN;
/** At most 2^32 segments per file. */
export const MAX_SEGMENTS = 2 ** 32;

/** Why an attachment was refused (SPEC.md §7.4). */
export type AttachmentErrorKind =
  | "invalid_key"
  | "truncated"
  | "trailing_data"
  | "corrupt"
  | "too_large"
  | "digest_mismatch"
  | "already_failed"
  | "already_finished";

/** An attachment failure; `segment` is set for `corrupt`. */
export class AttachmentError extends Error {
  /** Which failure. */
  readonly kind: AttachmentErrorKind;
  /** `corrupt`: the index of the segment that failed. */
  readonly segment: number | undefined;

  /** @param kind the failure; @param segment for `corrupt` */
  constructor(kind: AttachmentErrorKind, segment?: number) {
    super(segment === undefined ? kind.replace("_", " ") : `${kind} segment ${segment}`);
    this.name = "AttachmentError";
    this.kind = kind;
    this.segment = segment;
  }
}

/** The per-file key `K` and what it expands to (§7.1). */
export class AttachmentKey {
  private readonly key: Uint8Array;

  private constructor(key: Uint8Array) {
    this.key = copy(key);
  }

  /** Draws a fresh key (one 32-byte draw). A key MUST NOT be used for two files. */
  static generate(rng: Rng): AttachmentKey {
    return new AttachmentKey(rng.fill(KEY_LEN));
  }

  /** The key from a pointer (`AttachmentPointer.key`, 32 bytes). */
  static fromBytes(key: Uint8Array): AttachmentKey {
    if (key.length !== KEY_LEN) {
      throw new AttachmentError("invalid_key");
    }
    return new AttachmentKey(key);
  }

  /** The 32 bytes, to put in the pointer. */
  toBytes(): Uint8Array {
    return copy(this.key);
  }

  /** `aead_key` and `nonce_prefix` (§7.1). */
  expand(): { aeadKey: Uint8Array; noncePrefix: Uint8Array } {
    const okm = hkdf(undefined, this.key, ATTACHMENT_INFO, KEY_LEN + ATTACHMENT_NONCE_PREFIX_LEN);
    const out = { aeadKey: okm.slice(0, KEY_LEN), noncePrefix: okm.slice(KEY_LEN) };
    wipe(okm);
    return out;
  }
}

function segmentNonce(prefix: Uint8Array, index: number, last: boolean): Uint8Array {
  return concat(prefix, u32be(index), Uint8Array.of(last ? 1 : 0));
}

/** What the sender puts in the pointer after encrypting. */
export interface AttachmentSummary {
  /** SHA-256 of the whole ciphertext (`AttachmentPointer.digest`). */
  digest: Uint8Array;
  /** Total ciphertext bytes. */
  ciphertextLength: number;
  /** Plaintext bytes (`AttachmentPointer.size`). */
  plaintextLength: number;
}

/** Streaming encryptor (§7.2, §7.3). */
export class AttachmentEncryptor {
  private readonly aeadKey: Uint8Array;
  private readonly noncePrefix: Uint8Array;
  private readonly digest = sha256.create();
  private pending = new Uint8Array(ATTACHMENT_SEGMENT_LEN);
  private pendingLen = 0;
  private index = 0;
  private plaintextLength = 0;
  private ciphertextLength = 0;
  private done = false;

  /** @param key the file's attachment key */
  constructor(key: AttachmentKey) {
    const { aeadKey, noncePrefix } = key.expand();
    this.aeadKey = aeadKey;
    this.noncePrefix = noncePrefix;
  }

  private seal(segment: Uint8Array, last: boolean): Uint8Array {
    if (this.index >= MAX_SEGMENTS) {
      throw new AttachmentError("too_large");
    }
    const sealed = chacha20poly1305(this.aeadKey, segmentNonce(this.noncePrefix, this.index, last)).encrypt(segment);
    this.index += 1;
    this.digest.update(sealed);
    this.ciphertextLength += sealed.length;
    return sealed;
  }

  /**
   * Encrypts more plaintext; returns the sealed segments now complete. A full
   * segment is held back until more bytes (or `finish`) say whether it is last.
   */
  update(plaintext: Uint8Array): Uint8Array[] {
    if (this.done) {
      throw new AttachmentError("already_finished");
    }
    const out: Uint8Array[] = [];
    let offset = 0;
    while (offset < plaintext.length) {
      if (this.pendingLen === ATTACHMENT_SEGMENT_LEN) {
        out.push(this.seal(this.pending, false));
        this.pendingLen = 0;
      }
      const take = Math.min(ATTACHMENT_SEGMENT_LEN - this.pendingLen, plaintext.length - offset);
      this.pending.set(plaintext.subarray(offset, offset + take), this.pendingLen);
      this.pendingLen += take;
      offset += take;
    }
    this.plaintextLength += plaintext.length;
    return out;
  }

  /** Seals the final segment (empty only for the empty file) and returns it with the summary. */
  finish(): { finalSegment: Uint8Array; summary: AttachmentSummary } {
    if (this.done) {
      throw new AttachmentError("already_finished");
    }
    this.done = true;
    const finalSegment = this.seal(this.pending.subarray(0, this.pendingLen), true);
    wipe(this.pending, this.aeadKey);
    return {
      finalSegment,
      summary: {
        digest: this.digest.digest(),
        ciphertextLength: this.ciphertextLength,
        plaintextLength: this.plaintextLength,
      },
    };
  }
}

/** Encrypts a whole file in memory: the ciphertext and its summary. */
export function encryptAttachment(key: AttachmentKey, plaintext: Uint8Array): { ciphertext: Uint8Array; summary: AttachmentSummary } {
  const encryptor = new AttachmentEncryptor(key);
  const parts = encryptor.update(plaintext);
  const { finalSegment, summary } = encryptor.finish();
  parts.push(finalSegment);
  return { ciphertext: concat(...parts), summary };
}

/** Streaming decryptor (§7.4). */
export class AttachmentDecryptor {
  private readonly aeadKey: Uint8Array;
  private readonly noncePrefix: Uint8Array;
  private readonly expectedDigest: Uint8Array;
  private readonly digest = sha256.create();
  private readonly pending = new ByteQueue();
  private index = 0;
  private plaintextLength = 0;
  private failed = false;
  private done = false;

  /** @param key from the pointer; @param digest the pointer's `digest` (32 bytes) */
  constructor(key: AttachmentKey, digest: Uint8Array) {
    const { aeadKey, noncePrefix } = key.expand();
    this.aeadKey = aeadKey;
    this.noncePrefix = noncePrefix;
    this.expectedDigest = copy(digest);
  }

  private fail(kind: AttachmentErrorKind, segment?: number): never {
    this.failed = true;
    this.pending.clear();
    throw new AttachmentError(kind, segment);
  }

  private open(piece: Uint8Array, last: boolean): Uint8Array | undefined {
    try {
      return chacha20poly1305(this.aeadKey, segmentNonce(this.noncePrefix, this.index, last)).decrypt(piece);
    } catch {
      return undefined;
    }
  }

  private check(): void {
    if (this.failed) {
      throw new AttachmentError("already_failed");
    }
    if (this.done) {
      throw new AttachmentError("already_finished");
    }
  }

  /** Feeds ciphertext; returns the plaintext of every segment that authenticated. */
  update(ciphertext: Uint8Array): Uint8Array[] {
    this.check();
    this.digest.update(ciphertext);
    this.pending.append(ciphertext);
    const out: Uint8Array[] = [];
    while (this.pending.length > SEALED_SEGMENT_LEN) {
      if (this.index >= MAX_SEGMENTS) {
        this.fail("too_large");
      }
      const piece = this.pending.view(0, SEALED_SEGMENT_LEN);
      const plain = this.open(piece, false);
      if (plain === undefined) {
        if (this.open(piece, true) !== undefined) {
          this.fail("trailing_data");
        }
        this.fail("corrupt", this.index);
      }
      out.push(plain);
      this.plaintextLength += plain.length;
      this.index += 1;
      this.pending.consume(SEALED_SEGMENT_LEN);
    }
    return out;
  }

  /**
   * The stream ended: opens the last piece as final and checks the digest.
   * Returns the last plaintext bytes and the total plaintext length.
   */
  finish(): { plaintext: Uint8Array; plaintextLength: number } {
    this.check();
    const piece = this.pending.view(0, this.pending.length);
    if (piece.length < TAG_LEN) {
      this.fail("truncated");
    }
    if (this.index >= MAX_SEGMENTS) {
      this.fail("too_large");
    }
    const plain = this.open(piece, true);
    if (plain === undefined) {
      if (this.open(piece, false) !== undefined) {
        this.fail("truncated");
      }
      this.fail("corrupt", this.index);
    }
    if (plain.length === 0 && this.index !== 0) {
      this.fail("corrupt", this.index);
    }
    if (!constantTimeEqual(this.digest.digest(), this.expectedDigest)) {
      this.fail("digest_mismatch");
    }
    this.done = true;
    this.plaintextLength += plain.length;
    this.pending.clear();
    wipe(this.aeadKey);
    return { plaintext: plain, plaintextLength: this.plaintextLength };
  }
}

/** Decrypts a whole ciphertext in memory; `AttachmentError` on any failure. */
export function decryptAttachment(key: AttachmentKey, digest: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  const decryptor = new AttachmentDecryptor(key, digest);
  const parts = decryptor.update(ciphertext);
  parts.push(decryptor.finish().plaintext);
  return concat(...parts);
}

redactSecrets(AttachmentKey);
redactSecrets(AttachmentEncryptor);
redactSecrets(AttachmentDecryptor);

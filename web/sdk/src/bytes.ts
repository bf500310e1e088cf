/**
 * Byte-string helpers shared by every module: hex, concatenation, big-endian
 * integers, constant-time comparison and best-effort wiping of secrets.
 *
 * JavaScript cannot guarantee that a secret leaves no copy behind (the
 * garbage collector may move buffers), so `wipe` is best effort: it clears
 * the buffers this SDK owns as soon as they are no longer needed.
 */
import { bytesToHex, concatBytes, hexToBytes } from "@noble/hashes/utils.js";

/** Lowercase hex of `bytes` (the encoding of SPEC.md §17.1). */
export function toHex(bytes: Uint8Array): string {
  return bytesToHex(bytes);
}

/** Bytes of a hex string; throws `TypeError` on odd length or a non-hex digit. */
export function fromHex(hex: string): Uint8Array {
  return hexToBytes(hex);
}

/** `a ‖ b ‖ …` as a new array. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  return concatBytes(...parts);
}

/** ASCII/UTF-8 bytes of a string (labels are ASCII, SPEC.md §2). */
export function utf8(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

/** `u32be(x)`: the 4-byte big-endian encoding of `x` (0 ≤ x < 2^32). */
export function u32be(value: number): Uint8Array {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`not a u32: ${value}`);
  }
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, false);
  return out;
}

/** Reads a big-endian u32 at `offset` (the caller checks the length). */
export function readU32be(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset, false);
}

/** Compares two byte strings in time that depends only on their lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    return false;
  }
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    diff |= a[i]! ^ b[i]!;
  }
  return diff === 0;
}

/** True when every byte is zero (a non-contributory X25519 output, SPEC.md §2). */
export function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < bytes.length; i++) {
    acc |= bytes[i]!;
  }
  return acc === 0;
}

/** Byte-wise equality for public values (not constant time). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    return false;
  }
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      return false;
    }
  }
  return true;
}

/** Overwrites each buffer with zeros (best effort, see the module doc). */
export function wipe(...buffers: (Uint8Array | undefined | null)[]): void {
  for (const buffer of buffers) {
    buffer?.fill(0);
  }
}

/** A fresh copy of `bytes` (so state never aliases a caller's buffer). */
export function copy(bytes: Uint8Array): Uint8Array {
  return Uint8Array.from(bytes);
}

/** Node's custom-inspect symbol (used by `console.log` and `util.inspect`). */
export const INSPECT_SYMBOL = Symbol.for("nodejs.util.inspect.custom");

/**
 * Makes `console.log`, `util.inspect` and `JSON.stringify` of every instance
 * of `cls` print `Name(<redacted>)`: objects holding keys never print them.
 */
export function redactSecrets(cls: { prototype: object; name: string }): void {
  const text = `${cls.name}(<redacted>)`;
  Object.defineProperty(cls.prototype, INSPECT_SYMBOL, { value: () => text });
  Object.defineProperty(cls.prototype, "toJSON", { value: () => text });
}

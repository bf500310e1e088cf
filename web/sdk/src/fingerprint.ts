/**
 * Safety numbers (SPEC.md §8): each party's iterated SHA-512 fingerprint,
 * the 60-digit safety number both sides compute identically, its 71-character
 * display, and the 66-byte QR payload with its constant-time check.
 */
import { sha512 } from "@noble/hashes/sha2.js";

import { concat, constantTimeEqual } from "./bytes.js";
import type { IdentityKey } from "./identity.js";
import {
  FINGERPRINT_DISPLAY_BYTES,
  FINGERPRINT_ITERATIONS,
  FINGERPRINT_SCANNABLE_LEN,
  FINGERPRINT_VERSION,
} from "./labels.js";

/** Length of a QR payload: version (2) ‖ 32 ‖ 32. */
export const QR_PAYLOAD_LEN = 2 + 2 * FINGERPRINT_SCANNABLE_LEN;

/** A scanned QR payload could not be compared (§8.3). */
export class FingerprintError extends Error {
  /** `invalid_length` or `version_mismatch`. */
  readonly kind: "invalid_length" | "version_mismatch";

  /** @param kind the failure */
  constructor(kind: FingerprintError["kind"]) {
    super(kind.replace("_", " "));
    this.name = "FingerprintError";
    this.kind = kind;
  }
}

const VERSION_BYTES = Uint8Array.of(FINGERPRINT_VERSION >> 8, FINGERPRINT_VERSION & 0xff);

/** `F` of §8.1: 64 bytes after 5200 rounds of SHA-512. */
export function fingerprint(identityKey: Uint8Array, userId: Uint8Array): Uint8Array {
  let h = concat(VERSION_BYTES, identityKey, userId);
  for (let k = 0; k < FINGERPRINT_ITERATIONS; k++) {
    h = sha512(concat(h, identityKey));
  }
  return h;
}

/** The 30 digits of one party (§8.1). */
export function fingerprintDigits(fp: Uint8Array): string {
  let digits = "";
  for (let j = 0; j < FINGERPRINT_DISPLAY_BYTES / 5; j++) {
    let c = 0n;
    for (let i = 0; i < 5; i++) {
      c = (c << 8n) | BigInt(fp[5 * j + i]!);
    }
    digits += (c % 100000n).toString().padStart(5, "0");
  }
  return digits;
}

/** The safety number of a conversation, as seen by the local party (§8.2, §8.3). */
export class SafetyNumber {
  private readonly local: Uint8Array;
  private readonly remote: Uint8Array;
  /** The 60 ASCII digits, identical on both sides. */
  readonly digits: string;

  /**
   * @param localKey our identity key; `localUserId` our stable user id (UTF-8 user name)
   * @param remoteKey the peer's identity key; `remoteUserId` its user id
   */
  constructor(localKey: IdentityKey, localUserId: Uint8Array, remoteKey: IdentityKey, remoteUserId: Uint8Array) {
    this.local = fingerprint(localKey.toBytes(), localUserId);
    this.remote = fingerprint(remoteKey.toBytes(), remoteUserId);
    const a = fingerprintDigits(this.local);
    const b = fingerprintDigits(this.remote);
    this.digits = a < b ? a + b : b + a;
  }

  /** 12 groups of 5 digits separated by single spaces (71 characters). */
  display(): string {
    return this.digits.match(/.{5}/g)!.join(" ");
  }

  /** The 66-byte QR payload this device shows (§8.3). */
  qrPayload(): Uint8Array {
    return concat(
      VERSION_BYTES,
      this.local.subarray(0, FINGERPRINT_SCANNABLE_LEN),
      this.remote.subarray(0, FINGERPRINT_SCANNABLE_LEN),
    );
  }

  /**
   * Checks a payload scanned from the peer's screen (§8.3): true when the
   * identities match, false when they do not; `FingerprintError` when the
   * payload cannot be compared.
   */
  verifyQrPayload(payload: Uint8Array): boolean {
    if (payload.length !== QR_PAYLOAD_LEN) {
      throw new FingerprintError("invalid_length");
    }
    if (payload[0] !== VERSION_BYTES[0] || payload[1] !== VERSION_BYTES[1]) {
      throw new FingerprintError("version_mismatch");
    }
    const expected = concat(
      this.remote.subarray(0, FINGERPRINT_SCANNABLE_LEN),
      this.local.subarray(0, FINGERPRINT_SCANNABLE_LEN),
    );
    return constantTimeEqual(payload.subarray(2), expected);
  }
}

/**
 * TOTP codes (RFC 6238, HMAC-SHA-1, 30 s steps, 6 digits by default) as the
 * server checks them for registration and enrolment (SPEC.md §13.3), and the
 * base32 secret of `RegisterResponse.totp_secret_base32` (RFC 4648).
 */
import { hmac } from "@noble/hashes/hmac.js";
import { sha1 } from "@noble/hashes/legacy.js";

/** Why a base32 secret could not be decoded. */
export class TotpError extends Error {
  /** The kind of failure. */
  readonly kind: "InvalidBase32";

  /** A `TotpError` of `kind`. */
  constructor(kind: "InvalidBase32", message: string) {
    super(message);
    this.name = "TotpError";
    this.kind = kind;
  }
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** Decodes RFC 4648 base32 (case-insensitive, `=` padding and spaces ignored); `TotpError` on any other character. */
export function decodeBase32(text: string): Uint8Array {
  const clean = text.replace(/[\s=]/g, "").toUpperCase();
  const out: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const ch of clean) {
    const value = ALPHABET.indexOf(ch);
    if (value < 0) throw new TotpError("InvalidBase32", "invalid base32 character");
    buffer = ((buffer << 5) | value) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((buffer >> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

/** The TOTP code of `secret` at `unixSeconds` (RFC 6238: HOTP of floor(t / step), dynamic truncation, `digits` decimal digits, zero-padded). */
export function totpCode(secret: Uint8Array, unixSeconds: number, digits = 6, stepSeconds = 30): string {
  const counter = BigInt(Math.floor(unixSeconds / stepSeconds));
  const message = new Uint8Array(8);
  new DataView(message.buffer).setBigUint64(0, counter, false);
  const mac = hmac(sha1, secret, message);
  const offset = mac[mac.length - 1]! & 0x0f;
  const binary =
    ((mac[offset]! & 0x7f) << 24) | (mac[offset + 1]! << 16) | (mac[offset + 2]! << 8) | mac[offset + 3]!;
  return (binary % 10 ** digits).toString().padStart(digits, "0");
}

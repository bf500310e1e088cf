/** RFC 6238 Appendix B (SHA-1) and RFC 4648 base32 vectors for src/client/totp.ts. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { decodeBase32, totpCode, TotpError } from "../src/client/totp.js";

const RFC_SECRET = new TextEncoder().encode("12345678901234567890");

test("RFC 6238 Appendix B SHA-1 vectors (8 digits)", () => {
  const vectors: [number, string][] = [
    [59, "94287082"],
    [1111111109, "07081804"],
    [1111111111, "14050471"],
    [1234567890, "89005924"],
    [2000000000, "69279037"],
    [20000000000, "65353130"],
  ];
  for (const [t, code] of vectors) assert.equal(totpCode(RFC_SECRET, t, 8), code, `t=${t}`);
});

test("six digits are the low six of the same value, zero-padded", () => {
  assert.equal(totpCode(RFC_SECRET, 1234567890), "005924");
  assert.equal(totpCode(RFC_SECRET, 59), "287082");
  // Same 30 s step, same code; next step, a different one.
  assert.equal(totpCode(RFC_SECRET, 60), totpCode(RFC_SECRET, 89));
  assert.notEqual(totpCode(RFC_SECRET, 89), totpCode(RFC_SECRET, 90));
});

test("base32 (RFC 4648 §10 vectors, lower case and padding accepted)", () => {
  const enc = new TextEncoder();
  const cases: [string, string][] = [
    ["", ""],
    ["MY======", "f"],
    ["MZXQ====", "fo"],
    ["MZXW6===", "foo"],
    ["MZXW6YQ=", "foob"],
    ["MZXW6YTB", "fooba"],
    ["mzxw6ytboi======", "foobar"],
  ];
  for (const [b32, plain] of cases) assert.deepEqual(decodeBase32(b32), enc.encode(plain), b32);
  assert.deepEqual(decodeBase32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), RFC_SECRET);
  assert.throws(() => decodeBase32("MZ1W"), (e) => e instanceof TotpError && e.kind === "InvalidBase32");
});

/** Safety numbers (SPEC.md §8.3): QR payload checks. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { utf8 } from "../src/bytes.js";
import { FingerprintError, SafetyNumber } from "../src/fingerprint.js";
import { IdentityKeyPair } from "../src/identity.js";
import { seededRng } from "./helpers.js";

const alice = IdentityKeyPair.generate(seededRng("fp/alice")).publicKey;
const bob = IdentityKeyPair.generate(seededRng("fp/bob")).publicKey;
const mallory = IdentityKeyPair.generate(seededRng("fp/mallory")).publicKey;

test("both sides verify each other's payload; a substituted key or one's own payload does not match", () => {
  const a = new SafetyNumber(alice, utf8("alice"), bob, utf8("bob"));
  const b = new SafetyNumber(bob, utf8("bob"), alice, utf8("alice"));
  assert.equal(a.digits, b.digits);
  assert.equal(a.display().length, 71);
  assert.ok(a.verifyQrPayload(b.qrPayload()));
  assert.ok(b.verifyQrPayload(a.qrPayload()));
  assert.equal(a.verifyQrPayload(a.qrPayload()), false);
  const m = new SafetyNumber(mallory, utf8("bob"), alice, utf8("alice"));
  assert.equal(a.verifyQrPayload(m.qrPayload()), false);
  assert.throws(() => a.verifyQrPayload(b.qrPayload().subarray(1)), (e: unknown) => e instanceof FingerprintError && e.kind === "invalid_length");
  const v2 = b.qrPayload();
  v2[1] = 2;
  assert.throws(() => a.verifyQrPayload(v2), (e: unknown) => e instanceof FingerprintError && e.kind === "version_mismatch");
});

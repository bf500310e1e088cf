/** Identity keys (SPEC.md §2, §3): strict Ed25519 and the X25519 map. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { ed25519, x25519 } from "@noble/curves/ed25519.js";

import { concat, fromHex, toHex, utf8 } from "../src/bytes.js";
import { IdentityKey, IdentityKeyPair, isValidEd25519PublicKey, KeyError, verifyEd25519Strict, x25519Dh } from "../src/identity.js";
import { seededRng } from "./helpers.js";

// Small-order points: the identity (y = 1) and the point of order 2 (y = −1).
const IDENTITY_POINT = fromHex("0100000000000000000000000000000000000000000000000000000000000000");
const ORDER_2_POINT = fromHex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
// y = p (non-canonical encoding of y = 0).
const NON_CANONICAL = fromHex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");

test("small-order and non-canonical identity keys are refused", () => {
  for (const bad of [IDENTITY_POINT, ORDER_2_POINT, NON_CANONICAL, new Uint8Array(31)]) {
    assert.equal(isValidEd25519PublicKey(bad), false, toHex(bad));
    assert.throws(() => IdentityKey.fromBytes(bad), (e: unknown) => e instanceof KeyError && e.kind === "invalid_key");
  }
});

test("strict verification refuses a small-order R, S ≥ L and a wrong message", () => {
  const pair = IdentityKeyPair.generate(seededRng("strict"));
  const pub = pair.publicKey.toBytes();
  const message = utf8("message");
  const signature = pair.sign(message);
  assert.ok(verifyEd25519Strict(pub, message, signature));
  assert.equal(verifyEd25519Strict(pub, utf8("other"), signature), false);
  // S + L: the same scalar modulo L, refused as non-canonical.
  const L = 2n ** 252n + 27742317777372353535851937790883648493n;
  let s = 0n;
  for (let i = 31; i >= 0; i--) {
    s = (s << 8n) | BigInt(signature[32 + i]!);
  }
  const bigS = new Uint8Array(32);
  let v = s + L;
  for (let i = 0; i < 32; i++) {
    bigS[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  assert.equal(verifyEd25519Strict(pub, message, concat(signature.subarray(0, 32), bigS)), false);
  assert.equal(verifyEd25519Strict(pub, message, concat(IDENTITY_POINT, signature.subarray(32))), false);
});

test("the X25519 form matches the Ed25519 key, and an all-zero DH output is refused", () => {
  const a = IdentityKeyPair.generate(seededRng("map/a"));
  const b = IdentityKeyPair.generate(seededRng("map/b"));
  assert.equal(toHex(x25519.getPublicKey(a.x25519PrivateKey())), toHex(a.publicKey.toX25519()));
  assert.equal(toHex(ed25519.utils.toMontgomery(a.publicKey.toBytes())), toHex(a.publicKey.toX25519()));
  assert.equal(
    toHex(x25519Dh(a.x25519PrivateKey(), b.publicKey.toX25519())),
    toHex(x25519Dh(b.x25519PrivateKey(), a.publicKey.toX25519())),
  );
  assert.throws(() => x25519Dh(a.x25519PrivateKey(), new Uint8Array(32)), (e: unknown) => e instanceof KeyError && e.kind === "non_contributory_dh");
  assert.throws(() => x25519Dh(a.x25519PrivateKey(), fromHex("0100000000000000000000000000000000000000000000000000000000000000")), (e: unknown) => e instanceof KeyError);
});

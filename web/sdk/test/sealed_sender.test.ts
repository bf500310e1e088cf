/** Sealed sender (SPEC.md §19): only the recipient opens, and only a valid, current certificate of the sealing identity is accepted. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { ed25519 } from "@noble/curves/ed25519.js";

import { toHex, utf8 } from "../src/bytes.js";
import { IdentityKeyPair } from "../src/identity.js";
import {
  issueCertificate,
  MIN_SEALED_LEN,
  openSealedSender,
  parseCertificate,
  sealSealedSender,
  SealedSenderError,
  type SealedSenderErrorKind,
} from "../src/sealed_sender.js";
import { seededRng } from "./helpers.js";

const rng = seededRng("sealed_sender");
const serverSeed = rng.fill(32);
const server = { keyId: 3, publicKey: ed25519.getPublicKey(serverSeed) };
const alice = IdentityKeyPair.fromSeed(rng.fill(32));
const bob = IdentityKeyPair.fromSeed(rng.fill(32));
const NOW = 1_800_000_000_000n;
const certificate = issueCertificate(serverSeed, 3, "alice", 2n, alice.publicKey, NOW + 1000n);

function refused(kind: SealedSenderErrorKind) {
  return (e: unknown) => e instanceof SealedSenderError && e.kind === kind;
}

test("the recipient opens to the certified sender and inner message; nobody else opens", () => {
  const sealed = sealSealedSender(rng.fill(32), alice, certificate, bob.publicKey, 1, utf8("ratchet bytes"));
  const opened = openSealedSender(bob, server, NOW, sealed);
  assert.equal(opened.certificate.username, "alice");
  assert.equal(opened.certificate.deviceId, 2n);
  assert.equal(opened.contentType, 1);
  assert.equal(toHex(opened.message), toHex(utf8("ratchet bytes")));
  assert.throws(() => openSealedSender(alice, server, NOW, sealed), refused("AuthenticationFailed"));
  // The sender is nowhere in the clear.
  assert.ok(!toHex(sealed).includes(toHex(alice.publicKey.toBytes())));
  assert.ok(!toHex(sealed).includes(toHex(utf8("alice"))));
});

test("expired, forged and foreign-key certificates are refused; a certificate of another identity cannot be used", () => {
  const sealed = sealSealedSender(rng.fill(32), alice, certificate, bob.publicKey, 2, utf8("m"));
  assert.throws(() => openSealedSender(bob, server, NOW + 1001n, sealed), refused("Expired"));
  const forger = { keyId: 3, publicKey: ed25519.getPublicKey(rng.fill(32)) };
  assert.throws(() => openSealedSender(bob, forger, NOW, sealed), refused("BadSignature"));
  assert.throws(() => openSealedSender(bob, { ...server, keyId: 4 }, NOW, sealed), refused("UnknownServerKey"));
  const bobsCertificate = issueCertificate(serverSeed, 3, "bob", 1n, bob.publicKey, NOW);
  assert.throws(() => sealSealedSender(rng.fill(32), alice, bobsCertificate, bob.publicKey, 1, utf8("m")), refused("SenderMismatch"));
});

test("altered, short and other-version envelopes and certificates are refused", () => {
  const sealed = sealSealedSender(rng.fill(32), alice, certificate, bob.publicKey, 1, utf8("m"));
  for (const i of [1, 40, 90, sealed.length - 1]) {
    const altered = Uint8Array.from(sealed);
    altered[i]! ^= 1;
    assert.throws(() => openSealedSender(bob, server, NOW, altered), SealedSenderError);
  }
  assert.throws(() => openSealedSender(bob, server, NOW, sealed.subarray(0, MIN_SEALED_LEN - 1)), refused("Malformed"));
  const v2 = Uint8Array.from(sealed);
  v2[0] = 2;
  assert.throws(() => openSealedSender(bob, server, NOW, v2), refused("Malformed"));
  assert.throws(() => parseCertificate(certificate.bytes.subarray(1)), refused("Malformed"));
  assert.throws(() => issueCertificate(serverSeed, 3, "", 1n, alice.publicKey, NOW), refused("InvalidUsername"));
});

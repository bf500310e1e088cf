/**
 * Handshake and sessions (SPEC.md §4): classical and hybrid sessions end to
 * end through `SessionMessage`s, the downgrade refusals of §4.1/§4.2, the
 * FIPS 203 key check, and the responder rules of §4.3 (a replayed initial
 * message fails once its one-time prekey is used; nothing is kept on failure).
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { toHex, utf8 } from "../src/bytes.js";
import { HandshakeError, initiate, respond } from "../src/handshake.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, OneTimePreKey, type PreKeyBundle, SignedPreKey } from "../src/prekeys.js";
import { RatchetError } from "../src/ratchet/header.js";
import { decodeSessionMessage, Session, SessionError } from "../src/session.js";
import { seededRng } from "./helpers.js";

function bob(label: string, withKem: boolean) {
  const rng = seededRng(`${label}/bob`);
  const identity = IdentityKeyPair.generate(rng);
  const signed = SignedPreKey.generate(rng, identity, 1, withKem);
  const oneTime = OneTimePreKey.generate(rng, 100);
  const kem = withKem ? KemPreKey.generate(rng, identity, 7) : undefined;
  const prekeys = new LocalPreKeys();
  prekeys.addSigned(signed);
  prekeys.addOneTime(oneTime);
  if (kem) {
    prekeys.addKem(kem);
  }
  const bundle: PreKeyBundle = {
    identityKey: identity.publicKey.toBytes(),
    signedPreKey: signed.public(),
    oneTimePreKey: oneTime.public(),
    kemPreKey: kem?.public(),
  };
  return { identity, prekeys, bundle, rng };
}

function isHandshakeError(kind: HandshakeError["kind"]) {
  return (e: unknown) => e instanceof HandshakeError && e.kind === kind;
}

for (const withKem of [false, true]) {
  test(`a ${withKem ? "hybrid" : "classical"} session: prekey messages until the first reply, then ratchet messages`, () => {
    const b = bob(`session-${withKem}`, withKem);
    const aliceRng = seededRng(`session-${withKem}/alice`);
    const alice = IdentityKeyPair.generate(aliceRng);
    const session = Session.initiate(aliceRng, alice, b.bundle);
    assert.equal(session.mode, withKem ? "hybrid" : "classical");
    const first = session.encrypt(utf8("one"));
    const second = session.encrypt(utf8("two"));
    assert.equal(first[0], 0x02);
    assert.equal(second[0], 0x02);
    const parsed = decodeSessionMessage(first);
    assert.equal(parsed.type, "prekey");
    if (parsed.type !== "prekey") {
      return;
    }
    assert.equal(parsed.header.kemCiphertext?.length, withKem ? 1088 : undefined);
    const { session: bobSession, plaintext } = Session.respond(b.identity, b.prekeys, parsed.header, parsed.message, b.rng);
    assert.equal(new TextDecoder().decode(plaintext), "one");
    assert.equal(bobSession.mode, session.mode);
    assert.ok(bobSession.remoteIdentity.equals(alice.publicKey));
    assert.equal(b.prekeys.oneTimePreKey(100), undefined, "the one-time prekey is deleted after the decrypt");
    // The second prekey message belongs to the existing session (§4.3 step 1).
    const second2 = decodeSessionMessage(second);
    assert.ok(second2.type === "prekey" && bobSession.matches(second2.header));
    assert.equal(new TextDecoder().decode(bobSession.decrypt(second, b.rng)), "two");
    // A replay of the initial message cannot build a new session: its one-time prekey is gone.
    assert.throws(() => Session.respond(b.identity, b.prekeys, parsed.header, parsed.message, b.rng), isHandshakeError("unknown_one_time_prekey"));
    const reply = bobSession.encrypt(utf8("reply"));
    assert.equal(reply[0], 0x01);
    assert.equal(new TextDecoder().decode(session.decrypt(reply, aliceRng)), "reply");
    assert.equal(session.awaitingReply, false);
    assert.equal(session.encrypt(utf8("three"))[0], 0x01);
  });
}

test("a bundle stripped of its KEM prekey is refused (HybridRequired)", () => {
  const b = bob("strip", true);
  const alice = IdentityKeyPair.generate(seededRng("strip/alice"));
  assert.throws(() => initiate(seededRng("x"), alice, { ...b.bundle, kemPreKey: undefined }), isHandshakeError("hybrid_required"));
});

test("a responder refuses a classical handshake on a prekey that announces KEM prekeys", () => {
  const b = bob("classical-on-kem", true);
  const alice = IdentityKeyPair.generate(seededRng("classical-on-kem/alice"));
  // The initiator is tricked by a bundle from a device that signs kem_flag = 0x00 with the same ids.
  const fake = bob("classical-on-kem", false);
  const { header } = initiate(seededRng("y"), alice, fake.bundle);
  assert.throws(() => respond(b.identity, b.prekeys, header), isHandshakeError("hybrid_required"));
});

test("bad signatures are refused", () => {
  const b = bob("sig", true);
  const alice = IdentityKeyPair.generate(seededRng("sig/alice"));
  const badSpk = { ...b.bundle, signedPreKey: { ...b.bundle.signedPreKey, signature: flip(b.bundle.signedPreKey.signature) } };
  assert.throws(() => initiate(seededRng("z"), alice, badSpk), isHandshakeError("bad_signature"));
  const badKem = { ...b.bundle, kemPreKey: { ...b.bundle.kemPreKey!, signature: flip(b.bundle.kemPreKey!.signature) } };
  assert.throws(() => initiate(seededRng("z"), alice, badKem), isHandshakeError("bad_signature"));
  const otherIdentity = IdentityKeyPair.generate(seededRng("sig/other"));
  assert.throws(() => initiate(seededRng("z"), alice, { ...b.bundle, identityKey: otherIdentity.publicKey.toBytes() }), isHandshakeError("bad_signature"));
});

test("an encapsulation key failing the FIPS 203 modulus check is refused before any draw", () => {
  const rng = seededRng("modulus/bob");
  const identity = IdentityKeyPair.generate(rng);
  const signed = SignedPreKey.generate(rng, identity, 1, true);
  const kem = KemPreKey.generate(rng, identity, 7).public();
  const ek = Uint8Array.from(kem.publicKey);
  ek[0] = 0xff;
  ek[1] |= 0x0f; // first coefficient 4095 ≥ q
  const { signature } = { signature: identity.sign(new Uint8Array([...new TextEncoder().encode("Microbot KEM prekey v1"), 0, 0, 0, 7, ...ek])) };
  const alice = IdentityKeyPair.generate(seededRng("modulus/alice"));
  const draws = seededRng("modulus/draws");
  assert.throws(
    () => initiate(draws, alice, { identityKey: identity.publicKey.toBytes(), signedPreKey: signed.public(), kemPreKey: { id: 7, publicKey: ek, signature } }),
    isHandshakeError("invalid_kem_public_key"),
  );
  assert.equal(draws.draws, 0);
});

test("malformed session messages are refused", () => {
  assert.throws(() => decodeSessionMessage(Uint8Array.of(0x03, 1)), (e: unknown) => e instanceof SessionError && e.kind === "malformed");
  assert.throws(() => decodeSessionMessage(Uint8Array.of(0x02, 0xff)), (e: unknown) => e instanceof SessionError && e.kind === "malformed");
  // version 2
  assert.throws(() => decodeSessionMessage(Uint8Array.of(0x02, 0x08, 0x02)), (e: unknown) => e instanceof SessionError && e.kind === "unsupported_version");
  // version 1, base key of 1 byte
  assert.throws(() => decodeSessionMessage(Uint8Array.of(0x02, 0x08, 0x01, 0x1a, 0x01, 0x00)), (e: unknown) => e instanceof SessionError);
});

test("a prekey message whose inner message fails keeps nothing", () => {
  const b = bob("keep-nothing", true);
  const aliceRng = seededRng("keep-nothing/alice");
  const alice = IdentityKeyPair.generate(aliceRng);
  const session = Session.initiate(aliceRng, alice, b.bundle);
  const parsed = decodeSessionMessage(session.encrypt(utf8("x")));
  assert.ok(parsed.type === "prekey");
  const tampered = Uint8Array.from(parsed.message);
  tampered[tampered.length - 1]! ^= 1;
  assert.throws(() => Session.respond(b.identity, b.prekeys, parsed.header, tampered, b.rng), (e: unknown) => e instanceof RatchetError && e.kind === "authentication_failed");
  assert.notEqual(b.prekeys.oneTimePreKey(100), undefined, "the one-time prekey survives a failed decrypt");
  const { plaintext } = Session.respond(b.identity, b.prekeys, parsed.header, parsed.message, b.rng);
  assert.equal(toHex(plaintext), toHex(utf8("x")));
});

function flip(bytes: Uint8Array): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[10]! ^= 1;
  return out;
}

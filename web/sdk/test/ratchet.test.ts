/**
 * Double Ratchet failure semantics (SPEC.md §5.6, §5.8): every refusal
 * leaves the session exactly as it was. "Exactly" is checked by behaviour: a
 * twin session built from the same draws that never saw the bad input must
 * produce byte-identical output for everything that follows.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { toHex, utf8 } from "../src/bytes.js";
import { x25519PublicKey } from "../src/identity.js";
import { RatchetError } from "../src/ratchet/header.js";
import { RatchetSession } from "../src/ratchet/session.js";
import { seededRng } from "./helpers.js";

const SK = new Uint8Array(32).fill(0x11);
const AD = new Uint8Array(64).fill(0x22);
const BOB_SPK = new Uint8Array(32).fill(0x33);

/** A fresh pair with its RNGs, deterministic per label. */
function pair(label: string) {
  const aliceRng = seededRng(`${label}/alice`);
  const bobRng = seededRng(`${label}/bob`);
  const alice = RatchetSession.initiator(aliceRng, SK, AD, x25519PublicKey(BOB_SPK));
  const bob = RatchetSession.responder(SK, AD, BOB_SPK);
  return { alice, bob, aliceRng, bobRng };
}

function isRatchetError(kind: RatchetError["kind"]) {
  return (e: unknown) => e instanceof RatchetError && e.kind === kind;
}

/** Runs a fixed conversation after `setup` and returns every byte produced. */
function conversation(p: ReturnType<typeof pair>): string[] {
  const out: string[] = [];
  for (let round = 0; round < 3; round++) {
    const a = p.alice.encrypt(utf8(`a${round}`));
    out.push(toHex(a), toHex(p.bob.decrypt(a, p.bobRng)));
    const b = p.bob.encrypt(utf8(`b${round}`));
    out.push(toHex(b), toHex(p.alice.decrypt(b, p.aliceRng)));
  }
  return out;
}

test("a conversation in order, and out of order with DH steps", () => {
  const { alice, bob, aliceRng, bobRng } = pair("basic");
  const m = [0, 1, 2].map((i) => alice.encrypt(utf8(`m${i}`)));
  assert.equal(new TextDecoder().decode(bob.decrypt(m[2]!, bobRng)), "m2");
  assert.equal(bob.skippedKeyCount, 2);
  const r = bob.encrypt(utf8("reply"));
  assert.equal(new TextDecoder().decode(alice.decrypt(r, aliceRng)), "reply");
  assert.equal(new TextDecoder().decode(bob.decrypt(m[0]!, bobRng)), "m0");
  assert.equal(new TextDecoder().decode(bob.decrypt(m[1]!, bobRng)), "m1");
  assert.equal(bob.skippedKeyCount, 0);
});

test("the responder cannot encrypt before its first decrypt", () => {
  const { bob } = pair("responder");
  assert.throws(() => bob.encrypt(utf8("x")), isRatchetError("no_sending_chain"));
});

test("parse refusals: empty, unknown version, truncated", () => {
  const { bob, bobRng } = pair("parse");
  assert.throws(() => bob.decrypt(new Uint8Array(0), bobRng), isRatchetError("truncated"));
  assert.throws(() => bob.decrypt(Uint8Array.of(2), bobRng), isRatchetError("unsupported_version"));
  assert.throws(() => bob.decrypt(new Uint8Array(56).fill(1), bobRng), isRatchetError("truncated"));
});

/** Each bad input, given the pair's state after one message each way. */
const badInputs: [string, RatchetError["kind"], (p: ReturnType<typeof pair>, good: Uint8Array) => Uint8Array][] = [
  ["tampered ciphertext", "authentication_failed", (_p, good) => flip(good, good.length - 1)],
  ["tampered header (DH step with a forged key)", "authentication_failed", (_p, good) => flip(good, 5)],
  ["tampered version byte", "unsupported_version", (_p, good) => flip(good, 0, 0x03)],
  ["tampered message number", "authentication_failed", (_p, good) => flip(good, 40)],
  ["replay", "duplicate", (_p, good) => good],
  ["N = 0xFFFFFFFF", "message_number_out_of_range", (_p, good) => setN(good, 0xffffffff)],
  ["skip of 1001 on the current chain", "too_far_ahead", (_p, good) => setN(good, 1002)],
];

function flip(message: Uint8Array, index: number, mask = 0x01): Uint8Array {
  const out = Uint8Array.from(message);
  out[index]! ^= mask;
  return out;
}

function setN(message: Uint8Array, n: number): Uint8Array {
  const out = Uint8Array.from(message);
  new DataView(out.buffer).setUint32(37, n, false);
  return out;
}

for (const [name, kind, make] of badInputs) {
  test(`a refused message leaves the session unchanged: ${name}`, () => {
    const subject = pair("twin");
    const twin = pair("twin");
    for (const p of [subject, twin]) {
      p.bob.decrypt(p.alice.encrypt(utf8("hello")), p.bobRng);
      p.alice.decrypt(p.bob.encrypt(utf8("hi")), p.aliceRng);
    }
    // The good message is the next one Alice sends; the subject's Bob sees it
    // already decrypted (for the replay) or sees the bad version first.
    const good = subject.alice.encrypt(utf8("good"));
    const twinGood = twin.alice.encrypt(utf8("good"));
    assert.equal(toHex(good), toHex(twinGood));
    if (name === "replay") {
      subject.bob.decrypt(good, subject.bobRng);
      twin.bob.decrypt(twinGood, twin.bobRng);
    }
    const drawsBefore = subject.bobRng.draws;
    assert.throws(() => subject.bob.decrypt(make(subject, good), subject.bobRng), isRatchetError(kind));
    // A DH step drawn for a refused message is discarded: the twin draws it
    // too, so both RNGs stay aligned for the comparison below.
    for (let i = drawsBefore; i < subject.bobRng.draws; i++) {
      twin.bobRng.fill(32);
    }
    if (name !== "replay") {
      assert.equal(toHex(subject.bob.decrypt(good, subject.bobRng)), toHex(twin.bob.decrypt(twinGood, twin.bobRng)));
    }
    assert.deepEqual(conversation(subject), conversation(twin));
    assert.equal(subject.bob.skippedKeyCount, twin.bob.skippedKeyCount);
  });
}

test("a new chain may not skip more than 1000 keys, nor announce PN too far ahead", () => {
  const { alice, bob, aliceRng, bobRng } = pair("bounds");
  bob.decrypt(alice.encrypt(utf8("0")), bobRng);
  const reply = bob.encrypt(utf8("r"));
  assert.throws(() => alice.decrypt(setN(reply, 1001), aliceRng), isRatchetError("too_far_ahead"));
  const pn = Uint8Array.from(reply);
  new DataView(pn.buffer).setUint32(33, 1001, false);
  assert.throws(() => alice.decrypt(pn, aliceRng), isRatchetError("too_far_ahead"));
  assert.equal(toHex(alice.decrypt(reply, aliceRng)), toHex(utf8("r")));
});

test("skipping exactly 1000 is allowed", () => {
  const { alice, bob, bobRng } = pair("thousand");
  const messages = Array.from({ length: 1001 }, (_, i) => alice.encrypt(utf8(`${i}`)));
  assert.equal(new TextDecoder().decode(bob.decrypt(messages[1000]!, bobRng)), "1000");
  assert.equal(bob.skippedKeyCount, 1000);
  assert.equal(new TextDecoder().decode(bob.decrypt(messages[500]!, bobRng)), "500");
});

test("the skipped-key store keeps at most 2000 keys, evicting the oldest chain first", () => {
  const { alice, bob, aliceRng, bobRng } = pair("cap");
  const held: Uint8Array[] = [];
  // Three of Alice's chains, each skipping 1000 keys at Bob.
  for (let chain = 0; chain < 3; chain++) {
    const burst = Array.from({ length: 1001 }, (_, i) => alice.encrypt(utf8(`${chain}/${i}`)));
    held.push(burst[0]!);
    bob.decrypt(burst[1000]!, bobRng);
    alice.decrypt(bob.encrypt(utf8(`ack${chain}`)), aliceRng);
  }
  assert.equal(bob.skippedKeyCount, 2000);
  // The first chain's keys were evicted: its message is refused, the state stays.
  assert.throws(() => bob.decrypt(held[0]!, bobRng));
  assert.equal(bob.skippedKeyCount, 2000);
  assert.equal(new TextDecoder().decode(bob.decrypt(held[2]!, bobRng)), "2/0");
  assert.equal(new TextDecoder().decode(bob.decrypt(held[1]!, bobRng)), "1/0");
});

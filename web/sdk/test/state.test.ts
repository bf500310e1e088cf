/**
 * Persisted state (SPEC.md §5.7, §6.7, §9): a session saved and restored in
 * the middle of a conversation carries on byte for byte; decoding and
 * re-encoding yields the same bytes; every malformed state is refused with a
 * typed error.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create, toBinary } from "@bufbuild/protobuf";

import { toHex, utf8 } from "../src/bytes.js";
import {
  InboundSenderKeyStateSchema,
  RatchetStateSchema,
  SenderKeyRecordStateSchema,
  SkippedSenderMessageKeySchema,
} from "../src/gen/state_pb.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, OneTimePreKey, SignedPreKey } from "../src/prekeys.js";
import { RatchetSession } from "../src/ratchet/session.js";
import { OutboundSenderKey, SenderKeyRecord } from "../src/sender_key.js";
import { Session } from "../src/session.js";
import { StateError } from "../src/state.js";
import { seededRng } from "./helpers.js";

function isStateError(kind: StateError["kind"], field?: string) {
  return (e: unknown) => e instanceof StateError && e.kind === kind && (field === undefined || e.field === field);
}

test("sessions restored mid-conversation carry on exactly as the originals", () => {
  const bobRng = seededRng("state/bob");
  const bob = IdentityKeyPair.generate(bobRng);
  const prekeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(bobRng, bob, 1);
  const oneTime = OneTimePreKey.generate(bobRng, 5);
  const kem = KemPreKey.generate(bobRng, bob, 2);
  prekeys.addSigned(signed);
  prekeys.addOneTime(oneTime);
  prekeys.addKem(kem);
  const aliceRng = seededRng("state/alice");
  const alice = IdentityKeyPair.generate(aliceRng);
  let aliceSession = Session.initiate(aliceRng, alice, {
    identityKey: bob.publicKey.toBytes(),
    signedPreKey: signed.public(),
    oneTimePreKey: oneTime.public(),
    kemPreKey: kem.public(),
  });
  const pending = aliceSession.toBytes();
  assert.equal(toHex(Session.fromBytes(pending).toBytes()), toHex(pending));
  aliceSession = Session.fromBytes(pending);
  const restoredPreKeys = LocalPreKeys.fromBytes(IdentityKeyPair.fromBytes(bob.toBytes()), prekeys.toBytes());
  assert.equal(toHex(restoredPreKeys.toBytes()), toHex(prekeys.toBytes()));
  const first = aliceSession.encrypt(utf8("hello"));
  let { session: bobSession } = Session.accept(bobRng, bob, restoredPreKeys, first);
  for (let round = 0; round < 4; round++) {
    // Save and restore both sides every round; the conversation must not notice.
    aliceSession = Session.fromBytes(aliceSession.toBytes());
    bobSession = Session.fromBytes(bobSession.toBytes());
    const a = aliceSession.encrypt(utf8(`a${round}`));
    const b = bobSession.encrypt(utf8(`b${round}`));
    assert.equal(new TextDecoder().decode(bobSession.decrypt(a, bobRng)), `a${round}`);
    assert.equal(new TextDecoder().decode(aliceSession.decrypt(b, aliceRng)), `b${round}`);
  }
  assert.equal(aliceSession.awaitingReply, false);
});

test("RatchetState refusals (§5.7)", () => {
  const session = RatchetSession.initiator(seededRng("rs"), new Uint8Array(32).fill(1), new Uint8Array(64), new Uint8Array(32).fill(9));
  const good = session.toBytes();
  assert.equal(toHex(RatchetSession.fromBytes(good).toBytes()), toHex(good));
  const key = new Uint8Array(32).fill(3);
  const base = { version: 1, rootKey: key, ownRatchetPrivateKey: key };
  const bad: [Parameters<typeof create<typeof RatchetStateSchema>>[1], StateError["kind"]][] = [
    [{ ...base, version: 2 }, "unsupported_version"],
    [{ ...base, rootKey: key.subarray(1) }, "invalid_field"],
    [{ ...base, remoteRatchetKey: key }, "invalid_field"],
    [{ ...base, sendingChain: { chainKey: key } }, "invalid_field"],
    [{ ...base, receivingChain: { chainKey: key } }, "invalid_field"],
    [{ ...base, skippedChains: [{ ratchetKey: key, keys: [] }] }, "invalid_field"],
    [{ ...base, skippedChains: [{ ratchetKey: key, keys: [{ messageNumber: 2, messageKey: key }, { messageNumber: 2, messageKey: key }] }] }, "invalid_field"],
    [{ ...base, skippedChains: [{ ratchetKey: key, keys: [{ messageNumber: 1, messageKey: key }] }, { ratchetKey: key, keys: [{ messageNumber: 2, messageKey: key }] }] }, "invalid_field"],
    [{ ...base, skippedChains: [{ ratchetKey: key, keys: Array.from({ length: 2001 }, (_, i) => ({ messageNumber: i, messageKey: key })) }] }, "invalid_field"],
  ];
  for (const [init, kind] of bad) {
    assert.throws(() => RatchetSession.fromBytes(toBinary(RatchetStateSchema, create(RatchetStateSchema, init))), isStateError(kind));
  }
  assert.throws(() => RatchetSession.fromBytes(Uint8Array.of(0xff)), isStateError("decode"));
});

test("sender-key states round trip; a record with a repeated key id or 6 generations is refused (§6.7)", () => {
  const group = utf8("0123456789abcdef");
  const out = OutboundSenderKey.create(seededRng("sk-state"), group);
  const record = new SenderKeyRecord(group);
  record.addDistribution(out.distribution());
  const messages = [0, 1, 2].map((i) => out.encrypt(utf8(`m${i}`)));
  record.decrypt(messages[2]!);
  const restored = SenderKeyRecord.fromBytes(record.toBytes());
  assert.equal(toHex(restored.toBytes()), toHex(record.toBytes()));
  assert.equal(new TextDecoder().decode(restored.decrypt(messages[0]!)), "m0");
  const restoredOut = OutboundSenderKey.fromBytes(out.toBytes());
  assert.equal(toHex(restoredOut.encrypt(utf8("x"))), toHex(out.encrypt(utf8("x"))));
  const generation = record.generation(out.currentKeyId)!.toState();
  const twice = create(SenderKeyRecordStateSchema, { version: 1, generations: [generation, generation] });
  assert.throws(() => SenderKeyRecord.fromBytes(toBinary(SenderKeyRecordStateSchema, twice)), isStateError("invalid_field", "generations.key_id"));
  const six = create(SenderKeyRecordStateSchema, { version: 1, generations: Array.from({ length: 6 }, (_, i) => ({ ...generation, keyId: i })) });
  assert.throws(() => SenderKeyRecord.fromBytes(toBinary(SenderKeyRecordStateSchema, six)), isStateError("invalid_field", "generations"));
});

test("a prekey store whose signature does not match its recomputed one is refused (§9.1)", () => {
  const rng = seededRng("pk-state");
  const identity = IdentityKeyPair.generate(rng);
  const other = IdentityKeyPair.generate(rng);
  const store = new LocalPreKeys();
  store.addSigned(SignedPreKey.generate(rng, identity, 1, false));
  assert.throws(() => LocalPreKeys.fromBytes(other, store.toBytes()), isStateError("invalid_field", "signed.signature"));
  assert.equal(toHex(LocalPreKeys.fromBytes(identity, store.toBytes()).toBytes()), toHex(store.toBytes()));
});

test("an inbound sender key whose next iteration is 0xFFFFFFFF restores, keeping its skipped keys (§6.2)", () => {
  const group = utf8("0123456789abcdef");
  const out = OutboundSenderKey.create(seededRng("sk-end"), group);
  const record = new SenderKeyRecord(group);
  record.addDistribution(out.distribution());
  const generation = record.generation(out.currentKeyId)!.toState();
  const key = new Uint8Array(32).fill(5);
  const state = create(SenderKeyRecordStateSchema, {
    version: 1,
    generations: [
      create(InboundSenderKeyStateSchema, {
        ...generation,
        iteration: 0xffffffff,
        skipped: [create(SkippedSenderMessageKeySchema, { iteration: 0xfffffffd, messageKey: key })],
      }),
    ],
  });
  const bytes = toBinary(SenderKeyRecordStateSchema, state);
  assert.equal(toHex(SenderKeyRecord.fromBytes(bytes).toBytes()), toHex(bytes));
});

test("one-time prekeys take ids from next_one_time_id, which survives a restore (§9.1)", () => {
  const rng = seededRng("otk-ids");
  const identity = IdentityKeyPair.generate(rng);
  const store = new LocalPreKeys();
  store.addOneTime(OneTimePreKey.generate(rng, 41));
  assert.deepEqual(store.generateOneTime(rng, 3).map((k) => k.id), [42, 43, 44]);
  const restored = LocalPreKeys.fromBytes(identity, store.toBytes());
  assert.equal(restored.nextOneTimePreKeyId, 45);
  assert.deepEqual(restored.generateOneTime(rng, 1).map((k) => k.id), [45]);
  store.addOneTime(OneTimePreKey.generate(rng, 10));
  assert.equal(store.nextOneTimePreKeyId, 45, "a lower id does not lower it");
});

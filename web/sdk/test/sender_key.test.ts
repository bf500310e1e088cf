/** Sender Keys (SPEC.md §6): refusals leave the receiver unchanged, replayed distributions cannot rewind, generations are bounded. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { toHex, utf8 } from "../src/bytes.js";
import {
  decodeSenderKeyDistribution,
  encodeSenderKeyDistribution,
  InboundSenderKey,
  OutboundSenderKey,
  SenderKeyError,
  SenderKeyRecord,
} from "../src/sender_key.js";
import { seededRng } from "./helpers.js";

const GROUP = utf8("0123456789abcdef");

function isSenderKeyError(kind: SenderKeyError["kind"]) {
  return (e: unknown) => e instanceof SenderKeyError && e.kind === kind;
}

test("distribution layout refusals (§6.3)", () => {
  const out = OutboundSenderKey.create(seededRng("dist"), GROUP);
  const bytes = encodeSenderKeyDistribution(out.distribution());
  assert.equal(bytes.length, 73);
  assert.throws(() => decodeSenderKeyDistribution(bytes.subarray(0, 72)), isSenderKeyError("invalid_length"));
  const v2 = Uint8Array.from(bytes);
  v2[0] = 2;
  assert.throws(() => decodeSenderKeyDistribution(v2), isSenderKeyError("unsupported_version"));
  const reserved = Uint8Array.from(bytes);
  reserved.fill(0xff, 5, 9);
  assert.throws(() => decodeSenderKeyDistribution(reserved), isSenderKeyError("reserved_iteration"));
  const smallOrder = Uint8Array.from(bytes);
  smallOrder.fill(0, 41, 73);
  smallOrder[41] = 1; // the identity point
  assert.throws(() => decodeSenderKeyDistribution(smallOrder), isSenderKeyError("invalid_signing_key"));
  assert.throws(() => OutboundSenderKey.create(seededRng("g"), new Uint8Array(0)), isSenderKeyError("invalid_group_id"));
  assert.throws(() => OutboundSenderKey.create(seededRng("g"), new Uint8Array(256)), isSenderKeyError("invalid_group_id"));
});

test("each refused message leaves the receiver as it was", () => {
  const out = OutboundSenderKey.create(seededRng("refuse"), GROUP);
  const dist = out.distribution();
  const subject = new InboundSenderKey(GROUP, dist);
  const twin = new InboundSenderKey(GROUP, dist);
  const messages = [0, 1, 2, 3].map((i) => out.encrypt(utf8(`m${i}`)));
  const forgedSig = Uint8Array.from(messages[2]!);
  forgedSig[forgedSig.length - 1]! ^= 1;
  const otherKey = Uint8Array.from(messages[2]!);
  otherKey[1]! ^= 1;
  const otherGroup = new InboundSenderKey(utf8("another group id"), dist);
  assert.throws(() => subject.decrypt(forgedSig), isSenderKeyError("bad_signature"));
  assert.throws(() => subject.decrypt(otherKey), isSenderKeyError("unknown_key_id"));
  assert.throws(() => subject.decrypt(messages[2]!.subarray(0, 88)), isSenderKeyError("too_short"));
  assert.throws(() => otherGroup.decrypt(messages[2]!), isSenderKeyError("decryption_failed"));
  assert.equal(subject.nextIteration, 0);
  assert.equal(subject.skippedCount, 0);
  for (const i of [2, 0, 3, 1]) {
    assert.equal(toHex(subject.decrypt(messages[i]!)), toHex(twin.decrypt(messages[i]!)));
  }
  assert.throws(() => subject.decrypt(messages[1]!), isSenderKeyError("duplicate_or_expired"));
});

test("a forward jump over 2000 is refused; 2000 is accepted", () => {
  const out = OutboundSenderKey.create(seededRng("jump"), GROUP);
  const receiver = new InboundSenderKey(GROUP, out.distribution());
  const messages = Array.from({ length: 2002 }, (_, i) => out.encrypt(utf8(`${i}`)));
  assert.throws(() => receiver.decrypt(messages[2001]!), isSenderKeyError("too_far_ahead"));
  assert.equal(new TextDecoder().decode(receiver.decrypt(messages[2000]!)), "2000");
  assert.equal(receiver.skippedCount, 2000);
  assert.equal(new TextDecoder().decode(receiver.decrypt(messages[2001]!)), "2001");
});

test("a replayed distribution does not rewind the chain; a new signing key replaces the generation", () => {
  const out = OutboundSenderKey.create(seededRng("replay"), GROUP);
  const record = new SenderKeyRecord(GROUP);
  const first = out.distribution();
  record.addDistribution(first);
  const m0 = out.encrypt(utf8("m0"));
  assert.equal(new TextDecoder().decode(record.decrypt(m0)), "m0");
  record.addDistribution(first);
  assert.throws(() => record.decrypt(m0), isSenderKeyError("duplicate_or_expired"));
});

test("a record keeps at most 5 generations; rotation never reuses the key id", () => {
  const record = new SenderKeyRecord(GROUP);
  const senders: OutboundSenderKey[] = [];
  let previous: number | undefined;
  for (let i = 0; i < 6; i++) {
    const sender = OutboundSenderKey.create(seededRng(`gen${i}`), GROUP, previous);
    assert.notEqual(sender.currentKeyId, previous);
    previous = sender.currentKeyId;
    senders.push(sender);
    record.addDistribution(sender.distribution());
  }
  assert.equal(record.size, 5);
  assert.throws(() => record.decrypt(senders[0]!.encrypt(utf8("old"))), isSenderKeyError("unknown_key_id"));
  assert.equal(new TextDecoder().decode(record.decrypt(senders[5]!.encrypt(utf8("new")))), "new");
  // An equal draw on rotation becomes key_id + 1.
  const same = OutboundSenderKey.create(seededRng("gen5"), GROUP, senders[5]!.currentKeyId);
  assert.equal(same.currentKeyId, (senders[5]!.currentKeyId + 1) >>> 0);
});

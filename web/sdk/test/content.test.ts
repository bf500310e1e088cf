/** Content (SPEC.md §11): the examples of §11.6, padding (§11.3) and the rules of §11.2. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create, toBinary } from "@bufbuild/protobuf";

import { fromHex, toHex } from "../src/bytes.js";
import { ContentError, ContentSchema, decodeContent, encodeContent, paddingLength, TypingAction } from "../src/content.js";

const A = fromHex("000102030405060708090a0b0c0d0e0f");
const B = fromHex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");

test("the examples of §11.6 encode byte for byte", () => {
  const text = create(ContentSchema, { messageId: A, sentAtMs: 1_700_000_000_000n, body: { case: "text", value: { text: "hi" } } });
  assert.equal(toHex(toBinary(ContentSchema, text)), "0a10000102030405060708090a0b0c0d0e0f1080d095ffbc311a040a026869");
  const edit = create(ContentSchema, {
    messageId: B,
    sentAtMs: 1_700_000_060_000n,
    body: { case: "edit", value: { targetMessageId: A, text: "hello", revision: 1n } },
  });
  assert.equal(
    toHex(toBinary(ContentSchema, edit)),
    "0a10f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff10e0a499ffbc312a1b0a10000102030405060708090a0b0c0d0e0f120568656c6c6f1801",
  );
  const del = create(ContentSchema, { messageId: B, sentAtMs: 1_700_000_120_000n, body: { case: "delete", value: { targetMessageId: A } } });
  assert.equal(toHex(toBinary(ContentSchema, del)), "0a10f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff10c0f99cffbc3132120a10000102030405060708090a0b0c0d0e0f");
  const reaction = create(ContentSchema, {
    messageId: B,
    sentAtMs: 1_700_000_000_500n,
    body: { case: "reaction", value: { targetMessageId: A, emoji: "👍" } },
  });
  assert.equal(toHex(toBinary(ContentSchema, reaction)), "0a10f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff10f4d395ffbc3122180a10000102030405060708090a0b0c0d0e0f1204f09f918d");
  const padded = encodeContent(text);
  assert.equal(padded.length, 160);
  assert.equal(toHex(padded), "0a10000102030405060708090a0b0c0d0e0f1080d095ffbc311a040a0268697a7f" + "00".repeat(127));
  assert.equal(decodeContent(padded).body.case, "text");
});

test("padding lengths of §11.3, and every padded length is a multiple of 160", () => {
  assert.equal(paddingLength(31), 127);
  assert.equal(paddingLength(30), 287);
  assert.equal(paddingLength(157), 1);
  assert.equal(paddingLength(158), 159);
  assert.equal(paddingLength(160), 157);
  for (let n = 1; n < 700; n += 1) {
    const content = create(ContentSchema, { messageId: A, body: { case: "text", value: { text: "x".repeat(n) } } });
    assert.equal(encodeContent(content).length % 160, 0, `text of ${n}`);
  }
});

test("rules of §11.2 are enforced on both sides", () => {
  const bad = [
    [create(ContentSchema, { messageId: A.subarray(1), body: { case: "text", value: { text: "x" } } }), "wrong_length", "Content.message_id"],
    [create(ContentSchema, { messageId: A, body: { case: "text", value: { text: "" } } }), "empty", "Text.text"],
    [create(ContentSchema, { messageId: A }), "unsupported_body", "Content.body"],
    [create(ContentSchema, { messageId: A, body: { case: "typing", value: { action: TypingAction.UNSPECIFIED } } }), "invalid_enum", "Typing.action"],
    [create(ContentSchema, { messageId: A, body: { case: "edit", value: { targetMessageId: A, text: "x", revision: 0n } } }), "too_small", "Edit.revision"],
    [create(ContentSchema, { messageId: A, body: { case: "readReceipt", value: { messageIds: [] } } }), "empty", "ReadReceipt.message_ids"],
    [create(ContentSchema, { messageId: A, body: { case: "callSignal", value: { callId: A } } }), "missing", "CallSignal.signal"],
  ] as const;
  for (const [content, kind, field] of bad) {
    assert.throws(() => encodeContent(content), (e: unknown) => e instanceof ContentError && e.kind === kind && e.field === field, field);
    assert.throws(() => decodeContent(toBinary(ContentSchema, content)), (e: unknown) => e instanceof ContentError && e.kind === kind, field);
  }
  assert.throws(() => decodeContent(new Uint8Array(262_145)), (e: unknown) => e instanceof ContentError && e.kind === "too_large");
  assert.throws(() => decodeContent(Uint8Array.of(0x0a, 0x05)), (e: unknown) => e instanceof ContentError && e.kind === "decode");
  const text = create(ContentSchema, { messageId: A, body: { case: "text", value: { text: "x".repeat(262_100) } } });
  assert.throws(() => encodeContent(text), (e: unknown) => e instanceof ContentError);
});

test("receivers ignore non-zero padding and unpadded content", () => {
  const content = create(ContentSchema, { messageId: A, body: { case: "text", value: { text: "hi" } }, padding: Uint8Array.of(1, 2, 3) });
  assert.equal(decodeContent(toBinary(ContentSchema, content)).body.case, "text");
});

test("the sync transcript example of §11.7, and its form rules", () => {
  const inner = create(ContentSchema, { messageId: A, sentAtMs: 1_700_000_000_000n, body: { case: "text", value: { text: "hi" } } });
  const sync = (sent: Record<string, unknown>) =>
    create(ContentSchema, { messageId: B, sentAtMs: 1_700_000_000_000n, body: { case: "sync", value: { kind: { case: "sent", value: sent } } } });
  const transcript = sync({ destination: { case: "destinationUsername", value: "bob" }, content: inner, timestampMs: 1_700_000_000_000n });
  assert.equal(
    toHex(toBinary(ContentSchema, transcript)),
    "0a10f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff1080d095ffbc3182012f0a2d0a03626f621a1f0a10000102030405060708090a0b0c0d0e0f1080d095ffbc311a040a0268692080d095ffbc31",
  );
  assert.equal(encodeContent(transcript).length % 160, 0);
  const group = new Uint8Array(16).fill(9);
  const groupInner = create(ContentSchema, { ...inner, groupId: group });
  const refused: [ReturnType<typeof sync>, string, string][] = [
    [create(ContentSchema, { messageId: B, body: { case: "sync", value: {} } }), "missing", "SyncMessage.kind"],
    [sync({ destination: { case: "destinationUsername", value: "bob" } }), "missing", "SentTranscript.content"],
    [sync({ content: inner }), "missing", "SentTranscript.destination"],
    [sync({ destination: { case: "destinationUsername", value: "bob" }, content: transcript }), "invalid_sync", "SentTranscript.content"],
    [sync({ destination: { case: "destinationUsername", value: "bob" }, content: groupInner }), "invalid_sync", "SentTranscript.destination_username"],
    [sync({ destination: { case: "destinationGroupId", value: new Uint8Array(16) }, content: groupInner }), "invalid_sync", "SentTranscript.destination_group_id"],
    [sync({ destination: { case: "destinationUsername", value: "bob" }, content: create(ContentSchema, { messageId: A }) }), "unsupported_body", "Content.body"],
  ];
  for (const [content, kind, field] of refused) {
    assert.throws(() => decodeContent(toBinary(ContentSchema, content)), (e: unknown) => e instanceof ContentError && e.kind === kind && e.field === field, field);
  }
  assert.equal(decodeContent(toBinary(ContentSchema, sync({ destination: { case: "destinationGroupId", value: group }, content: groupInner }))).body.case, "sync");
});

/** src/client/miniapp_events.ts and the §11.2 MiniappEvent rules of src/content.ts. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import { MiniappEventError, isMiniappEvent, miniappEventContent, readMiniappEvent } from "../src/client/miniapp_events.js";
import type { Incoming } from "../src/client/messenger.js";
import { ContentError, ContentSchema, MAX_MINIAPP_PAYLOAD_LEN, decodeContent, encodeContent, type Content } from "../src/content.js";
import { seededRng } from "./helpers.js";

const GROUP = new Uint8Array(16).fill(3);
const INSTANCE = new Uint8Array(16).fill(9);
const PAYLOAD = new TextEncoder().encode('{"t":"vote","c":1,"option":0}');

function incoming(from: string, content: Content, extra: Partial<Incoming> = {}): Incoming {
  return { from, deviceId: 1n, envelopeId: 1n, content: decodeContent(encodeContent(content)), ...extra };
}

test("a miniapp event survives the Content encoding and reads back typed, authored by the sender", () => {
  const content = miniappEventContent(seededRng("event"), GROUP, "poll", INSTANCE, PAYLOAD, 1234);
  const received = incoming("kim", content, { groupId: GROUP });
  assert.ok(isMiniappEvent(received));
  const event = readMiniappEvent(received);
  assert.equal(event.appId, "poll");
  assert.deepEqual(event.instanceId, INSTANCE);
  assert.deepEqual(event.payload, PAYLOAD);
  assert.deepEqual(event.groupId, GROUP);
  assert.equal(event.from, "kim");
  assert.equal(event.sentAtMs, 1234);
  assert.deepEqual(event.messageId, content.messageId);
});

test("events breaking a §11.2 rule are refused with the field, when built and when received", () => {
  const rng = seededRng("rules");
  const cases: Array<[string, Uint8Array, Uint8Array, string]> = [
    ["", INSTANCE, PAYLOAD, "MiniappEvent.app_id"],
    ["a".repeat(65), INSTANCE, PAYLOAD, "MiniappEvent.app_id"],
    ["poll", new Uint8Array(15), PAYLOAD, "MiniappEvent.instance_id"],
    ["poll", INSTANCE, new Uint8Array(0), "MiniappEvent.payload"],
    ["poll", INSTANCE, new Uint8Array(MAX_MINIAPP_PAYLOAD_LEN + 1), "MiniappEvent.payload"],
  ];
  for (const [appId, instanceId, payload, field] of cases) {
    assert.throws(
      () => miniappEventContent(rng, GROUP, appId, instanceId, payload),
      (e: unknown) => e instanceof MiniappEventError && e.kind === "Invalid" && e.field === field,
      field,
    );
    const raw = create(ContentSchema, { messageId: rng.fill(16), groupId: GROUP, body: { case: "miniappEvent", value: { appId, instanceId, payload } } });
    assert.throws(() => encodeContent(raw), (e: unknown) => e instanceof ContentError && e.field === field, field);
  }
  // The limits themselves are allowed.
  const largest = miniappEventContent(rng, GROUP, "a".repeat(64), INSTANCE, new Uint8Array(MAX_MINIAPP_PAYLOAD_LEN).fill(1));
  assert.equal(readMiniappEvent(incoming("kim", largest)).payload.length, MAX_MINIAPP_PAYLOAD_LEN);
});

test("a miniapp event outside a group is refused; other contents are not miniapp events", () => {
  const rng = seededRng("group");
  assert.throws(() => miniappEventContent(rng, new Uint8Array(0), "poll", INSTANCE, PAYLOAD), (e: unknown) => e instanceof MiniappEventError && e.kind === "NotInGroup");
  const direct = create(ContentSchema, { messageId: rng.fill(16), body: { case: "miniappEvent", value: { appId: "poll", instanceId: INSTANCE, payload: PAYLOAD } } });
  assert.throws(() => readMiniappEvent(incoming("kim", direct)), (e: unknown) => e instanceof MiniappEventError && e.kind === "NotInGroup");
  const text = create(ContentSchema, { messageId: rng.fill(16), groupId: GROUP, body: { case: "text", value: { text: "hi" } } });
  assert.equal(isMiniappEvent(incoming("kim", text)), false);
  assert.throws(() => readMiniappEvent(incoming("kim", text)), (e: unknown) => e instanceof MiniappEventError && e.kind === "NotMiniappEvent");
});

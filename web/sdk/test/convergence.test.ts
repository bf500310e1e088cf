/** Convergence (SPEC.md §11.4): every order of the same events, duplicates included, shows the same thing. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import { fromHex, utf8 } from "../src/bytes.js";
import { ContentSchema, GroupMetadataSchema } from "../src/content.js";
import { compareBytes, type MessageEvent, messageEventFromContent, MessageState, ReactionState } from "../src/convergence.js";
import { GroupMetadataError, openGroupMetadata, sealGroupMetadata } from "../src/group_metadata.js";
import { seededRng } from "./helpers.js";

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) {
    return [items];
  }
  return items.flatMap((item, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [item, ...rest]));
}

const id = (b: number) => new Uint8Array(16).fill(b);
const original: MessageEvent = { kind: "original", sentAtMs: 100n, text: "first" };
const editA: MessageEvent = { kind: "edit", revision: 1n, sentAtMs: 200n, messageId: id(1), text: "A" };
const editB: MessageEvent = { kind: "edit", revision: 1n, sentAtMs: 200n, messageId: id(2), text: "B" }; // concurrent, wins on id
const editOld: MessageEvent = { kind: "edit", revision: 2n, sentAtMs: 50n, messageId: id(0), text: "rev2" }; // wrong clock, later revision

function converge(events: MessageEvent[]) {
  const views = new Set<string>();
  for (const order of permutations(events)) {
    const state = new MessageState();
    for (const event of [...order, order[0]!]) {
      state.apply(event);
    }
    views.add(JSON.stringify(state.view()));
  }
  return [...views];
}

test("edits: the highest (revision, time, id, text) wins in every order; an early edit waits for its original", () => {
  assert.deepEqual(converge([original, editA, editB, editOld]), [JSON.stringify({ kind: "text", text: "rev2", edited: true })]);
  assert.deepEqual(converge([original, editA, editB]), [JSON.stringify({ kind: "text", text: "B", edited: true })]);
  const early = new MessageState();
  early.apply(editA);
  assert.deepEqual(early.view(), { kind: "pending" });
  early.apply(original);
  assert.deepEqual(early.view(), { kind: "text", text: "A", replyTo: undefined, edited: true });
  assert.equal(early.latestRevision(), 1n);
});

test("a delete wins over every edit, in every order", () => {
  assert.deepEqual(converge([original, editA, editOld, { kind: "delete" }]), [JSON.stringify({ kind: "deleted", hadOriginal: true })]);
});

test("merge equals applying both sets", () => {
  const a = new MessageState();
  const b = new MessageState();
  a.apply(original);
  a.apply(editA);
  b.apply(editB);
  a.merge(b);
  assert.deepEqual(a.view(), { kind: "text", text: "B", replyTo: undefined, edited: true });
});

test("events from Content; byte order puts a prefix first", () => {
  const edit = create(ContentSchema, { messageId: id(9), sentAtMs: 5n, body: { case: "edit", value: { targetMessageId: id(3), text: "x", revision: 1n } } });
  const routed = messageEventFromContent(edit)!;
  assert.deepEqual(routed.target, id(3));
  assert.equal(routed.event.kind, "edit");
  assert.equal(compareBytes(fromHex("01"), fromHex("0100")), -1);
  assert.equal(compareBytes(fromHex("ff"), fromHex("0100")), 1);
});

test("a reaction is present iff the reactor's latest (time, id) one does not remove it", () => {
  const r = new ReactionState();
  r.apply(2n, id(2), true);
  r.apply(1n, id(1), false);
  assert.equal(r.present, false);
  r.apply(2n, id(3), false);
  assert.equal(r.present, true);
});

test("group metadata (§11.5) opens only with its key and group", () => {
  const key = new Uint8Array(32).fill(4);
  const group = id(7);
  const sealed = sealGroupMetadata(seededRng("meta"), key, group, create(GroupMetadataSchema, { name: "friends" }));
  assert.equal(openGroupMetadata(key, group, sealed).name, "friends");
  assert.throws(() => openGroupMetadata(key, id(8), sealed), (e: unknown) => e instanceof GroupMetadataError && e.kind === "authentication_failed");
  assert.throws(() => openGroupMetadata(new Uint8Array(32), group, sealed), GroupMetadataError);
  assert.throws(() => openGroupMetadata(key, group, utf8("short")), (e: unknown) => e instanceof GroupMetadataError && e.kind === "too_short");
});

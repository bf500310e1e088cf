/**
 * The extension's pure parts: the port protocol's checks, what a
 * notification says (never the text unless allowed), which messages are
 * news, and the badge text.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import type { ChatMessage, Conversation, EngineState } from "../../app/src/engine.js";
import { allMessageIds, notificationText, takeNewMessages } from "../src/notify.js";
import { MAX_TEXT_BYTES, parseRequest, ProtocolError } from "../src/protocol.js";
import { badgeText, engineView, totalUnread } from "../src/view.js";

function msg(id: string, from: string, text: string, extra: Partial<ChatMessage> = {}): ChatMessage {
  return { id, from, mine: from === "erin", text, sentAtMs: Number(id.replace(/\D/g, "") || 0), revision: 0, edited: false, deleted: false, reactions: {}, ...extra };
}

function state(conversations: Conversation[]): EngineState {
  return { username: "erin", net: "online", pending: 0, conversations: Object.fromEntries(conversations.map((c) => [c.peer, c])) };
}

test("requests are checked: good ones pass (the code without spaces), bad ones are ProtocolErrors", () => {
  assert.deepEqual(parseRequest({ id: 1, request: { kind: "signIn", username: " erin ", password: "pw", code: "123 456" } }), {
    id: 1,
    request: { kind: "signIn", username: "erin", password: "pw", code: "123456" },
  });
  assert.deepEqual(parseRequest({ id: 2, request: { kind: "send", peer: "carol", text: "hi" } }).request, { kind: "send", peer: "carol", text: "hi" });
  assert.deepEqual(parseRequest({ id: 3, request: { kind: "signOut" } }).request, { kind: "signOut" });
  for (const bad of [
    null,
    "signOut",
    { id: "1", request: { kind: "signOut" } },
    { id: 1.5, request: { kind: "signOut" } },
    { id: 1, request: null },
    { id: 1, request: { kind: "format disk" } },
    { id: 1, request: { kind: "signIn", username: "erin", password: "pw", code: "12345" } },
    { id: 1, request: { kind: "signIn", username: "", password: "pw", code: "123456" } },
    { id: 1, request: { kind: "send", peer: "carol", text: "   " } },
    { id: 1, request: { kind: "send", peer: "carol", text: 7 } },
    { id: 1, request: { kind: "send", peer: "carol", text: "é".repeat(MAX_TEXT_BYTES / 2 + 1) } },
    { id: 1, request: { kind: "read" } },
  ]) {
    assert.throws(() => parseRequest(bad), ProtocolError, JSON.stringify(bad));
  }
});

test("a notification counts the new messages and shows their text only when allowed", () => {
  const news = { key: "carol", title: "carol", group: false, messages: [{ from: "carol", text: "secret plans" }], unread: 1 };
  assert.deepEqual(notificationText(news, false), { title: "carol", message: "1 new message" });
  assert.deepEqual(notificationText({ ...news, unread: 3 }, false), { title: "carol", message: "3 new messages" });
  assert.deepEqual(notificationText(news, true), { title: "carol", message: "secret plans" });
  const group = { key: "#ab", title: "Team", group: true, messages: [{ from: "dan", text: "one" }, { from: "carol", text: "two" }], unread: 2 };
  assert.deepEqual(notificationText(group, false), { title: "Team (group)", message: "2 new messages" });
  assert.deepEqual(notificationText(group, true), { title: "Team (group)", message: "carol: two" });
});

test("news: received unread messages not seen before, once; own messages, events, deletions and read conversations are not news", () => {
  const carol: Conversation = { peer: "carol", messages: [msg("m1", "carol", "old")], typingUntil: 0, unread: 1 };
  const dan: Conversation = { peer: "dan", messages: [], typingUntil: 0, unread: 0 };
  const seen = allMessageIds(state([carol, dan]));
  assert.deepEqual(takeNewMessages(state([carol, dan]), seen), [], "history at start is not news");

  carol.messages.push(msg("m2", "carol", "new"), msg("m3", "erin", "mine"), msg("m4", "", "carol joined", { event: true }), msg("m5", "carol", "", { deleted: true }));
  carol.unread = 3;
  dan.messages.push(msg("m6", "dan", "already read"));
  const news = takeNewMessages(state([carol, dan]), seen);
  assert.deepEqual(news, [{ key: "carol", title: "carol", group: false, messages: [{ from: "carol", text: "new" }], unread: 3 }]);
  assert.deepEqual(takeNewMessages(state([carol, dan]), seen), [], "each message is news once");
  assert.ok(seen.has("m6"));
});

/** True when `value` holds only what JSON carries unchanged (undefined fields are dropped, which optional fields allow). */
function plain(value: unknown): boolean {
  if (value === undefined || value === null || ["string", "boolean"].includes(typeof value)) return true;
  if (typeof value === "number") return Number.isFinite(value);
  if (Array.isArray(value)) return value.every(plain);
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) return Object.values(value).every(plain);
  return false;
}

test("the view is plain data, latest conversation first; the badge counts unread messages", () => {
  const group: Conversation = {
    peer: "#0a0b",
    group: { id: Uint8Array.of(10, 11), name: "Team", members: ["erin", "dan"], active: false },
    messages: [msg("m9", "dan", "later", { file: { name: "a.pdf", size: 3, type: "application/pdf" } })],
    typingUntil: 0,
    unread: 2,
  };
  const carol: Conversation = { peer: "carol", messages: [msg("m1", "carol", "hi"), msg("m2", "carol", "gone", { deleted: true })], typingUntil: 0, unread: 1 };
  const s = state([carol, group]);
  const view = engineView(s, "https://chat.example.org");
  assert.ok(view.signedIn);
  assert.deepEqual(view.conversations.map((c) => [c.key, c.title, c.group, c.canWrite, c.unread]), [
    ["#0a0b", "Team", true, false, 2],
    ["carol", "carol", false, true, 1],
  ]);
  assert.equal(view.conversations[0]!.messages[0]!.fileName, "a.pdf");
  assert.ok(plain(view), "only JSON values: it crosses the port as JSON");
  assert.equal(totalUnread(s), 3);
  assert.equal(badgeText(0), "");
  assert.equal(badgeText(3), "3");
  assert.equal(badgeText(120), "99+");
});

/** The bridge: message validation (protocol.ts) and a host and an app talking through fake windows (host.ts, app.ts). */
import assert from "node:assert/strict";
import { test } from "node:test";

import { connect } from "../src/app.js";
import { MiniappHost, miniappDocument, type BridgeMessageEvent, type MessageSource, type MessageTarget, type SendRequest } from "../src/host.js";
import {
  BRIDGE_VERSION,
  BridgeError,
  MAX_UPDATE_BYTES,
  decodeUpdate,
  encodeUpdate,
  parseAppMessage,
  parseHostMessage,
  type Json,
  type MiniappUpdate,
} from "../src/protocol.js";

const HOST_ORIGIN = "https://chat.example";

/** A window: its listeners get what is posted to it, stamped with the sender's window and origin. */
class FakeWindow implements MessageSource, MessageTarget {
  private readonly listeners = new Set<(event: BridgeMessageEvent) => void>();
  /** The window that posts to this one, and its origin. */
  peer: { window: unknown; origin: string } = { window: undefined, origin: "null" };

  addEventListener(_type: "message", listener: (event: BridgeMessageEvent) => void): void {
    this.listeners.add(listener);
  }
  removeEventListener(_type: "message", listener: (event: BridgeMessageEvent) => void): void {
    this.listeners.delete(listener);
  }
  postMessage(message: unknown): void {
    // A structured clone, as the browser does.
    const data = structuredClone(message);
    queueMicrotask(() => this.dispatch({ data, source: this.peer.window, origin: this.peer.origin }));
  }
  dispatch(event: BridgeMessageEvent): void {
    for (const listener of [...this.listeners]) listener(event);
  }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

function pair(options: { confirm?: (r: SendRequest) => Promise<boolean>; send?: (p: Uint8Array, u: Json) => Promise<void>; updates?: MiniappUpdate[] } = {}) {
  const hostWindow = new FakeWindow();
  const appWindow = new FakeWindow();
  hostWindow.peer = { window: appWindow, origin: "null" };
  appWindow.peer = { window: hostWindow, origin: HOST_ORIGIN };
  const sent: Uint8Array[] = [];
  const asked: SendRequest[] = [];
  const hostErrors: BridgeError[] = [];
  const appErrors: BridgeError[] = [];
  const host = new MiniappHost({
    target: appWindow,
    window: hostWindow,
    self: "ann",
    members: () => [
      { username: "ann", displayName: "Ann", self: true },
      { username: "bob", displayName: "bob", self: false },
    ],
    updates: () => options.updates ?? [],
    confirm: async (request) => {
      asked.push(request);
      return options.confirm ? options.confirm(request) : true;
    },
    send: async (payload, update) => {
      sent.push(payload);
      await options.send?.(payload, update);
    },
    onError: (e) => hostErrors.push(e),
  });
  const app = connect({ window: appWindow, parent: hostWindow, hostOrigin: HOST_ORIGIN, onError: (e) => appErrors.push(e) });
  return { host, app, hostWindow, appWindow, sent, asked, hostErrors, appErrors };
}

test("the app reads the members and the state, and gets updates", async () => {
  const { host, app } = pair({ updates: [{ from: "bob", update: { t: "vote", c: 1, option: 0 } }] });
  assert.deepEqual(await app.getMembers(), [
    { username: "ann", displayName: "Ann", self: true },
    { username: "bob", displayName: "bob", self: false },
  ]);
  assert.deepEqual(await app.getState(), { self: "ann", updates: [{ from: "bob", update: { t: "vote", c: 1, option: 0 } }] });
  const seen: MiniappUpdate[] = [];
  const stop = app.onUpdate((u) => seen.push(u));
  host.deliver({ from: "bob", update: { t: "vote", c: 2, option: 1 } });
  await tick();
  stop();
  host.deliver({ from: "bob", update: { t: "vote", c: 3, option: 1 } });
  await tick();
  assert.deepEqual(seen, [{ from: "bob", update: { t: "vote", c: 2, option: 1 } }]);
});

test("a proposal is sent only after the user confirms it, as the UTF-8 JSON payload", async () => {
  let answer = false;
  const { app, sent, asked } = pair({ confirm: async () => answer });
  assert.deepEqual(await app.propose({ t: "vote", c: 1, option: 0 }, "Vote for “Tea”"), { sent: false });
  assert.equal(sent.length, 0);
  answer = true;
  assert.deepEqual(await app.propose({ t: "vote", c: 2, option: 1 }, "Vote for “Coffee”"), { sent: true });
  assert.deepEqual(asked.map((a) => a.summary), ["Vote for “Tea”", "Vote for “Coffee”"]);
  assert.equal(sent.length, 1);
  assert.deepEqual(decodeUpdate(sent[0]!), { t: "vote", c: 2, option: 1 });
});

test("a send that fails is a send_failed error for the app", async () => {
  const { app } = pair({ send: async () => Promise.reject(new Error("offline")) });
  await assert.rejects(app.propose({ a: 1 }, "x"), (e: unknown) => e instanceof BridgeError && e.code === "send_failed" && /offline/.test(e.message));
});

test("malformed, unknown and oversized requests get typed errors; the host keeps working", async () => {
  const { app, hostWindow, appWindow, hostErrors, sent } = pair();
  await assert.rejects(app.propose("x".repeat(MAX_UPDATE_BYTES), "big"), (e: unknown) => e instanceof BridgeError && e.code === "too_large");
  await assert.rejects(app.propose({ a: 1 }, ""), (e: unknown) => e instanceof BridgeError && e.code === "malformed");
  // Raw garbage straight from the app's window.
  const raw = (data: unknown, origin = "null", source: unknown = appWindow) => hostWindow.dispatch({ data, origin, source });
  const answers: unknown[] = [];
  appWindow.addEventListener("message", (e) => answers.push(e.data));
  raw("hello");
  raw(null);
  raw({ bridge: BRIDGE_VERSION, kind: "request", id: 7, request: { method: "format" } });
  raw({ bridge: BRIDGE_VERSION, kind: "shout", id: 8 });
  raw({ bridge: BRIDGE_VERSION, kind: "request", id: 9, request: { method: "propose", summary: "s", update: { n: Number.NaN } } });
  await tick();
  assert.deepEqual(
    answers.map((a) => (a as { id: number; error: { code: string } }).id + ":" + (a as { error: { code: string } }).error.code),
    ["7:unknown_method", "8:unknown_kind", "9:malformed"],
  );
  assert.ok(hostErrors.length >= 5);
  // Not from the frame, or not from an opaque origin: ignored without an answer.
  const before = answers.length;
  raw({ bridge: BRIDGE_VERSION, kind: "request", id: 10, request: { method: "getMembers" } }, "https://evil.example");
  raw({ bridge: BRIDGE_VERSION, kind: "request", id: 11, request: { method: "getMembers" } }, "null", {});
  await tick();
  assert.equal(answers.length, before);
  assert.equal(sent.length, 0);
  assert.equal((await app.getMembers()).length, 2);
});

test("the app ignores messages that are not its host's or not well-formed", async () => {
  const { app, appWindow, hostWindow, appErrors } = pair();
  const seen: MiniappUpdate[] = [];
  app.onUpdate((u) => seen.push(u));
  const update = { bridge: BRIDGE_VERSION, kind: "update", update: { from: "eve", update: 1 } };
  appWindow.dispatch({ data: update, origin: "https://evil.example", source: hostWindow });
  appWindow.dispatch({ data: update, origin: HOST_ORIGIN, source: {} });
  appWindow.dispatch({ data: { bridge: BRIDGE_VERSION, kind: "update", update: { update: 1 } }, origin: HOST_ORIGIN, source: hostWindow });
  appWindow.dispatch({ data: { bridge: "other/1" }, origin: HOST_ORIGIN, source: hostWindow });
  appWindow.dispatch({ data: update, origin: HOST_ORIGIN, source: hostWindow });
  await tick();
  assert.deepEqual(seen, [{ from: "eve", update: 1 }]);
  assert.equal(appErrors.length, 3);
});

test("parsers refuse what is not the protocol", () => {
  const bad: unknown[] = [
    undefined,
    [],
    { bridge: BRIDGE_VERSION, kind: "request", request: { method: "getState" } },
    { bridge: BRIDGE_VERSION, kind: "request", id: -1, request: { method: "getState" } },
    { bridge: BRIDGE_VERSION, kind: "request", id: 1, request: "getState" },
    { bridge: BRIDGE_VERSION, kind: "request", id: 1, request: { method: "propose", summary: "s", update: new Date() } },
  ];
  for (const data of bad) assert.throws(() => parseAppMessage(data), BridgeError);
  assert.throws(() => parseHostMessage({ bridge: BRIDGE_VERSION, kind: "response", id: 1, ok: false, error: { code: "nope", message: "" } }), BridgeError);
  assert.throws(() => parseHostMessage({ bridge: BRIDGE_VERSION, kind: "response", id: 1, ok: true, result: () => 1 }), BridgeError);
  let deep: Json = 1;
  for (let i = 0; i < 40; i++) deep = [deep];
  assert.throws(() => parseAppMessage({ bridge: BRIDGE_VERSION, kind: "request", id: 1, request: { method: "propose", summary: "s", update: deep } }), BridgeError);
  assert.throws(() => decodeUpdate(new Uint8Array([0xff, 0xfe])), (e: unknown) => e instanceof BridgeError && e.code === "malformed");
  assert.deepEqual(decodeUpdate(encodeUpdate({ a: [1, "b", null, true] })), { a: [1, "b", null, true] });
});

test("the frame document forbids every connection and loads only the app's script and style", () => {
  const html = miniappDocument({ scriptUrl: `${HOST_ORIGIN}/miniapps/poll.js`, styleUrl: `${HOST_ORIGIN}/miniapps/miniapp.css`, title: "Poll <1>", hostOrigin: HOST_ORIGIN });
  assert.match(html, /connect-src 'none'/);
  assert.match(html, /default-src 'none'; script-src https:\/\/chat\.example; style-src https:\/\/chat\.example;/);
  assert.match(html, /data-host-origin="https:\/\/chat\.example"/);
  assert.match(html, /<title>Poll &lt;1&gt;<\/title>/);
  assert.doesNotMatch(html, /<script>/);
});

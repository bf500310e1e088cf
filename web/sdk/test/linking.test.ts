/** src/client/linking.ts without a server (SPEC §12.14): the code's text, every check of an opened message, and both sides against a scripted socket. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";

import { ContentSchema, type Content } from "../src/content.js";
import { HistoryMessageSchema, ProvisionMessageSchema } from "../src/gen/content_pb.js";
import { ClientFrameSchema, ErrorCode, ResponseSchema, ServerFrameSchema, type ClientFrame } from "../src/gen/transport_pb.js";
import { Connection, type SocketLike } from "../src/client/connection.js";
import {
  buildProvisionMessage,
  capHistory,
  CODE_LETTERS,
  decodeProvisionMessage,
  formatProvisioningCode,
  HISTORY_BUDGET,
  LinkError,
  linkDevice,
  LinkRequest,
  MAX_PROVISIONED_HISTORY,
  openProvisioned,
  parseProvisioningCode,
  sameProvisioningCode,
  type HistoryEntry,
  type LinkErrorKind,
} from "../src/client/linking.js";
import { MemoryStore } from "../src/client/store.js";
import { IdentityKeyPair, x25519PublicKey } from "../src/identity.js";
import { LocalPreKeys } from "../src/prekeys.js";
import { sealProvisioning } from "../src/provisioning.js";
import { seededRng } from "./helpers.js";

const rejects = (kind: LinkErrorKind) => (error: unknown) => error instanceof LinkError && error.kind === kind;

test("the code is 77 base32 letters in groups of four; case, dashes and spaces do not matter", () => {
  const code = { publicKey: new Uint8Array(32).fill(0xa5), slotId: new Uint8Array(16).fill(0x3c) };
  const text = formatProvisioningCode(code);
  assert.equal(text.replace(/-/g, "").length, CODE_LETTERS);
  assert.match(text, /^([A-Z2-7]{4}-){19}[A-Z2-7]$/);
  assert.ok(sameProvisioningCode(parseProvisioningCode(text), code));
  const sloppy = ` ${text.toLowerCase().replace(/-/g, " ")}\n`;
  assert.ok(sameProvisioningCode(parseProvisioningCode(sloppy), code));
  const rng = seededRng("codes");
  for (let i = 0; i < 50; i++) {
    const random = { publicKey: rng.fill(32), slotId: rng.fill(16) };
    assert.ok(sameProvisioningCode(parseProvisioningCode(formatProvisioningCode(random)), random));
  }
  // The same text as the Rust client's (RFC 4648): 0xa5 0xa5 … encodes to "UWS2LJNF…".
  assert.ok(text.startsWith("UWS2-LJNF-"), text);
});

test("a mistyped code is refused as InvalidCode", () => {
  const text = formatProvisioningCode({ publicKey: new Uint8Array(32).fill(1), slotId: new Uint8Array(16).fill(2) });
  for (const bad of ["", text.slice(0, -5), `${text}A`, `1${text.slice(1)}`, `0${text.slice(1)}`, text.replace(/.$/, "B"), "not a code at all"]) {
    assert.throws(() => parseProvisioningCode(bad), rejects("InvalidCode"), JSON.stringify(bad));
  }
  assert.throws(() => formatProvisioningCode({ publicKey: new Uint8Array(31), slotId: new Uint8Array(16) }), rejects("InvalidCode"));
});

const textContent = (text: string, id = 1): Content => create(ContentSchema, { messageId: new Uint8Array(16).fill(id), sentAtMs: 5n, body: { case: "text", value: { text } } });

interface MessageInit {
  username?: string;
  identitySeed?: Uint8Array;
  contacts?: { username: string; identityKey: Uint8Array }[];
  groups?: { groupId: Uint8Array; metadataKey?: Uint8Array }[];
  history?: MessageInitShape<typeof HistoryMessageSchema>[];
}
function good(): MessageInit {
  return {
    username: "alice",
    identitySeed: new Uint8Array(32).fill(7),
    contacts: [{ username: "bob", identityKey: new Uint8Array(32).fill(2) }],
    groups: [{ groupId: new Uint8Array(16).fill(3), metadataKey: new Uint8Array(32).fill(4) }, { groupId: new Uint8Array(16).fill(5) }],
    history: [{ conversation: { case: "username", value: "bob" }, author: "bob", content: textContent("hi") }],
  };
}
const encode = (init: MessageInit) => toBinary(ProvisionMessageSchema, create(ProvisionMessageSchema, init));

test("a valid message decodes with every part, copied out of the plaintext; wipe clears the seed and keys", () => {
  const plaintext = encode(good());
  const provisioned = decodeProvisionMessage(plaintext);
  plaintext.fill(0);
  assert.equal(provisioned.username, "alice");
  assert.deepEqual(provisioned.identitySeed, new Uint8Array(32).fill(7));
  assert.deepEqual(provisioned.contacts, [{ username: "bob", identityKey: new Uint8Array(32).fill(2) }]);
  assert.equal(provisioned.groups.length, 2);
  assert.deepEqual(provisioned.groups[1]!.metadataKey, new Uint8Array(0));
  assert.deepEqual(provisioned.history[0]!.conversation, { kind: "direct", username: "bob" });
  assert.equal(provisioned.history[0]!.content.body.case === "text" && provisioned.history[0]!.content.body.value.text, "hi");
  assert.deepEqual(provisioned.history[0]!.content.messageId, new Uint8Array(16).fill(1), "bytes survive the plaintext's wipe");
  provisioned.wipe();
  assert.deepEqual(provisioned.identitySeed, new Uint8Array(32));
  assert.deepEqual(provisioned.groups[0]!.metadataKey, new Uint8Array(32));
});

test("every check of §12.14 step 5 refuses with InvalidMessage, never another error", () => {
  const history = (entry: MessageInitShape<typeof HistoryMessageSchema>) => ({ ...good(), history: [entry] });
  const cases: [string, MessageInit | Uint8Array][] = [
    ["garbage bytes", Uint8Array.of(0xff, 0xff, 0xff, 0xff)],
    ["a truncated message", encode(good()).slice(0, 20)],
    ["empty username", { ...good(), username: "" }],
    ["33-byte username", { ...good(), username: "a".repeat(33) }],
    ["31-byte seed", { ...good(), identitySeed: new Uint8Array(31) }],
    ["no seed", { ...good(), identitySeed: new Uint8Array(0) }],
    ["contact key of 31 bytes", { ...good(), contacts: [{ username: "bob", identityKey: new Uint8Array(31) }] }],
    ["contact without a name", { ...good(), contacts: [{ username: "", identityKey: new Uint8Array(32) }] }],
    ["2001 contacts", { ...good(), contacts: Array.from({ length: 2001 }, (_, i) => ({ username: `u${i}`, identityKey: new Uint8Array(32) })) }],
    ["group id of 15 bytes", { ...good(), groups: [{ groupId: new Uint8Array(15) }] }],
    ["metadata key of 16 bytes", { ...good(), groups: [{ groupId: new Uint8Array(16), metadataKey: new Uint8Array(16) }] }],
    ["501 groups", { ...good(), groups: Array.from({ length: 501 }, () => ({ groupId: new Uint8Array(16) })) }],
    ["history without a conversation", history({ author: "bob", content: textContent("x") })],
    ["history with a 15-byte group", history({ conversation: { case: "groupId", value: new Uint8Array(15) }, author: "bob", content: textContent("x") })],
    ["history with an empty username", history({ conversation: { case: "username", value: "" }, author: "bob", content: textContent("x") })],
    ["history with a bad author", history({ conversation: { case: "username", value: "bob" }, author: "", content: textContent("x") })],
    ["history without content", history({ conversation: { case: "username", value: "bob" }, author: "bob" })],
    ["history with invalid content", history({ conversation: { case: "username", value: "bob" }, author: "bob", content: textContent("") })],
    [
      "history holding a SyncMessage",
      history({ conversation: { case: "username", value: "bob" }, author: "bob", content: create(ContentSchema, { messageId: new Uint8Array(16), body: { case: "sync", value: { kind: { case: "sent", value: { destination: { case: "destinationUsername", value: "bob" }, content: textContent("x"), timestampMs: 1n } } } } }) }),
    ],
    ["1001 history messages", { ...good(), history: Array.from({ length: 1001 }, () => ({ conversation: { case: "username" as const, value: "bob" }, author: "bob", content: textContent("x") })) }],
    ["more than 65536 bytes of history", { ...good(), history: Array.from({ length: 3 }, (_, i) => ({ conversation: { case: "username" as const, value: "bob" }, author: "bob", content: textContent("y".repeat(30_000), i) })) }],
  ];
  for (const [name, init] of cases) {
    const bytes = init instanceof Uint8Array ? init : encode(init);
    assert.throws(() => decodeProvisionMessage(bytes), rejects("InvalidMessage"), name);
  }
});

test("a sealed message opens only with the code's key and slot", () => {
  const rng = seededRng("open");
  const secret = rng.fill(32);
  const slot = rng.fill(16);
  const sealed = sealProvisioning(rng.fill(32), x25519PublicKey(secret), slot, encode(good()));
  assert.equal(openProvisioned(secret, slot, sealed).username, "alice");
  assert.throws(() => openProvisioned(secret, new Uint8Array(16), sealed), rejects("DoesNotOpen"));
  assert.throws(() => openProvisioned(rng.fill(32), slot, sealed), rejects("DoesNotOpen"));
  assert.throws(() => openProvisioned(secret, slot, sealed.slice(0, 40)), rejects("DoesNotOpen"));
  const flipped = sealed.slice();
  flipped[60]! ^= 1;
  assert.throws(() => openProvisioned(secret, slot, flipped), rejects("DoesNotOpen"));
  // Sealed garbage opens but does not decode.
  const garbage = sealProvisioning(rng.fill(32), x25519PublicKey(secret), slot, Uint8Array.of(0xff, 0xff));
  assert.throws(() => openProvisioned(secret, slot, garbage), rejects("InvalidMessage"));
});

function store(username: string, rng = seededRng(`store-${username}`)): MemoryStore {
  const s = new MemoryStore(new LocalPreKeys());
  s.setDevice({ username, deviceId: 1n, deviceKey: IdentityKeyPair.generate(rng), identity: IdentityKeyPair.generate(rng) });
  return s;
}

test("the existing device sends its identity, trusted contacts, active groups and capped history", () => {
  const s = store("alice");
  s.setContactIdentity("bob", new Uint8Array(32).fill(9));
  s.setGroup(new Uint8Array(16).fill(1), { version: 2n, active: true, members: [], name: "team", description: "", metadataKey: new Uint8Array(32).fill(8), encryptedMetadata: new Uint8Array(0), checkedMs: 0, leaving: [], pendingKey: new Uint8Array(0), pendingCreatedBy: "" });
  s.setGroup(new Uint8Array(16).fill(2), { version: 3n, active: false, members: [], name: "old", description: "", metadataKey: new Uint8Array(32), encryptedMetadata: new Uint8Array(0), checkedMs: 0, leaving: [], pendingKey: new Uint8Array(0), pendingCreatedBy: "" });
  const history: HistoryEntry[] = [{ conversation: { kind: "direct", username: "bob" }, author: "alice", content: textContent("hello") }];
  // "carol" has no trusted key yet (never talked): left out; "alice" herself is not a contact.
  const { plaintext, summary } = buildProvisionMessage({ store: s, contacts: ["bob", "carol", "alice", "bob"], history });
  assert.deepEqual(summary, { contacts: 1, groups: 1, history: 1 });
  const message = fromBinary(ProvisionMessageSchema, plaintext);
  assert.deepEqual(message.identitySeed, s.device()!.identity.exportSeed());
  assert.deepEqual(message.groups[0]!.metadataKey, new Uint8Array(32).fill(8));
  assert.equal(decodeProvisionMessage(plaintext).history.length, 1);
  assert.throws(() => buildProvisionMessage({ store: new MemoryStore(new LocalPreKeys()), contacts: [] }), rejects("NotEnrolled"));

  const many = Array.from({ length: 1200 }, (_, i): HistoryEntry => ({ conversation: { kind: "direct", username: "bob" }, author: "bob", content: textContent("x", i % 200) }));
  assert.equal(capHistory(many).length, MAX_PROVISIONED_HISTORY);
  const big = Array.from({ length: 10 }, (_, i): HistoryEntry => ({ conversation: { kind: "group", groupId: new Uint8Array(16) }, author: "bob", content: textContent("z".repeat(10_000), i) }));
  const capped = capHistory(big);
  assert.equal(capped.length, 6);
  assert.ok(capped.reduce((n, m) => n + toBinary(HistoryMessageSchema, m).length, 0) <= HISTORY_BUDGET);
});

// ---- a scripted socket playing the server --------------------------------

type ResultInit = NonNullable<MessageInitShape<typeof ResponseSchema>["result"]>;

class FakeSocket implements SocketLike {
  binaryType = "blob";
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  onClientFrame: (frame: ClientFrame) => void = () => undefined;
  closed = false;

  constructor() {
    queueMicrotask(() => this.onopen?.({}));
  }

  send(data: Uint8Array): void {
    const frame = fromBinary(ClientFrameSchema, data);
    queueMicrotask(() => this.onClientFrame(frame));
  }

  close(code = 1000): void {
    if (this.closed) return;
    this.closed = true;
    queueMicrotask(() => this.onclose?.({ code, reason: "" }));
  }

  serve(frame: MessageInitShape<typeof ServerFrameSchema>): void {
    const bytes = toBinary(ServerFrameSchema, create(ServerFrameSchema, frame));
    this.onmessage?.({ data: bytes.slice().buffer });
  }

  answer(requestId: bigint, result: ResultInit): void {
    this.serve({ kind: { case: "response", value: { requestId, result } } });
  }
}

/** A server holding one slot; `script` decides what each fetch answers. */
function fakeServer(options: { fetch?: (count: number) => "empty" | "ready" | "gone" | "close"; slotExpiresAtMs?: number } = {}) {
  const slotId = new Uint8Array(16).fill(0x42);
  const state = { sockets: 0, fetches: 0, sealed: undefined as Uint8Array | undefined, created: 0 };
  const factory = () => {
    const socket = new FakeSocket();
    state.sockets += 1;
    socket.onClientFrame = (frame) => {
      const id = frame.requestId;
      switch (frame.request.case) {
        case "hello":
          socket.answer(id, { case: "hello", value: { version: 1, serverAgent: "fake", challenge: new Uint8Array(32) } });
          return;
        case "createProvisioningSlot":
          state.created += 1;
          socket.answer(id, { case: "provisioningSlot", value: { slotId, expiresAtMs: BigInt(options.slotExpiresAtMs ?? Date.now() + 600_000) } });
          return;
        case "putProvisioningSlot": {
          const put = frame.request.value;
          if (state.sealed || put.slotId.length !== 16 || put.slotId[0] !== 0x42) socket.answer(id, { case: "error", value: { code: ErrorCode.UNKNOWN_PROVISIONING_SLOT, message: "no slot" } });
          else {
            state.sealed = put.sealed;
            socket.answer(id, { case: "ok", value: {} });
          }
          return;
        }
        case "fetchProvisioningSlot": {
          state.fetches += 1;
          const what = options.fetch?.(state.fetches) ?? (state.sealed ? "ready" : "empty");
          if (what === "close") socket.close(4000 + ErrorCode.NOT_AUTHENTICATED);
          else if (what === "gone") socket.answer(id, { case: "error", value: { code: ErrorCode.UNKNOWN_PROVISIONING_SLOT, message: "gone" } });
          else if (what === "ready" && state.sealed) socket.answer(id, { case: "provisioningMessage", value: { ready: true, sealed: state.sealed } });
          else socket.answer(id, { case: "provisioningMessage", value: { ready: false } });
          return;
        }
        default:
          socket.answer(id, { case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: "not scripted" } });
      }
    };
    return socket;
  };
  const connect = () => Connection.open({ url: "ws://127.0.0.1:1/v1/ws", socketFactory: factory, keepAlive: false });
  return { state, connect, slotId };
}

test("scripted: the new device polls, reconnects when the server closes it, and opens what the existing device put", async () => {
  // The 2nd fetch finds the connection closed (as the server closes one that does not log in); then empty until the put.
  const live: ReturnType<typeof fakeServer> = fakeServer({ fetch: (n) => (n === 2 ? "close" : live.state.sealed ? "ready" : "empty") });
  const request = await LinkRequest.create({ connect: live.connect, rng: seededRng("new"), pollIntervalMs: 5 });
  assert.equal(live.state.created, 1);
  assert.ok(sameProvisioningCode(parseProvisioningCode(request.text), request.code));
  const states: string[] = [];
  const waiting = request.wait({ onState: (s) => states.push(s), timeoutMs: 5_000 });

  const existing = store("alice", seededRng("existing"));
  existing.setContactIdentity("bob", new Uint8Array(32).fill(9));
  const conn = await live.connect();
  await assert.rejects(linkDevice(conn, "AAAA", { store: existing, contacts: [] }), rejects("InvalidCode"));
  await new Promise((r) => setTimeout(r, 30));
  const summary = await linkDevice(conn, request.text.toLowerCase(), { store: existing, contacts: ["bob"], history: [{ conversation: { kind: "direct", username: "bob" }, author: "bob", content: textContent("earlier") }] });
  assert.deepEqual(summary, { contacts: 1, groups: 0, history: 1 });
  // A second put to the same slot is refused: the code is used.
  await assert.rejects(linkDevice(conn, request.text, { store: existing, contacts: [] }), rejects("SlotGone"));

  const provisioned = await waiting;
  assert.equal(provisioned.username, "alice");
  assert.deepEqual(provisioned.identitySeed, existing.device()!.identity.exportSeed());
  assert.deepEqual(provisioned.contacts.map((c) => c.username), ["bob"]);
  assert.equal(provisioned.history.length, 1);
  assert.ok(live.state.fetches >= 3);
  assert.ok(live.state.sockets >= 3, "reconnected after the close");
  assert.equal(states.at(-1), "received");
  // Once only.
  await assert.rejects(request.wait(), rejects("SlotGone"));
  conn.close();
});

test("scripted: a slot the server no longer has is SlotGone; an expired one too; a cancel is Cancelled", async () => {
  const gone = fakeServer({ fetch: () => "gone" });
  const r1 = await LinkRequest.create({ connect: gone.connect, pollIntervalMs: 5 });
  await assert.rejects(r1.wait(), rejects("SlotGone"));

  const expired = fakeServer({ slotExpiresAtMs: Date.now() + 40 });
  const r2 = await LinkRequest.create({ connect: expired.connect, pollIntervalMs: 5 });
  await assert.rejects(r2.wait(), rejects("SlotGone"));

  const slow = fakeServer();
  const r3 = await LinkRequest.create({ connect: slow.connect, pollIntervalMs: 5 });
  await assert.rejects(r3.wait({ timeoutMs: 30 }), rejects("TimedOut"));
  const controller = new AbortController();
  const r4 = await LinkRequest.create({ connect: slow.connect, pollIntervalMs: 5 });
  const waiting = r4.wait({ signal: controller.signal });
  setTimeout(() => controller.abort(), 20);
  await assert.rejects(waiting, rejects("Cancelled"));
  r4.dispose();
});

test("scripted: an unreachable server is Unreachable, at create and while waiting; a sealed message for another key is DoesNotOpen", async () => {
  const down = () => Promise.reject(new Error("ECONNREFUSED"));
  await assert.rejects(LinkRequest.create({ connect: down }), rejects("Unreachable"));

  const server = fakeServer({ fetch: (n) => (n === 1 ? "close" : "empty") });
  let up = true;
  const request = await LinkRequest.create({ connect: () => (up ? server.connect() : down()), pollIntervalMs: 5, unreachableAfterMs: 50 });
  up = false;
  const states: string[] = [];
  await assert.rejects(request.wait({ onState: (s) => states.push(s) }), rejects("Unreachable"));
  assert.ok(states.includes("reconnecting"));

  const other = fakeServer();
  const r = await LinkRequest.create({ connect: other.connect, pollIntervalMs: 5 });
  const foreign = formatProvisioningCode({ publicKey: x25519PublicKey(seededRng("foreign").fill(32)), slotId: other.slotId });
  const conn = await other.connect();
  await linkDevice(conn, foreign, { store: store("alice"), contacts: [] });
  await assert.rejects(r.wait(), rejects("DoesNotOpen"));
  conn.close();
});

test("random bytes and random text never throw anything but a LinkError", () => {
  const rng = seededRng("fuzz");
  const valid = encode(good());
  for (let i = 0; i < 2000; i++) {
    const n = rng.fill(1)[0]! % 96;
    // Half pure noise, half a valid message with a few bytes changed.
    const bytes = i % 2 === 0 ? rng.fill(n) : valid.slice();
    if (i % 2 === 1) for (let k = 0; k < 3; k++) bytes[rng.fill(1)[0]! % bytes.length] = rng.fill(1)[0]!;
    try {
      decodeProvisionMessage(bytes);
    } catch (error) {
      assert.ok(error instanceof LinkError, String(error));
    }
    const text = Array.from(rng.fill(n), (b) => String.fromCharCode(32 + (b % 95))).join("");
    try {
      parseProvisioningCode(text);
    } catch (error) {
      assert.ok(error instanceof LinkError && error.kind === "InvalidCode", String(error));
    }
  }
});

/**
 * src/client/outbox.ts against an in-memory server: sends queued while
 * offline are durable before `queue*` resolves, survive a restart of the
 * client (a new Outbox and Messenger over the same stores), leave in order
 * on the next connection, and are stored by the server exactly once even
 * when the connection drops in the middle of the drain. Bob's device
 * decrypts every accepted send, so order and content are checked end to end.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";

import type { SocketLike } from "../src/client/connection.js";
import { Connection } from "../src/client/connection.js";
import { Messenger } from "../src/client/messenger.js";
import { MemoryOutbox, Outbox, type OutboxEvent } from "../src/client/outbox.js";
import { MemoryStore } from "../src/client/store.js";
import { ContentSchema } from "../src/content.js";
import { ClientFrameSchema, EnvelopeSchema, ErrorCode, ServerFrameSchema, type ClientFrame } from "../src/gen/transport_pb.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, SignedPreKey } from "../src/prekeys.js";
import { seededRng } from "./helpers.js";

type Kind = MessageInitShape<typeof ServerFrameSchema>["kind"];

/** Bob's device 2: its bundle and a messenger that opens what Alice sends. */
function bob() {
  const rng = seededRng("bob");
  const identity = IdentityKeyPair.generate(rng);
  const preKeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(rng, identity, 1, true);
  const kem = KemPreKey.generate(rng, identity, 1);
  preKeys.addSigned(signed);
  preKeys.addKem(kem);
  const [oneTime] = preKeys.generateOneTime(rng, 1);
  const bundle = { deviceId: 2n, identityKey: identity.publicKey.toBytes(), signedPrekey: signed.public(), oneTimePrekey: oneTime!.public(), kemPrekey: kem.public() };
  const store = new MemoryStore(preKeys);
  store.setDevice({ username: "bob", deviceId: 2n, deviceKey: IdentityKeyPair.generate(rng), identity });
  return { bundle, messenger: new Messenger(store, seededRng("bob-run")) };
}

/** A server holding Bob's bundle; `dropOnSend(n)` closes the socket instead of answering the n-th send. Accepted envelopes go to `stored`. */
function server(bundle: ReturnType<typeof bob>["bundle"]) {
  const stored: Uint8Array[] = [];
  let sends = 0;
  const state = { dropOnSend: 0, rateLimitOnSend: 0 };
  const factory = (): SocketLike => {
    const socket: SocketLike = {
      binaryType: "",
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
      send(data: Uint8Array) {
        const frame: ClientFrame = fromBinary(ClientFrameSchema, data);
        const ok = (result: NonNullable<Extract<Kind, { case: "response" }>["value"]>["result"]): Kind => ({ case: "response", value: { requestId: frame.requestId, result } });
        let kind: Kind;
        switch (frame.request.case) {
          case "hello":
            kind = ok({ case: "hello", value: { version: 1, challenge: new Uint8Array(32) } });
            break;
          case "listDevices":
            kind = ok({ case: "deviceList", value: { devices: [{ deviceId: 1n }] } });
            break;
          case "fetchPrekeys":
            kind = ok({ case: "prekeyBundles", value: { bundles: [bundle] } });
            break;
          case "send":
            sends += 1;
            if (sends === state.dropOnSend) {
              queueMicrotask(() => socket.onclose?.({ code: 1006, reason: "" }));
              return;
            }
            if (sends === state.rateLimitOnSend) {
              kind = ok({ case: "error", value: { code: ErrorCode.RATE_LIMITED, message: "slow down", retryAfterMs: 50n } });
              break;
            }
            stored.push(frame.request.value.envelopes[0]!.ciphertext);
            kind = ok({ case: "send", value: { serverTimestampMs: BigInt(stored.length) } });
            break;
          default:
            kind = ok({ case: "ok", value: {} });
        }
        queueMicrotask(() => socket.onmessage?.({ data: toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind })) }));
      },
      close() {},
    };
    queueMicrotask(() => socket.onopen?.({}));
    return socket;
  };
  const connect = () => Connection.open({ url: "ws://x/v1/ws", socketFactory: factory, keepAlive: false });
  return { stored, state, connect };
}

function alice(): MemoryStore {
  const rng = seededRng("alice");
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username: "alice", deviceId: 1n, deviceKey: IdentityKeyPair.generate(rng), identity: IdentityKeyPair.generate(rng) });
  return store;
}

test("sends queued offline survive a restart and leave in order, exactly once, across a connection dropped mid-drain", async () => {
  const b = bob();
  const srv = server(b.bundle);
  const store = alice();
  const queue = new MemoryOutbox();

  // Offline: three sends are queued (durable when the promise resolves) and nothing leaves.
  const first = new Outbox(queue, new Messenger(store, seededRng("run-1")), seededRng("run-1-ids"));
  const ids = [await first.queueText("bob", "one"), await first.queueText("bob", "two"), await first.queueText("bob", "three")];
  assert.equal(first.pending, 3);
  assert.equal(srv.stored.length, 0);

  // The client restarts: a new Outbox and Messenger over the same stores. Its first connection drops at the second send.
  const events: OutboxEvent[] = [];
  const second = new Outbox(queue, new Messenger(store, seededRng("run-2")), seededRng("run-2-ids"), { onEvent: (e) => events.push(e) });
  srv.state.dropOnSend = 2;
  const lost = await srv.connect();
  second.setConnection(lost);
  await second.idle();
  assert.equal(srv.stored.length, 1, "only the first left before the drop");
  assert.equal(second.pending, 2, "the unanswered send stays queued");

  // Reconnected: the rest leaves, in order.
  second.setConnection(await srv.connect());
  await second.idle();
  assert.equal(second.pending, 0);
  assert.deepEqual(events.map((e) => e.kind), ["sent", "sent", "sent"]);
  assert.deepEqual(events.map((e) => e.messageId), ids, "the message ids fixed at queue time");

  // Bob opens exactly three messages, in the order queued.
  const texts = srv.stored.map((ciphertext, i) => {
    const incoming = b.messenger.open(create(EnvelopeSchema, { envelopeId: BigInt(i + 1), senderUsername: "alice", senderDeviceId: 1n, ciphertext }));
    const body = incoming!.content.body;
    return body.case === "text" ? body.value.text : "?";
  });
  assert.deepEqual(texts, ["one", "two", "three"]);

  // Queued while connected: leaves at once.
  await second.queueText("bob", "four");
  await second.idle();
  assert.equal(srv.stored.length, 4);
});

test("invalid content is refused before it is queued; a queued entry that cannot be sent is dropped and reported", async () => {
  const srv = server(bob().bundle);
  const queue = new MemoryOutbox();
  const events: OutboxEvent[] = [];
  const outbox = new Outbox(queue, new Messenger(alice(), seededRng("r")), seededRng("ids"), { onEvent: (e) => events.push(e) });
  await assert.rejects(outbox.queueContent("bob", create(ContentSchema, { messageId: new Uint8Array(3), body: { case: "text", value: { text: "x" } } })));
  assert.equal(outbox.pending, 0);
  await queue.outboxAppend({ to: "bob", content: new Uint8Array([0xff, 0xff]) }); // garbage on disk
  const ok = await outbox.queueText("bob", "after");
  outbox.setConnection(await srv.connect());
  await outbox.idle();
  assert.equal(outbox.pending, 0);
  assert.deepEqual(events.map((e) => e.kind).at(-1), "sent");
  assert.deepEqual(events.at(-1)!.messageId, ok);
  assert.equal(events.filter((e) => e.kind === "failed").length, 1, "the garbage entry");
});

test("a send refused with retry_after_ms stays queued and leaves once that time has passed", async () => {
  const srv = server(bob().bundle);
  srv.state.rateLimitOnSend = 1;
  const events: OutboxEvent[] = [];
  const outbox = new Outbox(new MemoryOutbox(), new Messenger(alice(), seededRng("r")), seededRng("ids"), { onEvent: (e) => events.push(e) });
  outbox.setConnection(await srv.connect());
  await outbox.queueText("bob", "later");
  await outbox.idle();
  assert.equal(outbox.pending, 1, "waiting out retry_after_ms");
  assert.equal(srv.stored.length, 0);
  await new Promise((resolve) => setTimeout(resolve, 120));
  await outbox.idle();
  assert.equal(outbox.pending, 0);
  assert.equal(srv.stored.length, 1);
  assert.deepEqual(events.map((e) => e.kind), ["sent"]);
});

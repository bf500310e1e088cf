/** src/client/messenger.ts against an in-memory server socket: MISSING_DEVICES retry (§12.7), duplicates and garbage dropped but acknowledged. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";

import { Connection, ServerError, type SocketLike } from "../src/client/connection.js";
import { DeviceListCheckError } from "../src/client/device_list_check.js";
import { Messenger } from "../src/client/messenger.js";
import { MemoryStore } from "../src/client/store.js";
import { ContentSchema, encodeContent } from "../src/content.js";
import { newDeviceList, signDeviceList } from "../src/device_list.js";
import { ClientFrameSchema, EnvelopeSchema, ErrorCode, ServerFrameSchema, type ClientFrame, type Envelope } from "../src/gen/transport_pb.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, SignedPreKey } from "../src/prekeys.js";
import { Session } from "../src/session.js";
import { seededRng } from "./helpers.js";

type Result = MessageInitShape<typeof ServerFrameSchema>;

/** A socket whose server is `answer` (Hello answered here). */
function socketFactory(answer: (frame: ClientFrame) => Result["kind"]) {
  return (): SocketLike => {
    const socket: SocketLike = {
      binaryType: "",
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
      send(data: Uint8Array) {
        const frame = fromBinary(ClientFrameSchema, data);
        const kind =
          frame.request.case === "hello"
            ? { case: "response" as const, value: { requestId: frame.requestId, result: { case: "hello" as const, value: { version: 1, challenge: new Uint8Array(32) } } } }
            : answer(frame);
        queueMicrotask(() => socket.onmessage?.({ data: toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind })) }));
      },
      close() {},
    };
    queueMicrotask(() => socket.onopen?.({}));
    return socket;
  };
}

/** A device of "bob" with prekeys, able to open what the messenger sends. */
function bobDevice(label: string, identity: IdentityKeyPair) {
  const rng = seededRng(label);
  const preKeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(rng, identity, 1, true);
  const kem = KemPreKey.generate(rng, identity, 1);
  preKeys.addSigned(signed);
  preKeys.addKem(kem);
  const [oneTime] = preKeys.generateOneTime(rng, 1);
  const bundle = { identityKey: identity.publicKey.toBytes(), signedPrekey: signed.public(), oneTimePrekey: oneTime!.public(), kemPrekey: kem.public() };
  return { preKeys, bundle };
}

function aliceStore(): MemoryStore {
  const store = new MemoryStore(new LocalPreKeys());
  const rng = seededRng("alice");
  store.setDevice({ username: "alice", deviceId: 1n, deviceKey: IdentityKeyPair.generate(rng), identity: IdentityKeyPair.generate(rng) });
  return store;
}

test("a send refused with MISSING_DEVICES fetches the named device, starts a session and sends to both", async () => {
  const bobIdentity = IdentityKeyPair.generate(seededRng("bob"));
  const dev2 = bobDevice("bob-2", bobIdentity);
  const dev3 = bobDevice("bob-3", bobIdentity);
  const sends: ClientFrame[] = [];
  const fetches: bigint[][] = [];
  const factory = socketFactory((frame) => {
    const ok = (result: NonNullable<Extract<Result["kind"], { case: "response" }>["value"]>["result"]) => ({ case: "response" as const, value: { requestId: frame.requestId, result } });
    if (frame.request.case === "listDevices") return ok({ case: "deviceList", value: { devices: [{ deviceId: 1n }] } });
    if (frame.request.case === "fetchPrekeys") {
      const ids = frame.request.value.deviceIds;
      fetches.push([...ids]);
      const bundles = ids.length === 0 ? [{ deviceId: 2n, ...dev2.bundle }] : [{ deviceId: 3n, ...dev3.bundle }];
      return ok({ case: "prekeyBundles", value: { bundles } });
    }
    if (frame.request.case === "send") {
      sends.push(frame);
      if (sends.length === 1) return ok({ case: "error", value: { code: ErrorCode.MISSING_DEVICES, message: "missing", deviceIds: [3n] } });
      return ok({ case: "send", value: { serverTimestampMs: 42n } });
    }
    return ok({ case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: "?" } });
  });
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: factory });
  const store = aliceStore();
  const messenger = new Messenger(store, seededRng("alice-run"));
  assert.equal(await messenger.sendText(connection, "bob", "hi"), 42n);
  assert.deepEqual(fetches, [[], [3n]]);
  assert.equal(sends.length, 2);
  const [first, second] = sends.map((f) => (f.request.case === "send" ? f.request.value : undefined));
  assert.deepEqual(first!.completeAccounts, ["alice", "bob"]);
  assert.deepEqual(first!.envelopes.map((e) => e.recipientDeviceId), [2n]);
  assert.deepEqual(second!.envelopes.map((e) => e.recipientDeviceId).sort(), [2n, 3n]);
  // Device 2 opens the envelope of the send that was stored (a padded Content, §11.3).
  const opened = Session.accept(seededRng("b"), bobIdentity, dev2.preKeys, second!.envelopes.find((e) => e.recipientDeviceId === 2n)!.ciphertext);
  assert.ok(opened.plaintext.length % 160 === 0);
  assert.deepEqual(store.contactIdentity("bob"), bobIdentity.publicKey.toBytes());
});

test("a third refusal is not retried; the same envelope twice is opened once; garbage is dropped and acked", async () => {
  const bobIdentity = IdentityKeyPair.generate(seededRng("bob"));
  const dev2 = bobDevice("bob-2", bobIdentity);
  const acks: bigint[][] = [];
  const factory = socketFactory((frame) => {
    const ok = (result: NonNullable<Extract<Result["kind"], { case: "response" }>["value"]>["result"]) => ({ case: "response" as const, value: { requestId: frame.requestId, result } });
    if (frame.request.case === "listDevices") return ok({ case: "deviceList", value: { devices: [{ deviceId: 1n }] } });
    if (frame.request.case === "fetchPrekeys") return ok({ case: "prekeyBundles", value: { bundles: [{ deviceId: 2n, ...dev2.bundle }] } });
    if (frame.request.case === "ackEnvelopes") {
      acks.push([...frame.request.value.envelopeIds]);
      return ok({ case: "ack", value: { deleted: frame.request.value.envelopeIds.length } });
    }
    return ok({ case: "error", value: { code: ErrorCode.MISSING_DEVICES, message: "missing", deviceIds: [9n] } });
  });
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: factory });
  const alice = aliceStore();
  const messenger = new Messenger(alice, seededRng("alice-run"));
  await assert.rejects(messenger.sendText(connection, "bob", "hi"), (e) => e instanceof ServerError && e.code === ErrorCode.MISSING_DEVICES);

  // Bob's side: a Messenger for device 2 receiving from a TS "alice" session.
  const bobStore = new MemoryStore(dev2.preKeys);
  bobStore.setDevice({ username: "bob", deviceId: 2n, deviceKey: IdentityKeyPair.generate(seededRng("bk")), identity: bobIdentity });
  const bob = new Messenger(bobStore, seededRng("bob-run"));
  const session = Session.initiate(seededRng("a2"), alice.device()!.identity, { identityKey: dev2.bundle.identityKey, signedPreKey: dev2.bundle.signedPrekey, oneTimePreKey: dev2.bundle.oneTimePrekey, kemPreKey: dev2.bundle.kemPrekey });
  const ciphertext = session.encrypt(encodeContent(create(ContentSchema, { messageId: new Uint8Array(16).fill(1), sentAtMs: 1n, body: { case: "text", value: { text: "yo" } } })));
  const env = (id: bigint, bytes: Uint8Array): Envelope => create(EnvelopeSchema, { envelopeId: id, senderUsername: "alice", senderDeviceId: 1n, ciphertext: bytes });
  const got = await bob.take(connection, [env(5n, ciphertext), env(5n, ciphertext), env(6n, new Uint8Array([2, 0xff]))]);
  assert.deepEqual(got.map((m) => (m.content.body.case === "text" ? m.content.body.value.text : "")), ["yo"]);
  assert.deepEqual(acks, [[5n, 5n, 6n]]);
  assert.equal(bob.safetyNumber("alice")?.digits, messenger.safetyNumber("bob")?.digits);
});

test("sends started together to a new contact: bundles fetched once, each message encrypted once on its own chain step, all open in order", async () => {
  const bobIdentity = IdentityKeyPair.generate(seededRng("bob"));
  const dev2 = bobDevice("bob-2", bobIdentity);
  const fetches: bigint[][] = [];
  const sends: ClientFrame[] = [];
  const factory = socketFactory((frame) => {
    const ok = (result: NonNullable<Extract<Result["kind"], { case: "response" }>["value"]>["result"]) => ({ case: "response" as const, value: { requestId: frame.requestId, result } });
    if (frame.request.case === "listDevices") return ok({ case: "deviceList", value: { devices: [{ deviceId: 1n }] } });
    if (frame.request.case === "fetchPrekeys") {
      fetches.push([...frame.request.value.deviceIds]);
      return ok({ case: "prekeyBundles", value: { bundles: [{ deviceId: 2n, ...dev2.bundle }] } });
    }
    if (frame.request.case === "send") {
      sends.push(frame);
      return ok({ case: "send", value: { serverTimestampMs: BigInt(sends.length) } });
    }
    if (frame.request.case === "ackEnvelopes") return ok({ case: "ack", value: { deleted: frame.request.value.envelopeIds.length } });
    return ok({ case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: "?" } });
  });
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: factory });
  const messenger = new Messenger(aliceStore(), seededRng("alice-run"));
  const texts = ["one", "two", "three", "four"];
  const stamps = await Promise.all(texts.map((t) => messenger.sendText(connection, "bob", t)));
  assert.deepEqual(stamps, [1n, 2n, 3n, 4n], "sent in call order");
  assert.deepEqual(fetches, [[]], "one bundle fetch (one one-time prekey used)");
  const ciphertexts = sends.map((f) => (f.request.case === "send" ? f.request.value.envelopes[0]!.ciphertext : new Uint8Array()));

  const bobStore = new MemoryStore(dev2.preKeys);
  bobStore.setDevice({ username: "bob", deviceId: 2n, deviceKey: IdentityKeyPair.generate(seededRng("bk")), identity: bobIdentity });
  const bob = new Messenger(bobStore, seededRng("bob-run"));
  const envelopes = ciphertexts.map((c, i) => create(EnvelopeSchema, { envelopeId: BigInt(10 + i), senderUsername: "alice", senderDeviceId: 1n, ciphertext: c }));
  const got = await bob.take(connection, envelopes);
  assert.deepEqual(got.map((m) => (m.content.body.case === "text" ? m.content.body.value.text : "")), texts, "every message opens, once");
});

test("a contact's signed device list (§20.4): only listed devices get messages, a newer list announces its device, a rollback refuses the send", async () => {
  const bobSeed = new Uint8Array(32).fill(0x42);
  const bobIdentity = IdentityKeyPair.fromSeed(bobSeed);
  const list = (version: bigint, ids: bigint[]) => signDeviceList(newDeviceList("bob", version, 1n, ids), bobSeed);
  const devices = new Map([2n, 3n, 4n, 9n].map((id) => [id, bobDevice(`bob-${id}`, bobIdentity)]));
  // The server's answers, step by step: a ghost device 9 carrying bob's replayed prekeys is offered but never listed.
  let served = list(1n, [2n]);
  let missing: bigint[] = [];
  const sends: bigint[][] = [];
  const factory = socketFactory((frame) => {
    const ok = (result: NonNullable<Extract<Result["kind"], { case: "response" }>["value"]>["result"]) => ({ case: "response" as const, value: { requestId: frame.requestId, result } });
    if (frame.request.case === "listDevices") return ok({ case: "deviceList", value: { devices: [{ deviceId: 1n }] } });
    if (frame.request.case === "fetchPrekeys") {
      const ids = frame.request.value.deviceIds.length === 0 ? [2n, 9n] : frame.request.value.deviceIds;
      const bundles = ids.map((id) => ({ deviceId: id, ...devices.get(id)!.bundle }));
      return ok({ case: "prekeyBundles", value: { bundles, signedDeviceList: served } });
    }
    if (frame.request.case === "send") {
      if (missing.length > 0) {
        const deviceIds = missing;
        missing = [];
        return ok({ case: "error", value: { code: ErrorCode.MISSING_DEVICES, message: "missing", deviceIds } });
      }
      sends.push(frame.request.value.envelopes.map((e) => e.recipientDeviceId).sort());
      return ok({ case: "send", value: { serverTimestampMs: 7n } });
    }
    return ok({ case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: "?" } });
  });
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: factory });
  const store = aliceStore();
  const messenger = new Messenger(store, seededRng("alice-lists"));
  const added: string[] = [];
  messenger.onDeviceAdded = (username, id) => added.push(`${username}/${id}`);

  await messenger.sendText(connection, "bob", "one");
  assert.deepEqual(sends, [[2n]]);
  assert.deepEqual(store.sessionDevices("bob"), [2n]);
  assert.deepEqual(added, []);

  served = list(2n, [2n, 3n]);
  missing = [3n];
  await messenger.sendText(connection, "bob", "two");
  assert.deepEqual(sends.at(-1), [2n, 3n]);
  assert.deepEqual(added, ["bob/3"]);
  assert.deepEqual(store.deviceList("bob"), served);

  // The server goes back to the first list to add device 4: refused, nothing stored, nothing sent.
  served = list(1n, [2n, 3n, 4n]);
  missing = [4n];
  await assert.rejects(messenger.sendText(connection, "bob", "three"), (error) => error instanceof DeviceListCheckError && error.kind === "Rollback");
  assert.equal(store.session("bob", 4n), undefined);
  assert.equal(sends.length, 2);

  // A stale session with a device the list no longer names gets nothing.
  store.setSession("bob", 9n, store.session("bob", 2n)!);
  await messenger.sendText(connection, "bob", "four");
  assert.deepEqual(sends.at(-1), [2n, 3n]);
});

test("two devices start sessions with each other at the same moment: both first messages open, then each side's reply opens under the session the other kept", async () => {
  /** One party: its store (with prekeys), its bundle, a connection whose server hands out `peer`'s bundle and records sends. */
  const party = async (name: string, peer: () => { bundle: ReturnType<typeof bobDevice>["bundle"] }) => {
    const identity = IdentityKeyPair.generate(seededRng(`${name}-id`));
    const keys = bobDevice(`${name}-keys`, identity);
    const store = new MemoryStore(keys.preKeys);
    store.setDevice({ username: name, deviceId: 1n, deviceKey: IdentityKeyPair.generate(seededRng(`${name}-dk`)), identity });
    const sent: Uint8Array[] = [];
    const factory = socketFactory((frame) => {
      const ok = (result: NonNullable<Extract<Result["kind"], { case: "response" }>["value"]>["result"]) => ({ case: "response" as const, value: { requestId: frame.requestId, result } });
      if (frame.request.case === "listDevices") return ok({ case: "deviceList", value: { devices: [{ deviceId: 1n }] } });
      if (frame.request.case === "fetchPrekeys") return ok({ case: "prekeyBundles", value: { bundles: [{ deviceId: 1n, ...peer().bundle }] } });
      if (frame.request.case === "send") {
        sent.push(...frame.request.value.envelopes.map((e) => e.ciphertext));
        return ok({ case: "send", value: { serverTimestampMs: 1n } });
      }
      if (frame.request.case === "ackEnvelopes") return ok({ case: "ack", value: { deleted: frame.request.value.envelopeIds.length } });
      return ok({ case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: "?" } });
    });
    const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: factory });
    return { name, keys, store, sent, connection, messenger: new Messenger(store, seededRng(`${name}-run`)) };
  };
  const a = await party("anna", () => b.keys);
  const b: Awaited<ReturnType<typeof party>> = await party("boris", () => a.keys);
  let nextId = 1n;
  const deliver = async (from: typeof a, to: typeof a): Promise<string[]> => {
    const envelopes = from.sent.splice(0).map((ciphertext) => create(EnvelopeSchema, { envelopeId: nextId++, senderUsername: from.name, senderDeviceId: 1n, ciphertext }));
    const got = await to.messenger.take(to.connection, envelopes);
    return got.map((m) => (m.content.body.case === "text" ? m.content.body.value.text : ""));
  };
  // Both send before either receives: two sessions, one started by each.
  await a.messenger.sendText(a.connection, "boris", "a1");
  await b.messenger.sendText(b.connection, "anna", "b1");
  assert.deepEqual(await deliver(a, b), ["a1"]);
  assert.deepEqual(await deliver(b, a), ["b1"]);
  // Each now holds the session the other started; the replies cross over.
  await a.messenger.sendText(a.connection, "boris", "a2");
  await b.messenger.sendText(b.connection, "anna", "b2");
  assert.deepEqual(await deliver(a, b), ["a2"]);
  assert.deepEqual(await deliver(b, a), ["b2"]);
  // And they keep talking.
  await a.messenger.sendText(a.connection, "boris", "a3");
  assert.deepEqual(await deliver(a, b), ["a3"]);
  await b.messenger.sendText(b.connection, "anna", "b3");
  assert.deepEqual(await deliver(b, a), ["b3"]);
});

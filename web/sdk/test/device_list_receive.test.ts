/**
 * A receiver's device-list check (SPEC.md §20.5) through `Groups.take`
 * and `Messenger.take` against an in-memory server: an envelope from a
 * device the remembered list leaves out makes the receiver look at the
 * list again (`FetchPrekeys` for device 0 for a contact, `ListDevices` for
 * its own account); a newer list naming the device lets it open and
 * announces the device; otherwise (still unlisted, forged, rolled back,
 * another list of the same version, vanished) it is refused before
 * decryption — `UnlistedDeviceError`, marked seen, acknowledged, no
 * session — for 1:1, sealed and group envelopes alike. A contact's prekey
 * message under another identity is an identity change, not a list
 * question; a look refused with `RATE_LIMITED` decides nothing.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import { Connection } from "../src/client/connection.js";
import { DeviceListCheckError, UNLISTED_DEVICE, UnlistedDeviceError } from "../src/client/device_list_check.js";
import { Groups, type ClientEvent } from "../src/client/groups.js";
import { Messenger, MessengerError } from "../src/client/messenger.js";
import { MemoryStore } from "../src/client/store.js";
import { ContentSchema, encodeContent } from "../src/content.js";
import { newDeviceList, signDeviceList } from "../src/device_list.js";
import { EnvelopeSchema, ErrorCode, type ClientFrame, type Envelope } from "../src/gen/transport_pb.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, SignedPreKey } from "../src/prekeys.js";
import { issueCertificate, sealSealedSender } from "../src/sealed_sender.js";
import { OutboundSenderKey } from "../src/sender_key.js";
import { Session } from "../src/session.js";
import { seededRng } from "./helpers.js";
import { scriptedConnection, type Result } from "./scripted_server.js";


const bobSeed = new Uint8Array(32).fill(0x42);
const bob = IdentityKeyPair.fromSeed(bobSeed);
const mySeed = new Uint8Array(32).fill(0x43);
const serverSeed = new Uint8Array(32).fill(0x61);

/** `username`'s list `version` naming `ids`, signed with `seed`. */
function list(version: bigint, ids: bigint[], seed = bobSeed, username = "bob"): Uint8Array {
  return signDeviceList(newDeviceList(username, version, 1n, ids), seed);
}

/** What the in-memory server serves and what it was asked. */
interface Server {
  /** Bob's list in `PrekeyBundles`, or a server error. */
  bobList: Uint8Array | ErrorCode;
  /** Our own account's list in `DeviceList`. */
  ownList: Uint8Array;
  looks: string[];
  acks: bigint[];
}

async function connect(server: Server): Promise<Connection> {
  const answer = (frame: ClientFrame): Result => {
    const r = frame.request;
    if (r.case === "fetchPrekeys") {
      server.looks.push(`fetchPrekeys ${r.value.username} [${r.value.deviceIds.join(",")}]`);
      if (typeof server.bobList === "number") return { case: "error", value: { code: server.bobList, message: "no" } };
      return { case: "prekeyBundles", value: { bundles: [], signedDeviceList: server.bobList } };
    }
    if (r.case === "listDevices") {
      server.looks.push("listDevices");
      return { case: "deviceList", value: { devices: [], signedDeviceList: server.ownList } };
    }
    if (r.case === "ackEnvelopes") {
      server.acks.push(...r.value.envelopeIds);
      return { case: "ack", value: {} };
    }
    return { case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: "?" } };
  };
  return scriptedConnection(answer);
}

/** Our device ("tessa" 1) that trusts bob and remembers bob's list v1 naming device 2 and its own list v1 naming itself. */
async function receiver(bobList: Uint8Array | ErrorCode = list(1n, [2n])) {
  const rng = seededRng("tessa");
  const identity = IdentityKeyPair.fromSeed(mySeed);
  const preKeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(rng, identity, 1, true);
  const kem = KemPreKey.generate(rng, identity, 1);
  preKeys.addSigned(signed);
  preKeys.addKem(kem);
  const store = new MemoryStore(preKeys);
  store.setDevice({ username: "tessa", deviceId: 1n, deviceKey: IdentityKeyPair.generate(rng), identity });
  store.setContactIdentity("bob", bob.publicKey.toBytes());
  store.setDeviceList("bob", list(1n, [2n]));
  store.setDeviceList("tessa", list(1n, [1n], mySeed, "tessa"));
  const bundle = { identityKey: identity.publicKey.toBytes(), signedPreKey: signed.public(), oneTimePreKey: undefined, kemPreKey: kem.public() };
  const server: Server = { bobList, ownList: list(1n, [1n], mySeed, "tessa"), looks: [], acks: [] };
  const groups = new Groups(store, store, seededRng("tessa-run"));
  const added: string[] = [];
  groups.messenger.onDeviceAdded = (username, id) => added.push(`${username}/${id}`);
  let nextId = 100n;
  /** An envelope from `from`/`deviceId` whose session (under `sender`) says `text`. */
  const message = (from: string, deviceId: bigint, text: string, sender: IdentityKeyPair = bob): Envelope => {
    const session = Session.initiate(seededRng(`${from}-${deviceId}-${text}`), sender, bundle);
    const content = create(ContentSchema, { messageId: rng.fill(16), sentAtMs: 1n, body: { case: "text", value: { text } } });
    return create(EnvelopeSchema, { envelopeId: nextId++, senderUsername: from, senderDeviceId: deviceId, ciphertext: session.encrypt(encodeContent(content)) });
  };
  return { store, identity, server, groups, added, message, nextId: () => nextId++, connection: await connect(server) };
}

const texts = (events: ClientEvent[]) => events.flatMap((e) => (e.type === "message" && e.message.content.body.case === "text" ? [e.message.content.body.value.text] : []));

/** The one event of `events`, which must be a refusal for an unlisted device; its error. */
function refused(events: ClientEvent[], from: string, deviceId: bigint): UnlistedDeviceError {
  assert.equal(events.length, 1, events.map((e) => e.type).join());
  const event = events[0]!;
  assert.ok(event.type === "decryptionFailed", event.type);
  assert.ok(event.error instanceof UnlistedDeviceError, String(event.error));
  assert.ok(event.reason.startsWith(`${UNLISTED_DEVICE}: `), event.reason);
  assert.deepEqual([event.from, event.deviceId, event.error.looked], [from, deviceId, true]);
  return event.error;
}

test("a device the remembered list leaves out: a fresh look (FetchPrekeys for device 0) at a newer list naming it lets its message open and announces it", async () => {
  const me = await receiver(list(2n, [2n, 3n]));
  assert.deepEqual(texts(await me.groups.take(me.connection, [me.message("bob", 2n, "from 2")])), ["from 2"]);
  assert.deepEqual(me.server.looks, [], "a listed device needs no look");
  assert.deepEqual(texts(await me.groups.take(me.connection, [me.message("bob", 3n, "from 3")])), ["from 3"]);
  assert.deepEqual(me.server.looks, ["fetchPrekeys bob [0]"]);
  assert.deepEqual(me.added, ["bob/3"]);
  assert.deepEqual(me.store.deviceList("bob"), me.server.bobList);
});

test("still unlisted, or the served list forged, rolled back, another of the same version or gone: refused before decryption, marked seen, acknowledged, no session", async () => {
  const me = await receiver();
  const remembered = list(2n, [2n]);
  me.store.setDeviceList("bob", remembered);
  const cases: [Uint8Array, string | undefined][] = [
    [remembered, undefined],
    [list(3n, [2n, 3n], new Uint8Array(32).fill(0x66)), "Forged"],
    [list(3n, [2n, 3n], bobSeed, "carol"), "Forged"],
    [list(1n, [2n, 3n]), "Rollback"],
    [list(2n, [2n, 3n]), "Equivocation"],
    [new Uint8Array(0), "Vanished"],
  ];
  // Never decrypted, so one ciphertext serves every refusal.
  const ghost = me.message("bob", 3n, "ghost");
  for (const [served, kind] of cases) {
    me.server.bobList = served;
    const envelope = create(EnvelopeSchema, { ...ghost, envelopeId: me.nextId() });
    const error = refused(await me.groups.take(me.connection, [envelope]), "bob", 3n);
    assert.equal(error.cause instanceof DeviceListCheckError ? error.cause.kind : undefined, kind);
    assert.equal(me.store.seen(envelope.envelopeId), true);
    assert.equal(me.server.acks.at(-1), envelope.envelopeId);
    assert.equal(me.store.session("bob", 3n), undefined);
    assert.deepEqual(me.store.deviceList("bob"), remembered);
    // Delivered again: nothing, and no second look.
    const looks = me.server.looks.length;
    assert.deepEqual(await me.groups.take(me.connection, [envelope]), []);
    assert.equal(me.server.looks.length, looks);
  }
  assert.equal(me.server.looks.length, cases.length);
  assert.deepEqual(me.added, []);
  // The next message from a listed device opens as before.
  assert.deepEqual(texts(await me.groups.take(me.connection, [me.message("bob", 2n, "still here")])), ["still here"]);
});

test("a contact's prekey message under another identity is an identity change, not a list refusal (rule 1)", async () => {
  const me = await receiver();
  const reinstalled = IdentityKeyPair.generate(seededRng("bob-reinstalled"));
  const events = await me.groups.take(me.connection, [me.message("bob", 5n, "new phone", reinstalled)]);
  assert.equal(events.length, 1);
  const event = events[0]!;
  assert.ok(event.type === "decryptionFailed" && event.error instanceof MessengerError && event.error.kind === "IdentityChanged", event.type === "decryptionFailed" ? event.reason : event.type);
  assert.deepEqual(me.server.looks, []);
  assert.equal(me.store.session("bob", 5n), undefined);
});

test("our own account: a device outside our list makes us look with ListDevices; a list naming it lets it open, one that does not refuses it", async () => {
  const me = await receiver();
  me.server.ownList = list(2n, [1n, 4n], mySeed, "tessa");
  assert.deepEqual(texts(await me.groups.take(me.connection, [me.message("tessa", 4n, "from my laptop", me.identity)])), ["from my laptop"]);
  assert.deepEqual(me.server.looks, ["listDevices"]);
  assert.deepEqual(me.added, ["tessa/4"]);
  refused(await me.groups.take(me.connection, [me.message("tessa", 6n, "ghost", me.identity)]), "tessa", 6n);
  assert.equal(me.store.session("tessa", 6n), undefined);
});

test("a sealed envelope is checked for the device its certificate names, a group envelope before its sender key", async () => {
  const me = await receiver();
  me.store.setServerKey({ keyId: 7, publicKey: IdentityKeyPair.fromSeed(serverSeed).publicKey.toBytes() });
  const inner = me.message("bob", 3n, "sealed ghost");
  const certificate = issueCertificate(serverSeed, 7, "bob", 3n, bob.publicKey, 10_000n);
  const sealed = create(EnvelopeSchema, {
    envelopeId: me.nextId(),
    senderUsername: "",
    serverTimestampMs: 5_000n,
    ciphertext: sealSealedSender(seededRng("eph").fill(32), bob, certificate, me.identity.publicKey, 1, inner.ciphertext),
  });
  refused(await me.groups.take(me.connection, [sealed]), "bob", 3n);
  assert.equal(me.store.seen(sealed.envelopeId), true);

  const groupId = new Uint8Array(16).fill(5);
  const key = OutboundSenderKey.create(seededRng("bob-3-key"), groupId);
  const content = create(ContentSchema, { messageId: new Uint8Array(16).fill(1), sentAtMs: 1n, groupId, body: { case: "text", value: { text: "group ghost" } } });
  const group = create(EnvelopeSchema, { envelopeId: me.nextId(), senderUsername: "bob", senderDeviceId: 3n, groupId, ciphertext: key.encrypt(encodeContent(content)) });
  refused(await me.groups.take(me.connection, [group]), "bob", 3n);
  assert.equal(me.store.seen(group.envelopeId), true);
  assert.deepEqual(me.server.looks, ["fetchPrekeys bob [0]", "fetchPrekeys bob [0]"]);
});

test("a look refused with RATE_LIMITED decides nothing: the envelope is neither acknowledged nor seen, and opens once a later look finds its device", async () => {
  const me = await receiver(ErrorCode.RATE_LIMITED);
  const messenger: Messenger = me.groups.messenger;
  const envelope = me.message("bob", 3n, "wait for it");
  const listed = me.message("bob", 2n, "meanwhile");
  assert.deepEqual(texts(await me.groups.take(me.connection, [envelope, listed])), ["meanwhile"]);
  assert.deepEqual(me.server.acks, [listed.envelopeId]);
  assert.equal(me.store.seen(envelope.envelopeId), false);
  assert.equal(me.store.session("bob", 3n), undefined);
  // Messenger.take (1:1 only) leaves it unacknowledged just the same.
  assert.deepEqual(await messenger.take(me.connection, [envelope]), []);
  assert.deepEqual(me.server.acks, [listed.envelopeId]);
  me.server.bobList = list(2n, [2n, 3n]);
  const opened = await messenger.take(me.connection, [envelope]);
  assert.deepEqual(opened.map((m) => [m.from, m.deviceId]), [["bob", 3n]]);
  assert.deepEqual(me.server.acks, [listed.envelopeId, envelope.envelopeId]);
});

/**
 * src/client/groups.ts and sync.ts without a server: the send path against a
 * scripted server socket (MISSING_DEVICES on key holders → the new device
 * gets the key, skipped devices → notDelivered, rotation after a removal with
 * the distribution only to the remaining devices, the re-keyed name), the
 * receive path (a message before its sender key is held and opened once the
 * distribution arrives, duplicates, distributions inside group messages and
 * contents naming a group from outside it refused), and the §11.7 transcript
 * rules.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import { bytesEqual, toHex } from "../src/bytes.js";
import { Connection } from "../src/client/connection.js";
import { Groups, MAX_HELD, type ClientEvent } from "../src/client/groups.js";
import { MemoryStore } from "../src/client/store.js";
import { openTranscript, sentTranscript, SyncError } from "../src/client/sync.js";
import { ContentSchema, decodeContent, encodeContent, GroupChangeKind, type Content } from "../src/content.js";
import {
  EnvelopeSchema,
  ErrorCode,
  GroupRole,
  type Envelope,
  type SendGroupRequest,
  type SendRequest,
} from "../src/gen/transport_pb.js";
import { newDeviceList, signDeviceList } from "../src/device_list.js";
import { openGroupMetadata } from "../src/group_metadata.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, SignedPreKey } from "../src/prekeys.js";
import { decodeSenderKeyDistribution, encodeSenderKeyDistribution, OutboundSenderKey, SenderKeyRecord } from "../src/sender_key.js";
import { Session } from "../src/session.js";
import { seededRng } from "./helpers.js";
import { scriptedSockets, type Result } from "./scripted_server.js";



/** A device with prekeys: its store (for a receiving `Groups`) and its public bundle. */
function deviceOf(username: string, deviceId: bigint, identity: IdentityKeyPair) {
  const rng = seededRng(`${username}-${deviceId}`);
  const preKeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(rng, identity, 1, true);
  const kem = KemPreKey.generate(rng, identity, 1);
  preKeys.addSigned(signed);
  preKeys.addKem(kem);
  const [oneTime] = preKeys.generateOneTime(rng, 1);
  const bundle = { deviceId, identityKey: identity.publicKey.toBytes(), signedPrekey: signed.public(), oneTimePrekey: oneTime!.public(), kemPrekey: kem.public() };
  const store = new MemoryStore(preKeys);
  store.setDevice({ username, deviceId, deviceKey: IdentityKeyPair.generate(rng), identity });
  return { store, preKeys, bundle, identity };
}

/** The receiving end of one pairwise session (first message accepts, later ones decrypt). */
function peer(device: ReturnType<typeof deviceOf>, from: IdentityKeyPair) {
  let session: Session | undefined;
  return (ciphertext: Uint8Array): Content => {
    if (!session) {
      const accepted = Session.accept(seededRng("peer"), device.identity, device.preKeys, ciphertext);
      assert.ok(bytesEqual(accepted.session.remoteIdentity.toBytes(), from.publicKey.toBytes()));
      session = accepted.session;
      return decodeContent(accepted.plaintext);
    }
    return decodeContent(session.decrypt(ciphertext));
  };
}

const member = (username: string, role = GroupRole.MEMBER, joinedAtVersion = 1n) => ({ username, role, joinedAtVersion });

test("group send: MISSING_DEVICES gets the new device the key, skipped devices become notDelivered, a removal rotates the key and re-keys the name", async () => {
  const aliceIdentity = IdentityKeyPair.generate(seededRng("alice-id"));
  const bobIdentity = IdentityKeyPair.generate(seededRng("bob-id"));
  const carolIdentity = IdentityKeyPair.generate(seededRng("carol-id"));
  const bob2 = deviceOf("bob", 2n, bobIdentity);
  const bob3 = deviceOf("bob", 3n, bobIdentity);
  const carol4 = deviceOf("carol", 4n, carolIdentity);
  let info: { groupId: Uint8Array; version: bigint; members: ReturnType<typeof member>[]; encryptedMetadata: Uint8Array } = { groupId: new Uint8Array(0), version: 1n, members: [member("alice", GroupRole.ADMIN), member("bob"), member("carol")], encryptedMetadata: new Uint8Array(0) };
  const sends: SendRequest[] = [];
  const groupSends: SendGroupRequest[] = [];
  const factory = scriptedSockets((frame): Result => {
    const r = frame.request;
    switch (r.case) {
      case "createGroup":
        info = { ...info, groupId: r.value.groupId, encryptedMetadata: r.value.encryptedMetadata };
        return { case: "group", value: info };
      case "getGroup":
        return { case: "group", value: info };
      case "listDevices":
        return { case: "deviceList", value: { devices: [{ deviceId: 1n }] } };
      case "fetchPrekeys": {
        // Device 3 of bob is not listed until asked for by id: linked after the first look.
        const all = r.value.username === "bob" ? [bob2.bundle, bob3.bundle] : r.value.username === "carol" ? [carol4.bundle] : [];
        const bundles = r.value.deviceIds.length === 0 ? all.filter((b) => b.deviceId !== 3n) : all.filter((b) => r.value.deviceIds.includes(b.deviceId));
        return { case: "prekeyBundles", value: { username: r.value.username, bundles } };
      }
      case "send":
        sends.push(r.value);
        return { case: "send", value: { serverTimestampMs: 1n } };
      case "sendGroup": {
        groupSends.push(r.value);
        const devices = info.members.flatMap((m) => (m.username === "bob" ? [2n, 3n] : m.username === "carol" ? [4n] : []));
        const left = devices.filter((d) => !r.value.keyHolders.includes(d));
        if (r.value.checkKeyHolders && left.length > 0) return { case: "error", value: { code: ErrorCode.MISSING_DEVICES, message: "missing", deviceIds: left } };
        return { case: "send", value: { serverTimestampMs: 2n, skippedDeviceIds: groupSends.length === 2 ? [4n] : [] } };
      }
      case "removeGroupMembers":
        info = { ...info, version: info.version + 1n, members: info.members.filter((m) => !r.value.usernames.includes(m.username)) };
        return { case: "group", value: info };
      case "setGroupMetadata":
        info = { ...info, version: info.version + 1n, encryptedMetadata: r.value.encryptedMetadata };
        return { case: "group", value: info };
      default:
        return { case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: String(r.case) } };
    }
  });
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: factory });
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username: "alice", deviceId: 1n, deviceKey: IdentityKeyPair.generate(seededRng("ak")), identity: aliceIdentity });
  const alice = new Groups(store, store, seededRng("alice-run"));
  const events: ClientEvent[] = [];
  alice.onEvent((e) => events.push(e));

  const id = await alice.createGroup(connection, "g", ["bob", "carol"]);
  assert.equal(id.length, 16);
  // The key went to the devices known (2, 4), the refused send named 3, which got it before the resend.
  assert.deepEqual(sends.map((s) => s.envelopes.map((e) => e.recipientDeviceId)), [[2n, 4n], [3n]]);
  assert.deepEqual(sends.map((s) => s.completeAccounts), [[], []]);
  assert.deepEqual(groupSends.map((g) => [g.checkKeyHolders, [...g.keyHolders].sort()]), [[true, [2n, 4n]], [true, [2n, 3n, 4n]]]);
  assert.deepEqual(events.map((e) => e.type), ["groupChanged", "notDelivered"]);
  const notDelivered = events[1]!;
  assert.ok(notDelivered.type === "notDelivered");
  assert.deepEqual([notDelivered.usernames, notDelivered.deviceIds], [["carol"], [4n]]);

  // bob's device 3 opens the distribution, then the CREATED announcement with the name and the key that opens the blob.
  const bob3Opens = peer(bob3, aliceIdentity);
  const distribution = bob3Opens(sends[1]!.envelopes[0]!.ciphertext);
  assert.ok(distribution.body.case === "senderKeyDistribution" && bytesEqual(distribution.body.value.groupId, id));
  const record = new SenderKeyRecord(id);
  const firstKey = decodeSenderKeyDistribution(distribution.body.value.distribution);
  record.addDistribution(firstKey);
  const created = decodeContent(record.decrypt(groupSends[1]!.ciphertext));
  assert.ok(created.body.case === "groupChange" && created.body.value.kind === GroupChangeKind.CREATED);
  assert.ok(bytesEqual(created.groupId, id));
  assert.deepEqual(created.body.value.usernames, ["bob", "carol"]);
  const createdKey = created.body.value.metadataKey;
  assert.equal(openGroupMetadata(createdKey, id, info.encryptedMetadata).name, "g");

  // Remove carol: the key rotates, the new generation goes to bob's two devices only, the name is re-sealed under a new key.
  sends.length = 0;
  groupSends.length = 0;
  const after = await alice.removeMembers(connection, id, ["carol"]);
  assert.deepEqual(after.members.map((m) => m.username), ["alice", "bob"]);
  assert.deepEqual(sends.map((s) => s.envelopes.map((e) => e.recipientDeviceId).sort()), [[2n, 3n]]);
  const rotated = bob3Opens(sends[0]!.envelopes.find((e) => e.recipientDeviceId === 3n)!.ciphertext);
  assert.ok(rotated.body.case === "senderKeyDistribution");
  const secondKey = decodeSenderKeyDistribution(rotated.body.value.distribution);
  assert.notEqual(secondKey.keyId, firstKey.keyId);
  assert.deepEqual(groupSends.map((g) => [...g.keyHolders].sort()), [[2n, 3n], [2n, 3n]]);
  // carol's generation does not open what follows; bob's new one does.
  const carolRecord = new SenderKeyRecord(id);
  carolRecord.addDistribution(firstKey);
  assert.throws(() => carolRecord.decrypt(groupSends[0]!.ciphertext));
  record.addDistribution(secondKey);
  const removed = decodeContent(record.decrypt(groupSends[0]!.ciphertext));
  assert.ok(removed.body.case === "groupChange" && removed.body.value.kind === GroupChangeKind.MEMBERS_REMOVED);
  const rekeyed = decodeContent(record.decrypt(groupSends[1]!.ciphertext));
  assert.ok(rekeyed.body.case === "groupChange" && rekeyed.body.value.kind === GroupChangeKind.METADATA_CHANGED);
  assert.ok(!bytesEqual(rekeyed.body.value.metadataKey, createdKey));
  assert.equal(openGroupMetadata(rekeyed.body.value.metadataKey, id, info.encryptedMetadata).name, "g");
  assert.throws(() => openGroupMetadata(createdKey, id, info.encryptedMetadata));
  assert.equal(alice.group(id)!.version, 3n);
});

test("group receive: a message before its sender key is held and opened when the key arrives; duplicates, keys in group messages and contents naming an unknown group are refused", async () => {
  const aliceIdentity = IdentityKeyPair.generate(seededRng("alice-id"));
  const bobIdentity = IdentityKeyPair.generate(seededRng("bob-id"));
  const bob = deviceOf("bob", 2n, bobIdentity);
  const rng = seededRng("alice-send");
  const groupId = rng.fill(16);
  const acks: bigint[][] = [];
  const factory = scriptedSockets((frame): Result => {
    const r = frame.request;
    if (r.case === "ackEnvelopes") {
      acks.push([...r.value.envelopeIds]);
      return { case: "ack", value: {} };
    }
    if (r.case === "getGroup" && bytesEqual(r.value.groupId, groupId)) {
      return { case: "group", value: { groupId, version: 1n, members: [member("alice", GroupRole.ADMIN), member("bob")], encryptedMetadata: new Uint8Array(0) } };
    }
    return { case: "error", value: { code: ErrorCode.UNKNOWN_GROUP, message: "no" } };
  });
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: factory });
  const groups = new Groups(bob.store, bob.store, seededRng("bob-run"));

  // alice's side: a pairwise session to bob and a sender key.
  const session = Session.initiate(rng, aliceIdentity, {
    identityKey: bob.bundle.identityKey,
    signedPreKey: bob.bundle.signedPrekey,
    oneTimePreKey: bob.bundle.oneTimePrekey,
    kemPreKey: bob.bundle.kemPrekey,
  });
  const key = OutboundSenderKey.create(rng, groupId);
  const text = (t: string, group: Uint8Array = groupId) => create(ContentSchema, { messageId: rng.fill(16), sentAtMs: 1n, groupId: group, body: { case: "text", value: { text: t } } });
  let nextId = 10n;
  const env = (ciphertext: Uint8Array, group: Uint8Array = new Uint8Array(0)): Envelope =>
    create(EnvelopeSchema, { envelopeId: nextId++, senderUsername: "alice", senderDeviceId: 1n, ciphertext, groupId: group });
  const distribution = create(ContentSchema, {
    messageId: rng.fill(16),
    sentAtMs: 1n,
    body: { case: "senderKeyDistribution", value: { groupId, distribution: encodeSenderKeyDistribution(key.distribution()) } },
  });
  const texts = (events: ClientEvent[]) => events.flatMap((e) => (e.type === "message" && e.message.content.body.case === "text" ? [e.message.content.body.value.text] : []));

  const early = env(key.encrypt(encodeContent(text("early"))), groupId);
  const first = await groups.take(connection, [early]);
  assert.deepEqual(first.map((e) => e.type), ["decryptionFailed"]);
  // The distribution arrives: the held message opens (the group is fetched first, so it is known).
  const keyed = await groups.take(connection, [env(session.encrypt(encodeContent(distribution)))]);
  assert.deepEqual(texts(keyed), ["early"]);
  const opened = keyed.find((e) => e.type === "message");
  assert.ok(opened?.type === "message" && bytesEqual(opened.message.groupId!, groupId) && opened.message.from === "alice");
  assert.deepEqual(groups.group(groupId)?.members.map((m) => m.username), ["alice", "bob"]);
  // The same envelope again: nothing.
  assert.deepEqual(await groups.take(connection, [early]), []);
  // In order now.
  assert.deepEqual(texts(await groups.take(connection, [env(key.encrypt(encodeContent(text("later"))), groupId)])), ["later"]);
  // A sender key inside a group message is refused.
  const inGroup = await groups.take(connection, [env(key.encrypt(encodeContent(create(ContentSchema, { ...distribution, groupId }))), groupId)]);
  assert.deepEqual(inGroup.map((e) => e.type === "decryptionFailed" && e.reason), ["a sender key distribution must come pairwise"]);
  // Pairwise content naming a group bob does not know: refused. A transcript from another account: refused.
  const stranger = await groups.take(connection, [env(session.encrypt(encodeContent(text("forged", rng.fill(16)))))]);
  assert.deepEqual(stranger.map((e) => e.type === "decryptionFailed" && e.reason), ["group content from a non-member"]);
  const foreign = await groups.take(connection, [env(session.encrypt(encodeContent(sentTranscript(rng, "bob", text("not yours", new Uint8Array(0))))))]);
  assert.equal(foreign.length, 1);
  assert.ok(foreign[0]!.type === "decryptionFailed" && /another|sync/.test(foreign[0]!.reason), String(foreign[0]!.type === "decryptionFailed" && foreign[0]!.reason));
  // Everything was acknowledged, even what was refused.
  assert.equal(acks.flat().length, 7);
});

test("held group messages are bounded: beyond MAX_HELD the oldest is dropped, the rest open when the key arrives", async () => {
  const aliceIdentity = IdentityKeyPair.generate(seededRng("alice-id"));
  const bob = deviceOf("bob", 2n, IdentityKeyPair.generate(seededRng("bob-id")));
  const rng = seededRng("alice-held");
  const groupId = rng.fill(16);
  const factory = scriptedSockets((frame): Result => {
    if (frame.request.case === "ackEnvelopes") return { case: "ack", value: {} };
    return { case: "group", value: { groupId, version: 1n, members: [member("alice", GroupRole.ADMIN), member("bob")] } };
  });
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: factory });
  const groups = new Groups(bob.store, bob.store, seededRng("bob-run"));
  const session = Session.initiate(rng, aliceIdentity, { identityKey: bob.bundle.identityKey, signedPreKey: bob.bundle.signedPrekey, oneTimePreKey: bob.bundle.oneTimePrekey, kemPreKey: bob.bundle.kemPrekey });
  const key = OutboundSenderKey.create(rng, groupId);
  const distribution = encodeSenderKeyDistribution(key.distribution());
  const early = Array.from({ length: MAX_HELD + 1 }, (_, i) =>
    create(EnvelopeSchema, {
      envelopeId: BigInt(100 + i),
      senderUsername: "alice",
      senderDeviceId: 1n,
      groupId,
      ciphertext: key.encrypt(encodeContent(create(ContentSchema, { messageId: rng.fill(16), sentAtMs: 1n, groupId, body: { case: "text", value: { text: `m${i}` } } }))),
    }),
  );
  const failed = await groups.take(connection, early);
  assert.equal(failed.filter((e) => e.type === "decryptionFailed").length, MAX_HELD + 1);
  const content = create(ContentSchema, { messageId: rng.fill(16), sentAtMs: 1n, body: { case: "senderKeyDistribution", value: { groupId, distribution } } });
  const opened = await groups.take(connection, [create(EnvelopeSchema, { envelopeId: 1n, senderUsername: "alice", senderDeviceId: 1n, ciphertext: session.encrypt(encodeContent(content)) })]);
  const texts = opened.flatMap((e) => (e.type === "message" && e.message.content.body.case === "text" ? [e.message.content.body.value.text] : []));
  assert.equal(texts.length, MAX_HELD);
  assert.equal(texts[0], "m1");
  assert.equal(texts.at(-1), `m${MAX_HELD}`);
});

test("SyncMessage transcripts (§11.7): form, destination, and who may send them", () => {
  const rng = seededRng("sync");
  const me = IdentityKeyPair.generate(rng).publicKey.toBytes();
  const other = IdentityKeyPair.generate(rng).publicKey.toBytes();
  const original = create(ContentSchema, { messageId: rng.fill(16), sentAtMs: 5n, body: { case: "text", value: { text: "hi" } }, padding: new Uint8Array(7) });
  const transcript = decodeContent(encodeContent(sentTranscript(rng, "bob", original, 99n)));
  assert.ok(!bytesEqual(transcript.messageId, original.messageId));
  const opened = openTranscript(transcript, { username: "alice", identity: me, pairwise: true }, { username: "alice", identity: me });
  assert.ok(opened);
  assert.deepEqual(opened.copy, { destination: { kind: "direct", username: "bob" }, timestampMs: 99n });
  assert.equal(toHex(opened.content.messageId), toHex(original.messageId));
  assert.equal(opened.content.padding.length, 0, "carried without its padding");
  const group = rng.fill(16);
  const inGroup = openTranscript(sentTranscript(rng, "ignored", create(ContentSchema, { ...original, groupId: group })), { username: "alice", identity: me, pairwise: true }, { username: "alice", identity: me });
  assert.ok(inGroup?.copy.destination.kind === "group" && bytesEqual(inGroup.copy.destination.groupId, group));
  const refused = (sender: { username: string; identity: Uint8Array; pairwise: boolean }, kind: SyncError["kind"]) =>
    assert.throws(() => openTranscript(transcript, sender, { username: "alice", identity: me }), (e) => e instanceof SyncError && e.kind === kind);
  refused({ username: "mallory", identity: me, pairwise: true }, "ForeignAccount");
  refused({ username: "alice", identity: other, pairwise: true }, "ForeignIdentity");
  refused({ username: "alice", identity: me, pairwise: false }, "NotPairwise");
  assert.equal(openTranscript(original, { username: "alice", identity: me, pairwise: true }, { username: "alice", identity: me }), undefined);
});

test("group send with a member's signed device list (§20.4): a device the list does not name gets no sender key, even with a session", async () => {
  const aliceIdentity = IdentityKeyPair.generate(seededRng("alice-id"));
  const bobSeed = new Uint8Array(32).fill(0x51);
  const bobIdentity = IdentityKeyPair.fromSeed(bobSeed);
  const bob2 = deviceOf("bob", 2n, bobIdentity);
  const bob9 = deviceOf("bob", 9n, bobIdentity);
  const signedList = signDeviceList(newDeviceList("bob", 1n, 1n, [2n]), bobSeed);
  let info: { groupId: Uint8Array; version: bigint; members: ReturnType<typeof member>[]; encryptedMetadata: Uint8Array } = { groupId: new Uint8Array(0), version: 1n, members: [member("alice", GroupRole.ADMIN), member("bob")], encryptedMetadata: new Uint8Array(0) };
  const sends: SendRequest[] = [];
  const groupSends: SendGroupRequest[] = [];
  const factory = scriptedSockets((frame): Result => {
    const r = frame.request;
    switch (r.case) {
      case "createGroup":
        info = { ...info, groupId: r.value.groupId, encryptedMetadata: r.value.encryptedMetadata };
        return { case: "group", value: info };
      case "listDevices":
        return { case: "deviceList", value: { devices: [{ deviceId: 1n }] } };
      case "fetchPrekeys":
        return { case: "prekeyBundles", value: { username: r.value.username, bundles: [bob2.bundle, bob9.bundle], signedDeviceList: signedList } };
      case "send":
        sends.push(r.value);
        return { case: "send", value: { serverTimestampMs: 1n } };
      case "sendGroup":
        groupSends.push(r.value);
        return { case: "send", value: { serverTimestampMs: 2n } };
      default:
        return { case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: String(r.case) } };
    }
  });
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: factory });
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username: "alice", deviceId: 1n, deviceKey: IdentityKeyPair.generate(seededRng("ak")), identity: aliceIdentity });
  // A session with device 9 from before bob's list (or planted by a server): not used.
  store.setContactIdentity("bob", bobIdentity.publicKey.toBytes());
  store.setSession("bob", 9n, Session.initiate(seededRng("old"), aliceIdentity, { identityKey: bob9.bundle.identityKey, signedPreKey: bob9.bundle.signedPrekey, oneTimePreKey: bob9.bundle.oneTimePrekey, kemPreKey: bob9.bundle.kemPrekey }));
  store.setDeviceList("bob", signedList);
  const alice = new Groups(store, store, seededRng("alice-run"));
  await alice.createGroup(connection, "g", ["bob"]);
  assert.deepEqual(sends.map((s) => s.envelopes.map((e) => e.recipientDeviceId)), [[2n]]);
  assert.deepEqual(groupSends.map((g) => [...g.keyHolders]), [[2n]]);
});

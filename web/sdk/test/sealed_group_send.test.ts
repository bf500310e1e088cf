/**
 * Sending group messages sealed (SPEC.md §19.8) with
 * `Messenger.sealedConnection` and every other member's profile key known,
 * against in-memory servers, opened by real receiving `Groups`: each member
 * gets the sender-key distribution sealed (content type 0x01) on all its
 * devices and the message sealed (0x02, `group_id ‖ SenderKeyMessage`),
 * one `SendSealed` per member with its access key, all over one connection
 * that never logs in, nothing identified for them; a member refusing our
 * access key (`UNIDENTIFIED_ACCESS_DENIED`) gets its distribution
 * identified and the message goes `SendGroup` with the same ciphertext; a
 * sealed message held for its sender key is still `sealed` once released;
 * our own other device gets identified transcripts, a group change's
 * included, and applies them; the announcement of a new group goes
 * identified (its members may hold no record of it to check a sealed one
 * against), the messages after it sealed.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import { Groups, type ClientEvent } from "../src/client/groups.js";
import { MemoryStore } from "../src/client/store.js";
import { EnvelopeSchema, ErrorCode, GroupRole, type ClientFrame, type SendGroupRequest, type SendRequest, type SendSealedRequest } from "../src/gen/transport_pb.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, SignedPreKey } from "../src/prekeys.js";
import { accessKey, issueCertificate, openSealedSender } from "../src/sealed_sender.js";
import { seededRng } from "./helpers.js";
import { scriptedConnection, type Result } from "./scripted_server.js";



const serverSeed = new Uint8Array(32).fill(0x61);
const serverKey = { keyId: 7, publicKey: IdentityKeyPair.fromSeed(serverSeed).publicKey.toBytes() };
const groupId = new Uint8Array(16).fill(0x33);
const member = (username: string) => ({ username, role: GroupRole.MEMBER, joinedAtVersion: 1n });
const info = { groupId, version: 1n, members: [member("alice"), member("bob"), member("carol")] };

/** A device with prekeys, receiving through its own `Groups` (it trusts the server key, knows the group from its server). */
async function receiver(username: string, deviceId: bigint, identity: IdentityKeyPair) {
  const rng = seededRng(`${username}-${deviceId}`);
  const preKeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(rng, identity, 1, true);
  const kem = KemPreKey.generate(rng, identity, 1);
  preKeys.addSigned(signed);
  preKeys.addKem(kem);
  const store = new MemoryStore(preKeys);
  store.setDevice({ username, deviceId, deviceKey: IdentityKeyPair.generate(rng), identity });
  store.setServerKey(serverKey);
  const connection = await scriptedConnection((frame): Result => {
    if (frame.request.case === "ackEnvelopes") return { case: "ack", value: {} };
    if (frame.request.case === "getGroup") return { case: "group", value: info };
    return { case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: String(frame.request.case) } };
  });
  const groups = new Groups(store, store, seededRng(`${username}-${deviceId}-run`));
  let nextId = 1n;
  const bundle = { deviceId, identityKey: identity.publicKey.toBytes(), signedPrekey: signed.public(), kemPrekey: kem.public() };
  return {
    bundle,
    /** Takes `ciphertexts` as the server delivers them: sealed (no sender) or from alice's device 1, group ones with the group id. */
    take: (delivered: { ciphertext: Uint8Array; sealed: boolean; group?: boolean }[]): Promise<ClientEvent[]> =>
      groups.take(
        connection,
        delivered.map(({ ciphertext, sealed, group }) =>
          create(EnvelopeSchema, {
            envelopeId: nextId++,
            senderUsername: sealed ? "" : "alice",
            senderDeviceId: sealed ? 0n : 1n,
            serverTimestampMs: BigInt(Date.now()),
            ciphertext,
            groupId: group ? groupId : new Uint8Array(0),
          }),
        ),
      ),
  };
}

/** Alice (device 1, and device 5 with `ownDevice`) in a group with bob (device 2) and carol (device 4), holding the profile keys of `known`; members in `deny` refuse her access key. */
async function setup(deny: string[] = [], ownDevice = false, known = ["bob", "carol"]) {
  const alice = IdentityKeyPair.generate(seededRng("alice-id"));
  const bobId = IdentityKeyPair.generate(seededRng("bob-id"));
  const carolId = IdentityKeyPair.generate(seededRng("carol-id"));
  const bob = await receiver("bob", 2n, bobId);
  const carol = await receiver("carol", 4n, carolId);
  const alice5 = await receiver("alice", 5n, alice);
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username: "alice", deviceId: 1n, deviceKey: IdentityKeyPair.generate(seededRng("alice-dk")), identity: alice });
  const profileKeys = new Map([["bob", seededRng("bob-pk").fill(32)], ["carol", seededRng("carol-pk").fill(32)]]);
  for (const [name, key] of profileKeys) if (known.includes(name)) store.setContactProfileKey(name, key);
  const certificate = issueCertificate(serverSeed, 7, "alice", 1n, alice.publicKey, BigInt(Date.now()) + 86_400_000n);
  const identified: ClientFrame[] = [];
  const connection = await scriptedConnection((frame): Result => {
    const r = frame.request;
    switch (r.case) {
      case "getGroup":
        return { case: "group", value: { ...info, groupId: r.value.groupId } };
      case "createGroup":
        return { case: "group", value: { ...info, groupId: r.value.groupId } };
      case "listDevices":
        return { case: "deviceList", value: { devices: ownDevice ? [{ deviceId: 1n }, { deviceId: 5n }] : [{ deviceId: 1n }] } };
      case "fetchPrekeys": {
        const all = { bob: [bob.bundle], carol: [carol.bundle], alice: ownDevice ? [alice5.bundle] : [] }[r.value.username] ?? [];
        return { case: "prekeyBundles", value: { username: r.value.username, bundles: r.value.deviceIds.length === 0 ? all : all.filter((b) => r.value.deviceIds.includes(b.deviceId)) } };
      }
      case "getSenderCertificate":
        return { case: "senderCertificate", value: { certificate: certificate.bytes, expiresAtMs: certificate.expiresAtMs, serverKeyId: 7, serverPublicKey: serverKey.publicKey } };
      case "send":
        return { case: "send", value: { serverTimestampMs: 11n } };
      case "sendGroup":
        return { case: "send", value: { serverTimestampMs: 12n } };
      case "leaveGroup":
        return { case: "ok", value: {} };
      default:
        return { case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: String(r.case) } };
    }
  }, identified);
  const unauthenticated: ClientFrame[] = [];
  let connections = 0;
  const groups = new Groups(store, store, seededRng("alice-run"));
  groups.messenger.sealedConnection = () => {
    connections += 1;
    return scriptedConnection((frame): Result => {
      if (frame.request.case !== "sendSealed") return { case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: String(frame.request.case) } };
      if (deny.includes(frame.request.value.recipientUsername)) return { case: "error", value: { code: ErrorCode.UNIDENTIFIED_ACCESS_DENIED, message: "access key" } };
      return { case: "send", value: { serverTimestampMs: 20n + BigInt(unauthenticated.length) } };
    }, unauthenticated);
  };
  await groups.refresh(connection, groupId);
  const sealedSends = (): SendSealedRequest[] => unauthenticated.flatMap((f) => (f.request.case === "sendSealed" ? [f.request.value] : []));
  const sends = (): SendRequest[] => identified.flatMap((f) => (f.request.case === "send" ? [f.request.value] : []));
  const groupSends = (): SendGroupRequest[] => identified.flatMap((f) => (f.request.case === "sendGroup" ? [f.request.value] : []));
  /** Opens a sealed envelope addressed to `identity`: who the certificate names, the content type and the inner message. */
  const open = (identity: IdentityKeyPair, ciphertext: Uint8Array) => {
    const opened = openSealedSender(identity, serverKey, BigInt(Date.now()), ciphertext);
    return { from: `${opened.certificate.username}/${opened.certificate.deviceId}`, contentType: opened.contentType, message: opened.message };
  };
  return { groups, connection, ids: { alice, bob: bobId, carol: carolId }, bob, carol, alice5, profileKeys, unauthenticated, connections: () => connections, sealedSends, sends, groupSends, open };
}

/** The texts of the message events of `events`, with whether each came sealed and what own-device copy it is. */
function texts(events: ClientEvent[]): string[] {
  return events.flatMap((e) => {
    if (e.type === "decryptionFailed") return [`failed: ${e.reason}`];
    if (e.type !== "message") return [];
    const m = e.message;
    const text = m.content.body.case === "text" ? m.content.body.value.text : `<${m.content.body.case}>`;
    return [`${m.from}: ${text}${m.sealed ? " (sealed)" : ""}${m.sentCopy ? ` (copy to ${m.sentCopy.destination.kind})` : ""}`];
  });
}

test("with every member's profile key, a group message and its sender key go sealed to each member, over one connection that never logs in", async () => {
  const s = await setup();
  const sent = await s.groups.sendText(s.connection, groupId, "sealed to all");
  assert.equal(sent.serverTimestampMs, 25n, "the latest SendSealed's time stamp (20 + its frame count)");
  assert.deepEqual(s.groupSends(), [], "no SendGroup: the server is not told who sends");
  assert.deepEqual(s.sends(), [], "nothing identified (alice has no other device)");
  assert.equal(s.connections(), 1, "distribution and message over one connection");
  assert.deepEqual(s.unauthenticated.map((f) => f.request.case), ["hello", "sendSealed", "sendSealed", "sendSealed", "sendSealed"], "never logs in");
  const requests = s.sealedSends();
  assert.deepEqual(requests.map((r) => `${r.recipientUsername}:${r.envelopes.map((e) => e.recipientDeviceId).join(",")}`), ["bob:2", "carol:4", "bob:2", "carol:4"]);
  for (const r of requests) assert.deepEqual(r.accessKey, accessKey(s.profileKeys.get(r.recipientUsername)!));
  // Each envelope names its sender only inside, under alice's certificate: the key as a session message (0x01), the message as group id ‖ SenderKeyMessage (0x02).
  const inner = requests.map((r) => s.open(r.recipientUsername === "bob" ? s.ids.bob : s.ids.carol, r.envelopes[0]!.ciphertext));
  assert.deepEqual(inner.map((o) => `${o.from}:${o.contentType}`), ["alice/1:1", "alice/1:1", "alice/1:2", "alice/1:2"]);
  assert.deepEqual(inner[2]!.message.slice(0, 16), groupId);
  assert.deepEqual(inner[2]!.message.slice(16), inner[3]!.message.slice(16), "encrypted once with the sender key");

  // Each member opens what it got: the message from alice, marked sealed.
  for (const [who, index] of [["bob", 0], ["carol", 1]] as const) {
    const events = await s[who].take([requests[index]!, requests[index + 2]!].map((r) => ({ ciphertext: r.envelopes[0]!.ciphertext, sealed: true })));
    assert.deepEqual(texts(events), ["alice: sealed to all (sealed)"], who);
  }

  // The next message: the key is held already, only the message goes (sealed), on a new connection.
  await s.groups.sendText(s.connection, groupId, "again");
  assert.deepEqual(s.sealedSends().slice(4).map((r) => s.open(r.recipientUsername === "bob" ? s.ids.bob : s.ids.carol, r.envelopes[0]!.ciphertext).contentType), [2, 2]);
  assert.equal(s.connections(), 2);
  assert.deepEqual(texts(await s.bob.take([{ ciphertext: s.sealedSends()[4]!.envelopes[0]!.ciphertext, sealed: true }])), ["alice: again (sealed)"]);
});

test("without sealedConnection or without a member's profile key, the group message goes identified (SendGroup)", async () => {
  const s = await setup();
  s.groups.messenger.sealedConnection = undefined;
  await s.groups.sendText(s.connection, groupId, "identified");
  assert.equal(s.groupSends().length, 1);
  assert.equal(s.connections(), 0);
  const t = await setup([], false, ["bob"]);
  await t.groups.sendText(t.connection, groupId, "identified too");
  assert.equal(t.groupSends().length, 1);
  assert.equal(t.connections(), 0, "no connection for sealed sends opened");
});

test("UNIDENTIFIED_ACCESS_DENIED: that member's key goes identified and the message goes SendGroup with the same ciphertext", async () => {
  const s = await setup(["carol"]);
  const sent = await s.groups.sendText(s.connection, groupId, "fallback");
  assert.equal(sent.serverTimestampMs, 12n, "the SendGroup's time stamp");
  const requests = s.sealedSends();
  assert.deepEqual(requests.map((r) => r.recipientUsername), ["bob", "carol", "bob", "carol"], "both tried sealed, carol refused twice");
  // Carol's distribution identified (the envelope encrypted for the sealed try, sent as it was).
  const sends = s.sends();
  assert.equal(sends.length, 1);
  assert.deepEqual(sends[0]!.envelopes.map((e) => e.recipientDeviceId), [4n]);
  assert.deepEqual(sends[0]!.envelopes[0]!.ciphertext, s.open(s.ids.carol, requests[1]!.envelopes[0]!.ciphertext).message);
  // The message: one SendGroup, its ciphertext the very SenderKeyMessage bob got sealed, both members' devices as key holders.
  const groupSends = s.groupSends();
  assert.equal(groupSends.length, 1);
  assert.deepEqual(groupSends[0]!.ciphertext, s.open(s.ids.bob, requests[2]!.envelopes[0]!.ciphertext).message.slice(16));
  assert.deepEqual([...groupSends[0]!.keyHolders].sort(), [2n, 4n]);
  assert.deepEqual(texts(await s.carol.take([{ ciphertext: sends[0]!.envelopes[0]!.ciphertext, sealed: false }, { ciphertext: groupSends[0]!.ciphertext, sealed: false, group: true }])), ["alice: fallback"]);
  assert.deepEqual(texts(await s.bob.take([requests[0]!, requests[2]!].map((r) => ({ ciphertext: r.envelopes[0]!.ciphertext, sealed: true })))), ["alice: fallback (sealed)"]);
});

test("a sealed group message held for its sender key is still sealed when the distribution releases it", async () => {
  const s = await setup();
  await s.groups.sendText(s.connection, groupId, "held");
  const [distribution, , message] = s.sealedSends();
  const early = await s.bob.take([{ ciphertext: message!.envelopes[0]!.ciphertext, sealed: true }]);
  assert.ok(early.length === 1 && early[0]!.type === "decryptionFailed" && early[0].reason.includes("held"), texts(early).join());
  assert.deepEqual(texts(await s.bob.take([{ ciphertext: distribution!.envelopes[0]!.ciphertext, sealed: true }])), ["alice: held (sealed)"]);
});

test("our own other device gets the key and transcripts identified, a group change's too, and applies them", async () => {
  const s = await setup([], true);
  await s.groups.sendText(s.connection, groupId, "to all and my laptop");
  assert.deepEqual(s.groupSends(), []);
  assert.deepEqual(s.sealedSends().map((r) => r.recipientUsername), ["bob", "carol", "bob", "carol"]);
  // Device 5: the key (identified, as the server knows it is ours anyway), then the transcript with complete_accounts alice.
  const sends = s.sends();
  assert.deepEqual(sends.map((r) => `${r.envelopes.map((e) => e.recipientDeviceId).join(",")}|${r.completeAccounts.join(",")}`), ["5|", "5|alice"]);
  const own = (list: SendRequest[]) => list.map((r) => ({ ciphertext: r.envelopes[0]!.ciphertext, sealed: false }));
  assert.deepEqual(texts(await s.alice5.take(own(sends))), ["alice: to all and my laptop (copy to group)"]);
  // Leaving announces LEFT sealed to the members and as a transcript to device 5, which applies it.
  await s.groups.leave(s.connection, groupId);
  const after = s.sends().slice(2);
  assert.deepEqual(after.map((r) => r.completeAccounts.join(",")), ["alice"]);
  const events = await s.alice5.take(own(after));
  assert.deepEqual(events.filter((e) => e.type === "decryptionFailed"), []);
  assert.ok(events.some((e) => e.type === "groupChanged" && e.update.kind === "Left" && e.update.username === "alice"), JSON.stringify(events.map((e) => e.type)));
});

test("a new group's CREATED announcement goes identified (members may not know the group yet), the next message sealed", async () => {
  const s = await setup();
  const id = await s.groups.createGroup(s.connection, "new", ["bob", "carol"]);
  assert.equal(s.groupSends().length, 1, "CREATED by SendGroup");
  assert.deepEqual(s.sends().map((r) => r.envelopes.map((e) => e.recipientDeviceId).join(",")), ["2,4"], "the key identified with it");
  assert.equal(s.connections(), 0);
  await s.groups.sendText(s.connection, id, "now sealed");
  assert.equal(s.groupSends().length, 1);
  assert.deepEqual(s.sealedSends().map((r) => r.recipientUsername), ["bob", "carol"], "the message only: both hold the key");
});

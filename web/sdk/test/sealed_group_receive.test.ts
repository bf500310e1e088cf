/**
 * Receiving a sealed group message (SPEC.md §19.3 content type 0x02,
 * §19.8) through `Groups.take`: it opens with the certified sender
 * device's sender key as a group message marked `sealed`; refused with a
 * typed `SealedEnvelopeError` are one whose certified sender is not a
 * member of the group in our record (the server could not check) and one
 * too short to hold its group id.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import { concat } from "../src/bytes.js";
import { Groups, type ClientEvent } from "../src/client/groups.js";
import { SealedEnvelopeError } from "../src/client/sealed.js";
import { MemoryStore } from "../src/client/store.js";
import { ContentSchema, encodeContent } from "../src/content.js";
import { EnvelopeSchema, GroupRole } from "../src/gen/transport_pb.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, SignedPreKey } from "../src/prekeys.js";
import { issueCertificate, sealSealedSender } from "../src/sealed_sender.js";
import { encodeSenderKeyDistribution, OutboundSenderKey } from "../src/sender_key.js";
import { Session } from "../src/session.js";
import { seededRng } from "./helpers.js";
import { scriptedConnection, type Result } from "./scripted_server.js";


const serverSeed = new Uint8Array(32).fill(0x61);
const groupId = new Uint8Array(16).fill(0x17);
const member = (username: string) => ({ username, role: GroupRole.MEMBER, joinedAtVersion: 1n });


test("a sealed group message opens with the certified sender's key; a non-member's or one without a group id is refused", async () => {
  const rng = seededRng("sealed-group");
  const me = IdentityKeyPair.generate(rng);
  const bob = IdentityKeyPair.generate(rng);
  const mallory = IdentityKeyPair.generate(rng);
  const preKeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(rng, me, 1, true);
  const kem = KemPreKey.generate(rng, me, 1);
  preKeys.addSigned(signed);
  preKeys.addKem(kem);
  const store = new MemoryStore(preKeys);
  store.setDevice({ username: "tessa", deviceId: 1n, deviceKey: IdentityKeyPair.generate(rng), identity: me });
  store.setServerKey({ keyId: 7, publicKey: IdentityKeyPair.fromSeed(serverSeed).publicKey.toBytes() });
  const connection = await scriptedConnection((frame): Result => {
    if (frame.request.case === "ackEnvelopes") return { case: "ack", value: {} };
    return { case: "group", value: { groupId, version: 1n, members: [member("bob"), member("tessa")] } };
  });
  const groups = new Groups(store, store, seededRng("tessa-run"));
  const bundle = { identityKey: me.publicKey.toBytes(), signedPreKey: signed.public(), oneTimePreKey: undefined, kemPreKey: kem.public() };
  let nextId = 1n;

  // Bob's device 3 hands tessa its sender key pairwise (identified); tessa knows the group from the server.
  const key = OutboundSenderKey.create(rng, groupId);
  const distribution = create(ContentSchema, { messageId: rng.fill(16), sentAtMs: 1n, body: { case: "senderKeyDistribution", value: { groupId, distribution: encodeSenderKeyDistribution(key.distribution()) } } });
  const pairwise = Session.initiate(rng, bob, bundle).encrypt(encodeContent(distribution));
  await groups.take(connection, [create(EnvelopeSchema, { envelopeId: nextId++, senderUsername: "bob", senderDeviceId: 3n, ciphertext: pairwise })]);
  assert.deepEqual((await groups.refresh(connection, groupId))?.members.map((m) => m.username), ["bob", "tessa"]);

  const text = (t: string) => encodeContent(create(ContentSchema, { messageId: rng.fill(16), sentAtMs: 1n, groupId, body: { case: "text", value: { text: t } } }));
  const sealed = (sender: IdentityKeyPair, username: string, message: Uint8Array) => {
    const certificate = issueCertificate(serverSeed, 7, username, 3n, sender.publicKey, 10_000n);
    const ciphertext = sealSealedSender(rng.fill(32), sender, certificate, me.publicKey, 2, message);
    return create(EnvelopeSchema, { envelopeId: nextId++, senderUsername: "", senderDeviceId: 0n, serverTimestampMs: 5_000n, ciphertext });
  };
  const refusal = (events: ClientEvent[]) => {
    assert.equal(events.length, 1);
    const event = events[0]!;
    return event.type === "decryptionFailed" && event.error instanceof SealedEnvelopeError ? event.error.kind : event.type;
  };

  const events = await groups.take(connection, [sealed(bob, "bob", concat(groupId, key.encrypt(text("sealed to the group"))))]);
  assert.equal(events.length, 1);
  const opened = events[0]!;
  assert.ok(opened.type === "message", opened.type === "decryptionFailed" ? opened.reason : opened.type);
  assert.deepEqual([opened.message.from, opened.message.deviceId, opened.message.sealed], ["bob", 3n, true]);
  assert.deepEqual(opened.message.groupId, groupId);
  assert.ok(opened.message.content.body.case === "text" && opened.message.content.body.value.text === "sealed to the group");

  // Mallory holds the group's id but is not a member in tessa's record: refused before any key is looked up.
  const foreign = OutboundSenderKey.create(rng, groupId);
  assert.equal(refusal(await groups.take(connection, [sealed(mallory, "mallory", concat(groupId, foreign.encrypt(text("let me in"))))])), "NotMember");
  assert.equal(refusal(await groups.take(connection, [sealed(bob, "bob", groupId.slice(0, 10))])), "GroupUnsupported");
  // The group still opens bob's next message.
  const next = await groups.take(connection, [sealed(bob, "bob", concat(groupId, key.encrypt(text("and again"))))]);
  assert.ok(next[0]?.type === "message" && next[0].message.sealed);
});

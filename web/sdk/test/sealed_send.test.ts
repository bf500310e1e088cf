/**
 * Sending 1:1 sealed (SPEC.md §19.8) with `Messenger.sealedConnection`,
 * against in-memory servers: to a contact whose profile key is known the
 * message goes with `SendSealed` and the contact's access key over a
 * connection that never logs in, sealed under this device's certificate;
 * when the server answers `UNIDENTIFIED_ACCESS_DENIED` (the contact's
 * access key changed) the same message — encrypted once, the very inner
 * ciphertext — goes identified instead, and the contact opens it.
 */
import assert from "node:assert/strict";
import { test } from "node:test";


import { Messenger } from "../src/client/messenger.js";
import { MemoryStore } from "../src/client/store.js";
import { decodeContent } from "../src/content.js";
import { ErrorCode, type ClientFrame, type SendSealedRequest } from "../src/gen/transport_pb.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, SignedPreKey } from "../src/prekeys.js";
import { accessKey, issueCertificate, openSealedSender } from "../src/sealed_sender.js";
import { Session } from "../src/session.js";
import { seededRng } from "./helpers.js";
import { scriptedConnection, type Result } from "./scripted_server.js";



const serverSeed = new Uint8Array(32).fill(0x61);
const serverKey = { keyId: 7, publicKey: IdentityKeyPair.fromSeed(serverSeed).publicKey.toBytes() };

/** Alice (device 1) who knows bob's profile key; bob's device 2 with its prekeys; the servers' answers. */
async function setup(sealedAnswer: Result) {
  const rng = seededRng("sealed-send");
  const alice = IdentityKeyPair.generate(rng);
  const bob = IdentityKeyPair.generate(rng);
  const bobKeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(rng, bob, 1, true);
  const kem = KemPreKey.generate(rng, bob, 1);
  bobKeys.addSigned(signed);
  bobKeys.addKem(kem);
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username: "alice", deviceId: 1n, deviceKey: IdentityKeyPair.generate(rng), identity: alice });
  const profileKey = rng.fill(32);
  store.setContactProfileKey("bob", profileKey);
  const certificate = issueCertificate(serverSeed, 7, "alice", 1n, alice.publicKey, BigInt(Date.now()) + 86_400_000n);
  const identified: ClientFrame[] = [];
  const connection = await scriptedConnection((frame) => {
    const r = frame.request;
    identified.push(frame);
    if (r.case === "listDevices") return { case: "deviceList", value: { devices: [{ deviceId: 1n }] } };
    if (r.case === "fetchPrekeys") {
      const bundle = { deviceId: 2n, identityKey: bob.publicKey.toBytes(), signedPrekey: signed.public(), kemPrekey: kem.public() };
      return { case: "prekeyBundles", value: { bundles: [bundle] } };
    }
    if (r.case === "getSenderCertificate") {
      return { case: "senderCertificate", value: { certificate: certificate.bytes, expiresAtMs: certificate.expiresAtMs, serverKeyId: 7, serverPublicKey: serverKey.publicKey } };
    }
    if (r.case === "send") return { case: "send", value: { serverTimestampMs: 11n } };
    return { case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: "?" } };
  });
  const unauthenticated: ClientFrame[] = [];
  const messenger = new Messenger(store, seededRng("alice-run"));
  messenger.sealedConnection = () => scriptedConnection(() => sealedAnswer, unauthenticated);
  const sealedRequest = (): SendSealedRequest => {
    const sends = unauthenticated.filter((f) => f.request.case === "sendSealed");
    assert.equal(sends.length, 1);
    return sends[0]!.request.value as SendSealedRequest;
  };
  const sends = () => identified.flatMap((f) => (f.request.case === "send" ? [f.request.value] : []));
  /** What bob's device 2 reads from `ciphertext` (a session message). */
  const bobReads = (ciphertext: Uint8Array) => {
    const content = decodeContent(Session.accept(seededRng("bob-run"), bob, bobKeys, ciphertext).plaintext);
    return content.body.case === "text" ? content.body.value.text : "";
  };
  return { messenger, connection, bob, profileKey, unauthenticated, sealedRequest, sends, bobReads };
}

test("with the contact's profile key, a message goes sealed with its access key over a connection that never logs in", async () => {
  const s = await setup({ case: "send", value: { serverTimestampMs: 22n } });
  assert.equal(await s.messenger.sendText(s.connection, "bob", "sealed"), 22n);
  assert.deepEqual(s.unauthenticated.map((f) => f.request.case), ["hello", "sendSealed"]);
  const request = s.sealedRequest();
  assert.equal(request.recipientUsername, "bob");
  assert.deepEqual(request.accessKey, accessKey(s.profileKey));
  assert.deepEqual(request.envelopes.map((e) => e.recipientDeviceId), [2n]);
  const opened = openSealedSender(s.bob, serverKey, BigInt(Date.now()), request.envelopes[0]!.ciphertext);
  assert.deepEqual([opened.certificate.username, opened.certificate.deviceId], ["alice", 1n]);
  assert.equal(s.bobReads(opened.message), "sealed");
  assert.deepEqual(s.sends(), [], "nothing identified for bob (alice has no other device)");
});

test("UNIDENTIFIED_ACCESS_DENIED falls back to an identified send of the same ciphertext, which bob opens", async () => {
  const s = await setup({ case: "error", value: { code: ErrorCode.UNIDENTIFIED_ACCESS_DENIED, message: "access key" } });
  assert.equal(await s.messenger.sendText(s.connection, "bob", "fallback"), 11n, "the identified send's time stamp");
  const sealed = openSealedSender(s.bob, serverKey, BigInt(Date.now()), s.sealedRequest().envelopes[0]!.ciphertext);
  const sends = s.sends();
  assert.equal(sends.length, 1);
  assert.deepEqual(sends[0]!.envelopes.map((e) => e.recipientDeviceId), [2n]);
  assert.deepEqual(sends[0]!.completeAccounts, ["alice", "bob"]);
  const ciphertext = sends[0]!.envelopes[0]!.ciphertext;
  assert.deepEqual(ciphertext, sealed.message, "encrypted once: the identified envelope is the sealed one's inner message");
  assert.equal(s.bobReads(ciphertext), "fallback");
  // The next message tries sealed again (the denial is not remembered) and falls back again, on the next chain step.
  assert.equal(await s.messenger.sendText(s.connection, "bob", "again"), 11n);
  assert.equal(s.sends().length, 2);
  assert.equal(s.unauthenticated.filter((f) => f.request.case === "sendSealed").length, 2);
});

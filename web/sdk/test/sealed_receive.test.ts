/**
 * Receiving sealed envelopes (SPEC.md §19) through `Messenger.open`: an
 * envelope sealed by a contact under a certificate of the trusted server key
 * opens as from the certified sender; refused with a typed
 * `SealedEnvelopeError`, the store unchanged, are: no trusted server key
 * yet, a certificate expired at the envelope's server time stamp, one
 * signed by another server key, one whose identity is not the one trusted
 * for its username, an inner session of another identity than the
 * certificate's, and a sealed group message.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create } from "@bufbuild/protobuf";

import { Messenger } from "../src/client/messenger.js";
import { SealedEnvelopeError } from "../src/client/sealed.js";
import { MemoryStore } from "../src/client/store.js";
import { ContentSchema, encodeContent } from "../src/content.js";
import { EnvelopeSchema } from "../src/gen/transport_pb.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, SignedPreKey } from "../src/prekeys.js";
import { issueCertificate, sealSealedSender, SealedSenderError, type ContentType } from "../src/sealed_sender.js";
import { Session } from "../src/session.js";
import { seededRng } from "./helpers.js";

const serverSeed = new Uint8Array(32).fill(0x61);
const otherServerSeed = new Uint8Array(32).fill(0x62);
const serverKey = { keyId: 7, publicKey: IdentityKeyPair.fromSeed(serverSeed).publicKey.toBytes() };

function setup() {
  const rng = seededRng("sealed-me");
  const identity = IdentityKeyPair.generate(rng);
  const preKeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(rng, identity, 1, true);
  const kem = KemPreKey.generate(rng, identity, 1);
  preKeys.addSigned(signed);
  preKeys.addKem(kem);
  const store = new MemoryStore(preKeys);
  store.setDevice({ username: "tessa", deviceId: 1n, deviceKey: IdentityKeyPair.generate(rng), identity });
  const bundle = { identityKey: identity.publicKey.toBytes(), signedPreKey: signed.public(), oneTimePreKey: undefined, kemPreKey: kem.public() };
  return { store, identity, bundle, messenger: new Messenger(store, seededRng("sealed-run")) };
}

/** A sealed envelope from `sender` (its session with tessa), certified by `certSeed` as `username`/`certIdentity`. */
function sealedFrom(
  me: ReturnType<typeof setup>,
  sender: IdentityKeyPair,
  options: { certSeed?: Uint8Array; username?: string; certIdentity?: IdentityKeyPair; expiresAtMs?: bigint; serverTimestampMs?: bigint; contentType?: ContentType } = {},
) {
  const session = Session.initiate(seededRng("rusty-session"), sender, me.bundle);
  const inner = session.encrypt(encodeContent(create(ContentSchema, { messageId: new Uint8Array(16).fill(9), sentAtMs: 1n, body: { case: "text", value: { text: "sealed hi" } } })));
  const certIdentity = options.certIdentity ?? sender;
  const certificate = issueCertificate(options.certSeed ?? serverSeed, 7, options.username ?? "rusty", 3n, certIdentity.publicKey, options.expiresAtMs ?? 10_000n);
  const sealed = sealSealedSender(seededRng("eph").fill(32), certIdentity, certificate, me.identity.publicKey, options.contentType ?? 1, inner);
  return create(EnvelopeSchema, { envelopeId: 11n, senderUsername: "", senderDeviceId: 0n, serverTimestampMs: options.serverTimestampMs ?? 5_000n, ciphertext: sealed });
}

function refusal(f: () => unknown): string {
  try {
    f();
  } catch (error) {
    assert.ok(error instanceof SealedEnvelopeError, `not a SealedEnvelopeError: ${String(error)}`);
    return error.cause instanceof SealedSenderError ? `${error.kind}/${error.cause.kind}` : error.kind;
  }
  assert.fail("opened");
}

const rusty = IdentityKeyPair.generate(seededRng("rusty-id"));

test("a sealed envelope under a certificate of the trusted server key opens as from the certified sender", () => {
  const me = setup();
  me.store.setServerKey(serverKey);
  const incoming = me.messenger.open(sealedFrom(me, rusty));
  assert.ok(incoming);
  assert.deepEqual([incoming.from, incoming.deviceId, incoming.sealed], ["rusty", 3n, true]);
  assert.ok(incoming.content.body.case === "text" && incoming.content.body.value.text === "sealed hi");
  assert.deepEqual(me.store.contactIdentity("rusty"), rusty.publicKey.toBytes());
});

test("refusals: no server key, expired at the server time stamp, another server key, an untrusted identity, a session of another identity, a group message; the store is unchanged", () => {
  const me = setup();
  assert.equal(refusal(() => me.messenger.open(sealedFrom(me, rusty))), "NoServerKey");
  me.store.setServerKey(serverKey);
  assert.equal(refusal(() => me.messenger.open(sealedFrom(me, rusty, { expiresAtMs: 4_999n }))), "Refused/Expired");
  assert.equal(refusal(() => me.messenger.open(sealedFrom(me, rusty, { certSeed: otherServerSeed }))), "Refused/BadSignature");
  // The certificate says "rusty" under another identity than the one trusted for rusty.
  me.store.setContactIdentity("rusty", IdentityKeyPair.generate(seededRng("real-rusty")).publicKey.toBytes());
  assert.equal(refusal(() => me.messenger.open(sealedFrom(me, rusty))), "UntrustedIdentity");
  // Certified as mallory's identity, but the inner session is rusty's.
  const mallory = IdentityKeyPair.generate(seededRng("mallory"));
  assert.equal(refusal(() => me.messenger.open(sealedFrom(me, rusty, { username: "mallory", certIdentity: mallory }))), "UntrustedIdentity");
  assert.equal(refusal(() => me.messenger.open(sealedFrom(me, rusty, { username: "carol", contentType: 2 }))), "GroupUnsupported");
  assert.deepEqual(me.store.sessionDevices("rusty"), []);
  assert.deepEqual(me.store.sessionDevices("mallory"), []);
  assert.equal(me.store.contactIdentity("mallory"), undefined);
  assert.equal(me.store.seen(11n), false);
});

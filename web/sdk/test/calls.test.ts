/** src/client/calls.ts: typed call signals (§11.1, §11.2), the call state of §11.8, and the encrypted 1:1 path they travel. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";

import {
  CallSignalError,
  CallSignalling,
  MAX_ICE_CANDIDATES,
  OFFER_MAX_AGE_MS,
  RING_GRACE_MS,
  RING_TIMEOUT_MS,
  callSignalContent,
  readCallSignal,
  type CallEvent,
  type CallSignalBody,
} from "../src/client/calls.js";
import { Connection, type SocketLike } from "../src/client/connection.js";
import { Messenger, type Incoming } from "../src/client/messenger.js";
import { MemoryStore } from "../src/client/store.js";
import { ContentSchema, decodeContent, encodeContent, type Content } from "../src/content.js";
import { ClientFrameSchema, EnvelopeSchema, ErrorCode, ServerFrameSchema, type ClientFrame } from "../src/gen/transport_pb.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, SignedPreKey } from "../src/prekeys.js";
import { seededRng } from "./helpers.js";

const SDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
const CANDIDATE = { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 };

/** What arrives after the content went through encode → (seal, open) → decode. */
function incoming(from: string, content: Content, extra: Partial<Incoming> = {}): Incoming {
  return { from, deviceId: 1n, envelopeId: 1n, content: decodeContent(encodeContent(content)), ...extra };
}

test("every signal kind survives the Content encoding and reads back typed", () => {
  const rng = seededRng("kinds");
  const id = new Uint8Array(16).fill(7);
  const signals: CallSignalBody[] = [
    { kind: "offer", sdp: SDP, video: true },
    { kind: "answer", sdp: SDP },
    { kind: "iceCandidate", ...CANDIDATE, sdpMLineIndex: 3 },
    { kind: "hangup", reason: "normal" },
    { kind: "hangup", reason: "declined" },
    { kind: "hangup", reason: "busy" },
    { kind: "hangup", reason: "answeredElsewhere" },
  ];
  for (const signal of signals) {
    const read = readCallSignal(incoming("alice", callSignalContent(rng, id, signal, 1_700_000_000_000)));
    assert.deepEqual(read.signal, signal);
    assert.deepEqual(read.callId, id);
    assert.equal(read.sentAtMs, 1_700_000_000_000);
    assert.equal(read.ownCopyTo, undefined);
  }
  // UNSPECIFIED and values this version does not know read as NORMAL (§11.2).
  for (const reason of [0, 99]) {
    const content = create(ContentSchema, { messageId: new Uint8Array(16), body: { case: "callSignal", value: { callId: id, signal: { case: "hangup", value: { reason } } } } });
    assert.deepEqual(readCallSignal(incoming("alice", content)).signal, { kind: "hangup", reason: "normal" });
  }
});

test("signals breaking §11.2 are typed errors naming the field, on both the sending and the receiving side", () => {
  const rng = seededRng("rules");
  const id = new Uint8Array(16);
  const refused = (f: () => unknown, field: string) =>
    assert.throws(f, (e) => e instanceof CallSignalError && e.kind === "Invalid" && e.field === field, field);
  refused(() => callSignalContent(rng, new Uint8Array(15), { kind: "hangup", reason: "normal" }), "CallSignal.call_id");
  refused(() => callSignalContent(rng, id, { kind: "offer", sdp: "", video: false }), "CallOffer.sdp");
  refused(() => callSignalContent(rng, id, { kind: "answer", sdp: "x".repeat(65_537) }), "CallAnswer.sdp");
  refused(() => callSignalContent(rng, id, { kind: "iceCandidate", ...CANDIDATE, candidate: "c".repeat(4097) }), "CallIceCandidate.candidate");
  refused(() => callSignalContent(rng, id, { kind: "iceCandidate", ...CANDIDATE, sdpMid: "m".repeat(257) }), "CallIceCandidate.sdp_mid");
  refused(() => callSignalContent(rng, id, { kind: "iceCandidate", ...CANDIDATE, sdpMLineIndex: -1 }), "CallIceCandidate.sdp_mline_index");
  // The biggest allowed SDP fits in one Content.
  assert.equal(readCallSignal(incoming("a", callSignalContent(rng, id, { kind: "offer", sdp: "x".repeat(65_536), video: false }))).signal.kind, "offer");

  // Built elsewhere (not through decodeContent): readCallSignal checks again.
  const noSignal = create(ContentSchema, { messageId: new Uint8Array(16), body: { case: "callSignal", value: { callId: id } } });
  refused(() => readCallSignal({ from: "a", deviceId: 1n, envelopeId: 1n, content: noSignal }), "CallSignal.signal");
  const shortId = create(ContentSchema, { messageId: new Uint8Array(16), body: { case: "callSignal", value: { callId: new Uint8Array(3), signal: { case: "hangup", value: {} } } } });
  refused(() => readCallSignal({ from: "a", deviceId: 1n, envelopeId: 1n, content: shortId }), "CallSignal.call_id");
  const text = create(ContentSchema, { messageId: new Uint8Array(16), body: { case: "text", value: { text: "hi" } } });
  assert.throws(() => readCallSignal(incoming("a", text)), (e) => e instanceof CallSignalError && e.kind === "NotCallSignal");
  const inGroup = callSignalContent(rng, id, { kind: "hangup", reason: "normal" });
  assert.throws(() => readCallSignal(incoming("a", inGroup, { groupId: new Uint8Array(16) })), (e) => e instanceof CallSignalError && e.kind === "InGroup");
  assert.throws(
    () => readCallSignal(incoming("me", inGroup, { sentCopy: { destination: { kind: "group", groupId: new Uint8Array(16) }, timestampMs: 0n } })),
    (e) => e instanceof CallSignalError && e.kind === "InGroup",
  );

  // A receiver never throws on them: a `refused` event, the state untouched.
  const calls = new CallSignalling({ send: () => Promise.resolve(), rng });
  const events: CallEvent[] = [];
  calls.onEvent((e) => events.push(e));
  assert.equal(calls.handle({ type: "message", message: { from: "a", deviceId: 1n, envelopeId: 1n, content: noSignal } }), true);
  assert.equal(calls.handle({ type: "message", message: incoming("a", text) }), false);
  assert.equal(events.length, 1);
  assert.equal(events[0]!.type, "refused");
  assert.equal(calls.current, undefined);
});

/** Fake timers driven by `advance`. */
function clock(start = 1_700_000_000_000) {
  let now = start;
  const timers: { at: number; callback: () => void; live: boolean }[] = [];
  return {
    now: () => now,
    setTimer: (callback: () => void, ms: number) => {
      const timer = { at: now + ms, callback, live: true };
      timers.push(timer);
      return timer;
    },
    clearTimer: (handle: unknown) => void ((handle as { live: boolean }).live = false),
    advance(ms: number) {
      now += ms;
      for (const t of timers) {
        if (!t.live || t.at > now) continue;
        t.live = false;
        t.callback();
      }
    },
  };
}

/** Devices wired to each other through encode/decode; deliveries wait in a queue until `flush`. */
function network() {
  const time = clock();
  const queue: { to: string; incoming: Incoming; skip?: CallSignalling }[] = [];
  const devices = new Map<string, { calls: CallSignalling; events: CallEvent[] }[]>();
  let envelopeId = 0n;
  const device = (username: string, deviceId = 1n) => {
    const calls: CallSignalling = new CallSignalling({
      rng: seededRng(`${username}-${deviceId}`),
      now: time.now,
      setTimer: time.setTimer,
      clearTimer: time.clearTimer,
      send: async (to, content) => {
        const bytes = encodeContent(content);
        queue.push({ to, incoming: { from: username, deviceId, envelopeId: (envelopeId += 1n), content: decodeContent(bytes) } });
        // The own-device copy (§11.7) to the sender's other devices.
        const sentCopy = { destination: { kind: "direct" as const, username: to }, timestampMs: 0n };
        queue.push({ to: username, skip: calls, incoming: { from: username, deviceId, envelopeId: (envelopeId += 1n), content: decodeContent(bytes), sentCopy } });
      },
    });
    const entry = { calls, events: [] as CallEvent[] };
    calls.onEvent((e) => entry.events.push(e));
    devices.set(username, [...(devices.get(username) ?? []), entry]);
    return entry;
  };
  const flush = () => {
    while (queue.length > 0) {
      const { to, incoming, skip } = queue.shift()!;
      for (const target of devices.get(to) ?? []) if (target.calls !== skip) target.calls.receive(incoming);
    }
  };
  return { time, device, flush, queue: { get length() { return queue.filter((q) => !q.incoming.sentCopy).length; }, items: () => queue.filter((q) => !q.incoming.sentCopy), push: (item: { to: string; incoming: Incoming }) => queue.push(item) } };
}

const types = (events: CallEvent[]) => events.map((e) => (e.type === "ended" ? `ended:${e.reason}` : e.type));

test("a call: offer, candidates held until each side's description, answer, hang-up ends it on both sides", async () => {
  const net = network();
  const alice = net.device("alice");
  const bob = net.device("bob");

  const call = alice.calls.startCall("bob", true);
  assert.equal(call.direction, "outgoing");
  // A candidate before the offer waits; the offer leaves first.
  await alice.calls.sendCandidate(CANDIDATE);
  assert.equal(net.queue.length, 0);
  await alice.calls.sendOffer(SDP);
  assert.deepEqual(net.queue.items().map((q) => readCallSignal(q.incoming).signal.kind), ["offer", "iceCandidate"]);
  net.flush();
  assert.deepEqual(types(bob.events), ["ringing"]);
  const ringing = bob.events[0] as Extract<CallEvent, { type: "ringing" }>;
  assert.equal(ringing.offerSdp, SDP);
  assert.deepEqual({ peer: ringing.call.peer, video: ringing.call.video, id: ringing.call.id }, { peer: "alice", video: true, id: call.id });

  // Accepting releases the caller's held candidate; the answer reaches alice.
  await bob.calls.accept(`${SDP}a=answer\r\n`);
  assert.deepEqual(types(bob.events), ["ringing", "remoteCandidate"]);
  await bob.calls.sendCandidate({ ...CANDIDATE, candidate: `${CANDIDATE.candidate} 2` });
  net.flush();
  assert.deepEqual(types(alice.events), ["answered", "remoteCandidate"]);
  assert.equal(alice.calls.current?.state, "answered");
  assert.equal(alice.calls.current?.peerDeviceId, 1n);

  // No ring timeout once answered.
  net.time.advance(RING_TIMEOUT_MS * 2);
  assert.equal(alice.calls.current?.state, "answered");

  await bob.calls.hangUp();
  net.flush();
  assert.deepEqual(types(bob.events).at(-1), "ended:hungUp");
  assert.deepEqual(types(alice.events).at(-1), "ended:hungUp");
  assert.equal(alice.calls.current, undefined);
  assert.equal(bob.calls.current, undefined);
  // Signals of the ended call change nothing.
  net.queue.push({ to: "alice", incoming: incoming("bob", callSignalContent(seededRng("x"), new Uint8Array(16), { kind: "hangup", reason: "normal" })) });
  net.flush();
  assert.equal(alice.events.length, 3);
});

test("declined, busy, unanswered and cancelled calls end with their reason", async () => {
  // Declined.
  let net = network();
  let alice = net.device("alice");
  let bob = net.device("bob");
  alice.calls.startCall("bob", false);
  await alice.calls.sendOffer(SDP);
  net.flush();
  await bob.calls.reject();
  net.flush();
  assert.deepEqual(types(alice.events), ["ended:declined"]);
  assert.deepEqual(types(bob.events), ["ringing", "ended:declined"]);

  // Busy: bob is in a call with carol when alice calls.
  net = network();
  alice = net.device("alice");
  bob = net.device("bob");
  const carol = net.device("carol");
  carol.calls.startCall("bob", false);
  await carol.calls.sendOffer(SDP);
  net.flush();
  await bob.calls.accept(SDP);
  net.flush();
  alice.calls.startCall("bob", true);
  await alice.calls.sendOffer(SDP);
  net.flush();
  assert.deepEqual(types(alice.events), ["ended:busy"]);
  assert.deepEqual(bob.events.at(-1), { type: "missed", from: "alice", video: true, busy: true });
  assert.equal(bob.calls.current?.peer, "carol");
  assert.throws(() => bob.calls.startCall("alice", false), (e) => e instanceof CallSignalError && e.kind === "Busy");

  // Nobody answers: after the ring timeout the caller hangs up; the callee stops ringing.
  net = network();
  alice = net.device("alice");
  bob = net.device("bob");
  alice.calls.startCall("bob", false);
  await alice.calls.sendOffer(SDP);
  net.flush();
  net.time.advance(RING_TIMEOUT_MS - 1);
  assert.equal(alice.calls.current?.state, "ringing");
  net.time.advance(1);
  assert.deepEqual(types(alice.events), ["ended:noAnswer"]);
  net.flush();
  assert.deepEqual(types(bob.events), ["ringing", "ended:cancelled"]);
  // A callee whose caller's hang-up never comes stops ringing by itself.
  alice.calls.startCall("bob", false);
  await alice.calls.sendOffer(SDP);
  net.flush();
  net.time.advance(RING_TIMEOUT_MS); // alice's hang-up is lost: never flushed
  assert.equal(bob.calls.current?.state, "ringing");
  net.time.advance(RING_GRACE_MS);
  assert.deepEqual(types(bob.events).at(-1), "ended:noAnswer");

  // The caller gives up while it rings.
  net = network();
  alice = net.device("alice");
  bob = net.device("bob");
  alice.calls.startCall("bob", false);
  await alice.calls.sendOffer(SDP);
  net.flush();
  await alice.calls.hangUp();
  net.flush();
  assert.deepEqual(types(alice.events), ["ended:cancelled"]);
  assert.deepEqual(types(bob.events), ["ringing", "ended:cancelled"]);

  // An offer older than OFFER_MAX_AGE_MS (queued while offline) is a missed call.
  net = network();
  bob = net.device("bob");
  const old = callSignalContent(seededRng("old"), new Uint8Array(16).fill(1), { kind: "offer", sdp: SDP, video: false }, net.time.now() - OFFER_MAX_AGE_MS - 1);
  bob.calls.receive(incoming("alice", old));
  assert.deepEqual(bob.events, [{ type: "missed", from: "alice", video: false, busy: false }]);
  assert.equal(bob.calls.current, undefined);
});

test("glare: both call each other at once; the lower call id wins and is answered, the other is abandoned", async () => {
  const net = network();
  const alice = net.device("alice");
  const bob = net.device("bob");
  const a = alice.calls.startCall("bob", true);
  const b = bob.calls.startCall("alice", true);
  await alice.calls.sendOffer(SDP);
  await bob.calls.sendOffer(SDP);
  net.flush();
  const [winner, loser] = a.id < b.id ? [alice, bob] : [bob, alice];
  const winningId = a.id < b.id ? a.id : b.id;
  assert.deepEqual(types(winner.events), [], "the winner ignores the losing offer");
  assert.deepEqual(types(loser.events), ["ended:glare", "ringing"]);
  const ringing = loser.events[1] as Extract<CallEvent, { type: "ringing" }>;
  assert.equal(ringing.call.id, winningId);
  assert.equal(ringing.replaces?.id, a.id < b.id ? b.id : a.id);
  await loser.calls.accept(SDP);
  net.flush();
  assert.deepEqual(types(winner.events), ["answered"]);
});

test("another device of the callee answers or declines: this one stops ringing; the caller keeps to the answering device", async () => {
  const net = network();
  const alice = net.device("alice");
  const bob1 = net.device("bob", 1n);
  const bob2 = net.device("bob", 2n);
  alice.calls.startCall("bob", false);
  await alice.calls.sendOffer(SDP);
  net.flush();
  assert.deepEqual(types(bob1.events), ["ringing"]);
  assert.deepEqual(types(bob2.events), ["ringing"]);
  await bob2.calls.accept(SDP);
  net.flush();
  assert.deepEqual(types(bob1.events), ["ringing", "ended:answeredElsewhere"]);
  assert.deepEqual(types(alice.events), ["answered"]);
  assert.equal(alice.calls.current?.peerDeviceId, 2n);
  // A candidate from the device that did not answer is not used.
  const stray = callSignalContent(seededRng("s"), Uint8Array.from(Buffer.from(alice.calls.current!.id, "hex")), { kind: "iceCandidate", ...CANDIDATE });
  alice.calls.receive(incoming("bob", stray, { deviceId: 1n }));
  assert.deepEqual(types(alice.events), ["answered"]);
  alice.calls.receive(incoming("bob", stray, { deviceId: 2n }));
  assert.deepEqual(types(alice.events), ["answered", "remoteCandidate"]);
});

test("candidates are bounded in both directions; operations out of turn are typed errors", async () => {
  const net = network();
  const alice = net.device("alice");
  const bob = net.device("bob");
  await assert.rejects(alice.calls.sendCandidate(CANDIDATE), (e) => e instanceof CallSignalError && e.kind === "WrongState");
  await assert.rejects(alice.calls.accept(SDP), (e) => e instanceof CallSignalError && e.kind === "WrongState");
  await assert.rejects(alice.calls.reject(), (e) => e instanceof CallSignalError && e.kind === "WrongState");
  alice.calls.startCall("bob", false);
  await alice.calls.sendOffer(SDP);
  await assert.rejects(alice.calls.sendOffer(SDP), (e) => e instanceof CallSignalError && e.kind === "WrongState");
  for (let i = 0; i < MAX_ICE_CANDIDATES; i++) await alice.calls.sendCandidate({ ...CANDIDATE, candidate: `${CANDIDATE.candidate} ${i}` });
  await assert.rejects(alice.calls.sendCandidate(CANDIDATE), (e) => e instanceof CallSignalError && e.kind === "TooManyCandidates");
  // Bob's side: the 65th candidate of the call is refused (held ones are bounded while it rings).
  const extra = net.queue.items().find((q) => readCallSignal(q.incoming).signal.kind === "iceCandidate")!.incoming;
  net.flush();
  bob.calls.receive({ ...extra, envelopeId: 999n });
  const refused = bob.events.at(-1);
  assert.equal(refused?.type, "refused");
  assert.ok(refused?.type === "refused" && refused.error.kind === "TooManyCandidates");
  await bob.calls.accept(SDP);
  assert.equal(bob.events.filter((e) => e.type === "remoteCandidate").length, MAX_ICE_CANDIDATES);
});

type Result = MessageInitShape<typeof ServerFrameSchema>;

test("through the encrypted 1:1 path: the server's envelopes carry no SDP; the callee's Messenger opens a typed offer", async () => {
  const bobIdentity = IdentityKeyPair.generate(seededRng("bob"));
  const rng = seededRng("bob-2");
  const preKeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(rng, bobIdentity, 1, true);
  const kem = KemPreKey.generate(rng, bobIdentity, 1);
  preKeys.addSigned(signed);
  preKeys.addKem(kem);
  const [oneTime] = preKeys.generateOneTime(rng, 1);
  const bundle = { deviceId: 2n, identityKey: bobIdentity.publicKey.toBytes(), signedPrekey: signed.public(), oneTimePrekey: oneTime!.public(), kemPrekey: kem.public() };
  const sends: ClientFrame[] = [];
  const socketFactory = (): SocketLike => {
    const socket: SocketLike = {
      binaryType: "",
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
      send(data: Uint8Array) {
        const frame = fromBinary(ClientFrameSchema, data);
        const ok = (result: NonNullable<Extract<Result["kind"], { case: "response" }>["value"]>["result"]) => ({ case: "response" as const, value: { requestId: frame.requestId, result } });
        const r = frame.request;
        const kind =
          r.case === "hello"
            ? ok({ case: "hello", value: { version: 1, challenge: new Uint8Array(32) } })
            : r.case === "listDevices"
              ? ok({ case: "deviceList", value: { devices: [{ deviceId: 1n }] } })
              : r.case === "fetchPrekeys"
                ? ok({ case: "prekeyBundles", value: { bundles: [bundle] } })
                : r.case === "send"
                  ? (sends.push(frame), ok({ case: "send", value: { serverTimestampMs: 5n } }))
                  : r.case === "ackEnvelopes"
                    ? ok({ case: "ack", value: { deleted: r.value.envelopeIds.length } })
                    : ok({ case: "error", value: { code: ErrorCode.UNKNOWN_REQUEST, message: "?" } });
        queueMicrotask(() => socket.onmessage?.({ data: toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind })) }));
      },
      close() {},
    };
    queueMicrotask(() => socket.onopen?.({}));
    return socket;
  };
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory });
  const aliceStore = new MemoryStore(new LocalPreKeys());
  const ar = seededRng("alice");
  aliceStore.setDevice({ username: "alice", deviceId: 1n, deviceKey: IdentityKeyPair.generate(ar), identity: IdentityKeyPair.generate(ar) });
  const messenger = new Messenger(aliceStore, seededRng("alice-run"));
  const caller = new CallSignalling({ rng: seededRng("calls"), send: (to, content) => messenger.sendContent(connection, to, content) });
  const call = caller.startCall("bob", true);
  const sdp = `${SDP}a=fingerprint:sha-256 AB:CD\r\n`;
  await caller.sendOffer(sdp);
  await caller.sendCandidate(CANDIDATE);
  assert.equal(sends.length, 2, "the offer, then the candidate");
  const wire = sends.map((f) => toBinary(ClientFrameSchema, f));
  for (const bytes of wire) {
    assert.equal(Buffer.from(bytes).includes(Buffer.from("a=fingerprint")), false, "no SDP in what the server receives");
    assert.equal(Buffer.from(bytes).includes(Buffer.from("typ host")), false, "no candidate in what the server receives");
  }

  const bobStore = new MemoryStore(preKeys);
  bobStore.setDevice({ username: "bob", deviceId: 2n, deviceKey: IdentityKeyPair.generate(seededRng("bk")), identity: bobIdentity });
  const bob = new Messenger(bobStore, seededRng("bob-run"));
  const envelopes = sends.map((f, i) =>
    create(EnvelopeSchema, { envelopeId: BigInt(i + 1), senderUsername: "alice", senderDeviceId: 1n, ciphertext: f.request.case === "send" ? f.request.value.envelopes[0]!.ciphertext : new Uint8Array() }),
  );
  const callee = new CallSignalling({ rng: seededRng("callee"), send: () => Promise.resolve() });
  const events: CallEvent[] = [];
  callee.onEvent((e) => events.push(e));
  for (const message of await bob.take(connection, envelopes)) assert.equal(callee.handle({ type: "message", message }), true);
  assert.deepEqual(types(events), ["ringing"]);
  const ringing = events[0] as Extract<CallEvent, { type: "ringing" }>;
  assert.equal(ringing.offerSdp, sdp);
  assert.equal(ringing.call.id, call.id);
  await callee.accept(SDP);
  assert.deepEqual(events.at(-1), { type: "remoteCandidate", call: { ...callee.current! }, candidate: CANDIDATE });
  await caller.hangUp();
  assert.equal(sends.length, 3, "the hang-up");
});

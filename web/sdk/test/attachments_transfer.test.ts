/**
 * src/client/attachments.ts against a scripted server (no network): the
 * upload's wire format (varint-framed AttachmentStreamHeader, raw ciphertext
 * in messages of at most 64 KiB, an empty message to end) decrypts back to
 * the file under the returned pointer; a download decrypts into the sink.
 * Bad input from the server is a typed error and leaves the sink empty:
 * tampered bytes (AttachmentError), more bytes than announced, an oversized
 * or undecodable result frame (TransferError ProtocolError), a refusal
 * (TransferError Refused with the code). The live test covers resumption.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";

import { AttachmentError, AttachmentKey, decryptAttachment, encryptAttachment } from "../src/attachment.js";
import { blobSource, ciphertextLength, collectSink, bytesSource, downloadAttachment, MAX_ATTACHMENT_MESSAGE, TransferError, uploadAttachment, type TransferOptions } from "../src/client/attachments.js";
import { Connection, type SocketLike } from "../src/client/connection.js";
import { encodeVarint } from "../src/framing.js";
import { AttachmentPointerSchema } from "../src/gen/content_pb.js";
import { AttachmentStreamHeaderSchema, AttachmentStreamResultSchema, ClientFrameSchema, EnvelopeSchema, ErrorCode, ServerFrameSchema, type AttachmentStreamHeader, type ClientFrame } from "../src/gen/transport_pb.js";
import { Messenger } from "../src/client/messenger.js";
import { MemoryOutbox, Outbox, type OutboxEvent } from "../src/client/outbox.js";
import { MemoryStore } from "../src/client/store.js";
import { IdentityKeyPair } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, SignedPreKey } from "../src/prekeys.js";
import { pattern, seededRng } from "./helpers.js";

type Kind = MessageInitShape<typeof ServerFrameSchema>["kind"];

/** The raw side of an attachment socket: gets the client's bytes (header and body), returns the server's byte messages. */
type RawServer = (clientBytes: Uint8Array) => Uint8Array[] | { chunks: Uint8Array[]; silent: true };

function framedResult(result: MessageInitShape<typeof AttachmentStreamResultSchema>): Uint8Array {
  const body = toBinary(AttachmentStreamResultSchema, create(AttachmentStreamResultSchema, result));
  const out = new Uint8Array(encodeVarint(body.length).length + body.length);
  out.set(encodeVarint(body.length));
  out.set(body, out.length - body.length);
  return out;
}

/** A server for both sockets: requests answered by `answer`, attachment sockets after login by `raw`. */
function scripted(answer: (frame: ClientFrame) => Kind, raw: RawServer) {
  const messageSizes: number[] = [];
  let terminated = 0;
  const factory = (url: string): SocketLike => {
    let loggedIn = false;
    const received: Uint8Array[] = [];
    const socket: SocketLike = {
      binaryType: "",
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
      send(data: Uint8Array) {
        if (loggedIn) {
          messageSizes.push(data.length);
          if (data.length > 0) {
            received.push(data.slice());
            return;
          }
          const all = new Uint8Array(received.reduce((n, r) => n + r.length, 0));
          let at = 0;
          for (const r of received) {
            all.set(r, at);
            at += r.length;
          }
          const out = raw(all);
          const served = Array.isArray(out) ? out : out.chunks;
          queueMicrotask(() => {
            for (const chunk of served) socket.onmessage?.({ data: chunk.slice().buffer });
            if (Array.isArray(out)) socket.onclose?.({ code: 1000, reason: "" });
          });
          return;
        }
        const frame = fromBinary(ClientFrameSchema, data);
        const ok = (result: NonNullable<Extract<Kind, { case: "response" }>["value"]>["result"]): Kind => ({ case: "response", value: { requestId: frame.requestId, result } });
        let kind: Kind;
        if (frame.request.case === "hello") kind = ok({ case: "hello", value: { version: 1, challenge: new Uint8Array(32) } });
        else if (frame.request.case === "challenge") kind = ok({ case: "challenge", value: { challenge: new Uint8Array(32).fill(5) } });
        else if (frame.request.case === "login") {
          kind = ok({ case: "login", value: { username: "alice" } });
          if (url.endsWith("/attachment")) loggedIn = true;
        } else kind = answer(frame);
        queueMicrotask(() => socket.onmessage?.({ data: toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind })) }));
      },
      close() {},
      terminate() {
        terminated += 1;
      },
    };
    queueMicrotask(() => socket.onopen?.({}));
    return socket;
  };
  return { factory, messageSizes, terminated: () => terminated };
}

async function options(server: ReturnType<typeof scripted>, progress: number[] = []): Promise<TransferOptions> {
  const connection = await Connection.open({ url: "wss://x:7447/v1/ws", socketFactory: server.factory, keepAlive: false });
  return {
    url: "wss://x:7447/v1/ws",
    socketFactory: server.factory,
    connection: () => Promise.resolve(connection),
    deviceId: 1n,
    deviceKey: IdentityKeyPair.generate(seededRng("dk")),
    onProgress: (done) => progress.push(done),
    maxAttempts: 2,
    sleep: () => Promise.resolve(),
  };
}

const FILE = pattern(200_000);
const ID = new Uint8Array(16).fill(8);

test("upload: framed header, ≤ 64 KiB messages, an empty one to end; the bytes decrypt to the file under the pointer", async () => {
  let uploaded = new Uint8Array(0);
  let header: AttachmentStreamHeader | undefined;
  const server = scripted(
    (frame) => {
      assert.equal(frame.request.case, "attachmentUpload");
      const size = frame.request.case === "attachmentUpload" ? frame.request.value.size : 0n;
      assert.equal(size, BigInt(ciphertextLength(FILE.length)));
      return { case: "response", value: { requestId: frame.requestId, result: { case: "attachmentUpload", value: { attachmentId: ID, uploadToken: new Uint8Array(32).fill(6) } } } };
    },
    (bytes) => {
      const length = bytes[0]!; // < 128: a one-byte prefix
      header = fromBinary(AttachmentStreamHeaderSchema, bytes.subarray(1, 1 + length));
      uploaded = bytes.slice(1 + length);
      return [framedResult({ committedOffset: BigInt(uploaded.length) })];
    },
  );
  const progress: number[] = [];
  // A Blob, as a browser hands over a File (Node 20 has the same Blob).
  const pointer = await uploadAttachment(await options(server, progress), seededRng("up"), blobSource(new Blob([FILE as Uint8Array<ArrayBuffer>])), { fileName: "a.bin" });
  assert.equal(header?.kind.case, "upload");
  assert.deepEqual(header?.kind.value?.attachmentId, ID);
  assert.equal(uploaded.length, ciphertextLength(FILE.length));
  assert.ok(server.messageSizes.every((n) => n <= MAX_ATTACHMENT_MESSAGE));
  assert.equal(server.messageSizes.at(-1), 0, "ends with an empty message");
  assert.deepEqual(decryptAttachment(AttachmentKey.fromBytes(pointer.key), pointer.digest, uploaded), FILE);
  assert.equal(pointer.size, BigInt(FILE.length));
  assert.equal(pointer.fileName, "a.bin");
  assert.equal(progress.at(-1), uploaded.length);
});

/** A pointer to FILE and a server serving `serve(ciphertext)` as the download stream. */
function download(serve: (ciphertext: Uint8Array, header: AttachmentStreamHeader) => ReturnType<RawServer>) {
  const key = AttachmentKey.generate(seededRng("k"));
  const { ciphertext, summary } = encryptAttachment(key, FILE);
  const pointer = create(AttachmentPointerSchema, { attachmentId: ID, key: key.toBytes(), digest: summary.digest, size: BigInt(FILE.length) });
  const server = scripted(
    (frame) => ({ case: "response", value: { requestId: frame.requestId, result: { case: "attachmentDownload", value: { attachmentId: ID, size: BigInt(ciphertext.length) } } } }),
    (bytes) => serve(ciphertext, fromBinary(AttachmentStreamHeaderSchema, bytes.subarray(1, 1 + bytes[0]!))),
  );
  return { pointer, server, ciphertext };
}

const chunks = (bytes: Uint8Array) => Array.from({ length: Math.ceil(bytes.length / 50_000) }, (_, i) => bytes.slice(i * 50_000, (i + 1) * 50_000));

test("download: the stream decrypts into the sink with progress", async () => {
  const { pointer, server, ciphertext } = download((c) => [framedResult({ length: BigInt(c.length) }), ...chunks(c)]);
  const sink = collectSink();
  const progress: number[] = [];
  await downloadAttachment(await options(server, progress), pointer, sink);
  assert.deepEqual(sink.bytes(), FILE);
  assert.equal(progress.at(-1), ciphertext.length);
});

test("download: bad input from the server is a typed error and the sink is left empty", async () => {
  const cases: [string, (c: Uint8Array, header: AttachmentStreamHeader) => Uint8Array[], (e: unknown) => boolean][] = [
    [
      "a flipped byte",
      (c) => {
        const bad = c.slice();
        bad[70_000] = bad[70_000]! ^ 1;
        return [framedResult({ length: BigInt(c.length) }), ...chunks(bad)];
      },
      (e) => e instanceof AttachmentError && e.kind === "corrupt" && e.segment === 1,
    ],
    ["more bytes than announced", (c) => [framedResult({ length: BigInt(c.length) }), ...chunks(c), new Uint8Array(10)], (e) => e instanceof TransferError && e.kind === "ProtocolError"],
    ["a refusal", () => [framedResult({ error: { code: ErrorCode.UNKNOWN_ATTACHMENT, message: "gone" } })], (e) => e instanceof TransferError && e.kind === "Refused" && e.code === ErrorCode.UNKNOWN_ATTACHMENT],
    ["a result frame over 4096 bytes", () => [Uint8Array.of(0x80, 0x80, 0x01), new Uint8Array(5000)], (e) => e instanceof TransferError && e.kind === "ProtocolError"],
    ["a result frame that does not decode", () => [Uint8Array.of(2, 0xff, 0xff)], (e) => e instanceof TransferError && e.kind === "ProtocolError"],
    [
      "a stream that stops short, every time",
      (c, header) => {
        const offset = header.kind.case === "download" ? Number(header.kind.value.offset) : 0;
        return [framedResult({ length: BigInt(c.length - offset) }), c.slice(offset, offset + 1000)];
      },
      (e) => e instanceof TransferError && e.kind === "TooManyAttempts",
    ],
  ];
  for (const [label, serve, check] of cases) {
    const { pointer, server } = download(serve);
    const sink = collectSink();
    await assert.rejects(downloadAttachment(await options(server), pointer, sink), check, label);
    assert.equal(sink.chunks.length, 0, `${label}: the sink was reset`);
  }
});

test("a file queued in the outbox while offline is uploaded and its pointer sent when a connection comes; the recipient decrypts the file", async () => {
  const rng = seededRng("bob");
  const bobIdentity = IdentityKeyPair.generate(rng);
  const bobPreKeys = new LocalPreKeys();
  const signed = SignedPreKey.generate(rng, bobIdentity, 1, true);
  const kem = KemPreKey.generate(rng, bobIdentity, 1);
  bobPreKeys.addSigned(signed);
  bobPreKeys.addKem(kem);
  const bundle = { deviceId: 2n, identityKey: bobIdentity.publicKey.toBytes(), signedPrekey: signed.public(), kemPrekey: kem.public() };
  const sent: Uint8Array[] = [];
  let uploaded = new Uint8Array(0);
  const server = scripted(
    (frame) => {
      const ok = (result: NonNullable<Extract<Kind, { case: "response" }>["value"]>["result"]): Kind => ({ case: "response", value: { requestId: frame.requestId, result } });
      switch (frame.request.case) {
        case "attachmentUpload":
          return ok({ case: "attachmentUpload", value: { attachmentId: ID, uploadToken: new Uint8Array(32) } });
        case "listDevices":
          return ok({ case: "deviceList", value: { devices: [{ deviceId: 1n }] } });
        case "fetchPrekeys":
          return ok({ case: "prekeyBundles", value: { bundles: [bundle] } });
        case "send":
          sent.push(frame.request.value.envelopes[0]!.ciphertext);
          return ok({ case: "send", value: { serverTimestampMs: 1n } });
        default:
          return ok({ case: "ok", value: {} });
      }
    },
    (bytes) => {
      uploaded = bytes.slice(1 + bytes[0]!);
      return [framedResult({ committedOffset: BigInt(uploaded.length) })];
    },
  );
  const transfer = await options(server);
  const alice = new MemoryStore(new LocalPreKeys());
  alice.setDevice({ username: "alice", deviceId: 1n, deviceKey: transfer.deviceKey, identity: IdentityKeyPair.generate(seededRng("ai")) });
  const events: OutboxEvent[] = [];
  const outbox = new Outbox(new MemoryOutbox(), new Messenger(alice, seededRng("m")), seededRng("o"), {
    resolveFile: (ref) => Promise.resolve(bytesSource(ref === "file-1" ? FILE : new Uint8Array(0))),
    transfer,
    onEvent: (e) => events.push(e),
  });
  const id = await outbox.queueFile("bob", { ref: "file-1", fileName: "f.bin", caption: "look" });
  assert.equal(outbox.pending, 1);
  assert.equal(sent.length, 0);
  outbox.setConnection(await transfer.connection());
  await outbox.idle();
  assert.equal(outbox.pending, 0);
  assert.deepEqual(events.map((e) => [e.kind, e.messageId]), [["sent", id]]);
  const bobStore = new MemoryStore(bobPreKeys);
  bobStore.setDevice({ username: "bob", deviceId: 2n, deviceKey: IdentityKeyPair.generate(rng), identity: bobIdentity });
  const incoming = new Messenger(bobStore, seededRng("b")).open(create(EnvelopeSchema, { envelopeId: 1n, senderUsername: "alice", senderDeviceId: 1n, ciphertext: sent[0]! }));
  const body = incoming!.content.body;
  assert.equal(body.case, "attachment");
  assert.deepEqual(incoming!.content.messageId, id, "the message id fixed at queue time");
  const pointer = body.case === "attachment" ? body.value : undefined;
  assert.equal(pointer?.caption, "look");
  assert.deepEqual(decryptAttachment(AttachmentKey.fromBytes(pointer!.key), pointer!.digest, uploaded), FILE);
});

test("download: a server that goes silent mid-stream is dropped after the silence limit and the download resumes on a new socket", async () => {
  let sockets = 0;
  const { pointer, server } = download((c, header) => {
    sockets += 1;
    const offset = header.kind.case === "download" ? Number(header.kind.value.offset) : 0;
    const result = framedResult({ length: BigInt(c.length - offset) });
    return sockets === 1 ? { chunks: [result, c.slice(0, 100_000)], silent: true } : [result, ...chunks(c.slice(offset))];
  });
  const sink = collectSink();
  await downloadAttachment({ ...(await options(server)), silenceLimitMs: 100 }, pointer, sink);
  assert.deepEqual(sink.bytes(), FILE);
  assert.equal(sockets, 2);
  assert.equal(server.terminated(), 1, "the silent socket was dropped");
});

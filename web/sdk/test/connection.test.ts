/** src/client/connection.ts and reconnect.ts against an in-memory socket that plays the server (SPEC §12.4, §12.8, §12.13). */
import assert from "node:assert/strict";
import { test } from "node:test";

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import { Connection, ConnectionError, ServerError, WS_SUBPROTOCOL, type SocketLike } from "../src/client/connection.js";
import { backoffDelay, Reconnector } from "../src/client/reconnect.js";
import { ClientFrameSchema, ErrorCode, ServerFrameSchema, type ClientFrame } from "../src/gen/transport_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";

/** A socket whose peer is the test: frames the client sends go to `onClientFrame`. */
class FakeSocket implements SocketLike {
  binaryType = "blob";
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  readonly sent: ClientFrame[] = [];
  closedWith: number | undefined;
  onClientFrame: (frame: ClientFrame) => void = () => undefined;

  constructor(readonly url: string, readonly protocol: string) {
    queueMicrotask(() => this.onopen?.({}));
  }

  send(data: Uint8Array): void {
    const frame = fromBinary(ClientFrameSchema, data);
    this.sent.push(frame);
    queueMicrotask(() => this.onClientFrame(frame));
  }

  close(code = 1000): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = code;
    queueMicrotask(() => this.onclose?.({ code, reason: "" }));
  }

  /** The server writes one ServerFrame (as an ArrayBuffer, like a browser). */
  serve(frame: MessageInitShape<typeof ServerFrameSchema>): void {
    const bytes = toBinary(ServerFrameSchema, create(ServerFrameSchema, frame));
    this.onmessage?.({ data: bytes.slice().buffer });
  }

  /** The server closes with a WebSocket close code. */
  serverClose(code: number, reason = ""): void {
    this.closedWith = code;
    this.onclose?.({ code, reason });
  }
}

/** A fake server that answers Hello and then hands frames to `handler`. */
function fakeServer(handler: (socket: FakeSocket, frame: ClientFrame) => void = () => undefined) {
  const sockets: FakeSocket[] = [];
  const factory = (url: string, protocol: string) => {
    const socket = new FakeSocket(url, protocol);
    sockets.push(socket);
    socket.onClientFrame = (frame) => {
      if (frame.request.case === "hello") {
        socket.serve({
          kind: {
            case: "response",
            value: { requestId: frame.requestId, result: { case: "hello", value: { version: 1, serverAgent: "fake", challenge: new Uint8Array(32).fill(9), limits: { maxFrameLen: 4096 } } } },
          },
        });
      } else handler(socket, frame);
    };
    return socket;
  };
  return { sockets, factory };
}

test("Hello first, with the subprotocol; HelloResponse gives version, challenge and limits", async () => {
  const server = fakeServer();
  const connection = await Connection.open({ url: "ws://127.0.0.1:1/v1/ws", socketFactory: server.factory, clientAgent: "test" });
  const socket = server.sockets[0]!;
  assert.equal(socket.protocol, WS_SUBPROTOCOL);
  assert.equal(socket.binaryType, "arraybuffer");
  assert.equal(socket.sent[0]!.request.case, "hello");
  assert.deepEqual(socket.sent[0]!.request.value, create(ClientFrameSchema, { request: { case: "hello", value: { versions: [1], clientAgent: "test" } } }).request.value);
  assert.equal(connection.version, 1);
  assert.equal(connection.limits?.maxFrameLen, 4096);
  assert.deepEqual(connection.challenge, new Uint8Array(32).fill(9));
});

test("responses are matched by request_id even out of order; errors are typed; pushes reach listeners", async () => {
  const held: ClientFrame[] = [];
  const server = fakeServer((socket, frame) => {
    held.push(frame);
    if (held.length < 2) return;
    // Answer the second request first, then the first with an error, with a push in between.
    const [first, second] = held;
    socket.serve({ kind: { case: "response", value: { requestId: second!.requestId, result: { case: "challenge", value: { challenge: new Uint8Array(32).fill(1) } } } } });
    socket.serve({ kind: { case: "push", value: { event: { case: "prekeyLowStock", value: { oneTimePrekeys: 3 } } } } });
    socket.serve({
      kind: { case: "response", value: { requestId: first!.requestId, result: { case: "error", value: { code: ErrorCode.QUEUE_FULL, message: "full", retryAfterMs: 5n, deviceIds: [7n] } } } },
    });
  });
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: server.factory });
  const pushes: string[] = [];
  connection.onPush((push) => pushes.push(push.event.case ?? "none"));
  const a = connection.request({ case: "ackEnvelopes", value: { envelopeIds: [1n] } });
  const b = connection.call({ case: "challenge", value: {} }, "challenge");
  const challenge = await b;
  assert.deepEqual(challenge.challenge, new Uint8Array(32).fill(1));
  await assert.rejects(a, (e) => e instanceof ServerError && e.code === ErrorCode.QUEUE_FULL && e.retryAfterMs === 5 && e.deviceIds[0] === 7n);
  assert.deepEqual(pushes, ["prekeyLowStock"]);
  assert.equal(connection.closed, false);
});

test("a closing frame then close 4000+code rejects pending requests with the server's code", async () => {
  const server = fakeServer((socket) => {
    socket.serve({ kind: { case: "closing", value: { code: ErrorCode.UNAVAILABLE, message: "shutdown", retryAfterMs: 1000n } } });
    socket.serverClose(4051, "shutdown");
  });
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: server.factory });
  await assert.rejects(connection.request({ case: "listDevices", value: {} }), (e) => e instanceof ConnectionError && e.kind === "Closed" && e.code === ErrorCode.UNAVAILABLE && e.retryAfterMs === 1000);
  assert.equal(connection.closed, true);
  await assert.rejects(connection.request({ case: "listDevices", value: {} }), ConnectionError);
});

test("close code 4000+code alone also names the code; a garbage frame is a ProtocolError and closes", async () => {
  const server = fakeServer((socket, frame) => {
    if (frame.request.case === "listDevices") socket.serverClose(4016, "removed");
    else socket.onmessage?.({ data: new Uint8Array([0xff, 0xff, 0xff]) });
  });
  const c1 = await Connection.open({ url: "ws://x/v1/ws", socketFactory: server.factory });
  await assert.rejects(c1.request({ case: "listDevices", value: {} }), (e) => e instanceof ConnectionError && e.code === ErrorCode.DEVICE_REMOVED);
  const c2 = await Connection.open({ url: "ws://x/v1/ws", socketFactory: server.factory });
  await assert.rejects(c2.request({ case: "prekeyStatus", value: {} }), (e) => e instanceof ConnectionError && e.kind === "ProtocolError");
  assert.equal(server.sockets[1]!.closedWith, 4000 + ErrorCode.PROTOCOL_VIOLATION);
});

test("a request over max_frame_len is refused locally, nothing sent", async () => {
  const server = fakeServer();
  const connection = await Connection.open({ url: "ws://x/v1/ws", socketFactory: server.factory });
  const before = server.sockets[0]!.sent.length;
  await assert.rejects(
    connection.request({ case: "send", value: { envelopes: [{ recipientDeviceId: 1n, ciphertext: new Uint8Array(5000) }] } }),
    (e) => e instanceof ServerError && e.code === ErrorCode.FRAME_TOO_LARGE,
  );
  assert.equal(server.sockets[0]!.sent.length, before);
});

test("an unsupported-version closing during Hello is a typed ConnectionError", async () => {
  const factory = (url: string, protocol: string) => {
    const socket = new FakeSocket(url, protocol);
    socket.onClientFrame = () => {
      socket.serve({ kind: { case: "closing", value: { code: ErrorCode.UNSUPPORTED_VERSION, message: "no", supportedVersions: [2] } } });
      socket.serverClose(4001);
    };
    return socket;
  };
  await assert.rejects(Connection.open({ url: "ws://x/v1/ws", socketFactory: factory }), (e) => e instanceof ConnectionError && e.code === ErrorCode.UNSUPPORTED_VERSION);
});

test("backoff grows, is capped, jittered and honours retry_after_ms", () => {
  const fixed = { initialMs: 100, maxMs: 1000, random: () => 0.999999 };
  assert.deepEqual([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, fixed)), [99, 199, 399, 799, 999, 999]);
  assert.equal(backoffDelay(0, { initialMs: 100, random: () => 0 }), 50);
  assert.equal(backoffDelay(0, fixed, 1000), 1000);
});

test("the reconnector sets up again after a lost connection, waits per backoff, and stops when the device is removed", async () => {
  const server = fakeServer((socket, frame) => {
    if (frame.request.case === "challenge") socket.serve({ kind: { case: "response", value: { requestId: frame.requestId, result: { case: "challenge", value: { challenge: new Uint8Array(32) } } } } });
  });
  const sleeps: number[] = [];
  let failNext = 1; // the first reconnect attempt fails to open
  const stopped = new Promise<unknown>((resolve) => {
    const reconnector = new Reconnector({
      connect: () => {
        if (server.sockets.length === 1 && failNext-- > 0) return Promise.reject(new ConnectionError("ConnectFailed", "refused"));
        return Connection.open({ url: "ws://x/v1/ws", socketFactory: server.factory });
      },
      setUp: async (c) => {
        await c.call({ case: "challenge", value: {} }, "challenge");
      },
      sleep: async (ms) => {
        sleeps.push(ms);
      },
      backoff: { initialMs: 100, random: () => 0 },
      onUp: () => {
        const socket = server.sockets.at(-1)!;
        // First connection: lost (1006). Second: shutdown with retry_after. Third: device removed (fatal).
        queueMicrotask(() => {
          if (reconnector.connections === 1) socket.serverClose(1006);
          else if (reconnector.connections === 2) {
            socket.serve({ kind: { case: "closing", value: { code: ErrorCode.UNAVAILABLE, message: "bye", retryAfterMs: 1000n } } });
            socket.serverClose(4051);
          } else socket.serverClose(4016);
        });
      },
      onStop: resolve,
    });
    reconnector.start();
  });
  const reason = await stopped;
  assert.ok(reason instanceof ConnectionError && reason.code === ErrorCode.DEVICE_REMOVED);
  // Lost → 50 ms (attempt 0), open refused → 100 ms (attempt 1); after the second connection was up, attempt resets: max(50, 1000).
  assert.deepEqual(sleeps, [50, 100, 1000]);
  assert.equal(server.sockets.length, 3);
  for (const socket of server.sockets) assert.equal(socket.sent.filter((f) => f.request.case === "challenge").length, 1);
});

test("a server that never answers Hello fails the open after helloTimeoutMs and the socket is closed", async () => {
  let socket: FakeSocket | undefined;
  const factory = (url: string, protocol: string) => (socket = new FakeSocket(url, protocol));
  await assert.rejects(Connection.open({ url: "ws://x/v1/ws", socketFactory: factory, helloTimeoutMs: 20 }), (e) => e instanceof ConnectionError && e.kind === "ConnectFailed");
  assert.equal(socket?.closedWith, 1000);
});

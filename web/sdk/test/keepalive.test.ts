/**
 * Keep-alive (SPEC §12.13, src/client/connection.ts): against a real `ws`
 * server on loopback that answers Hello and then goes silent (its TCP socket
 * stops being read, so Pings get no Pong), the client notices the silence,
 * closes as `Silent`, and the Reconnector opens a new connection after its
 * backoff. A server that answers Pings keeps an otherwise idle connection up.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { test } from "node:test";

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WebSocketServer, type WebSocket } from "ws";

import { Connection, ConnectionError, type SocketLike } from "../src/client/connection.js";
import { nodeSocketFactory } from "../src/client/node.js";
import { Reconnector } from "../src/client/reconnect.js";
import { ClientFrameSchema, ServerFrameSchema } from "../src/gen/transport_pb.js";

/** A loopback server answering Hello (and `challenge`); `silent` decides whether it then stops reading. */
async function server(silent: () => boolean) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, handleProtocols: (protocols) => [...protocols][0] ?? false });
  await new Promise<void>((resolve) => wss.once("listening", () => resolve()));
  const sockets: WebSocket[] = [];
  const pings = { count: 0 };
  wss.on("connection", (socket) => {
    sockets.push(socket);
    socket.on("ping", () => (pings.count += 1));
    socket.on("message", (data: Buffer) => {
      const frame = fromBinary(ClientFrameSchema, new Uint8Array(data));
      const result =
        frame.request.case === "hello"
          ? ({ case: "hello", value: { version: 1, serverAgent: "fake", challenge: new Uint8Array(32), limits: { maxFrameLen: 65536 } } } as const)
          : ({ case: "challenge", value: { challenge: new Uint8Array(32).fill(1) } } as const);
      socket.send(toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind: { case: "response", value: { requestId: frame.requestId, result } } })));
      // Goes silent: nothing more is read, so the client's Pings are never answered.
      if (frame.request.case === "hello" && silent()) (socket as unknown as { _socket: { pause(): void } })._socket.pause();
    });
  });
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/v1/ws`;
  const close = () => {
    for (const s of sockets) s.terminate();
    return new Promise<void>((resolve) => wss.close(() => resolve()));
  };
  return { url, sockets, pings, close };
}

test("a server that goes silent after Hello: the connection closes as Silent and the Reconnector reconnects with backoff", async () => {
  const fake = await server(() => true);
  const keepAlive = { pingIntervalMs: 40, silenceLimitMs: 200 };
  const errors: ConnectionError[] = [];
  const sleeps: number[] = [];
  const started = Date.now();
  const ups: number[] = [];
  const reconnector = new Reconnector({
    connect: () => Connection.open({ url: fake.url, socketFactory: nodeSocketFactory(), keepAlive }),
    setUp: (connection) => {
      connection.onClose((error) => errors.push(error));
      return Promise.resolve();
    },
    backoff: { initialMs: 50, random: () => 0 },
    sleep: (ms) => {
      sleeps.push(ms);
      return new Promise((resolve) => setTimeout(resolve, ms));
    },
    onUp: () => ups.push(Date.now() - started),
  });
  reconnector.start();
  while (reconnector.connections < 2) await new Promise((resolve) => setTimeout(resolve, 20));
  reconnector.stop();
  await fake.close();
  assert.equal(errors[0]?.kind, "Silent");
  assert.equal(sleeps[0], 25, "the first reconnect waits the backoff (50 ms, jitter 0.5)");
  assert.ok(ups[1]! - ups[0]! >= 200, `the silence limit passed before the reconnect (${ups[1]! - ups[0]!} ms)`);
  assert.ok(fake.sockets.length >= 2);
});

test("a server that answers Pings keeps an idle connection up past the silence limit; the client pinged", async () => {
  const fake = await server(() => false);
  const connection = await Connection.open({ url: fake.url, socketFactory: nodeSocketFactory(), keepAlive: { pingIntervalMs: 40, silenceLimitMs: 200 } });
  await new Promise((resolve) => setTimeout(resolve, 600));
  assert.equal(connection.closed, false, String(connection.closedError));
  assert.ok(fake.pings.count >= 5, `pings seen by the server: ${fake.pings.count}`);
  connection.close();
  await fake.close();
});

test("a socket without ping (a browser WebSocket) probes with a challenge request; unanswered it closes as Silent", async () => {
  const fake = await server(() => false);
  // The browser's view of the same socket: no ping, no control-frame events.
  const browserLike = (url: string, protocol: string): SocketLike => {
    const socket = nodeSocketFactory()(url, protocol) as SocketLike & { ping?: unknown; on?: unknown; terminate?: unknown };
    return new Proxy(socket, {
      get: (target, key) => (key === "ping" || key === "on" || key === "terminate" ? undefined : Reflect.get(target, key)),
      set: (target, key, value) => Reflect.set(target, key, value),
    });
  };
  const connection = await Connection.open({ url: fake.url, socketFactory: browserLike, keepAlive: { pingIntervalMs: 40, silenceLimitMs: 200 } });
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(connection.closed, false, "answered probes keep it up");
  assert.deepEqual(connection.challenge, new Uint8Array(32).fill(1), "the probe's challenge replaced the old one");
  (fake.sockets[0] as unknown as { _socket: { pause(): void } })._socket.pause();
  const error = await new Promise<ConnectionError>((resolve) => connection.onClose(resolve));
  assert.equal(error.kind, "Silent");
  await fake.close();
});

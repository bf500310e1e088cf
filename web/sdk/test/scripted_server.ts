/**
 * A scripted server for unit tests: a `SocketLike` whose every request but
 * `Hello` (answered with a fixed challenge) gets the response `answer`
 * returns, and the `Connection` over it.
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";

import { Connection, type SocketLike } from "../src/client/connection.js";
import { ClientFrameSchema, ServerFrameSchema, type ClientFrame } from "../src/gen/transport_pb.js";

/** The result of a response frame, as `answer` gives it. */
export type Result = NonNullable<Extract<MessageInitShape<typeof ServerFrameSchema>["kind"], { case: "response" }>["value"]>["result"];

/** A socket factory whose server is `answer`; each frame sent is also pushed to `frames`. */
export function scriptedSockets(answer: (frame: ClientFrame) => Result, frames: ClientFrame[] = []): () => SocketLike {
  return (): SocketLike => {
    const socket: SocketLike = {
      binaryType: "",
      onopen: null,
      onmessage: null,
      onclose: null,
      onerror: null,
      send(data: Uint8Array) {
        const frame = fromBinary(ClientFrameSchema, data);
        frames.push(frame);
        const result: Result = frame.request.case === "hello" ? { case: "hello", value: { version: 1, challenge: new Uint8Array(32) } } : answer(frame);
        const kind = { case: "response" as const, value: { requestId: frame.requestId, result } };
        queueMicrotask(() => socket.onmessage?.({ data: toBinary(ServerFrameSchema, create(ServerFrameSchema, { kind })) }));
      },
      close() {},
    };
    queueMicrotask(() => socket.onopen?.({}));
    return socket;
  };
}

/** A connection (no keep-alive) whose server is `answer`; each frame sent is also pushed to `frames`. */
export function scriptedConnection(answer: (frame: ClientFrame) => Result, frames: ClientFrame[] = []): Promise<Connection> {
  return Connection.open({ url: "ws://x/v1/ws", socketFactory: scriptedSockets(answer, frames), keepAlive: false });
}

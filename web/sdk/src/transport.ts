/**
 * Transport messages (SPEC.md §12): the generated `microbot.transport.v1`
 * types of `protocol/proto/transport.proto`, and helpers to frame them (§10).
 * The connection itself (QUIC, WebSocket) is not in this module.
 */
import { create } from "@bufbuild/protobuf";

import { decodeFrameBody, DEFAULT_MAX_FRAME_LEN, encodeMessageFrame } from "./framing.js";
import { ClientFrameSchema, ServerFrameSchema, type ClientFrame, type ServerFrame } from "./gen/transport_pb.js";

export * from "./gen/transport_pb.js";

/** The protocol versions this SDK speaks (§16). */
export const PROTOCOL_VERSIONS: readonly number[] = [1];

/** A framed `ClientFrame{request_id, hello{versions, client_agent}}`, the first frame of a connection. */
export function encodeHelloFrame(requestId: bigint, versions: readonly number[], clientAgent: string): Uint8Array {
  const frame = create(ClientFrameSchema, {
    requestId,
    request: { case: "hello", value: { versions: [...versions], clientAgent } },
  });
  return encodeMessageFrame(ClientFrameSchema, frame, DEFAULT_MAX_FRAME_LEN);
}

/** Frames a `ClientFrame` (§10.1). */
export function encodeClientFrame(frame: ClientFrame, maxFrameLen: number = DEFAULT_MAX_FRAME_LEN): Uint8Array {
  return encodeMessageFrame(ClientFrameSchema, frame, maxFrameLen);
}

/** Decodes a frame body from the client's request stream; `FrameError` (`malformed`) on failure. */
export function decodeClientFrame(body: Uint8Array): ClientFrame {
  return decodeFrameBody(ClientFrameSchema, body);
}

/** Decodes a frame body from the server's request stream; `FrameError` (`malformed`) on failure. */
export function decodeServerFrame(body: Uint8Array): ServerFrame {
  return decodeFrameBody(ServerFrameSchema, body);
}

/**
 * One connection to a Microbot server over a WebSocket (SPEC.md §12.13): the
 * `Hello` exchange, requests correlated by `request_id`, pushes, `closing`
 * frames and close codes 4000 + `ErrorCode`, all mapped to typed errors
 * (§12.8). The socket is behind `SocketLike`, which the browser's
 * `WebSocket` and Node's `ws` both satisfy.
 */
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";

import { ClientFrameSchema, ErrorCode, type Push, type Response, type ServerLimits } from "../gen/transport_pb.js";
import { decodeServerFrame, PROTOCOL_VERSIONS } from "../transport.js";

/** The WebSocket subprotocol the server requires (§12.13). */
export const WS_SUBPROTOCOL = "microbot.v1";

/** The subset of the WebSocket API a connection uses (browser `WebSocket`, Node `ws`). */
export interface SocketLike {
  /** Set to `"arraybuffer"` so binary messages arrive as `ArrayBuffer`. */
  binaryType: string;
  /** Sends one binary message. */
  send(data: Uint8Array): void;
  /** Starts the closing handshake. */
  close(code?: number, reason?: string): void;
  /** Called once the socket is open. */
  onopen: ((event: unknown) => void) | null;
  /** Called for every message. */
  onmessage: ((event: { data: unknown }) => void) | null;
  /** Called once the socket is closed. */
  onclose: ((event: { code: number; reason: string }) => void) | null;
  /** Called on a socket error (a close follows). */
  onerror: ((event: unknown) => void) | null;
  /** Sends a WebSocket Ping (Node `ws`; browsers have none, see `KeepAliveOptions`). */
  ping?: () => void;
  /** Listens for control frames (Node `ws`: `"pong"`, `"ping"`); absent in browsers. */
  on?: (event: string, listener: () => void) => unknown;
  /** Drops the TCP connection at once, without a closing handshake (Node `ws`). */
  terminate?: () => void;
  /** Bytes queued by `send` and not yet written (browser `WebSocket` and Node `ws`); used to bound memory on uploads. */
  readonly bufferedAmount?: number;
}

/**
 * Keep-alive (SPEC.md §12.13): the client pings every `pingIntervalMs` and
 * treats `silenceLimitMs` without anything arriving (message, Ping or Pong)
 * as a lost connection. A socket that cannot ping (a browser `WebSocket`)
 * sends a `challenge` request instead when nothing arrived for
 * `pingIntervalMs` and no request is outstanding.
 */
export interface KeepAliveOptions {
  /** How often to ping (default 10 s). */
  pingIntervalMs?: number;
  /** How long without any incoming data closes the connection as `Silent` (default 45 s). */
  silenceLimitMs?: number;
}

/** The reference client's ping interval (§12.13). */
export const PING_INTERVAL_MS = 10_000;
/** The reference client's silence limit (§12.13). */
export const SILENCE_LIMIT_MS = 45_000;

/** Opens a socket to `url` offering `subprotocol`. */
export type SocketFactory = (url: string, subprotocol: string) => SocketLike;

/** A request as the `request` oneof of a `ClientFrame` (e.g. `{ case: "login", value: {...} }`). */
export type RequestInit = NonNullable<MessageInitShape<typeof ClientFrameSchema>["request"]>;

/** The result oneof of a `Response`, without the error case. */
export type ResponseResult = Exclude<Response["result"], { case: "error" } | { case: undefined }>;

/** The value of the result case `K`. */
export type ResultOf<K extends ResponseResult["case"]> = Extract<ResponseResult, { case: K }>["value"];

/** The server answered a request with `Response.error` (§12.8); the connection stays open. */
export class ServerError extends Error {
  /** The `ErrorCode`. */
  readonly code: ErrorCode;
  /** `Error.retry_after_ms` (0 when not given). */
  readonly retryAfterMs: number;
  /** `Error.device_ids` (send errors, `MISSING_DEVICES`). */
  readonly deviceIds: readonly bigint[];

  /** A `ServerError` of `code`. */
  constructor(code: ErrorCode, message: string, retryAfterMs = 0, deviceIds: readonly bigint[] = []) {
    super(`${ErrorCode[code] ?? code}: ${message}`);
    this.name = "ServerError";
    this.code = code;
    this.retryAfterMs = retryAfterMs;
    this.deviceIds = deviceIds;
  }
}

/** Why a connection is no longer usable. */
export type ConnectionErrorKind =
  /** The socket could not be opened. */
  | "ConnectFailed"
  /** The server closed it (see `code`: the ErrorCode of its `closing` frame or close code − 4000). */
  | "Closed"
  /** The client closed it. */
  | "ClosedByClient"
  /** The server sent something that is not a valid `ServerFrame`, or an answer to no request. */
  | "ProtocolError"
  /** The server picked a version this client does not speak. */
  | "UnsupportedVersion"
  /** Nothing arrived for the keep-alive's silence limit: the connection is presumed lost (§12.13). */
  | "Silent";

/** The connection failed or closed; pending requests are rejected with it. */
export class ConnectionError extends Error {
  /** The kind of failure. */
  readonly kind: ConnectionErrorKind;
  /** The server's `ErrorCode`, when it gave one. */
  readonly code: ErrorCode | undefined;
  /** `retry_after_ms` of the server's `closing` frame, or 0. */
  readonly retryAfterMs: number;

  /** A `ConnectionError` of `kind`. */
  constructor(kind: ConnectionErrorKind, message: string, code?: ErrorCode, retryAfterMs = 0) {
    super(message);
    this.name = "ConnectionError";
    this.kind = kind;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Options of `Connection.open`. */
export interface ConnectOptions {
  /** `wss://host:port/v1/ws` (or `ws://` on loopback). */
  url: string;
  /** Opens the socket. */
  socketFactory: SocketFactory;
  /** `Hello.client_agent` (≤ 128 bytes). */
  clientAgent?: string;
  /** How long to wait for the socket and the `HelloResponse` (default 10 s). */
  helloTimeoutMs?: number;
  /** Keep-alive timing (§12.13), or `false` for none. */
  keepAlive?: KeepAliveOptions | false;
}

interface Pending {
  resolve: (result: ResponseResult) => void;
  reject: (error: Error) => void;
}

/** Turns a message's `data` into bytes; `undefined` for a text message. */
function messageBytes(data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (Array.isArray(data) && data.every((part) => part instanceof Uint8Array)) {
    const parts = data as Uint8Array[];
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
  return undefined;
}

/** A logged-out or logged-in connection: `request` sends one request and resolves with its result. */
export class Connection {
  /** The negotiated version, challenge and limits of the `HelloResponse`. */
  readonly version: number;
  /** `HelloResponse.server_agent`. */
  readonly serverAgent: string;
  /** The server's limits (`max_frame_len`, …). */
  readonly limits: ServerLimits | undefined;
  /** The current login challenge (from `HelloResponse`, replaced by `challenge()`). */
  challenge: Uint8Array;

  private readonly socket: SocketLike;
  private readonly pending = new Map<bigint, Pending>();
  private readonly pushListeners = new Set<(push: Push) => void>();
  private readonly closeListeners = new Set<(error: ConnectionError) => void>();
  private nextId = 1n;
  private closedWith: ConnectionError | undefined;
  private closingFrame: { code: ErrorCode; message: string; retryAfterMs: number } | undefined;
  private lastHeardMs = Date.now();
  private keepAliveTimer: ReturnType<typeof setInterval> | undefined;
  private probing = false;

  private constructor(socket: SocketLike, hello: { version: number; serverAgent: string; challenge: Uint8Array; limits: ServerLimits | undefined }) {
    this.socket = socket;
    this.version = hello.version;
    this.serverAgent = hello.serverAgent;
    this.challenge = hello.challenge;
    this.limits = hello.limits;
  }

  /** Opens a socket, sends `Hello` and waits for `HelloResponse`; `ConnectionError` otherwise. */
  static open(options: ConnectOptions): Promise<Connection> {
    return new Promise<Connection>((resolve, reject) => {
      let socket: SocketLike;
      try {
        socket = options.socketFactory(options.url, WS_SUBPROTOCOL);
      } catch (error) {
        reject(new ConnectionError("ConnectFailed", `cannot open ${options.url}: ${String(error)}`));
        return;
      }
      socket.binaryType = "arraybuffer";
      let settled = false;
      let closingFrame: { code: ErrorCode; message: string; retryAfterMs: number } | undefined;
      const timer = setTimeout(() => fail(new ConnectionError("ConnectFailed", "no HelloResponse in time")), options.helloTimeoutMs ?? 10_000);
      const fail = (error: ConnectionError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(error);
        try {
          socket.close(1000);
        } catch {
          // already closed
        }
      };
      socket.onerror = () => undefined;
      socket.onclose = (event) => {
        if (closingFrame) fail(new ConnectionError("Closed", closingFrame.message, closingFrame.code, closingFrame.retryAfterMs));
        else if (event.code >= 4000 && event.code < 5000) fail(new ConnectionError("Closed", event.reason, event.code - 4000));
        else fail(new ConnectionError("ConnectFailed", `socket closed (${event.code}) before HelloResponse`));
      };
      socket.onopen = () => {
        const frame = create(ClientFrameSchema, {
          requestId: 0n,
          request: { case: "hello", value: { versions: [...PROTOCOL_VERSIONS], clientAgent: options.clientAgent ?? "microbot-ts" } },
        });
        socket.send(toBinary(ClientFrameSchema, frame));
      };
      socket.onmessage = (event) => {
        if (settled) return;
        const bytes = messageBytes(event.data);
        let frame;
        try {
          if (!bytes) throw new Error("text message");
          frame = decodeServerFrame(bytes);
        } catch {
          fail(new ConnectionError("ProtocolError", "the server sent an invalid frame"));
          return;
        }
        if (frame.kind.case === "closing") {
          const e = frame.kind.value;
          closingFrame = { code: e.code, message: e.message, retryAfterMs: Number(e.retryAfterMs) };
          return;
        }
        if (frame.kind.case !== "response" || frame.kind.value.requestId !== 0n) {
          fail(new ConnectionError("ProtocolError", "expected the HelloResponse"));
          return;
        }
        const result = frame.kind.value.result;
        if (result.case === "error") {
          fail(new ConnectionError("Closed", result.value.message, result.value.code, Number(result.value.retryAfterMs)));
          return;
        }
        if (result.case !== "hello" || !PROTOCOL_VERSIONS.includes(result.value.version)) {
          fail(new ConnectionError("UnsupportedVersion", "the server picked a version this client does not speak"));
          return;
        }
        settled = true;
        clearTimeout(timer);
        const connection = new Connection(socket, {
          version: result.value.version,
          serverAgent: result.value.serverAgent,
          challenge: result.value.challenge,
          limits: result.value.limits,
        });
        connection.attach();
        if (options.keepAlive !== false) connection.startKeepAlive(options.keepAlive ?? {});
        resolve(connection);
      };
    });
  }

  private attach(): void {
    this.socket.onmessage = (event) => {
      this.lastHeardMs = Date.now();
      this.onMessage(event.data);
    };
    const heard = () => {
      this.lastHeardMs = Date.now();
    };
    this.socket.on?.("pong", heard);
    this.socket.on?.("ping", heard);
    this.socket.onclose = (event) => {
      const frame = this.closingFrame;
      if (frame) this.finish(new ConnectionError("Closed", frame.message, frame.code, frame.retryAfterMs));
      else if (event.code >= 4000 && event.code < 5000) this.finish(new ConnectionError("Closed", event.reason, event.code - 4000));
      else this.finish(new ConnectionError("Closed", `socket closed (${event.code})`));
    };
  }

  private onMessage(data: unknown): void {
    const bytes = messageBytes(data);
    let frame;
    try {
      if (!bytes) throw new Error("text message");
      frame = decodeServerFrame(bytes);
    } catch {
      this.abort(new ConnectionError("ProtocolError", "the server sent an invalid frame"));
      return;
    }
    switch (frame.kind.case) {
      case "response": {
        const response = frame.kind.value;
        const waiter = this.pending.get(response.requestId);
        if (!waiter) {
          this.abort(new ConnectionError("ProtocolError", "a response to no pending request"));
          return;
        }
        this.pending.delete(response.requestId);
        const result = response.result;
        if (result.case === "error") {
          const e = result.value;
          waiter.reject(new ServerError(e.code, e.message, Number(e.retryAfterMs), e.deviceIds));
        } else if (result.case === undefined) {
          waiter.reject(new ConnectionError("ProtocolError", "a response without a result"));
        } else {
          waiter.resolve(result);
        }
        return;
      }
      case "push":
        for (const listener of this.pushListeners) listener(frame.kind.value);
        return;
      case "closing": {
        const e = frame.kind.value;
        this.closingFrame = { code: e.code, message: e.message, retryAfterMs: Number(e.retryAfterMs) };
        return;
      }
      default:
        return; // an unknown kind from a newer server: ignored (proto3 rules)
    }
  }

  private startKeepAlive(options: KeepAliveOptions): void {
    const interval = options.pingIntervalMs ?? PING_INTERVAL_MS;
    const limit = options.silenceLimitMs ?? SILENCE_LIMIT_MS;
    this.lastHeardMs = Date.now();
    let lastPingMs = Date.now();
    const tick = () => {
      if (this.closedWith) return;
      const silent = Date.now() - this.lastHeardMs;
      if (silent >= limit) {
        this.drop(new ConnectionError("Silent", `nothing from the server for ${silent} ms`));
        return;
      }
      if (this.socket.ping) {
        if (Date.now() - lastPingMs < interval) return;
        lastPingMs = Date.now();
        try {
          this.socket.ping();
        } catch {
          // the close event follows
        }
      } else if (silent >= interval && this.pending.size === 0 && !this.probing) {
        // A browser cannot ping: a request whose answer proves the server is there.
        this.probing = true;
        this.call({ case: "challenge", value: {} }, "challenge")
          .then((answer) => {
            this.challenge = answer.challenge;
          })
          .catch(() => undefined)
          .finally(() => {
            this.probing = false;
          });
      }
    };
    // Checked more often than the ping interval, so a silence is noticed within a fraction of it.
    this.keepAliveTimer = setInterval(tick, Math.max(1, Math.min(interval, Math.floor(limit / 4))));
    const timer = this.keepAliveTimer as { unref?: () => void };
    timer.unref?.();
  }

  /** Ends the connection with `error` and drops the socket without waiting for the peer. */
  private drop(error: ConnectionError): void {
    this.finish(error);
    try {
      if (this.socket.terminate) this.socket.terminate();
      else this.socket.close(1000, "silent");
    } catch {
      // already closed
    }
  }

  private abort(error: ConnectionError): void {
    this.finish(error);
    try {
      this.socket.close(4000 + ErrorCode.PROTOCOL_VIOLATION, "protocol error");
    } catch {
      // already closed
    }
  }

  private finish(error: ConnectionError): void {
    if (this.closedWith) return;
    this.closedWith = error;
    if (this.keepAliveTimer !== undefined) clearInterval(this.keepAliveTimer);
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
    for (const listener of this.closeListeners) listener(error);
  }

  /** Whether the connection is closed (then `closedError` says why). */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Why the connection closed, once it has. */
  get closedError(): ConnectionError | undefined {
    return this.closedWith;
  }

  /** Calls `listener` for every push (§12.7); returns a function that removes it. */
  onPush(listener: (push: Push) => void): () => void {
    this.pushListeners.add(listener);
    return () => this.pushListeners.delete(listener);
  }

  /** Calls `listener` once when the connection closes. */
  onClose(listener: (error: ConnectionError) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Sends one request and resolves with its result; `ServerError` for `Response.error`, `ConnectionError` if the connection ends first. */
  request(request: RequestInit): Promise<ResponseResult> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const requestId = this.nextId++;
    const body = toBinary(ClientFrameSchema, create(ClientFrameSchema, { requestId, request }));
    const max = this.limits?.maxFrameLen ?? 0;
    if (max > 0 && body.length > max) {
      return Promise.reject(new ServerError(ErrorCode.FRAME_TOO_LARGE, `request of ${body.length} bytes over max_frame_len ${max}`));
    }
    return new Promise<ResponseResult>((resolve, reject) => {
      this.pending.set(requestId, { resolve, reject });
      try {
        this.socket.send(body);
      } catch (error) {
        this.pending.delete(requestId);
        reject(new ConnectionError("Closed", `send failed: ${String(error)}`));
      }
    });
  }

  /** Like `request`, and checks that the result is of `kind`; `ConnectionError` (`ProtocolError`) otherwise. */
  async call<K extends ResponseResult["case"]>(request: RequestInit, kind: K): Promise<ResultOf<K>> {
    const result = await this.request(request);
    if (result.case !== kind) throw new ConnectionError("ProtocolError", `expected a ${kind} result, got ${result.case}`);
    return result.value as unknown as ResultOf<K>;
  }

  /**
   * Hands the socket over to raw use (an attachment socket after its login,
   * §12.13): the connection stops reading it, its keep-alive stops, and it
   * counts as closed by the client. Throws while a request is outstanding.
   */
  detach(): SocketLike {
    if (this.pending.size > 0) throw new ConnectionError("ProtocolError", "cannot detach with requests outstanding");
    if (this.closedWith) throw this.closedWith;
    this.finish(new ConnectionError("ClosedByClient", "detached for raw use"));
    this.socket.onmessage = null;
    this.socket.onclose = null;
    return this.socket;
  }

  /** Closes the connection cleanly (a client Close, §12.13); pending requests are rejected. */
  close(): void {
    this.finish(new ConnectionError("ClosedByClient", "closed by the client"));
    try {
      this.socket.close(1000, "bye");
    } catch {
      // already closed
    }
  }
}

/**
 * The bridge protocol between a miniapp (in a sandboxed iframe) and its host
 * (the chat client): the message shapes, their validation and the encoding
 * of app updates as `MiniappEvent` payloads (SPEC.md §11.9).
 *
 * Every message crossing the bridge is an object tagged with
 * `bridge: "microbot-miniapp/1"`. The app sends requests (`getMembers`,
 * `getState`, `propose`); the host answers each with a response of the same
 * `id` and pushes `update`s as members' events arrive. Anything else —
 * wrong tag, unknown kind or method, a field of the wrong type, a value that
 * is not plain JSON, an update over 16 384 bytes — is a `BridgeError`; the
 * receiving side ignores the message (answering with an error response
 * where it can name the request), and never crashes.
 *
 * Not owned here: windows and frames (host.ts, app.ts), what an update
 * means (each app), and sending (the host's `send`).
 */

/** The tag every bridge message carries. */
export const BRIDGE_VERSION = "microbot-miniapp/1";
/** The longest encoded update (a `MiniappEvent.payload`, SPEC.md §11.2). */
export const MAX_UPDATE_BYTES = 16_384;
/** How deep JSON may nest in an update. */
export const MAX_JSON_DEPTH = 32;
/** The longest summary an app may ask the user to confirm, in characters. */
export const MAX_SUMMARY_LEN = 200;

/** A plain JSON value: what updates are made of. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A member of the chat the app runs in. */
export interface Member {
  /** The account name. */
  username: string;
  /** What to show (the display name; the username where none is known). */
  displayName: string;
  /** True for the member this copy of the app runs for. */
  self: boolean;
}

/** One event of the instance: an update and the member who sent it (the host's word, never the payload's). */
export interface MiniappUpdate {
  /** The author's username. */
  from: string;
  /** What the app proposed. */
  update: Json;
}

/** What `getState` answers: who the app runs for, and every event of the instance so far, in arrival order. */
export interface StateResult {
  /** This member's username. */
  self: string;
  /** The events so far. */
  updates: MiniappUpdate[];
}

/** What `propose` answers: whether the user confirmed and the event left. */
export interface ProposeResult {
  /** True once sent; false if the user declined. */
  sent: boolean;
}

/** A request of the app. */
export type AppRequest =
  | { method: "getMembers" }
  | { method: "getState" }
  | { method: "propose"; update: Json; summary: string };

/** A message from the app to the host. */
export interface AppMessage {
  /** Always `BRIDGE_VERSION`. */
  bridge: typeof BRIDGE_VERSION;
  /** Always `"request"`. */
  kind: "request";
  /** Chosen by the app; the response repeats it. */
  id: number;
  /** What is asked. */
  request: AppRequest;
}

/** Why a request failed or a message was refused. */
export type BridgeErrorCode =
  /** Not an object of the bridge, or a field of the wrong type. */
  | "malformed"
  /** A `kind` this version does not know. */
  | "unknown_kind"
  /** A request `method` this version does not know. */
  | "unknown_method"
  /** An update whose encoding exceeds `MAX_UPDATE_BYTES`. */
  | "too_large"
  /** The host could not send the event (offline, not a member any more…). */
  | "send_failed";

/** A message from the host to the app. */
export type HostMessage =
  | { bridge: typeof BRIDGE_VERSION; kind: "response"; id: number; ok: true; result: Json }
  | { bridge: typeof BRIDGE_VERSION; kind: "response"; id: number; ok: false; error: { code: BridgeErrorCode; message: string } }
  | { bridge: typeof BRIDGE_VERSION; kind: "update"; update: MiniappUpdate };

/** A bridge message that breaks the protocol, or a request that failed. */
export class BridgeError extends Error {
  /** Which problem. */
  readonly code: BridgeErrorCode;
  /** The request id, when the message named one (so the host can answer it). */
  readonly requestId: number | undefined;

  /** A `BridgeError` with `code`. */
  constructor(code: BridgeErrorCode, message: string, requestId?: number) {
    super(message);
    this.name = "BridgeError";
    this.code = code;
    this.requestId = requestId;
  }
}

const CODES = new Set<string>(["malformed", "unknown_kind", "unknown_method", "too_large", "send_failed"]);

function isRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** True if `value` is plain JSON (finite numbers, plain objects and arrays, at most `MAX_JSON_DEPTH` deep). */
export function isJson(value: unknown, depth = 0): value is Json {
  if (depth > MAX_JSON_DEPTH) return false;
  if (value === null || typeof value === "boolean" || typeof value === "string") return true;
  if (typeof value === "number") return Number.isFinite(value);
  if (Array.isArray(value)) return value.every((v) => isJson(v, depth + 1));
  if (isRecord(value)) return Object.values(value).every((v) => isJson(v, depth + 1));
  return false;
}

function isRequestId(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function header(data: unknown): Record<string, unknown> {
  if (!isRecord(data) || data["bridge"] !== BRIDGE_VERSION) throw new BridgeError("malformed", "not a microbot-miniapp/1 message");
  return data;
}

function checkUpdate(value: unknown, id: number | undefined): Json {
  if (!isJson(value)) throw new BridgeError("malformed", "the update is not plain JSON", id);
  encodeUpdate(value, id);
  return value;
}

/** Validates a message the host received from an app. `BridgeError` if it is not a well-formed request. */
export function parseAppMessage(data: unknown): AppMessage {
  const message = header(data);
  const id = isRequestId(message["id"]) ? message["id"] : undefined;
  if (message["kind"] !== "request") throw new BridgeError("unknown_kind", `unknown kind ${String(message["kind"])}`, id);
  if (id === undefined) throw new BridgeError("malformed", "a request needs a non-negative integer id");
  const request = message["request"];
  if (!isRecord(request)) throw new BridgeError("malformed", "request: not an object", id);
  switch (request["method"]) {
    case "getMembers":
    case "getState":
      return { bridge: BRIDGE_VERSION, kind: "request", id, request: { method: request["method"] } };
    case "propose": {
      const summary = request["summary"];
      if (typeof summary !== "string" || summary.length === 0 || summary.length > MAX_SUMMARY_LEN) {
        throw new BridgeError("malformed", `propose: summary must be 1..=${MAX_SUMMARY_LEN} characters`, id);
      }
      const update = checkUpdate(request["update"], id);
      return { bridge: BRIDGE_VERSION, kind: "request", id, request: { method: "propose", update, summary } };
    }
    default:
      throw new BridgeError("unknown_method", `unknown method ${String(request["method"])}`, id);
  }
}

function parseUpdate(value: unknown): MiniappUpdate {
  if (!isRecord(value) || typeof value["from"] !== "string" || value["from"].length === 0) throw new BridgeError("malformed", "update: needs a from");
  return { from: value["from"], update: checkUpdate(value["update"], undefined) };
}

/** Validates a message an app received from its host. `BridgeError` if it is not a well-formed response or update. */
export function parseHostMessage(data: unknown): HostMessage {
  const message = header(data);
  switch (message["kind"]) {
    case "update":
      return { bridge: BRIDGE_VERSION, kind: "update", update: parseUpdate(message["update"]) };
    case "response": {
      const id = message["id"];
      if (!isRequestId(id)) throw new BridgeError("malformed", "a response needs a non-negative integer id");
      if (message["ok"] === true) {
        if (!isJson(message["result"])) throw new BridgeError("malformed", "response: result is not plain JSON", id);
        return { bridge: BRIDGE_VERSION, kind: "response", id, ok: true, result: message["result"] };
      }
      const error = message["error"];
      if (message["ok"] !== false || !isRecord(error) || typeof error["code"] !== "string" || !CODES.has(error["code"]) || typeof error["message"] !== "string") {
        throw new BridgeError("malformed", "response: neither a result nor a known error", id);
      }
      return { bridge: BRIDGE_VERSION, kind: "response", id, ok: false, error: { code: error["code"] as BridgeErrorCode, message: error["message"] } };
    }
    default:
      throw new BridgeError("unknown_kind", `unknown kind ${String(message["kind"])}`);
  }
}

/** Reads a `getMembers` result. `BridgeError` `malformed` if it is not a list of members. */
export function parseMembers(result: Json): Member[] {
  if (!Array.isArray(result)) throw new BridgeError("malformed", "members: not a list");
  return result.map((m) => {
    if (!isRecord(m) || typeof m["username"] !== "string" || typeof m["displayName"] !== "string" || typeof m["self"] !== "boolean") {
      throw new BridgeError("malformed", "members: an entry is not a member");
    }
    return { username: m["username"], displayName: m["displayName"], self: m["self"] };
  });
}

/** Reads a `getState` result. `BridgeError` `malformed` if it is not one. */
export function parseState(result: Json): StateResult {
  if (!isRecord(result) || typeof result["self"] !== "string" || !Array.isArray(result["updates"])) throw new BridgeError("malformed", "state: not a state");
  return { self: result["self"], updates: result["updates"].map(parseUpdate) };
}

/** Reads a `propose` result. `BridgeError` `malformed` if it is not one. */
export function parsePropose(result: Json): ProposeResult {
  if (!isRecord(result) || typeof result["sent"] !== "boolean") throw new BridgeError("malformed", "propose: not a result");
  return { sent: result["sent"] };
}

/** The `MiniappEvent.payload` of `update`: its UTF-8 JSON. `BridgeError` `too_large` over `MAX_UPDATE_BYTES`. */
export function encodeUpdate(update: Json, requestId?: number): Uint8Array {
  const bytes = new TextEncoder().encode(JSON.stringify(update));
  if (bytes.length > MAX_UPDATE_BYTES) throw new BridgeError("too_large", `the update is ${bytes.length} bytes, the maximum is ${MAX_UPDATE_BYTES}`, requestId);
  return bytes;
}

/** The update a `MiniappEvent.payload` carries. `BridgeError` `malformed` (not UTF-8 JSON) or `too_large`. */
export function decodeUpdate(payload: Uint8Array): Json {
  if (payload.length > MAX_UPDATE_BYTES) throw new BridgeError("too_large", `the payload is ${payload.length} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    throw new BridgeError("malformed", "the payload is not UTF-8 JSON");
  }
  if (!isJson(value)) throw new BridgeError("malformed", "the payload nests too deep");
  return value;
}

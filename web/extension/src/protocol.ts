/**
 * What the popup and the options page say to the service worker over a
 * `chrome.runtime` port, and what it answers. Messages cross a process
 * boundary as JSON, so every request is checked on arrival: a malformed one
 * is a `ProtocolError`, answered as an error, never a crash.
 */
import type { NetState } from "../../app/src/engine.js";

/** One message as the popup shows it. */
export interface MessageView {
  /** Hex message id (or a local id for group events). */
  id: string;
  from: string;
  mine: boolean;
  text: string;
  sentAtMs: number;
  /** Own messages: queued, sent (accepted by the server) or read. */
  status?: "queued" | "sent" | "read";
  edited: boolean;
  deleted: boolean;
  /** A line about a group (joined, renamed, …). */
  event: boolean;
  /** Set for a file (the popup names it; the web app downloads it). */
  fileName?: string;
}

/** One conversation as the popup lists it. */
export interface ConversationView {
  /** The engine's key: the peer's name, or `#` + hex group id. */
  key: string;
  /** The peer's name or the group's name. */
  title: string;
  group: boolean;
  /** False for a group this account has left. */
  canWrite: boolean;
  unread: number;
  /** Time of the last message (ms), for ordering. */
  lastAtMs: number;
  /** The latest messages, oldest first. */
  messages: MessageView[];
}

/** Everything the popup renders. */
export type View =
  | { signedIn: false; server: string }
  | { signedIn: true; server: string; username: string; net: NetState; netProblem?: string; pending: number; conversations: ConversationView[] };

/** What a page asks the service worker to do. */
export type Request =
  | { kind: "signIn"; username: string; password: string; code: string }
  | { kind: "send"; peer: string; text: string }
  | { kind: "read"; peer: string }
  | { kind: "addContact"; name: string }
  | { kind: "signOut" };

/** A request with the number its answer carries. */
export interface RequestEnvelope {
  id: number;
  request: Request;
}

/** What the service worker sends to a page. */
export type Reply = { type: "view"; view: View } | { type: "done"; id: number; error?: string };

/** A request that is not one of `Request`'s shapes. */
export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** The longest text the popup sends (the SDK's and CLI's limit for one text message). */
export const MAX_TEXT_BYTES = 65_536;

function field(value: Record<string, unknown>, name: string, maxLength = 256): string {
  const v = value[name];
  if (typeof v !== "string") throw new ProtocolError(`${name} is not a string`);
  if (v.length > maxLength) throw new ProtocolError(`${name} is too long`);
  return v;
}

function nonEmpty(value: Record<string, unknown>, name: string): string {
  const v = field(value, name).trim();
  if (!v) throw new ProtocolError(`${name} is empty`);
  return v;
}

/** Checks a message received on the port; throws `ProtocolError` when it is not a `RequestEnvelope`. */
export function parseRequest(raw: unknown): RequestEnvelope {
  if (typeof raw !== "object" || raw === null) throw new ProtocolError("not an object");
  const envelope = raw as Record<string, unknown>;
  const id = envelope["id"];
  if (typeof id !== "number" || !Number.isSafeInteger(id)) throw new ProtocolError("id is not an integer");
  const body = envelope["request"];
  if (typeof body !== "object" || body === null) throw new ProtocolError("request is not an object");
  const r = body as Record<string, unknown>;
  switch (r["kind"]) {
    case "signIn": {
      const code = field(r, "code").replace(/\s/g, "");
      if (!/^\d{6}$/.test(code)) throw new ProtocolError("code is not 6 digits");
      return { id, request: { kind: "signIn", username: nonEmpty(r, "username"), password: field(r, "password", 1024), code } };
    }
    case "send": {
      const text = field(r, "text", MAX_TEXT_BYTES);
      if (!text.trim()) throw new ProtocolError("text is empty");
      if (new TextEncoder().encode(text).length > MAX_TEXT_BYTES) throw new ProtocolError("text is too long");
      return { id, request: { kind: "send", peer: nonEmpty(r, "peer"), text } };
    }
    case "read":
      return { id, request: { kind: "read", peer: nonEmpty(r, "peer") } };
    case "addContact":
      return { id, request: { kind: "addContact", name: nonEmpty(r, "name") } };
    case "signOut":
      return { id, request: { kind: "signOut" } };
    default:
      throw new ProtocolError("unknown request kind");
  }
}

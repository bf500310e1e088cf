/**
 * The app side of the bridge: the tiny API a miniapp is written against.
 *
 * ```ts
 * const bridge = connect();
 * const members = await bridge.getMembers();
 * bridge.onUpdate(({ from, update }) => apply(from, update));
 * for (const u of (await bridge.getState()).updates) apply(u.from, u.update);
 * await bridge.propose({ t: "vote", c: 3, option: 1 }, "Vote for “Tea”");
 * ```
 *
 * Messages are accepted only from the parent window and the host's origin,
 * and validated (`parseHostMessage`); anything else is ignored and reported
 * to `onError`. An update may be seen twice (in `getState` and `onUpdate`
 * when they race): apps merge updates idempotently, in any order.
 */
import {
  BRIDGE_VERSION,
  BridgeError,
  parseHostMessage,
  parseMembers,
  parsePropose,
  parseState,
  type AppMessage,
  type AppRequest,
  type Json,
  type Member,
  type MiniappUpdate,
  type ProposeResult,
  type StateResult,
} from "./protocol.js";
import type { BridgeMessageEvent, MessageSource, MessageTarget } from "./host.js";

/** How `connect` finds its host (defaults: the browser's `window`, `window.parent`, the origin the host wrote into the document). */
export interface ConnectOptions {
  /** The app's window (its `message` events). */
  window?: MessageSource;
  /** The host's window. */
  parent?: MessageTarget;
  /** The host's origin. */
  hostOrigin?: string;
  /** Told about every refused message (never thrown). */
  onError?(error: BridgeError): void;
}

/** A miniapp's connection to its host. */
export interface MiniappClient {
  /** The chat's members and their display names. */
  getMembers(): Promise<Member[]>;
  /** Who the app runs for and every event of the instance so far. */
  getState(): Promise<StateResult>;
  /** Calls `callback` with each event as it arrives (ours included, once sent). Returns an unsubscribe function. */
  onUpdate(callback: (update: MiniappUpdate) => void): () => void;
  /** Asks the user to send `update` (described by `summary`) to the chat; resolves `{ sent }`. `BridgeError` if refused or not sent. */
  propose(update: Json, summary: string): Promise<ProposeResult>;
  /** Stops listening. */
  close(): void;
}

interface BrowserGlobals {
  window: MessageSource & { parent: MessageTarget };
  document: { documentElement: { dataset: Record<string, string | undefined> } };
}

/** Connects to the host. */
export function connect(options: ConnectOptions = {}): MiniappClient {
  const globals = globalThis as unknown as Partial<BrowserGlobals>;
  const win = options.window ?? globals.window;
  const parent = options.parent ?? globals.window?.parent;
  const hostOrigin = options.hostOrigin ?? globals.document?.documentElement.dataset["hostOrigin"];
  if (!win || !parent || !hostOrigin) throw new BridgeError("malformed", "no host to connect to (not running in a miniapp frame)");
  let nextId = 0;
  const pending = new Map<number, { resolve: (result: Json) => void; reject: (error: BridgeError) => void }>();
  const listeners = new Set<(update: MiniappUpdate) => void>();
  const listener = (event: BridgeMessageEvent) => {
    if (event.source !== parent) return;
    if (event.origin !== hostOrigin) {
      options.onError?.(new BridgeError("malformed", `a message from origin ${event.origin}, not the host's`));
      return;
    }
    let message;
    try {
      message = parseHostMessage(event.data);
    } catch (error) {
      options.onError?.(error instanceof BridgeError ? error : new BridgeError("malformed", String(error)));
      return;
    }
    if (message.kind === "update") {
      for (const callback of [...listeners]) callback(message.update);
      return;
    }
    const waiting = pending.get(message.id);
    if (!waiting) return;
    pending.delete(message.id);
    if (message.ok) waiting.resolve(message.result);
    else waiting.reject(new BridgeError(message.error.code, message.error.message, message.id));
  };
  win.addEventListener("message", listener);
  const call = (request: AppRequest): Promise<Json> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      const message: AppMessage = { bridge: BRIDGE_VERSION, kind: "request", id, request };
      parent.postMessage(message, hostOrigin);
    });
  return {
    getMembers: async () => parseMembers(await call({ method: "getMembers" })),
    getState: async () => parseState(await call({ method: "getState" })),
    propose: async (update, summary) => parsePropose(await call({ method: "propose", update, summary })),
    onUpdate(callback) {
      listeners.add(callback);
      return () => listeners.delete(callback);
    },
    close() {
      win.removeEventListener("message", listener);
      for (const waiting of pending.values()) waiting.reject(new BridgeError("send_failed", "the bridge was closed"));
      pending.clear();
      listeners.clear();
    },
  };
}

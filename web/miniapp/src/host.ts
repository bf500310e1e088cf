/**
 * The host side of the bridge (used by the chat client): runs one miniapp
 * instance in a sandboxed iframe and answers its requests.
 *
 * - The frame is `sandbox="allow-scripts"` without `allow-same-origin`, so
 *   the app has an opaque origin: no cookies, no storage of the host, no DOM
 *   access to the host. Its document (`miniappDocument`) carries a CSP with
 *   `connect-src 'none'`: the app cannot reach any server, ours included.
 * - Messages are accepted only from the frame's own window (`event.source`)
 *   and the opaque origin `"null"`; each is validated (`parseAppMessage`),
 *   anything malformed is answered with an error (when it names a request)
 *   or ignored, and reported to `onError`.
 * - `propose` never sends on its own: the host asks the user (`confirm`)
 *   with the app's summary and the exact update, and sends only what was
 *   confirmed. The integrator delivers every event of the instance —
 *   its own sent ones included — with `deliver`.
 */
import {
  BRIDGE_VERSION,
  BridgeError,
  encodeUpdate,
  parseAppMessage,
  type HostMessage,
  type Json,
  type Member,
  type MiniappUpdate,
} from "./protocol.js";

/** Where messages to the app go (the frame's `contentWindow`). */
export interface MessageTarget {
  /** `Window.postMessage`. */
  postMessage(message: unknown, targetOrigin: string): void;
}

/** A `message` event as the host reads it. */
export interface BridgeMessageEvent {
  /** The sender's origin (`"null"` for a sandboxed app). */
  origin: string;
  /** The sending window. */
  source: unknown;
  /** The message. */
  data: unknown;
}

/** The host window's listener registration (a `Window` in the browser). */
export interface MessageSource {
  /** `addEventListener("message", …)`. */
  addEventListener(type: "message", listener: (event: BridgeMessageEvent) => void): void;
  /** `removeEventListener("message", …)`. */
  removeEventListener(type: "message", listener: (event: BridgeMessageEvent) => void): void;
}

/** What the user is asked before an event is sent. */
export interface SendRequest {
  /** The app's own words for the event (e.g. "Vote for “Tea”"). */
  summary: string;
  /** The exact update that would be sent. */
  update: Json;
}

/** How a host is wired to its chat. */
export interface HostOptions {
  /** The frame's window (`iframe.contentWindow`). */
  target: MessageTarget;
  /** The window whose `message` events carry the app's requests. */
  window: MessageSource;
  /** The origin the app's messages must come from: `"null"` for a sandboxed frame without `allow-same-origin`. */
  appOrigin?: string;
  /** This member's username. */
  self: string;
  /** The chat's members now. */
  members(): Member[];
  /** Every event of the instance so far, in arrival order. */
  updates(): MiniappUpdate[];
  /** Asks the user whether to send; resolves true to send. */
  confirm(request: SendRequest): Promise<boolean>;
  /** Sends the confirmed event (end-to-end encrypted, as a `MiniappEvent`). Rejects if it could not be sent. */
  send(payload: Uint8Array, update: Json): Promise<void>;
  /** Told about every refused message (never thrown). */
  onError?(error: BridgeError): void;
}

/** One running miniapp instance, seen from the host. */
export class MiniappHost {
  private readonly listener: (event: BridgeMessageEvent) => void;
  private closed = false;

  /** Starts listening to the app in `options.target`. */
  constructor(private readonly options: HostOptions) {
    this.listener = (event) => this.receive(event);
    options.window.addEventListener("message", this.listener);
  }

  /** Hands one event of the instance (from any member, ours included) to the app. */
  deliver(update: MiniappUpdate): void {
    this.post({ bridge: BRIDGE_VERSION, kind: "update", update });
  }

  /** Stops answering the app. */
  close(): void {
    this.closed = true;
    this.options.window.removeEventListener("message", this.listener);
  }

  private post(message: HostMessage): void {
    if (this.closed) return;
    // The app's origin is opaque, so no narrower target origin can name it;
    // the frame's window is the only recipient.
    this.options.target.postMessage(message, "*");
  }

  private refuse(error: BridgeError): void {
    this.options.onError?.(error);
    if (error.requestId !== undefined) {
      this.post({ bridge: BRIDGE_VERSION, kind: "response", id: error.requestId, ok: false, error: { code: error.code, message: error.message } });
    }
  }

  private receive(event: BridgeMessageEvent): void {
    if (this.closed || event.source !== this.options.target) return;
    if (event.origin !== (this.options.appOrigin ?? "null")) {
      this.options.onError?.(new BridgeError("malformed", `a message from origin ${event.origin}, not the app's`));
      return;
    }
    let message;
    try {
      message = parseAppMessage(event.data);
    } catch (error) {
      this.refuse(error instanceof BridgeError ? error : new BridgeError("malformed", String(error)));
      return;
    }
    const { id, request } = message;
    const answer = (result: Json) => this.post({ bridge: BRIDGE_VERSION, kind: "response", id, ok: true, result });
    switch (request.method) {
      case "getMembers":
        answer(this.options.members().map((m) => ({ username: m.username, displayName: m.displayName, self: m.self })));
        return;
      case "getState":
        answer({ self: this.options.self, updates: this.options.updates().map((u) => ({ from: u.from, update: u.update })) });
        return;
      case "propose":
        void this.propose(id, request.update, request.summary);
        return;
    }
  }

  private async propose(id: number, update: Json, summary: string): Promise<void> {
    let payload: Uint8Array;
    try {
      payload = encodeUpdate(update, id);
    } catch (error) {
      this.refuse(error instanceof BridgeError ? error : new BridgeError("malformed", String(error), id));
      return;
    }
    let confirmed = false;
    try {
      confirmed = await this.options.confirm({ summary, update });
    } catch {
      confirmed = false;
    }
    if (!confirmed) {
      this.post({ bridge: BRIDGE_VERSION, kind: "response", id, ok: true, result: { sent: false } });
      return;
    }
    try {
      await this.options.send(payload, update);
    } catch (error) {
      this.refuse(new BridgeError("send_failed", error instanceof Error ? error.message : String(error), id));
      return;
    }
    this.post({ bridge: BRIDGE_VERSION, kind: "response", id, ok: true, result: { sent: true } });
  }
}

/** What the app's document is made of. */
export interface DocumentOptions {
  /** Absolute URL of the app's script (a classic script: a module would need CORS from the opaque origin). */
  scriptUrl: string;
  /** Absolute URL of its stylesheet, if any. */
  styleUrl?: string;
  /** The document title. */
  title: string;
  /** The host's origin, which the app checks its messages against. */
  hostOrigin: string;
}

const escapeAttr = (s: string) => s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * The `srcdoc` of a miniapp frame: the app's script and style only, and a
 * CSP that forbids every connection (`connect-src 'none'`), forms, frames,
 * objects and any other script. Use it with `sandbox="allow-scripts"`.
 */
export function miniappDocument(options: DocumentOptions): string {
  const sources = [new URL(options.scriptUrl).origin, ...(options.styleUrl ? [new URL(options.styleUrl).origin] : [])];
  const origins = [...new Set(sources)].join(" ");
  const csp = `default-src 'none'; script-src ${origins}; style-src ${origins}; img-src data:; connect-src 'none'; form-action 'none'; frame-src 'none'; object-src 'none'; base-uri 'none'`;
  return [
    "<!doctype html>",
    `<html lang="en" data-host-origin="${escapeAttr(options.hostOrigin)}">`,
    "<head>",
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${escapeAttr(csp)}">`,
    `<title>${escapeAttr(options.title)}</title>`,
    options.styleUrl ? `<link rel="stylesheet" href="${escapeAttr(options.styleUrl)}">` : "",
    "</head>",
    '<body><main id="app"></main>',
    `<script src="${escapeAttr(options.scriptUrl)}"></script>`,
    "</body>",
    "</html>",
  ].join("\n");
}

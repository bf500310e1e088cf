/**
 * The one server this build of the extension talks to. `build.mjs` writes
 * its origin into the bundle (`MICROBOT_SERVER`) and into the manifest,
 * where it is the only host permission and the only `connect-src` of the
 * content security policy: the extension can reach no other server.
 */

/** Replaced by `build.mjs` (esbuild `define`) with the configured origin, e.g. `"https://chat.example.org:7447"`. */
declare const MICROBOT_SERVER: string;

/** The configured server's origin (`https://host:port`). */
export const SERVER_ORIGIN: string = MICROBOT_SERVER;

/** The WebSocket endpoint (SPEC.md §12.13) of the server at `origin`: `wss://` for `https://`, `ws://` for `http://`. */
export function webSocketUrl(origin: string): string {
  const url = new URL(origin);
  return `${url.protocol === "http:" ? "ws:" : "wss:"}//${url.host}/v1/ws`;
}

/** The name of the `chrome.runtime` port the extension's pages open to the service worker. */
export const PORT_NAME = "microbot";

/** Keys in `chrome.storage.local`. */
export const STORAGE = {
  /** The signed-in username (its keys are in IndexedDB `microbot:<name>`). */
  user: "user",
  /** `true` when notifications may show the message text (off unless the user turns it on). */
  showText: "showText",
  /** A username whose keys and history are deleted at the next start (sign-out). */
  forget: "forget",
} as const;

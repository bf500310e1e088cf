/**
 * The pages' side of the port to the service worker: requests that resolve
 * with the worker's answer, and the latest `View` as it changes. A port the
 * browser closed (the worker restarted) is opened again on the next request.
 */
import { PORT_NAME } from "./config.js";
import type { Reply, Request, View } from "./protocol.js";

/** A request the worker refused or could not carry out; the message is in words for the person. */
export class RequestFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RequestFailed";
  }
}

/** A connection of one page to the service worker. */
export class WorkerPort {
  private port: chrome.runtime.Port | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();

  /** `onView` receives every view the worker sends. */
  constructor(private readonly onView: (view: View) => void) {
    this.open();
  }

  private open(): chrome.runtime.Port {
    const port = chrome.runtime.connect({ name: PORT_NAME });
    port.onMessage.addListener((reply: Reply) => {
      if (reply.type === "view") {
        this.onView(reply.view);
        return;
      }
      const waiter = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      if (reply.error) waiter?.reject(new RequestFailed(reply.error));
      else waiter?.resolve();
    });
    port.onDisconnect.addListener(() => {
      if (this.port === port) this.port = undefined;
      for (const waiter of this.waiting.values()) waiter.reject(new RequestFailed("The extension restarted. Try again."));
      this.waiting.clear();
    });
    this.port = port;
    return port;
  }

  /** Sends `request`; resolves when the worker has done it, rejects with `RequestFailed`. */
  request(request: Request): Promise<void> {
    const port = this.port ?? this.open();
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      port.postMessage({ id, request });
    });
  }
}

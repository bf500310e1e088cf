/**
 * Miniapps in group chats (SPEC.md §11.9), the app's side without DOM: the
 * sample apps the app offers, each instance's events as plain data kept in
 * its chat message (so they are saved with the history), live listeners of
 * running frames, and the queue of "send this?" questions the user answers
 * one at a time.
 */
import { decodeUpdate, type Json, type MiniappUpdate, type SendRequest } from "@microbot/miniapp";

/** The miniapps this app can run: app id → what the user sees. */
export const MINIAPPS: Record<string, { name: string }> = {
  poll: { name: "Poll" },
  checklist: { name: "Checklist" },
};

/** One instance of a miniapp, as stored in its chat message. */
export interface MiniappInstance {
  /** The app id (a key of `MINIAPPS`, or an app this client does not know). */
  appId: string;
  /** Hex of the 16-byte instance id. */
  instance: string;
  /** Who started it (the author of the first event seen, or us). */
  startedBy: string;
  /** Every event so far, in arrival order. */
  updates: MiniappUpdate[];
  /** Hex message ids of the events applied (duplicates are dropped). */
  seen: string[];
}

/** The update in a received payload, or undefined if it is not UTF-8 JSON (then the event is ignored). */
export function readPayload(payload: Uint8Array): Json | undefined {
  try {
    return decodeUpdate(payload);
  } catch {
    return undefined;
  }
}

/** Live frames of instances, told about each new event. */
export class MiniappListeners {
  private readonly byInstance = new Map<string, Set<(update: MiniappUpdate) => void>>();

  /** Calls `listener` with every new event of `instance`; returns the unsubscribe function. */
  listen(instance: string, listener: (update: MiniappUpdate) => void): () => void {
    const set = this.byInstance.get(instance) ?? new Set();
    set.add(listener);
    this.byInstance.set(instance, set);
    return () => set.delete(listener);
  }

  /** Tells the frames of `instance` about `update`. */
  emit(instance: string, update: MiniappUpdate): void {
    for (const listener of [...(this.byInstance.get(instance) ?? [])]) listener(update);
  }
}

/** A question to the user: may this event be sent? */
export interface SendPrompt extends SendRequest {
  /** The app's name. */
  app: string;
  /** Resolves the question. */
  answer(send: boolean): void;
}

/** The questions waiting for the user, answered one at a time in the order asked. */
export class PromptQueue {
  private readonly queue: SendPrompt[] = [];
  private readonly listeners = new Set<() => void>();

  /** The question shown now, if any. */
  get current(): SendPrompt | undefined {
    return this.queue[0];
  }

  /** Asks the user; resolves true to send. */
  ask(app: string, request: SendRequest): Promise<boolean> {
    return new Promise((resolve) => {
      const prompt: SendPrompt = {
        app,
        summary: request.summary,
        update: request.update,
        answer: (send) => {
          const at = this.queue.indexOf(prompt);
          if (at < 0) return;
          this.queue.splice(at, 1);
          this.changed();
          resolve(send);
        },
      };
      this.queue.push(prompt);
      this.changed();
    });
  }

  /** Calls `listener` whenever the current question changes. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

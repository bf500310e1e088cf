/**
 * Edits, deletes and reactions converge (SPEC.md §11.4): the state of one
 * message is a function of the *set* of events received for it, so every
 * device shows the same thing whatever the order and however often an event
 * repeats. `MessageState` is a join-semilattice (`apply`, `merge`); the caller
 * keeps one per (author username, `message_id`) and routes an `Edit` or
 * `Delete` from account A with target T to the state of (A, T) — so only the
 * author's account can edit or delete (rule 1). Pure: no clock, no I/O.
 */
import { type Content, type ReplyTo } from "./gen/content_pb.js";

/** Unsigned lexicographic order of byte strings, a prefix first; −1, 0 or 1. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) {
      return a[i]! < b[i]! ? -1 : 1;
    }
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

const encoder = new TextEncoder();
const cmpBig = (a: bigint, b: bigint): number => (a === b ? 0 : a < b ? -1 : 1);
const cmpText = (a: string, b: string): number => compareBytes(encoder.encode(a), encoder.encode(b));

/** The original `Text` of a message. */
export interface OriginalEvent {
  /** Discriminant. */
  kind: "original";
  /** `Content.sent_at_ms`. */
  sentAtMs: bigint;
  /** `Text.text`. */
  text: string;
  /** `Text.reply_to`, kept whatever the edits. */
  replyTo?: ReplyTo | undefined;
}

/** An `Edit` of the message. */
export interface EditEvent {
  /** Discriminant. */
  kind: "edit";
  /** `Edit.revision`. */
  revision: bigint;
  /** The edit's `Content.sent_at_ms`. */
  sentAtMs: bigint;
  /** The edit's `Content.message_id`. */
  messageId: Uint8Array;
  /** `Edit.text`. */
  text: string;
}

/** A `Delete` of the message. */
export interface DeleteEvent {
  /** Discriminant. */
  kind: "delete";
}

/** One event for one message. */
export type MessageEvent = OriginalEvent | EditEvent | DeleteEvent;

/** What a message event from `content` targets: the message id it applies to, and the event. */
export function messageEventFromContent(content: Content): { target: Uint8Array; event: MessageEvent } | undefined {
  const body = content.body;
  switch (body.case) {
    case "text":
      return { target: content.messageId, event: { kind: "original", sentAtMs: content.sentAtMs, text: body.value.text, replyTo: body.value.replyTo } };
    case "edit":
      return {
        target: body.value.targetMessageId,
        event: { kind: "edit", revision: body.value.revision, sentAtMs: content.sentAtMs, messageId: content.messageId, text: body.value.text },
      };
    case "delete":
      return { target: body.value.targetMessageId, event: { kind: "delete" } };
    default:
      return undefined;
  }
}

function originalOrder(a: OriginalEvent, b: OriginalEvent): number {
  return cmpBig(a.sentAtMs, b.sentAtMs) || cmpText(a.text, b.text);
}

function editOrder(a: EditEvent, b: EditEvent): number {
  return cmpBig(a.revision, b.revision) || cmpBig(a.sentAtMs, b.sentAtMs) || compareBytes(a.messageId, b.messageId) || cmpText(a.text, b.text);
}

/** What a device shows for a message. */
export type MessageView =
  | { kind: "pending" }
  | { kind: "deleted"; hadOriginal: boolean }
  | { kind: "text"; text: string; replyTo: ReplyTo | undefined; edited: boolean };

/** The converged state of one message (rules 2–6 of §11.4). */
export class MessageState {
  private original: OriginalEvent | undefined;
  private edit: EditEvent | undefined;
  private deleted = false;

  /** Adds one event; idempotent, commutative. */
  apply(event: MessageEvent): void {
    switch (event.kind) {
      case "delete":
        this.deleted = true;
        this.edit = undefined;
        return;
      case "original":
        if (this.original === undefined || originalOrder(event, this.original) > 0) {
          this.original = event;
        }
        return;
      case "edit":
        if (!this.deleted && (this.edit === undefined || editOrder(event, this.edit) > 0)) {
          this.edit = event;
        }
        return;
    }
  }

  /** Joins another device's state for the same message. */
  merge(other: MessageState): void {
    if (other.original !== undefined) {
      this.apply(other.original);
    }
    if (other.edit !== undefined) {
      this.apply(other.edit);
    }
    if (other.deleted) {
      this.apply({ kind: "delete" });
    }
  }

  /** The highest revision seen (0: the original); an editor sends this + 1. */
  latestRevision(): bigint {
    return this.edit?.revision ?? 0n;
  }

  /** What to show: nothing before the original, "deleted" after a delete, else the winning text. */
  view(): MessageView {
    if (this.deleted) {
      return { kind: "deleted", hadOriginal: this.original !== undefined };
    }
    if (this.original === undefined) {
      return { kind: "pending" };
    }
    return { kind: "text", text: this.edit?.text ?? this.original.text, replyTo: this.original.replyTo, edited: this.edit !== undefined };
  }
}

/** Reactions of one reactor to one message with one emoji (§11.4, last paragraph). */
export class ReactionState {
  private best: { sentAtMs: bigint; messageId: Uint8Array; remove: boolean } | undefined;

  /** Adds one `Reaction` (its `Content.sent_at_ms`, `Content.message_id` and `remove`). */
  apply(sentAtMs: bigint, messageId: Uint8Array, remove: boolean): void {
    const b = this.best;
    if (b === undefined || cmpBig(sentAtMs, b.sentAtMs) > 0 || (sentAtMs === b.sentAtMs && compareBytes(messageId, b.messageId) > 0)) {
      this.best = { sentAtMs, messageId, remove };
    }
  }

  /** True when the reaction is present. */
  get present(): boolean {
    return this.best !== undefined && !this.best.remove;
  }
}

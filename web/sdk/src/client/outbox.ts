/**
 * The offline outbox (as the Rust SDK's client/src/outbox.rs and sync.rs):
 * every send is first stored, in order, and leaves when a connection is up.
 * `queue*` resolves only once the entry is durable in the store, so a client
 * restarted in between neither loses nor repeats it; `drain` sends entries
 * oldest first and deletes each right after the server accepted it. A
 * destination whose safety number changed is skipped (its sends wait)
 * without holding up the others; a send the server refuses for good is
 * dropped and reported. A lost connection stops the drain; the next
 * connection (`setConnection`, e.g. from a `Reconnector`'s `onUp`) resumes it.
 *
 * Each entry keeps its `Content` with its message id fixed at queue time, so
 * what arrives is the same message whichever attempt delivered it. Files are
 * queued by reference (`file.ref`, resolved by `resolveFile` when sent: a
 * path in Node, a key of the application's own Blob store in a browser) and
 * uploaded when their turn comes.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import { ContentSchema, encodeContent, type Content } from "../content.js";
import type { Rng } from "../rng.js";
import { attachmentContent, uploadAttachment, type AttachmentSource, type TransferOptions, type UploadMetadata } from "./attachments.js";
import { ConnectionError, ServerError, type Connection } from "./connection.js";
import { MessengerError, type Messenger } from "./messenger.js";

/** A file queued by reference. */
export interface QueuedFile extends UploadMetadata {
  /** What `resolveFile` turns into the bytes. */
  ref: string;
}

/** One queued send. */
export interface OutboxEntry {
  /** Position in the queue (increasing). */
  seq: number;
  /** The recipient's username. */
  to: string;
  /** The `Content` in protobuf form, unpadded (for a file: only its message id and time; the body becomes the pointer once uploaded). */
  content: Uint8Array;
  /** Set for a file send. */
  file?: QueuedFile;
}

/** Where queued sends are kept; an entry is durable once the promise resolves. */
export interface OutboxStore {
  /** Appends an entry at the end of the queue; resolves with its `seq` once stored durably. */
  outboxAppend(entry: Omit<OutboxEntry, "seq">): Promise<number>;
  /** The queued entries, oldest first. */
  outboxEntries(): OutboxEntry[];
  /** Removes entry `seq` (resolves once durable). */
  outboxDelete(seq: number): Promise<void>;
}

/** What happened to a queued send. */
export type OutboxEvent =
  | { kind: "sent"; messageId: Uint8Array; to: string; serverTimestampMs: bigint }
  | { kind: "failed"; messageId: Uint8Array; to: string; error: Error };

/** Options of `Outbox`. */
export interface OutboxOptions {
  /** Turns a queued file's `ref` into its bytes (required to queue files). */
  resolveFile?: (ref: string) => Promise<AttachmentSource>;
  /** How files are uploaded (without `connection`, which is the drain's). */
  transfer?: Omit<TransferOptions, "connection">;
  /** Called for each entry that left or was dropped. */
  onEvent?: (event: OutboxEvent) => void;
}

/** The outbox of one device. */
export class Outbox {
  private connection: Connection | undefined;
  private draining: Promise<void> | undefined;
  private again = false;

  /** An outbox over `store` sending with `messenger`. */
  constructor(
    private readonly store: OutboxStore,
    private readonly messenger: Messenger,
    private readonly rng: Rng,
    private readonly options: OutboxOptions = {},
  ) {}

  /** Queues a text message; resolves with its message id once durable (then it is sent when connected). */
  queueText(to: string, text: string): Promise<Uint8Array> {
    return this.queueContent(to, create(ContentSchema, { messageId: this.rng.fill(16), sentAtMs: BigInt(Date.now()), body: { case: "text", value: { text } } }));
  }

  /** Queues a `Content`; resolves with its message id once durable. */
  async queueContent(to: string, content: Content): Promise<Uint8Array> {
    encodeContent(content); // refused (ContentError) before anything is stored, as the Rust SDK validates first
    await this.store.outboxAppend({ to, content: toBinary(ContentSchema, content) });
    this.kick();
    return content.messageId;
  }

  /** Queues a file by reference; resolves with its message id once durable. Needs `resolveFile` and `transfer`. */
  async queueFile(to: string, file: QueuedFile): Promise<Uint8Array> {
    if (!this.options.resolveFile || !this.options.transfer) throw new TypeError("queueFile needs the resolveFile and transfer options");
    const content = create(ContentSchema, { messageId: this.rng.fill(16), sentAtMs: BigInt(Date.now()) });
    await this.store.outboxAppend({ to, content: toBinary(ContentSchema, content), file });
    this.kick();
    return content.messageId;
  }

  /** How many sends wait. */
  get pending(): number {
    return this.store.outboxEntries().length;
  }

  /** The connection to send on (`undefined` while offline); a new one starts a drain. */
  setConnection(connection: Connection | undefined): void {
    this.connection = connection && !connection.closed ? connection : undefined;
    if (this.connection) {
      const current = this.connection;
      current.onClose(() => {
        if (this.connection === current) this.connection = undefined;
      });
    }
    this.kick();
  }

  /** Resolves when no drain is running (the queue is empty, or offline, or blocked). */
  async idle(): Promise<void> {
    while (this.draining) await this.draining;
  }

  private kick(): void {
    if (!this.connection) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = (async () => {
      try {
        do {
          this.again = false;
          const connection = this.connection;
          if (!connection) break;
          await this.drain(connection);
        } while (this.again);
      } finally {
        this.draining = undefined;
      }
    })();
  }

  /** Sends queued entries in order on `connection`; stops at a lost connection (entries stay). */
  private async drain(connection: Connection): Promise<void> {
    const blocked = new Set<string>();
    for (const entry of this.store.outboxEntries()) {
      if (blocked.has(entry.to)) continue;
      if (connection.closed) return;
      let content: Content;
      try {
        content = fromBinary(ContentSchema, entry.content);
      } catch (error) {
        await this.store.outboxDelete(entry.seq);
        this.options.onEvent?.({ kind: "failed", messageId: new Uint8Array(0), to: entry.to, error: error as Error });
        continue;
      }
      try {
        if (entry.file) {
          const source = await this.options.resolveFile!(entry.file.ref);
          const pointer = await uploadAttachment({ ...this.options.transfer!, connection: () => Promise.resolve(connection) }, this.rng, source, entry.file);
          const withFile = attachmentContent(this.rng, pointer);
          withFile.messageId = content.messageId;
          withFile.sentAtMs = content.sentAtMs;
          content = withFile;
        }
        const serverTimestampMs = await this.messenger.sendContent(connection, entry.to, content);
        await this.store.outboxDelete(entry.seq);
        this.options.onEvent?.({ kind: "sent", messageId: content.messageId, to: entry.to, serverTimestampMs });
      } catch (error) {
        if (error instanceof ConnectionError) return; // offline again: the entry waits for the next connection
        if (error instanceof MessengerError && error.kind === "IdentityChanged") {
          blocked.add(entry.to);
          continue;
        }
        if (error instanceof ServerError && error.retryAfterMs > 0) {
          // Rate limited or unavailable: the queue waits as the server asked, then drains again.
          const timer = setTimeout(() => this.kick(), error.retryAfterMs) as { unref?: () => void };
          timer.unref?.();
          return;
        }
        await this.store.outboxDelete(entry.seq);
        this.options.onEvent?.({ kind: "failed", messageId: content.messageId, to: entry.to, error: error as Error });
      }
    }
  }
}

/** An `OutboxStore` in memory (bots, tests; nothing survives the process). */
export class MemoryOutbox implements OutboxStore {
  private readonly entries: OutboxEntry[] = [];
  private nextSeq = 1;

  /** {@inheritDoc OutboxStore.outboxAppend} */
  outboxAppend(entry: Omit<OutboxEntry, "seq">): Promise<number> {
    const seq = this.nextSeq++;
    this.entries.push({ ...entry, seq });
    return Promise.resolve(seq);
  }

  /** {@inheritDoc OutboxStore.outboxEntries} */
  outboxEntries(): OutboxEntry[] {
    return [...this.entries];
  }

  /** {@inheritDoc OutboxStore.outboxDelete} */
  outboxDelete(seq: number): Promise<void> {
    const at = this.entries.findIndex((e) => e.seq === seq);
    if (at >= 0) this.entries.splice(at, 1);
    return Promise.resolve();
  }
}

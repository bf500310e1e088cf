/**
 * The conversation history of one account on this browser, in IndexedDB,
 * encrypted at rest: one AES-256-GCM record under a non-extractable
 * WebCrypto key that lives in the same database (script can use it, never
 * read it), a fresh 12-byte IV per write. Writes are coalesced (at most one
 * every 300 ms) and run one at a time.
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { content as c, fromHex, toHex } from "@microbot/sdk";

import type { Conversation } from "./engine.js";

const KEYS = "keys";
const RECORDS = "records";
const KEY_NAME = "history-key";
const RECORD_NAME = "conversations";
const SAVE_DELAY_MS = 300;

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error("IndexedDB request failed"));
  });
}

/** Conversations as JSON-safe data (bytes as hex, pointers as their protobuf bytes; no blob: URLs, no transfers). */
function toStored(conversations: Record<string, Conversation>): unknown {
  return Object.values(conversations).map((conv) => ({
    peer: conv.peer,
    unread: conv.unread,
    group: conv.group ? { ...conv.group, id: toHex(conv.group.id) } : undefined,
    messages: conv.messages
      .filter((m) => !m.id.startsWith("upload-"))
      .map((m) => ({
        ...m,
        file: m.file ? { name: m.file.name, size: m.file.size, type: m.file.type, pointer: m.file.pointer ? toHex(toBinary(c.AttachmentPointerSchema, m.file.pointer)) : undefined } : undefined,
      })),
  }));
}

interface StoredFile {
  name: string;
  size: number;
  type: string;
  pointer?: string;
}

function fromStored(data: unknown): Record<string, Conversation> {
  const out: Record<string, Conversation> = {};
  if (!Array.isArray(data)) return out;
  for (const raw of data as (Omit<Conversation, "group" | "messages"> & { group?: { id: string; name: string; members: string[]; active: boolean }; messages: (Conversation["messages"][number] & { file?: StoredFile })[] })[]) {
    out[raw.peer] = {
      peer: raw.peer,
      unread: raw.unread,
      typingUntil: 0,
      group: raw.group ? { ...raw.group, id: fromHex(raw.group.id) } : undefined,
      messages: raw.messages.map((m) => {
        const stored = m.file as StoredFile | undefined;
        return { ...m, file: stored ? { name: stored.name, size: stored.size, type: stored.type, pointer: stored.pointer ? fromBinary(c.AttachmentPointerSchema, fromHex(stored.pointer)) : undefined } : undefined };
      }),
    };
  }
  return out;
}

/** The encrypted history of one account. */
export class History {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private writing: Promise<void> = Promise.resolve();
  private latest: Record<string, Conversation> | undefined;

  private constructor(
    private readonly db: IDBDatabase,
    private readonly key: CryptoKey,
  ) {}

  /** Opens (or creates) the history database of `username`. */
  static async open(username: string): Promise<History> {
    const open = indexedDB.open(`microbot-history:${username}`, 1);
    open.onupgradeneeded = () => {
      open.result.createObjectStore(KEYS);
      open.result.createObjectStore(RECORDS);
    };
    const db = await request(open);
    let key = (await request(db.transaction(KEYS).objectStore(KEYS).get(KEY_NAME))) as CryptoKey | undefined;
    if (!key) {
      key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
      const tx = db.transaction(KEYS, "readwrite");
      tx.objectStore(KEYS).put(key, KEY_NAME);
      await new Promise<void>((resolve, reject) => {
        tx.oncomplete = () => resolve();
        tx.onerror = () => reject(tx.error ?? new Error("IndexedDB write failed"));
      });
    }
    return new History(db, key);
  }

  /** The stored conversations (empty when there are none or the record does not open). */
  async load(): Promise<Record<string, Conversation>> {
    const record = (await request(this.db.transaction(RECORDS).objectStore(RECORDS).get(RECORD_NAME))) as { iv: Uint8Array; data: ArrayBuffer } | undefined;
    if (!record) return {};
    try {
      const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: record.iv as Uint8Array<ArrayBuffer> }, this.key, record.data);
      return fromStored(JSON.parse(new TextDecoder().decode(plain)));
    } catch (error) {
      console.warn("stored history does not open; starting empty", error);
      return {};
    }
  }

  /** Saves `conversations` soon (coalesced). */
  save(conversations: Record<string, Conversation>): void {
    this.latest = conversations;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const snapshot = this.latest!;
      this.writing = this.writing.then(() => this.write(snapshot)).catch((error) => console.warn("history not saved", error));
    }, SAVE_DELAY_MS);
  }

  private async write(conversations: Record<string, Conversation>): Promise<void> {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const plain = new TextEncoder().encode(JSON.stringify(toStored(conversations)));
    const data = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, this.key, plain);
    const tx = this.db.transaction(RECORDS, "readwrite");
    tx.objectStore(RECORDS).put({ iv, data }, RECORD_NAME);
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error ?? new Error("IndexedDB write failed"));
    });
  }
}

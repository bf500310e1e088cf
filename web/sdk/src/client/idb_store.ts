/// <reference lib="dom" />
/**
 * A browser `ClientStore` (and `OutboxStore`) in IndexedDB, encrypted at
 * rest: every record is sealed with AES-256-GCM under one WebCrypto key that
 * is generated non-extractable and kept in the same database (IndexedDB
 * stores a `CryptoKey` by structured clone; script can use it but never read
 * its bytes). The record's name is the AES-GCM additional data, so a sealed
 * value cannot be moved to another slot. Record names are opaque: a session
 * or a contact is named by HMAC-SHA-256 under a second non-extractable key,
 * so no username is readable on disk. What stays visible: how many records
 * of each kind there are (sessions, contacts, queued sends) and their sizes.
 *
 * `ClientStore` is synchronous: `IdbStore.open` loads and opens everything
 * once, reads come from memory, and every change is written behind (in
 * order); `flush()` resolves once all of them are durable. The outbox's
 * `outboxAppend`/`outboxDelete` resolve only once their write committed.
 * Prekeys change inside the `LocalPreKeys` object the store hands out, so
 * they are written again with every session change and on `flush()`.
 */
import { concat, fromHex, toHex, utf8 } from "../bytes.js";
import { IdentityKeyPair } from "../identity.js";
import { LocalPreKeys } from "../prekeys.js";
import { Session } from "../session.js";
import type { OutboxEntry, OutboxStore } from "./outbox.js";
import type { ClientStore, DeviceRecord } from "./store.js";

const KEYS = "keys";
const RECORDS = "records";
const KEY_NAME = "record-key";
const NAME_KEY_NAME = "name-key";
/** At most this many envelope ids are remembered as seen (the oldest are forgotten). */
export const MAX_SEEN = 10_000;

/** Why the store could not be opened or written. */
export class IdbStoreError extends Error {
  /** An `IdbStoreError`; `cause` is the underlying failure. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "IdbStoreError";
  }
}

/** A sealed record as IndexedDB holds it. */
interface Sealed {
  iv: Uint8Array;
  data: Uint8Array;
}

function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(new IdbStoreError("an IndexedDB request failed", { cause: req.error }));
  });
}

function done(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(new IdbStoreError("an IndexedDB transaction failed", { cause: tx.error }));
    tx.onabort = () => reject(new IdbStoreError("an IndexedDB transaction was aborted", { cause: tx.error }));
  });
}

/** Bytes as JSON-safe hex, and back (inside the sealed records only). */
const hex = (bytes: Uint8Array) => toHex(bytes);

/** The IndexedDB store of one device. */
export class IdbStore implements ClientStore, OutboxStore {
  private record: DeviceRecord | undefined;
  private keys: LocalPreKeys;
  private readonly sessions = new Map<string, Map<bigint, Session>>();
  private readonly identities = new Map<string, Uint8Array>();
  private readonly seenIds = new Set<bigint>();
  private readonly outbox = new Map<number, OutboxEntry>();
  private nextSeq = 1;
  private writes: Promise<void> = Promise.resolve();
  private failed: unknown;

  private constructor(
    private readonly db: IDBDatabase,
    private readonly key: CryptoKey,
    private readonly nameKey: CryptoKey,
  ) {
    this.keys = new LocalPreKeys();
  }

  /** Opens (or creates) the database `name`, with its key, and loads every record; `IdbStoreError` if a record does not open. */
  static async open(name: string, indexedDB: IDBFactory = globalThis.indexedDB): Promise<IdbStore> {
    const open = indexedDB.open(name, 1);
    open.onupgradeneeded = () => {
      open.result.createObjectStore(KEYS);
      open.result.createObjectStore(RECORDS);
    };
    const db = await request(open);
    let key = (await request(db.transaction(KEYS).objectStore(KEYS).get(KEY_NAME))) as CryptoKey | undefined;
    let nameKey = (await request(db.transaction(KEYS).objectStore(KEYS).get(NAME_KEY_NAME))) as CryptoKey | undefined;
    if (!key || !nameKey) {
      // Generated non-extractable: IndexedDB keeps the CryptoKey objects, their bytes are never readable by script.
      key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
      nameKey = await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
      const tx = db.transaction(KEYS, "readwrite");
      tx.objectStore(KEYS).put(key, KEY_NAME);
      tx.objectStore(KEYS).put(nameKey, NAME_KEY_NAME);
      await done(tx);
    }
    const store = new IdbStore(db, key, nameKey);
    await store.load();
    return store;
  }

  private async load(): Promise<void> {
    const tx = this.db.transaction(RECORDS);
    const names = (await request(tx.objectStore(RECORDS).getAllKeys())) as string[];
    const values = (await request(tx.objectStore(RECORDS).getAll())) as Sealed[];
    const opened = new Map<string, unknown>();
    for (let i = 0; i < names.length; i++) opened.set(names[i]!, await this.open(names[i]!, values[i]!));
    const device = opened.get("device") as { username: string; deviceId: string; deviceKey: string; identity: string } | undefined;
    if (device) {
      this.record = {
        username: device.username,
        deviceId: BigInt(device.deviceId),
        deviceKey: IdentityKeyPair.fromSeed(fromHex(device.deviceKey)),
        identity: IdentityKeyPair.fromSeed(fromHex(device.identity)),
      };
      const preKeys = opened.get("prekeys") as string | undefined;
      if (preKeys) this.keys = LocalPreKeys.fromBytes(this.record.identity, fromHex(preKeys));
    }
    for (const [name, value] of opened) {
      const kind = name.split("/")[0];
      if (kind === "session") {
        const [username, deviceId, session] = value as [string, string, string];
        this.sessionMap(username).set(BigInt(deviceId), Session.fromBytes(fromHex(session)));
      } else if (kind === "identity") {
        const [username, identity] = value as [string, string];
        this.identities.set(username, fromHex(identity));
      } else if (kind === "seen") {
        for (const id of value as string[]) this.seenIds.add(BigInt(id));
      } else if (kind === "outbox") {
        const entry = value as { seq: number; to: string; content: string; file?: OutboxEntry["file"] };
        this.outbox.set(entry.seq, { seq: entry.seq, to: entry.to, content: fromHex(entry.content), ...(entry.file ? { file: entry.file } : {}) });
        this.nextSeq = Math.max(this.nextSeq, entry.seq + 1);
      }
    }
  }

  private async open(name: string, sealed: Sealed): Promise<unknown> {
    try {
      const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: sealed.iv as BufferSource, additionalData: utf8(name) as BufferSource }, this.key, sealed.data as BufferSource);
      return JSON.parse(new TextDecoder().decode(plain)) as unknown;
    } catch (cause) {
      throw new IdbStoreError(`the record ${JSON.stringify(name)} does not open under this database's key`, { cause });
    }
  }

  private async seal(name: string, value: unknown): Promise<Sealed> {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const data = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: utf8(name) as BufferSource }, this.key, utf8(JSON.stringify(value)) as BufferSource);
    return { iv, data: new Uint8Array(data) };
  }

  /** The opaque record name of `kind` and `parts`: `kind/` + HMAC-SHA-256 under the name key, truncated to 128 bits. */
  private async opaque(kind: string, ...parts: string[]): Promise<string> {
    const mac = await crypto.subtle.sign("HMAC", this.nameKey, utf8(JSON.stringify([kind, ...parts])) as BufferSource);
    return `${kind}/${toHex(new Uint8Array(mac).subarray(0, 16))}`;
  }

  /** Queues writes (`undefined` deletes) in order; the promise resolves once they committed. */
  private write(changes: [string | Promise<string>, unknown][]): Promise<void> {
    const next = this.writes.then(async () => {
      const sealed = await Promise.all(
        changes.map(async ([pending, value]) => {
          const name = await pending;
          return [name, value === undefined ? undefined : await this.seal(name, value)] as const;
        }),
      );
      const tx = this.db.transaction(RECORDS, "readwrite");
      const records = tx.objectStore(RECORDS);
      for (const [name, value] of sealed) {
        if (value === undefined) records.delete(name);
        else records.put(value, name);
      }
      await done(tx);
    });
    this.writes = next.catch((error: unknown) => {
      this.failed ??= error;
    });
    return next;
  }

  private preKeysChange(): [string | Promise<string>, unknown][] {
    return this.record ? [["prekeys", hex(this.keys.toBytes())]] : [];
  }

  /** Resolves once every change so far is durable (prekeys included); rejects with the first write that failed. */
  async flush(): Promise<void> {
    await this.write(this.preKeysChange());
    await this.writes;
    if (this.failed) throw new IdbStoreError("a write to IndexedDB failed", { cause: this.failed });
  }

  /** Closes the database (the store is unusable after). */
  close(): void {
    this.db.close();
  }

  private sessionMap(username: string): Map<bigint, Session> {
    let byDevice = this.sessions.get(username);
    if (!byDevice) {
      byDevice = new Map();
      this.sessions.set(username, byDevice);
    }
    return byDevice;
  }

  /** {@inheritDoc ClientStore.device} */
  device(): DeviceRecord | undefined {
    return this.record;
  }

  /** {@inheritDoc ClientStore.setDevice} */
  setDevice(device: DeviceRecord): void {
    this.record = device;
    const value = { username: device.username, deviceId: device.deviceId.toString(), deviceKey: hex(device.deviceKey.exportSeed()), identity: hex(device.identity.exportSeed()) };
    void this.write([["device", value], ...this.preKeysChange()]).catch(() => undefined);
  }

  /** {@inheritDoc ClientStore.preKeys} */
  preKeys(): LocalPreKeys {
    return this.keys;
  }

  /** {@inheritDoc ClientStore.session} */
  session(username: string, deviceId: bigint): Session | undefined {
    return this.sessions.get(username)?.get(deviceId);
  }

  /** {@inheritDoc ClientStore.setSession} */
  setSession(username: string, deviceId: bigint, session: Session): void {
    this.sessionMap(username).set(deviceId, session);
    const name = this.opaque("session", username, deviceId.toString());
    void this.write([[name, [username, deviceId.toString(), hex(session.toBytes())]], ...this.preKeysChange()]).catch(() => undefined);
  }

  /** {@inheritDoc ClientStore.sessionDevices} */
  sessionDevices(username: string): bigint[] {
    return [...(this.sessions.get(username)?.keys() ?? [])];
  }

  /** {@inheritDoc ClientStore.contactIdentity} */
  contactIdentity(username: string): Uint8Array | undefined {
    return this.identities.get(username);
  }

  /** {@inheritDoc ClientStore.setContactIdentity} */
  setContactIdentity(username: string, key: Uint8Array): void {
    this.identities.set(username, key);
    void this.write([[this.opaque("identity", username), [username, hex(key)]]]).catch(() => undefined);
  }

  /** {@inheritDoc ClientStore.seen} */
  seen(id: bigint): boolean {
    return this.seenIds.has(id);
  }

  /** {@inheritDoc ClientStore.markSeen} */
  markSeen(id: bigint): void {
    this.seenIds.add(id);
    if (this.seenIds.size > MAX_SEEN) this.seenIds.delete(this.seenIds.values().next().value!);
    void this.write([["seen", [...this.seenIds].map(String)]]).catch(() => undefined);
  }

  /** {@inheritDoc OutboxStore.outboxAppend} */
  async outboxAppend(entry: Omit<OutboxEntry, "seq">): Promise<number> {
    const seq = this.nextSeq++;
    const full: OutboxEntry = { ...entry, seq };
    await this.write([[`outbox/${String(seq).padStart(12, "0")}`, { seq, to: entry.to, content: hex(entry.content), file: entry.file }]]);
    this.outbox.set(seq, full);
    return seq;
  }

  /** {@inheritDoc OutboxStore.outboxEntries} */
  outboxEntries(): OutboxEntry[] {
    return [...this.outbox.values()].sort((a, b) => a.seq - b.seq);
  }

  /** {@inheritDoc OutboxStore.outboxDelete} */
  async outboxDelete(seq: number): Promise<void> {
    await this.write([[`outbox/${String(seq).padStart(12, "0")}`, undefined]]);
    this.outbox.delete(seq);
  }
}

/** The raw bytes of every sealed record of database `name` (for audits and tests: nothing in them should be readable). */
export async function rawRecords(name: string, indexedDB: IDBFactory = globalThis.indexedDB): Promise<{ name: string; bytes: Uint8Array }[]> {
  const db = await request(indexedDB.open(name, 1));
  try {
    const tx = db.transaction(RECORDS);
    const names = (await request(tx.objectStore(RECORDS).getAllKeys())) as string[];
    const values = (await request(tx.objectStore(RECORDS).getAll())) as Sealed[];
    return names.map((n, i) => ({ name: n, bytes: concat(values[i]!.iv, values[i]!.data) }));
  } finally {
    db.close();
  }
}

/// <reference lib="dom" />
/**
 * A browser `ClientStore` (and `OutboxStore` and `GroupStore`) in IndexedDB,
 * encrypted at rest: every record is sealed with AES-256-GCM under one WebCrypto key that
 * is generated non-extractable and kept in the same database (IndexedDB
 * stores a `CryptoKey` by structured clone; script can use it but never read
 * its bytes). The record's name is the AES-GCM additional data, so a sealed
 * value cannot be moved to another slot. Record names are opaque: a session
 * or a contact is named by HMAC-SHA-256 under a second non-extractable key,
 * so no username is readable on disk. What stays visible: how many records
 * of each kind there are (sessions, contacts, queued sends, groups, sender
 * keys) and their sizes.
 *
 * Groups (groups_store.ts, SPEC.md §6, §11.5) are kept the same way: one
 * record per group (`group/`), per group our outbound sender key
 * (`outbound/`) and the devices it was given to (`shared/`), and one
 * record per inbound sender key (`senderkey/`, per group, sender and
 * device), each named by HMAC. A record that does not open, or opens to a
 * value of the wrong shape, makes `open` fail with `IdbStoreError`.
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
import { OutboundSenderKey, SenderKeyRecord } from "../sender_key.js";
import type { ServerPublicKey } from "../sealed_sender.js";
import { Session } from "../session.js";
import { MemoryGroupStore, type GroupRecord, type GroupStore, type SharedWith } from "./groups_store.js";
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

/** A record value of the wrong shape (reported as `IdbStoreError` by `open`). */
class InvalidValue extends Error {}

// Readers of the JSON inside a record: the expected shape or `InvalidValue`.
function str(value: unknown): string {
  if (typeof value !== "string") throw new InvalidValue("not a string");
  return value;
}
function int(value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) throw new InvalidValue("not an integer");
  return value;
}
function bool(value: unknown): boolean {
  if (typeof value !== "boolean") throw new InvalidValue("not a boolean");
  return value;
}
function bytes(value: unknown): Uint8Array {
  const text = str(value);
  if (!/^(?:[0-9a-f]{2})*$/.test(text)) throw new InvalidValue("not hex");
  return fromHex(text);
}
function big(value: unknown): bigint {
  const text = str(value);
  if (!/^-?[0-9]{1,20}$/.test(text)) throw new InvalidValue("not a decimal integer");
  return BigInt(text);
}
function list(value: unknown, length?: number): unknown[] {
  if (!Array.isArray(value) || (length !== undefined && value.length !== length)) throw new InvalidValue("not a list of the expected length");
  return value as unknown[];
}
function object(value: unknown): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new InvalidValue("not an object");
  return value as Record<string, unknown>;
}
function groupId(value: unknown): Uint8Array {
  const id = bytes(value);
  if (id.length !== 16) throw new InvalidValue("a group id is 16 bytes");
  return id;
}

/** A `GroupRecord` as its record holds it. */
function groupValue(id: Uint8Array, record: GroupRecord): unknown {
  return {
    groupId: hex(id),
    version: record.version.toString(),
    active: record.active,
    members: record.members.map((m) => [m.username, m.role, m.joinedAtVersion.toString()]),
    name: record.name,
    description: record.description,
    metadataKey: hex(record.metadataKey),
    encryptedMetadata: hex(record.encryptedMetadata),
    checkedMs: record.checkedMs,
    leaving: record.leaving,
    pendingKey: hex(record.pendingKey),
    pendingCreatedBy: record.pendingCreatedBy,
  };
}

/** The group id and `GroupRecord` of a `group/` record's value. */
function readGroup(value: unknown): [Uint8Array, GroupRecord] {
  const v = object(value);
  const members = list(v["members"]).map((m) => {
    const [username, role, joinedAtVersion] = list(m, 3);
    return { username: str(username), role: int(role), joinedAtVersion: big(joinedAtVersion) };
  });
  return [
    groupId(v["groupId"]),
    {
      version: big(v["version"]),
      active: bool(v["active"]),
      members,
      name: str(v["name"]),
      description: str(v["description"]),
      metadataKey: bytes(v["metadataKey"]),
      encryptedMetadata: bytes(v["encryptedMetadata"]),
      checkedMs: int(v["checkedMs"]),
      leaving: list(v["leaving"]).map(str),
      pendingKey: bytes(v["pendingKey"]),
      pendingCreatedBy: str(v["pendingCreatedBy"]),
    },
  ];
}

/** The IndexedDB store of one device. */
export class IdbStore implements ClientStore, OutboxStore, GroupStore {
  private record: DeviceRecord | undefined;
  private keys: LocalPreKeys;
  private readonly sessions = new Map<string, Map<bigint, Session>>();
  private readonly identities = new Map<string, Uint8Array>();
  private readonly deviceLists = new Map<string, Uint8Array>();
  private readonly previous = new Map<string, Uint8Array[]>();
  private ownProfileKey: Uint8Array | undefined;
  private readonly profileKeys = new Map<string, Uint8Array>();
  private trustedServerKey: ServerPublicKey | undefined;
  private readonly seenIds = new Set<bigint>();
  private readonly outbox = new Map<number, OutboxEntry>();
  /** Groups and sender keys in memory (copies in, copies out); IndexedDB is written behind. */
  private readonly groupCache = new MemoryGroupStore();
  /** Per group (hex id): the (sender, device) pairs with an inbound sender-key record, to delete them with the group's keys. */
  private readonly senders = new Map<string, Map<string, [string, bigint]>>();
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
    // The device first: the prekeys are restored under its identity.
    for (const name of ["device", "prekeys"]) if (opened.has(name)) this.restore(name, opened.get(name));
    for (const [name, value] of opened) if (name !== "device" && name !== "prekeys") this.restore(name, value);
  }

  /** Takes one opened record into memory; `IdbStoreError` when its value is not of its kind's shape. */
  private restore(name: string, value: unknown): void {
    try {
      this.restoreValue(name, value);
    } catch (cause) {
      throw new IdbStoreError(`the record ${JSON.stringify(name)} holds an invalid value`, { cause });
    }
  }

  private restoreValue(name: string, value: unknown): void {
    const kind = name.split("/")[0];
    if (name === "device") {
      const device = object(value);
      this.record = {
        username: str(device["username"]),
        deviceId: big(device["deviceId"]),
        deviceKey: IdentityKeyPair.fromSeed(bytes(device["deviceKey"])),
        identity: IdentityKeyPair.fromSeed(bytes(device["identity"])),
      };
    } else if (name === "prekeys") {
      // Prekeys without a device are never written; ignored if found.
      if (this.record) this.keys = LocalPreKeys.fromBytes(this.record.identity, bytes(value));
    } else if (kind === "session") {
      const [username, deviceId, session] = list(value, 3);
      this.sessionMap(str(username)).set(big(deviceId), Session.fromBytes(bytes(session)));
    } else if (kind === "identity") {
      const [username, identity] = list(value, 2);
      this.identities.set(str(username), bytes(identity));
    } else if (name === "profilekey") {
      this.ownProfileKey = bytes(value);
    } else if (name === "serverkey") {
      const [keyId, publicKey] = list(value, 2);
      this.trustedServerKey = { keyId: int(keyId), publicKey: bytes(publicKey) };
    } else if (kind === "profile") {
      const [username, key] = list(value, 2);
      this.profileKeys.set(str(username), bytes(key));
    } else if (kind === "previous") {
      const [username, deviceId, sessions] = list(value, 3);
      this.previous.set(JSON.stringify([str(username), big(deviceId).toString()]), list(sessions).map(bytes));
    } else if (kind === "devicelist") {
      const [username, signed] = list(value, 2);
      this.deviceLists.set(str(username), bytes(signed));
    } else if (kind === "seen") {
      for (const id of list(value)) this.seenIds.add(big(id));
    } else if (kind === "outbox") {
      const entry = object(value);
      const seq = int(entry["seq"]);
      const file = entry["file"] === undefined ? undefined : (object(entry["file"]) as unknown as OutboxEntry["file"]);
      this.outbox.set(seq, { seq, to: str(entry["to"]), content: bytes(entry["content"]), ...(file ? { file } : {}) });
      this.nextSeq = Math.max(this.nextSeq, seq + 1);
    } else if (kind === "group") {
      const [id, record] = readGroup(value);
      this.groupCache.setGroup(id, record);
    } else if (kind === "outbound") {
      const [id, key] = list(value, 2);
      this.groupCache.setOutboundSenderKey(groupId(id), OutboundSenderKey.fromBytes(bytes(key)));
    } else if (kind === "shared") {
      const [id, entries] = list(value, 2);
      this.groupCache.addSharedWith(
        groupId(id),
        list(entries).map((entry) => {
          const [username, deviceId, keyId] = list(entry, 3);
          return { username: str(username), deviceId: big(deviceId), keyId: int(keyId) };
        }),
      );
    } else if (kind === "senderkey") {
      const [id, username, deviceId, record] = list(value, 4);
      const group = groupId(id);
      this.groupCache.setSenderKeyRecord(group, str(username), big(deviceId), SenderKeyRecord.fromBytes(bytes(record)));
      this.senderMap(group).set(`${str(username)}/${big(deviceId)}`, [str(username), big(deviceId)]);
    }
    // Another kind (written by a later version) is left as it is.
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

  /** {@inheritDoc ClientStore.previousSessions} */
  previousSessions(username: string, deviceId: bigint): Session[] {
    return (this.previous.get(JSON.stringify([username, deviceId.toString()])) ?? []).map((b) => Session.fromBytes(b));
  }

  /** {@inheritDoc ClientStore.setPreviousSessions} */
  setPreviousSessions(username: string, deviceId: bigint, sessions: Session[]): void {
    const serialized = sessions.map((session) => session.toBytes());
    this.previous.set(JSON.stringify([username, deviceId.toString()]), serialized);
    const name = this.opaque("previous", username, deviceId.toString());
    void this.write([[name, [username, deviceId.toString(), serialized.map(hex)]]]).catch(() => undefined);
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

  /** {@inheritDoc ClientStore.deviceList} */
  deviceList(username: string): Uint8Array | undefined {
    return this.deviceLists.get(username);
  }

  /** {@inheritDoc ClientStore.setDeviceList} */
  setDeviceList(username: string, signed: Uint8Array): void {
    this.deviceLists.set(username, signed);
    void this.write([[this.opaque("devicelist", username), [username, hex(signed)]]]).catch(() => undefined);
  }

  /** {@inheritDoc ClientStore.profileKey} */
  profileKey(): Uint8Array | undefined {
    return this.ownProfileKey;
  }

  /** {@inheritDoc ClientStore.setProfileKey} */
  setProfileKey(key: Uint8Array): void {
    this.ownProfileKey = key;
    void this.write([["profilekey", hex(key)]]).catch(() => undefined);
  }

  /** {@inheritDoc ClientStore.contactProfileKey} */
  contactProfileKey(username: string): Uint8Array | undefined {
    return this.profileKeys.get(username);
  }

  /** {@inheritDoc ClientStore.setContactProfileKey} */
  setContactProfileKey(username: string, key: Uint8Array): void {
    this.profileKeys.set(username, key);
    void this.write([[this.opaque("profile", username), [username, hex(key)]]]).catch(() => undefined);
  }

  /** {@inheritDoc ClientStore.serverKey} */
  serverKey(): ServerPublicKey | undefined {
    return this.trustedServerKey;
  }

  /** {@inheritDoc ClientStore.setServerKey} */
  setServerKey(key: ServerPublicKey): void {
    this.trustedServerKey = key;
    void this.write([["serverkey", [key.keyId, hex(key.publicKey)]]]).catch(() => undefined);
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

  private senderMap(id: Uint8Array): Map<string, [string, bigint]> {
    let map = this.senders.get(hex(id));
    if (!map) {
      map = new Map();
      this.senders.set(hex(id), map);
    }
    return map;
  }

  private sharedChange(id: Uint8Array): [string | Promise<string>, unknown] {
    const shared = this.groupCache.sharedWith(id);
    const value = shared.length === 0 ? undefined : [hex(id), shared.map((s) => [s.username, s.deviceId.toString(), s.keyId])];
    return [this.opaque("shared", hex(id)), value];
  }

  /** {@inheritDoc GroupStore.group} */
  group(id: Uint8Array): GroupRecord | undefined {
    return this.groupCache.group(id);
  }

  /** {@inheritDoc GroupStore.setGroup} */
  setGroup(id: Uint8Array, record: GroupRecord): void {
    this.groupCache.setGroup(id, record);
    void this.write([[this.opaque("group", hex(id)), groupValue(id, record)]]).catch(() => undefined);
  }

  /** {@inheritDoc GroupStore.groupIds} */
  groupIds(): Uint8Array[] {
    return this.groupCache.groupIds();
  }

  /** {@inheritDoc GroupStore.outboundSenderKey} */
  outboundSenderKey(id: Uint8Array): OutboundSenderKey | undefined {
    return this.groupCache.outboundSenderKey(id);
  }

  /** {@inheritDoc GroupStore.setOutboundSenderKey} */
  setOutboundSenderKey(id: Uint8Array, key: OutboundSenderKey): void {
    this.groupCache.setOutboundSenderKey(id, key);
    void this.write([[this.opaque("outbound", hex(id)), [hex(id), hex(key.toBytes())]]]).catch(() => undefined);
  }

  /** {@inheritDoc GroupStore.deleteOutboundSenderKey} */
  deleteOutboundSenderKey(id: Uint8Array): void {
    this.groupCache.deleteOutboundSenderKey(id);
    void this.write([[this.opaque("outbound", hex(id)), undefined], this.sharedChange(id)]).catch(() => undefined);
  }

  /** {@inheritDoc GroupStore.sharedWith} */
  sharedWith(id: Uint8Array): SharedWith[] {
    return this.groupCache.sharedWith(id);
  }

  /** {@inheritDoc GroupStore.addSharedWith} */
  addSharedWith(id: Uint8Array, entries: SharedWith[]): void {
    this.groupCache.addSharedWith(id, entries);
    void this.write([this.sharedChange(id)]).catch(() => undefined);
  }

  /** {@inheritDoc GroupStore.clearSharedWith} */
  clearSharedWith(id: Uint8Array): void {
    this.groupCache.clearSharedWith(id);
    void this.write([this.sharedChange(id)]).catch(() => undefined);
  }

  /** {@inheritDoc GroupStore.senderKeyRecord} */
  senderKeyRecord(id: Uint8Array, username: string, deviceId: bigint): SenderKeyRecord | undefined {
    return this.groupCache.senderKeyRecord(id, username, deviceId);
  }

  /** {@inheritDoc GroupStore.setSenderKeyRecord} */
  setSenderKeyRecord(id: Uint8Array, username: string, deviceId: bigint, record: SenderKeyRecord): void {
    this.groupCache.setSenderKeyRecord(id, username, deviceId, record);
    this.senderMap(id).set(`${username}/${deviceId}`, [username, deviceId]);
    const name = this.opaque("senderkey", hex(id), username, deviceId.toString());
    void this.write([[name, [hex(id), username, deviceId.toString(), hex(record.toBytes())]]]).catch(() => undefined);
  }

  /** {@inheritDoc GroupStore.deleteGroupKeys} */
  deleteGroupKeys(id: Uint8Array): void {
    this.groupCache.deleteGroupKeys(id);
    const senders = [...(this.senders.get(hex(id))?.values() ?? [])];
    this.senders.delete(hex(id));
    const changes: [string | Promise<string>, unknown][] = senders.map(([username, deviceId]) => [this.opaque("senderkey", hex(id), username, deviceId.toString()), undefined]);
    changes.push([this.opaque("outbound", hex(id)), undefined], this.sharedChange(id));
    void this.write(changes).catch(() => undefined);
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

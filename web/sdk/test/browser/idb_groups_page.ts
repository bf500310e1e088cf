/**
 * The groups page of test/idb_store.test.ts, bundled by esbuild and run in
 * Chromium: `write()` fills an `IdbStore` with two groups (records, our
 * outbound sender key, whom it was given to, another member's inbound sender
 * key) and forgets the second group's keys; after a reload `read()` opens
 * it again, reports what it holds and decrypts, with the reloaded inbound
 * key, a message the other member sealed before the reload; `raw()` returns
 * the sealed records; `corrupt()` flips a byte of a group record, then
 * replaces a sender-key record with a well-sealed but malformed value, and
 * reports how `IdbStore.open` answers each time.
 */
import { fromHex, toHex, utf8 } from "../../src/bytes.js";
import type { GroupRecord, SharedWith } from "../../src/client/groups_store.js";
import { IdbStore, IdbStoreError, rawRecords } from "../../src/client/idb_store.js";
import { IdentityKeyPair } from "../../src/identity.js";
import { systemRng } from "../../src/rng.js";
import { OutboundSenderKey, SenderKeyRecord } from "../../src/sender_key.js";

const DB = "microbot-idb-groups-test";
const GROUP = new Uint8Array(16).fill(0xa1);
const OTHER = new Uint8Array(16).fill(0xb2);
/** Strings that must not appear in the raw records. */
export const MARKERS = { me: "gina-marker-0c11", member: "hank-marker-3e7d", name: "group-name-marker-9a4f", description: "group-desc-marker-52b0" };

function record(name: string): GroupRecord {
  return {
    version: 7n,
    active: true,
    members: [
      { username: MARKERS.me, role: 2, joinedAtVersion: 1n },
      { username: MARKERS.member, role: 1, joinedAtVersion: 3n },
    ],
    name,
    description: MARKERS.description,
    metadataKey: systemRng.fill(32),
    encryptedMetadata: systemRng.fill(60),
    checkedMs: 1_700_000_000_123,
    leaving: [MARKERS.member],
    pendingKey: systemRng.fill(32),
    pendingCreatedBy: MARKERS.member,
  };
}

async function write() {
  const store = await IdbStore.open(DB);
  store.setDevice({ username: MARKERS.me, deviceId: 7n, deviceKey: IdentityKeyPair.generate(systemRng), identity: IdentityKeyPair.generate(systemRng) });
  const group = record(MARKERS.name);
  store.setGroup(GROUP, group);
  store.setGroup(OTHER, { ...record(`${MARKERS.name}-2`), active: false });

  // Ours: created, used once (the iteration moves), given to two devices of the member.
  const outbound = OutboundSenderKey.create(systemRng, GROUP);
  outbound.encrypt(utf8("first"));
  store.setOutboundSenderKey(GROUP, outbound);
  const shared: SharedWith[] = [
    { username: MARKERS.member, deviceId: 3n, keyId: outbound.currentKeyId },
    { username: MARKERS.member, deviceId: 4n, keyId: outbound.currentKeyId },
  ];
  store.addSharedWith(GROUP, shared);
  // Replacing an entry keeps one per device.
  store.addSharedWith(GROUP, [{ username: MARKERS.member, deviceId: 4n, keyId: outbound.currentKeyId }]);

  // Theirs: the member's device 3 gave us its key; one message opened, one kept for after the reload.
  const theirs = OutboundSenderKey.create(systemRng, GROUP);
  const inbound = new SenderKeyRecord(GROUP);
  inbound.addDistribution(theirs.distribution());
  inbound.decrypt(theirs.encrypt(utf8("opened before the reload")));
  store.setSenderKeyRecord(GROUP, MARKERS.member, 3n, inbound);
  localStorage.setItem("later", toHex(theirs.encrypt(utf8("opened after the reload"))));

  // The other group: keys set, then forgotten (we left).
  store.setOutboundSenderKey(OTHER, OutboundSenderKey.create(systemRng, OTHER));
  store.addSharedWith(OTHER, [{ username: MARKERS.member, deviceId: 3n, keyId: 1 }]);
  const otherInbound = new SenderKeyRecord(OTHER);
  otherInbound.addDistribution(OutboundSenderKey.create(systemRng, OTHER).distribution());
  store.setSenderKeyRecord(OTHER, MARKERS.member, 3n, otherInbound);
  store.deleteGroupKeys(OTHER);

  await store.flush();
  store.close();
  return {
    secrets: [toHex(group.metadataKey), toHex(group.pendingKey), toHex(outbound.toBytes()).slice(-64), toHex(inbound.toBytes()).slice(-64)],
    summary: summary(store),
  };
}

function summary(store: IdbStore) {
  const show = (r: GroupRecord | undefined) =>
    r && {
      ...r,
      version: String(r.version),
      members: r.members.map((m) => ({ ...m, joinedAtVersion: String(m.joinedAtVersion) })),
      metadataKey: toHex(r.metadataKey),
      encryptedMetadata: toHex(r.encryptedMetadata),
      pendingKey: toHex(r.pendingKey),
    };
  const outbound = store.outboundSenderKey(GROUP);
  const inbound = store.senderKeyRecord(GROUP, MARKERS.member, 3n);
  return {
    groupIds: store.groupIds().map(toHex).sort(),
    group: show(store.group(GROUP)),
    other: show(store.group(OTHER)),
    outbound: outbound ? toHex(outbound.toBytes()) : undefined,
    sharedWith: store.sharedWith(GROUP).map((s) => `${s.username}/${s.deviceId}/${s.keyId}`),
    inbound: inbound ? toHex(inbound.toBytes()) : undefined,
    otherInbound: store.senderKeyRecord(OTHER, MARKERS.member, 3n) === undefined,
    otherOutbound: store.outboundSenderKey(OTHER) === undefined,
    otherShared: store.sharedWith(OTHER).length,
  };
}

async function read() {
  const store = await IdbStore.open(DB);
  const out = summary(store);
  const inbound = store.senderKeyRecord(GROUP, MARKERS.member, 3n);
  const later = new TextDecoder().decode(inbound!.decrypt(fromHex(localStorage.getItem("later")!)));
  store.close();
  return { ...out, later };
}

async function raw() {
  return (await rawRecords(DB)).map((r) => ({ name: r.name, hex: toHex(r.bytes) }));
}

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DB, 1);
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error as Error);
  });
}

/** Applies `change` to the sealed record whose name starts with `prefix`; returns that name. */
async function rewrite(prefix: string, change: (name: string, sealed: { iv: Uint8Array; data: Uint8Array }, key: CryptoKey) => Promise<{ iv: Uint8Array; data: Uint8Array }>) {
  const db = await openDb();
  const key = await new Promise<CryptoKey>((resolve, reject) => {
    const get = db.transaction("keys").objectStore("keys").get("record-key");
    get.onsuccess = () => resolve(get.result as CryptoKey);
    get.onerror = () => reject(get.error as Error);
  });
  const all = await new Promise<{ names: string[]; values: { iv: Uint8Array; data: Uint8Array }[] }>((resolve, reject) => {
    const tx = db.transaction("records");
    const names = tx.objectStore("records").getAllKeys();
    const values = tx.objectStore("records").getAll();
    tx.oncomplete = () => resolve({ names: names.result as string[], values: values.result as { iv: Uint8Array; data: Uint8Array }[] });
    tx.onerror = () => reject(tx.error as Error);
  });
  const at = all.names.findIndex((n) => n.startsWith(prefix));
  const name = all.names[at]!;
  const changed = await change(name, all.values[at]!, key);
  await new Promise<void>((resolve, reject) => {
    const tx = db.transaction("records", "readwrite");
    tx.objectStore("records").put(changed, name);
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error as Error);
  });
  db.close();
  return name;
}

async function answer(): Promise<string> {
  try {
    (await IdbStore.open(DB)).close();
    return "opened";
  } catch (error) {
    return error instanceof IdbStoreError ? `IdbStoreError: ${error.message}` : `other: ${String(error)}`;
  }
}

async function corrupt() {
  // A flipped byte: the record does not open under the key.
  let saved: { iv: Uint8Array; data: Uint8Array } | undefined;
  const flipped = await rewrite("group/", async (_name, sealed) => {
    saved = { iv: sealed.iv.slice(), data: sealed.data.slice() };
    const data = sealed.data.slice();
    data[5] = data[5]! ^ 1;
    return { iv: sealed.iv, data };
  });
  const flippedAnswer = await answer();
  await rewrite(flipped, async () => saved!);
  const restored = await answer();
  // Sealed correctly under the store's own key, but not a sender-key record: still a typed error.
  const malformed = async (prefix: string, value: unknown) => {
    await rewrite(prefix, async (name, _sealed, key) => {
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const data = await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: utf8(name) as BufferSource }, key, utf8(JSON.stringify(value)) as BufferSource);
      return { iv, data: new Uint8Array(data) };
    });
    return answer();
  };
  const badSenderKey = await malformed("senderkey/", [toHex(GROUP), MARKERS.member, "3", "00ff"]);
  const badGroup = await malformed("group/", { groupId: toHex(GROUP), version: "seven" });
  return { flipped: flippedAnswer, restored, badSenderKey, badGroup };
}

(globalThis as unknown as Record<string, unknown>)["microbotTest"] = { write, read, raw, corrupt };

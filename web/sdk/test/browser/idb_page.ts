/**
 * The page of test/idb_store.test.ts, bundled by esbuild and run in Chromium:
 * `write()` fills an `IdbStore` with a device, prekeys, a session, a contact,
 * a seen envelope and a queued send; after a reload `read()` opens it again
 * and reports what it holds; `raw()` returns the sealed records as IndexedDB
 * has them and whether the keys can be exported; `tamper()` flips one byte of
 * a record and reports how `IdbStore.open` answers.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import { toHex } from "../../src/bytes.js";
import { IdbStore, IdbStoreError, rawRecords } from "../../src/client/idb_store.js";
import { ContentSchema } from "../../src/content.js";
import { IdentityKeyPair } from "../../src/identity.js";
import { KemPreKey, SignedPreKey } from "../../src/prekeys.js";
import { systemRng } from "../../src/rng.js";
import { Session } from "../../src/session.js";

const DB = "microbot-idb-test";
export const MARKERS = { me: "alice-marker-7f3a", contact: "bob-marker-91c2", text: "secret-text-marker-55d0" };

async function write() {
  const store = await IdbStore.open(DB);
  const identity = IdentityKeyPair.generate(systemRng);
  const deviceKey = IdentityKeyPair.generate(systemRng);
  store.setDevice({ username: MARKERS.me, deviceId: 7n, deviceKey, identity });
  const signed = SignedPreKey.generate(systemRng, identity, 1, true);
  store.preKeys().addSigned(signed);
  store.preKeys().addKem(KemPreKey.generate(systemRng, identity, 1));
  store.preKeys().generateOneTime(systemRng, 3);
  const bobIdentity = IdentityKeyPair.generate(systemRng);
  const bobSigned = SignedPreKey.generate(systemRng, bobIdentity, 1, true);
  const bobKem = KemPreKey.generate(systemRng, bobIdentity, 1);
  const session = Session.initiate(systemRng, identity, { identityKey: bobIdentity.publicKey.toBytes(), signedPreKey: bobSigned.public(), oneTimePreKey: undefined, kemPreKey: bobKem.public() });
  store.setSession(MARKERS.contact, 2n, session);
  store.setContactIdentity(MARKERS.contact, bobIdentity.publicKey.toBytes());
  const earlier = Session.initiate(systemRng, identity, { identityKey: bobIdentity.publicKey.toBytes(), signedPreKey: bobSigned.public(), oneTimePreKey: undefined, kemPreKey: bobKem.public() });
  store.setPreviousSessions(MARKERS.contact, 2n, [earlier]);
  store.setDeviceList(MARKERS.contact, new Uint8Array([1, 2, 3, 4]));
  const profileKey = systemRng.fill(32);
  store.setProfileKey(profileKey);
  store.setServerKey({ keyId: 7, publicKey: bobIdentity.publicKey.toBytes() });
  store.markSeen(41n);
  const content = create(ContentSchema, { messageId: new Uint8Array(16).fill(3), sentAtMs: 1n, body: { case: "text", value: { text: MARKERS.text } } });
  await store.outboxAppend({ to: MARKERS.contact, content: toBinary(ContentSchema, content) });
  await store.outboxAppend({ to: MARKERS.contact, content: toBinary(ContentSchema, create(ContentSchema, { ...content, messageId: new Uint8Array(16).fill(4) })) });
  await store.outboxDelete(2);
  await store.flush();
  store.close();
  return {
    secrets: [toHex(identity.exportSeed()), toHex(deviceKey.exportSeed()), toHex(signed.secret()), toHex(session.toBytes()).slice(0, 64), toHex(profileKey), toHex(bobIdentity.publicKey.toBytes())],
    summary: summary(store),
  };
}

function summary(store: IdbStore) {
  const device = store.device();
  const session = store.session(MARKERS.contact, 2n);
  return {
    username: device?.username,
    deviceId: device?.deviceId.toString(),
    identity: device ? toHex(device.identity.exportSeed()) : undefined,
    deviceKey: device ? toHex(device.deviceKey.exportSeed()) : undefined,
    preKeys: toHex(store.preKeys().toBytes()),
    sessionDevices: store.sessionDevices(MARKERS.contact).map(String),
    session: session ? toHex(session.toBytes()) : undefined,
    contact: toHex(store.contactIdentity(MARKERS.contact) ?? new Uint8Array(0)),
    previous: store.previousSessions(MARKERS.contact, 2n).map((s) => toHex(s.toBytes())),
    deviceList: toHex(store.deviceList(MARKERS.contact) ?? new Uint8Array(0)),
    profileKey: toHex(store.profileKey() ?? new Uint8Array(0)),
    serverKey: store.serverKey() ? `${store.serverKey()!.keyId}:${toHex(store.serverKey()!.publicKey)}` : undefined,
    seen41: store.seen(41n),
    seen42: store.seen(42n),
    outbox: store.outboxEntries().map((e) => {
      const body = fromBinary(ContentSchema, e.content).body;
      return { seq: e.seq, to: e.to, text: body.case === "text" ? body.value.text : "" };
    }),
  };
}

async function read() {
  const store = await IdbStore.open(DB);
  const out = summary(store);
  store.close();
  return out;
}

async function raw() {
  const records = await rawRecords(DB);
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const open = indexedDB.open(DB, 1);
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error as Error);
  });
  const keys = await new Promise<CryptoKey[]>((resolve, reject) => {
    const get = db.transaction("keys").objectStore("keys").getAll();
    get.onsuccess = () => resolve(get.result as CryptoKey[]);
    get.onerror = () => reject(get.error as Error);
  });
  db.close();
  const exportable: boolean[] = [];
  for (const key of keys) exportable.push(key.extractable || (await crypto.subtle.exportKey("raw", key).then(() => true, () => false)));
  return { records: records.map((r) => ({ name: r.name, hex: toHex(r.bytes) })), keys: keys.map((k) => k.algorithm.name), exportable };
}

async function tamper() {
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const open = indexedDB.open(DB, 1);
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error as Error);
  });
  await new Promise<void>((resolve, reject) => {
    const tx = db.transaction("records", "readwrite");
    const records = tx.objectStore("records");
    const get = records.get("device");
    get.onsuccess = () => {
      const sealed = get.result as { iv: Uint8Array; data: Uint8Array };
      sealed.data[0] = sealed.data[0]! ^ 1;
      records.put(sealed, "device");
    };
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error as Error);
  });
  db.close();
  try {
    await IdbStore.open(DB);
    return "opened";
  } catch (error) {
    return error instanceof IdbStoreError ? `IdbStoreError: ${error.message}` : `other: ${String(error)}`;
  }
}

(globalThis as unknown as Record<string, unknown>)["microbotTest"] = { write, read, raw, tamper };

/**
 * Device linking through a live server (SPEC.md §12.14): the real
 * `microbot-server` on loopback (wss://, its certificate pinned). A
 * TypeScript existing device of alice links a TypeScript new device (with
 * history); the new device knows bob and the group, a message from bob then
 * reaches both of alice's devices, and the new device's send reaches bob and
 * alice's first device as an own-device copy. A used code is refused.
 *
 * Needs MICROBOT_SERVER_BIN or MICROBOT_BIN_DIR (scripts/test.sh exports
 * it); skips with a printed reason without them.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { bytesEqual } from "../src/bytes.js";
import { enrolDevice, login, registerAccount, uploadPreKeys } from "../src/client/account.js";
import { Connection } from "../src/client/connection.js";
import { Groups, type ClientEvent } from "../src/client/groups.js";
import { enrolProvisioned, LinkError, linkDevice, LinkRequest, type HistoryEntry } from "../src/client/linking.js";
import { nodeSocketFactory } from "../src/client/node.js";
import { MemoryStore } from "../src/client/store.js";
import { totpCode } from "../src/client/totp.js";
import { IdentityKeyPair } from "../src/identity.js";
import { LocalPreKeys } from "../src/prekeys.js";
import { systemRng } from "../src/rng.js";
import { startLiveServer, type LiveServer } from "./live_server.js";

const BIN_DIR = process.env["MICROBOT_BIN_DIR"];
const SERVER_BIN = process.env["MICROBOT_SERVER_BIN"] ?? (BIN_DIR ? join(BIN_DIR, "microbot-server") : undefined);
const missing = !SERVER_BIN ? "neither MICROBOT_SERVER_BIN nor MICROBOT_BIN_DIR set" : existsSync(SERVER_BIN) ? undefined : `missing: ${SERVER_BIN}`;
if (missing) console.log(`# linking_live skipped: ${missing}`);

const PASSWORD = "correct horse battery staple";
const dir = mkdtempSync(join(tmpdir(), "microbot-ts-linking-"));
let live: LiveServer | undefined;
let address = "";
let fingerprint = "";

before(async () => {
  if (missing) return;
  live = await startLiveServer(SERVER_BIN!, join(dir, "server"), ["--login-timeout-secs", "1"]);
  address = live.address;
  fingerprint = live.fingerprint;
});

after(() => {
  live?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function connect(): Promise<Connection> {
  const caPem = readFileSync(join(dir, "server", "cert.pem"), "utf8");
  return Connection.open({ url: `wss://${address}/v1/ws`, socketFactory: nodeSocketFactory({ caPem, certSha256: fingerprint }), clientAgent: "ts-linking-live" });
}

interface Device {
  username: string;
  connection: Connection;
  store: MemoryStore;
  groups: Groups;
  secret: Uint8Array;
}

async function register(username: string): Promise<Device> {
  const connection = await connect();
  const now = Date.now() / 1000;
  const secret = (await registerAccount(connection, username, PASSWORD, now)).totpSecret;
  const deviceKey = IdentityKeyPair.generate(systemRng);
  const identity = IdentityKeyPair.generate(systemRng);
  const deviceId = await enrolDevice(connection, username, PASSWORD, { totpCode: totpCode(secret, now + 30) }, deviceKey, "ts");
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username, deviceId, deviceKey, identity });
  await login(connection, deviceId, deviceKey);
  await uploadPreKeys(connection, systemRng, identity, store.preKeys(), 20);
  return { username, connection, store, groups: new Groups(store, store, systemRng), secret };
}

const texts = (events: ClientEvent[]) =>
  events.flatMap((e) => (e.type === "message" && e.message.content.body.case === "text" ? [`${e.message.sentCopy ? "copy " : ""}${e.message.from}: ${e.message.content.body.value.text}`] : []));

/** Fetches until `want` texts arrived or 10 s passed. */
async function collect(d: Device, want: number): Promise<ClientEvent[]> {
  const deadline = Date.now() + 10_000;
  const out: ClientEvent[] = [];
  while (texts(out).length < want && Date.now() < deadline) {
    out.push(...(await d.groups.fetchAll(d.connection)));
    if (texts(out).length < want) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return out;
}

test("a TypeScript existing device links a TypeScript new device: contacts, groups and history arrive; both devices then chat", { skip: missing, timeout: 120_000 }, async () => {
  const alice = await register("alice");
  const bob = await register("bob");
  await alice.groups.messenger.sendText(alice.connection, "bob", "hi bob");
  assert.deepEqual(texts(await collect(bob, 1)), ["alice: hi bob"]);
  await bob.groups.messenger.sendText(bob.connection, "alice", "hi alice");
  const earlier = (await collect(alice, 1)).flatMap((e) => (e.type === "message" ? [e.message] : []));
  const groupId = await alice.groups.createGroup(alice.connection, "team", ["bob"]);
  assert.ok((await bob.groups.fetchAll(bob.connection)).some((e) => e.type === "groupChanged"), "bob learnt of the group");

  // The new device opens a slot and shows its code; the server closes its logged-out connections after 1 s, so it reconnects while it waits.
  const request = await LinkRequest.create({ connect });
  assert.match(request.text, /^([A-Z2-7]{4}-){19}[A-Z2-7]$/);
  const states: string[] = [];
  const waiting = request.wait({ onState: (s) => states.push(s), timeoutMs: 30_000 });
  await new Promise((resolve) => setTimeout(resolve, 1_500));

  const history: HistoryEntry[] = earlier.map((m) => ({ conversation: { kind: "direct", username: "bob" }, author: m.from, content: m.content }));
  const typed = request.text.toLowerCase().replace(/-/g, " ");
  const summary = await linkDevice(alice.connection, typed, { store: alice.store, contacts: ["bob"], history });
  assert.deepEqual(summary, { contacts: 1, groups: 1, history: 1 });
  // The slot holds one message: a second put with the same code is refused.
  await assert.rejects(linkDevice(alice.connection, request.text, { store: alice.store, contacts: ["bob"] }), (e: unknown) => e instanceof LinkError && e.kind === "SlotGone");

  const provisioned = await waiting;
  assert.equal(states.at(-1), "received");
  assert.equal(provisioned.username, "alice");
  assert.deepEqual(provisioned.contacts.map((c) => c.username), ["bob"]);
  assert.equal(provisioned.history.length, 1);
  assert.equal(provisioned.history[0]!.content.body.case === "text" && provisioned.history[0]!.content.body.value.text, "hi alice");

  // Enrol: a wrong password is refused and the same provisioned message can be used again.
  const conn = await connect();
  const store = new MemoryStore(new LocalPreKeys());
  const now = Date.now() / 1000;
  await assert.rejects(enrolProvisioned(conn, provisioned, { password: "wrong password!", secondFactor: { totpCode: totpCode(alice.secret, now + 60) }, store }));
  const conn2 = await connect();
  const device = await enrolProvisioned(conn2, provisioned, { password: PASSWORD, secondFactor: { totpCode: totpCode(alice.secret, now + 90) }, store, deviceName: "linked" });
  provisioned.wipe();
  assert.deepEqual(provisioned.identitySeed, new Uint8Array(32));
  conn.close();
  assert.ok(bytesEqual(device.identity.publicKey.toBytes(), alice.store.device()!.identity.publicKey.toBytes()), "the same identity");
  assert.ok(bytesEqual(store.contactIdentity("bob")!, alice.store.contactIdentity("bob")!), "bob is trusted with the same key");
  const alice2: Device = { username: "alice", connection: conn2, store, groups: new Groups(store, store, systemRng), secret: alice.secret };
  const group = alice2.groups.group(groupId);
  assert.equal(group?.name, "team", "the group was refreshed from the server and its name opened");
  assert.deepEqual(group?.members.map((m) => m.username).sort(), ["alice", "bob"]);

  // bob writes: both of alice's devices read it (bob's send learns of the new device through MISSING_DEVICES).
  await bob.groups.messenger.sendText(bob.connection, "alice", "to both your devices");
  const atAlice = await collect(alice, 1);
  assert.deepEqual(texts(atAlice), ["bob: to both your devices"], JSON.stringify(atAlice, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)));
  assert.deepEqual(texts(await collect(alice2, 1)), ["bob: to both your devices"]);
  // The new device answers: bob reads it, alice's first device gets the own-device copy.
  await alice2.groups.messenger.sendText(alice2.connection, "bob", "from my new device");
  assert.deepEqual(texts(await collect(bob, 1)), ["alice: from my new device"]);
  const copy = (await collect(alice, 1)).find((e) => e.type === "message");
  assert.ok(copy?.type === "message" && copy.message.sentCopy, "an own-device copy");
  assert.deepEqual(copy.message.sentCopy.destination, { kind: "direct", username: "bob" });
  // And in the group, from the new device.
  await alice2.groups.sendText(alice2.connection, groupId, "group hello from the new device");
  assert.deepEqual(texts(await collect(bob, 1)), ["alice: group hello from the new device"]);

  for (const d of [alice, bob, alice2]) d.connection.close();
});

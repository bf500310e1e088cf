/**
 * Groups and own-device copies through a live server (SPEC.md §6, §11.5,
 * §11.7, §12.10): the real `microbot-server` on loopback (wss://, its
 * certificate pinned), three TypeScript accounts and a second device of one
 * of them. They form a group, talk, rename it, remove a member (who then
 * cannot read), and the second device receives every message its account
 * sends (group fan-out, 1:1 as `SyncMessage` transcripts).
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
import { nodeSocketFactory } from "../src/client/node.js";
import { MemoryStore } from "../src/client/store.js";
import { totpCode } from "../src/client/totp.js";
import type { Envelope } from "../src/gen/transport_pb.js";
import { IdentityKeyPair } from "../src/identity.js";
import { LocalPreKeys } from "../src/prekeys.js";
import { systemRng } from "../src/rng.js";
import { startLiveServer, type LiveServer } from "./live_server.js";

const BIN_DIR = process.env["MICROBOT_BIN_DIR"];
const SERVER_BIN = process.env["MICROBOT_SERVER_BIN"] ?? (BIN_DIR ? join(BIN_DIR, "microbot-server") : undefined);
const missing = !SERVER_BIN ? "neither MICROBOT_SERVER_BIN nor MICROBOT_BIN_DIR set" : existsSync(SERVER_BIN) ? undefined : `missing: ${SERVER_BIN}`;
if (missing) console.log(`# groups_live skipped: ${missing}`);

const PASSWORD = "correct horse battery staple";
const dir = mkdtempSync(join(tmpdir(), "microbot-ts-groups-"));
let live: LiveServer | undefined;
let address = "";
let fingerprint = "";

before(async () => {
  if (missing) return;
  live = await startLiveServer(SERVER_BIN!, join(dir, "server"));
  address = live.address;
  fingerprint = live.fingerprint;
});

after(() => {
  live?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Device {
  username: string;
  connection: Connection;
  groups: Groups;
  secret: Uint8Array;
  identity: IdentityKeyPair;
  /** Envelopes as they arrive by push (the raw copies, to hand to someone else). */
  raw: Envelope[];
}

function connect(): Promise<Connection> {
  const caPem = readFileSync(join(dir, "server", "cert.pem"), "utf8");
  return Connection.open({ url: `wss://${address}/v1/ws`, socketFactory: nodeSocketFactory({ caPem, certSha256: fingerprint }), clientAgent: "ts-groups-live" });
}

/** Enrols a device of `username` (a new account unless `of` is given: then a second device of it, sharing its identity). */
async function device(username: string, of?: Device, name = "ts"): Promise<Device> {
  const connection = await connect();
  const now = Date.now() / 1000;
  const secret = of ? of.secret : (await registerAccount(connection, username, PASSWORD, now)).totpSecret;
  const deviceKey = IdentityKeyPair.generate(systemRng);
  const identity = of ? of.identity : IdentityKeyPair.generate(systemRng);
  const deviceId = await enrolDevice(connection, username, PASSWORD, { totpCode: totpCode(secret, now + (of ? 60 : 30)) }, deviceKey, name);
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username, deviceId, deviceKey, identity });
  await login(connection, deviceId, deviceKey);
  await uploadPreKeys(connection, systemRng, identity, store.preKeys(), 20);
  const raw: Envelope[] = [];
  connection.onPush((push) => {
    if (push.event.case === "envelope") raw.push(push.event.value);
  });
  return { username, connection, groups: new Groups(store, store, systemRng), secret, identity, raw };
}

const texts = (events: ClientEvent[]) =>
  events.flatMap((e) => (e.type === "message" && e.message.content.body.case === "text" ? [`${e.message.from}: ${e.message.content.body.value.text}`] : []));
const updates = (events: ClientEvent[]) => events.flatMap((e) => (e.type === "groupChanged" ? [e.update] : []));

test("TypeScript clients form a group, rename it, remove a member who then cannot read; a second device gets own-device copies", { skip: missing, timeout: 120_000 }, async () => {
  const alice = await device("alice");
  const bob = await device("bob");
  const carol = await device("carol");
  const alice2 = await device("alice", alice, "ts-2");

  // alice creates the group: CREATED reaches bob, carol and alice's other device, with the name.
  const id = await alice.groups.createGroup(alice.connection, "team", ["bob", "carol"]);
  await alice.groups.sendText(alice.connection, id, "hello team");
  for (const member of [bob, carol, alice2]) {
    const events = await member.groups.fetchAll(member.connection);
    assert.deepEqual(updates(events), [{ kind: "Created", by: "alice", name: "team" }], member.username);
    assert.deepEqual(texts(events), ["alice: hello team"], member.username);
    const info = member.groups.group(id)!;
    assert.equal(info.name, "team");
    assert.deepEqual(info.members.map((m) => `${m.username}:${m.role}`).sort(), ["alice:admin", "bob:member", "carol:member"]);
  }

  // bob answers: everyone else (alice's two devices included) reads it once.
  await bob.groups.sendText(bob.connection, id, "hi from bob");
  for (const member of [alice, carol, alice2]) assert.deepEqual(texts(await member.groups.fetchAll(member.connection)), ["bob: hi from bob"], member.username);
  // A second fetch finds nothing new (acknowledged).
  assert.deepEqual(await carol.groups.fetchAll(carol.connection), []);

  // alice's second device writes to the group: its own sender key reaches alice's first device and bob and carol.
  await alice2.groups.sendText(alice2.connection, id, "from alice's phone");
  for (const member of [alice, bob, carol]) assert.deepEqual(texts(await member.groups.fetchAll(member.connection)), ["alice: from alice's phone"], member.username);

  // Rename: the name is sealed under a fresh key; members believe it once it opens the server's blob.
  await alice.groups.rename(alice.connection, id, "team two");
  const renamed = await bob.groups.fetchAll(bob.connection);
  assert.deepEqual(updates(renamed), [{ kind: "Renamed", name: "team two" }]);
  assert.equal(bob.groups.group(id)!.name, "team two");
  await carol.groups.fetchAll(carol.connection);

  // Remove carol: alice's sender key rotates, the name is re-keyed; carol cannot read what follows.
  await alice.groups.removeMembers(alice.connection, id, ["carol"]);
  bob.raw.length = 0;
  await alice.groups.sendText(alice.connection, id, "after carol left");
  const bobEvents = await bob.groups.fetchAll(bob.connection);
  assert.deepEqual(texts(bobEvents), ["alice: after carol left"]);
  assert.ok(updates(bobEvents).some((u) => u.kind === "MembersRemoved" && u.usernames.join() === "carol"), JSON.stringify(updates(bobEvents)));
  assert.equal(bob.groups.group(id)!.name, "team two");
  const carolEvents = await carol.groups.fetchAll(carol.connection);
  assert.deepEqual(texts(carolEvents), []);
  // Even handed bob's copy of the message, carol's old sender key does not open it.
  const copy = bob.raw.filter((e) => e.groupId.length > 0).at(-1);
  assert.ok(copy, "bob got the group message by push");
  const leaked = await carol.groups.take(carol.connection, [copy]);
  assert.deepEqual(texts(leaked), []);
  assert.equal(leaked[0]?.type, "decryptionFailed");
  const carolView = await carol.groups.refresh(carol.connection, id);
  assert.equal(carolView?.active, false);
  assert.equal(carol.groups.group(id)!.name, "team two", "carol never learnt a later name");
  // bob's answer reaches alice, not carol.
  await bob.groups.sendText(bob.connection, id, "bye carol");
  assert.deepEqual(texts(await alice.groups.fetchAll(alice.connection)), ["bob: bye carol"]);
  assert.deepEqual(texts(await carol.groups.fetchAll(carol.connection)), []);

  // Own-device copies: alice's 1:1 to bob reaches alice2 as a transcript, and the other way round.
  const a2Before = await alice2.groups.fetchAll(alice2.connection);
  assert.deepEqual(texts(a2Before), ["alice: after carol left", "bob: bye carol"]);
  await alice.groups.messenger.sendText(alice.connection, "bob", "direct to bob");
  const toBob = await bob.groups.fetchAll(bob.connection);
  assert.deepEqual(texts(toBob), ["alice: direct to bob"]);
  const message = (events: ClientEvent[]) => events.find((e): e is Extract<ClientEvent, { type: "message" }> => e.type === "message")?.message;
  assert.equal(message(toBob)!.sentCopy, undefined);
  const synced = message(await alice2.groups.fetchAll(alice2.connection));
  assert.ok(synced?.sentCopy, "alice's second device got a transcript");
  assert.deepEqual(synced.sentCopy.destination, { kind: "direct", username: "bob" });
  assert.equal(synced.content.body.case === "text" && synced.content.body.value.text, "direct to bob");
  assert.ok(bytesEqual(synced.content.messageId, message(toBob)!.content.messageId), "the carried content keeps its message id");
  await alice2.groups.messenger.sendText(alice2.connection, "bob", "from the second device");
  const back = message(await alice.groups.fetchAll(alice.connection));
  assert.deepEqual(back?.sentCopy?.destination, { kind: "direct", username: "bob" });
  assert.deepEqual(texts(await bob.groups.fetchAll(bob.connection)), ["alice: from the second device"]);

  // A group push missed while offline: refreshAll brings the record up to date (bob is still a member, carol is not).
  await alice2.groups.refreshAll(alice2.connection);
  assert.deepEqual(alice2.groups.group(id)!.members.map((m) => m.username), ["alice", "bob"]);

  // bob leaves: alice sees Left (not a removal), and bob's group is inactive.
  await bob.groups.leave(bob.connection, id);
  assert.equal(bob.groups.group(id)!.active, false);
  const left = await alice.groups.fetchAll(alice.connection);
  assert.ok(updates(left).some((u) => u.kind === "Left" && u.username === "bob"), JSON.stringify(updates(left)));

  for (const d of [alice, bob, carol, alice2]) d.connection.close();
});

const failures = (events: ClientEvent[]) => events.filter((e) => e.type === "decryptionFailed");

/** Fetches until `want` texts arrived, counting those a push handler adds to `pushed` meanwhile, or 10 s passed; the events of both. */
async function collect(d: Device, want: number, pushed: ClientEvent[] = []): Promise<ClientEvent[]> {
  const deadline = Date.now() + 10_000;
  const fetched: ClientEvent[] = [];
  const all = () => [...pushed, ...fetched];
  while (texts(all()).length < want && Date.now() < deadline) {
    fetched.push(...(await d.groups.fetchAll(d.connection)));
    if (texts(all()).length < want) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return all();
}

test("concurrent sends (not awaited one by one): every 1:1 and group message arrives exactly once and decrypts, own-device copies too, while messages arrive by push", { skip: missing, timeout: 120_000 }, async () => {
  const erin = await device("erin");
  const frank = await device("frank");
  const erin2 = await device("erin", erin, "ts-2");
  const range = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix} ${i}`);

  // The first sends to a contact race too: no session exists yet.
  const first = range(4, "first");
  await Promise.all(first.map((t) => erin.groups.messenger.sendText(erin.connection, "frank", t)));
  const burst = range(8, "burst");
  await Promise.all(burst.map((t) => erin.groups.messenger.sendText(erin.connection, "frank", t)));
  const atFrank = await collect(frank, 12);
  assert.deepEqual(failures(atFrank), []);
  assert.deepEqual(texts(atFrank).sort(), [...first, ...burst].map((t) => `erin: ${t}`).sort());
  const copies = await collect(erin2, 12);
  assert.deepEqual(failures(copies), []);
  assert.deepEqual(texts(copies).sort(), [...first, ...burst].map((t) => `erin: ${t}`).sort(), "erin's second device got one transcript of each");

  // Both ways at once, erin opening frank's messages by push while her own sends are in flight.
  const pushed: ClientEvent[] = [];
  const handled: Promise<unknown>[] = [];
  erin.connection.onPush((push) => handled.push(erin.groups.handlePush(erin.connection, push).then((events) => pushed.push(...events))));
  const fromErin = range(6, "crossing from erin");
  const fromFrank = range(6, "crossing from frank");
  await Promise.all([
    ...fromErin.map((t) => erin.groups.messenger.sendText(erin.connection, "frank", t)),
    ...fromFrank.map((t) => frank.groups.messenger.sendText(frank.connection, "erin", t)),
  ]);
  const atFrank2 = await collect(frank, 6);
  assert.deepEqual(failures(atFrank2), []);
  assert.deepEqual(texts(atFrank2).sort(), fromErin.map((t) => `erin: ${t}`).sort());
  const deadline = Date.now() + 10_000;
  while (texts(pushed).length < 6 && Date.now() < deadline) {
    await Promise.all(handled);
    if (texts(pushed).length < 6) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const atErin = await collect(erin, 6, pushed);
  assert.deepEqual(failures(atErin), []);
  assert.deepEqual(texts(atErin).sort(), fromFrank.map((t) => `frank: ${t}`).sort());

  // Two groups created at once (their CREATED announcements distribute sender keys over the same pairwise
  // sessions) while 1:1 sends go out, then messages to both groups and 1:1, all at once.
  const direct = range(3, "direct");
  const [[id, id2]] = await Promise.all([
    Promise.all([erin.groups.createGroup(erin.connection, "burst", ["frank"]), erin.groups.createGroup(erin.connection, "burst two", ["frank"])]),
    Promise.all(direct.map((t) => erin.groups.messenger.sendText(erin.connection, "frank", t))),
  ]);
  const group = range(4, "group");
  const group2 = range(4, "second group");
  const direct2 = range(3, "direct again");
  await Promise.all([
    ...group.map((t) => erin.groups.sendText(erin.connection, id, t)),
    ...group2.map((t) => erin.groups.sendText(erin.connection, id2, t)),
    ...direct2.map((t) => erin.groups.messenger.sendText(erin.connection, "frank", t)),
  ]);
  const sentToFrank = [...direct, ...group, ...group2, ...direct2].map((t) => `erin: ${t}`).sort();
  const atFrank3 = await collect(frank, sentToFrank.length);
  assert.deepEqual(failures(atFrank3), []);
  assert.deepEqual(texts(atFrank3).sort(), sentToFrank);
  assert.deepEqual(
    updates(atFrank3).filter((u) => u.kind === "Created").map((u) => u.kind === "Created" && u.name).sort(),
    ["burst", "burst two"],
  );
  // erin's second device: her transcripts and group messages, and frank's messages to erin (sent to each of her devices).
  const toErin2 = [...[...fromErin, ...direct, ...group, ...group2, ...direct2].map((t) => `erin: ${t}`), ...fromFrank.map((t) => `frank: ${t}`)].sort();
  const copies2 = await collect(erin2, toErin2.length);
  assert.deepEqual(failures(copies2), []);
  assert.deepEqual(texts(copies2).sort(), toErin2);

  // The sessions still agree afterwards, both ways (and a message reaches erin once, by push or by fetch).
  await Promise.all(handled);
  pushed.length = 0;
  await frank.groups.messenger.sendText(frank.connection, "erin", "still in step");
  await Promise.all(handled);
  const inStep = await collect(erin, 1, pushed);
  assert.deepEqual(failures(inStep), []);
  assert.deepEqual(texts(inStep), ["frank: still in step"]);
  await erin.groups.sendText(erin.connection, id, "group still in step");
  assert.deepEqual(texts(await collect(frank, 1)), ["erin: group still in step"]);

  for (const d of [erin, frank, erin2]) d.connection.close();
});

/**
 * Sealed group messages from this SDK to Rust CLI members through a live
 * server (issue 20, SPEC.md §19.8): the real `microbot-server` on loopback
 * (wss://, its certificate pinned), a TypeScript member with
 * `Messenger.sealedConnection` set and two CLI members who sent it a 1:1
 * message first (so it holds their profile keys). The TypeScript member
 * creates a group with them while they are offline and writes to it; both
 * CLI members read the message in the group, named. The creation
 * announcement (with the sender-key distribution before it) goes
 * identified, so that members without a record of the group can place it
 * (`introducesGroup`); the row the server stored for each member's copy of
 * the message names no sender: `sender_username` empty, `sender_device_id`
 * 0 (read with sqlite3 from the spawned server's database; that check is
 * skipped without the sqlite3 shell). With `sealedConnection` unset that
 * row reads `tessa|<device>` like the others.
 *
 * Needs the server and CLI binaries: MICROBOT_SERVER_BIN and
 * MICROBOT_CLI_BIN, or MICROBOT_BIN_DIR holding `microbot-server` and
 * `microbot`; skips with a printed reason without them.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { toHex } from "../src/bytes.js";
import { enrolDevice, login, registerAccount, uploadPreKeys } from "../src/client/account.js";
import { Connection } from "../src/client/connection.js";
import { Groups } from "../src/client/groups.js";
import { nodeSocketFactory } from "../src/client/node.js";
import { MemoryStore } from "../src/client/store.js";
import { decodeBase32, totpCode } from "../src/client/totp.js";
import { IdentityKeyPair } from "../src/identity.js";
import { LocalPreKeys } from "../src/prekeys.js";
import { systemRng } from "../src/rng.js";
import { runCli, startLiveServer, type CliRun, type LiveServer } from "./live_server.js";

const BIN_DIR = process.env["MICROBOT_BIN_DIR"];
const SERVER_BIN = process.env["MICROBOT_SERVER_BIN"] ?? (BIN_DIR ? join(BIN_DIR, "microbot-server") : undefined);
const CLI_BIN = process.env["MICROBOT_CLI_BIN"] ?? (BIN_DIR ? join(BIN_DIR, "microbot") : undefined);
function why(): string | undefined {
  if (!SERVER_BIN || !CLI_BIN) return "neither MICROBOT_SERVER_BIN + MICROBOT_CLI_BIN nor MICROBOT_BIN_DIR set";
  for (const bin of [SERVER_BIN, CLI_BIN]) if (!existsSync(bin)) return `missing: ${bin}`;
  return undefined;
}
const missing = why();
if (missing) console.log(`# sealed_group_live skipped: ${missing}`);
// The sqlite3 shell, to read the spawned server's stored rows (the check is skipped without it).
const SQLITE = ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3"].find((p) => existsSync(p));

const PASSWORD = "correct horse battery staple";
const dir = mkdtempSync(join(tmpdir(), "microbot-ts-sealed-group-"));
let live: LiveServer | undefined;

before(async () => {
  if (missing) return;
  live = await startLiveServer(SERVER_BIN!, join(dir, "server"));
});

after(() => {
  live?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the CLI with `args` in profile `profile`. */
function cli(profile: string, args: string[], input = "", onLine?: (line: string, stdin: NodeJS.WritableStream) => void): Promise<CliRun> {
  return runCli(CLI_BIN!, join(dir, "cli"), PASSWORD, profile, args, input, onLine);
}

/** Registers `username` with the CLI in profile `username` (two TOTP codes: confirm, enrol). */
async function registerCli(username: string): Promise<void> {
  const registered = await cli(username, ["register", username, "--server", live!.address, "--cert-sha256", live!.fingerprint], "", (line, stdin) => {
    const secret = /^secret: (\S+)/.exec(line.trim());
    if (secret) {
      const now = Date.now() / 1000;
      const key = decodeBase32(secret[1]!);
      stdin.end(`${totpCode(key, now)}\n${totpCode(key, now + 30)}\n`);
    }
  });
  assert.equal(registered.code, 0, registered.stdout + registered.stderr);
}

/** `sender_username|sender_device_id` of every envelope the server holds for `username`'s devices. */
function storedSenders(username: string): string[] {
  const query = `SELECT e.sender_username || '|' || e.sender_device_id FROM envelopes e JOIN devices d ON d.id = e.device_id JOIN accounts a ON a.id = d.account_id WHERE a.username = '${username}' ORDER BY e.id`;
  return execFileSync(SQLITE!, [join(dir, "server", "microbot.sqlite3"), query], { encoding: "utf8" }).trim().split("\n").filter((l) => l !== "");
}

test("a group message from the TypeScript SDK reaches Rust CLI members sealed: they read it, the server's rows name no sender", { skip: missing, timeout: 180_000 }, async () => {
  await registerCli("rhea");
  await registerCli("ross");
  const caPem = readFileSync(live!.certPemPath, "utf8");
  const connect = () => Connection.open({ url: `wss://${live!.address}/v1/ws`, socketFactory: nodeSocketFactory({ caPem, certSha256: live!.fingerprint }), clientAgent: "ts-sealed-group" });
  const connection = await connect();
  const now = Date.now() / 1000;
  const registration = await registerAccount(connection, "tessa", PASSWORD, now);
  const deviceKey = IdentityKeyPair.generate(systemRng);
  const identity = IdentityKeyPair.generate(systemRng);
  const deviceId = await enrolDevice(connection, "tessa", PASSWORD, { totpCode: totpCode(registration.totpSecret, now + 30) }, deviceKey, "ts");
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username: "tessa", deviceId, deviceKey, identity });
  await login(connection, deviceId, deviceKey);
  await uploadPreKeys(connection, systemRng, identity, store.preKeys(), 20);
  const groups = new Groups(store, store, systemRng);
  groups.messenger.sealedConnection = connect;

  // Each CLI member's first message carries its profile key (§19.7): tessa then holds every other member's.
  for (const who of ["rhea", "ross"]) {
    const hello = await cli(who, ["send", "tessa", `hello from ${who}`]);
    assert.equal(hello.code, 0, hello.stdout + hello.stderr);
  }
  const hellos = await groups.fetchAll(connection);
  assert.equal(hellos.filter((e) => e.type === "message").length, 2);
  for (const who of ["rhea", "ross"]) assert.equal(store.contactProfileKey(who)?.length, 32, `${who} shared its profile key`);

  const id = await groups.createGroup(connection, "sealed room", ["rhea", "ross"]);
  await groups.sendText(connection, id, "sealed from ts");
  if (SQLITE) {
    // Per CLI member: the sender-key distribution and the creation announcement (identified), then the message, sealed.
    for (const who of ["rhea", "ross"]) assert.deepEqual(storedSenders(who), [`tessa|${deviceId}`, `tessa|${deviceId}`, "|0"], `what the server stored for ${who}`);
  }

  const hex = toHex(id);
  for (const who of ["rhea", "ross"]) {
    const received = await cli(who, ["recv", "--json", "--only", "message", "--count", "1", "--timeout", "30"]);
    assert.equal(received.code, 0, received.stdout + received.stderr);
    const messages = received.stdout
      .split("\n")
      .filter((line) => line.trim().startsWith("{"))
      .map((line) => JSON.parse(line) as { type: string; from: string; text: string; conversation: { type: string; id: string; name: string } });
    assert.deepEqual(
      messages.map((m) => [m.type, m.from, m.text, m.conversation.type, m.conversation.id, m.conversation.name]),
      [["message", "tessa", "sealed from ts", "group", hex, "sealed room"]],
      `${who} reads the sealed group message: ${received.stdout}${received.stderr}`,
    );
  }
  connection.close();
});

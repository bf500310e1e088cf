/**
 * Interop through a live server (issue 16): the real `microbot-server` on
 * loopback (WebSocket over TLS, its certificate pinned by SHA-256 with the
 * PEM as the only CA), a TypeScript client (this SDK) and the Rust CLI
 * (`microbot`, over QUIC). They exchange 1:1 text messages both ways, one by
 * push, and compute the same safety number; and a group of three (one
 * TypeScript member, two CLI members) where each member sends one message
 * and every other member receives each exactly once.
 *
 * Needs MICROBOT_CLI_BIN and either MICROBOT_SERVER_BIN (spawned here) or
 * a running server's MICROBOT_SERVER_ADDR, MICROBOT_SERVER_FINGERPRINT and
 * MICROBOT_SERVER_CERT_PEM (as cli-client/tests/typescript_interop.rs
 * sets them); skips with a printed reason without them.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { enrolDevice, login, registerAccount, uploadPreKeys } from "../src/client/account.js";
import { Connection, ConnectionError } from "../src/client/connection.js";
import { Groups, type ClientEvent } from "../src/client/groups.js";
import { Messenger, type Incoming } from "../src/client/messenger.js";
import { enableSealedSender } from "../src/client/sealed.js";
import type { Envelope } from "../src/gen/transport_pb.js";
import { nodeSocketFactory } from "../src/client/node.js";
import { MemoryStore } from "../src/client/store.js";
import { decodeBase32, totpCode } from "../src/client/totp.js";
import { toHex } from "../src/bytes.js";
import { verifyDeviceList } from "../src/device_list.js";
import { IdentityKeyPair } from "../src/identity.js";
import { LocalPreKeys } from "../src/prekeys.js";
import { systemRng } from "../src/rng.js";
import { startLiveServer, type LiveServer, runCli } from "./live_server.js";

const SERVER_BIN = process.env["MICROBOT_SERVER_BIN"];
const CLI_BIN = process.env["MICROBOT_CLI_BIN"];
// A server already running (the Rust wrapper starts one in-process): its address, fingerprint and certificate.
const RUNNING = process.env["MICROBOT_SERVER_ADDR"];
const RUNNING_FINGERPRINT = process.env["MICROBOT_SERVER_FINGERPRINT"] ?? "";
const RUNNING_CERT = process.env["MICROBOT_SERVER_CERT_PEM"] ?? "";
function why(): string | undefined {
  if (!CLI_BIN) return "MICROBOT_CLI_BIN not set";
  if (!existsSync(CLI_BIN)) return `missing: ${CLI_BIN}`;
  if (RUNNING) return RUNNING_FINGERPRINT && existsSync(RUNNING_CERT) ? undefined : "MICROBOT_SERVER_FINGERPRINT / MICROBOT_SERVER_CERT_PEM not set";
  if (!SERVER_BIN) return "neither MICROBOT_SERVER_ADDR nor MICROBOT_SERVER_BIN set";
  return existsSync(SERVER_BIN) ? undefined : `missing: ${SERVER_BIN}`;
}
const missing = why();
// The sqlite3 shell, to read the spawned server's stored rows (the check is skipped without it).
const SQLITE = ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3"].find((p) => existsSync(p));
if (missing) console.log(`# live_interop skipped: ${missing} (run cargo test -p microbot-cli --test typescript_interop)`);

const PASSWORD = "correct horse battery staple";
const dir = mkdtempSync(join(tmpdir(), "microbot-ts-interop-"));
let live: LiveServer | undefined;
let address = "";
let fingerprint = "";
let certPemPath = join(dir, "server", "cert.pem");

/** Runs the CLI (profile "rusty") with `args`; resolves with its exit code and output. */
function cli(args: string[], input = "", onLine?: (line: string, stdin: NodeJS.WritableStream) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return cliAs("rusty", args, input, onLine);
}

/** Runs the CLI with `args` in `profile`. */
function cliAs(profile: string, args: string[], input = "", onLine?: (line: string, stdin: NodeJS.WritableStream) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCli(CLI_BIN!, join(dir, "cli"), PASSWORD, profile, args, input, onLine);
}

before(async () => {
  if (missing) return;
  if (RUNNING) {
    address = RUNNING;
    fingerprint = RUNNING_FINGERPRINT;
    certPemPath = RUNNING_CERT;
    return;
  }
  live = await startLiveServer(SERVER_BIN!, join(dir, "server"));
  address = live.address;
  fingerprint = live.fingerprint;
});

after(() => {
  live?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("a TypeScript client over wss:// and the Rust CLI chat 1:1 both ways and agree on the safety number", { skip: missing, timeout: 120_000 }, async () => {
  // The CLI registers "rusty" (two TOTP codes: confirm, enrol).
  const registered = await cli(["register", "rusty", "--server", address, "--cert-sha256", fingerprint], "", (line, stdin) => {
    const secret = /^secret: (\S+)/.exec(line.trim());
    if (secret) {
      const now = Date.now() / 1000;
      const key = decodeBase32(secret[1]!);
      stdin.end(`${totpCode(key, now)}\n${totpCode(key, now + 30)}\n`);
    }
  });
  assert.equal(registered.code, 0, registered.stdout + registered.stderr);

  // The TypeScript client registers "tessa" over the WebSocket, pinned.
  const caPem = readFileSync(certPemPath, "utf8");
  const connect = () => Connection.open({ url: `wss://${address}/v1/ws`, socketFactory: nodeSocketFactory({ caPem, certSha256: fingerprint }), clientAgent: "ts-interop" });
  // A wrong pin (one bit off) is refused before any frame is sent.
  const wrongPin = (fingerprint.slice(0, 63) + (fingerprint.endsWith("0") ? "1" : "0")).toLowerCase();
  await assert.rejects(
    Connection.open({ url: `wss://${address}/v1/ws`, socketFactory: nodeSocketFactory({ caPem, certSha256: wrongPin }) }),
    (e) => e instanceof ConnectionError && e.kind === "ConnectFailed",
  );
  const connection = await connect();
  const now = Date.now() / 1000;
  const registration = await registerAccount(connection, "tessa", PASSWORD, now);
  const deviceKey = IdentityKeyPair.generate(systemRng);
  const identity = IdentityKeyPair.generate(systemRng);
  const deviceId = await enrolDevice(connection, "tessa", PASSWORD, { totpCode: totpCode(registration.totpSecret, now + 30) }, deviceKey, "ts");
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username: "tessa", deviceId, deviceKey, identity });
  const loggedIn = await login(connection, deviceId, deviceKey);
  assert.equal(loggedIn.username, "tessa");
  await uploadPreKeys(connection, systemRng, identity, store.preKeys(), 20);
  const messenger = new Messenger(store, systemRng);
  // Contacts may send to tessa sealed once they hold her profile key (§19.7).
  await enableSealedSender(connection, store, systemRng);

  // Rust → TypeScript (queued, fetched).
  const sent = await cli(["send", "tessa", "hello from rust"]);
  assert.equal(sent.code, 0, sent.stdout + sent.stderr);
  const fetched = await messenger.fetchAll(connection);
  assert.deepEqual(texts(fetched), ["hello from rust"]);
  assert.equal(fetched[0]!.from, "rusty");

  // TypeScript → Rust, sealed (§19.8): rusty's message carried its profile key; the send goes over a
  // connection that never logs in, and the server's stored row names no sender.
  assert.equal(store.contactProfileKey("rusty")?.length, 32, "the CLI shared its profile key");
  messenger.sealedConnection = connect;
  await messenger.sendText(connection, "rusty", "hello from typescript");
  if (live && SQLITE) {
    const rows = execFileSync(SQLITE, [join(dir, "server", "microbot.sqlite3"), "SELECT sender_username || '|' || sender_device_id FROM envelopes"], { encoding: "utf8" }).trim().split("\n");
    assert.deepEqual(rows, ["|0"], "the stored sealed envelope holds no sender");
  }
  const received = await cli(["recv", "--json", "--only", "message", "--count", "1", "--timeout", "30"]);
  assert.equal(received.code, 0, received.stdout + received.stderr);
  assert.match(received.stdout, /hello from typescript/);
  // The CLI's account keeps a signed device list (§20): it verified under rusty's identity and was remembered.
  const rustyList = store.deviceList("rusty");
  assert.ok(rustyList && rustyList.length > 0, "no verified device list remembered for the CLI's account");
  assert.deepEqual(verifyDeviceList(rustyList, store.contactIdentity("rusty")!, "rusty").deviceIds, [fetched[0]!.deviceId]);

  // Rust → TypeScript again, by push on the open connection: sealed now that the CLI learned
  // tessa's profile key from her message; the envelope the server delivered names no sender.
  const delivered: Envelope[] = [];
  const pushed = new Promise<Incoming[]>((resolve) => {
    connection.onPush((push) => {
      if (push.event.case === "envelope") {
        delivered.push(push.event.value);
        void messenger.take(connection, [push.event.value]).then(resolve);
      }
    });
  });
  const second = await cli(["send", "tessa", "second from rust"]);
  assert.equal(second.code, 0, second.stdout + second.stderr);
  const secondIn = await pushed;
  assert.deepEqual(texts(secondIn), ["second from rust"]);
  assert.deepEqual([delivered[0]!.senderUsername, delivered[0]!.senderDeviceId], ["", 0n], "the server delivered the envelope without a sender");
  assert.deepEqual([secondIn[0]!.from, secondIn[0]!.sealed], ["rusty", true]);

  // Both sides show the same 60 digits.
  const verify = await cli(["verify", "tessa"]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  const ours = messenger.safetyNumber("rusty");
  assert.ok(ours);
  const rustDigits = verify.stdout.replace(/[^0-9 \n]/g, "").match(/\d{5}( \d{5}){11}/)?.[0];
  assert.equal(rustDigits?.replace(/ /g, ""), ours.digits, verify.stdout);
  if (process.env["MICROBOT_INTEROP_VERBOSE"]) console.log(received.stdout, verify.stdout, ours.display(), fetched[0]!.deviceId);
  connection.close();
});

function texts(messages: Incoming[]): string[] {
  return messages.map((m) => (m.content.body.case === "text" ? m.content.body.value.text : `<${m.content.body.case}>`));
}

/** Registers `username` with the CLI in profile `username` (two TOTP codes: confirm, enrol). */
async function registerCli(username: string): Promise<void> {
  const registered = await cliAs(username, ["register", username, "--server", address, "--cert-sha256", fingerprint], "", (line, stdin) => {
    const secret = /^secret: (\S+)/.exec(line.trim());
    if (secret) {
      const now = Date.now() / 1000;
      const key = decodeBase32(secret[1]!);
      stdin.end(`${totpCode(key, now)}\n${totpCode(key, now + 30)}\n`);
    }
  });
  assert.equal(registered.code, 0, registered.stdout + registered.stderr);
}

/** "from: text" of the CLI's JSON message lines in group `groupHex` (every line must be a message of that group named `name`). */
function cliGroupTexts(stdout: string, groupHex: string, name: string): string[] {
  return stdout
    .split("\n")
    .filter((line) => line.trim().startsWith("{"))
    .map((line) => {
      const event = JSON.parse(line) as { type: string; from: string; text: string; conversation: { type: string; id: string; name: string } };
      assert.equal(event.type, "message", line);
      assert.deepEqual([event.conversation.type, event.conversation.id, event.conversation.name], ["group", groupHex, name], line);
      return `${event.from}: ${event.text}`;
    });
}

test("a group of three across implementations: one TypeScript member, two Rust CLI members; each message reaches every other member exactly once", { skip: missing, timeout: 180_000 }, async () => {
  await registerCli("rita");
  await registerCli("rory");
  const caPem = readFileSync(certPemPath, "utf8");
  const connection = await Connection.open({ url: `wss://${address}/v1/ws`, socketFactory: nodeSocketFactory({ caPem, certSha256: fingerprint }), clientAgent: "ts-interop" });
  const now = Date.now() / 1000;
  const registration = await registerAccount(connection, "tina", PASSWORD, now);
  const deviceKey = IdentityKeyPair.generate(systemRng);
  const identity = IdentityKeyPair.generate(systemRng);
  const deviceId = await enrolDevice(connection, "tina", PASSWORD, { totpCode: totpCode(registration.totpSecret, now + 30) }, deviceKey, "ts");
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username: "tina", deviceId, deviceKey, identity });
  await login(connection, deviceId, deviceKey);
  await uploadPreKeys(connection, systemRng, identity, store.preKeys(), 20);
  const groups = new Groups(store, store, systemRng);
  // Profile keys go round in 1:1 messages (tina's to both, rory's to rita), so rita holds every
  // other member's access key and sends to the group sealed (§19.8); tina opens that (content type 0x02).
  await enableSealedSender(connection, store, systemRng);
  await groups.messenger.sendText(connection, "rita", "hello rita");
  await groups.messenger.sendText(connection, "rory", "hello rory");
  const roryHello = await cliAs("rory", ["send", "rita", "hello rita, from rory"]);
  assert.equal(roryHello.code, 0, roryHello.stdout + roryHello.stderr);
  for (const [who, count] of [["rita", "2"], ["rory", "1"]] as const) {
    const hellos = await cliAs(who, ["recv", "--json", "--only", "message", "--count", count, "--timeout", "30"]);
    assert.equal(hellos.code, 0, hellos.stdout + hellos.stderr);
  }

  // The TypeScript member creates the group (name sealed for the server, §11.5) and writes first.
  const id = await groups.createGroup(connection, "mixed", ["rita", "rory"]);
  const hex = toHex(id);
  await groups.sendText(connection, id, "from ts");

  // rita (Rust) reads it, with the name the TypeScript client sealed, and answers.
  const ritaFirst = await cliAs("rita", ["recv", "--json", "--only", "message", "--count", "1", "--timeout", "30"]);
  assert.equal(ritaFirst.code, 0, ritaFirst.stdout + ritaFirst.stderr);
  assert.deepEqual(cliGroupTexts(ritaFirst.stdout, hex, "mixed"), ["tina: from ts"]);
  const ritaSend = await cliAs("rita", ["send", hex, "from rita"]);
  assert.equal(ritaSend.code, 0, ritaSend.stdout + ritaSend.stderr);

  // rory (Rust) reads both, then answers.
  const roryFirst = await cliAs("rory", ["recv", "--json", "--only", "message", "--count", "2", "--timeout", "30"]);
  assert.equal(roryFirst.code, 0, roryFirst.stdout + roryFirst.stderr);
  assert.deepEqual(cliGroupTexts(roryFirst.stdout, hex, "mixed"), ["tina: from ts", "rita: from rita"]);
  const rorySend = await cliAs("rory", ["send", hex, "from rory"]);
  assert.equal(rorySend.code, 0, rorySend.stdout + rorySend.stderr);

  // Exactly once: rita gets rory's message and nothing else; rory gets nothing more (no echo, no repeat).
  const ritaLast = await cliAs("rita", ["recv", "--json", "--only", "message", "--timeout", "4"]);
  assert.equal(ritaLast.code, 0, ritaLast.stdout + ritaLast.stderr);
  assert.deepEqual(cliGroupTexts(ritaLast.stdout, hex, "mixed"), ["rory: from rory"]);
  const roryLast = await cliAs("rory", ["recv", "--json", "--only", "message", "--timeout", "3"]);
  assert.equal(roryLast.code, 0, roryLast.stdout + roryLast.stderr);
  assert.deepEqual(cliGroupTexts(roryLast.stdout, hex, "mixed"), []);

  // The TypeScript member gets both Rust messages, once each, in the group; a second fetch finds nothing.
  const events = await groups.fetchAll(connection);
  const got = (list: ClientEvent[]) =>
    list.flatMap((e) => (e.type === "message" && e.message.groupId && toHex(e.message.groupId) === hex && e.message.content.body.case === "text" ? [`${e.message.from}: ${e.message.content.body.value.text}`] : []));
  assert.deepEqual(got(events), ["rita: from rita", "rory: from rory"]);
  const fromRita = events.find((e) => e.type === "message" && e.message.from === "rita" && e.message.groupId);
  assert.ok(fromRita?.type === "message" && fromRita.message.sealed === true, "rita's group message came sealed");
  assert.deepEqual(events.filter((e) => e.type === "decryptionFailed"), []);
  assert.deepEqual(got(await groups.fetchAll(connection)), []);

  // The other way round: a group the Rust CLI creates reaches the TypeScript member with its name (the CLI's sealed blob opens).
  const created = await cliAs("rory", ["group", "create", "rusty made", "tina"]);
  assert.equal(created.code, 0, created.stdout + created.stderr);
  const news = await groups.fetchAll(connection);
  const made = news.find((e) => e.type === "groupChanged" && e.update.kind === "Created");
  assert.ok(made?.type === "groupChanged", JSON.stringify(news.map((e) => e.type)));
  assert.deepEqual(made.update, { kind: "Created", by: "rory", name: "rusty made" });
  assert.deepEqual(groups.group(made.groupId)?.members.map((m) => `${m.username}:${m.role}`).sort(), ["rory:admin", "tina:member"]);
  connection.close();
});

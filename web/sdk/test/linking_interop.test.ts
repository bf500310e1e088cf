/**
 * Device linking across implementations through a live server (SPEC.md
 * §12.14): the Rust CLI (`microbot devices link CODE --history N`, over
 * QUIC) links a TypeScript new device (over wss://, pinned), and a
 * TypeScript existing device links a Rust CLI new device (`microbot link`);
 * in both cases the linked device then chats with a contact and the
 * account's other device sees its messages.
 *
 * Needs MICROBOT_CLI_BIN and either MICROBOT_SERVER_BIN (spawned here) or
 * a running server's MICROBOT_SERVER_ADDR, MICROBOT_SERVER_FINGERPRINT and
 * MICROBOT_SERVER_CERT_PEM (as cli-client/tests/typescript_interop.rs
 * sets them); skips with a printed reason without them.
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
import { enrolProvisioned, linkDevice, LinkRequest, type HistoryEntry } from "../src/client/linking.js";
import { nodeSocketFactory } from "../src/client/node.js";
import { MemoryStore } from "../src/client/store.js";
import { decodeBase32, totpCode } from "../src/client/totp.js";
import { IdentityKeyPair } from "../src/identity.js";
import { LocalPreKeys } from "../src/prekeys.js";
import { systemRng } from "../src/rng.js";
import { startLiveServer, type LiveServer, runCli, type CliRun } from "./live_server.js";

const SERVER_BIN = process.env["MICROBOT_SERVER_BIN"];
const CLI_BIN = process.env["MICROBOT_CLI_BIN"];
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
if (missing) console.log(`# linking_interop skipped: ${missing} (run cargo test -p microbot-cli --test typescript_interop)`);

const PASSWORD = "correct horse battery staple";
const dir = mkdtempSync(join(tmpdir(), "microbot-ts-link-interop-"));
let live: LiveServer | undefined;
let address = "";
let fingerprint = "";
let certPemPath = join(dir, "server", "cert.pem");

/** Runs the CLI with `args` in `profile`; `onLine` sees each stdout line (and the CLI's stdin), else `input` is its whole stdin. */
function cli(profile: string, args: string[], input = "", onLine?: (line: string, stdin: NodeJS.WritableStream) => void): Promise<CliRun> {
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

function connect(): Promise<Connection> {
  const caPem = readFileSync(certPemPath, "utf8");
  return Connection.open({ url: `wss://${address}/v1/ws`, socketFactory: nodeSocketFactory({ caPem, certSha256: fingerprint }), clientAgent: "ts-link-interop" });
}

interface Device {
  connection: Connection;
  store: MemoryStore;
  groups: Groups;
  secret: Uint8Array;
}

async function registerTs(username: string): Promise<Device> {
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
  return { connection, store, groups: new Groups(store, store, systemRng), secret };
}

/** Registers `username` with the CLI in profile `username`; returns its TOTP secret. */
async function registerCli(username: string): Promise<Uint8Array> {
  let secret: Uint8Array | undefined;
  const registered = await cli(username, ["register", username, "--server", address, "--cert-sha256", fingerprint], "", (line, stdin) => {
    const match = /^secret: (\S+)/.exec(line.trim());
    if (match) {
      const now = Date.now() / 1000;
      secret = decodeBase32(match[1]!);
      stdin.end(`${totpCode(secret, now)}\n${totpCode(secret, now + 30)}\n`);
    }
  });
  assert.equal(registered.code, 0, registered.stdout + registered.stderr);
  return secret!;
}

const texts = (events: ClientEvent[]) =>
  events.flatMap((e) => (e.type === "message" && e.message.content.body.case === "text" ? [`${e.message.sentCopy ? "copy " : ""}${e.message.from}: ${e.message.content.body.value.text}`] : []));

async function collect(d: Device, want: number): Promise<ClientEvent[]> {
  const deadline = Date.now() + 15_000;
  const out: ClientEvent[] = [];
  while (texts(out).length < want && Date.now() < deadline) {
    out.push(...(await d.groups.fetchAll(d.connection)));
    if (texts(out).length < want) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return out;
}

/** The `text` of each JSON message line the CLI printed, as "from: text". */
function cliTexts(stdout: string): string[] {
  return stdout
    .split("\n")
    .filter((line) => line.trim().startsWith("{"))
    .flatMap((line) => {
      const event = JSON.parse(line) as { type: string; from?: string; text?: string };
      return event.type === "message" ? [`${event.from}: ${event.text}`] : [];
    });
}

test("the Rust CLI links a TypeScript new device (with history); the new device chats and the CLI sees it", { skip: missing, timeout: 180_000 }, async () => {
  const secret = await registerCli("ruth");
  const tom = await registerTs("tom");
  // ruth (CLI) and tom (TS) talk first, so ruth trusts tom's key and has history.
  const sent = await cli("ruth", ["send", "tom", "hello tom, from the cli"]);
  assert.equal(sent.code, 0, sent.stdout + sent.stderr);
  assert.deepEqual(texts(await collect(tom, 1)), ["ruth: hello tom, from the cli"]);

  // The TypeScript new device shows a code; the CLI, logged in as ruth, types it with --history.
  const request = await LinkRequest.create({ connect });
  const waiting = request.wait({ timeoutMs: 60_000 });
  const linked = await cli("ruth", ["devices", "link", request.text, "--history", "10"]);
  assert.equal(linked.code, 0, linked.stdout + linked.stderr);
  const provisioned = await waiting;
  assert.equal(provisioned.username, "ruth");
  assert.deepEqual(provisioned.contacts.map((c) => c.username), ["tom"]);
  assert.ok(bytesEqual(provisioned.contacts[0]!.identityKey, tom.store.device()!.identity.publicKey.toBytes()), "tom's key as ruth trusts it");
  assert.deepEqual(
    provisioned.history.map((h) => `${h.author}: ${h.content.body.case === "text" ? h.content.body.value.text : h.content.body.case}`),
    ["ruth: hello tom, from the cli"],
  );

  const conn = await connect();
  const store = new MemoryStore(new LocalPreKeys());
  const device = await enrolProvisioned(conn, provisioned, { password: PASSWORD, secondFactor: { totpCode: totpCode(secret, Date.now() / 1000 + 60) }, store, deviceName: "ts linked" });
  provisioned.wipe();
  assert.equal(device.username, "ruth");
  const ruth2: Device = { connection: conn, store, groups: new Groups(store, store, systemRng), secret };

  // tom writes to ruth: the TypeScript new device and the CLI both read it.
  await tom.groups.messenger.sendText(tom.connection, "ruth", "to both of ruth's devices");
  assert.deepEqual(texts(await collect(ruth2, 1)), ["tom: to both of ruth's devices"]);
  // The linked device answers: tom reads it; the CLI (ruth's first device) gets it as its own sent message.
  await ruth2.groups.messenger.sendText(ruth2.connection, "tom", "from ruth's new TS device");
  assert.deepEqual(texts(await collect(tom, 1)), ["ruth: from ruth's new TS device"]);
  const atCli = await cli("ruth", ["recv", "--json", "--only", "message", "--count", "2", "--timeout", "30"]);
  assert.equal(atCli.code, 0, atCli.stdout + atCli.stderr);
  assert.deepEqual(cliTexts(atCli.stdout), ["tom: to both of ruth's devices", "ruth: from ruth's new TS device"]);
  for (const d of [tom, ruth2]) d.connection.close();
});

test("a TypeScript existing device links a Rust CLI new device (microbot link); the CLI device chats and the TypeScript device sees it", { skip: missing, timeout: 180_000 }, async () => {
  const tara = await registerTs("tara");
  const uma = await registerTs("uma");
  await tara.groups.messenger.sendText(tara.connection, "uma", "hi uma");
  const earlier = (await collect(uma, 1)).flatMap((e) => (e.type === "message" ? [e.message] : []));
  assert.equal(earlier.length, 1);
  const history: HistoryEntry[] = earlier.map((m) => ({ conversation: { kind: "direct", username: "uma" }, author: "tara", content: m.content }));

  // `microbot link` prints the code; the TypeScript device sends the account; the CLI then reads the password (env) and a TOTP code (stdin).
  let failure: unknown;
  const linkedRun = await cli("tara-cli", ["link", "--server", address, "--cert-sha256", fingerprint, "--wait", "60"], "", (line, stdin) => {
    const code = /^code: (\S+)/.exec(line.trim());
    if (!code) return;
    linkDevice(tara.connection, code[1]!, { store: tara.store, contacts: ["uma"], history }).then(
      (summary) => {
        assert.deepEqual(summary, { contacts: 1, groups: 0, history: 1 });
        stdin.end(`${totpCode(tara.secret, Date.now() / 1000 + 60)}\n`);
      },
      (error: unknown) => {
        failure = error;
        stdin.end();
      },
    );
  });
  assert.equal(failure, undefined);
  assert.equal(linkedRun.code, 0, linkedRun.stdout + linkedRun.stderr);
  assert.match(linkedRun.stdout, /Received account tara \(1 contacts, 1 history messages\)/);

  // uma writes to tara: the CLI device and the TypeScript device both read it.
  await uma.groups.messenger.sendText(uma.connection, "tara", "to both of tara's devices");
  const atCli = await cli("tara-cli", ["recv", "--json", "--only", "message", "--count", "1", "--timeout", "30"]);
  assert.equal(atCli.code, 0, atCli.stdout + atCli.stderr);
  assert.deepEqual(cliTexts(atCli.stdout), ["uma: to both of tara's devices"]);
  assert.deepEqual(texts(await collect(tara, 1)), ["uma: to both of tara's devices"]);

  // The CLI device answers uma: uma reads it, the TypeScript device gets an own-device copy.
  const answer = await cli("tara-cli", ["send", "uma", "from tara's new CLI device"]);
  assert.equal(answer.code, 0, answer.stdout + answer.stderr);
  assert.deepEqual(texts(await collect(uma, 1)), ["tara: from tara's new CLI device"]);
  assert.deepEqual(texts(await collect(tara, 1)), ["copy tara: from tara's new CLI device"]);
  for (const d of [tara, uma]) d.connection.close();
});

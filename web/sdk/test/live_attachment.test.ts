/**
 * Attachment interop through a live server (issue 16): a TypeScript client
 * (this SDK, over `wss://` pinned, attachments on `/v1/ws/attachment`) and
 * the Rust CLI (`microbot`, over QUIC) send each other a 1 MiB file through
 * the real server; the SHA-256 of what arrives equals the SHA-256 of what
 * left, both ways. On the TypeScript side the first attachment socket of each
 * transfer is cut part-way, so the upload resumes from the committed offset
 * and the download from the bytes already taken.
 *
 * Needs MICROBOT_CLI_BIN and a running server's MICROBOT_SERVER_ADDR,
 * MICROBOT_SERVER_FINGERPRINT and MICROBOT_SERVER_CERT_PEM (as
 * cli-client/tests/typescript_interop.rs sets them); skips with a
 * printed reason without them.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, test } from "node:test";

import { enrolDevice, login, registerAccount, uploadPreKeys } from "../src/client/account.js";
import { attachmentContent, downloadAttachment, uploadAttachment, type TransferOptions } from "../src/client/attachments.js";
import { fileSink, fileSource } from "../src/client/attachments_node.js";
import { Connection, type SocketFactory, type SocketLike } from "../src/client/connection.js";
import { Messenger } from "../src/client/messenger.js";
import { nodeSocketFactory } from "../src/client/node.js";
import { MemoryStore } from "../src/client/store.js";
import { decodeBase32, totpCode } from "../src/client/totp.js";
import { IdentityKeyPair } from "../src/identity.js";
import { LocalPreKeys } from "../src/prekeys.js";
import { systemRng } from "../src/rng.js";

const CLI_BIN = process.env["MICROBOT_CLI_BIN"];
const ADDRESS = process.env["MICROBOT_SERVER_ADDR"] ?? "";
const FINGERPRINT = process.env["MICROBOT_SERVER_FINGERPRINT"] ?? "";
const CERT = process.env["MICROBOT_SERVER_CERT_PEM"] ?? "";
function why(): string | undefined {
  if (!CLI_BIN) return "MICROBOT_CLI_BIN not set";
  if (!existsSync(CLI_BIN)) return `missing: ${CLI_BIN}`;
  if (!ADDRESS || !FINGERPRINT || !existsSync(CERT)) return "MICROBOT_SERVER_ADDR / MICROBOT_SERVER_FINGERPRINT / MICROBOT_SERVER_CERT_PEM not set";
  return undefined;
}
const missing = why();
if (missing) console.log(`# live_attachment skipped: ${missing} (run cargo test -p microbot-cli --test typescript_interop)`);

const PASSWORD = "correct horse battery staple";
const FILE_LEN = 1 << 20;
// Fresh names per run, so the test can run again against the same server.
const SUFFIX = String(Math.floor(Math.random() * 1e6));
const RUSTY = `rusty${SUFFIX}`;
const TESSA = `tessa${SUFFIX}`;
const dir = mkdtempSync(join(tmpdir(), "microbot-ts-attachment-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the CLI with `args`; resolves with its exit code and output. */
function cli(args: string[], onLine?: (line: string, stdin: NodeJS.WritableStream) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(CLI_BIN!, ["--profile", "rusty", ...args], {
      env: { ...process.env, MICROBOT_HOME: join(dir, "cli"), MICROBOT_PASSWORD: PASSWORD, MICROBOT_CONNECT_TIMEOUT: "20", MICROBOT_PASSPHRASE: "" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    createInterface({ input: child.stdout! }).on("line", (line) => {
      stdout += line + "\n";
      onLine?.(line, child.stdin!);
    });
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    if (!onLine) child.stdin!.end();
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/**
 * A socket factory whose next attachment socket, once `cut.after` bytes
 * arrived on it, drops what follows and is cut (the server's bytes stop mid-stream).
 */
function cuttingFactory(base: SocketFactory, cut: { after: number | undefined; done: boolean }): SocketFactory {
  return (url, protocol) => {
    const socket = base(url, protocol);
    const limit = url.endsWith("/attachment") ? cut.after : undefined;
    if (limit === undefined) return socket;
    cut.after = undefined;
    let seen = 0;
    return new Proxy(socket, {
      set: (target, key, value) => {
        if (key !== "onmessage" || typeof value !== "function") return Reflect.set(target, key, value);
        const handler = value as (event: { data: unknown }) => void;
        target.onmessage = (event) => {
          if (cut.done) return;
          seen += event.data instanceof ArrayBuffer ? event.data.byteLength : 0;
          handler(event);
          if (seen >= limit) {
            cut.done = true;
            target.terminate?.();
          }
        };
        return true;
      },
    });
  };
}

/** Transfer options whose first attachment socket is cut once `cutAt` bytes went through; records progress. */
function cutting(base: Omit<TransferOptions, "onProgress" | "onSocket">, cutAt: number) {
  const seen = { cut: false, progress: [] as number[], attempts: [] as number[], resumedFrom: undefined as number | undefined };
  let current: SocketLike | undefined;
  let currentAttempt = 0;
  const options: TransferOptions = {
    ...base,
    onSocket: (socket, attempt) => {
      current = socket;
      currentAttempt = attempt;
      seen.attempts.push(attempt);
    },
    onProgress: (done) => {
      seen.progress.push(done);
      if (currentAttempt === 1 && seen.resumedFrom === undefined) seen.resumedFrom = done;
      if (!seen.cut && currentAttempt === 0 && done >= cutAt) {
        seen.cut = true;
        current?.terminate?.();
      }
    },
  };
  return { options, seen };
}

test("a 1 MiB file from TypeScript to the Rust CLI and one back, identical bytes both ways, each transfer resumed after a cut socket", { skip: missing, timeout: 180_000 }, async () => {
  const registered = await cli(["register", RUSTY, "--server", ADDRESS, "--cert-sha256", FINGERPRINT], (line, stdin) => {
    const secret = /^secret: (\S+)/.exec(line.trim());
    if (secret) {
      const now = Date.now() / 1000;
      const key = decodeBase32(secret[1]!);
      stdin.end(`${totpCode(key, now)}\n${totpCode(key, now + 30)}\n`);
    }
  });
  assert.equal(registered.code, 0, registered.stdout + registered.stderr);

  const socketFactory = nodeSocketFactory({ caPem: readFileSync(CERT, "utf8"), certSha256: FINGERPRINT });
  const url = `wss://${ADDRESS}/v1/ws`;
  const connection = await Connection.open({ url, socketFactory, clientAgent: "ts-attachment-interop" });
  const now = Date.now() / 1000;
  const registration = await registerAccount(connection, TESSA, PASSWORD, now);
  const deviceKey = IdentityKeyPair.generate(systemRng);
  const identity = IdentityKeyPair.generate(systemRng);
  const deviceId = await enrolDevice(connection, TESSA, PASSWORD, { totpCode: totpCode(registration.totpSecret, now + 30) }, deviceKey, "ts");
  const store = new MemoryStore(new LocalPreKeys());
  store.setDevice({ username: TESSA, deviceId, deviceKey, identity });
  await login(connection, deviceId, deviceKey);
  await uploadPreKeys(connection, systemRng, identity, store.preKeys(), 20);
  const messenger = new Messenger(store, systemRng);
  const base = { url, socketFactory, connection: () => Promise.resolve(connection), deviceId, deviceKey };

  // TypeScript → Rust: upload (cut at 300 KB, resumed), pointer in a content message, the CLI fetches the file.
  const outgoing = randomBytes(FILE_LEN);
  const outPath = join(dir, "from-ts.bin");
  writeFileSync(outPath, outgoing);
  const source = await fileSource(outPath);
  const up = cutting(base, 300_000);
  const pointer = await uploadAttachment(up.options, systemRng, source, { fileName: "from-ts.bin", contentType: "application/octet-stream" }).finally(() => source.close());
  assert.ok(up.seen.cut, "the first upload socket was cut");
  assert.deepEqual(up.seen.attempts.slice(0, 2), [0, 1]);
  assert.ok((up.seen.resumedFrom ?? 0) > 0, `the upload resumed from a committed offset > 0, not from the start (${up.seen.resumedFrom})`);
  assert.equal(up.seen.progress.at(-1), FILE_LEN + 16 * 16, "progress ends at the ciphertext length");
  await messenger.sendContent(connection, RUSTY, attachmentContent(systemRng, pointer));
  const received = await cli(["recv", "--json", "--only", "message", "--count", "1", "--timeout", "30"]);
  assert.equal(received.code, 0, received.stdout + received.stderr);
  const message = JSON.parse(received.stdout.trim().split("\n").at(-1)!) as { id: string; file: { name: string; size: number } | null };
  assert.equal(message.file?.name, "from-ts.bin");
  assert.equal(message.file?.size, FILE_LEN);
  const rustGot = join(dir, "rust-got.bin");
  const got = await cli(["file", "get", message.id, rustGot]);
  assert.equal(got.code, 0, got.stdout + got.stderr);
  assert.equal(sha256(readFileSync(rustGot)), sha256(outgoing), "the CLI got the same bytes");

  // Rust → TypeScript: the CLI sends a file, the TypeScript client downloads it (cut at 400 KB, resumed) and decrypts.
  const incoming = randomBytes(FILE_LEN);
  const inPath = join(dir, "from-rust.bin");
  writeFileSync(inPath, incoming);
  const sent = await cli(["file", "send", TESSA, inPath]);
  assert.equal(sent.code, 0, sent.stdout + sent.stderr);
  const fetched = await messenger.fetchAll(connection);
  const withFile = fetched.find((m) => m.content.body.case === "attachment");
  assert.ok(withFile && withFile.content.body.case === "attachment", `no file message among ${fetched.length}`);
  const filePointer = withFile.content.body.value;
  assert.equal(filePointer.size, BigInt(FILE_LEN));
  const tsGot = join(dir, "ts-got.bin");
  const sink = fileSink(tsGot);
  const cut = { after: 400_000 as number | undefined, done: false };
  const progress: number[] = [];
  const attempts: number[] = [];
  await downloadAttachment(
    { ...base, socketFactory: cuttingFactory(socketFactory, cut), onProgress: (done) => progress.push(done), onSocket: (_s, attempt) => attempts.push(attempt) },
    filePointer,
    sink,
  );
  await sink.commit();
  assert.ok(cut.done, "the first download socket was cut");
  assert.deepEqual(attempts, [0, 1]);
  assert.ok(progress.some((p) => p >= 400_000 && p < FILE_LEN), "bytes were taken before the cut and kept");
  assert.equal(progress.at(-1), FILE_LEN + 16 * 16);
  assert.equal(sha256(readFileSync(tsGot)), sha256(incoming), "the TypeScript client got the same bytes");
  connection.close();
});

/**
 * What the dashboard's browser stories share: the real `microbot-server`
 * from `$MICROBOT_BIN_DIR` (temp data dir, loopback admin listener serving
 * this package's dist/), admins made with `microbot-server admin add`,
 * TOTP codes computed from the secret it prints, Debian's Chromium through
 * playwright-core, and screenshots.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { client, IdentityKeyPair, LocalPreKeys, systemRng } from "@microbot/sdk";
import { nodeSocketFactory } from "@microbot/sdk/node";
import { chromium, type Browser, type Page } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
/** The built dashboard the server serves. */
export const DIST = join(here, "..", "dist");
/** Where screenshots go (written only with MICROBOT_SCREENSHOTS=1, as web/app's). */
export const SCREENSHOTS = join(here, "..", "..", "..", "docs", "screenshots");
const BIN_DIR = process.env["MICROBOT_BIN_DIR"];
const CHROMIUM = process.env["MICROBOT_CHROMIUM"] ?? "/usr/bin/chromium";
const ARGON = ["--argon2-memory-kib", "256", "--argon2-iterations", "1"];

/** Why the stories cannot run here (skip), or undefined; throws under CI. */
export function missing(): string | undefined {
  let why: string | undefined;
  if (!BIN_DIR) why = "MICROBOT_BIN_DIR is not set (scripts/test.sh exports it after building the binaries)";
  else if (!existsSync(join(BIN_DIR, "microbot-server"))) why = `no microbot-server in ${BIN_DIR}`;
  else if (!existsSync(CHROMIUM)) why = `no Chromium at ${CHROMIUM} (scripts/services.sh installs it)`;
  else if (!existsSync(join(DIST, "index.html"))) why = "the dashboard is not built (npm run build)";
  if (why && process.env["CI"]) throw new Error(`dashboard browser tests cannot run: ${why}`);
  if (why) console.log(`skipping the dashboard browser tests: ${why}`);
  return why;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** The TOTP code of now (offset in steps) for a base32 secret. */
export function totp(secretBase32: string, steps = 0): string {
  return client.totpCode(client.decodeBase32(secretBase32), Date.now() / 1000 + steps * 30);
}

const ACCOUNT_PASSWORD = "a test account's password";

/** A test client: an account's device, logged in. */
export interface TestAccount {
  username: string;
  connection: client.Connection;
  messenger: client.Messenger;
  /** Its groups (sharing `messenger`). */
  groups: client.Groups;
  /** The device's id and login key (to log in again). */
  deviceId: bigint;
  deviceKey: IdentityKeyPair;
}

/** A running server with its admin listener on loopback. */
export class Server {
  address = "";
  fingerprint = "";
  admin = "";
  private child: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), "microbot-dashboard-e2e-"));

  /** The dashboard's URL. */
  get url(): string {
    return `http://${this.admin}/admin/`;
  }

  async start(): Promise<void> {
    this.admin = `127.0.0.1:${await freePort()}`;
    const child = spawn(
      join(BIN_DIR!, "microbot-server"),
      ["--data-dir", join(this.dir, "server"), "--listen", "127.0.0.1:0", "--metrics-listen", this.admin, "--admin-dashboard-dir", DIST, "--totp-skew-steps", "3", ...ARGON,
        // Test clients register and log in from one address in quick succession.
        "--rate-register-per-ip", "0", "--rate-login-per-ip", "0", "--rate-login-per-account", "0"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    this.child = child;
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 20_000);
      child.once("exit", (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
      createInterface({ input: child.stdout! }).on("line", (line) => {
        const at = /listening on (\S+)/.exec(line);
        if (at) this.address = at[1]!;
        const fp = /fingerprint: ([0-9a-f]{64})/.exec(line);
        if (fp) this.fingerprint = fp[1]!;
        if (this.address && this.fingerprint) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  /** `microbot-server admin add NAME --role ROLE`; the TOTP secret it printed. */
  addAdmin(name: string, role: "admin" | "viewer", password: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const child = spawn(join(BIN_DIR!, "microbot-server"), ["--data-dir", join(this.dir, "server"), ...ARGON, "admin", "add", name, "--role", role], { stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      let secret = "";
      child.stdin!.write(`${password}\n`);
      child.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
        const found = /TOTP secret \(base32\): (\S+)/.exec(out);
        if (found && !secret && out.includes("first code: ")) {
          secret = found[1]!;
          child.stdin!.end(`${totp(secret)}\n`);
        }
      });
      child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
      child.once("exit", (code) => (code === 0 && secret ? resolve(secret) : reject(new Error(`admin add failed (${code}): ${out}`))));
    });
  }

  /** `microbot-server admin remove NAME` (ends the admin's sessions). */
  removeAdmin(name: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn(join(BIN_DIR!, "microbot-server"), ["--data-dir", join(this.dir, "server"), ...ARGON, "admin", "remove", name], { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
      child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`admin remove failed (${code}): ${out}`))));
    });
  }

  /**
   * A WebSocket client connection (Hello done) that trusts only the server's
   * self-signed certificate and checks its pin. Both are needed: Node checks
   * the chain against `ca` before the pin callback runs, so a pin alone meets
   * "self-signed certificate" and the socket closes before the Hello.
   */
  connect(): Promise<client.Connection> {
    const caPem = readFileSync(join(this.dir, "server", "cert.pem"), "utf8");
    return client.Connection.open({ url: `wss://${this.address}/v1/ws`, socketFactory: nodeSocketFactory({ caPem, certSha256: this.fingerprint }), keepAlive: false });
  }

  /** A new account with one device, logged in on its own connection, prekeys uploaded. */
  async account(username: string): Promise<TestAccount> {
    const connection = await this.connect();
    const now = Date.now() / 1000;
    const { totpSecret } = await client.registerAccount(connection, username, ACCOUNT_PASSWORD, now);
    const deviceKey = IdentityKeyPair.generate(systemRng);
    const identity = IdentityKeyPair.generate(systemRng);
    const deviceId = await client.enrolDevice(connection, username, ACCOUNT_PASSWORD, { totpCode: client.totpCode(totpSecret, now + 30) }, deviceKey, "e2e");
    const store = new client.MemoryStore(new LocalPreKeys());
    store.setDevice({ username, deviceId, deviceKey, identity });
    await client.login(connection, deviceId, deviceKey);
    await client.uploadPreKeys(connection, systemRng, identity, store.preKeys(), 20);
    const groups = new client.Groups(store, store, systemRng);
    return { username, connection, messenger: groups.messenger, groups, deviceId, deviceKey };
  }

  async dispose(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Debian's Chromium, headless, with the flags of the test set-up. */
export function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** A fresh browser profile on the dashboard. */
export async function openPage(browser: Browser, server: Server): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  await page.goto(server.url);
  return page;
}

/** Signs in through the form. */
export async function signIn(page: Page, name: string, password: string, code: string): Promise<void> {
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Password").fill(password);
  await page.getByLabel("Authenticator code").fill(code);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** Saves `docs/screenshots/dashboard-<name>.png` when MICROBOT_SCREENSHOTS=1. */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env["MICROBOT_SCREENSHOTS"] !== "1") return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `dashboard-${name}.png`), fullPage: true });
}

/** Starts what every story file needs: the server and a browser. */
export async function startStory(): Promise<{ server: Server; browser: Browser }> {
  const server = new Server();
  await server.start();
  return { server, browser: await launch() };
}

/** Stops what {@link startStory} started; either may be missing (the file was skipped, or starting failed). */
export async function stopStory(server: Server | undefined, browser: Browser | undefined): Promise<void> {
  await browser?.close();
  await server?.dispose();
}

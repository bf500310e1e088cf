/**
 * What the browser stories share: the real `microbot-server` from
 * `$MICROBOT_BIN_DIR` (temp data dir, its own port, this app's dist/),
 * Debian's Chromium driven by playwright-core, the CLI, TOTP codes
 * computed from the secret the page shows, and screenshots.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { client } from "@microbot/sdk";
import { chromium, type Browser, type Page } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
/** The built app the server serves. */
export const APP_DIST = join(here, "..", "dist");
/** Where screenshots go (written only with MICROBOT_SCREENSHOTS=1). */
export const SCREENSHOTS = join(here, "..", "..", "..", "docs", "screenshots");
export const PASSWORD = "correct horse battery staple";
const BIN_DIR = process.env["MICROBOT_BIN_DIR"];
const CHROMIUM = process.env["MICROBOT_CHROMIUM"] ?? "/usr/bin/chromium";

/** Why the stories cannot run here (skip), or undefined; throws under CI. */
export function missing(): string | undefined {
  let why: string | undefined;
  if (!BIN_DIR) why = "MICROBOT_BIN_DIR is not set (scripts/test.sh exports it after building the binaries)";
  else if (!existsSync(join(BIN_DIR, "microbot-server"))) why = `no microbot-server in ${BIN_DIR}`;
  else if (!existsSync(CHROMIUM)) why = `no Chromium at ${CHROMIUM} (scripts/services.sh installs it)`;
  else if (!existsSync(join(APP_DIST, "index.html"))) why = "the app is not built (npm run build)";
  if (why && process.env["CI"]) throw new Error(`browser tests cannot run: ${why}`);
  if (why) console.log(`skipping the browser tests: ${why}`);
  return why;
}

/** A running server; `stop` and `start` again keep its port and data. */
export class Server {
  address = "";
  fingerprint = "";
  private child: ChildProcess | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), "microbot-e2e-"));

  /** `plain`: the TCP listener speaks plain HTTP (loopback only, `--ws-plain`). */
  constructor(readonly plain = false) {}

  get url(): string {
    return `${this.plain ? "http" : "https"}://${this.address}/`;
  }

  async start(): Promise<void> {
    const listen = this.address || "127.0.0.1:0";
    const child = spawn(
      join(BIN_DIR!, "microbot-server"),
      ["--data-dir", join(this.dir, "server"), "--listen", listen, "--web-app-dir", APP_DIST, "--argon2-memory-kib", "256", "--argon2-iterations", "1",
        "--rate-register-per-ip", "0", "--rate-login-per-ip", "0", "--rate-login-per-account", "0", ...(this.plain ? ["--ws-plain", "true"] : [])],
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

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Debian's Chromium, headless, with the flags of the test set-up. */
export function launch(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"],
  });
}

/** A page of a fresh browser profile at phone width or desktop width. */
export async function openPage(browser: Browser, server: Server, phone = false): Promise<Page> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: phone ? { width: 360, height: 740 } : { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(server.url);
  return page;
}

/** The TOTP code of now (offset in steps) for a base32 secret. */
export function totp(secretBase32: string, steps = 0): string {
  return client.totpCode(client.decodeBase32(secretBase32), Date.now() / 1000 + steps * 30);
}

/** Waits until the connection badge reads `text`. */
export async function connection(page: Page, text: RegExp): Promise<void> {
  await page.getByRole("status", { name: "Connection" }).filter({ hasText: text }).waitFor();
}

/** Registers `name` through the page as a person would; ends in the chat view, online. Returns the TOTP secret (base32) the page showed. */
export async function register(page: Page, name: string): Promise<string> {
  await page.getByRole("tab", { name: "Create account" }).click();
  const form = page.getByRole("form", { name: "Create account" });
  await form.getByLabel("Name", { exact: true }).fill(name);
  await form.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await form.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { name: "Set up your authenticator" }).waitFor();
  await page.getByRole("img", { name: "Authenticator QR code" }).waitFor();
  const secret = (await page.getByLabel("Authenticator secret").textContent())!.trim();
  await page.getByLabel("6-digit code").fill(totp(secret));
  await page.getByRole("button", { name: "Confirm" }).click();
  await page.getByRole("heading", { name: "Your recovery codes" }).waitFor();
  await page.getByRole("list", { name: "Recovery codes" }).getByRole("listitem").first().waitFor();
  await page.getByLabel("I have saved my recovery codes").check();
  await page.getByRole("button", { name: "Continue to chats" }).click();
  await connection(page, /Online/);
  return secret;
}

/** The current TOTP step (30 s). */
export function totpStep(): number {
  return Math.floor(Date.now() / 30_000);
}

/**
 * A TOTP code the server takes after the codes of step `usedStep` and the
 * one after it were used (registration uses two, and the server refuses a
 * step at or below the last one used): waits, at most one step, until the
 * next step's code is later than both.
 */
export async function freshTotp(secretBase32: string, usedStep: number): Promise<string> {
  while (totpStep() <= usedStep) await new Promise((resolve) => setTimeout(resolve, 250));
  return totp(secretBase32, 1);
}

/** Adds `name` as a contact and opens the chat. */
export async function addContact(page: Page, name: string): Promise<void> {
  await page.getByLabel("Contact name").fill(name);
  await page.getByRole("button", { name: "Add contact" }).click();
  await page.getByRole("region", { name: `Chat with ${name}` }).waitFor();
}

/** Opens the chat with `name` from the list. */
export async function openChat(page: Page, name: string): Promise<void> {
  await page.getByRole("navigation", { name: "Conversations" }).getByRole("button", { name: new RegExp(`^${name}`) }).click();
  await page.getByRole("region", { name: `Chat with ${name}` }).waitFor();
}

/** Types `text` in the composer and presses Enter. */
export async function send(page: Page, text: string): Promise<void> {
  const box = page.getByLabel("Message", { exact: true });
  await box.fill(text);
  await box.press("Enter");
}

/** The message from `author` ("You" for our own) with `text`. */
export function message(page: Page, author: string, text: string) {
  return page.getByRole("log", { name: "Messages" }).getByRole("listitem", { name: `${author}: ${text}`, exact: true });
}

/** Saves a screenshot under docs/screenshots/ when MICROBOT_SCREENSHOTS=1. */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env["MICROBOT_SCREENSHOTS"] !== "1") return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/** Runs the CLI as `profile` with `args`, answering its prompts through `onLine`. */
export function cli(home: string, profile: string, args: string[], onLine?: (line: string, stdin: NodeJS.WritableStream) => void): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(BIN_DIR!, "microbot"), ["--profile", profile, ...args], {
      env: { ...process.env, MICROBOT_HOME: home, MICROBOT_PASSWORD: PASSWORD, MICROBOT_CONNECT_TIMEOUT: "20", MICROBOT_PASSPHRASE: "" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    createInterface({ input: child.stdout! }).on("line", (line) => {
      out += `${line}\n`;
      onLine?.(line, child.stdin!);
    });
    child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    if (!onLine) child.stdin!.end();
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out }));
  });
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

/**
 * What the extension's story needs beyond the web app's harness (whose real
 * server, CLI and TOTP helpers it reuses): the extension built for that
 * server, Debian's Chromium with it loaded (a persistent profile, as
 * extensions require), its service worker and id, an account registered
 * from Node, and the popup's screenshot.
 */
import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { client } from "@microbot/sdk";
import { nodeSocketFactory } from "@microbot/sdk/node";
import { chromium, type BrowserContext, type Page, type Worker } from "playwright-core";

import { PASSWORD, SCREENSHOTS, type Server } from "../../app/e2e/harness.js";

export { cli, PASSWORD, Server, totp } from "../../app/e2e/harness.js";

const here = dirname(fileURLToPath(import.meta.url));
const BIN_DIR = process.env["MICROBOT_BIN_DIR"];
const CHROMIUM = process.env["MICROBOT_CHROMIUM"] ?? "/usr/bin/chromium";

/** Why the story cannot run here (skip), or undefined; throws under CI. */
export function missing(): string | undefined {
  let why: string | undefined;
  if (!BIN_DIR) why = "MICROBOT_BIN_DIR is not set (scripts/test.sh exports it after building the binaries)";
  else if (!existsSync(join(BIN_DIR, "microbot-server"))) why = `no microbot-server in ${BIN_DIR}`;
  else if (!existsSync(join(BIN_DIR, "microbot"))) why = `no microbot (the CLI) in ${BIN_DIR}`;
  else if (!existsSync(CHROMIUM)) why = `no Chromium at ${CHROMIUM} (scripts/services.sh installs it)`;
  if (why && process.env["CI"]) throw new Error(`browser tests cannot run: ${why}`);
  if (why) console.log(`skipping the extension story: ${why}`);
  return why;
}

/** Builds the extension for `server` into a fresh directory (the package's own build script, as a person runs it). */
export function buildFor(server: Server): string {
  const out = join(server.dir, "extension");
  execFileSync(process.execPath, [join(here, "..", "build.mjs"), "--server", `https://${server.address}`, "--out", out], { stdio: "pipe" });
  return out;
}

/**
 * The base64 SHA-256 of the server certificate's public key: Chromium then
 * trusts exactly that self-signed certificate (`--ignore-certificate-errors-spki-list`),
 * the browser's form of the CLI's certificate pin.
 */
function spkiPin(server: Server): string {
  const pem = readFileSync(join(server.dir, "server", "cert.pem"), "utf8");
  const spki = new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

/** Chromium with the extension in `dist` loaded; its service worker and the extension id. */
export interface Browser {
  context: BrowserContext;
  worker: Worker;
  extensionId: string;
  close(): Promise<void>;
}

/** Launches Debian's Chromium headless (new headless mode, which runs extensions) with the extension loaded. */
export async function launchWithExtension(server: Server, dist: string): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), "microbot-extension-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 360, height: 560 },
    args: [
      "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--headless=new", `--ignore-certificate-errors-spki-list=${spkiPin(server)}`,
      `--disable-extensions-except=${dist}`, `--load-extension=${dist}`,
    ],
  });
  context.setDefaultTimeout(20_000);
  const worker = context.serviceWorkers()[0] ?? (await context.waitForEvent("serviceworker"));
  return {
    context,
    worker,
    extensionId: new URL(worker.url()).host,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** The extension's service worker now (Chromium may have stopped and restarted it). */
export async function currentWorker(browser: Browser): Promise<Worker> {
  const url = `chrome-extension://${browser.extensionId}/background.js`;
  return browser.context.serviceWorkers().find((w) => w.url() === url) ?? (await browser.context.waitForEvent("serviceworker", { predicate: (w) => w.url() === url }));
}

/** The toolbar badge text, read in the service worker. */
export async function badge(browser: Browser): Promise<string> {
  const worker = await currentWorker(browser);
  return (await worker.evaluate("chrome.action.getBadgeText({})")) as string;
}

/** Polls `probe` until it returns `expected` (or fails with the last value after `timeoutMs`). */
export async function eventually<T>(what: string, probe: () => Promise<T>, expected: T, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await probe();
    if (last === expected) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${what}: expected ${JSON.stringify(expected)}, still ${JSON.stringify(last)} after ${timeoutMs} ms`);
}

/** Registers and confirms `username` from Node; returns the TOTP secret (the code of this step is spent). */
export async function registerAccount(server: Server, username: string): Promise<Uint8Array> {
  const caPem = readFileSync(join(server.dir, "server", "cert.pem"), "utf8");
  const connection = await client.Connection.open({ url: `wss://${server.address}/v1/ws`, socketFactory: nodeSocketFactory({ caPem, certSha256: server.fingerprint }), keepAlive: false });
  try {
    return (await client.registerAccount(connection, username, PASSWORD)).totpSecret;
  } finally {
    connection.close();
  }
}

/** The TOTP code `steps` 30-second steps from now. */
export function code(secret: Uint8Array, steps: number): string {
  return client.totpCode(secret, Date.now() / 1000 + steps * 30);
}

/** Opens the popup as a page of its own (what the toolbar button shows). */
export async function openPopup(browser: Browser): Promise<Page> {
  const page = await browser.context.newPage();
  await page.goto(`chrome-extension://${browser.extensionId}/popup.html`);
  return page;
}

/** The message from `author` ("You" for our own) with `text` in the popup's open conversation. */
export function message(page: Page, author: string, text: string) {
  return page.getByRole("log", { name: "Messages" }).getByRole("listitem", { name: `${author}: ${text}`, exact: true });
}

/** Saves a screenshot under docs/screenshots/ when MICROBOT_SCREENSHOTS=1. */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env["MICROBOT_SCREENSHOTS"] !== "1") return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

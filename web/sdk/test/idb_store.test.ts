/**
 * src/client/idb_store.ts in real Chromium (playwright-core driving the
 * system browser): test/browser/idb_page.ts is bundled with esbuild and
 * served on loopback; the page fills the store, the page is reloaded, the
 * store opened again holds the same device, prekeys, session, contact, seen
 * id and queued send; the raw IndexedDB records contain none of the secrets
 * or names in plaintext (nor their record names); the keys are not
 * extractable; a flipped byte makes the store refuse to open (IdbStoreError).
 *
 * Needs Chromium (MICROBOT_CHROMIUM, default /usr/bin/chromium; scripts/services.sh installs it);
 * skips with a printed reason without it.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

import { build } from "esbuild";
import { chromium } from "playwright-core";

const CHROMIUM = process.env["MICROBOT_CHROMIUM"] ?? "/usr/bin/chromium";
const missing = existsSync(CHROMIUM) ? undefined : `no Chromium at ${CHROMIUM} (scripts/services.sh installs it)`;
if (missing) console.log(`# idb_store skipped: ${missing}`);

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

type Summary = Record<string, unknown>;
interface Api {
  write(): Promise<{ secrets: string[]; summary: Summary }>;
  read(): Promise<Summary>;
  raw(): Promise<{ records: { name: string; hex: string }[]; keys: string[]; exportable: boolean[] }>;
  tamper(): Promise<string>;
}

const hexOf = (text: string) => Buffer.from(text, "utf8").toString("hex");

test("IdbStore in Chromium: written, reloaded, read back the same; no plaintext in the raw records; keys not extractable; tampering refused", { skip: missing, timeout: 120_000 }, async () => {
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL("./browser/idb_page.ts", import.meta.url))],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  const script = bundle.outputFiles[0]!.contents;
  const server = createServer((req, res) => {
    if (req.url === "/page.js") {
      res.writeHead(200, { "content-type": "text/javascript" }).end(script);
    } else {
      res.writeHead(200, { "content-type": "text/html" }).end('<!doctype html><title>idb</title><script type="module" src="/page.js"></script>');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    const call = async <K extends keyof Api>(name: K): Promise<Awaited<ReturnType<Api[K]>>> => {
      await page.waitForFunction(() => "microbotTest" in globalThis);
      return (await page.evaluate((n) => (globalThis as unknown as { microbotTest: Record<string, () => Promise<unknown>> }).microbotTest[n]!(), name)) as Awaited<ReturnType<Api[K]>>;
    };

    await page.goto(url);
    const written = await call("write");
    await page.reload();
    const read = await call("read");
    assert.deepEqual(read, written.summary, "the reloaded store holds what was written");
    assert.equal(read["username"], "alice-marker-7f3a");
    assert.deepEqual(read["sessionDevices"], ["2"]);
    assert.equal(read["seen41"], true);
    assert.equal(read["seen42"], false);
    assert.deepEqual(read["outbox"], [{ seq: 1, to: "bob-marker-91c2", text: "secret-text-marker-55d0" }]);

    const raw = await call("raw");
    assert.deepEqual(raw.records.map((r) => r.name.split("/")[0]).sort(), ["device", "identity", "outbox", "prekeys", "seen", "session"], "one record per fact; the deleted send is gone");
    const needles = [...written.secrets, hexOf("alice-marker-7f3a"), hexOf("bob-marker-91c2"), hexOf("secret-text-marker-55d0"), hexOf("marker")];
    for (const record of raw.records) {
      for (const needle of needles) {
        assert.ok(!record.hex.includes(needle), `record ${record.name} holds ${needle.slice(0, 16)}… in plaintext`);
        // Hex-encoded inside JSON would show as the hex of the hex string.
        assert.ok(!record.hex.includes(hexOf(needle.slice(0, 32))), `record ${record.name} holds ${needle.slice(0, 16)}… hex-encoded`);
      }
      assert.ok(!record.name.includes("marker"), `record name ${record.name} names a user`);
    }
    assert.deepEqual(raw.keys.sort(), ["AES-GCM", "HMAC"]);
    assert.deepEqual(raw.exportable, [false, false], "the keys cannot be exported");

    const tampered = await call("tamper");
    assert.match(tampered, /^IdbStoreError: the record "device" does not open/);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    server.close();
  }
});

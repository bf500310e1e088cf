/**
 * src/client/idb_store.ts in real Chromium (playwright-core driving the
 * system browser): test/browser/idb_page.ts is bundled with esbuild and
 * served on loopback; the page fills the store, the page is reloaded, the
 * store opened again holds the same device, prekeys, session, contact, seen
 * id and queued send; the raw IndexedDB records contain none of the secrets
 * or names in plaintext (nor their record names); the keys are not
 * extractable; a flipped byte makes the store refuse to open (IdbStoreError).
 * The same for groups (test/browser/idb_groups_page.ts): group records, our
 * outbound sender key and whom it was given to, another member's inbound
 * sender key (which still opens that member's next message), forgotten keys
 * staying forgotten, and a corrupted or malformed record refused with
 * IdbStoreError.
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
import { chromium, type Page } from "playwright-core";

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
interface GroupsApi {
  write(): Promise<{ secrets: string[]; summary: Summary }>;
  read(): Promise<Summary & { later: string }>;
  raw(): Promise<{ name: string; hex: string }[]>;
  corrupt(): Promise<{ flipped: string; restored: string; badSenderKey: string; badGroup: string }>;
}

const hexOf = (text: string) => Buffer.from(text, "utf8").toString("hex");

/** What a story gets: the page, its calls into `globalThis.microbotTest`, and the page errors so far. */
interface Harness<A> {
  page: Page;
  call<K extends keyof A & string>(name: K): Promise<A[K] extends () => Promise<infer R> ? R : never>;
  errors: string[];
  url: string;
}

/** Bundles `entry` (a page in test/browser/), serves it on loopback and runs `story` in Chromium. */
async function inChromium<A>(entry: string, story: (harness: Harness<A>) => Promise<void>): Promise<void> {
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL(`./browser/${entry}`, import.meta.url))],
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
    const call = async (name: string) => {
      await page.waitForFunction(() => "microbotTest" in globalThis);
      return page.evaluate((n) => (globalThis as unknown as { microbotTest: Record<string, () => Promise<unknown>> }).microbotTest[n]!(), name);
    };
    await story({ page, call: call as Harness<A>["call"], errors, url });
  } finally {
    await browser.close();
    server.close();
  }
}

test("IdbStore in Chromium: written, reloaded, read back the same; no plaintext in the raw records; keys not extractable; tampering refused", { skip: missing, timeout: 120_000 }, async () => {
  await inChromium<Api>("idb_page.ts", async ({ page, call, errors, url }) => {
    await page.goto(url);
    const written = await call("write");
    await page.reload();
    const read = await call("read");
    assert.deepEqual(read, written.summary, "the reloaded store holds what was written");
    assert.equal(read["username"], "alice-marker-7f3a");
    assert.deepEqual(read["sessionDevices"], ["2"]);
    assert.equal((read["previous"] as string[]).length, 1, "the earlier session is kept");
    assert.equal(read["deviceList"], "01020304");
    assert.equal((read["profileKey"] as string).length, 64, "the profile key is kept");
    assert.match(read["serverKey"] as string, /^7:[0-9a-f]{64}$/);
    assert.equal(read["seen41"], true);
    assert.equal(read["seen42"], false);
    assert.deepEqual(read["outbox"], [{ seq: 1, to: "bob-marker-91c2", text: "secret-text-marker-55d0" }]);

    const raw = await call("raw");
    assert.deepEqual(raw.records.map((r) => r.name.split("/")[0]).sort(), ["device", "devicelist", "identity", "outbox", "prekeys", "previous", "profilekey", "seen", "serverkey", "session"], "one record per fact; the deleted send is gone");
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
  });
});

test("IdbStore groups in Chromium: groups, our sender key, whom it went to and others' sender keys survive a reload; forgotten keys stay forgotten; nothing readable on disk; a corrupted record is an IdbStoreError", { skip: missing, timeout: 120_000 }, async () => {
  await inChromium<GroupsApi>("idb_groups_page.ts", async ({ page, call, errors, url }) => {
    await page.goto(url);
    const written = await call("write");
    await page.reload();
    const { later, ...read } = await call("read");
    assert.deepEqual(read, written.summary, "the reloaded store holds what was written");
    assert.equal(later, "opened after the reload", "the reloaded inbound sender key opens the member's next message");
    assert.deepEqual(read["groupIds"], ["a1".repeat(16), "b2".repeat(16)]);
    const group = read["group"] as Record<string, unknown>;
    assert.equal(group["name"], "group-name-marker-9a4f");
    assert.equal(group["version"], "7");
    assert.deepEqual(group["members"], [
      { username: "gina-marker-0c11", role: 2, joinedAtVersion: "1" },
      { username: "hank-marker-3e7d", role: 1, joinedAtVersion: "3" },
    ]);
    assert.equal((read["other"] as Record<string, unknown>)["active"], false);
    assert.ok(typeof read["outbound"] === "string" && read["outbound"].length > 0, "our sender key is back");
    assert.equal((read["sharedWith"] as string[]).length, 2, "one entry per device");
    assert.ok(typeof read["inbound"] === "string" && read["inbound"].length > 0, "the member's sender key is back");
    assert.equal(read["otherInbound"], true, "the left group's inbound keys stay deleted");
    assert.equal(read["otherOutbound"], true, "the left group's outbound key stays deleted");
    assert.equal(read["otherShared"], 0);

    const raw = await call("raw");
    const kinds = raw.map((r) => r.name.split("/")[0]).sort();
    assert.deepEqual(kinds, ["device", "group", "group", "outbound", "prekeys", "senderkey", "shared"], "one record per fact; the left group's keys are gone");
    const needles = [...written.secrets, ...["gina-marker-0c11", "hank-marker-3e7d", "group-name-marker-9a4f", "group-desc-marker-52b0", "marker", "a1".repeat(16)].map(hexOf)];
    for (const record of raw) {
      for (const needle of needles) {
        assert.ok(!record.hex.includes(needle), `record ${record.name} holds ${needle.slice(0, 16)}… in plaintext`);
        assert.ok(!record.hex.includes(hexOf(needle.slice(0, 32))), `record ${record.name} holds ${needle.slice(0, 16)}… hex-encoded`);
      }
      assert.ok(!record.name.includes("marker") && !record.name.includes("a1a1"), `record name ${record.name} names a user or a group`);
    }

    const corrupt = await call("corrupt");
    assert.match(corrupt.flipped, /^IdbStoreError: the record "group\/[0-9a-f]{32}" does not open/);
    assert.equal(corrupt.restored, "opened", "the restored record opens again");
    assert.match(corrupt.badSenderKey, /^IdbStoreError: the record "senderkey\/[0-9a-f]{32}" holds an invalid value/);
    assert.match(corrupt.badGroup, /^IdbStoreError: the record "group\/[0-9a-f]{32}" holds an invalid value/);
    assert.deepEqual(errors, []);
  });
});

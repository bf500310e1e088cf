/**
 * The charts in real Chromium against the real server (issue 19): under a
 * short load — three test clients sending each other messages — the
 * message and delivery rate charts rise, in the data they plot and in the
 * server's history, and the node's memory and CPU are charted; hovering
 * shows values; a longer range loads the history in wider steps.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Browser } from "playwright-core";

import { client } from "@microbot/sdk";

import { missing, openPage, screenshot, Server, signIn, startStory, stopStory, type TestAccount, totp } from "./harness.js";

const skip = missing();
let server: Server;
let browser: Browser;
const PASSWORD = "correct horse battery staple";

before(async () => {
  if (!skip) ({ server, browser } = await startStory());
});
after(() => stopStory(server, browser));

/** Each account sends `rounds` messages to the next one, round-robin. */
async function load(accounts: TestAccount[], rounds: number): Promise<number> {
  let sent = 0;
  for (let round = 0; round < rounds; round++) {
    await Promise.all(
      accounts.map(async (from, i) => {
        const to = accounts[(i + 1) % accounts.length]!;
        await from.messenger.sendText(from.connection, to.username, `load ${round} from ${from.username}`);
        sent++;
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
  return sent;
}

test("under a short load the message rate chart rises; hover shows values; ranges load", { skip, timeout: 120_000 }, async () => {
  const secret = await server.addAdmin("ops", "admin", PASSWORD);
  const page = await openPage(browser, server);
  await signIn(page, "ops", PASSWORD, totp(secret, 1));
  await page.getByText("ops (admin)").waitFor();
  const messages = page.getByRole("region", { name: "Messages per second" });
  await messages.locator("canvas").waitFor();
  // Quiet so far: the history has points, all zero.
  await page.waitForFunction(() => Number(document.querySelector('[aria-label="Messages per second"]')?.getAttribute("data-points")) > 0);
  assert.equal(await messages.getAttribute("data-peak"), "0");

  const accounts: TestAccount[] = [];
  try {
    for (const name of ["alice", "bob", "carol"]) accounts.push(await server.account(name));
    const sent = await load(accounts, 10);
    assert.equal(sent, 30);
    // The pushed samples raise the chart's data.
    await page.waitForFunction(() => Number(document.querySelector('[aria-label="Messages per second"]')?.getAttribute("data-peak")) > 0);
    await page.waitForFunction(() => Number(document.querySelector('[aria-label="Deliveries per second"]')?.getAttribute("data-peak")) > 0);
    await page.waitForFunction(() => Number(document.querySelector('[aria-label="Open connections"]')?.getAttribute("data-latest")) >= 3);
    // The node's own gauges: resident memory (over a MiB) and CPU time.
    await page.waitForFunction(() => Number(document.querySelector('[aria-label="Memory"]')?.getAttribute("data-latest")) > 1048576);
    await page.waitForFunction(() => Number(document.querySelector('[aria-label="CPU"]')?.getAttribute("data-peak")) > 0);
    // The server counted every envelope (one per 1:1 message here), and its history holds the rise.
    await page.waitForFunction(async (expected) => {
      const o = (await (await fetch("/admin/api/overview")).json()) as { totals: { messages_in: number } };
      return o.totals.messages_in === expected;
    }, sent);
    const history = await page.evaluate(async () => (await (await fetch("/admin/api/series?range=5m")).json()) as { messages_per_s: number[]; step_secs: number });
    assert.equal(history.step_secs, 1);
    assert.ok(Math.max(...history.messages_per_s) > 0);
    const refused = await page.evaluate(async () => (await fetch("/admin/api/series?range=45d")).status);
    assert.equal(refused, 400);

    // Hover over the plot: the legend shows the value under the cursor.
    const over = messages.locator(".u-over");
    const box = (await over.boundingBox())!;
    await page.mouse.move(box.x + box.width - 3, box.y + box.height / 2);
    const legend = messages.locator(".u-legend .u-series").filter({ hasText: "messages/s" });
    assert.match(await legend.innerText(), /messages\/s\s*\d+\.\d\d/);
    await screenshot(page, "charts");

    // Longer ranges: the same history in wider steps (1 hour: 3 s; 30 days: minute rollups in 36-minute steps).
    await page.getByLabel("Time range").selectOption("1h");
    await page.waitForFunction(() => document.querySelector(".range")?.getAttribute("data-step") === "3");
    assert.ok(Number(await messages.getAttribute("data-peak")) > 0);
    await page.getByLabel("Time range").selectOption("30d");
    await page.waitForFunction(() => document.querySelector(".range")?.getAttribute("data-step") === "2160");
    assert.ok(Number(await messages.getAttribute("data-peak")) > 0);
    await page.getByText(/^data since /).waitFor();
  } finally {
    for (const a of accounts) a.connection.close();
  }
  await page.context().close();
});

test("delivery latency: an offline recipient's messages wait, the p50/p99 panel shows it", { skip, timeout: 60_000 }, async () => {
  const secret = await server.addAdmin("lat", "viewer", PASSWORD);
  const page = await openPage(browser, server);
  await signIn(page, "lat", PASSWORD, totp(secret, 1));
  const panel = page.getByRole("region", { name: "Delivery latency p50/p99" });
  await panel.locator("canvas").waitFor();
  const accounts: TestAccount[] = [];
  try {
    const erin = await server.account("erin");
    const fred = await server.account("fred");
    accounts.push(erin, fred);
    // fred goes offline: erin's messages wait in his queue for over a second.
    fred.connection.close();
    for (let i = 0; i < 3; i++) await erin.messenger.sendText(erin.connection, "fred", `while away ${i}`);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const again = await server.connect();
    fred.connection = again;
    await client.login(again, fred.deviceId, fred.deviceKey);
    const got = await fred.messenger.fetchAll(again);
    assert.equal(got.length, 3);
    // A push to an online device is quick: fred answers while erin is connected.
    await fred.messenger.sendText(again, "erin", "back");
    await page.waitForFunction(() => {
      const peaks = document.querySelector('[aria-label="Delivery latency p50/p99"]')?.getAttribute("data-peaks")?.split(",").map(Number) ?? [];
      return peaks.length === 2 && peaks[1]! >= 1000;
    });
    const [p50, p99] = (await panel.getAttribute("data-peaks"))!.split(",").map(Number);
    assert.ok(p50! > 0 && p50! <= p99!, `p50 ${p50} p99 ${p99}`);
    // The history agrees, second by second: p50 ≤ p99 wherever something was delivered.
    const history = await page.evaluate(async () => (await (await fetch("/admin/api/series?range=5m")).json()) as { latency_p50_ms: (number | null)[]; latency_p99_ms: (number | null)[] });
    const delivered = history.latency_p50_ms.map((p, i) => [p, history.latency_p99_ms[i]] as const).filter(([p]) => p !== null);
    assert.ok(delivered.length > 0);
    for (const [p, q] of delivered) assert.ok(p! > 0 && p! <= q!, `${p} ${q}`);
    assert.ok(Math.max(...delivered.map(([, q]) => q!)) >= 1000);
    // The Prometheus histogram counted the four hand-overs.
    const metrics = await page.evaluate(async () => (await fetch("/metrics")).text());
    const count = /^microbot_delivery_latency_seconds_count (\d+)$/m.exec(metrics);
    assert.ok(count && Number(count[1]) >= 4, metrics.slice(0, 200));
  } finally {
    for (const a of accounts) a.connection.close();
  }
  await page.context().close();
});

test("the charts show the cluster total: the one node's connections, from the points it publishes", { skip, timeout: 60_000 }, async () => {
  const secret = await server.addAdmin("whole", "viewer", PASSWORD);
  const page = await openPage(browser, server);
  await signIn(page, "whole", PASSWORD, totp(secret, 1));
  const connections = page.getByRole("region", { name: "Open connections" });
  await connections.locator("canvas").waitFor();
  const one = await server.account("gail");
  try {
    await page.getByLabel("Charts of").selectOption("cluster");
    await page.waitForFunction(() => Number(document.querySelector('[aria-label="Open connections"]')?.getAttribute("data-latest")) >= 1);
    // Per-second points, fetched again as the feed ticks.
    assert.equal(await page.locator(".range").getAttribute("data-step"), "1");
    const points = Number(await connections.getAttribute("data-points"));
    await page.waitForFunction((before) => Number(document.querySelector('[aria-label="Open connections"]')?.getAttribute("data-points")) > before, points);
    // Six hours of the total: from the minutes the nodes stored, a point a minute.
    await page.getByLabel("Time range").selectOption("6h");
    await page.waitForFunction(() => document.querySelector(".range")?.getAttribute("data-step") === "60");
    await page.getByLabel("Time range").selectOption("5m");
    await page.waitForFunction(() => document.querySelector(".range")?.getAttribute("data-step") === "1");
    // Back to this node's own history.
    await page.getByLabel("Charts of").selectOption("");
    await page.waitForFunction(() => Number(document.querySelector('[aria-label="Open connections"]')?.getAttribute("data-latest")) >= 1);
  } finally {
    one.connection.close();
  }
  await page.context().close();
});

/**
 * Saved layouts in real Chromium against the real server (issue 19): an
 * admin removes, moves and resizes panels, saves, and finds the same
 * layout after a reload; a viewer arranges and saves their own without
 * touching the admin's (that viewers cannot change settings is the IP
 * rules story's).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Browser, Page } from "playwright-core";

import { missing, openPage, screenshot, Server, signIn, startStory, stopStory, totp } from "./harness.js";

const skip = missing();
let server: Server;
let browser: Browser;
const PASSWORD = "correct horse battery staple";

before(async () => {
  if (!skip) ({ server, browser } = await startStory());
});
after(() => stopStory(server, browser));

/** The panels shown, in order: id and size. */
function panels(page: Page): Promise<string[]> {
  return page.evaluate(() => [...document.querySelectorAll<HTMLElement>(".grid > .panel")].map((p) => `${p.dataset["panel"]} ${p.dataset["width"]}x${p.dataset["height"]}`));
}

test("an admin arranges panels, saves, and the layout survives a reload; a viewer's layout is their own", { skip, timeout: 120_000 }, async () => {
  const opsSecret = await server.addAdmin("ops", "admin", PASSWORD);
  const page = await openPage(browser, server);
  await signIn(page, "ops", PASSWORD, totp(opsSecret, 1));
  await page.getByText("ops (admin)").waitFor();
  const defaults = await panels(page);
  assert.equal(defaults[0], "chart:messages 2x1");
  assert.ok(defaults.includes("chart:queue 1x1"));

  await page.getByRole("button", { name: "Edit layout" }).click();
  // Remove the queue chart; it is then offered to add back.
  await page.getByRole("button", { name: "Remove Queue depth" }).click();
  assert.equal(await page.getByRole("region", { name: "Queue depth" }).count(), 0);
  await page.getByLabel("Panel to add").locator('option[value="chart:queue"]').waitFor({ state: "attached" });
  // Move the totals to the front, one step at a time.
  for (let i = 0; i < 20 && (await panels(page))[0] !== "table:totals 1x1"; i++) {
    await page.getByRole("button", { name: "Move Totals earlier" }).click();
  }
  assert.equal(await page.getByRole("button", { name: "Move Totals earlier" }).isDisabled(), true);
  // Resize: the message chart full width and two rows high, the audit log narrower.
  await page.getByRole("button", { name: "Make Messages per second wider" }).click();
  await page.getByRole("button", { name: "Make Messages per second taller" }).click();
  assert.equal(await page.getByRole("button", { name: "Make Messages per second wider" }).isDisabled(), true);
  await page.getByRole("button", { name: "Make Audit log narrower" }).click();
  // Add back a removed panel at the end, then take it away again.
  await page.getByLabel("Panel to add").selectOption("chart:queue");
  await page.getByRole("button", { name: "Add panel" }).click();
  assert.equal((await panels(page)).at(-1), "chart:queue 1x1");
  await page.getByRole("button", { name: "Remove Queue depth" }).click();
  await screenshot(page, "layout-edit");
  const arranged = await panels(page);
  assert.deepEqual(arranged.slice(0, 2), ["table:totals 1x1", "chart:messages 3x2"]);
  assert.ok(arranged.includes("table:audit 2x1"));
  assert.ok(!arranged.some((p) => p.startsWith("chart:queue")));
  assert.equal(arranged.length, defaults.length - 1);
  // The taller chart draws a taller plot.
  await page.waitForFunction(() => (document.querySelector('[data-panel="chart:messages"] canvas')?.getBoundingClientRect().height ?? 0) > 300);
  await page.getByRole("button", { name: "Save layout" }).click();
  await page.getByRole("status", { name: "Layout status" }).filter({ hasText: "Layout saved" }).waitFor();
  await page.getByRole("table", { name: "Audit log" }).getByRole("row").filter({ hasText: `saved a layout of ${arranged.length} panels` }).waitFor();

  // A reload (same cookie) shows the saved layout.
  await page.reload();
  await page.getByText("ops (admin)").waitFor();
  await page.getByRole("region", { name: "Totals" }).waitFor();
  assert.deepEqual(await panels(page), arranged);

  // A viewer starts from the default and saves their own.
  const watchSecret = await server.addAdmin("watch", "viewer", PASSWORD);
  const viewer = await openPage(browser, server);
  await signIn(viewer, "watch", PASSWORD, totp(watchSecret, 1));
  await viewer.getByText("watch (viewer)").waitFor();
  assert.deepEqual(await panels(viewer), defaults);
  await viewer.getByRole("button", { name: "Edit layout" }).click();
  await viewer.getByRole("button", { name: "Remove Audit log" }).click();
  await viewer.getByRole("button", { name: "Save layout" }).click();
  await viewer.getByRole("status", { name: "Layout status" }).filter({ hasText: "Layout saved" }).waitFor();
  await viewer.reload();
  await viewer.getByText("watch (viewer)").waitFor();
  await viewer.getByRole("region", { name: "Totals" }).waitFor();
  assert.deepEqual(await panels(viewer), defaults.filter((p) => !p.startsWith("table:audit")));
  // The admin's layout is untouched.
  await page.reload();
  await page.getByRole("region", { name: "Totals" }).waitFor();
  assert.deepEqual(await panels(page), arranged);
  // Both saves are in the audit log.
  const log = await page.evaluate(async () => ((await (await fetch("/admin/api/audit")).json()) as { admin: string; action: string }[]).filter((e) => e.action === "layout").map((e) => e.admin));
  assert.deepEqual(log, ["watch", "ops"]);
  await viewer.context().close();
  await page.context().close();
});

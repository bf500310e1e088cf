/**
 * Editable rate limits in real Chromium against the real server (issue
 * 19, SPEC.md §18.7 Rate limits): an admin lowers the send rate from the
 * Rate limits panel and a test client's next sends are refused with
 * RATE_LIMITED; resetting it to the setting lets the client send again;
 * both changes are audited. A viewer sees the limits but has no controls,
 * and the API refuses their change.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { client } from "@microbot/sdk";
import type { Browser } from "playwright-core";

import { missing, openPage, screenshot, Server, signIn, startStory, stopStory, type TestAccount, totp } from "./harness.js";

const skip = missing();
let server: Server;
let browser: Browser;
const PASSWORD = "correct horse battery staple";
/** `ERROR_CODE_RATE_LIMITED` (transport.proto). */
const RATE_LIMITED = 21;

before(async () => {
  if (!skip) ({ server, browser } = await startStory());
});
after(() => stopStory(server, browser));

/** One message from `from` to `to`: undefined, or the server's error code. */
async function sendCode(from: TestAccount, to: TestAccount, text: string): Promise<number | undefined> {
  try {
    await from.messenger.sendText(from.connection, to.username, text);
    return undefined;
  } catch (e) {
    if (e instanceof client.ServerError) return e.code;
    throw e;
  }
}

test("an admin lowers the send rate and a client hits it; a viewer cannot change limits", { skip, timeout: 120_000 }, async () => {
  const opsSecret = await server.addAdmin("ops", "admin", PASSWORD);
  const watchSecret = await server.addAdmin("watch", "viewer", PASSWORD);
  const accounts: TestAccount[] = [];
  const page = await openPage(browser, server);
  try {
    const amy = await server.account("amy");
    const bob = await server.account("bob");
    accounts.push(amy, bob);
    // The setting (1200 a minute) lets a burst through.
    for (let i = 0; i < 4; i++) assert.equal(await sendCode(amy, bob, `burst ${i}`), undefined);

    await signIn(page, "ops", PASSWORD, totp(opsSecret, 1));
    const limits = page.getByRole("table", { name: "Rate limits" });
    const sendRow = limits.getByRole("row").filter({ hasText: "rate_send_per_account" });
    await sendRow.filter({ hasText: "1200" }).waitFor();
    // The panel lists every rate the server has editable, the group-change rate (60 a minute) too.
    await limits.getByRole("row").filter({ hasText: "rate_group_change_per_account" }).filter({ hasText: "60" }).waitFor();
    // A rate out of range is explained, nothing changes.
    await page.getByLabel("Limit", { exact: true }).selectOption("rate_send_per_account");
    await page.getByLabel("Per minute").fill("2000000");
    await page.getByRole("button", { name: "Set", exact: true }).click();
    await page.getByRole("region", { name: "Rate limits" }).getByRole("alert").filter({ hasText: /per_minute must be/ }).waitFor();
    // The admin lowers sends to 2 a minute: the row shows it in force, set by ops.
    await page.getByLabel("Per minute").fill("2");
    await page.getByRole("button", { name: "Set", exact: true }).click();
    await page.waitForFunction(() =>
      [...document.querySelectorAll('table[aria-label="Rate limits"] tbody tr')].some((r) => {
        const cells = [...r.querySelectorAll("td")].map((c) => c.textContent);
        return cells[0] === "rate_send_per_account" && cells[2] === "1200" && cells[3] === "2" && cells[4] === "ops";
      }),
    );
    // The client's sends are refused within two more.
    const codes: (number | undefined)[] = [];
    for (let i = 0; i < 3; i++) codes.push(await sendCode(amy, bob, `slow ${i}`));
    assert.ok(codes.includes(RATE_LIMITED), `codes ${JSON.stringify(codes)}`);
    assert.ok(codes.slice(0, 2).every((c) => c === undefined || c === RATE_LIMITED), JSON.stringify(codes));
    // The refusals are counted in the live Rate-limit hits table.
    await page.getByRole("table", { name: "Rate-limit hits" }).getByRole("row").filter({ hasText: /send_account|sealed_/ }).first().waitFor();
    await screenshot(page, "rate-limits");

    // A viewer sees the limit in force, has no controls, and cannot change it through the API.
    const viewer = await openPage(browser, server);
    await signIn(viewer, "watch", PASSWORD, totp(watchSecret, 1));
    await viewer.getByRole("table", { name: "Rate limits" }).getByRole("row").filter({ hasText: "rate_send_per_account" }).filter({ hasText: "ops" }).waitFor();
    assert.equal(await viewer.getByLabel("Per minute").count(), 0);
    assert.equal(await viewer.getByRole("button", { name: "Reset rate_send_per_account to the setting" }).count(), 0);
    const status = await viewer.evaluate(
      async () =>
        (await fetch("/admin/api/rate-limits", { method: "PUT", headers: { "X-Microbot-Admin": "1", "Content-Type": "application/json" }, body: JSON.stringify({ name: "rate_send_per_account", per_minute: 0 }) })).status,
    );
    assert.equal(status, 403);
    await viewer.context().close();

    // The admin resets it to the setting: the client sends again.
    await page.getByRole("button", { name: "Reset rate_send_per_account to the setting" }).click();
    await page.waitForFunction(() =>
      [...document.querySelectorAll('table[aria-label="Rate limits"] tbody tr')].some((r) => {
        const cells = [...r.querySelectorAll("td")].map((c) => c.textContent);
        return cells[0] === "rate_send_per_account" && cells[3] === "1200" && cells[4] === "settings";
      }),
    );
    assert.equal(await sendCode(amy, bob, "back to normal"), undefined);
    const audit = await page.evaluate(async () => ((await (await fetch("/admin/api/audit")).json()) as { admin: string; action: string; detail: string }[]).filter((e) => e.action === "rate_limit").map((e) => `${e.admin}: ${e.detail}`));
    assert.deepEqual(audit, ["ops: removed the override of rate_send_per_account", "ops: set rate_send_per_account to 2 per minute"]);
  } finally {
    for (const a of accounts) a.connection.close();
  }
  await page.context().close();
});

/**
 * IP rules from the dashboard in real Chromium against the real server
 * (issue 19): an admin denies the test clients' address and a new client
 * is refused while the open one stays; removing the rule lets clients in
 * again; an allow rule for another block refuses them too (an allow
 * list), until removed; every change is audited. A viewer sees the rules but
 * has no controls, and the API refuses their change.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Browser } from "playwright-core";

import { missing, openPage, screenshot, Server, signIn, startStory, stopStory, totp } from "./harness.js";

const skip = missing();
let server: Server;
let browser: Browser;
const PASSWORD = "correct horse battery staple";

before(async () => {
  if (!skip) ({ server, browser } = await startStory());
});
after(() => stopStory(server, browser));

test("an admin denies an address and a client from it is refused; a viewer cannot change rules", { skip, timeout: 120_000 }, async () => {
  const opsSecret = await server.addAdmin("ops", "admin", PASSWORD);
  const page = await openPage(browser, server);
  await signIn(page, "ops", PASSWORD, totp(opsSecret, 1));
  await page.getByText("ops (admin)").waitFor();
  const open = await server.connect();
  const rules = page.getByRole("table", { name: "IP rules" });
  try {
    // A typo is explained, nothing is added.
    await page.getByLabel("Address or block").fill("127.0.0.300");
    await page.getByRole("button", { name: "Deny", exact: true }).click();
    await page.getByRole("region", { name: "IP rules" }).getByRole("alert").filter({ hasText: /not an IP address/ }).waitFor();
    // The admin denies loopback, where the test clients come from.
    await page.getByLabel("Address or block").fill("127.0.0.1");
    await page.getByRole("button", { name: "Deny", exact: true }).click();
    await rules.getByRole("row").filter({ hasText: "127.0.0.1/32" }).filter({ hasText: "dashboard" }).waitFor();
    await assert.rejects(server.connect(), "a new client from a denied address is refused");
    // The refusal is counted; the connection that was open stays.
    await page.waitForFunction(() => [...document.querySelectorAll('table[aria-label="Totals"] tr')].some((r) => /connections_refused\s+[1-9]/.test((r as HTMLElement).innerText)));
    assert.equal(open.closed, false, "connections already open stay open");
    await screenshot(page, "ip-rules");

    // A viewer sees the rule, has no controls, and cannot change it through the API.
    const watchSecret = await server.addAdmin("watch", "viewer", PASSWORD);
    const viewer = await openPage(browser, server);
    await signIn(viewer, "watch", PASSWORD, totp(watchSecret, 1));
    await viewer.getByRole("table", { name: "IP rules" }).getByRole("row").filter({ hasText: "127.0.0.1/32" }).waitFor();
    assert.equal(await viewer.getByLabel("Address or block").count(), 0);
    assert.equal(await viewer.getByRole("button", { name: "Remove deny rule 127.0.0.1/32" }).count(), 0);
    const status = await viewer.evaluate(async () => (await fetch("/admin/api/ip-rules?cidr=127.0.0.1%2F32", { method: "DELETE", headers: { "X-Microbot-Admin": "1" } })).status);
    assert.equal(status, 403);
    await viewer.context().close();

    // The admin removes the rule: clients connect again.
    await page.getByRole("button", { name: "Remove deny rule 127.0.0.1/32" }).click();
    await page.waitForFunction(() => ![...document.querySelectorAll('table[aria-label="IP rules"] tr')].some((r) => (r as HTMLElement).innerText.includes("127.0.0.1/32")));
    (await server.connect()).close();
    // An allow rule for another block makes an allow list without loopback:
    // new clients are refused until it is removed.
    await page.getByLabel("Address or block").fill("10.0.0.0/8");
    await page.getByRole("button", { name: "Allow", exact: true }).click();
    await rules.getByRole("row").filter({ hasText: "10.0.0.0/8" }).filter({ hasText: "allow" }).waitFor();
    await assert.rejects(server.connect(), "a client outside the allow list is refused");
    await page.getByRole("button", { name: "Remove allow rule 10.0.0.0/8" }).click();
    await page.waitForFunction(() => ![...document.querySelectorAll('table[aria-label="IP rules"] tr')].some((r) => (r as HTMLElement).innerText.includes("10.0.0.0/8")));
    (await server.connect()).close();
    const audit = await page.evaluate(async () => ((await (await fetch("/admin/api/audit")).json()) as { admin: string; action: string; detail: string }[]).filter((e) => e.action === "ip_rule").map((e) => `${e.admin}: ${e.detail}`));
    assert.deepEqual(audit, ["ops: removed the allow rule for 10.0.0.0/8", "ops: allowed 10.0.0.0/8", "ops: removed the deny rule for 127.0.0.1/32", "ops: denied 127.0.0.1/32"]);
    await page.getByRole("table", { name: "Audit log" }).getByRole("row").filter({ hasText: "denied 127.0.0.1/32" }).waitFor();
  } finally {
    open.close();
  }
  await page.context().close();
});

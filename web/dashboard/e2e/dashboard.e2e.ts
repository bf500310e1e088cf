/**
 * Operator stories in real Chromium against the real server (issue 19):
 * an admin signs in with password + TOTP and sees a client connection
 * appear in the live table; a replayed code and a wrong password are
 * refused; a viewer signs in read-only; unauthenticated API requests and
 * mutating requests without the CSRF header are refused; a removed admin's
 * open dashboard returns to the sign-in form.
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

function websocketOpen(text: string): number {
  const match = /websocket\s*(\d+)/.exec(text);
  return match ? Number(match[1]) : -1;
}

test("an admin signs in with TOTP and sees a connection appear in the live table", { skip }, async () => {
  const secret = await server.addAdmin("ops", "admin", PASSWORD);
  const page = await openPage(browser, server);
  // A wrong password is refused with the server's message.
  await signIn(page, "ops", "not the password", totp(secret, 1));
  await page.getByRole("alert").filter({ hasText: /wrong password/ }).waitFor();
  await signIn(page, "ops", PASSWORD, totp(secret, 2));
  await page.getByText("ops (admin)").waitFor();
  const row = page.getByRole("table", { name: "Connections" }).getByRole("row").filter({ hasText: "websocket" });
  await row.waitFor();
  assert.equal(websocketOpen((await row.innerText()).replace(/\s+/g, " ")), 0);
  const connection = await server.connect();
  try {
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('table[aria-label="Connections"] tbody tr')];
      return rows.some((r) => /websocket\s*1\b/.test((r as HTMLElement).innerText.replace(/\s+/g, " ")));
    });
    // The Nodes table lists every node of the cluster (here the one, "local"): ready, seen just now, its connection counted.
    await page.waitForFunction(() =>
      [...document.querySelectorAll('table[aria-label="Nodes"] tbody tr')].some((r) => {
        const cells = [...r.querySelectorAll("td")].map((c) => c.textContent);
        return cells[0] === "local" && cells[2] === "ready" && cells[5] === "1" && /^\d s ago$/.test(cells[9] ?? "");
      }),
    );
    await screenshot(page, "live");
  } finally {
    connection.close();
  }
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('table[aria-label="Connections"] tbody tr')];
    return rows.some((r) => /websocket\s*0\b/.test((r as HTMLElement).innerText.replace(/\s+/g, " ")));
  });
  // Sorting and filtering happen in the browser.
  const totals = page.getByRole("table", { name: "Totals" });
  await page.getByLabel("Filter Totals").fill("logins");
  await page.waitForFunction(() => document.querySelectorAll('table[aria-label="Totals"] tbody tr').length === 2);
  await totals.getByRole("columnheader", { name: "Counter" }).click();
  assert.equal(await totals.getByRole("columnheader", { name: "Counter" }).getAttribute("aria-sort"), "descending");
  // The audit log shows the sign-in.
  await page.getByRole("table", { name: "Audit log" }).getByRole("row").filter({ hasText: "login" }).first().waitFor();
  await page.context().close();
});

test("a viewer signs in read-only; a replayed code is refused", { skip }, async () => {
  const secret = await server.addAdmin("watch", "viewer", PASSWORD);
  const page = await openPage(browser, server);
  const code = totp(secret, 3);
  await signIn(page, "watch", PASSWORD, code);
  await page.getByText("watch (viewer)").waitFor();
  // From the viewer's page: no CSRF header, no change.
  const noHeader = await page.evaluate(async () => (await fetch("/admin/api/logout", { method: "POST" })).status);
  assert.equal(noHeader, 403);
  await page.getByRole("button", { name: "Sign out" }).click();
  await signIn(page, "watch", PASSWORD, code);
  await page.getByRole("alert").filter({ hasText: /already used/ }).waitFor();
  await page.context().close();
});

test("unauthenticated requests to the admin API are refused", { skip }, async () => {
  for (const path of ["session", "audit", "overview", "live", "whatever"]) {
    const response = await fetch(`http://${server.admin}/admin/api/${path}`);
    assert.equal(response.status, 401, path);
  }
  const page = await openPage(browser, server);
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await screenshot(page, "login");
  const csp = (await fetch(server.url)).headers.get("content-security-policy") ?? "";
  assert.match(csp, /script-src 'self'/);
  await page.context().close();
});

test("a removed admin's open dashboard returns to the sign-in form", { skip }, async () => {
  const secret = await server.addAdmin("gone", "viewer", PASSWORD);
  const page = await openPage(browser, server);
  await signIn(page, "gone", PASSWORD, totp(secret, 1));
  await page.getByRole("status", { name: "Live feed" }).filter({ hasText: /^live / }).waitFor();
  await server.removeAdmin("gone");
  await page.getByRole("alert").filter({ hasText: "Your session ended; sign in again." }).waitFor({ timeout: 30_000 });
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await page.context().close();
});

/**
 * Suspensions from the dashboard in real Chromium against the real server
 * (issue 19): an admin suspends one device of a test client — its open
 * connection is closed with ACCOUNT_SUSPENDED and its next login refused
 * with the same code, while another client carries on; lifting the
 * suspension lets it log in again; suspending an account closes its
 * device too. Every change is in the audit log. A viewer sees the list
 * without controls (and another admin's change within 5 s), and the API
 * refuses their change.
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
/** `ERROR_CODE_ACCOUNT_SUSPENDED` (transport.proto). */
const ACCOUNT_SUSPENDED = 24;

before(async () => {
  if (!skip) ({ server, browser } = await startStory());
});
after(() => stopStory(server, browser));

/** Resolves with the connection's close error once the server closes it. */
function closedBy(account: TestAccount): Promise<client.ConnectionError> {
  return new Promise((resolve) => account.connection.onClose(resolve));
}

/** A login of the account's device on a new connection: undefined, or the server's error code. */
async function loginCode(account: TestAccount): Promise<number | undefined> {
  const connection = await server.connect();
  try {
    await client.login(connection, account.deviceId, account.deviceKey);
    return undefined;
  } catch (e) {
    if (e instanceof client.ServerError) return e.code;
    throw e;
  } finally {
    connection.close();
  }
}

test("an admin suspends a device and an account from the dashboard; a viewer cannot", { skip, timeout: 150_000 }, async () => {
  const opsSecret = await server.addAdmin("ops", "admin", PASSWORD);
  const watchSecret = await server.addAdmin("watch", "viewer", PASSWORD);
  const accounts: TestAccount[] = [];
  try {
    for (const name of ["alice", "bob"]) accounts.push(await server.account(name));
    const [alice, bob] = accounts as [TestAccount, TestAccount];
    const page = await openPage(browser, server);
    await signIn(page, "ops", PASSWORD, totp(opsSecret, 1));
    await page.getByText("ops (admin)").waitFor();
    const table = page.getByRole("table", { name: "Suspensions" });
    await table.waitFor();

    // A typo is explained, nothing is suspended.
    await page.getByLabel("Suspend account").fill("nobody");
    await page.getByRole("button", { name: "Suspend", exact: true }).click();
    await page.getByRole("region", { name: "Suspensions" }).getByRole("alert").filter({ hasText: "no account" }).waitFor();

    // Bob's device: its connection closes with ACCOUNT_SUSPENDED, its login is refused; Alice carries on.
    const bobClosed = closedBy(bob);
    await page.getByLabel("Suspend account").fill("bob");
    await page.getByLabel("Device id").fill(String(bob.deviceId));
    await page.getByRole("button", { name: "Suspend", exact: true }).click();
    await table.getByRole("cell", { name: "bob", exact: true }).waitFor();
    const closed = await bobClosed;
    assert.equal(closed.kind, "Closed");
    assert.equal(closed.code, ACCOUNT_SUSPENDED);
    assert.equal(await loginCode(bob), ACCOUNT_SUSPENDED);
    assert.equal(alice.connection.closed, false);
    await alice.messenger.sendText(alice.connection, "bob", "still here");
    await page.getByRole("table", { name: "Audit log" }).getByText(`suspended device ${bob.deviceId} of bob`).waitFor();
    await screenshot(page, "suspensions");

    // Lifted: Bob's device logs in again.
    await page.getByRole("button", { name: `Lift the suspension of device ${bob.deviceId} of bob` }).click();
    await table.getByRole("cell", { name: "bob", exact: true }).waitFor({ state: "detached" });
    assert.equal(await loginCode(bob), undefined);

    // Alice's whole account: her device's connection closes too.
    const aliceClosed = closedBy(alice);
    await page.getByLabel("Suspend account").fill("alice");
    await page.getByRole("button", { name: "Suspend", exact: true }).click();
    assert.equal((await aliceClosed).code, ACCOUNT_SUSPENDED);
    assert.equal(await loginCode(alice), ACCOUNT_SUSPENDED);
    await table.getByRole("cell", { name: "alice", exact: true }).waitFor();

    // A viewer sees the suspension but has no controls, and the API refuses the change.
    const viewer = await openPage(browser, server);
    await signIn(viewer, "watch", PASSWORD, totp(watchSecret, 2));
    await viewer.getByText("watch (viewer)").waitFor();
    await viewer.getByRole("table", { name: "Suspensions" }).getByRole("cell", { name: "alice", exact: true }).waitFor();
    assert.equal(await viewer.getByRole("button", { name: "Suspend", exact: true }).count(), 0);
    assert.equal(await viewer.getByRole("button", { name: /^Lift/ }).count(), 0);
    const status = await viewer.evaluate(async () => {
      const r = await fetch("/admin/api/suspensions", { method: "POST", headers: { "X-Microbot-Admin": "1", "Content-Type": "application/json" }, body: JSON.stringify({ kind: "account", username: "bob" }) });
      return r.status;
    });
    assert.equal(status, 403);
    // The admin lifts Alice's suspension: the viewer's open page shows it within its 5 s refresh.
    await page.getByRole("button", { name: "Lift the suspension of account alice" }).click();
    await viewer.getByRole("table", { name: "Suspensions" }).getByRole("cell", { name: "alice", exact: true }).waitFor({ state: "detached", timeout: 10_000 });
    assert.equal(await loginCode(alice), undefined);
    await viewer.context().close();
    await page.context().close();
  } finally {
    for (const a of accounts) a.connection.close();
  }
});

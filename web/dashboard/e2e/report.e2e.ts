/**
 * The usage report in real Chromium against the real server (issue 19):
 * three test clients send a known number of one-to-one messages, then
 * group messages; a viewer opens the report page, sees the counts in its
 * charts, and downloads the CSV and the JSON export, whose counts match
 * what the clients sent (parsed from the downloaded files). The report
 * names no user. Without a session the report is refused.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";

import type { Browser, Page } from "playwright-core";

import { missing, openPage, screenshot, Server, signIn, startStory, stopStory, type TestAccount, totp } from "./harness.js";

const skip = missing();
let server: Server;
let browser: Browser;
const PASSWORD = "correct horse battery staple";

before(async () => {
  if (!skip) ({ server, browser } = await startStory());
});
after(() => stopStory(server, browser));

interface Period {
  start: string;
  active_accounts: number;
  active_devices: number;
  messages: number;
  group_messages: number;
  attachment_bytes: number;
}

interface Report {
  since: string;
  until: string;
  days: Period[];
  weeks: Period[];
  group_sizes: { members: string; groups: number }[];
  cohorts: { week: string; accounts: number; active: number[] }[];
}

/** Clicks a download link; the downloaded file's text. */
async function download(page: Page, name: string): Promise<{ file: string; text: string }> {
  const [file] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name }).click()]);
  const path = await file.path();
  return { file: file.suggestedFilename(), text: readFileSync(path, "utf8") };
}

/** Sum of one metric over the `day` rows of a CSV export. */
function csvSum(csv: string, metric: string): number {
  const [header, ...rows] = csv.trim().split("\n");
  assert.equal(header, "section,period,metric,value");
  return rows
    .map((line) => line.split(","))
    .filter(([section, , m]) => section === "day" && m === metric)
    .reduce((sum, cells) => sum + Number(cells[3]), 0);
}

function sum(report: Report, key: keyof Omit<Period, "start">): number {
  return report.days.reduce((n, d) => n + d[key], 0);
}

test("the exported report counts what the clients sent; a viewer may read it", { skip, timeout: 150_000 }, async () => {
  const secret = await server.addAdmin("watch", "viewer", PASSWORD);
  const accounts: TestAccount[] = [];
  try {
    for (const name of ["alice", "bob", "carol"]) accounts.push(await server.account(name));
    const [alice, bob] = accounts as [TestAccount, TestAccount, TestAccount];
    // 4 + 3 one-to-one messages, each to a one-device account: 7 envelopes.
    for (let i = 0; i < 4; i++) await alice.messenger.sendText(alice.connection, "bob", `hello ${i}`);
    for (let i = 0; i < 3; i++) await bob.messenger.sendText(bob.connection, "carol", `hi ${i}`);

    const page = await openPage(browser, server);
    await signIn(page, "watch", PASSWORD, totp(secret, 1));
    await page.getByText("watch (viewer)").waitFor();
    await page.getByRole("button", { name: "Report" }).click();
    // From yesterday, so a run across midnight (UTC) still sums every count.
    const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    await page.getByLabel("Since").fill(yesterday);
    await page.getByRole("button", { name: "Show report" }).click();
    const messagesChart = page.getByRole("region", { name: "Messages per day" });
    await page.waitForFunction(() => document.querySelector('[aria-label="Messages per day"]')?.getAttribute("data-total_messages") === "7");
    assert.equal(await messagesChart.getAttribute("data-total_group_messages"), "0");
    assert.equal(await messagesChart.getAttribute("data-days"), "2");
    assert.ok(await messagesChart.locator("canvas").count() > 0);
    const active = page.getByRole("region", { name: "Active per day" });
    assert.ok(Number(await active.getAttribute("data-total_active_accounts")) >= 3);

    const csv = await download(page, "Download CSV");
    assert.match(csv.file, /^microbot-report-\d{4}-\d\d-\d\d-\d{4}-\d\d-\d\d\.csv$/);
    assert.equal(csvSum(csv.text, "messages"), 7);
    assert.equal(csvSum(csv.text, "group_messages"), 0);
    // Content-free: no username appears in the export.
    for (const name of ["alice", "bob", "carol", "hello"]) assert.ok(!csv.text.includes(name), name);

    // Group messages: a group of three is created and renamed twice; each change is announced to the group
    // by one group send (the server cannot tell an announcement from a text: three group messages).
    const group = await alice.groups.createGroup(alice.connection, "trio", ["bob", "carol"]);
    await alice.groups.rename(alice.connection, group, "trio two");
    await alice.groups.rename(alice.connection, group, "trio three");
    await page.getByRole("button", { name: "Show report" }).click();
    await page.waitForFunction(() => document.querySelector('[aria-label="Messages per day"]')?.getAttribute("data-total_group_messages") === "3");

    const json = await download(page, "Download JSON");
    assert.match(json.file, /\.json$/);
    const report = JSON.parse(json.text) as Report;
    assert.equal(report.since, yesterday);
    assert.equal(report.days.length, 2);
    assert.equal(sum(report, "group_messages"), 3);
    // One-to-one envelopes: the 7 texts plus the sender-key distributions the group needed.
    const totals = await page.evaluate(async () => ((await (await fetch("/admin/api/overview")).json()) as { totals: { messages_in: number } }).totals);
    assert.ok(sum(report, "messages") >= 7);
    assert.equal(sum(report, "messages") + sum(report, "group_messages"), totals.messages_in);
    // Three accounts, one device each, logged in today and this week; one group of three.
    const today = report.days.at(-1)!;
    assert.equal(today.active_accounts, 3);
    assert.equal(today.active_devices, 3);
    assert.equal(report.weeks.at(-1)!.active_accounts, 3);
    assert.deepEqual(report.group_sizes.filter((g) => g.groups > 0), [{ members: "3-5", groups: 1 }]);
    // All three registered this week and logged in: one cohort of 3 at week 0.
    const cohort = report.cohorts.at(-1)!;
    assert.equal(cohort.accounts, 3);
    assert.equal(cohort.active[0], 3);
    await page.getByRole("table", { name: "Retention cohorts" }).getByText("3 (100%)").first().waitFor();
    await page.getByRole("table", { name: "Group sizes" }).getByRole("cell", { name: "3-5" }).waitFor();
    await screenshot(page, "report");

    // Bad input is a 400 with a reason; no session is a 401.
    const bad = await page.evaluate(async () => {
      const r = await fetch("/admin/api/report?since=2025-02-30");
      return { status: r.status, body: (await r.json()) as { error: string } };
    });
    assert.deepEqual([bad.status, bad.body.error], [400, "bad_request"]);
    const anonymous = await fetch(`${server.url}api/report?since=${yesterday}&format=csv`);
    assert.equal(anonymous.status, 401);
    await page.context().close();
  } finally {
    for (const a of accounts) a.connection.close();
  }
});

/**
 * Miniapps in a group (issue 22, SPEC §11.9): three people in a group; one
 * starts a poll, all three vote at the same moment — each confirming the
 * "send to the group?" question — and every page shows the same tallies;
 * then a shared checklist where two people add items and two check the same
 * item at the same moment, and every page shows the same list.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Browser, FrameLocator, Page } from "playwright-core";

import { message, missing, openChat, openPage, register, screenshot, send, Server, startStory, stopStory } from "./harness.js";

const skip = missing();
let server: Server;
let browser: Browser;

before(async () => {
  if (!skip) ({ server, browser } = await startStory());
});
after(() => stopStory(server, browser));

/** The app `title` (e.g. "Poll by ann") inline in the open chat. */
function app(page: Page, title: string): FrameLocator {
  return page.getByTitle(title).contentFrame();
}

/** Answers the page's "send to the group?" question with Send, after checking what it says. */
async function confirmSend(page: Page, says: RegExp): Promise<void> {
  const dialog = page.getByRole("dialog", { name: "Send to the group?" });
  await dialog.getByText(says).waitFor();
  await dialog.getByRole("button", { name: "Send", exact: true }).click();
  await dialog.waitFor({ state: "detached" });
}

test("three members vote in a poll at the same time and share a checklist; every page converges", { skip, timeout: 240_000 }, async () => {
  const [ann, bob, cal] = await Promise.all([openPage(browser, server), openPage(browser, server), openPage(browser, server)]);
  await register(ann, "ann");
  await register(bob, "bob");
  await register(cal, "cal");

  await ann.getByText("New group").click();
  const form = ann.getByRole("form", { name: "New group" });
  await form.getByLabel("Group name").fill("Lunch");
  await form.getByLabel("Members (names, comma-separated)").fill("bob, cal");
  await form.getByRole("button", { name: "Create group" }).click();
  await ann.getByRole("region", { name: "Chat with Lunch" }).waitFor();
  await send(ann, "where shall we eat?");
  for (const page of [bob, cal]) {
    await openChat(page, "Lunch");
    await message(page, "ann", "where shall we eat?").waitFor();
  }

  // Ann starts a poll; nothing leaves before she confirms.
  await ann.getByRole("button", { name: "Apps" }).click();
  await ann.getByRole("button", { name: "Start a poll" }).click();
  const annPoll = app(ann, "Poll by ann");
  await annPoll.getByLabel("Question").fill("Lunch?");
  await annPoll.getByLabel("Options (one per line)").fill("Tea\nCoffee\nSoup");
  await annPoll.getByRole("button", { name: "Start poll" }).click();
  await confirmSend(ann, /Start the poll “Lunch\?”/);
  await annPoll.getByRole("heading", { name: "Lunch?" }).waitFor();
  for (const page of [bob, cal]) await app(page, "Poll by ann").getByRole("heading", { name: "Lunch?" }).waitFor();

  // All three vote at the same moment, each confirming the send.
  const vote = async (page: Page, option: string) => {
    await app(page, "Poll by ann").getByRole("button", { name: `Vote for ${option}` }).click();
    await confirmSend(page, new RegExp(`Vote for “${option}”`));
  };
  await Promise.all([vote(ann, "Tea"), vote(bob, "Coffee"), vote(cal, "Tea")]);
  for (const page of [ann, bob, cal]) {
    const poll = app(page, "Poll by ann");
    await poll.getByText("Tea: 2 votes").waitFor();
    await poll.getByText("Coffee: 1 vote", { exact: true }).waitFor();
    await poll.getByText("Soup: 0 votes").waitFor();
  }
  // Bob changes his mind: his last vote wins everywhere.
  await vote(bob, "Soup");
  for (const page of [ann, bob, cal]) {
    const poll = app(page, "Poll by ann");
    await poll.getByText("Coffee: 0 votes").waitFor();
    await poll.getByText("Soup: 1 vote", { exact: true }).waitFor();
  }
  await screenshot(ann, "miniapp-poll");

  // A declined proposal is not sent.
  await app(cal, "Poll by ann").getByRole("button", { name: "Vote for Coffee" }).click();
  await cal.getByRole("dialog", { name: "Send to the group?" }).getByRole("button", { name: "Don't send" }).click();
  await app(cal, "Poll by ann").getByText("Not sent.").waitFor();

  // Bob starts a checklist; Bob and Cy add items at the same time.
  await bob.getByRole("button", { name: "Apps" }).click();
  await bob.getByRole("button", { name: "Start a checklist" }).click();
  const add = async (page: Page, text: string) => {
    const list = app(page, "Checklist by bob");
    await list.getByLabel("New item").fill(text);
    await list.getByRole("button", { name: "Add" }).click();
    await confirmSend(page, new RegExp(`Add “${text}”`));
  };
  await add(bob, "milk");
  for (const page of [ann, cal]) await app(page, "Checklist by bob").getByRole("checkbox", { name: "milk" }).waitFor();
  await Promise.all([add(bob, "bread"), add(cal, "eggs")]);
  for (const page of [ann, bob, cal]) for (const item of ["milk", "bread", "eggs"]) await app(page, "Checklist by bob").getByRole("checkbox", { name: item }).waitFor();

  // Ann and Cy check "milk" at the same moment.
  const check = async (page: Page) => {
    await app(page, "Checklist by bob").getByRole("checkbox", { name: "milk" }).click();
    await confirmSend(page, /Check “milk”/);
  };
  await Promise.all([check(ann), check(cal)]);
  const lists: string[][] = [];
  for (const page of [ann, bob, cal]) {
    const list = app(page, "Checklist by bob");
    await list.getByText(/checked by (ann|cal)/).waitFor();
    await assertChecked(list, "milk", true);
    lists.push(await list.getByRole("list", { name: "Items" }).getByRole("listitem").allTextContents());
  }
  assert.deepEqual(lists[1], lists[0]);
  assert.deepEqual(lists[2], lists[0]);
  assert.equal(lists[0]!.length, 3);
});

async function assertChecked(list: FrameLocator, name: string, checked: boolean): Promise<void> {
  const box = list.getByRole("checkbox", { name });
  for (let i = 0; i < 100; i++) {
    if ((await box.isChecked()) === checked) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${name} should be ${checked ? "checked" : "unchecked"}`);
}

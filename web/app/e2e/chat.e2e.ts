/**
 * User stories in real Chromium against the real server (issue 18): two
 * people register and chat with everything a chat has; a browser user and
 * a CLI user talk; the server goes away mid-conversation and comes back.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import type { Browser, Page } from "playwright-core";

import { addContact, cli, connection, message, missing, openChat, openPage, register, screenshot, send, Server, startStory, stopStory, totp } from "./harness.js";

const skip = missing();
/** The sqlite3 shell, to read the server's stored rows (that check is skipped without it). */
const SQLITE = ["/usr/bin/sqlite3", "/usr/local/bin/sqlite3"].find((p) => existsSync(p));
let server: Server;
let browser: Browser;

before(async () => {
  if (!skip) ({ server, browser } = await startStory());
});
after(() => stopStory(server, browser));

/** Two registered people with each other's chat open. */
async function pair(a: string, b: string, phone = false): Promise<[Page, Page]> {
  const pageA = await openPage(browser, server, phone);
  const pageB = await openPage(browser, server);
  await register(pageA, a);
  await register(pageB, b);
  await addContact(pageA, b);
  return [pageA, pageB];
}

test("two people register, add each other and chat with reactions, replies, edits, deletes, receipts and typing", { skip, timeout: 180_000 }, async () => {
  const [alice, bob] = await pair("alice", "bob");

  // Alice writes first; Bob sees the chat appear and opens it.
  await send(alice, "Hi Bob, it's Alice");
  await message(alice, "You", "Hi Bob, it's Alice").waitFor();
  await openChat(bob, "alice");
  await message(bob, "alice", "Hi Bob, it's Alice").waitFor();
  // Bob has read it: Alice sees the receipt.
  await message(alice, "You", "Hi Bob, it's Alice").getByText("Read").waitFor();

  // Bob types: Alice sees "typing…"; he sends a reply to her message.
  await bob.getByLabel("Message", { exact: true }).fill("Hello");
  await alice.getByText("bob is typing…").waitFor();
  await message(bob, "alice", "Hi Bob, it's Alice").getByRole("button", { name: "Reply" }).click();
  await send(bob, "Hello Alice!");
  const reply = message(alice, "bob", "Hello Alice!");
  await reply.waitFor();
  await reply.getByText("↩ alice: Hi Bob, it's Alice").waitFor();
  assert.equal(await alice.getByText("bob is typing…").count(), 0);

  // Alice reacts; Bob sees the reaction.
  await reply.getByRole("button", { name: "React 👍" }).click();
  await message(bob, "You", "Hello Alice!").getByRole("list", { name: "Reactions" }).getByText("👍 1").waitFor();

  // Alice edits her first message; Bob sees the new text, marked edited.
  await message(alice, "You", "Hi Bob, it's Alice").getByRole("button", { name: "Edit" }).click();
  const box = alice.getByLabel("Message", { exact: true });
  assert.equal(await box.inputValue(), "Hi Bob, it's Alice");
  await send(alice, "Hi Bob, it's Alice (edited)");
  const edited = message(bob, "alice", "Hi Bob, it's Alice (edited)");
  await edited.waitFor();
  await edited.getByText("edited", { exact: false }).first().waitFor();

  // Esc cancels a reply in progress.
  await message(alice, "bob", "Hello Alice!").getByRole("button", { name: "Reply" }).click();
  await alice.getByText("Replying to bob").waitFor();
  await box.press("Escape");
  assert.equal(await alice.getByText("Replying to bob").count(), 0);

  // Alice sends and deletes a message; Bob sees it deleted.
  await send(alice, "oops, wrong chat");
  await message(bob, "alice", "oops, wrong chat").waitFor();
  await message(alice, "You", "oops, wrong chat").getByRole("button", { name: "Delete" }).click();
  await message(bob, "alice", "message deleted").waitFor();
  assert.equal(await message(bob, "alice", "oops, wrong chat").count(), 0);

  // Who is in the chat.
  await alice.getByRole("button", { name: "Members" }).click();
  const members = await alice.getByRole("list", { name: "Members" }).getByRole("listitem").allTextContents();
  assert.deepEqual(members, ["alice (you)", "bob"]);
  await alice.getByRole("button", { name: "Members" }).click();
  await screenshot(alice, "chat");

  // Both see the same safety number (60 digits) and a QR code; Esc closes.
  const digits: string[] = [];
  for (const [page, peer] of [[alice, "bob"], [bob, "alice"]] as const) {
    await page.getByRole("button", { name: "Safety number" }).click();
    const dialog = page.getByRole("dialog", { name: `Safety number with ${peer}` });
    await dialog.getByRole("img", { name: "Safety number QR code" }).waitFor();
    digits.push((await dialog.getByLabel("Safety number digits").textContent())!.trim());
    if (page === alice) await screenshot(page, "safety-number");
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
  }
  assert.match(digits[0]!, /^\d{5}( \d{5}){11}$/);
  assert.equal(digits[0], digits[1]);

  // The history survives a reload (the server kept nothing after delivery):
  // it comes from IndexedDB, where it is stored encrypted.
  await alice.waitForTimeout(500); // the coalesced save
  await alice.reload();
  await connection(alice, /Online/);
  await openChat(alice, "bob");
  await message(alice, "You", "Hi Bob, it's Alice (edited)").waitFor();
  await message(alice, "bob", "Hello Alice!").getByRole("list", { name: "Reactions" }).getByText("👍 1").waitFor();
  const stored = (await alice.evaluate(`new Promise((resolve, reject) => {
    const open = indexedDB.open("microbot-history:alice");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const get = open.result.transaction("records").objectStore("records").get("conversations");
      get.onsuccess = () => resolve(Array.from(new Uint8Array(get.result.data)));
    };
  })`)) as number[];
  assert.ok(stored.length > 100);
  assert.ok(!Buffer.from(stored).toString("latin1").includes("Hello Alice"), "no plaintext at rest");
  await alice.context().close();
  await bob.context().close();
});

test("a browser user and a CLI user chat both ways", { skip, timeout: 180_000 }, async () => {
  const home = join(server.dir, "cli");
  const registered = await cli(home, "carol", ["register", "carol", "--server", server.address, "--cert-sha256", server.fingerprint], (line, stdin) => {
    const secret = /^secret: (\S+)/.exec(line.trim());
    if (secret) stdin.end(`${totp(secret[1]!)}\n${totp(secret[1]!, 1)}\n`);
  });
  assert.equal(registered.code, 0, registered.out);

  const dave = await openPage(browser, server, true); // phone width
  await register(dave, "dave");
  await addContact(dave, "carol");
  await send(dave, "Hello Carol, from the browser");
  await message(dave, "You", "Hello Carol, from the browser").getByText("Sent").waitFor();
  const received = await cli(home, "carol", ["recv", "--json", "--only", "message", "--count", "1", "--timeout", "30"]);
  assert.equal(received.code, 0, received.out);
  assert.match(received.out, /Hello Carol, from the browser/);

  const sent = await cli(home, "carol", ["send", "dave", "Hi Dave, from the terminal"]);
  assert.equal(sent.code, 0, sent.out);
  await message(dave, "carol", "Hi Dave, from the terminal").waitFor();

  // Carol's message carried her profile key: what the browser sends her now goes sealed (SPEC §19.8),
  // and the server stores it without a sender.
  await send(dave, "Sealed, from the browser");
  await message(dave, "You", "Sealed, from the browser").getByText("Sent").waitFor();
  if (SQLITE) {
    const senders = execFileSync(
      SQLITE,
      [join(server.dir, "server", "microbot.sqlite3"),
        "SELECT e.sender_username || '|' || e.sender_device_id FROM envelopes e JOIN devices d ON d.id = e.device_id JOIN accounts a ON a.id = d.account_id WHERE a.username = 'carol'"],
      { encoding: "utf8" },
    ).trim().split("\n");
    assert.ok(senders.every((s) => s === "|0"), `stored for carol: ${senders.join(", ")}`);
  } else console.log("# no sqlite3: the stored rows of the sealed send are not checked");
  const sealed = await cli(home, "carol", ["recv", "--json", "--only", "message", "--count", "1", "--timeout", "30"]);
  assert.equal(sealed.code, 0, sealed.out);
  assert.match(sealed.out, /Sealed, from the browser/);
  await dave.context().close();
});

test("the server stops mid-conversation: the app shows it, reconnects, and what was typed meanwhile arrives once, in order", { skip, timeout: 180_000 }, async () => {
  const [erin, frank] = await pair("erin", "frank");
  await send(erin, "before the outage");
  await openChat(frank, "erin");
  await message(frank, "erin", "before the outage").waitFor();

  await server.stop();
  await connection(erin, /Offline/);
  await connection(frank, /Offline/);
  const typed = ["first while offline", "second while offline", "third while offline"];
  for (const text of typed) await send(erin, text);
  for (const text of typed) await message(erin, "You", text).getByText("Waiting to send").waitFor();
  await erin.getByRole("status", { name: "Connection" }).getByText("3 waiting to send").waitFor();
  await screenshot(erin, "offline");

  await server.start();
  await connection(erin, /Online/);
  await connection(frank, /Online/);
  for (const text of typed) await message(frank, "erin", text).waitFor();
  // Once each, in order, after what came before.
  const log = await frank.getByRole("log", { name: "Messages" }).getByRole("listitem").evaluateAll((items) => items.map((i) => i.getAttribute("aria-label")));
  assert.deepEqual(log, ["erin: before the outage", ...typed.map((t) => `erin: ${t}`)]);
  // Accepted by the server (and by now maybe read).
  for (const text of typed) await message(erin, "You", text).getByText(/Sent|Read/).waitFor();
  await erin.context().close();
  await frank.context().close();
});

test("a group of three mixes browser and CLI users: create, talk, reload, rename, remove, leave", { skip, timeout: 180_000 }, async () => {
  const home = join(server.dir, "cli");
  const registered = await cli(home, "gina", ["register", "gina", "--server", server.address, "--cert-sha256", server.fingerprint], (line, stdin) => {
    const secret = /^secret: (\S+)/.exec(line.trim());
    if (secret) stdin.end(`${totp(secret[1]!)}\n${totp(secret[1]!, 1)}\n`);
  });
  assert.equal(registered.code, 0, registered.out);
  const hank = await openPage(browser, server);
  const ivy = await openPage(browser, server);
  await register(hank, "hank");
  await register(ivy, "ivy");

  // Hank creates the group with Ivy (browser) and Gina (CLI).
  await hank.getByText("New group").click();
  const form = hank.getByRole("form", { name: "New group" });
  await form.getByLabel("Group name").fill("Team");
  await form.getByLabel("Members (names, comma-separated)").fill("ivy, gina");
  await form.getByRole("button", { name: "Create group" }).click();
  await hank.getByRole("region", { name: "Chat with Team" }).waitFor();
  await send(hank, "hello team");
  await message(hank, "You", "hello team").getByText(/Sent|Read/).waitFor();

  // Ivy finds the group and the message; Gina reads it on the CLI.
  await openChat(ivy, "Team");
  await message(ivy, "hank", "hello team").waitFor();
  const received = await cli(home, "gina", ["recv", "--json", "--only", "message", "--count", "1", "--timeout", "30"]);
  assert.equal(received.code, 0, received.out);
  assert.match(received.out, /hello team/);

  // Gina answers the group from the terminal; both browsers see it, once.
  const sent = await cli(home, "gina", ["send", "#Team", "hi from the terminal"]);
  assert.equal(sent.code, 0, sent.out);
  await message(hank, "gina", "hi from the terminal").waitFor();
  await message(ivy, "gina", "hi from the terminal").waitFor();
  await send(ivy, "hi both");
  await message(hank, "ivy", "hi both").waitFor();

  // Both browsers reload: the group, Hank's sender key (and whom he gave it to) and the sender keys
  // Ivy holds come back from IndexedDB, so Hank writes on at once and Ivy reads it.
  await hank.waitForTimeout(500); // the coalesced history save
  await hank.reload();
  await ivy.reload();
  await connection(hank, /Online/);
  await connection(ivy, /Online/);
  await openChat(hank, "Team");
  await openChat(ivy, "Team");
  await send(hank, "after the reload");
  await message(ivy, "hank", "after the reload").waitFor();
  // Gina has Ivy's "hi both" queued before it.
  const afterReload = await cli(home, "gina", ["recv", "--json", "--only", "message", "--count", "2", "--timeout", "30"]);
  assert.equal(afterReload.code, 0, afterReload.out);
  assert.match(afterReload.out, /after the reload/);
  await send(ivy, "me too");
  await message(hank, "ivy", "me too").waitFor();

  // Hank renames the group and removes Gina; Ivy sees both.
  await hank.getByRole("button", { name: "Members" }).click();
  const members = await hank.getByRole("list", { name: "Members" }).getByRole("listitem").allTextContents();
  assert.deepEqual(members.map((m) => m.replace("Remove", "")).sort(), ["gina", "hank (you)", "ivy"]);
  await hank.getByLabel("New group name").fill("Dream team");
  await hank.getByRole("button", { name: "Rename" }).click();
  await hank.getByRole("region", { name: "Chat with Dream team" }).waitFor();
  await ivy.getByRole("region", { name: "Chat with Dream team" }).waitFor();
  await hank.getByRole("button", { name: "Remove gina" }).click();
  await ivy.getByRole("log", { name: "Messages" }).getByText("gina was removed").waitFor();
  await screenshot(hank, "group");

  // Ivy leaves: Hank sees it, Ivy can no longer write.
  await ivy.getByRole("button", { name: "Members" }).click();
  await ivy.getByRole("button", { name: "Leave group" }).click();
  await ivy.getByText("You are no longer in this group.").waitFor();
  await hank.getByRole("log", { name: "Messages" }).getByText("ivy left").waitFor();
  await hank.context().close();
  await ivy.context().close();
});

/** Starts recording every value a progress bar on `page` shows. */
async function recordProgress(page: Page): Promise<void> {
  // A string, not a function: tsx's transform would add helpers the page lacks.
  await page.evaluate(`(() => {
    const seen = [];
    window.progressSeen = seen;
    const note = (el) => {
      if (el instanceof HTMLProgressElement) seen.push([el.value, el.max]);
      el.querySelectorAll("progress").forEach((p) => seen.push([p.value, p.max]));
    };
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.type === "attributes") note(r.target);
        r.addedNodes.forEach((n) => n instanceof Element && note(n));
      }
    }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["value"] });
  })()`);
}

/** The values recorded since `recordProgress`, as fractions. */
async function progressSeen(page: Page): Promise<number[]> {
  const seen = (await page.evaluate("window.progressSeen")) as [number, number][];
  return seen.map(([v, max]) => v / max);
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** `from` sends a 5 MiB file to `to`, who downloads it: same bytes, and both progress bars move. */
async function fileAcross(from: Page, to: Page, fromName: string, name: string): Promise<void> {
  const bytes = randomBytes(5 * 1024 * 1024);
  await recordProgress(from);
  await from.getByLabel("Attach a file").setInputFiles({ name, mimeType: "application/octet-stream", buffer: bytes });
  await message(from, "You", `file ${name}`).getByText(/Sent|Read/).waitFor({ timeout: 60_000 });
  const up = await progressSeen(from);
  assert.ok(up.some((f) => f > 0 && f < 1), `the upload bar moved: ${up.join(",")}`);

  const item = message(to, fromName, `file ${name}`);
  await item.waitFor();
  await recordProgress(to);
  const [download] = await Promise.all([to.waitForEvent("download", { timeout: 60_000 }), item.getByRole("button", { name: `Download ${name}` }).click()]);
  assert.equal(download.suggestedFilename(), name);
  const got = readFileSync((await download.path())!);
  assert.equal(got.length, bytes.length);
  assert.equal(sha256(got), sha256(bytes));
  const down = await progressSeen(to);
  assert.ok(down.some((f) => f > 0 && f < 1), `the download bar moved: ${down.join(",")}`);
  await item.getByRole("link", { name: `Save ${name}` }).waitFor();
}

test("a 5 MiB file goes both ways with identical bytes and progress bars that move", { skip, timeout: 240_000 }, async () => {
  const [jack, kate] = await pair("jack", "kate");
  await send(jack, "a file is coming");
  await openChat(kate, "jack");
  await message(kate, "jack", "a file is coming").waitFor();
  await fileAcross(jack, kate, "jack", "from-jack.bin");
  await fileAcross(kate, jack, "kate", "from-kate.bin");
  await jack.context().close();
  await kate.context().close();
});

test("mistakes are explained in words: a taken name, a wrong code; a reload keeps the device signed in", { skip, timeout: 120_000 }, async () => {
  const page = await openPage(browser, server, true);
  await register(page, "lena");
  // Reload: the device's keys come back from the encrypted IndexedDB store.
  await page.reload();
  await connection(page, /Online/);
  await page.getByText("Signed in as").getByText("lena").waitFor();

  const other = await openPage(browser, server, true);
  // The name is taken.
  const form = other.getByRole("form", { name: "Create account" });
  await form.getByLabel("Name", { exact: true }).fill("lena");
  await form.getByLabel("Password", { exact: true }).fill("another good password");
  await form.getByRole("button", { name: "Create account" }).click();
  await other.getByRole("alert").getByText("That name is taken. Please choose another one.").waitFor();
  // A wrong code at log-in.
  await other.getByRole("tab", { name: "Log in" }).click();
  const login = other.getByRole("form", { name: "Log in" });
  await login.getByLabel("Name", { exact: true }).fill("lena");
  await login.getByLabel("Password", { exact: true }).fill("correct horse battery staple");
  await login.getByLabel("6-digit code").fill("000000");
  await login.getByRole("button", { name: "Log in" }).click();
  await other.getByRole("alert").getByText("Wrong name, password or code. Check them and try again.").waitFor();
  await screenshot(other, "error");
  // Adding someone who does not exist.
  await page.getByLabel("Contact name").fill("nobody-here");
  await page.getByRole("button", { name: "Add contact" }).click();
  await page.getByRole("alert").getByText("Nobody with that name is on this server.").waitFor();
  await page.context().close();
  await other.context().close();
});

test("the installable app starts offline from its service worker, with its history", { skip, timeout: 120_000 }, async () => {
  // Plain HTTP on loopback is a secure context: the service worker registers
  // (the tests' self-signed HTTPS certificate would stop it).
  const local = new Server(true);
  await local.start();
  try {
    const page = await openPage(browser, local);
    const manifest = (await page.evaluate(`fetch("/manifest.webmanifest").then((r) => r.json())`)) as { name: string; display: string; icons: unknown[] };
    assert.equal(manifest.name, "Microbot");
    assert.equal(manifest.display, "standalone");
    assert.ok(manifest.icons.length > 0);
    await page.evaluate(`navigator.serviceWorker.ready.then(() => true)`);
    await register(page, "mona");
    await page.getByLabel("Contact name").fill("mona");
    await page.getByRole("button", { name: "Add contact" }).click();
    await send(page, "a note to myself");
    await message(page, "You", "a note to myself").getByText(/Sent|Read/).waitFor();
    await page.waitForTimeout(500); // the coalesced history save

    await local.stop();
    await page.reload();
    await connection(page, /Offline/);
    await openChat(page, "mona");
    await message(page, "You", "a note to myself").waitFor();
    await send(page, "written offline");
    await message(page, "You", "written offline").getByText("Waiting to send").waitFor();
    await local.start();
    await connection(page, /Online/);
    await message(page, "You", "written offline").getByText(/Sent|Read/).waitFor();
    await page.context().close();
  } finally {
    await local.dispose();
  }
});

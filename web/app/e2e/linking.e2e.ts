/**
 * Linking a second device from the browser (issue 18, SPEC §12.14), in real
 * Chromium against the real server: alice registers on page 1 and chats
 * with bob (page 2) and in a group; page 3 links to alice's account by the
 * code it shows, typed into page 1 with history; page 3 shows the earlier
 * conversation and the group, bob's next message reaches pages 1 and 3, and
 * page 3's reply reaches bob and shows on page 1 as sent by alice. A used
 * code is explained in words.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Browser } from "playwright-core";

import { addContact, connection, freshTotp, message, missing, openChat, openPage, PASSWORD, register, screenshot, send, Server, startStory, stopStory, totpStep } from "./harness.js";

const skip = missing();
let server: Server;
let browser: Browser;

before(async () => {
  if (!skip) ({ server, browser } = await startStory());
});
after(() => stopStory(server, browser));

test("a third page links to alice's account with history, then gets bob's messages and answers as alice; a used code is explained", { skip, timeout: 180_000 }, async () => {
  const laptop = await openPage(browser, server);
  const bob = await openPage(browser, server);
  const secret = await register(laptop, "alice");
  const usedStep = totpStep();
  await register(bob, "bob");

  // alice and bob chat, and alice makes a group with bob.
  await addContact(laptop, "bob");
  await send(laptop, "Hello Bob, from my laptop");
  await openChat(bob, "alice");
  await message(bob, "alice", "Hello Bob, from my laptop").waitFor();
  await send(bob, "Hi Alice!");
  await message(laptop, "bob", "Hi Alice!").waitFor();
  await laptop.getByText("New group").click();
  const form = laptop.getByRole("form", { name: "New group" });
  await form.getByLabel("Group name").fill("Team");
  await form.getByLabel("Members (names, comma-separated)").fill("bob");
  await form.getByRole("button", { name: "Create group" }).click();
  await laptop.getByRole("region", { name: "Chat with Team" }).waitFor();

  // Page 3 asks to be linked: a code as text (groups of four) and as a QR code, and a visible state.
  const phone = await openPage(browser, server);
  await phone.getByRole("tab", { name: "Link to an existing account" }).click();
  const status = phone.getByRole("status", { name: "Link status" });
  await status.filter({ hasText: "Waiting for your other device" }).waitFor();
  const code = (await phone.getByLabel("Linking code").textContent())!.trim();
  assert.match(code, /^([A-Z2-7]{4}-){19}[A-Z2-7]$/);
  await phone.getByRole("img", { name: "Linking QR code" }).waitFor();
  await screenshot(phone, "link-device");

  // Page 1 types the code (sloppily: lower case, spaces), agrees to send history, sees what is sent, and sends it.
  await laptop.getByRole("button", { name: "Link a device" }).click();
  const dialog = laptop.getByRole("dialog", { name: "Link a device" });
  const input = dialog.getByLabel("Code from the new device");
  await input.fill(code.toLowerCase().replace(/-/g, " "));
  await dialog.getByLabel("Also send recent history").check();
  await input.press("Enter");
  await dialog.getByText("This sends your account's identity key, 1 contact, 1 group and 2 recent messages of history to the device showing the code").waitFor();
  await dialog.getByRole("button", { name: "Send the account" }).press("Enter");
  await dialog.getByRole("status", { name: "Link result" }).filter({ hasText: "Sent your account's identity key, 1 contact, 1 group and 2 recent messages of history to the new device." }).waitFor();
  await laptop.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });

  // Page 3 received it, asks for the password and a code, and lands in the chat list.
  await status.filter({ hasText: "Received the account alice: 1 contact, 1 group, 2 messages of history." }).waitFor();
  const finish = phone.getByRole("form", { name: "Finish linking" });
  await finish.getByLabel("Password").fill(PASSWORD);
  const codeBox = finish.getByLabel("Code from your authenticator (or a recovery code)");
  await codeBox.fill(await freshTotp(secret, usedStep));
  await codeBox.press("Enter");
  await connection(phone, /Online/);
  assert.equal(await phone.locator(".me strong").textContent(), "alice");
  const chats = phone.getByRole("navigation", { name: "Conversations" });
  await chats.getByRole("button", { name: /^Team/ }).waitFor();
  await openChat(phone, "bob");
  await message(phone, "You", "Hello Bob, from my laptop").waitFor();
  await message(phone, "bob", "Hi Alice!").waitFor();

  // bob's next message shows on both of alice's pages.
  await openChat(laptop, "bob");
  await send(bob, "Do both your devices get this?");
  await message(laptop, "bob", "Do both your devices get this?").waitFor();
  await message(phone, "bob", "Do both your devices get this?").waitFor();

  // Page 3 answers: bob reads it from alice, and page 1 shows it as alice's own.
  await send(phone, "Yes, this is my phone");
  await message(bob, "alice", "Yes, this is my phone").waitFor();
  await message(laptop, "You", "Yes, this is my phone").waitFor();

  // The group works from the new device too.
  await openChat(phone, "Team");
  await send(phone, "hello team from the phone");
  await openChat(bob, "Team");
  await message(bob, "alice", "hello team from the phone").waitFor();

  // The used code again: refused, in words.
  await laptop.getByRole("button", { name: "Link a device" }).click();
  await dialog.getByLabel("Code from the new device").fill(code);
  await dialog.getByLabel("Code from the new device").press("Enter");
  await dialog.getByRole("button", { name: "Send the account" }).click();
  await dialog.getByRole("alert").filter({ hasText: "This code expired or was already used. Start linking again on the new device to get a new code." }).waitFor();
  // A mistyped code never leaves the dialog.
  await dialog.getByRole("button", { name: "Back" }).click();
  await dialog.getByLabel("Code from the new device").fill(code.slice(0, -3));
  await dialog.getByLabel("Code from the new device").press("Enter");
  await dialog.getByRole("alert").filter({ hasText: "That is not a linking code." }).waitFor();
  await laptop.keyboard.press("Escape");
  await dialog.waitFor({ state: "detached" });
});

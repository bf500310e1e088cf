/**
 * Calls in real Chromium with fake camera and microphone (issue 18): two
 * people register, one calls the other by video, the callee accepts, both
 * `RTCPeerConnection`s reach "connected" and their inbound RTP bytes grow;
 * a third caller gets "busy"; hanging up closes both sides; a rejected call
 * says so to the caller. The signalling goes through the real server as
 * end-to-end encrypted messages; the media peer to peer over host
 * candidates (no STUN/TURN).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import type { Browser, Page } from "playwright-core";

import { addContact, message, missing, openChat, register, screenshot, send, Server, startStory, stopStory } from "./harness.js";

const skip = missing();
let server: Server;
let browser: Browser;

before(async () => {
  if (!skip) ({ server, browser } = await startStory());
});
after(() => stopStory(server, browser));

/**
 * A fresh page whose every `RTCPeerConnection` is also kept in
 * `window.__pcs`, so the story can read the real connection state and
 * statistics the app's calls produce.
 */
async function callPage(): Promise<Page> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1000, height: 700 } });
  await context.addInitScript(() => {
    const w = window as unknown as { __pcs: RTCPeerConnection[]; RTCPeerConnection: typeof RTCPeerConnection };
    const Native = w.RTCPeerConnection;
    w.__pcs = [];
    w.RTCPeerConnection = class extends Native {
      constructor(config?: RTCConfiguration) {
        super(config);
        w.__pcs.push(this);
      }
    };
  });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  await page.goto(server.url);
  return page;
}

/** The state of the page's last peer connection. */
function pcState(page: Page): Promise<string | undefined> {
  return page.evaluate(() => (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs.at(-1)?.connectionState);
}

/** Inbound RTP bytes of the page's last peer connection (all media), from `getStats()`. */
function inboundBytes(page: Page): Promise<number> {
  return page.evaluate(async () => {
    const pc = (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs.at(-1);
    if (!pc) return -1;
    let bytes = 0;
    (await pc.getStats()).forEach((report: { type: string; bytesReceived?: number }) => {
      if (report.type === "inbound-rtp") bytes += report.bytesReceived ?? 0;
    });
    return bytes;
  });
}

/** Whether the page's last call let go of the camera and microphone and closed its connection. */
function tornDown(page: Page): Promise<boolean> {
  return page.evaluate(() => {
    const pc = (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs.at(-1);
    return pc !== undefined && pc.connectionState === "closed" && pc.getSenders().every((s) => s.track === null || s.track.readyState === "ended");
  });
}

async function waitConnected(page: Page): Promise<void> {
  await page.waitForFunction(() => (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs.at(-1)?.connectionState === "connected", undefined, { timeout: 30_000 });
}

test("a video call connects peer to peer, media flows both ways, a third caller hears busy, and hanging up closes both sides", { skip, timeout: 240_000 }, async () => {
  const carla = await callPage();
  const dan = await callPage();
  const erin = await callPage();
  await register(carla, "carla");
  await register(dan, "dan");
  await register(erin, "erin");
  await addContact(carla, "dan");
  await addContact(erin, "dan");
  await send(carla, "Got a minute? Calling you.");
  await message(carla, "You", "Got a minute? Calling you.").waitFor();

  // Carla calls Dan by video; Dan's page rings wherever he is in the app.
  await carla.getByRole("button", { name: "Video call" }).click();
  const carlaCall = carla.getByRole("region", { name: "Call with dan" });
  await carlaCall.getByRole("status", { name: "Call status" }).filter({ hasText: "Calling dan…" }).waitFor();
  const ringing = dan.getByRole("alertdialog", { name: "Incoming call from carla" });
  await ringing.getByText("carla is calling you (video)").waitFor();
  await ringing.getByRole("button", { name: "Accept" }).click();

  // Both connections connect, and media arrives on both sides and keeps arriving.
  await waitConnected(carla);
  await waitConnected(dan);
  await carlaCall.getByText(/In call with dan · \d+:\d\d/).waitFor();
  const danCall = dan.getByRole("region", { name: "Call with carla" });
  await danCall.getByText(/In call with carla/).waitFor();
  const first = [await inboundBytes(carla), await inboundBytes(dan)];
  await carla.waitForTimeout(3_000);
  const later = [await inboundBytes(carla), await inboundBytes(dan)];
  assert.ok(later[0]! > first[0]! && first[0]! >= 0, `carla's inbound RTP bytes grow: ${first[0]} → ${later[0]}`);
  assert.ok(later[1]! > first[1]! && first[1]! >= 0, `dan's inbound RTP bytes grow: ${first[1]} → ${later[1]}`);
  assert.ok(later[0]! > 10_000 && later[1]! > 10_000, "real media, not just a few packets");
  await carlaCall.getByLabel("dan's video").waitFor();
  await carlaCall.getByLabel("Your video").waitFor();

  // Mute silences the microphone track that is being sent.
  await carlaCall.getByRole("button", { name: "Mute" }).click();
  await carlaCall.getByRole("button", { name: "Unmute" }).waitFor();
  const audioEnabled = await carla.evaluate(() =>
    (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs.at(-1)!.getSenders().find((s) => s.track?.kind === "audio")!.track!.enabled,
  );
  assert.equal(audioEnabled, false);
  await carlaCall.getByRole("button", { name: "Unmute" }).click();
  await screenshot(carla, "call");

  // Erin calls Dan meanwhile: he is busy; he is told, his call goes on.
  await erin.getByRole("button", { name: "Audio call" }).click();
  await erin.getByRole("region", { name: "Call with dan" }).getByText("dan is busy in another call.").waitFor();
  await dan.getByRole("status", { name: "Call notice" }).getByText("erin called while you were in a call.").waitFor();
  assert.equal(await pcState(dan), "connected");
  assert.ok(await tornDown(erin), "erin's attempt let go of her microphone");

  // Carla hangs up: both calls end, cameras and microphones are released.
  await carlaCall.getByRole("button", { name: "Hang up" }).click();
  await carlaCall.getByRole("status", { name: "Call status" }).filter({ hasText: "Call ended." }).waitFor();
  await danCall.getByRole("status", { name: "Call status" }).filter({ hasText: "Call ended." }).waitFor();
  assert.ok(await tornDown(carla), "carla's connection closed and tracks stopped");
  assert.ok(await tornDown(dan), "dan's connection closed and tracks stopped");
  await danCall.getByRole("button", { name: "Close" }).click();
  await danCall.waitFor({ state: "detached" });

  // The chat still works after the call (the signalling shared its sessions).
  await openChat(dan, "carla");
  await dan.getByRole("log", { name: "Messages" }).getByText(/^Video call with carla · 0:\d\d$/).waitFor();
  await carla.getByRole("log", { name: "Messages" }).getByText(/^Video call with dan · 0:\d\d$/).waitFor();
  await erin.getByRole("log", { name: "Messages" }).getByText("dan is busy in another call.").waitFor();
  assert.ok(await dan.getByRole("button", { name: "Audio call" }).isEnabled());
  await Promise.all([carla.context().close(), dan.context().close(), erin.context().close()]);
});

test("a rejected call tells the caller it was rejected", { skip, timeout: 180_000 }, async () => {
  const fay = await callPage();
  const gus = await callPage();
  await register(fay, "fay");
  await register(gus, "gus");
  await addContact(fay, "gus");

  await fay.getByRole("button", { name: "Audio call" }).click();
  const ringing = gus.getByRole("alertdialog", { name: "Incoming call from fay" });
  await ringing.getByText("fay is calling you").waitFor();
  await ringing.getByRole("button", { name: "Reject" }).click();

  const fayCall = fay.getByRole("region", { name: "Call with gus" });
  await fayCall.getByRole("status", { name: "Call status" }).filter({ hasText: "Call rejected: gus declined." }).waitFor();
  await gus.getByRole("region", { name: "Call with fay" }).getByText("You declined the call from fay.").waitFor();
  assert.ok(await tornDown(fay), "the caller let go of the microphone and closed the connection");
  assert.equal(await gus.evaluate(() => (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs.length), 0, "the callee never opened a connection");
  await fay.getByRole("log", { name: "Messages" }).getByText("Call rejected: gus declined.").waitFor();
  await fay.keyboard.press("Escape");
  await fayCall.waitFor({ state: "detached" });
  await Promise.all([fay.context().close(), gus.context().close()]);
});

test("without camera permission the caller is told in words, and the callee is never rung", { skip, timeout: 120_000 }, async () => {
  const hal = await callPage();
  const ivy = await callPage();
  // As if the person had refused the browser's permission prompt.
  await hal.evaluate(() => {
    navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
  });
  await register(hal, "hal");
  await register(ivy, "ivy");
  await addContact(hal, "ivy");
  await hal.getByRole("button", { name: "Video call" }).click();
  const halCall = hal.getByRole("region", { name: "Call with ivy" });
  await halCall
    .getByRole("status", { name: "Call status" })
    .filter({ hasText: "No permission to use your camera and microphone. Allow it in the browser's site settings, then call again." })
    .waitFor();
  assert.equal(await hal.evaluate(() => (window as unknown as { __pcs: RTCPeerConnection[] }).__pcs.length), 0, "no connection was opened");
  // The buttons are usable again once the message is closed.
  await halCall.getByRole("button", { name: "Close" }).click();
  assert.ok(await hal.getByRole("button", { name: "Audio call" }).isEnabled());
  // Nothing was sent: Ivy's page, online all along, never rang.
  await ivy.waitForTimeout(1_500);
  assert.equal(await ivy.getByRole("alertdialog").count(), 0);
  assert.equal(await ivy.getByRole("region", { name: /^Call with/ }).count(), 0);
  await Promise.all([hal.context().close(), ivy.context().close()]);
});

test("a call nobody answers ends after 30 seconds on both sides, in words", { skip, timeout: 90_000 }, async () => {
  const joan = await callPage();
  const kim = await callPage();
  await register(joan, "joan");
  await register(kim, "kim");
  await addContact(joan, "kim");
  // Joan's page runs on Playwright's clock, so the 30 s ring timeout is reached by moving time, not waited out.
  await joan.clock.install();
  await joan.getByRole("button", { name: "Audio call" }).click();
  await kim.getByRole("alertdialog", { name: "Incoming call from joan" }).waitFor();
  const joanCall = joan.getByRole("region", { name: "Call with kim" });
  const noAnswer = joanCall.getByRole("status", { name: "Call status" }).filter({ hasText: "No answer from kim after 30 seconds." });
  await joan.clock.fastForward(25_000);
  assert.equal(await noAnswer.count(), 0, "not before the ring timeout");
  assert.equal(await kim.getByRole("alertdialog", { name: "Incoming call from joan" }).count(), 1, "still ringing at 25 s");
  await joan.clock.fastForward(5_500);
  await noAnswer.waitFor();
  // The caller's hang-up stops the ringing on the other side.
  await kim.getByRole("region", { name: "Call with joan" }).getByRole("status", { name: "Call status" }).filter({ hasText: "Missed call from joan." }).waitFor();
  assert.equal(await kim.getByRole("alertdialog").count(), 0);
  assert.ok(await tornDown(joan), "the caller let go of the microphone and closed the connection");
  await openChat(kim, "joan");
  await kim.getByRole("log", { name: "Messages" }).getByText("Missed call from joan.").waitFor();
  await Promise.all([joan.context().close(), kim.context().close()]);
});

/**
 * The extension's service worker: the account's one device in this browser,
 * run by the web app's `Engine` (the SDK's Reconnector, durable Outbox and
 * encrypted IndexedDB store, the app's encrypted history), kept connected
 * while Chromium lets the worker live. MV3 suspends an idle worker: a
 * `chrome.alarms` alarm wakes it every 30 s, and every start (alarm,
 * browser start, popup) opens the device again, reconnects and fetches what
 * waited on the server. It keeps the toolbar badge at the unread count,
 * shows desktop notifications (no message text unless the user allowed it)
 * and serves the popup over a `chrome.runtime` port.
 *
 * Every listener is registered synchronously at the top level, as MV3
 * requires for the worker to be woken by its events.
 */
import { client } from "@microbot/sdk";

import { Engine, logIn, useServerUrl } from "../../app/src/engine.js";
import { describeError } from "../../app/src/errors.js";
import { PORT_NAME, SERVER_ORIGIN, STORAGE, webSocketUrl } from "./config.js";
import { allMessageIds, conversationOfNotification, notificationId, notificationText, takeNewMessages } from "./notify.js";
import { parseRequest, ProtocolError, type Reply, type Request, type View } from "./protocol.js";
import { badgeText, engineView, totalUnread } from "./view.js";

/** The alarm that wakes a suspended worker to reconnect and fetch. */
const WAKE_ALARM = "microbot-wake";
/** Chromium's shortest alarm period (30 s). */
const WAKE_PERIOD_MINUTES = 0.5;
/** Changes are coalesced into one badge/notification/popup update per this many ms. */
const UPDATE_DELAY_MS = 50;

useServerUrl(webSocketUrl(SERVER_ORIGIN));

let engine: Engine | undefined;
let starting: Promise<Engine | undefined> | undefined;
/** Message ids already counted for notifications. */
let seen = new Set<string>();
let updateTimer: ReturnType<typeof setTimeout> | undefined;
let shownBadge: string | undefined;
const ports = new Set<chrome.runtime.Port>();

/** Deletes the keys and history of a signed-out user (done at start, when no database is open). */
async function forgetSignedOut(): Promise<void> {
  const stored = await chrome.storage.local.get(STORAGE.forget);
  const name = stored[STORAGE.forget];
  if (typeof name !== "string") return;
  await Promise.all(
    [`microbot:${name}`, `microbot-history:${name}`].map(
      (db) =>
        new Promise<void>((resolve) => {
          const request = indexedDB.deleteDatabase(db);
          request.onsuccess = () => resolve();
          request.onerror = () => resolve();
        }),
    ),
  );
  await chrome.storage.local.remove(STORAGE.forget);
}

/** The running engine, starting it from the stored device when the worker (re)starts; undefined when signed out. */
function currentEngine(): Promise<Engine | undefined> {
  if (engine) return Promise.resolve(engine);
  starting ??= (async () => {
    await forgetSignedOut();
    const stored = await chrome.storage.local.get(STORAGE.user);
    const username = stored[STORAGE.user];
    if (typeof username !== "string" || !username) return undefined;
    const store = await client.IdbStore.open(`microbot:${username}`);
    if (!store.device()) {
      store.close();
      return undefined;
    }
    return adopt(await Engine.start(store));
  })()
    .catch((error: unknown) => {
      console.warn("the device did not open", error);
      return undefined;
    })
    .finally(() => {
      starting = undefined;
    });
  return starting;
}

/** Makes `started` the running engine: what its history holds is not news; every change updates badge, notifications and popups. */
function adopt(started: Engine): Engine {
  engine = started;
  seen = allMessageIds(started.state);
  started.subscribe(scheduleUpdate);
  scheduleUpdate();
  return started;
}

function scheduleUpdate(): void {
  if (updateTimer) return;
  updateTimer = setTimeout(() => {
    updateTimer = undefined;
    void update();
  }, UPDATE_DELAY_MS);
}

function currentView(): View {
  return engine ? engineView(engine.state, SERVER_ORIGIN) : { signedIn: false, server: SERVER_ORIGIN };
}

async function update(): Promise<void> {
  const view = currentView();
  for (const port of ports) post(port, { type: "view", view });
  await setBadge(engine ? totalUnread(engine.state) : 0);
  if (engine) await notify(engine);
}

async function setBadge(unread: number): Promise<void> {
  const text = badgeText(unread);
  if (text === shownBadge) return;
  shownBadge = text;
  await chrome.action.setBadgeBackgroundColor({ color: "#1d4ed8" });
  await chrome.action.setBadgeText({ text });
}

/** One notification per conversation with new messages; the text only when the user allowed it. */
async function notify(current: Engine): Promise<void> {
  const news = takeNewMessages(current.state, seen);
  if (news.length === 0) return;
  const stored = await chrome.storage.local.get(STORAGE.showText);
  const showText = stored[STORAGE.showText] === true;
  for (const item of news) {
    const { title, message } = notificationText(item, showText);
    try {
      await chrome.notifications.create(notificationId(item.key), {
        type: "basic",
        iconUrl: chrome.runtime.getURL("icons/icon-128.png"),
        title,
        message,
        priority: 1,
      });
    } catch (error) {
      console.warn("notification not shown", error);
    }
  }
}

function post(port: chrome.runtime.Port, reply: Reply): void {
  try {
    port.postMessage(reply);
  } catch {
    ports.delete(port); // the page closed meanwhile
  }
}

/** Runs one request of a page; resolves with the error in words, if any. */
async function run(request: Request): Promise<string | undefined> {
  const current = await currentEngine();
  if (request.kind === "signIn") {
    if (current) return `Already signed in as ${current.state.username}. Sign out first.`;
    const signedIn = await logIn(request.username, request.password, request.code);
    await chrome.storage.local.set({ [STORAGE.user]: signedIn.state.username });
    adopt(signedIn);
    return undefined;
  }
  if (!current) return "Sign in first.";
  switch (request.kind) {
    case "send":
      await current.sendText(request.peer, request.text);
      return undefined;
    case "read":
      current.markRead(request.peer);
      await chrome.notifications.clear(notificationId(request.peer));
      return undefined;
    case "addContact":
      await current.addContact(request.name);
      return undefined;
    case "signOut":
      current.stop();
      engine = undefined;
      await chrome.storage.local.set({ [STORAGE.forget]: current.state.username });
      await chrome.storage.local.remove(STORAGE.user);
      await setBadge(0);
      // The worker's databases are open: restart the extension, which deletes them before opening anything.
      setTimeout(() => chrome.runtime.reload(), 100);
      return undefined;
  }
}

chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== PORT_NAME || port.sender?.id !== chrome.runtime.id) {
    port.disconnect();
    return;
  }
  ports.add(port);
  port.onDisconnect.addListener(() => ports.delete(port));
  port.onMessage.addListener((raw: unknown) => {
    let id = -1;
    void (async () => {
      try {
        const envelope = parseRequest(raw);
        id = envelope.id;
        const error = await run(envelope.request);
        post(port, { type: "done", id, error });
      } catch (error) {
        post(port, { type: "done", id, error: error instanceof ProtocolError ? `Bad request: ${error.message}` : describeError(error) });
      }
      scheduleUpdate();
    })();
  });
  void currentEngine().then(() => post(port, { type: "view", view: currentView() }));
});

chrome.notifications.onClicked.addListener((id) => {
  if (conversationOfNotification(id) === undefined) return;
  void chrome.notifications.clear(id);
  // Opening the popup needs a focused window; where that fails the popup opens in a tab.
  chrome.action.openPopup().catch(() => chrome.tabs.create({ url: chrome.runtime.getURL("popup.html") }));
});

chrome.alarms.onAlarm.addListener((alarm) => {
  if (alarm.name === WAKE_ALARM) void currentEngine();
});
chrome.runtime.onStartup.addListener(() => void currentEngine());
chrome.runtime.onInstalled.addListener(() => void currentEngine());

void chrome.alarms.get(WAKE_ALARM).then((alarm) => {
  if (!alarm) void chrome.alarms.create(WAKE_ALARM, { periodInMinutes: WAKE_PERIOD_MINUTES });
});
// Whatever woke the worker, the device reconnects and fetches at once.
void currentEngine();

/**
 * The app's engine: one device of one account, kept connected by a
 * `Reconnector`, every send through the SDK's durable `Outbox` (so what is
 * typed offline leaves on reconnect, in order, once), and the
 * conversations as plain data the UI renders. No DOM here.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { client, content as c, IdentityKeyPair, LocalPreKeys, systemRng, toHex, type SafetyNumber } from "@microbot/sdk";

import { CallController, type CallView } from "./call.js";
import { describeError, FileTooLargeError, MAX_FILE_BYTES } from "./errors.js";
import { History } from "./history.js";
import { MiniappListeners, PromptQueue, readPayload, type MiniappInstance } from "./miniapps.js";

type Connection = client.Connection;
/** The device's keys, sessions, outbox and groups: `IdbStore` (or `MemoryStore` where IndexedDB is missing). */
type ClientStore = client.ClientStore & client.OutboxStore & client.GroupStore;
type Content = c.Content;

/** The connection as the person sees it. */
export type NetState = "connecting" | "online" | "offline";

/** One message of a conversation. */
export interface ChatMessage {
  /** Hex of the 16-byte message id. */
  id: string;
  from: string;
  mine: boolean;
  text: string;
  sentAtMs: number;
  replyTo?: { id: string; author: string; snippet: string };
  revision: number;
  edited: boolean;
  deleted: boolean;
  /** emoji → who reacted. */
  reactions: Record<string, string[]>;
  /** Own messages: queued (not yet accepted by the server), sent, read. */
  status?: "queued" | "sent" | "read";
  /** A line about the group (joined, renamed, …), not a message. */
  event?: boolean;
  /** Set for a file. */
  file?: FileInfo;
  /** Set for a miniapp instance shown inline (§11.9). */
  miniapp?: MiniappInstance;
}

/** A file in a conversation. */
export interface FileInfo {
  name: string;
  size: number;
  type: string;
  /** Where it is on the server (once uploaded, or as received). */
  pointer?: c.AttachmentPointer;
  /** Ciphertext bytes moved so far by the running transfer. */
  progress?: { done: number; total: number };
  /** A `blob:` URL of the bytes, once here. */
  url?: string;
}


/** A conversation: 1:1 (key: the peer's name) or a group (key: `#` + hex id). */
export interface Conversation {
  /** The key of the conversation. */
  peer: string;
  /** Set for a group. */
  group?: { id: Uint8Array; name: string; members: string[]; active: boolean };
  messages: ChatMessage[];
  /** The peer's typing indicator expires at this time (ms). */
  typingUntil: number;
  unread: number;
}

/** What the UI shows. */
export interface EngineState {
  username: string;
  net: NetState;
  /** Why the last connection attempt failed, in words. */
  netProblem?: string;
  /** Messages waiting in the outbox. */
  pending: number;
  conversations: Record<string, Conversation>;
  /** The call of this page, if any (or how the last one ended). */
  call?: CallView;
  /** A call that could not be taken, in words. */
  callNotice?: string;
}

/** What `register` shows before the first code is typed. */
export interface PendingRegistration {
  username: string;
  password: string;
  secretBase32: string;
  otpauthUri: string;
  recoveryCodes: string[];
}

const TYPING_TTL_MS = 15_000;
const PREKEYS = 50;

let configuredServerUrl: string | undefined;

/**
 * Points every connection at `url` (`wss://host:port/v1/ws`) instead of the
 * server that served the page: the browser extension's pages and service
 * worker come from the extension, not from the server.
 */
export function useServerUrl(url: string): void {
  configuredServerUrl = url;
}

/** The WebSocket URL of the server that served the page (or the one `useServerUrl` named). */
export function serverUrl(): string {
  if (configuredServerUrl) return configuredServerUrl;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/ws`;
}

/** Browser WebSocket as the SDK's `SocketLike`. */
export const browserSockets: client.SocketFactory = (url, subprotocol) => {
  const socket = new WebSocket(url, subprotocol);
  socket.binaryType = "arraybuffer";
  return socket as unknown as client.SocketLike;
};

/** Opens a logged-out connection to this page's server. */
export function openConnection(): Promise<Connection> {
  return client.Connection.open({ url: serverUrl(), socketFactory: browserSockets, clientAgent: "microbot-web/0.1", helloTimeoutMs: 8_000 });
}

const hex = (bytes: Uint8Array) => toHex(bytes);
const fromHexId = (id: string) => Uint8Array.from(id.match(/../g)!.map((b) => parseInt(b, 16)));

/** Opens the device's encrypted IndexedDB store, groups included (falls back to memory where IndexedDB is missing). */
async function openStore(username: string): Promise<ClientStore> {
  try {
    return await client.IdbStore.open(`microbot:${username}`);
  } catch (error) {
    console.warn("IndexedDB unavailable, keys kept in memory only", error);
    const store = new client.MemoryStore(new LocalPreKeys()) as client.MemoryStore & Partial<client.OutboxStore>;
    const outbox = new client.MemoryOutbox();
    return Object.assign(store, {
      outboxAppend: outbox.outboxAppend.bind(outbox),
      outboxEntries: outbox.outboxEntries.bind(outbox),
      outboxDelete: outbox.outboxDelete.bind(outbox),
    }) as ClientStore;
  }
}

/** Step 1 of registration: asks the server for the account and its TOTP secret. */
export async function startRegistration(username: string, password: string): Promise<PendingRegistration> {
  const conn = await openConnection();
  try {
    const response = await conn.call({ case: "register", value: { username, password } }, "register");
    return { username, password, secretBase32: response.totpSecretBase32, otpauthUri: response.otpauthUri, recoveryCodes: response.recoveryCodes };
  } finally {
    conn.close();
  }
}

/** The TOTP code of the step after the one `typed` matches (enrolment must not replay the confirmation's code). */
function nextCode(secret: Uint8Array, typed: string): string {
  const now = Date.now() / 1000;
  for (const step of [-1, 0, 1]) {
    if (client.totpCode(secret, now + step * 30) === typed) return client.totpCode(secret, now + (step + 1) * 30);
  }
  return client.totpCode(secret, now + 30);
}

/** Step 2: confirms the first code, then enrols this browser as a device. */
export async function finishRegistration(pending: PendingRegistration, code: string): Promise<Engine> {
  const conn = await openConnection();
  try {
    await conn.call({ case: "confirmRegistration", value: { username: pending.username, password: pending.password, totpCode: code } }, "ok");
    const secret = client.decodeBase32(pending.secretBase32);
    return await enrol(conn, pending.username, pending.password, nextCode(secret, code));
  } finally {
    conn.close();
  }
}

/** Logs in on this browser: enrols a new device with password + TOTP (contacts see a new safety number, as with the CLI's `login`). */
export async function logIn(username: string, password: string, code: string): Promise<Engine> {
  const conn = await openConnection();
  try {
    return await enrol(conn, username, password, code);
  } finally {
    conn.close();
  }
}

async function enrol(conn: Connection, username: string, password: string, code: string): Promise<Engine> {
  const deviceKey = IdentityKeyPair.generate(systemRng);
  const identity = IdentityKeyPair.generate(systemRng);
  const deviceId = await client.enrolDevice(conn, username, password, { totpCode: code }, deviceKey, "web");
  const store = await openStore(username);
  store.setDevice({ username, deviceId, deviceKey, identity });
  await client.login(conn, deviceId, deviceKey);
  await client.uploadPreKeys(conn, systemRng, identity, store.preKeys(), PREKEYS);
  if ("flush" in store && typeof store.flush === "function") await (store.flush as () => Promise<void>)();
  // A service worker (the browser extension's) has no localStorage: it remembers the user itself.
  globalThis.localStorage?.setItem("microbot.user", username);
  return Engine.start(store);
}

/** Reopens the device this browser enrolled last, if its keys are here. */
export async function resume(): Promise<Engine | undefined> {
  const username = localStorage.getItem("microbot.user");
  if (!username) return undefined;
  const store = await openStore(username);
  if (!store.device()) return undefined;
  return Engine.start(store);
}

/** Opens a provisioning slot for linking this browser to an existing account (SPEC §12.14); the caller shows `request.text` and waits. */
export function startLinking(): Promise<client.LinkRequest> {
  return client.LinkRequest.create({ connect: openConnection, rng: systemRng });
}

/** A 6-digit code is a TOTP code; anything else is taken as a recovery code. */
function secondFactor(code: string): client.SecondFactor {
  const trimmed = code.trim();
  return /^[0-9]{6}$/.test(trimmed) ? { totpCode: trimmed } : { recoveryCode: trimmed };
}

/**
 * Enrols this browser with the account an existing device sent (password +
 * TOTP or recovery code, like any device, with the account's identity):
 * contacts become chats with trusted keys, groups are fetched from the
 * server, history is stored as received messages (encrypted, like all
 * history). `provisioned` stays usable after a wrong password or code; it
 * is wiped once enrolled.
 */
export async function finishLinking(provisioned: client.Provisioned, password: string, code: string): Promise<Engine> {
  const conn = await openConnection();
  let store: ClientStore;
  try {
    store = await openStore(provisioned.username);
    await client.enrolProvisioned(conn, provisioned, { password, secondFactor: secondFactor(code), store, rng: systemRng, deviceName: "web (linked)", preKeys: PREKEYS });
    if ("flush" in store && typeof store.flush === "function") await (store.flush as () => Promise<void>)();
  } finally {
    conn.close();
  }
  globalThis.localStorage?.setItem("microbot.user", provisioned.username);
  const engine = await Engine.start(store);
  engine.importLinked(provisioned);
  provisioned.wipe();
  return engine;
}

/** Messages per conversation a link sends when the user agrees to send history. */
export const LINK_HISTORY_PER_CONVERSATION = 50;

/** What "Link a device" will send, for the confirmation. */
export interface LinkPreview {
  contacts: number;
  groups: number;
  history: number;
}

/** One signed-in device. */
export class Engine {
  state: EngineState;
  private readonly listeners = new Set<() => void>();
  private readonly messenger: client.Messenger;
  private readonly groups: client.Groups;
  private readonly outbox: client.Outbox;
  private readonly reconnector: client.Reconnector;
  /** Audio/video calls: signalling through encrypted 1:1 contents, media by WebRTC. */
  readonly calls: CallController;
  private current: Connection | undefined;
  private readonly callSignalling: client.CallSignalling;
  private serial: Promise<void> = Promise.resolve();
  /** The access key of our profile key is registered (SPEC §19.7). */
  private sealedEnabled = false;
  private typingSentAt = 0;
  /** Message ids (hex) we queued, to mark them sent / read. */
  private readonly ownIds = new Map<string, string>();
  /** Frames of running miniapps, told about new events. */
  readonly miniappListeners = new MiniappListeners();
  /** "Send this to the group?" questions of miniapps, for the user. */
  readonly miniappPrompts = new PromptQueue();

  /** The engine of the device in `store`, with its history from the encrypted IndexedDB (in memory only where that is missing). */
  static async start(store: ClientStore): Promise<Engine> {
    const username = store.device()?.username ?? "";
    let history: History | undefined;
    let conversations: Record<string, Conversation> = {};
    try {
      history = await History.open(username);
      conversations = await history.load();
    } catch (error) {
      console.warn("history kept in memory only", error);
    }
    return new Engine(store, conversations, history);
  }

  private constructor(
    private readonly store: ClientStore,
    conversations: Record<string, Conversation>,
    private readonly history: History | undefined,
  ) {
    const device = store.device();
    if (!device) throw new Error("no device in the store");
    this.state = { username: device.username, net: "connecting", pending: store.outboxEntries().length, conversations };
    for (const [key, conv] of Object.entries(conversations)) for (const m of conv.messages) if (m.mine) this.ownIds.set(m.id, key);
    // Groups wraps the one Messenger: 1:1 and group messages arrive through it. Groups and
    // sender keys live in the same store, so they survive a reload.
    this.groups = new client.Groups(store, store, systemRng);
    this.messenger = this.groups.messenger;
    // 1:1 messages to a contact whose profile key we hold go sealed (SPEC §19.8): the server
    // stores them without a sender; they leave over a connection that never logs in.
    this.messenger.sealedConnection = openConnection;
    this.outbox = new client.Outbox(store, this.messenger, systemRng, { onEvent: (event) => this.outboxEvent(event) });
    // Call signals leave at once (never queued for later: a stale offer must not ring), in the session lock like every send.
    const signalling = new client.CallSignalling({ rng: systemRng, send: async (to, content) => this.messenger.sendContent(await this.connectionNow(), to, content) });
    this.calls = new CallController(
      signalling,
      () => this.update({ call: this.calls.view, callNotice: this.calls.notice }),
      undefined,
      (peer, id, line) => {
        const conv = this.conversation(peer);
        if (conv.messages.some((m) => m.id === `call-${id}`)) return;
        conv.messages.push({ id: `call-${id}`, from: "", mine: false, text: line, sentAtMs: Date.now(), revision: 0, edited: false, deleted: false, reactions: {}, event: true });
        this.touch();
      },
    );
    this.callSignalling = signalling;
    // Restore what waits in the outbox as "queued" messages.
    for (const entry of store.outboxEntries()) {
      try {
        this.showOwn(entry.to, fromBinary(c.ContentSchema, entry.content));
      } catch {
        /* not displayable */
      }
    }
    this.reconnector = new client.Reconnector({
      connect: () =>
        openConnection().catch((error: unknown) => {
          // Shown as offline until an attempt succeeds (the reconnector keeps trying).
          this.update({ net: "offline", netProblem: describeError(error) });
          throw error;
        }),
      setUp: (conn) => this.setUp(conn),
      backoff: { initialMs: 300, maxMs: 3_000 },
      onUp: (conn) => {
        this.current = conn;
        this.update({ net: "online", netProblem: undefined });
        this.outbox.setConnection(conn);
        conn.onClose((error) => {
          if (this.current === conn) this.current = undefined;
          this.outbox.setConnection(undefined);
          this.update({ net: "offline", netProblem: describeError(error) });
        });
      },
      onStop: (error) => {
        if (error) this.update({ net: "offline", netProblem: describeError(error) });
      },
    });
    this.reconnector.start();
  }

  /** Calls `listener` after every change; returns the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private update(patch: Partial<EngineState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of this.listeners) l();
  }

  private touch(): void {
    this.update({ conversations: { ...this.state.conversations }, pending: this.store.outboxEntries().length });
    this.history?.save(this.state.conversations);
  }

  private async setUp(conn: Connection): Promise<void> {
    const device = this.store.device()!;
    conn.onPush((push) => {
      void this.groups.handlePush(conn, push).then((events) => this.received(events), () => undefined);
    });
    await client.login(conn, device.deviceId, device.deviceKey);
    if (!this.sealedEnabled) {
      // Contacts may send to us sealed once they hold our profile key (shared in what we send):
      // register its access key (once per start; each device registers what it holds, §19.7).
      try {
        await client.enableSealedSender(conn, this.store, systemRng);
        this.sealedEnabled = true;
      } catch (error) {
        if (error instanceof client.ConnectionError) throw error;
        console.warn("sealed sender not enabled", error);
      }
    }
    this.received(await this.groups.fetchAll(conn));
  }

  /** The conversation with `peer` (created empty). */
  conversation(peer: string): Conversation {
    let conv = this.state.conversations[peer];
    if (!conv) {
      conv = { peer, messages: [], typingUntil: 0, unread: 0 };
      this.state.conversations[peer] = conv;
    }
    return conv;
  }

  /** Checks that `name` exists and has a device, then opens its conversation. */
  async addContact(name: string): Promise<void> {
    const conn = await this.connectionNow();
    await this.messenger.ensureSessions(conn, name);
    this.conversation(name);
    this.touch();
  }

  /** The connection if up, else a typed "offline" error. */
  private async connectionNow(): Promise<Connection> {
    if (this.current && !this.current.closed) return this.current;
    throw new client.ConnectionError("Closed", "offline");
  }

  private newContent(body: Content["body"]): Content {
    return create(c.ContentSchema, { messageId: systemRng.fill(16), sentAtMs: BigInt(Date.now()), body });
  }

  /** Sends a text (a reply when `replyTo` is set); queued at once, leaves when online. */
  async sendText(peer: string, text: string, replyTo?: ChatMessage): Promise<void> {
    const reply = replyTo ? create(c.ReplyToSchema, { messageId: fromHexId(replyTo.id), authorUsername: replyTo.from, snippet: replyTo.text.slice(0, 200) }) : undefined;
    const content = this.newContent({ case: "text", value: create(c.TextSchema, { text, replyTo: reply }) });
    this.showOwn(peer, content);
    this.touch();
    await this.deliver(peer, content);
    this.touch();
  }

  async react(peer: string, message: ChatMessage, emoji: string): Promise<void> {
    const mineAlready = (message.reactions[emoji] ?? []).includes(this.state.username);
    const content = this.newContent({ case: "reaction", value: create(c.ReactionSchema, { targetMessageId: fromHexId(message.id), emoji, remove: mineAlready }) });
    this.apply(peer, this.state.username, content);
    this.touch();
    await this.deliver(peer, content);
  }

  async edit(peer: string, message: ChatMessage, text: string): Promise<void> {
    const content = this.newContent({ case: "edit", value: create(c.EditSchema, { targetMessageId: fromHexId(message.id), text, revision: BigInt(message.revision + 1) }) });
    this.apply(peer, this.state.username, content);
    this.touch();
    await this.deliver(peer, content);
  }

  async remove(peer: string, message: ChatMessage): Promise<void> {
    const content = this.newContent({ case: "delete", value: create(c.DeleteSchema, { targetMessageId: fromHexId(message.id) }) });
    this.apply(peer, this.state.username, content);
    this.touch();
    await this.deliver(peer, content);
  }

  private transfer(onProgress: (done: number, total: number) => void): client.TransferOptions {
    const device = this.store.device()!;
    return {
      url: serverUrl(),
      socketFactory: browserSockets,
      connection: () => this.reconnector.connection(),
      deviceId: device.deviceId,
      deviceKey: device.deviceKey,
      onProgress,
    };
  }

  /** Uploads `file` (progress on the message as it goes) and sends it to conversation `key`. */
  async sendFile(key: string, file: File): Promise<void> {
    if (file.size > MAX_FILE_BYTES) throw new FileTooLargeError(file.size);
    const conv = this.conversation(key);
    const message: ChatMessage = {
      id: `upload-${hex(systemRng.fill(8))}`,
      from: this.state.username,
      mine: true,
      text: "",
      sentAtMs: Date.now(),
      revision: 0,
      edited: false,
      deleted: false,
      reactions: {},
      status: "queued",
      file: { name: file.name, size: file.size, type: file.type, progress: { done: 0, total: client.ciphertextLength(file.size) } },
    };
    conv.messages.push(message);
    this.touch();
    try {
      const pointer = await client.uploadAttachment(
        this.transfer((done, total) => {
          message.file!.progress = { done, total };
          this.touch();
        }),
        systemRng,
        client.blobSource(file),
        { fileName: file.name, contentType: file.type || "application/octet-stream" },
      );
      const content = client.attachmentContent(systemRng, pointer);
      message.id = hex(content.messageId);
      message.sentAtMs = Number(content.sentAtMs);
      message.file = { ...message.file!, pointer, progress: undefined, url: URL.createObjectURL(file) };
      this.ownIds.set(message.id, key);
      this.touch();
      await this.deliver(key, content);
    } catch (error) {
      conv.messages.splice(conv.messages.indexOf(message), 1);
      this.touch();
      throw error;
    }
  }

  /** Downloads a received file (progress on the message); resolves with its `blob:` URL. */
  async download(message: ChatMessage): Promise<string> {
    const file = message.file;
    if (!file?.pointer) throw new Error("no file to download");
    if (file.url) return file.url;
    const sink = client.collectSink();
    file.progress = { done: 0, total: client.ciphertextLength(file.size) };
    this.touch();
    try {
      await client.downloadAttachment(
        this.transfer((done, total) => {
          file.progress = { done, total };
          this.touch();
        }),
        file.pointer,
        sink,
      );
      file.url = URL.createObjectURL(new Blob(sink.chunks as BlobPart[], { type: file.type || "application/octet-stream" }));
      return file.url;
    } finally {
      file.progress = undefined;
      this.touch();
    }
  }

  /** Tells `peer` we are typing (at most every 5 s; only while online: typing is not worth keeping for later). */
  typing(peer: string, started: boolean): void {
    const now = Date.now();
    if (started && now - this.typingSentAt < 5_000) return;
    this.typingSentAt = started ? now : 0;
    const conn = this.current;
    if (!conn || conn.closed || this.state.conversations[peer]?.group) return;
    const action = started ? c.TypingAction.STARTED : c.TypingAction.STOPPED;
    // Through the outbox too: one session must not encrypt two messages at once.
    void this.outbox.queueContent(peer, this.newContent({ case: "typing", value: create(c.TypingSchema, { action }) })).catch(() => undefined);
  }

  /** Marks the peer's messages read and tells them (one receipt for all unread). */
  markRead(peer: string): void {
    const conv = this.state.conversations[peer];
    if (!conv || conv.unread === 0) return;
    const ids = conv.messages.filter((m) => !m.mine && !m.deleted && !m.event).slice(-conv.unread).map((m) => fromHexId(m.id));
    conv.unread = 0;
    this.touch();
    if (ids.length === 0) return;
    void this.deliver(peer, this.newContent({ case: "readReceipt", value: create(c.ReadReceiptSchema, { messageIds: ids }) })).catch(() => undefined);
  }

  /** The safety number with `peer`, once a session exists. */
  safetyNumber(peer: string): SafetyNumber | undefined {
    return this.messenger.safetyNumber(peer);
  }

  /** The contacts (1:1 chats) a link passes on. */
  private contactNames(): string[] {
    return Object.keys(this.state.conversations).filter((key) => !key.startsWith("#"));
  }

  /** The newest messages of every conversation as §12.14 history: texts (with their edits) and files; deleted ones are not sent. */
  private linkHistory(): client.HistoryEntry[] {
    const out: client.HistoryEntry[] = [];
    for (const conv of Object.values(this.state.conversations)) {
      const conversation: client.HistoryConversation = conv.group ? { kind: "group", groupId: conv.group.id } : { kind: "direct", username: conv.peer };
      const groupId = conv.group?.id ?? new Uint8Array(0);
      const shown = conv.messages.filter((m) => !m.event && !m.miniapp && !m.deleted && /^[0-9a-f]{32}$/.test(m.id) && (m.file ? m.file.pointer !== undefined : m.text !== ""));
      for (const m of shown.slice(-LINK_HISTORY_PER_CONVERSATION)) {
        const author = m.mine ? this.state.username : m.from;
        const messageId = fromHexId(m.id);
        const sentAtMs = BigInt(Math.max(0, Math.floor(m.sentAtMs)));
        let body: Content["body"];
        if (m.file?.pointer) body = { case: "attachment", value: m.file.pointer };
        else {
          const reply = m.replyTo ? create(c.ReplyToSchema, { messageId: fromHexId(m.replyTo.id), authorUsername: m.replyTo.author, snippet: m.replyTo.snippet }) : undefined;
          body = { case: "text", value: create(c.TextSchema, { text: m.text, replyTo: reply }) };
        }
        out.push({ conversation, author, content: create(c.ContentSchema, { messageId, sentAtMs, groupId, body }) });
        if (m.edited && !m.file) {
          const edit = create(c.EditSchema, { targetMessageId: messageId, text: m.text, revision: BigInt(Math.max(1, m.revision)) });
          out.push({ conversation, author, content: create(c.ContentSchema, { messageId: systemRng.fill(16), sentAtMs, groupId, body: { case: "edit", value: edit } }) });
        }
      }
    }
    return out;
  }

  /** Throws a `LinkError` (`InvalidCode`) for a code that is mistyped. */
  checkLinkCode(code: string): void {
    client.parseProvisioningCode(code);
  }

  /** What a link would send now (counts for the confirmation). */
  linkPreview(withHistory: boolean): LinkPreview {
    const contacts = this.contactNames().filter((name) => this.store.contactIdentity(name)?.length === 32).length;
    const groups = this.store.groupIds().filter((id) => this.store.group(id)?.active).length;
    return { contacts, groups, history: withHistory ? client.capHistory(this.linkHistory()).length : 0 };
  }

  /** Gives this account to the new device showing `code` (§12.14): identity, contacts, groups and, if agreed, recent history. */
  async linkDevice(code: string, withHistory: boolean): Promise<client.LinkSummary> {
    this.checkLinkCode(code);
    const conn = await this.connectionNow();
    return client.linkDevice(conn, code, { store: this.store, contacts: this.contactNames(), history: withHistory ? this.linkHistory() : undefined }, systemRng);
  }

  /** After linking: the contacts' chats, the groups' chats and the history sent along, as if received (read). */
  importLinked(provisioned: client.Provisioned): void {
    for (const contact of provisioned.contacts) this.conversation(contact.username);
    for (const group of provisioned.groups) this.groupKey(group.groupId);
    for (const entry of provisioned.history) {
      const key = entry.conversation.kind === "direct" ? entry.conversation.username : this.groupKey(entry.conversation.groupId);
      this.apply(key, entry.author, entry.content);
      const own = entry.author === this.state.username ? this.conversation(key).messages.find((m) => m.id === hex(entry.content.messageId)) : undefined;
      if (own) {
        own.status = "sent";
        this.ownIds.set(own.id, key);
      }
    }
    for (const conv of Object.values(this.state.conversations)) conv.unread = 0;
    this.touch();
  }

  /** Stops reconnecting (sign-out of this tab). */
  stop(): void {
    void this.calls.hangUp();
    this.reconnector.stop();
  }

  private showOwn(peer: string, content: Content): void {
    if (content.body.case !== "text") return;
    const conv = this.conversation(peer);
    const id = hex(content.messageId);
    if (conv.messages.some((m) => m.id === id)) return;
    conv.messages.push(this.textMessage(this.state.username, true, content));
    this.ownIds.set(id, peer);
    conv.messages[conv.messages.length - 1]!.status = "queued";
  }

  private textMessage(from: string, mine: boolean, content: Content): ChatMessage {
    const text = content.body.case === "text" ? content.body.value : undefined;
    const reply = text?.replyTo;
    return {
      id: hex(content.messageId),
      from,
      mine,
      text: text?.text ?? "",
      sentAtMs: Number(content.sentAtMs),
      replyTo: reply ? { id: hex(reply.messageId), author: reply.authorUsername, snippet: reply.snippet } : undefined,
      revision: 0,
      edited: false,
      deleted: false,
      reactions: {},
    };
  }

  private outboxEvent(event: client.OutboxEvent): void {
    const id = hex(event.messageId);
    const peer = this.ownIds.get(id);
    if (peer) {
      const message = this.state.conversations[peer]?.messages.find((m) => m.id === id);
      if (message && event.kind === "sent" && message.status === "queued") message.status = "sent";
      if (message && event.kind === "failed") message.status = undefined;
    }
    this.touch();
  }

  private received(events: client.ClientEvent[]): void {
    for (const event of events) {
      if (event.type === "groupChanged") this.groupChanged(event.groupId, event.update);
      if (event.type !== "message") continue;
      if (this.callSignalling.handle(event)) continue;
      const m = event.message;
      if (m.sentCopy) {
        const d = m.sentCopy.destination;
        // Addressed to the account itself: a linked device's greeting (SDK enrolProvisioned), nothing to show.
        if (d.kind === "direct" && d.username === this.state.username) continue;
        const key = d.kind === "direct" ? d.username : this.groupKey(d.groupId);
        if (m.content.body.case === "text") {
          this.showOwn(key, m.content);
          const own = this.conversation(key).messages.find((x) => x.id === hex(m.content.messageId));
          if (own) own.status = "sent";
        } else this.apply(key, this.state.username, m.content);
        continue;
      }
      this.apply(m.groupId ? this.groupKey(m.groupId) : m.from, m.from, m.content);
    }
    this.touch();
  }

  /** The conversation key of group `id`, its conversation made and refreshed from what the SDK knows. */
  private groupKey(id: Uint8Array): string {
    const key = `#${hex(id)}`;
    const conv = this.conversation(key);
    const info = this.groups.group(id);
    conv.group = {
      id,
      name: info?.name || conv.group?.name || "Group",
      members: info ? info.members.map((m) => m.username) : (conv.group?.members ?? []),
      active: info?.active ?? conv.group?.active ?? true,
    };
    return key;
  }

  private groupChanged(id: Uint8Array, update: client.GroupUpdate): void {
    const key = this.groupKey(id);
    const line = (() => {
      switch (update.kind) {
        case "Created":
          return `${update.by} created the group “${update.name}”`;
        case "MembersAdded":
          return `${update.usernames.join(", ")} joined`;
        case "MembersRemoved":
          return `${update.usernames.join(", ")} ${update.usernames.length === 1 ? "was" : "were"} removed`;
        case "Left":
          return `${update.username} left`;
        case "Renamed":
          return `The group is now called “${update.name}”`;
        default:
          return undefined;
      }
    })();
    if (line) this.conversation(key).messages.push({ id: `event-${hex(systemRng.fill(8))}`, from: "", mine: false, text: line, sentAtMs: Date.now(), revision: 0, edited: false, deleted: false, reactions: {}, event: true });
  }

  /** Runs a group operation online, after the outbox's sends (one session never encrypts two messages at once). */
  private async groupOp<T>(op: (conn: Connection) => Promise<T>): Promise<T> {
    const conn = await this.connectionNow();
    const run = this.serial.then(async () => {
      await this.outbox.idle();
      return op(conn);
    });
    this.serial = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Creates a group with `members` (names) and opens it. */
  async createGroup(name: string, members: string[]): Promise<string> {
    const id = await this.groupOp((conn) => this.groups.createGroup(conn, name, members));
    const key = this.groupKey(id);
    this.touch();
    return key;
  }

  async renameGroup(key: string, name: string): Promise<void> {
    const id = this.groupId(key);
    await this.groupOp((conn) => this.groups.rename(conn, id, name));
    this.groupChanged(id, { kind: "Renamed", name });
    this.touch();
  }

  async addMembers(key: string, names: string[]): Promise<void> {
    const id = this.groupId(key);
    await this.groupOp((conn) => this.groups.addMembers(conn, id, names));
    this.groupChanged(id, { kind: "MembersAdded", usernames: names });
    this.touch();
  }

  async removeMember(key: string, name: string): Promise<void> {
    const id = this.groupId(key);
    await this.groupOp((conn) => this.groups.removeMembers(conn, id, [name]));
    this.groupChanged(id, { kind: "MembersRemoved", usernames: [name] });
    this.touch();
  }

  async leaveGroup(key: string): Promise<void> {
    const id = this.groupId(key);
    await this.groupOp((conn) => this.groups.leave(conn, id));
    this.groupChanged(id, { kind: "Left", username: this.state.username });
    this.touch();
  }

  private groupId(key: string): Uint8Array {
    const group = this.state.conversations[key]?.group;
    if (!group) throw new Error(`not a group: ${key}`);
    return group.id;
  }

  /** Sends `content` to conversation `key`: 1:1 through the outbox, a group online. */
  private async deliver(key: string, content: Content): Promise<void> {
    const group = this.state.conversations[key]?.group;
    if (!group) {
      await this.outbox.queueContent(key, content);
      return;
    }
    await this.groupOp((conn) => this.groups.sendContent(conn, group.id, content));
    const own = this.state.conversations[key]?.messages.find((m) => m.id === hex(content.messageId));
    if (own && own.status === "queued") own.status = "sent";
    this.touch();
  }

  /** The miniapp instance `instance` (hex) of conversation `key`, if any. */
  miniapp(key: string, instance: string): MiniappInstance | undefined {
    return this.state.conversations[key]?.messages.find((m) => m.miniapp?.instance === instance)?.miniapp;
  }

  /** Starts a new instance of `appId` in group `key` (shown to the others once its first event is sent); returns its hex id. */
  startMiniapp(key: string, appId: string): string {
    if (!this.state.conversations[key]?.group) throw new Error("miniapps run in group chats");
    const instance = hex(systemRng.fill(16));
    const miniapp: MiniappInstance = { appId, instance, startedBy: this.state.username, updates: [], seen: [] };
    this.conversation(key).messages.push({ id: `app-${instance}`, from: this.state.username, mine: true, text: "", sentAtMs: Date.now(), revision: 0, edited: false, deleted: false, reactions: {}, miniapp });
    this.touch();
    return instance;
  }

  /** Sends one confirmed event of instance `instance` to the group, end to end encrypted, then applies it here. */
  async sendMiniapp(key: string, instance: string, payload: Uint8Array): Promise<void> {
    const group = this.state.conversations[key]?.group;
    const miniapp = this.miniapp(key, instance);
    if (!group || !miniapp) throw new Error("no such miniapp in this chat");
    const content = client.miniappEventContent(systemRng, group.id, miniapp.appId, fromHexId(instance), payload);
    await this.groupOp((conn) => this.groups.sendContent(conn, group.id, content));
    this.applyMiniapp(key, this.state.username, content, { appId: miniapp.appId, instanceId: fromHexId(instance), payload });
    this.touch();
  }

  /** One event of a miniapp instance (§11.9): a new instance appears in the chat; duplicates and undecodable payloads are dropped. */
  private applyMiniapp(key: string, author: string, content: Content, event: { appId: string; instanceId: Uint8Array; payload: Uint8Array }): void {
    const conv = this.conversation(key);
    if (!conv.group) return;
    const update = readPayload(event.payload);
    if (update === undefined) return;
    const instance = hex(event.instanceId);
    const id = hex(content.messageId);
    let miniapp = this.miniapp(key, instance);
    if (!miniapp) {
      miniapp = { appId: event.appId, instance, startedBy: author, updates: [], seen: [] };
      conv.messages.push({ id: `app-${instance}`, from: author, mine: author === this.state.username, text: "", sentAtMs: Number(content.sentAtMs) || Date.now(), revision: 0, edited: false, deleted: false, reactions: {}, miniapp });
    }
    if (miniapp.appId !== event.appId || miniapp.seen.includes(id)) return;
    miniapp.seen.push(id);
    const entry = { from: author, update };
    miniapp.updates.push(entry);
    this.miniappListeners.emit(instance, entry);
  }

  /** Applies one content from `author` to the conversation with `peer`. */
  private apply(peer: string, author: string, content: Content): void {
    const conv = this.conversation(peer);
    const find = (id: Uint8Array) => conv.messages.find((m) => m.id === hex(id));
    const body = content.body;
    switch (body.case) {
      case "text": {
        if (find(content.messageId)) return;
        conv.messages.push(this.textMessage(author, author === this.state.username, content));
        if (author !== this.state.username) {
          conv.unread += 1;
          conv.typingUntil = 0;
        }
        return;
      }
      case "attachment": {
        if (find(content.messageId)) return;
        const pointer = body.value;
        const message = this.textMessage(author, author === this.state.username, content);
        message.file = { name: pointer.fileName || "file", size: Number(pointer.size), type: pointer.contentType, pointer };
        conv.messages.push(message);
        if (author !== this.state.username) conv.unread += 1;
        return;
      }
      case "reaction": {
        const target = find(body.value.targetMessageId);
        if (!target) return;
        const who = new Set(target.reactions[body.value.emoji] ?? []);
        if (body.value.remove) who.delete(author);
        else who.add(author);
        if (who.size === 0) delete target.reactions[body.value.emoji];
        else target.reactions[body.value.emoji] = [...who];
        return;
      }
      case "edit": {
        const target = find(body.value.targetMessageId);
        // Only the author edits; a delete wins over every edit; the higher revision wins (SPEC §11.4).
        if (!target || target.from !== author || target.deleted) return;
        const revision = Number(body.value.revision);
        if (revision < target.revision || (revision === target.revision && body.value.text <= target.text)) return;
        target.text = body.value.text;
        target.revision = revision;
        target.edited = true;
        return;
      }
      case "delete": {
        const target = find(body.value.targetMessageId);
        if (!target || target.from !== author) return;
        target.deleted = true;
        target.text = "";
        target.reactions = {};
        return;
      }
      case "readReceipt": {
        for (const id of body.value.messageIds) {
          const target = find(id);
          if (target?.mine) target.status = "read";
        }
        return;
      }
      case "miniappEvent": {
        this.applyMiniapp(peer, author, content, body.value);
        return;
      }
      case "typing": {
        conv.typingUntil = body.value.action === c.TypingAction.STARTED ? Date.now() + TYPING_TTL_MS : 0;
        setTimeout(() => this.touch(), TYPING_TTL_MS + 50);
        return;
      }
      default:
        return;
    }
  }
}

/**
 * Linking a second device of an account through a provisioning slot
 * (SPEC.md §12.14), both sides:
 *
 * ```text
 * new device                           server                 existing device
 * LinkRequest.create ─CreateProvisioningSlot─▶ slot id
 * shows the code (X25519 public key ‖ slot id, base32, text / QR)
 *                                           ◀─PutProvisioningSlot─ linkDevice(code)
 *                                                sealed(identity seed, contacts, groups, history?)
 * LinkRequest.wait ─FetchProvisioningSlot every 500 ms─▶ sealed once, slot deleted
 * enrolProvisioned: password + TOTP / recovery code like any device, with
 * the account's identity; contacts trusted, groups refreshed from the server
 * ```
 *
 * The code must reach the existing device over a channel the user trusts
 * (read off the new device's screen): whoever substitutes the key in it
 * receives the account. Every failure is a `LinkError` of a `kind`; bad
 * bytes from the server or the other device never throw anything else.
 * The identity seed is cleared from every buffer this module made once it
 * is no longer needed (`Provisioned.wipe`, `LinkRequest.dispose`).
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";

import { bytesEqual, wipe } from "../bytes.js";
import { ContentSchema, TypingAction, validateContent, type Content } from "../content.js";
import { HistoryMessageSchema, ProvisionMessageSchema, type HistoryMessage } from "../gen/content_pb.js";
import { ErrorCode } from "../gen/transport_pb.js";
import { IdentityKeyPair, x25519PublicKey } from "../identity.js";
import { openProvisioning, ProvisioningError, sealProvisioning } from "../provisioning.js";
import { systemRng, type Rng } from "../rng.js";
import { enrolDevice, login, uploadPreKeys, type SecondFactor } from "./account.js";
import { ConnectionError, ServerError, type Connection } from "./connection.js";
import { signIntoDeviceList } from "./device_list.js";
import { Groups } from "./groups.js";
import type { GroupRecord, GroupStore } from "./groups_store.js";
import type { ClientStore, DeviceRecord } from "./store.js";

/** Length of a provisioning slot id (§12.14). */
export const SLOT_ID_LEN = 16;
/** Length of the new device's X25519 public key in the code. */
export const CODE_KEY_LEN = 32;
/** Letters of a code without its dashes: base32 of 48 bytes. */
export const CODE_LETTERS = 77;
/** Most contacts one provisioning message carries (§12.14). */
export const MAX_PROVISIONED_CONTACTS = 2000;
/** Most groups one provisioning message carries (§12.14). */
export const MAX_PROVISIONED_GROUPS = 500;
/** Most history messages one provisioning message carries (§12.14). */
export const MAX_PROVISIONED_HISTORY = 1000;
/** Most encoded bytes of history (the sum of the encoded `HistoryMessage`s) one provisioning message carries (§12.14). */
export const HISTORY_BUDGET = 65_536;
/** How often the reference client asks for the slot (§12.14). */
export const LINK_POLL_INTERVAL_MS = 500;
/** Longest sealed message a slot takes (§12.14). */
export const MAX_SEALED_LEN = 262_144;

const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** Why linking failed. */
export type LinkErrorKind =
  /** The typed code is not 77 base32 letters (a typo?). */
  | "InvalidCode"
  /** The slot is gone: the code expired, was already used, or never existed. */
  | "SlotGone"
  /** Nothing arrived before the caller's deadline. */
  | "TimedOut"
  /** The caller gave up (`AbortSignal`). */
  | "Cancelled"
  /** The server could not be reached (for longer than `unreachableAfterMs` while waiting). */
  | "Unreachable"
  /** The server refused a request (see `cause`, a `ServerError`), e.g. `RATE_LIMITED` when creating a slot. */
  | "Refused"
  /** The sealed message does not open with this device's key and slot (§12.14: one error for every failure). */
  | "DoesNotOpen"
  /** The opened message is not a valid `ProvisionMessage` (see `message`). */
  | "InvalidMessage"
  /** The message to send is larger than a slot takes. */
  | "TooLarge"
  /** The existing device's store has no enrolled device. */
  | "NotEnrolled";

/** A typed linking failure. */
export class LinkError extends Error {
  /** The kind of failure. */
  readonly kind: LinkErrorKind;

  /** A `LinkError` of `kind`; `cause` is the underlying error, if any. */
  constructor(kind: LinkErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LinkError";
    this.kind = kind;
  }
}

/** What the new device shows: its ephemeral public key and the slot id. */
export interface ProvisioningCode {
  /** The new device's X25519 public key (32 bytes). */
  publicKey: Uint8Array;
  /** The server's slot id (16 bytes). */
  slotId: Uint8Array;
}

function base32Encode(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = ((buffer << 8) | byte) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += BASE32[(buffer >> bits) & 31];
    }
  }
  if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31];
  return out;
}

function base32Decode(text: string): Uint8Array | undefined {
  const out: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const c of text) {
    const value = BASE32.indexOf(c);
    if (value < 0) return undefined;
    buffer = ((buffer << 5) | value) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((buffer >> bits) & 0xff);
    }
  }
  // Left-over bits must be zero padding (a canonical encoding), at most 7 of them.
  if (bits >= 5 || (buffer & ((1 << bits) - 1)) !== 0) return undefined;
  return Uint8Array.from(out);
}

/** The code's text (§12.14): base32 (RFC 4648, no padding) of `public_key ‖ slot_id` in groups of four joined by `-`; the QR code holds the same text. */
export function formatProvisioningCode(code: ProvisioningCode): string {
  if (code.publicKey.length !== CODE_KEY_LEN || code.slotId.length !== SLOT_ID_LEN) throw new LinkError("InvalidCode", "a code is a 32-byte key and a 16-byte slot id");
  const bytes = new Uint8Array(CODE_KEY_LEN + SLOT_ID_LEN);
  bytes.set(code.publicKey);
  bytes.set(code.slotId, CODE_KEY_LEN);
  return base32Encode(bytes).match(/.{1,4}/g)!.join("-");
}

/** Parses a typed or scanned code; case, `-` and white space do not matter. `LinkError` (`InvalidCode`) otherwise. */
export function parseProvisioningCode(text: string): ProvisioningCode {
  const cleaned = text.replace(/[-\s]/g, "").toUpperCase();
  const bytes = cleaned.length === CODE_LETTERS ? base32Decode(cleaned) : undefined;
  if (!bytes || bytes.length !== CODE_KEY_LEN + SLOT_ID_LEN) throw new LinkError("InvalidCode", "not a provisioning code: check that every letter was typed");
  return { publicKey: bytes.slice(0, CODE_KEY_LEN), slotId: bytes.slice(CODE_KEY_LEN) };
}

/** The conversation a history message belongs to. */
export type HistoryConversation = { kind: "direct"; username: string } | { kind: "group"; groupId: Uint8Array };

/** One message of linked history: a text or file as its author sent it, or an edit or delete of one. */
export interface HistoryEntry {
  /** Its conversation. */
  conversation: HistoryConversation;
  /** Its author. */
  author: string;
  /** The content (valid by §11.2). */
  content: Content;
}

/** What a new device received, checked. Holds the identity seed: call `wipe` once enrolled (or given up). */
export interface Provisioned {
  /** The account. */
  username: string;
  /** The account's identity seed (32 bytes, secret). */
  identitySeed: Uint8Array;
  /** Contacts and the identity key the account trusts for each. */
  contacts: { username: string; identityKey: Uint8Array }[];
  /** The groups the account is in, with their metadata keys (secret; empty while unknown). */
  groups: { groupId: Uint8Array; metadataKey: Uint8Array }[];
  /** Recent messages, oldest first per conversation (empty unless the existing device's user agreed). */
  history: HistoryEntry[];
  /** Clears the seed and the metadata keys. */
  wipe(): void;
}

const encoder = new TextEncoder();
const byteLen = (text: string) => encoder.encode(text).length;
const validName = (name: string) => {
  const n = byteLen(name);
  return n >= 1 && n <= 32;
};

function invalid(message: string): LinkError {
  return new LinkError("InvalidMessage", `invalid provisioning message: ${message}`);
}

/**
 * Decodes and checks an opened `ProvisionMessage` (§12.14 step 5): seed 32
 * bytes, usernames 1..=32 bytes, identity keys 32 bytes, group ids 16
 * bytes, metadata keys 0 or 32 bytes, every history entry with one
 * conversation, a valid author and content valid by §11.2, and the counts.
 * Copies what it keeps; the caller wipes `plaintext`.
 */
export function decodeProvisionMessage(plaintext: Uint8Array): Provisioned {
  let message;
  try {
    message = fromBinary(ProvisionMessageSchema, plaintext);
  } catch (error) {
    throw new LinkError("InvalidMessage", "invalid provisioning message: does not decode", { cause: error });
  }
  if (!validName(message.username)) throw invalid("the username must be 1 to 32 bytes");
  if (message.identitySeed.length !== 32) throw invalid("the identity seed must be 32 bytes");
  if (message.contacts.length > MAX_PROVISIONED_CONTACTS) throw invalid(`more than ${MAX_PROVISIONED_CONTACTS} contacts`);
  if (message.groups.length > MAX_PROVISIONED_GROUPS) throw invalid(`more than ${MAX_PROVISIONED_GROUPS} groups`);
  if (message.history.length > MAX_PROVISIONED_HISTORY) throw invalid(`more than ${MAX_PROVISIONED_HISTORY} history messages`);
  const contacts = message.contacts.map((contact) => {
    if (!validName(contact.username)) throw invalid("a contact's username must be 1 to 32 bytes");
    if (contact.identityKey.length !== 32) throw invalid("a contact's identity key must be 32 bytes");
    return { username: contact.username, identityKey: contact.identityKey.slice() };
  });
  const groups = message.groups.map((group) => {
    if (group.groupId.length !== 16) throw invalid("a group id must be 16 bytes");
    if (group.metadataKey.length !== 0 && group.metadataKey.length !== 32) throw invalid("a metadata key must be 0 or 32 bytes");
    return { groupId: group.groupId.slice(), metadataKey: group.metadataKey.slice() };
  });
  let historyBytes = 0;
  const history = message.history.map((entry): HistoryEntry => {
    historyBytes += toBinary(HistoryMessageSchema, entry).length;
    let conversation: HistoryConversation;
    if (entry.conversation.case === "username" && validName(entry.conversation.value)) conversation = { kind: "direct", username: entry.conversation.value };
    else if (entry.conversation.case === "groupId" && entry.conversation.value.length === 16) conversation = { kind: "group", groupId: entry.conversation.value.slice() };
    else throw invalid("a history message without a valid conversation");
    if (!validName(entry.author)) throw invalid("a history message with an invalid author");
    if (!entry.content) throw invalid("a history message without content");
    try {
      validateContent(entry.content);
    } catch (error) {
      throw new LinkError("InvalidMessage", "invalid provisioning message: a history message with invalid content", { cause: error });
    }
    if (entry.content.body.case === "sync") throw invalid("a history message may not be a SyncMessage");
    // Re-encoded into a buffer of its own: the decoded bytes fields are views of `plaintext`, which the caller wipes.
    const content = fromBinary(ContentSchema, toBinary(ContentSchema, entry.content));
    return { conversation, author: entry.author, content };
  });
  if (historyBytes > HISTORY_BUDGET) throw invalid(`more than ${HISTORY_BUDGET} bytes of history`);
  const seed = message.identitySeed.slice();
  // The decoded message's bytes fields are views of `plaintext` (the caller wipes it).
  return {
    username: message.username,
    identitySeed: seed,
    contacts,
    groups,
    history,
    wipe() {
      wipe(seed, ...groups.map((g) => g.metadataKey));
    },
  };
}

/** Opens `sealed` with the new device's secret for `slotId` and checks it (`DoesNotOpen`, `InvalidMessage`). */
export function openProvisioned(recipientSecret: Uint8Array, slotId: Uint8Array, sealed: Uint8Array): Provisioned {
  let plaintext: Uint8Array;
  try {
    plaintext = openProvisioning(recipientSecret, slotId, sealed);
  } catch (error) {
    if (error instanceof ProvisioningError) throw new LinkError("DoesNotOpen", "the provisioning message is not for this device (wrong code?)", { cause: error });
    throw error;
  }
  try {
    return decodeProvisionMessage(plaintext);
  } finally {
    wipe(plaintext);
  }
}

/** What `LinkRequest.wait` reports while it waits. */
export type LinkWaitState = "waiting" | "reconnecting" | "received";

/** Options of `LinkRequest.create`. */
export interface LinkRequestOptions {
  /** Opens a new, logged-out connection to the server (called again after the server closes one). */
  connect: () => Promise<Connection>;
  /** Randomness for the ephemeral key pair (default `systemRng`). */
  rng?: Rng;
  /** Poll interval (default `LINK_POLL_INTERVAL_MS`). */
  pollIntervalMs?: number;
  /** How long reconnecting may fail in a row before `wait` gives up with `Unreachable` (default 15 s). */
  unreachableAfterMs?: number;
}

/** Options of `LinkRequest.wait`. */
export interface LinkWaitOptions {
  /** Give up after this long (`TimedOut`); never waits past the slot's expiry (`SlotGone`). */
  timeoutMs?: number;
  /** Stops waiting (`Cancelled`). */
  signal?: AbortSignal;
  /** Told about each change of state. */
  onState?: (state: LinkWaitState) => void;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done);
  });
}

/** A connection that broke or was closed (worth reconnecting), not a server speaking nonsense. */
function connectionProblem(error: unknown): boolean {
  return error instanceof ConnectionError && error.kind !== "ProtocolError" && error.kind !== "UnsupportedVersion";
}

/** The new device's side: a slot on the server and the key pair its code names. */
export class LinkRequest {
  /** The code as numbers. */
  readonly code: ProvisioningCode;
  /** The code as text (groups of four joined by `-`); a QR code holds the same text. */
  readonly text: string;
  /** When the server forgets the slot (ms since the epoch). */
  readonly expiresAtMs: number;
  private readonly secret: Uint8Array;
  private readonly options: LinkRequestOptions;
  private connection: Connection | undefined;
  private done = false;

  private constructor(options: LinkRequestOptions, connection: Connection, secret: Uint8Array, slotId: Uint8Array, expiresAtMs: number) {
    this.options = options;
    this.connection = connection;
    this.secret = secret;
    this.code = { publicKey: x25519PublicKey(secret), slotId };
    this.text = formatProvisioningCode(this.code);
    this.expiresAtMs = expiresAtMs;
  }

  /** Opens a slot (`CreateProvisioningSlot`, no account needed) and makes a fresh X25519 key pair. `Unreachable`, `Refused` (`RATE_LIMITED`, `UNAVAILABLE`). */
  static async create(options: LinkRequestOptions): Promise<LinkRequest> {
    let connection: Connection;
    try {
      connection = await options.connect();
    } catch (error) {
      throw new LinkError("Unreachable", "the server is unreachable", { cause: error });
    }
    try {
      const slot = await connection.call({ case: "createProvisioningSlot", value: {} }, "provisioningSlot");
      if (slot.slotId.length !== SLOT_ID_LEN) throw new LinkError("Refused", "the server gave a slot id that is not 16 bytes");
      const secret = (options.rng ?? systemRng).fill(32);
      return new LinkRequest(options, connection, secret, slot.slotId.slice(), Number(slot.expiresAtMs));
    } catch (error) {
      connection.close();
      if (error instanceof LinkError) throw error;
      if (error instanceof ServerError) throw new LinkError("Refused", `the server refused a slot: ${error.message}`, { cause: error });
      if (connectionProblem(error)) throw new LinkError("Unreachable", "the server closed the connection", { cause: error });
      throw new LinkError("Refused", "the server did not answer with a slot", { cause: error });
    }
  }

  /**
   * Asks for the slot every poll interval (reconnecting when the server
   * closes the logged-out connection) until the sealed message arrives;
   * opens and checks it. Once only: the slot is gone after one read.
   */
  async wait(options: LinkWaitOptions = {}): Promise<Provisioned> {
    if (this.done) throw new LinkError("SlotGone", "this code was used already; start linking again");
    const interval = this.options.pollIntervalMs ?? LINK_POLL_INTERVAL_MS;
    const unreachableAfter = this.options.unreachableAfterMs ?? 15_000;
    const timeoutAt = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    const signal = options.signal;
    let failingSince: number | undefined;
    let state: LinkWaitState | undefined;
    const report = (next: LinkWaitState) => {
      if (next !== state) options.onState?.((state = next));
    };
    report("waiting");
    try {
      for (;;) {
        if (signal?.aborted) throw new LinkError("Cancelled", "linking was cancelled");
        const now = Date.now();
        if (now >= this.expiresAtMs) throw new LinkError("SlotGone", "the code expired; start linking again");
        if (now >= timeoutAt) throw new LinkError("TimedOut", "no account arrived in time");
        if (!this.connection || this.connection.closed) {
          this.connection = undefined;
          try {
            this.connection = await this.options.connect();
            failingSince = undefined;
            report("waiting");
          } catch (error) {
            failingSince ??= now;
            report("reconnecting");
            if (Date.now() - failingSince >= unreachableAfter) throw new LinkError("Unreachable", "the server is unreachable", { cause: error });
            await sleep(interval, signal);
            continue;
          }
        }
        let answer;
        try {
          answer = await this.connection.call({ case: "fetchProvisioningSlot", value: { slotId: this.code.slotId } }, "provisioningMessage");
        } catch (error) {
          if (error instanceof ServerError && error.code === ErrorCode.UNKNOWN_PROVISIONING_SLOT) {
            throw new LinkError("SlotGone", "the code expired or was already used; start linking again", { cause: error });
          }
          if (connectionProblem(error) || (error instanceof ServerError && error.code === ErrorCode.RATE_LIMITED)) {
            // The server closes a connection that does not log in (§12.4): open another.
            this.connection?.close();
            this.connection = undefined;
            continue;
          }
          if (error instanceof ServerError) throw new LinkError("Refused", `the server refused: ${error.message}`, { cause: error });
          throw new LinkError("Refused", "the server answered with something else", { cause: error });
        }
        if (answer.ready) {
          this.done = true;
          report("received");
          return openProvisioned(this.secret, this.code.slotId, answer.sealed);
        }
        await sleep(interval, signal);
      }
    } finally {
      if (this.done) this.dispose();
    }
  }

  /** Closes the connection and clears the secret key (the code is then useless). */
  dispose(): void {
    this.done = true;
    wipe(this.secret);
    this.connection?.close();
    this.connection = undefined;
  }
}

/** Options of `enrolProvisioned`. */
export interface EnrolProvisionedOptions {
  /** The account's password. */
  password: string;
  /** A TOTP or recovery code (§13.6). */
  secondFactor: SecondFactor;
  /** The new device's (empty) store. */
  store: ClientStore & GroupStore;
  /** Randomness (default `systemRng`). */
  rng?: Rng;
  /** The device's name on the account's device list. */
  deviceName?: string;
  /** One-time prekeys to upload (default 50). */
  preKeys?: number;
}

/**
 * Enrols this device on the account it was given (password + second factor,
 * like any device) with the account's identity, logs `connection` in and
 * uploads prekeys; then keeps the contacts as trusted identities and the
 * groups as records, brought up to date from the server (§12.10). Returns
 * the device; the caller stores `provisioned.history` as received messages
 * and wipes `provisioned`. A wrong password or code throws the server's
 * `ServerError` (`INVALID_CREDENTIALS`, `INVALID_SECOND_FACTOR`,
 * `TOTP_REPLAYED`) and leaves `provisioned` usable for another try.
 */
export async function enrolProvisioned(connection: Connection, provisioned: Provisioned, options: EnrolProvisionedOptions): Promise<DeviceRecord> {
  const rng = options.rng ?? systemRng;
  const deviceKey = IdentityKeyPair.generate(rng);
  const identity = IdentityKeyPair.fromSeed(provisioned.identitySeed);
  const deviceId = await enrolDevice(connection, provisioned.username, options.password, options.secondFactor, deviceKey, options.deviceName ?? "linked");
  const store = options.store;
  const device: DeviceRecord = { username: provisioned.username, deviceId, deviceKey, identity };
  store.setDevice(device);
  for (const contact of provisioned.contacts) {
    if (contact.username !== provisioned.username) store.setContactIdentity(contact.username, contact.identityKey.slice());
  }
  for (const group of provisioned.groups) {
    if (store.group(group.groupId)) continue;
    const record: GroupRecord = {
      version: 0n,
      active: true,
      members: [],
      name: "",
      description: "",
      metadataKey: group.metadataKey.slice(),
      encryptedMetadata: new Uint8Array(0),
      checkedMs: 0,
      leaving: [],
      pendingKey: new Uint8Array(0),
      pendingCreatedBy: "",
    };
    store.setGroup(group.groupId, record);
  }
  await login(connection, deviceId, deviceKey);
  await uploadPreKeys(connection, rng, identity, store.preKeys(), options.preKeys ?? 50);
  // SPEC.md §20.2: in the account's signed list (if it keeps one) before anyone sends to it.
  await signIntoDeviceList(connection, provisioned.identitySeed, provisioned.username, deviceId);
  const groups = new Groups(store, store, rng);
  await groups.refreshAll(connection);
  await greetOwnDevices(connection, groups, provisioned.username, rng);
  return device;
}

/**
 * Starts this device's sessions with the account's other devices by sending
 * them a "stopped typing" transcript addressed to the account itself (§11.7),
 * which they accept and do not show. Without it the first message each way
 * (typically both devices' read receipts for the same incoming message)
 * would start two sessions at once, and each side would keep the other's
 * (one session per device) and fail to open what follows. Best effort: a
 * failure here does not undo the enrolment.
 */
async function greetOwnDevices(connection: Connection, groups: Groups, username: string, rng: Rng): Promise<void> {
  const content = create(ContentSchema, { messageId: rng.fill(16), sentAtMs: BigInt(Date.now()), body: { case: "typing", value: { action: TypingAction.STOPPED } } });
  try {
    await groups.messenger.sendContent(connection, username, content);
  } catch {
    // Best effort (see above).
  }
}

/** What the existing device gives: read from its store, plus what only the app knows. */
export interface LinkSource {
  /** The existing device's store (its identity, trusted contact keys, groups). */
  store: ClientStore & GroupStore;
  /** The contacts to pass on (their trusted keys come from the store; names without one are left out). */
  contacts: string[];
  /** Recent history, only with the user's agreement; cut at `MAX_PROVISIONED_HISTORY` messages and `HISTORY_BUDGET` bytes, in order. */
  history?: HistoryEntry[];
}

/** What a `linkDevice` call sent. */
export interface LinkSummary {
  /** Contacts sent. */
  contacts: number;
  /** Groups sent. */
  groups: number;
  /** History messages sent (after the caps). */
  history: number;
}

/** The history entries that fit the caps, in order (the first that does not fit ends the list). */
export function capHistory(history: HistoryEntry[]): HistoryMessage[] {
  const out: HistoryMessage[] = [];
  let size = 0;
  for (const entry of history) {
    const conversation =
      entry.conversation.kind === "direct"
        ? { case: "username" as const, value: entry.conversation.username }
        : { case: "groupId" as const, value: entry.conversation.groupId };
    const message = create(HistoryMessageSchema, { conversation, author: entry.author, content: entry.content });
    size += toBinary(HistoryMessageSchema, message).length;
    if (out.length >= MAX_PROVISIONED_HISTORY || size > HISTORY_BUDGET) break;
    out.push(message);
  }
  return out;
}

/** Encodes the `ProvisionMessage` of `source` (§12.14 step 3); the caller wipes the result. */
export function buildProvisionMessage(source: LinkSource): { plaintext: Uint8Array; summary: LinkSummary } {
  const device = source.store.device();
  if (!device) throw new LinkError("NotEnrolled", "no enrolled device in the store");
  const contacts = [...new Set(source.contacts)]
    .filter((name) => name !== device.username)
    .flatMap((username) => {
      const key = source.store.contactIdentity(username);
      return key && key.length === 32 ? [{ username, identityKey: key }] : [];
    })
    .slice(0, MAX_PROVISIONED_CONTACTS);
  const groups = source.store
    .groupIds()
    .flatMap((groupId) => {
      const record = source.store.group(groupId);
      if (!record?.active) return [];
      return [{ groupId, metadataKey: record.metadataKey.length === 32 ? record.metadataKey : new Uint8Array(0) }];
    })
    .slice(0, MAX_PROVISIONED_GROUPS);
  const history = capHistory(source.history ?? []);
  const seed = device.identity.exportSeed();
  const message = create(ProvisionMessageSchema, { username: device.username, identitySeed: seed, contacts, groups, history });
  const plaintext = toBinary(ProvisionMessageSchema, message);
  wipe(seed, ...groups.map((g) => g.metadataKey));
  return { plaintext, summary: { contacts: contacts.length, groups: groups.length, history: history.length } };
}

/**
 * The existing device's side: gives the account to the new device showing
 * `codeText` — seals `buildProvisionMessage(source)` to the code's key and
 * posts it to its slot over the logged-in `connection`. `InvalidCode`,
 * `SlotGone` (expired or used), `TooLarge`, `Unreachable`, `Refused`.
 */
export async function linkDevice(connection: Connection, codeText: string, source: LinkSource, rng: Rng = systemRng): Promise<LinkSummary> {
  const code = parseProvisioningCode(codeText);
  const { plaintext, summary } = buildProvisionMessage(source);
  let sealed: Uint8Array;
  const ephemeral = rng.fill(32);
  try {
    sealed = sealProvisioning(ephemeral, code.publicKey, code.slotId, plaintext);
  } catch (error) {
    throw new LinkError("InvalidCode", "the code's key is not usable", { cause: error });
  } finally {
    wipe(plaintext, ephemeral);
  }
  if (sealed.length > MAX_SEALED_LEN) throw new LinkError("TooLarge", "the account is too large for one provisioning message");
  try {
    await connection.call({ case: "putProvisioningSlot", value: { slotId: code.slotId, sealed } }, "ok");
  } catch (error) {
    if (error instanceof ServerError && error.code === ErrorCode.UNKNOWN_PROVISIONING_SLOT) throw new LinkError("SlotGone", "the code expired or was already used; start linking again on the new device", { cause: error });
    if (error instanceof ServerError && error.code === ErrorCode.PROVISIONING_MESSAGE_TOO_LARGE) throw new LinkError("TooLarge", "the server found the message too large", { cause: error });
    if (error instanceof ServerError) throw new LinkError("Refused", `the server refused: ${error.message}`, { cause: error });
    if (connectionProblem(error)) throw new LinkError("Unreachable", "the server is unreachable", { cause: error });
    throw error;
  }
  return summary;
}

/** Whether two codes name the same key and slot. */
export function sameProvisioningCode(a: ProvisioningCode, b: ProvisioningCode): boolean {
  return bytesEqual(a.publicKey, b.publicKey) && bytesEqual(a.slotId, b.slotId);
}

/**
 * 1:1 messaging over a logged-in `Connection` (SPEC.md §12.6, §12.7, §4,
 * §5, §11): bundles fetched and verified, X3DH/PQXDH sessions, padded
 * `Content`, one atomic `SendRequest` naming both accounts complete,
 * envelopes taken by fetch or push, decrypted once each, then acknowledged.
 * Every send also reaches the account's other devices as a `SyncMessage`
 * transcript (§11.7, sync.ts), and a received transcript is surfaced as an
 * `Incoming` with `sentCopy`. Group envelopes are `Groups`' (groups.ts).
 * Senders encrypt only to the devices a verified signed device list names
 * (§20.4); receivers refuse, before decrypting, an envelope from a device
 * the remembered list leaves out once a fresh look at the list still does
 * (§20.5, `receive`/`admit`).
 *
 * Sends may be started without awaiting each other: every
 * encrypt → send → store, every session start and every received batch
 * runs alone in the store's `sessionLock` (serial.ts), in call order, so
 * no chain step is used twice and no session update is lost.
 */
import { create } from "@bufbuild/protobuf";

import { bytesEqual, constantTimeEqual, utf8 } from "../bytes.js";
import { ContentSchema, decodeContent, encodeContent, type Content } from "../content.js";
import { SafetyNumber } from "../fingerprint.js";
import { ErrorCode, type Envelope, type PrekeyBundle } from "../gen/transport_pb.js";
import { verifyBundle } from "../handshake.js";
import { IdentityKey } from "../identity.js";
import type { DeviceList } from "../device_list.js";
import type { PreKeyBundle } from "../prekeys.js";
import type { Rng } from "../rng.js";
import { decodeSessionMessage, Session } from "../session.js";
import { ConnectionError, ServerError, type Connection } from "./connection.js";
import { SealedEnvelopeError, unsealEnvelope, type Unsealed } from "./sealed.js";
import { PROFILE_KEY_LEN } from "../sealed_sender.js";
import { CertificateCache, SEALED_SESSION, SealedBatch, sealedRecipients, type DeviceEnvelope, type SealedRecipient } from "./sealed_send.js";
import { checkDeviceList, rememberedList, UnlistedDeviceError, type DeviceListCheck } from "./device_list_check.js";
import { sessionLock, type SerialQueue } from "./serial.js";
import { MAX_PREVIOUS_SESSIONS, type ClientStore, type DeviceRecord } from "./store.js";
import { openTranscript, sentTranscript, type SentCopy } from "./sync.js";

/** Why a send or a received envelope failed. */
export type MessengerErrorKind =
  /** No device of the recipient has published keys. */
  | "NoDevices"
  /** The contact's identity key differs from the one seen first (a new safety number to accept). */
  | "IdentityChanged"
  /** The device list kept changing over three attempts. */
  | "DeviceListUnstable"
  /** The client has no enrolled device in its store. */
  | "NotEnrolled"
  /** A sealed send was asked for while `sealedConnection` is not set. */
  | "SealedUnavailable";

/** A typed messenger failure. */
export class MessengerError extends Error {
  /** The kind of failure. */
  readonly kind: MessengerErrorKind;

  /** A `MessengerError` of `kind`. */
  constructor(kind: MessengerErrorKind, message: string) {
    super(message);
    this.name = "MessengerError";
    this.kind = kind;
  }
}

/** A decrypted incoming message. */
export interface Incoming {
  /** The sender's username (from the server's envelope metadata, authenticated by the session). */
  from: string;
  /** The sender's device id. */
  deviceId: bigint;
  /** The server's envelope id. */
  envelopeId: bigint;
  /** The decrypted, validated content (for a transcript: the content it carries). */
  content: Content;
  /** The group the content names (`content.group_id`), for group conversations. */
  groupId?: Uint8Array;
  /** Set when one of our own other devices sent this (a §11.7 transcript): where it went. */
  sentCopy?: SentCopy;
  /** Set when it arrived sealed (§19): the sender is the certificate's, the server did not know it. */
  sealed?: boolean;
}

/** How often the account's own device list is re-read before a send (ms). */
export const OWN_DEVICES_REFRESH_MS = 5 * 60_000;

/**
 * Whether `error`, thrown while receiving an envelope, decides nothing about
 * it: a look at a device list (§20.5) that failed for a lost connection or
 * `RATE_LIMITED`. The envelope is then left unacknowledged, to be looked at
 * again on its next delivery.
 */
export function postponesEnvelope(error: unknown): boolean {
  return error instanceof ConnectionError || (error instanceof ServerError && error.code === ErrorCode.RATE_LIMITED);
}

/**
 * Whether a pairwise `envelope` is a prekey message claiming another identity
 * than `trusted`: an identity change (a reinstall, or a device the server
 * made up), for the safety-number rule (§8), not for the trusted identity's
 * list (§20.5 rule 1).
 */
function claimsNewIdentity(envelope: Envelope, trusted: Uint8Array): boolean {
  if (envelope.groupId.length > 0) return false;
  try {
    const message = decodeSessionMessage(envelope.ciphertext);
    return message.type === "prekey" && !bytesEqual(message.header.identityKey, trusted);
  } catch {
    return false;
  }
}

/** Converts a server `PrekeyBundle` into the handshake's `PreKeyBundle`. */
export function toHandshakeBundle(bundle: PrekeyBundle): PreKeyBundle {
  const spk = bundle.signedPrekey;
  return {
    identityKey: bundle.identityKey,
    signedPreKey: { id: spk?.id ?? 0, publicKey: spk?.publicKey ?? new Uint8Array(0), signature: spk?.signature ?? new Uint8Array(0) },
    oneTimePreKey: bundle.oneTimePrekey ? { id: bundle.oneTimePrekey.id, publicKey: bundle.oneTimePrekey.publicKey } : undefined,
    kemPreKey: bundle.kemPrekey ? { id: bundle.kemPrekey.id, publicKey: bundle.kemPrekey.publicKey, signature: bundle.kemPrekey.signature } : undefined,
  };
}

/** Sends and receives 1:1 messages for the device in `store`. */
export class Messenger {
  private readonly rng: Rng;
  private readonly store: ClientStore;
  private readonly me: DeviceRecord;
  private readonly lock: SerialQueue;
  private ownDevicesCheckedMs = 0;
  /** When each contact's bundles and signed list were last fetched (ms). */
  private readonly contactsCheckedMs = new Map<string, number>();
  /**
   * Called for each device a newly verified signed device list adds
   * (SPEC.md §20.4 Notices), once the list is remembered.
   */
  onDeviceAdded: ((username: string, deviceId: bigint) => void) | undefined;
  /**
   * Opens a connection that does not log in (same URL and pinning). When
   * set, messages to a contact whose profile key is known go sealed over it
   * (SPEC.md §19.8), and so do group messages (`Groups`) when every other
   * member's is; copies for our own devices stay identified.
   */
  sealedConnection: (() => Promise<Connection>) | undefined;
  private readonly certificates: CertificateCache;

  /** A messenger for the enrolled device of `store`; `MessengerError` (`NotEnrolled`) without one. */
  constructor(store: ClientStore, rng: Rng) {
    const me = store.device();
    if (!me) throw new MessengerError("NotEnrolled", "no enrolled device in the store");
    this.store = store;
    this.rng = rng;
    this.me = me;
    this.lock = sessionLock(store);
    this.certificates = new CertificateCache(store);
  }

  /**
   * The sealed recipients of a send to `usernames` (other accounts), or
   * `undefined` when it goes identified: `sealedConnection` is not set, or
   * the profile key or trusted identity of one of them is unknown
   * (SPEC.md §19.8, `sealedRecipients`).
   */
  sealedRecipients(usernames: string[]): SealedRecipient[] | undefined {
    return sealedRecipients(this.store, usernames, this.sealedConnection !== undefined);
  }

  /**
   * Opens a batch of sealed sends: this device's certificate (renewed over
   * the logged-in `connection` when needed) and a connection from
   * `sealedConnection` (`MessengerError` `SealedUnavailable` when it is not
   * set). Close it when done.
   */
  openSealed(connection: Connection): Promise<SealedBatch> {
    if (!this.sealedConnection) return Promise.reject(new MessengerError("SealedUnavailable", "sealedConnection is not set"));
    return SealedBatch.open(connection, this.certificates, this.sealedConnection, this.me.identity, this.rng);
  }

  /**
   * Starts sessions from fetched bundles: with every device of `username`
   * that has none or, with `deviceIds`, new ones with exactly those devices
   * (replacing what was there).
   */
  async ensureSessions(connection: Connection, username: string, deviceIds: bigint[] = []): Promise<void> {
    // In the lock: a send in flight must not store its copy over the new session.
    await this.lock.run(() => this.startSessions(connection, username, deviceIds));
  }

  /**
   * Starts sessions with the listed devices of `username` that have none or,
   * without a list, with all of them when `username` has no session at all.
   * Decided after the sends in flight, so sends started together fetch the
   * bundles (and use up one-time prekeys) once.
   */
  async ensureMissingSessions(connection: Connection, username: string, deviceIds: bigint[] = []): Promise<void> {
    await this.lock.run(async () => {
      if (deviceIds.length === 0) {
        // Re-read every `OWN_DEVICES_REFRESH_MS`, so a contact's new signed list (§20.4) is seen.
        const checked = this.contactsCheckedMs.get(username);
        if (this.store.sessionDevices(username).length === 0 || checked === undefined || Date.now() - checked >= OWN_DEVICES_REFRESH_MS) {
          await this.startSessions(connection, username, []);
        }
        return;
      }
      const none = deviceIds.filter((id) => !this.store.session(username, id));
      if (none.length > 0) await this.startSessions(connection, username, none);
    });
  }

  /** `ensureSessions` inside the lock. */
  private async startSessions(connection: Connection, username: string, deviceIds: bigint[]): Promise<void> {
    const bundles = await connection.call({ case: "fetchPrekeys", value: { username, deviceIds } }, "prekeyBundles");
    const own = username === this.me.username;
    const identities = own ? [] : bundles.bundles.map((b) => verifyBundle(toHandshakeBundle(b)).toBytes());
    const trusted = own ? this.me.identity.publicKey.toBytes() : (this.store.contactIdentity(username) ?? identities[0]);
    // §20.4: checked before any session starts (a refusal throws `DeviceListCheckError`); not when
    // the bundles carry another identity, which `trust` refuses first (§8).
    const check = trusted && (own || identities.every((i) => bytesEqual(i, trusted))) ? this.checkList(username, trusted, bundles.signedDeviceList) : undefined;
    for (const bundle of bundles.bundles) {
      if (own && bundle.deviceId === this.me.deviceId) continue;
      if (check?.list && !check.list.deviceIds.includes(bundle.deviceId)) continue;
      if (deviceIds.length === 0 && this.store.session(username, bundle.deviceId)) continue;
      const handshake = toHandshakeBundle(bundle);
      const identity = verifyBundle(handshake);
      // An own device under another identity key gets no copies (§11.7).
      if (own && !bytesEqual(identity.toBytes(), this.me.identity.publicKey.toBytes())) continue;
      this.trust(username, identity.toBytes());
      this.store.setSession(username, bundle.deviceId, Session.initiate(this.rng, this.me.identity, handshake));
    }
    if (check) this.rememberList(username, check);
    if (!own && deviceIds.length === 0) this.contactsCheckedMs.set(username, Date.now());
  }

  /** §20.4 rules 1–3 for `username`'s served list, against the remembered one. */
  private checkList(username: string, identityKey: Uint8Array, served: Uint8Array): DeviceListCheck {
    return checkDeviceList({
      username,
      identityKey,
      served,
      remembered: this.store.deviceList(username),
      sessionDevices: this.store.sessionDevices(username).filter((id) => username !== this.me.username || id !== this.me.deviceId),
    });
  }

  /** Remembers a list that passed, then announces the devices it added. */
  private rememberList(username: string, check: DeviceListCheck): void {
    if (!check.remember) return;
    this.store.setDeviceList(username, check.remember);
    for (const id of check.added) {
      if (username === this.me.username && id === this.me.deviceId) continue;
      this.onDeviceAdded?.(username, id);
    }
  }

  /** The identity `username`'s list must verify under: ours for our account, the trusted one for a contact (§8). */
  private trustedIdentity(username: string): Uint8Array | undefined {
    return username === this.me.username ? this.me.identity.publicKey.toBytes() : this.store.contactIdentity(username);
  }

  /** `username`'s remembered list, if it verifies under the identity trusted for it. */
  private remembered(username: string): DeviceList | undefined {
    const identity = this.trustedIdentity(username);
    return identity ? rememberedList(username, identity, this.store.deviceList(username)) : undefined;
  }

  /** `ids` narrowed to the devices `username`'s remembered list names (§20.4 rule 4); all of them for an account without one. */
  listedDevices(username: string, ids: bigint[]): bigint[] {
    const list = this.remembered(username);
    return list ? ids.filter((id) => list.deviceIds.includes(id)) : ids;
  }

  /**
   * Whether the remembered list of `envelope`'s sender leaves its device out
   * (§20.5 rule 1): never for an account whose list we never verified, nor
   * for a contact's prekey message under another identity than the trusted
   * one (an identity change, refused by `trust` as `IdentityChanged`).
   */
  private leavesOut(envelope: Envelope): boolean {
    const from = envelope.senderUsername;
    const list = this.remembered(from);
    if (!list || list.deviceIds.includes(envelope.senderDeviceId)) return false;
    return from === this.me.username || !claimsNewIdentity(envelope, this.trustedIdentity(from)!);
  }

  /**
   * §20.5 step 2: fetches `username`'s list again — `ListDevices` for our
   * account, `FetchPrekeys` for device 0 for a contact (ids start at 1, so
   * the answer carries the list, no bundle, and uses up no one-time
   * prekey) — and checks it as a sender does (§20.4); a newer valid one is
   * remembered and announces the devices it gained (`onDeviceAdded`).
   * Answers why the served list was refused, if it was; a lost connection
   * or `RATE_LIMITED` decides nothing and is thrown (`postponesEnvelope`).
   */
  private async lookAgain(connection: Connection, username: string): Promise<unknown> {
    try {
      const served =
        username === this.me.username
          ? (await connection.call({ case: "listDevices", value: {} }, "deviceList")).signedDeviceList
          : (await connection.call({ case: "fetchPrekeys", value: { username, deviceIds: [0n] } }, "prekeyBundles")).signedDeviceList;
      const trusted = this.trustedIdentity(username);
      if (trusted) this.rememberList(username, this.checkList(username, trusted, served));
      return undefined;
    } catch (error) {
      if (postponesEnvelope(error)) throw error;
      return error;
    }
  }

  /** Throws `UnlistedDeviceError` when `envelope` (unsealed) comes from a device its account's list leaves out; marks it seen once `looked`. */
  private refuseUnlisted(envelope: Envelope, looked: boolean, refusal?: unknown): void {
    if (!this.leavesOut(envelope)) return;
    if (looked) this.store.markSeen(envelope.envelopeId);
    throw new UnlistedDeviceError(envelope.senderUsername, envelope.senderDeviceId, looked, refusal);
  }

  /**
   * Starts sessions with the account's other devices that have none (§11.7),
   * re-reading the device list when `force` or when it is older than
   * `OWN_DEVICES_REFRESH_MS`.
   */
  async ensureOwnDevices(connection: Connection, force = false): Promise<void> {
    if (!force && Date.now() - this.ownDevicesCheckedMs < OWN_DEVICES_REFRESH_MS) return;
    const served = await connection.call({ case: "listDevices", value: {} }, "deviceList");
    const check = this.checkList(this.me.username, this.me.identity.publicKey.toBytes(), served.signedDeviceList);
    const named = check.list ? check.list.deviceIds : served.devices.map((d) => d.deviceId);
    const others = named.filter((id) => id !== this.me.deviceId);
    if (others.length > 0) await this.ensureMissingSessions(connection, this.me.username, others);
    this.rememberList(this.me.username, check);
    this.ownDevicesCheckedMs = Date.now();
  }

  /** The account's other devices holding a session under the account's identity key (and named by its verified list, if it has one). */
  ownDevices(): bigint[] {
    const mine = this.me.identity.publicKey.toBytes();
    return this.listedDevices(this.me.username, this.store.sessionDevices(this.me.username))
      .filter((id) => id !== this.me.deviceId && bytesEqual(this.store.session(this.me.username, id)!.remoteIdentity.toBytes(), mine));
  }

  private trust(username: string, key: Uint8Array): void {
    const known = username === this.me.username ? this.me.identity.publicKey.toBytes() : this.store.contactIdentity(username);
    if (known === undefined) this.store.setContactIdentity(username, key);
    else if (!bytesEqual(known, key)) throw new MessengerError("IdentityChanged", `${username}'s identity key changed`);
  }

  /** Sends a text message to `to` (§12.7 `complete_accounts`, retried on `MISSING_DEVICES`); returns the server timestamp. */
  async sendText(connection: Connection, to: string, text: string): Promise<bigint> {
    const content = create(ContentSchema, {
      messageId: this.rng.fill(16),
      sentAtMs: BigInt(Date.now()),
      body: { case: "text", value: { text } },
    });
    return this.sendContent(connection, to, content);
  }

  /**
   * Sends one `Content` to every device of `to` with a session and, as a
   * `SyncMessage` transcript (§11.7), to the account's other devices, in one
   * atomic request. Concurrent calls are serialised (they reach the server
   * in call order); each message is encrypted exactly once per device.
   */
  async sendContent(connection: Connection, to: string, content: Content): Promise<bigint> {
    const me = this.me.username;
    // Contacts learn our profile key (§19.7) from what we send, so they can send to us sealed.
    const profileKey = this.store.profileKey();
    if (profileKey && to !== me) content = { ...content, profileKey };
    const plaintext = encodeContent(content);
    const transcript = encodeContent(sentTranscript(this.rng, to, content));
    let missing: bigint[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      if (to !== me) await this.ensureMissingSessions(connection, to, missing);
      // Missing devices the recipient's bundles did not cover are our own.
      const ownMissing = missing.filter((id) => to === me || !this.store.session(to, id));
      if (ownMissing.length > 0) await this.ensureMissingSessions(connection, me, ownMissing);
      await this.ensureOwnDevices(connection);
      // Encrypt, send and store alone: another send or a receive in between would reuse or lose a chain step.
      const outcome = await this.lock.run(async (): Promise<{ sent: bigint } | { missing: bigint[] }> => {
        const devices = to === me ? [] : this.listedDevices(to, this.store.sessionDevices(to));
        if (to !== me && devices.length === 0) throw new MessengerError("NoDevices", `${to} has no device that published keys`);
        const own = this.ownDevices();
        if (to === me && own.length === 0) return { sent: BigInt(Date.now()) };
        // Encrypt on copies, so a refused send leaves the stored sessions as they were.
        const updated: [string, bigint, Session][] = [];
        const seal = (username: string, deviceId: bigint, bytes: Uint8Array) => {
          const session = Session.fromBytes(this.store.session(username, deviceId)!.toBytes());
          const ciphertext = session.encrypt(bytes);
          updated.push([username, deviceId, session]);
          return { recipientDeviceId: deviceId, ciphertext };
        };
        const envelopes = [...devices.map((id) => seal(to, id, plaintext)), ...own.map((id) => seal(me, id, transcript))];
        const completeAccounts = attempt < 2 ? [...new Set([me, to])] : [];
        const recipient = to === me || devices.length === 0 ? undefined : this.sealedRecipients([to])?.[0];
        if (recipient) {
          try {
            const sent = await this.sendSealed(connection, recipient, envelopes.slice(0, devices.length), envelopes.slice(devices.length));
            for (const [username, deviceId, session] of updated) this.store.setSession(username, deviceId, session);
            return { sent };
          } catch (error) {
            if (!(error instanceof ServerError)) throw error;
            if (error.code === ErrorCode.MISSING_DEVICES && attempt < 2) return { missing: [...error.deviceIds] };
            // A contact whose access key changed gets the message identified (as the Rust SDK does).
            if (error.code !== ErrorCode.UNIDENTIFIED_ACCESS_DENIED) throw error;
          }
        }
        try {
          const response = await connection.call({ case: "send", value: { envelopes, completeAccounts } }, "send");
          for (const [username, deviceId, session] of updated) this.store.setSession(username, deviceId, session);
          return { sent: response.serverTimestampMs };
        } catch (error) {
          if (!(error instanceof ServerError) || attempt === 2 || error.code !== ErrorCode.MISSING_DEVICES) throw error;
          return { missing: [...error.deviceIds] };
        }
      });
      if ("sent" in outcome) return outcome.sent;
      missing = outcome.missing;
    }
    throw new MessengerError("DeviceListUnstable", `${to}'s device list keeps changing`);
  }

  /** Sends `theirs` sealed over a fresh unauthenticated connection, then `ours` identified; the server's time stamp. */
  private async sendSealed(connection: Connection, recipient: SealedRecipient, theirs: DeviceEnvelope[], ours: DeviceEnvelope[]): Promise<bigint> {
    const batch = await this.openSealed(connection);
    let timestamp: bigint;
    try {
      timestamp = await batch.send(recipient, SEALED_SESSION, theirs);
    } finally {
      batch.close();
    }
    if (ours.length > 0) await connection.call({ case: "send", value: { envelopes: ours, completeAccounts: [] } }, "send");
    return timestamp;
  }

  /**
   * Decrypts one envelope (§4.3: an existing session, or a new one from a
   * `PreKeyMessage`), validates its content (§11.2); `undefined` for a
   * duplicate. Throws for an envelope that cannot be opened; the caller acks
   * it either way (it will never open). Synchronous and unlocked: while sends
   * may be in flight, open envelopes through `take`/`fetchAll`, which wait
   * for them (a send stores its sessions when the server answers), or call
   * it inside `sessionLock(store).run`. An envelope from a device the
   * sender's remembered list leaves out (§20.5) is refused before anything
   * is decrypted with `UnlistedDeviceError` (`looked` false, not marked
   * seen): `receive` looks at the list again first.
   */
  open(received: Envelope): Incoming | undefined {
    return this.openListed(received, false);
  }

  /**
   * `open` with the §20.5 look: an envelope from a device the remembered
   * list leaves out makes it fetch the account's list again (`lookAgain`);
   * if the list now names the device the envelope opens, otherwise it is
   * refused (`UnlistedDeviceError`, `looked`, `cause` when the served list
   * was refused), marked seen, nothing stored and no session changed. A look
   * that failed for a lost connection or `RATE_LIMITED` is thrown
   * (`postponesEnvelope`): leave the envelope unacknowledged.
   */
  async receive(connection: Connection, received: Envelope, unsealed?: Unsealed): Promise<Incoming | undefined> {
    try {
      return this.openListed(received, false, undefined, unsealed);
    } catch (error) {
      if (!(error instanceof UnlistedDeviceError) || error.looked) throw error;
      const refusal = await this.lookAgain(connection, error.username);
      return this.openListed(received, true, refusal, unsealed);
    }
  }

  /**
   * The §20.5 check of a group envelope (identified, §12.10) before its
   * sender key opens it, with the look of `receive`: resolves when it may be
   * opened, throws `UnlistedDeviceError` (marked seen) when refused.
   */
  async admit(connection: Connection, envelope: Envelope): Promise<void> {
    if (!this.leavesOut(envelope)) return;
    this.refuseUnlisted(envelope, true, await this.lookAgain(connection, envelope.senderUsername));
  }

  /** Opens the sealed layer of `received` (empty `sender_username`, §19.4): the certified sender and the inner message; `SealedEnvelopeError` when refused. */
  unseal(received: Envelope): Unsealed {
    return unsealEnvelope(this.store, this.me.identity, received);
  }

  /** `open` (`looked`: after a look at the list, which `refusal` refused); `opened`: `received` already unsealed. */
  private openListed(received: Envelope, looked: boolean, refusal?: unknown, opened?: Unsealed): Incoming | undefined {
    if (this.store.seen(received.envelopeId)) return undefined;
    // A sealed envelope (§19) names no sender: its verified certificate does.
    const unsealed = received.senderUsername === "" ? (opened ?? this.unseal(received)) : undefined;
    const envelope = unsealed?.envelope ?? received;
    // A sealed group message is `Groups`' to open (with the sender's key).
    if (envelope.groupId.length > 0) throw new SealedEnvelopeError("GroupUnsupported");
    // §20.5: before anything is decrypted, so a refusal leaves every session as it was.
    this.refuseUnlisted(envelope, looked, refusal);
    const from = envelope.senderUsername;
    const deviceId = envelope.senderDeviceId;
    const message = decodeSessionMessage(envelope.ciphertext);
    const existing = this.store.session(from, deviceId);
    const previous = this.store.previousSessions(from, deviceId);
    const usable = (candidate: Session) => message.type === "ratchet" || candidate.matches(message.header);
    // Decrypt on a copy: a failure leaves the stored session as it was.
    const attempt = (candidate: Session) => {
      const copy = Session.fromBytes(candidate.toBytes());
      return { session: copy, plaintext: copy.decrypt(envelope.ciphertext, this.rng) };
    };
    // An earlier session that opens it (the peer still sends under it, e.g. both sides started one at
    // the same moment) becomes current again; the current one is kept among the earlier ones.
    const fromPrevious = () => {
      for (const [index, candidate] of previous.entries()) {
        if (!usable(candidate)) continue;
        try {
          const opened = attempt(candidate);
          return { ...opened, archive: [...(existing ? [existing] : []), ...previous.filter((_, i) => i !== index)] };
        } catch {
          // Not this one.
        }
      }
      return undefined;
    };
    let session: Session;
    let plaintext: Uint8Array;
    let archive: Session[] | undefined;
    if (existing && usable(existing)) {
      try {
        ({ session, plaintext } = attempt(existing));
      } catch (error) {
        const opened = fromPrevious();
        if (!opened) throw error;
        ({ session, plaintext, archive } = opened);
      }
    } else {
      const opened = message.type === "prekey" ? fromPrevious() : undefined;
      if (opened) ({ session, plaintext, archive } = opened);
      else {
        // A new handshake from that device (§4.3 step 2); it replaces the old session (kept as an
        // earlier one) only if it decrypts.
        ({ session, plaintext } = Session.accept(this.rng, this.me.identity, this.store.preKeys(), envelope.ciphertext));
        if (existing) archive = [existing, ...previous];
      }
    }
    const identity = session.remoteIdentity.toBytes();
    if (unsealed && !constantTimeEqual(unsealed.identity, identity)) throw new SealedEnvelopeError("UntrustedIdentity");
    this.trust(from, identity);
    const decoded = decodeContent(plaintext);
    const sync = openTranscript(decoded, { username: from, identity, pairwise: true }, { username: this.me.username, identity: this.me.identity.publicKey.toBytes() });
    this.store.setSession(from, deviceId, session);
    if (from !== this.me.username && decoded.profileKey.length === PROFILE_KEY_LEN) this.store.setContactProfileKey(from, decoded.profileKey);
    if (archive) this.store.setPreviousSessions(from, deviceId, archive.slice(0, MAX_PREVIOUS_SESSIONS));
    this.store.markSeen(envelope.envelopeId);
    const content = sync?.content ?? decoded;
    const incoming: Incoming = { from, deviceId, envelopeId: envelope.envelopeId, content };
    if (unsealed) incoming.sealed = true;
    if (content.groupId.length > 0) incoming.groupId = content.groupId;
    if (sync) incoming.sentCopy = sync.copy;
    return incoming;
  }

  /** Fetches every queued envelope, opens each and acknowledges them; returns the messages. */
  async fetchAll(connection: Connection): Promise<Incoming[]> {
    const out: Incoming[] = [];
    let after = 0n;
    for (;;) {
      const batch = await connection.call({ case: "fetchEnvelopes", value: { afterEnvelopeId: after, limit: 100 } }, "envelopes");
      out.push(...(await this.take(connection, batch.envelopes)));
      if (batch.envelopes.length > 0) after = batch.envelopes.at(-1)!.envelopeId;
      if (!batch.more || batch.envelopes.length === 0) return out;
    }
  }

  /**
   * Opens `envelopes` (`receive`; those that fail are dropped) and
   * acknowledges them, except those whose device-list look decided nothing
   * (`postponesEnvelope`).
   */
  async take(connection: Connection, envelopes: Envelope[]): Promise<Incoming[]> {
    const postponed = new Set<bigint>();
    const out = await this.lock.run(async () => {
      const opened: Incoming[] = [];
      for (const envelope of envelopes) {
        try {
          const incoming = await this.receive(connection, envelope);
          if (incoming) opened.push(incoming);
        } catch (error) {
          // Undecryptable, invalid or refused: dropped (§11.2, §20.5); the session is unchanged.
          if (postponesEnvelope(error)) postponed.add(envelope.envelopeId);
        }
      }
      return opened;
    });
    const acked = envelopes.filter((e) => !postponed.has(e.envelopeId)).map((e) => e.envelopeId);
    if (acked.length > 0) await connection.call({ case: "ackEnvelopes", value: { envelopeIds: acked } }, "ack");
    return out;
  }

  /** The safety number with `username` (§8), once its identity key is known. */
  safetyNumber(username: string): SafetyNumber | undefined {
    const key = this.store.contactIdentity(username);
    if (!key) return undefined;
    return new SafetyNumber(this.me.identity.publicKey, utf8(this.me.username), IdentityKey.fromBytes(key), utf8(username));
  }
}

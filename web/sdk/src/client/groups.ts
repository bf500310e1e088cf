/**
 * Groups over a logged-in `Connection` (SPEC.md §6, §11.5, §12.10), with the
 * semantics of the Rust SDK (client/src/groups/):
 *
 * - the server's `GroupInfo` is the authority on membership, roles and the
 *   version; the name travels end-to-end encrypted in `GroupChange`
 *   announcements and, sealed under the metadata key, as the server's opaque
 *   `encrypted_metadata`, and is believed only once a key opens that blob;
 * - every change is version-checked and retried on `STALE_GROUP_VERSION`
 *   with the intent re-applied, then announced as a group message;
 * - before each group message every member device (and our own other
 *   devices) gets our current sender key pairwise; the key rotates when a
 *   device that held it is no longer a member device; the message is
 *   encrypted once and fanned out by the server, which checks `key_holders`
 *   (`MISSING_DEVICES`: new devices get the key, then one more try, then a
 *   try without the check); skipped devices (full queues) become a
 *   `notDelivered` event;
 * - with `Messenger.sealedConnection` set and every other member's profile
 *   key known, key and message go sealed instead, one `SendSealed` per
 *   member (groups_sealed.ts, §19.8), and our own other devices get a
 *   transcript;
 * - received envelopes: pairwise ones through `Messenger.receive` (sender
 *   key distributions, group contents from members, own-device
 *   transcripts), group ones with the sender device's sender key, sealed
 *   group ones (§19.8) likewise once unsealed and their certified sender
 *   is a member in our record; every sender device is checked against its
 *   account's signed list first (§20.5). A group message whose
 *   sender key has not arrived yet is reported (`decryptionFailed`) and held
 *   (at most `MAX_HELD` of them and `MAX_HELD_BYTES`, in memory) until a distribution from that
 *   device opens it.
 *
 * Events go to `onEvent` listeners and are returned by `take`/`fetchAll`.
 *
 * Group sends, 1:1 sends and received batches of one device run one at a
 * time in the store's `sessionLock` (serial.ts), shared with `Messenger`:
 * sender-key distributions advance the same pairwise sessions as 1:1 sends.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";

import { bytesEqual, toHex } from "../bytes.js";
import {
  ContentSchema,
  decodeContent,
  encodeContent,
  GroupChangeKind,
  GroupChangeSchema,
  GroupMetadataSchema,
  type Content,
  type GroupChange,
  type GroupMetadata,
} from "../content.js";
import { ErrorCode, GroupRole as WireRole, type Envelope, type GroupInfo as WireGroupInfo, type Push } from "../gen/transport_pb.js";
import { GroupMetadataError, openGroupMetadata, sealGroupMetadata } from "../group_metadata.js";
import type { Rng } from "../rng.js";
import {
  decodeSenderKeyDistribution,
  encodeSenderKeyDistribution,
  OutboundSenderKey, RESERVED_ITERATION, SenderKeyError, SenderKeyRecord } from "../sender_key.js";
import { Session } from "../session.js";
import { ServerError, type Connection, type RequestInit } from "./connection.js";
import { UnlistedDeviceError } from "./device_list_check.js";
import type { GroupRecord, GroupStore, MemberRecord } from "./groups_store.js";
import { Messenger, MessengerError, postponesEnvelope, type Incoming } from "./messenger.js";
import { SealedEnvelopeError, type Unsealed } from "./sealed.js";
import { distributeSealed, introducesGroup, SealedMemberError, sendSealedGroupMessage, type DistributionEnvelope } from "./groups_sealed.js";
import type { SealedBatch, SealedRecipient } from "./sealed_send.js";
import { sessionLock, type SerialQueue } from "./serial.js";
import type { ClientStore, DeviceRecord } from "./store.js";

/** Longest group name in bytes (§11.2 `GroupMetadata.name`). */
export const MAX_GROUP_NAME_LEN = 256;
/** Attempts of one change before giving up on concurrent changes. */
export const MAX_CHANGE_ATTEMPTS = 5;
/** Most group messages held in memory while their sender key is awaited. */
export const MAX_HELD = 100;
/** Most ciphertext bytes held in memory while sender keys are awaited (older ones are dropped first). */
export const MAX_HELD_BYTES = 4 * 1024 * 1024;
/** Most envelopes in one send request (§12.7). */
const MAX_ENVELOPES_PER_SEND = 1000;

/** A member's role. */
export type GroupRole = "member" | "admin";

/** One member of a group. */
export interface GroupMember {
  /** The member's account. */
  username: string;
  /** Its role. */
  role: GroupRole;
  /** The group version at which it joined (it reads only later messages). */
  joinedAtVersion: bigint;
}

/** What this device knows of a group. */
export interface GroupInfo {
  /** The 16-byte group id. */
  id: Uint8Array;
  /** Its name (empty until the name reached this device). */
  name: string;
  /** The server's version. */
  version: bigint;
  /** Its members as of `version`. */
  members: GroupMember[];
  /** False once this account left or was removed. */
  active: boolean;
}

/** What changed in a group. */
export type GroupUpdate =
  /** The group was created by `by` with us as a member. */
  | { kind: "Created"; by: string; name: string }
  /** These accounts joined (possibly us). */
  | { kind: "MembersAdded"; usernames: string[] }
  /** These accounts were removed by an admin (possibly us: the group is then inactive). */
  | { kind: "MembersRemoved"; usernames: string[] }
  /** This account left (possibly us). */
  | { kind: "Left"; username: string }
  /** The name changed. */
  | { kind: "Renamed"; name: string }
  /** Roles changed (see `Groups.group`). */
  | { kind: "RolesChanged" };

/** What a client reports. */
export type ClientEvent =
  /** A message (1:1, group with `message.groupId`, or an own-device copy with `message.sentCopy`). */
  | { type: "message"; message: Incoming }
  /** A group changed. */
  | { type: "groupChanged"; groupId: Uint8Array; version: bigint; update: GroupUpdate }
  /**
   * An envelope that could not be opened or was refused (it is acknowledged
   * all the same); `error` is the typed refusal when there is one, e.g.
   * `UnlistedDeviceError` for a device its account's signed list leaves out
   * (§20.5, `reason` then starts with `UNLISTED_DEVICE`).
   */
  | { type: "decryptionFailed"; from: string; deviceId: bigint; envelopeId: bigint; reason: string; error?: Error }
  /** A group send skipped these devices (full queues, §12.10): the message did not reach them. */
  | { type: "notDelivered"; groupId: Uint8Array; messageId: Uint8Array; usernames: string[]; deviceIds: bigint[] };

/** Why a group operation failed. */
export type GroupErrorKind =
  /** No such group on this device. */
  | "UnknownGroup"
  /** This account is not (or no longer) a member. */
  | "NotMember"
  /** A name over 256 bytes, an invalid username. */
  | "InvalidInput"
  /** Concurrent changes by other admins kept winning (`MAX_CHANGE_ATTEMPTS`). */
  | "Conflict"
  /** The group's device list kept changing over three attempts. */
  | "DeviceListUnstable";

/** A typed group failure; nothing was changed on the server unless said otherwise. */
export class GroupError extends Error {
  /** Which failure. */
  readonly kind: GroupErrorKind;

  /** A `GroupError` of `kind`. */
  constructor(kind: GroupErrorKind, message: string) {
    super(message);
    this.name = "GroupError";
    this.kind = kind;
  }
}

/** What a group send returns. */
export interface GroupSendResult {
  /** The server's time stamp. */
  serverTimestampMs: bigint;
  /** The content's message id. */
  messageId: Uint8Array;
  /** Devices it did not reach (full queues); a `notDelivered` event names them too. */
  skippedDeviceIds: bigint[];
}

/** Options of `Groups`. */
export interface GroupsOptions {
  /** How old the stored membership may be before a send fetches the group again (ms, default 60 000). */
  refreshMs?: number;
}

const USERNAME = /^[a-z0-9_.-]{1,32}$/;

function emptyRecord(): GroupRecord {
  return {
    version: 0n,
    active: true,
    members: [],
    name: "",
    description: "",
    metadataKey: new Uint8Array(0),
    encryptedMetadata: new Uint8Array(0),
    checkedMs: 0,
    leaving: [],
    pendingKey: new Uint8Array(0),
    pendingCreatedBy: "",
  };
}

function isMember(record: GroupRecord, username: string): boolean {
  return record.members.some((m) => m.username === username);
}

function roleOf(record: GroupRecord, username: string): number | undefined {
  return record.members.find((m) => m.username === username)?.role;
}

function toMembers(info: WireGroupInfo): MemberRecord[] {
  return info.members.map((m) => ({ username: m.username, role: m.role, joinedAtVersion: m.joinedAtVersion }));
}

/**
 * Opens the record's blob with its key or, failing that, its pending key
 * (which then becomes the key). On success sets the name and returns the
 * update to report: `Created` while the creation waited, `Renamed` when the
 * name changed.
 */
function openBlob(record: GroupRecord, id: Uint8Array): GroupUpdate | undefined {
  for (const key of [record.metadataKey, record.pendingKey]) {
    if (key.length !== 32) continue;
    let metadata: GroupMetadata;
    try {
      metadata = openGroupMetadata(key, id, record.encryptedMetadata);
    } catch (error) {
      if (error instanceof GroupMetadataError) continue;
      throw error;
    }
    record.metadataKey = key.slice();
    if (bytesEqual(record.pendingKey, key)) record.pendingKey = new Uint8Array(0);
    const changed = metadata.name !== record.name;
    record.name = metadata.name;
    record.description = metadata.description;
    if (record.pendingCreatedBy !== "") {
      const by = record.pendingCreatedBy;
      record.pendingCreatedBy = "";
      return { kind: "Created", by, name: metadata.name };
    }
    return changed ? { kind: "Renamed", name: metadata.name } : undefined;
  }
  return undefined;
}

function publicInfo(id: Uint8Array, record: GroupRecord): GroupInfo {
  return {
    id: id.slice(),
    name: record.name,
    version: record.version,
    members: record.members.map((m) => ({ username: m.username, role: m.role === WireRole.ADMIN ? "admin" : "member", joinedAtVersion: m.joinedAtVersion })),
    active: record.active,
  };
}

/** Groups, sender keys and the receive path of one enrolled device. */
export class Groups {
  /** The 1:1 messenger of the same device (sessions, own-device copies). */
  readonly messenger: Messenger;
  private readonly store: ClientStore;
  private readonly groupStore: GroupStore;
  private readonly rng: Rng;
  private readonly me: DeviceRecord;
  private readonly refreshMs: number;
  private readonly listeners = new Set<(event: ClientEvent) => void>();
  /** Group messages awaiting their sender key, each with whether it came sealed (§19.8). */
  private readonly held: { envelope: Envelope; sealed: boolean }[] = [];
  private readonly gone = new Set<string>();
  private readonly lock: SerialQueue;

  /** Groups for the enrolled device of `store` (`MessengerError` `NotEnrolled` without one). */
  constructor(store: ClientStore, groupStore: GroupStore, rng: Rng, options: GroupsOptions = {}) {
    this.messenger = new Messenger(store, rng);
    this.store = store;
    this.groupStore = groupStore;
    this.rng = rng;
    this.me = store.device()!;
    this.refreshMs = options.refreshMs ?? 60_000;
    this.lock = sessionLock(store);
  }

  /** Calls `listener` for every event; returns a function that removes it. */
  onEvent(listener: (event: ClientEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(events: ClientEvent[]): void {
    for (const event of events) for (const listener of this.listeners) listener(event);
  }

  // ---- reading ------------------------------------------------------------

  /** One group, if known. */
  group(id: Uint8Array): GroupInfo | undefined {
    const record = this.groupStore.group(id);
    return record && publicInfo(id, record);
  }

  /** Every group this device knows, including those we left (`active` false). */
  groups(): GroupInfo[] {
    return this.groupStore.groupIds().flatMap((id) => {
      const record = this.groupStore.group(id);
      return record ? [publicInfo(id, record)] : [];
    });
  }

  // ---- server state -------------------------------------------------------

  /** Applies the server's state of a group (push, fetch, answer); returns the events for what changed. */
  private applyInfo(info: WireGroupInfo): ClientEvent[] {
    const id = info.groupId;
    if (id.length !== 16) return [];
    const me = this.me.username;
    const members = toMembers(info);
    const member = members.some((m) => m.username === me);
    const old = this.groupStore.group(id);
    if (old && old.version >= info.version) {
      old.checkedMs = Date.now();
      this.groupStore.setGroup(id, old);
      return [];
    }
    if (!old && !member) return [];
    const updates: GroupUpdate[] = [];
    let record: GroupRecord;
    if (old && old.version > 0n) {
      const before = new Set(old.members.map((m) => m.username));
      const after = new Set(members.map((m) => m.username));
      const added = [...after].filter((u) => !before.has(u)).sort();
      const removed = [...before].filter((u) => !after.has(u) && !old.leaving.includes(u)).sort();
      if (added.length > 0) updates.push({ kind: "MembersAdded", usernames: added });
      if (removed.length > 0) updates.push({ kind: "MembersRemoved", usernames: removed });
      if (members.some((m) => old.members.some((o) => o.username === m.username && o.role !== m.role))) updates.push({ kind: "RolesChanged" });
      record = old;
    } else {
      // First sight (version 1 is the creation, announced by the creator's CREATED).
      if (info.version > 1n) {
        const joined = members.filter((m) => m.joinedAtVersion === info.version).map((m) => m.username);
        if (joined.length > 0) updates.push({ kind: "MembersAdded", usernames: joined });
      }
      record = old ?? emptyRecord();
    }
    record.leaving = record.leaving.filter((name) => members.some((m) => m.username === name));
    record.version = info.version;
    record.members = members;
    record.active = member;
    record.checkedMs = Date.now();
    if (!bytesEqual(info.encryptedMetadata, record.encryptedMetadata)) {
      record.encryptedMetadata = info.encryptedMetadata.slice();
      const update = openBlob(record, id);
      if (update) updates.push(update);
    }
    if (!record.active) this.groupStore.deleteOutboundSenderKey(id);
    this.groupStore.setGroup(id, record);
    return updates.map((update) => ({ type: "groupChanged", groupId: id.slice(), version: info.version, update }));
  }

  /** Fetches the group (`get_group`) and applies it; a group the server says we are not in becomes inactive. */
  async refresh(connection: Connection, id: Uint8Array): Promise<GroupInfo | undefined> {
    const record = await this.refreshRecord(connection, id);
    return record && publicInfo(id, record);
  }

  /** Fetches every group we are in (after a reconnect: group pushes missed while offline), events as usual. */
  async refreshAll(connection: Connection): Promise<void> {
    for (const id of this.groupStore.groupIds()) {
      if (this.groupStore.group(id)?.active) await this.refreshRecord(connection, id);
    }
  }

  private async refreshRecord(connection: Connection, id: Uint8Array): Promise<GroupRecord | undefined> {
    const { record, events } = await this.fetchGroup(connection, id);
    this.emit(events);
    return record;
  }

  /** `get_group` applied; the record after it and the events (not emitted). */
  private async fetchGroup(connection: Connection, id: Uint8Array): Promise<{ record: GroupRecord | undefined; events: ClientEvent[] }> {
    let events: ClientEvent[];
    try {
      const info = await connection.call({ case: "getGroup", value: { groupId: id } }, "group");
      events = this.applyInfo(info);
    } catch (error) {
      if (!(error instanceof ServerError) || (error.code !== ErrorCode.NOT_GROUP_MEMBER && error.code !== ErrorCode.UNKNOWN_GROUP)) throw error;
      events = [];
      const record = this.groupStore.group(id);
      if (record?.active) {
        record.active = false;
        record.members = record.members.filter((m) => m.username !== this.me.username);
        this.groupStore.setGroup(id, record);
        this.groupStore.deleteOutboundSenderKey(id);
        events.push({ type: "groupChanged", groupId: id.slice(), version: record.version, update: { kind: "MembersRemoved", usernames: [this.me.username] } });
      }
    }
    return { record: this.groupStore.group(id), events };
  }

  // ---- changes ------------------------------------------------------------

  private activeGroup(id: Uint8Array): GroupRecord {
    const record = this.groupStore.group(id);
    if (!record) throw new GroupError("UnknownGroup", `unknown group ${toHex(id)}`);
    if (!record.active) throw new GroupError("NotMember", "this account is not a member of the group");
    return record;
  }

  /** Runs one version-checked change, refetching and re-applying the intent on `STALE_GROUP_VERSION`. */
  private async change(connection: Connection, id: Uint8Array, make: (record: GroupRecord) => RequestInit | undefined): Promise<GroupRecord | undefined> {
    for (let attempt = 0; attempt < MAX_CHANGE_ATTEMPTS; attempt++) {
      const request = make(this.activeGroup(id));
      if (!request) return undefined;
      try {
        const info = await connection.call(request, "group");
        this.emit(this.applyInfo(info));
        return this.activeGroup(id);
      } catch (error) {
        if (!(error instanceof ServerError) || error.code !== ErrorCode.STALE_GROUP_VERSION) throw error;
        await this.refreshRecord(connection, id);
      }
    }
    throw new GroupError("Conflict", `concurrent changes won ${MAX_CHANGE_ATTEMPTS} times`);
  }

  private checkUsernames(usernames: string[]): string[] {
    const out: string[] = [];
    for (const name of usernames) {
      if (!USERNAME.test(name)) throw new GroupError("InvalidInput", `invalid username ${JSON.stringify(name)}`);
      if (name !== this.me.username && !out.includes(name)) out.push(name);
    }
    return out;
  }

  private static checkName(name: string): void {
    if (new TextEncoder().encode(name).length > MAX_GROUP_NAME_LEN) throw new GroupError("InvalidInput", "group name over 256 bytes");
  }

  private announce(connection: Connection, id: Uint8Array, version: bigint, kind: GroupChangeKind, fields: MessageInitShape<typeof GroupChangeSchema> = {}): Promise<GroupSendResult> {
    const change = create(GroupChangeSchema, { ...fields, groupId: id, version: version > 0n ? version : 1n, kind });
    return this.sendContent(connection, id, create(ContentSchema, { messageId: this.rng.fill(16), sentAtMs: BigInt(Date.now()), body: { case: "groupChange", value: change } }));
  }

  /** Creates a group named `name` with us (admin) and `members`, and announces it (`CREATED`, §11.5). Returns its id. */
  async createGroup(connection: Connection, name: string, members: string[]): Promise<Uint8Array> {
    Groups.checkName(name);
    const others = this.checkUsernames(members);
    const id = this.rng.fill(16);
    const key = this.rng.fill(32);
    const metadata = create(GroupMetadataSchema, { name });
    const blob = sealGroupMetadata(this.rng, key, id, metadata);
    const info = await connection.call({ case: "createGroup", value: { groupId: id, members: others, encryptedMetadata: blob } }, "group");
    const record: GroupRecord = { ...emptyRecord(), version: info.version, members: toMembers(info), name, metadataKey: key, encryptedMetadata: blob, checkedMs: Date.now() };
    this.groupStore.setGroup(id, record);
    this.emit([{ type: "groupChanged", groupId: id.slice(), version: info.version, update: { kind: "Created", by: this.me.username, name } }]);
    await this.announce(connection, id, info.version, GroupChangeKind.CREATED, { usernames: others, metadata, metadataKey: key });
    return id;
  }

  /** Adds members (admins only) and gives them the name and metadata key; members already in are skipped. */
  async addMembers(connection: Connection, id: Uint8Array, usernames: string[]): Promise<GroupInfo> {
    const wanted = this.checkUsernames(usernames);
    let added: string[] = [];
    const record = await this.change(connection, id, (r) => {
      added = wanted.filter((u) => !isMember(r, u));
      return added.length === 0 ? undefined : { case: "addGroupMembers", value: { groupId: id, expectedVersion: r.version, usernames: added } };
    });
    if (record) {
      const fields: MessageInitShape<typeof GroupChangeSchema> = { usernames: added, metadata: create(GroupMetadataSchema, { name: record.name, description: record.description }) };
      if (record.metadataKey.length === 32) fields.metadataKey = record.metadataKey;
      await this.announce(connection, id, record.version, GroupChangeKind.MEMBERS_ADDED, fields);
    }
    return publicInfo(id, this.activeGroup(id));
  }

  /**
   * Removes members (admins only), announces it, then re-keys the metadata
   * (§11.5) so the removed cannot read later names; our sender key rotates
   * before our next group message, so they cannot read that either.
   */
  async removeMembers(connection: Connection, id: Uint8Array, usernames: string[]): Promise<GroupInfo> {
    const wanted = this.checkUsernames(usernames);
    let removed: string[] = [];
    const record = await this.change(connection, id, (r) => {
      removed = wanted.filter((u) => isMember(r, u));
      return removed.length === 0 ? undefined : { case: "removeGroupMembers", value: { groupId: id, expectedVersion: r.version, usernames: removed } };
    });
    if (record) {
      await this.announce(connection, id, record.version, GroupChangeKind.MEMBERS_REMOVED, { usernames: removed });
      await this.setMetadata(connection, id, record.name);
    }
    return publicInfo(id, this.activeGroup(id));
  }

  /** Renames the group (admins only): sealed for the server under a fresh metadata key and announced. */
  async rename(connection: Connection, id: Uint8Array, name: string): Promise<GroupInfo> {
    Groups.checkName(name);
    await this.setMetadata(connection, id, name);
    return publicInfo(id, this.activeGroup(id));
  }

  private async setMetadata(connection: Connection, id: Uint8Array, name: string): Promise<void> {
    const key = this.rng.fill(32);
    let metadata: GroupMetadata | undefined;
    const record = await this.change(connection, id, (r) => {
      metadata = create(GroupMetadataSchema, { name, description: r.description });
      const blob = sealGroupMetadata(this.rng, key, id, metadata);
      return { case: "setGroupMetadata", value: { groupId: id, expectedVersion: r.version, encryptedMetadata: blob } };
    });
    if (!record || !metadata) return;
    // The answer was applied with the old key (the new blob did not open): the new key and name now.
    const stored = this.groupStore.group(id)!;
    stored.metadataKey = key;
    const renamed = stored.name !== metadata.name;
    stored.name = metadata.name;
    stored.description = metadata.description;
    this.groupStore.setGroup(id, stored);
    if (renamed) this.emit([{ type: "groupChanged", groupId: id.slice(), version: stored.version, update: { kind: "Renamed", name: metadata.name } }]);
    await this.announce(connection, id, record.version, GroupChangeKind.METADATA_CHANGED, { metadata, metadataKey: key });
  }

  /** Gives `username` the role `role` (admins only). */
  async setRole(connection: Connection, id: Uint8Array, username: string, role: GroupRole): Promise<GroupInfo> {
    this.checkUsernames([username]);
    const wire = role === "admin" ? WireRole.ADMIN : WireRole.MEMBER;
    const record = await this.change(connection, id, (r) =>
      roleOf(r, username) === wire ? undefined : { case: "setGroupRole", value: { groupId: id, expectedVersion: r.version, username, role: wire } },
    );
    if (record) await this.announce(connection, id, record.version, GroupChangeKind.ROLE_CHANGED, { usernames: [username], role: wire as number });
    return publicInfo(id, this.activeGroup(id));
  }

  /** Leaves the group: announces `LEFT` (version + 1) to the members first, then leaves on the server and forgets the group's keys. */
  async leave(connection: Connection, id: Uint8Array): Promise<void> {
    const record = this.activeGroup(id);
    await this.announce(connection, id, record.version + 1n, GroupChangeKind.LEFT);
    try {
      await connection.call({ case: "leaveGroup", value: { groupId: id } }, "ok");
    } catch (error) {
      if (!(error instanceof ServerError) || (error.code !== ErrorCode.NOT_GROUP_MEMBER && error.code !== ErrorCode.UNKNOWN_GROUP)) throw error;
    }
    const left = this.groupStore.group(id)!;
    left.members = left.members.filter((m) => m.username !== this.me.username);
    left.active = false;
    this.groupStore.setGroup(id, left);
    this.groupStore.deleteGroupKeys(id);
    this.emit([{ type: "groupChanged", groupId: id.slice(), version: left.version, update: { kind: "Left", username: this.me.username } }]);
  }

  // ---- sending ------------------------------------------------------------

  /** Sends a text message to the group. */
  sendText(connection: Connection, id: Uint8Array, text: string): Promise<GroupSendResult> {
    return this.sendContent(connection, id, create(ContentSchema, { messageId: this.rng.fill(16), sentAtMs: BigInt(Date.now()), body: { case: "text", value: { text } } }));
  }

  /** The member devices we can reach: those with a session under the trusted identity (and listed, §20.4), and our own other devices. */
  private memberDevices(members: string[]): Map<string, { username: string; deviceId: bigint }> {
    const targets = new Map<string, { username: string; deviceId: bigint }>();
    const add = (username: string, deviceId: bigint) => {
      const key = `${username}/${deviceId}`;
      if (!this.gone.has(key)) targets.set(key, { username, deviceId });
    };
    for (const name of members) {
      const trusted = this.store.contactIdentity(name);
      if (!trusted) continue;
      // Only devices the member's verified signed list names, if it has one (SPEC.md §20.4).
      for (const deviceId of this.messenger.listedDevices(name, this.store.sessionDevices(name))) {
        if (bytesEqual(this.store.session(name, deviceId)!.remoteIdentity.toBytes(), trusted)) add(name, deviceId);
      }
    }
    for (const deviceId of this.messenger.ownDevices()) add(this.me.username, deviceId);
    return targets;
  }

  /** Starts sessions with the devices the server named missing (ours first, then each member's). */
  private async fetchMissing(connection: Connection, members: string[], missing: bigint[]): Promise<void> {
    await this.messenger.ensureOwnDevices(connection, true);
    let rest = missing.filter((id) => !this.store.session(this.me.username, id));
    for (const name of members) {
      if (rest.length === 0) return;
      try {
        await this.messenger.ensureMissingSessions(connection, name, rest);
      } catch (error) {
        if (!(error instanceof MessengerError)) throw error;
      }
      rest = rest.filter((id) => !this.store.session(name, id));
    }
  }

  /**
   * Makes sure every member device holds our current sender key (§6.3),
   * rotating first when a device that held it is no longer a member device.
   * With `sealed` (every other member's access key known, §19.8), a member
   * that needs the key gets it on all its devices, sealed over `batch` (a
   * device that already holds this generation ignores the repeat); our own
   * devices, and a member that refused our access key, get it identified.
   * Returns false when the server named devices that no longer exist (they
   * are left out from now on; try again); throws `MISSING_DEVICES` as the
   * server's `ServerError`. Runs inside `lock` only.
   */
  private async distribute(connection: Connection, id: Uint8Array, members: string[], sealed?: { batch: SealedBatch; recipients: SealedRecipient[] }): Promise<boolean> {
    const targets = this.memberDevices(members);
    const existing = this.groupStore.outboundSenderKey(id);
    const shared = this.groupStore.sharedWith(id);
    const departed = (key: OutboundSenderKey) => shared.some((s) => s.keyId !== key.currentKeyId || !targets.has(`${s.username}/${s.deviceId}`));
    let key = existing;
    if (!key || key.nextIteration === RESERVED_ITERATION || departed(key)) {
      key = OutboundSenderKey.create(this.rng, id, existing?.currentKeyId);
      this.groupStore.setOutboundSenderKey(id, key);
      this.groupStore.clearSharedWith(id);
    }
    const have = new Set(this.groupStore.sharedWith(id).map((s) => `${s.username}/${s.deviceId}`));
    let need = [...targets].filter(([k]) => !have.has(k)).map(([, t]) => t);
    if (need.length === 0) return true;
    if (sealed) {
      // A sealed send names every device of the account (§19.8).
      const needy = new Set(need.map((t) => t.username).filter((username) => sealed.recipients.some((r) => r.username === username)));
      need = [...targets.values()].filter((t) => needy.has(t.username) || !have.has(`${t.username}/${t.deviceId}`));
    }
    const encoded = encodeSenderKeyDistribution(key.distribution());
    const plaintext = encodeContent(
      create(ContentSchema, {
        messageId: this.rng.fill(16),
        sentAtMs: BigInt(Date.now()),
        body: { case: "senderKeyDistribution", value: { groupId: id, distribution: encoded } },
      }),
    );
    // Encrypted on copies: a session is stored only once the server stored what it encrypted.
    const sessions = new Map<string, Session>();
    const envelopes: DistributionEnvelope[] = need.map(({ username, deviceId }) => {
      const session = Session.fromBytes(this.store.session(username, deviceId)!.toBytes());
      sessions.set(`${username}/${deviceId}`, session);
      return { username, envelope: { recipientDeviceId: deviceId, ciphertext: session.encrypt(plaintext) } };
    });
    const stored = (sent: DistributionEnvelope[]) => {
      for (const s of sent) this.store.setSession(s.username, s.envelope.recipientDeviceId, sessions.get(`${s.username}/${s.envelope.recipientDeviceId}`)!);
      this.groupStore.addSharedWith(id, sent.map((s) => ({ username: s.username, deviceId: s.envelope.recipientDeviceId, keyId: key.currentKeyId })));
    };
    let rest = envelopes;
    if (sealed) {
      try {
        const outcome = await distributeSealed(sealed.batch, sealed.recipients, envelopes);
        stored(outcome.sent);
        rest = outcome.rest;
      } catch (error) {
        if (!(error instanceof SealedMemberError)) throw error;
        return this.devicesChanged(error.username, error.cause);
      }
    }
    for (let at = 0; at < rest.length; at += MAX_ENVELOPES_PER_SEND) {
      const chunk = rest.slice(at, at + MAX_ENVELOPES_PER_SEND);
      try {
        await connection.call({ case: "send", value: { envelopes: chunk.map((s) => s.envelope), completeAccounts: [] } }, "send");
      } catch (error) {
        if (error instanceof ServerError && (error.code === ErrorCode.UNKNOWN_DEVICE || error.code === ErrorCode.DEVICE_REMOVED)) {
          for (const s of chunk) if (error.deviceIds.includes(s.envelope.recipientDeviceId)) this.gone.add(`${s.username}/${s.envelope.recipientDeviceId}`);
          return false;
        }
        throw error;
      }
      stored(chunk);
    }
    return true;
  }

  /**
   * What a member's refused sealed send means for its devices: the devices
   * an `UNKNOWN_DEVICE` / `DEVICE_REMOVED` names are left out from now on
   * (false: try again); `MISSING_DEVICES` and anything else is rethrown as
   * the server's error (the caller fetches the missing devices).
   */
  private devicesChanged(username: string, error: ServerError): false {
    if (error.code !== ErrorCode.UNKNOWN_DEVICE && error.code !== ErrorCode.DEVICE_REMOVED) throw error;
    for (const deviceId of error.deviceIds) this.gone.add(`${username}/${deviceId}`);
    return false;
  }

  /**
   * Sends one content to the group (§12.10): its `group_id` is set to `id`,
   * our sender key is distributed where it is missing, the message is
   * encrypted once and sent with `key_holders` checked (twice), then
   * without. When `Messenger.sealedConnection` is set and every other
   * member's profile key is known (§19.8, `Messenger.sealedRecipients`) and
   * it is not an announcement introducing the group (`introducesGroup`), it
   * goes sealed instead: one `SendSealed` per member over one connection
   * that never logs in, and a `SyncMessage` transcript to our own other
   * devices (identified); a member refusing our access key makes it go
   * identified (`SendGroup`, the same ciphertext). Concurrent sends (group
   * or 1:1) are serialised, in call order.
   */
  async sendContent(connection: Connection, id: Uint8Array, content: Content): Promise<GroupSendResult> {
    const body = create(ContentSchema, { ...content, groupId: id.slice() });
    const plaintext = encodeContent(body);
    const me = this.me.username;
    let force = false;
    let missing: bigint[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      let record = this.groupStore.group(id);
      if (!record) throw new GroupError("UnknownGroup", `unknown group ${toHex(id)}`);
      if (force || !record.active || Date.now() - record.checkedMs >= this.refreshMs) record = await this.refreshRecord(connection, id);
      if (!record?.active) throw new GroupError("NotMember", "this account is not a member of the group");
      force = false;
      const members: string[] = [];
      for (const name of record.members.map((m) => m.username)) {
        if (name === me) continue;
        try {
          await this.messenger.ensureMissingSessions(connection, name);
          members.push(name);
        } catch (error) {
          // A member without usable devices (none published, a changed identity, an account gone) is skipped, as in the Rust SDK.
          const gone = error instanceof ServerError && error.code === ErrorCode.UNKNOWN_ACCOUNT;
          if (!(error instanceof MessengerError) && !gone) throw error;
        }
      }
      if (missing.length > 0) await this.fetchMissing(connection, members, missing);
      else await this.messenger.ensureOwnDevices(connection);
      missing = [];
      const check = attempt < 2;
      let sent: { serverTimestampMs: bigint; skipped: { usernames: string[]; deviceIds: bigint[] }; sealed: boolean } | undefined;
      try {
        // Distribute, encrypt and send alone: the distributions advance pairwise sessions that other sends use too.
        sent = await this.lock.run(async () => {
          const recipients = introducesGroup(body) ? undefined : this.messenger.sealedRecipients(members);
          const batch = recipients ? await this.messenger.openSealed(connection) : undefined;
          try {
            if (!(await this.distribute(connection, id, members, batch && recipients ? { batch, recipients } : undefined))) return undefined;
            const key = this.groupStore.outboundSenderKey(id)!;
            const ciphertext = key.encrypt(plaintext);
            this.groupStore.setOutboundSenderKey(id, key);
            const shared = this.groupStore.sharedWith(id);
            if (batch && recipients) {
              const targets = [...this.memberDevices(members).values()];
              const sealedMembers = recipients.map((recipient) => ({ recipient, deviceIds: targets.filter((t) => t.username === recipient.username).map((t) => t.deviceId) }));
              let outcome;
              try {
                outcome = await sendSealedGroupMessage(batch, id, sealedMembers, ciphertext);
              } catch (error) {
                if (!(error instanceof SealedMemberError)) throw error;
                this.devicesChanged(error.username, error.cause);
                return undefined;
              }
              if (outcome.kind === "sent") {
                const skipped = { usernames: outcome.skipped.map((s) => s.username).sort(), deviceIds: outcome.skipped.flatMap((s) => s.deviceIds) };
                return { serverTimestampMs: outcome.serverTimestampMs, skipped, sealed: true };
              }
              // A member refused our access key (its profile key changed): the same ciphertext goes identified.
            }
            const keyHolders = check ? shared.filter((s) => s.keyId === key.currentKeyId).map((s) => s.deviceId) : [];
            const response = await connection.call({ case: "sendGroup", value: { groupId: id, ciphertext, keyHolders, checkKeyHolders: check } }, "send");
            const deviceIds = [...response.skippedDeviceIds];
            const usernames = [...new Set(shared.filter((s) => deviceIds.includes(s.deviceId)).map((s) => s.username))].sort();
            return { serverTimestampMs: response.serverTimestampMs, skipped: { usernames, deviceIds }, sealed: false };
          } finally {
            batch?.close();
          }
        });
      } catch (error) {
        if (!(error instanceof ServerError)) throw error;
        if (check && error.code === ErrorCode.MISSING_DEVICES) {
          // Member devices we have not seen: fetch them, give them the key, send again.
          missing = [...error.deviceIds];
          force = true;
          continue;
        }
        if (error.code === ErrorCode.NOT_GROUP_MEMBER || error.code === ErrorCode.UNKNOWN_GROUP) {
          await this.refreshRecord(connection, id);
          throw new GroupError("NotMember", "this account is not a member of the group");
        }
        throw error;
      }
      if (!sent) continue;
      let serverTimestampMs = sent.serverTimestampMs;
      // Sealed, the server did not fan it out to our own other devices: they get a transcript (§11.7), identified.
      if (sent.sealed && this.messenger.ownDevices().length > 0) {
        const own = await this.messenger.sendContent(connection, me, body);
        if (own > serverTimestampMs) serverTimestampMs = own;
      }
      // Nothing was stored (no member device, no own device): now, as the Rust SDK reports it.
      if (serverTimestampMs === 0n) serverTimestampMs = BigInt(Date.now());
      const skipped = sent.skipped.deviceIds;
      if (skipped.length > 0) this.emit([{ type: "notDelivered", groupId: id.slice(), messageId: body.messageId.slice(), usernames: sent.skipped.usernames, deviceIds: skipped }]);
      return { serverTimestampMs, messageId: body.messageId.slice(), skippedDeviceIds: skipped };
    }
    throw new GroupError("DeviceListUnstable", "the group's device list keeps changing");
  }

  // ---- receiving ----------------------------------------------------------

  /** Handles one push: an envelope (opened and acknowledged) or a group's new state. Returns the events. */
  async handlePush(connection: Connection, push: Push): Promise<ClientEvent[]> {
    if (push.event.case === "envelope") return this.take(connection, [push.event.value]);
    if (push.event.case === "groupChanged") {
      const events = this.applyInfo(push.event.value);
      this.emit(events);
      return events;
    }
    return [];
  }

  /** Fetches every queued envelope, opens and acknowledges them; returns the events. */
  async fetchAll(connection: Connection): Promise<ClientEvent[]> {
    const out: ClientEvent[] = [];
    let after = 0n;
    for (;;) {
      const batch = await connection.call({ case: "fetchEnvelopes", value: { afterEnvelopeId: after, limit: 100 } }, "envelopes");
      out.push(...(await this.take(connection, batch.envelopes)));
      if (batch.envelopes.length > 0) after = batch.envelopes.at(-1)!.envelopeId;
      if (!batch.more || batch.envelopes.length === 0) return out;
    }
  }

  /**
   * Opens `envelopes` (pairwise or group), applies what they carry,
   * acknowledges them (except those whose device-list look decided nothing,
   * `postponesEnvelope`: they come again); returns (and emits) the events.
   */
  async take(connection: Connection, envelopes: Envelope[]): Promise<ClientEvent[]> {
    const postponed = new Set<bigint>();
    // After the sends in flight have stored their sessions, before the ones queued after.
    const out = await this.lock.run(async () => {
      const events: ClientEvent[] = [];
      for (const envelope of envelopes) {
        let opened: ClientEvent[];
        try {
          opened = await this.process(connection, envelope);
        } catch (error) {
          if (!postponesEnvelope(error)) throw error;
          postponed.add(envelope.envelopeId);
          continue;
        }
        this.emit(opened);
        events.push(...opened);
      }
      return events;
    });
    const acked = envelopes.filter((e) => !postponed.has(e.envelopeId)).map((e) => e.envelopeId);
    if (acked.length > 0) await connection.call({ case: "ackEnvelopes", value: { envelopeIds: acked } }, "ack");
    return out;
  }

  private failed(envelope: Envelope, reason: string | Error): ClientEvent {
    const event: ClientEvent = { type: "decryptionFailed", from: envelope.senderUsername, deviceId: envelope.senderDeviceId, envelopeId: envelope.envelopeId, reason: typeof reason === "string" ? reason : reason.message };
    if (reason instanceof Error) event.error = reason;
    // A sealed envelope names its sender only inside; a refusal after unsealing knows it.
    if (reason instanceof UnlistedDeviceError) [event.from, event.deviceId] = [reason.username, reason.deviceId];
    return event;
  }

  /** Why an envelope was dropped, as `failed` takes it; rethrows what decides nothing (`postponesEnvelope`). */
  private static refusal(error: unknown): string | Error {
    if (postponesEnvelope(error)) throw error;
    return error instanceof Error ? error : String(error);
  }

  private async process(connection: Connection, received: Envelope): Promise<ClientEvent[]> {
    if (this.store.seen(received.envelopeId)) return [];
    const fetched: ClientEvent[] = [];
    const events = await this.processFetching(connection, received, fetched);
    return [...fetched, ...events];
  }

  /** `process`; the events of a group fetched on the way go to `fetched` (the group first, so the application finds it). */
  private async processFetching(connection: Connection, received: Envelope, fetched: ClientEvent[]): Promise<ClientEvent[]> {
    let envelope = received;
    let sealed = false;
    let unsealed: Unsealed | undefined;
    if (received.senderUsername === "") {
      // Sealed (§19): a group message inside (content type 0x02) is opened here, like an identified one.
      try {
        unsealed = this.messenger.unseal(received);
      } catch (error) {
        return [this.failed(received, Groups.refusal(error))];
      }
      if (unsealed.envelope.groupId.length > 0) {
        envelope = unsealed.envelope;
        sealed = true;
        // The server could not check membership of a sealed group message: we do (§19.8), in our
        // record of the group, fetched first if we have none yet (a group just created with us).
        let record = this.groupStore.group(envelope.groupId);
        if (!record && envelope.groupId.length === 16) {
          const got = await this.fetchGroup(connection, envelope.groupId);
          record = got.record;
          fetched.push(...got.events);
        }
        if (!record?.active || !isMember(record, envelope.senderUsername)) return [this.failed(envelope, new SealedEnvelopeError("NotMember"))];
      }
    }
    let incoming: Incoming | undefined;
    if (envelope.groupId.length > 0) {
      try {
        // §20.5: before its sender key is used (or the message held for one).
        await this.messenger.admit(connection, envelope);
      } catch (error) {
        return [this.failed(envelope, Groups.refusal(error))];
      }
      const opened = this.openGroup(envelope, sealed);
      if (typeof opened === "string") return [this.failed(envelope, opened)];
      incoming = opened;
    } else {
      try {
        // A sealed 1:1 message is not unsealed twice.
        incoming = await this.messenger.receive(connection, envelope, unsealed);
      } catch (error) {
        return [this.failed(envelope, Groups.refusal(error))];
      }
      if (!incoming) return [];
    }
    return this.apply(connection, envelope, incoming, envelope.groupId.length > 0);
  }

  /**
   * Decrypts a group envelope (`sealed`: it came sealed, so the message is
   * marked so, now or once held and released) with the sender device's key;
   * a reason string when it cannot (the state is unchanged).
   */
  private openGroup(envelope: Envelope, sealed: boolean): Incoming | string {
    const id = envelope.groupId;
    if (id.length !== 16) return "group id is not 16 bytes";
    const record = this.groupStore.senderKeyRecord(id, envelope.senderUsername, envelope.senderDeviceId);
    if (!record) {
      this.hold(envelope, sealed);
      return "no sender key from this device for the group (held until one arrives)";
    }
    let plaintext: Uint8Array;
    try {
      plaintext = record.decrypt(envelope.ciphertext);
    } catch (error) {
      if (error instanceof SenderKeyError && error.kind === "unknown_key_id") {
        this.hold(envelope, sealed);
        return "unknown sender key generation (held until its distribution arrives)";
      }
      return error instanceof Error ? error.message : String(error);
    }
    let content: Content;
    try {
      content = decodeContent(plaintext);
    } catch (error) {
      return `invalid content: ${error instanceof Error ? error.message : String(error)}`;
    }
    if (content.body.case === "sync") return "a sync message must come pairwise";
    if (!bytesEqual(content.groupId, id)) return "the content names another group than its sender key";
    this.groupStore.setSenderKeyRecord(id, envelope.senderUsername, envelope.senderDeviceId, record);
    this.store.markSeen(envelope.envelopeId);
    const incoming: Incoming = { from: envelope.senderUsername, deviceId: envelope.senderDeviceId, envelopeId: envelope.envelopeId, content, groupId: id.slice() };
    if (sealed) incoming.sealed = true;
    return incoming;
  }

  private hold(envelope: Envelope, sealed: boolean): void {
    if (this.held.some((h) => h.envelope.envelopeId === envelope.envelopeId && h.envelope.senderDeviceId === envelope.senderDeviceId)) return;
    this.held.push({ envelope, sealed });
    let bytes = this.held.reduce((n, h) => n + h.envelope.ciphertext.length, 0);
    while (this.held.length > MAX_HELD || bytes > MAX_HELD_BYTES) bytes -= this.held.shift()!.envelope.ciphertext.length;
  }

  /** Applies an opened content: distributions, announcements, group contents; returns the events. */
  private async apply(connection: Connection, envelope: Envelope, incoming: Incoming, viaGroup: boolean): Promise<ClientEvent[]> {
    const me = this.me.username;
    const from = incoming.from;
    const body = incoming.content.body;
    if (body.case === "senderKeyDistribution") {
      if (viaGroup) return [this.failed(envelope, "a sender key distribution must come pairwise")];
      const reason = this.acceptDistribution(from, incoming.deviceId, body.value.groupId, body.value.distribution);
      if (reason) return [this.failed(envelope, reason)];
      return this.retryHeld(connection, body.value.groupId, from, incoming.deviceId);
    }
    const groupId = incoming.groupId;
    if (groupId && !incoming.sentCopy && !viaGroup && from !== me) {
      const record = this.groupStore.group(groupId);
      if (!record || !isMember(record, from)) return [this.failed(envelope, "group content from a non-member")];
    }
    if (body.case === "groupChange") {
      // In its group: a transcript of one (our own sealed group send, §19.8) by the group it names as its destination.
      const destination = incoming.sentCopy?.destination;
      const conversation = destination ? (destination.kind === "group" ? destination.groupId : undefined) : groupId;
      if (!conversation || !bytesEqual(conversation, body.value.groupId)) return [this.failed(envelope, "group change outside its group")];
      const applied = this.applyChange(from, body.value);
      // The group first, so the application finds it when told.
      const fetched = applied.refresh ? (await this.fetchGroup(connection, conversation)).events : [];
      return [...fetched, ...applied.events];
    }
    const fetched = groupId && !this.groupStore.group(groupId) ? (await this.fetchGroup(connection, groupId)).events : [];
    return [...fetched, { type: "message", message: incoming }];
  }

  /** Stores a distribution received pairwise from (`sender`, `deviceId`); a reason when refused. */
  private acceptDistribution(sender: string, deviceId: bigint, groupId: Uint8Array, bytes: Uint8Array): string | undefined {
    try {
      const distribution = decodeSenderKeyDistribution(bytes);
      const record = this.groupStore.senderKeyRecord(groupId, sender, deviceId) ?? new SenderKeyRecord(groupId);
      record.addDistribution(distribution);
      this.groupStore.setSenderKeyRecord(groupId, sender, deviceId, record);
      return undefined;
    } catch (error) {
      return `invalid sender key distribution: ${error instanceof Error ? error.message : String(error)}`;
    }
  }

  /** Opens held group messages of (group, sender, device) now that a distribution arrived. */
  private async retryHeld(connection: Connection, groupId: Uint8Array, sender: string, deviceId: bigint): Promise<ClientEvent[]> {
    const out: ClientEvent[] = [];
    const waiting = this.held.filter(({ envelope: e }) => e.senderUsername === sender && e.senderDeviceId === deviceId && bytesEqual(e.groupId, groupId));
    for (const entry of waiting) {
      this.held.splice(this.held.indexOf(entry), 1);
      const { envelope, sealed } = entry;
      if (this.store.seen(envelope.envelopeId)) continue;
      const opened = this.openGroup(envelope, sealed);
      if (typeof opened !== "string") out.push(...(await this.apply(connection, envelope, opened, true)));
    }
    return out;
  }

  /** Applies a member's announcement (§11.5): only the name and key (once they open the server's blob) and who left are believed. */
  private applyChange(sender: string, change: GroupChange): { events: ClientEvent[]; refresh: boolean } {
    const id = change.groupId;
    const stored = this.groupStore.group(id);
    if (stored && !isMember(stored, sender) && change.kind !== GroupChangeKind.CREATED) return { events: [], refresh: true };
    const record = stored ?? emptyRecord();
    const updates: GroupUpdate[] = [];
    if (change.metadataKey.length === 32 && !bytesEqual(record.metadataKey, change.metadataKey)) record.pendingKey = change.metadataKey.slice();
    const creator = record.version === 0n || roleOf(record, sender) === WireRole.ADMIN;
    if (change.kind === GroupChangeKind.CREATED && creator) record.pendingCreatedBy = sender;
    const opened = openBlob(record, id);
    if (opened) updates.push(opened);
    if (change.kind === GroupChangeKind.LEFT) {
      if (!record.leaving.includes(sender)) record.leaving.push(sender);
      updates.push({ kind: "Left", username: sender });
    }
    const unconfirmed = record.pendingKey.length > 0 || record.pendingCreatedBy !== "";
    this.groupStore.setGroup(id, record);
    return {
      events: updates.map((update) => ({ type: "groupChanged", groupId: id.slice(), version: change.version, update })),
      refresh: change.version > record.version || unconfirmed,
    };
  }
}

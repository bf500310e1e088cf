/**
 * What a client keeps between connections: its identity, device key, device
 * id, prekeys and sessions (SPEC.md §9). `ClientStore` is the interface (an
 * IndexedDB store fits it); `MemoryStore` keeps everything in memory.
 */
import type { IdentityKeyPair } from "../identity.js";
import type { LocalPreKeys } from "../prekeys.js";
import type { ServerPublicKey } from "../sealed_sender.js";
import { Session } from "../session.js";
import { MemoryGroupStore, type GroupStore } from "./groups_store.js";

/** How many earlier sessions per device are kept for messages still in flight under them. */
export const MAX_PREVIOUS_SESSIONS = 3;

/** The account-level facts of one enrolled device. */
export interface DeviceRecord {
  /** The account's username. */
  username: string;
  /** The server's device id (§13.6). */
  deviceId: bigint;
  /** The Ed25519 device key used for transport login (§12.5). */
  deviceKey: IdentityKeyPair;
  /** The account identity key (§3). */
  identity: IdentityKeyPair;
}

/** Storage behind a client: one device, its prekeys, its sessions and the last envelope id it took. */
export interface ClientStore {
  /** The enrolled device, once there is one. */
  device(): DeviceRecord | undefined;
  /** Records the enrolled device. */
  setDevice(device: DeviceRecord): void;
  /** The device's own prekeys. */
  preKeys(): LocalPreKeys;
  /** The session with `username`'s device `deviceId`, if any. */
  session(username: string, deviceId: bigint): Session | undefined;
  /** Stores (or replaces) a session. */
  setSession(username: string, deviceId: bigint, session: Session): void;
  /** The device ids of `username` with a session. */
  sessionDevices(username: string): bigint[];
  /** Earlier sessions with that device, newest first, tried when the current one cannot decrypt (at most `MAX_PREVIOUS_SESSIONS`). */
  previousSessions(username: string, deviceId: bigint): Session[];
  /** Replaces the earlier sessions with that device. */
  setPreviousSessions(username: string, deviceId: bigint, sessions: Session[]): void;
  /** The first identity key seen for `username` (trust on first use). */
  contactIdentity(username: string): Uint8Array | undefined;
  /** Records `username`'s identity key. */
  setContactIdentity(username: string, key: Uint8Array): void;
  /** The highest signed device list verified for `username` (§20.4), as signed. */
  deviceList(username: string): Uint8Array | undefined;
  /** Remembers `username`'s verified signed device list. */
  setDeviceList(username: string, signed: Uint8Array): void;
  /** The account's 32-byte profile key (§19.7), shared with contacts in `Content.profile_key`. */
  profileKey(): Uint8Array | undefined;
  /** Records the account's profile key. */
  setProfileKey(key: Uint8Array): void;
  /** `username`'s profile key, once a message from it carried one (§19.7). */
  contactProfileKey(username: string): Uint8Array | undefined;
  /** Records `username`'s profile key. */
  setContactProfileKey(username: string, key: Uint8Array): void;
  /** The server certificate key trusted for sealed envelopes (§19.4), once fetched. */
  serverKey(): ServerPublicKey | undefined;
  /** Records the trusted server certificate key. */
  setServerKey(key: ServerPublicKey): void;
  /** Whether envelope `id` was already handled (delivery is at least once, §12.7). */
  seen(id: bigint): boolean;
  /** Marks envelope `id` handled. */
  markSeen(id: bigint): void;
}

/** A `ClientStore` in memory (bots, tests); sessions are kept serialized, as a persistent store would. Also a `GroupStore` (groups_store.ts). */
export class MemoryStore extends MemoryGroupStore implements ClientStore, GroupStore {
  private record: DeviceRecord | undefined;
  private readonly keys: LocalPreKeys;
  private readonly sessions = new Map<string, Map<bigint, Session>>();
  private readonly identities = new Map<string, Uint8Array>();
  private readonly seenIds = new Set<bigint>();
  private readonly deviceLists = new Map<string, Uint8Array>();
  private readonly previous = new Map<string, Uint8Array[]>();
  private ownProfileKey: Uint8Array | undefined;
  private readonly profileKeys = new Map<string, Uint8Array>();
  private trustedServerKey: ServerPublicKey | undefined;

  /** An empty store holding `preKeys`. */
  constructor(preKeys: LocalPreKeys) {
    super();
    this.keys = preKeys;
  }

  /** {@inheritDoc ClientStore.device} */
  device(): DeviceRecord | undefined {
    return this.record;
  }

  /** {@inheritDoc ClientStore.setDevice} */
  setDevice(device: DeviceRecord): void {
    this.record = device;
  }

  /** {@inheritDoc ClientStore.preKeys} */
  preKeys(): LocalPreKeys {
    return this.keys;
  }

  /** {@inheritDoc ClientStore.session} */
  session(username: string, deviceId: bigint): Session | undefined {
    return this.sessions.get(username)?.get(deviceId);
  }

  /** {@inheritDoc ClientStore.setSession} */
  setSession(username: string, deviceId: bigint, session: Session): void {
    let byDevice = this.sessions.get(username);
    if (!byDevice) {
      byDevice = new Map();
      this.sessions.set(username, byDevice);
    }
    byDevice.set(deviceId, session);
  }

  /** {@inheritDoc ClientStore.sessionDevices} */
  sessionDevices(username: string): bigint[] {
    return [...(this.sessions.get(username)?.keys() ?? [])];
  }

  /** {@inheritDoc ClientStore.previousSessions} */
  previousSessions(username: string, deviceId: bigint): Session[] {
    return (this.previous.get(JSON.stringify([username, deviceId.toString()])) ?? []).map((bytes) => Session.fromBytes(bytes));
  }

  /** {@inheritDoc ClientStore.setPreviousSessions} */
  setPreviousSessions(username: string, deviceId: bigint, sessions: Session[]): void {
    this.previous.set(JSON.stringify([username, deviceId.toString()]), sessions.map((session) => session.toBytes()));
  }

  /** {@inheritDoc ClientStore.contactIdentity} */
  contactIdentity(username: string): Uint8Array | undefined {
    return this.identities.get(username);
  }

  /** {@inheritDoc ClientStore.setContactIdentity} */
  setContactIdentity(username: string, key: Uint8Array): void {
    this.identities.set(username, key);
  }

  /** {@inheritDoc ClientStore.deviceList} */
  deviceList(username: string): Uint8Array | undefined {
    return this.deviceLists.get(username);
  }

  /** {@inheritDoc ClientStore.setDeviceList} */
  setDeviceList(username: string, signed: Uint8Array): void {
    this.deviceLists.set(username, signed);
  }

  /** {@inheritDoc ClientStore.profileKey} */
  profileKey(): Uint8Array | undefined {
    return this.ownProfileKey;
  }

  /** {@inheritDoc ClientStore.setProfileKey} */
  setProfileKey(key: Uint8Array): void {
    this.ownProfileKey = key;
  }

  /** {@inheritDoc ClientStore.contactProfileKey} */
  contactProfileKey(username: string): Uint8Array | undefined {
    return this.profileKeys.get(username);
  }

  /** {@inheritDoc ClientStore.setContactProfileKey} */
  setContactProfileKey(username: string, key: Uint8Array): void {
    this.profileKeys.set(username, key);
  }

  /** {@inheritDoc ClientStore.serverKey} */
  serverKey(): ServerPublicKey | undefined {
    return this.trustedServerKey;
  }

  /** {@inheritDoc ClientStore.setServerKey} */
  setServerKey(key: ServerPublicKey): void {
    this.trustedServerKey = key;
  }

  /** {@inheritDoc ClientStore.seen} */
  seen(id: bigint): boolean {
    return this.seenIds.has(id);
  }

  /** {@inheritDoc ClientStore.markSeen} */
  markSeen(id: bigint): void {
    this.seenIds.add(id);
  }
}

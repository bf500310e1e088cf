/**
 * What a client keeps of its groups (SPEC.md §6, §11.5, §12.10): one record
 * per group (the server's membership and version, the name and the metadata
 * key), this device's outbound sender key per group with the devices it was
 * given to, and one inbound sender-key record per (group, sender, device).
 *
 * `GroupStore` is the interface (a persistent store implements it next to
 * `ClientStore`); `MemoryGroupStore` keeps it in memory, serialized as a
 * persistent store would, so a caller can never change stored state by
 * mutating what it was handed.
 */
import { fromHex, toHex } from "../bytes.js";
import { OutboundSenderKey, SenderKeyRecord } from "../sender_key.js";

/** One member in a `GroupRecord`. */
export interface MemberRecord {
  /** The member's account. */
  username: string;
  /** `GroupRole` of the transport (1 member, 2 admin). */
  role: number;
  /** The version at which it joined. */
  joinedAtVersion: bigint;
}

/** What this device knows of one group. */
export interface GroupRecord {
  /** The server's version (0 while only an announcement was seen). */
  version: bigint;
  /** False once this account left or was removed. */
  active: boolean;
  /** The members as of `version`. */
  members: MemberRecord[];
  /** The name, once a metadata key opened the server's blob. */
  name: string;
  /** The description (from the same blob). */
  description: string;
  /** The 32-byte metadata key that opens `encryptedMetadata`, or empty while unknown (§11.5). */
  metadataKey: Uint8Array;
  /** The server's opaque `encrypted_metadata`. */
  encryptedMetadata: Uint8Array;
  /** When the membership was last fetched (ms since the epoch). */
  checkedMs: number;
  /** Members that announced they are leaving (their removal is then reported as `Left`). */
  leaving: string[];
  /** An announced metadata key that does not open the blob yet, or empty. */
  pendingKey: Uint8Array;
  /** The creator, while the `Created` event waits for the server's blob to confirm the name. */
  pendingCreatedBy: string;
}

/** One device that was given this device's sender key of a group. */
export interface SharedWith {
  /** The device's account. */
  username: string;
  /** The device. */
  deviceId: bigint;
  /** The generation it was given. */
  keyId: number;
}

/** Storage of groups and sender keys, next to `ClientStore`. */
export interface GroupStore {
  /** The record of group `groupId`, if known. */
  group(groupId: Uint8Array): GroupRecord | undefined;
  /** Stores (or replaces) a group record. */
  setGroup(groupId: Uint8Array, record: GroupRecord): void;
  /** Every known group id. */
  groupIds(): Uint8Array[];
  /** This device's current sender key of the group, if any. */
  outboundSenderKey(groupId: Uint8Array): OutboundSenderKey | undefined;
  /** Stores this device's sender key of the group. */
  setOutboundSenderKey(groupId: Uint8Array, key: OutboundSenderKey): void;
  /** Forgets this device's sender key of the group and whom it was given to. */
  deleteOutboundSenderKey(groupId: Uint8Array): void;
  /** The devices this device's sender key of the group was given to. */
  sharedWith(groupId: Uint8Array): SharedWith[];
  /** Records that these devices hold a generation. */
  addSharedWith(groupId: Uint8Array, entries: SharedWith[]): void;
  /** Forgets whom the sender key was given to (after a rotation). */
  clearSharedWith(groupId: Uint8Array): void;
  /** The inbound sender-key record of (group, sender, device), if any. */
  senderKeyRecord(groupId: Uint8Array, username: string, deviceId: bigint): SenderKeyRecord | undefined;
  /** Stores an inbound sender-key record. */
  setSenderKeyRecord(groupId: Uint8Array, username: string, deviceId: bigint, record: SenderKeyRecord): void;
  /** Forgets every sender key of the group, ours and others' (after leaving). */
  deleteGroupKeys(groupId: Uint8Array): void;
}

function cloneRecord(record: GroupRecord): GroupRecord {
  return {
    ...record,
    members: record.members.map((m) => ({ ...m })),
    metadataKey: record.metadataKey.slice(),
    encryptedMetadata: record.encryptedMetadata.slice(),
    leaving: [...record.leaving],
    pendingKey: record.pendingKey.slice(),
  };
}

/** A `GroupStore` in memory; sender keys are kept as their §6.7 bytes. */
export class MemoryGroupStore implements GroupStore {
  private readonly groups = new Map<string, GroupRecord>();
  private readonly outbound = new Map<string, Uint8Array>();
  private readonly shared = new Map<string, SharedWith[]>();
  private readonly inbound = new Map<string, Uint8Array>();

  /** {@inheritDoc GroupStore.group} */
  group(groupId: Uint8Array): GroupRecord | undefined {
    const record = this.groups.get(toHex(groupId));
    return record && cloneRecord(record);
  }

  /** {@inheritDoc GroupStore.setGroup} */
  setGroup(groupId: Uint8Array, record: GroupRecord): void {
    this.groups.set(toHex(groupId), cloneRecord(record));
  }

  /** {@inheritDoc GroupStore.groupIds} */
  groupIds(): Uint8Array[] {
    return [...this.groups.keys()].map(fromHex);
  }

  /** {@inheritDoc GroupStore.outboundSenderKey} */
  outboundSenderKey(groupId: Uint8Array): OutboundSenderKey | undefined {
    const bytes = this.outbound.get(toHex(groupId));
    return bytes && OutboundSenderKey.fromBytes(bytes);
  }

  /** {@inheritDoc GroupStore.setOutboundSenderKey} */
  setOutboundSenderKey(groupId: Uint8Array, key: OutboundSenderKey): void {
    this.outbound.set(toHex(groupId), key.toBytes());
  }

  /** {@inheritDoc GroupStore.deleteOutboundSenderKey} */
  deleteOutboundSenderKey(groupId: Uint8Array): void {
    this.outbound.delete(toHex(groupId));
    this.shared.delete(toHex(groupId));
  }

  /** {@inheritDoc GroupStore.sharedWith} */
  sharedWith(groupId: Uint8Array): SharedWith[] {
    return (this.shared.get(toHex(groupId)) ?? []).map((s) => ({ ...s }));
  }

  /** {@inheritDoc GroupStore.addSharedWith} */
  addSharedWith(groupId: Uint8Array, entries: SharedWith[]): void {
    const key = toHex(groupId);
    const list = (this.shared.get(key) ?? []).filter((s) => !entries.some((e) => e.username === s.username && e.deviceId === s.deviceId));
    this.shared.set(key, [...list, ...entries.map((e) => ({ ...e }))]);
  }

  /** {@inheritDoc GroupStore.clearSharedWith} */
  clearSharedWith(groupId: Uint8Array): void {
    this.shared.delete(toHex(groupId));
  }

  /** {@inheritDoc GroupStore.senderKeyRecord} */
  senderKeyRecord(groupId: Uint8Array, username: string, deviceId: bigint): SenderKeyRecord | undefined {
    const bytes = this.inbound.get(`${toHex(groupId)}/${username}/${deviceId}`);
    return bytes && SenderKeyRecord.fromBytes(bytes);
  }

  /** {@inheritDoc GroupStore.setSenderKeyRecord} */
  setSenderKeyRecord(groupId: Uint8Array, username: string, deviceId: bigint, record: SenderKeyRecord): void {
    this.inbound.set(`${toHex(groupId)}/${username}/${deviceId}`, record.toBytes());
  }

  /** {@inheritDoc GroupStore.deleteGroupKeys} */
  deleteGroupKeys(groupId: Uint8Array): void {
    const prefix = `${toHex(groupId)}/`;
    for (const key of [...this.inbound.keys()]) if (key.startsWith(prefix)) this.inbound.delete(key);
    this.deleteOutboundSenderKey(groupId);
  }
}

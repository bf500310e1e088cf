/**
 * A sender's check of a contact's signed device list (SPEC.md §20.4), the
 * same rules as the Rust SDK's `device_lists.rs`: the served list must
 * verify under the identity the sender trusts and name the contact; a
 * lower version than the one remembered is a rollback, another list of the
 * same version an equivocation, and no list after one was seen a
 * downgrade. A receiver (§20.5) refuses an envelope from a device the
 * remembered list leaves out with `UnlistedDeviceError`. Pure: the caller
 * keeps the remembered list (`ClientStore`) and fetches lists
 * (messenger.ts).
 */
import { bytesEqual } from "../bytes.js";
import { DeviceListError, verifyDeviceList, type DeviceList } from "../device_list.js";

/** Why a served device list was refused (§20.4). */
export type DeviceListCheckErrorKind =
  /** Does not verify under the trusted identity, or names another account (rule 1). */
  | "Forged"
  /** A lower version than the list verified before (rule 2). */
  | "Rollback"
  /** Another list with the version verified before (rule 2). */
  | "Equivocation"
  /** No list, after one was verified (rule 3). */
  | "Vanished";

/** A refused device list; nothing remembered changes. */
export class DeviceListCheckError extends Error {
  /** The refusal. */
  readonly kind: DeviceListCheckErrorKind;
  /** The account whose list was refused. */
  readonly username: string;

  /** A refusal of `kind` for `username`'s list. */
  constructor(kind: DeviceListCheckErrorKind, username: string, options?: { cause: unknown }) {
    super(`${username}'s device list: ${kind}`, options);
    this.name = "DeviceListCheckError";
    this.kind = kind;
    this.username = username;
  }
}

/** The outcome of a check that passed. */
export interface DeviceListCheck {
  /** The verified list; `undefined` for an account that never had one (the rule before §20). */
  list: DeviceList | undefined;
  /** The signed bytes to remember (the served ones), when a list verified. */
  remember: Uint8Array | undefined;
  /** Devices to announce as `DeviceAdded` (§20.4 Notices). */
  added: bigint[];
}

/** What the check needs. */
export interface DeviceListCheckInput {
  /** The account. */
  username: string;
  /** The identity key the sender trusts for it (§8). */
  identityKey: Uint8Array;
  /** The list the server served (`PrekeyBundles`/`DeviceList.signed_device_list`), empty for none. */
  served: Uint8Array;
  /** The highest list verified before, as signed, if any. */
  remembered: Uint8Array | undefined;
  /** The account's devices the sender holds sessions with (for the first-look notice). */
  sessionDevices: readonly bigint[];
}

/**
 * The remembered list if it verifies under `identityKey`; a list signed by
 * an earlier identity of the account does not count (its history starts again).
 */
export function rememberedList(username: string, identityKey: Uint8Array, remembered: Uint8Array | undefined): DeviceList | undefined {
  if (remembered === undefined || remembered.length === 0) return undefined;
  try {
    return verifyDeviceList(remembered, identityKey, username);
  } catch {
    return undefined;
  }
}

/** Checks a served list against the rules of §20.4; throws `DeviceListCheckError`. */
export function checkDeviceList(input: DeviceListCheckInput): DeviceListCheck {
  const { username, identityKey, served, sessionDevices } = input;
  const before = rememberedList(username, identityKey, input.remembered);
  if (served.length === 0) {
    if (before !== undefined) throw new DeviceListCheckError("Vanished", username);
    return { list: undefined, remember: undefined, added: [] };
  }
  let list: DeviceList;
  try {
    list = verifyDeviceList(served, identityKey, username);
  } catch (cause) {
    if (cause instanceof DeviceListError) throw new DeviceListCheckError("Forged", username, { cause });
    throw cause;
  }
  if (before === undefined) {
    // First look: devices listed that it held no session with, if it had any.
    const added = sessionDevices.length === 0 ? [] : list.deviceIds.filter((id) => !sessionDevices.includes(id));
    return { list, remember: served, added };
  }
  if (list.version < before.version) throw new DeviceListCheckError("Rollback", username);
  if (list.version === before.version) {
    if (!bytesEqual(served, input.remembered!)) throw new DeviceListCheckError("Equivocation", username);
    return { list, remember: served, added: [] };
  }
  return { list, remember: served, added: list.deviceIds.filter((id) => !before.deviceIds.includes(id)) };
}

/** What the reason of a refused envelope from an unlisted device starts with (the Rust SDK's `UNLISTED_DEVICE`, §20.5). */
export const UNLISTED_DEVICE = "unlisted device";

/**
 * An envelope from a device the verified signed device list of its account
 * does not name (§20.5): nothing was decrypted, no session or sender key
 * changed. `looked` is false when `Messenger.open` refused it without a
 * connection to look at the list again (the envelope is not marked seen;
 * `Messenger.receive` looks, then decides); once looked, it is marked seen.
 * `cause` is the `DeviceListCheckError` (or the request's error) when the
 * list served on that look was refused.
 */
export class UnlistedDeviceError extends Error {
  /** The sender account. */
  readonly username: string;
  /** The sender device the list leaves out. */
  readonly deviceId: bigint;
  /** Whether the account's list was looked at again before refusing. */
  readonly looked: boolean;

  /** A refusal of `deviceId` of `username`; `cause` when the list served on the look was refused. */
  constructor(username: string, deviceId: bigint, looked: boolean, cause?: unknown) {
    const why = cause instanceof Error ? cause.message : `device ${deviceId} is not in ${username}'s signed device list`;
    super(`${UNLISTED_DEVICE}: ${why}`, cause === undefined ? undefined : { cause });
    this.name = "UnlistedDeviceError";
    this.username = username;
    this.deviceId = deviceId;
    this.looked = looked;
  }
}

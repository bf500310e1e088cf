/**
 * The account's device list signed by its identity key (SPEC.md §20): the
 * fixed layout, signing with @noble/curves Ed25519 and strict verification
 * (§2). Mirrors crypto-core `device_list`: the same layout, the same
 * refusals in the same order, with the same names.
 *
 * ```text
 * body = 0x01 ‖ username_len (1) ‖ username ‖ version (u64 BE) ‖ timestamp_ms (u64 BE)
 *      ‖ count (u16 BE) ‖ device_id (u64 BE) × count, strictly increasing
 * signed = body ‖ Ed25519(identity, DEVICE_LIST_LABEL ‖ body)
 * ```
 */
import { ed25519 } from "@noble/curves/ed25519.js";

import { bytesEqual, concat, utf8 } from "./bytes.js";
import { verifyEd25519Strict } from "./identity.js";

/** `DEVICE_LIST_LABEL` (§2, §20): the prefix an identity signs. */
export const DEVICE_LIST_LABEL = utf8("Microbot DeviceList v1");
/** `DEVICE_LIST_VERSION` (§2, §20): the first byte of a list. */
export const DEVICE_LIST_VERSION = 0x01;
/** `MAX_DEVICE_LIST_DEVICES` (§2, §20). */
export const MAX_DEVICE_LIST_DEVICES = 100;

const SIGNATURE_LEN = 64;
const MAX_U64 = (1n << 64n) - 1n;

/** The refusals of §20.1, named as SPEC.md names them. */
export type DeviceListErrorKind =
  | "Truncated"
  | "TrailingBytes"
  | "UnsupportedVersion"
  | "InvalidUsername"
  | "ZeroVersion"
  | "DeviceCount"
  | "NotAscending"
  | "BadSignature"
  | "WrongUsername";

/** Why a device list was refused. */
export class DeviceListError extends Error {
  /** The refusal (§20.1). */
  readonly kind: DeviceListErrorKind;

  /** @param kind the refusal */
  constructor(kind: DeviceListErrorKind) {
    super(`device list: ${kind}`);
    this.name = "DeviceListError";
    this.kind = kind;
  }
}

/** A device list's content. */
export interface DeviceList {
  /** The account. */
  readonly username: string;
  /** Grows with every new list of the account (≥ 1). */
  readonly version: bigint;
  /** When it was signed (Unix ms, informative). */
  readonly timestampMs: bigint;
  /** The listed devices, strictly increasing. */
  readonly deviceIds: readonly bigint[];
}

function validUsername(name: Uint8Array): boolean {
  return (
    name.length >= 3 &&
    name.length <= 32 &&
    name.every((b) => (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x5f || b === 0x2e || b === 0x2d)
  );
}

/** The checks every list passes after its fields are read (§20.1 order). */
function check(list: DeviceList): void {
  if (!validUsername(utf8(list.username))) {
    throw new DeviceListError("InvalidUsername");
  }
  if (list.version === 0n) {
    throw new DeviceListError("ZeroVersion");
  }
  if (list.deviceIds.length === 0 || list.deviceIds.length > MAX_DEVICE_LIST_DEVICES) {
    throw new DeviceListError("DeviceCount");
  }
  for (let i = 1; i < list.deviceIds.length; i++) {
    if (list.deviceIds[i - 1]! >= list.deviceIds[i]!) {
      throw new DeviceListError("NotAscending");
    }
  }
}

/**
 * A list of `deviceIds` (any order, sorted here; a repeated id is
 * `NotAscending`) for `username` at `version`. Values are u64.
 */
export function newDeviceList(username: string, version: bigint, timestampMs: bigint, deviceIds: readonly bigint[]): DeviceList {
  for (const value of [version, timestampMs, ...deviceIds]) {
    if (value < 0n || value > MAX_U64) {
      throw new RangeError("device list values are u64");
    }
  }
  const sorted = [...deviceIds].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const list = { username, version, timestampMs, deviceIds: sorted };
  check(list);
  return list;
}

function u64be(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, value);
  return out;
}

/** The body: every byte before the signature. */
export function deviceListBody(list: DeviceList): Uint8Array {
  const name = utf8(list.username);
  const count = new Uint8Array(2);
  new DataView(count.buffer).setUint16(0, list.deviceIds.length);
  return concat(
    Uint8Array.of(DEVICE_LIST_VERSION, name.length),
    name,
    u64be(list.version),
    u64be(list.timestampMs),
    count,
    ...list.deviceIds.map(u64be),
  );
}

/** Signs the list with the identity's 32-byte seed: `body ‖ signature`. */
export function signDeviceList(list: DeviceList, identitySeed: Uint8Array): Uint8Array {
  check(list);
  const body = deviceListBody(list);
  return concat(body, ed25519.sign(concat(DEVICE_LIST_LABEL, body), identitySeed));
}

/** Reads the fields in order (§20.1) without checking the signature; the list and the body's length. */
export function parseDeviceList(bytes: Uint8Array): { list: DeviceList; bodyLength: number } {
  let at = 0;
  const take = (n: number): Uint8Array => {
    if (at + n > bytes.length) {
      throw new DeviceListError("Truncated");
    }
    const out = bytes.subarray(at, at + n);
    at += n;
    return out;
  };
  const view = (part: Uint8Array): DataView => new DataView(part.buffer, part.byteOffset, part.byteLength);
  if (take(1)[0] !== DEVICE_LIST_VERSION) {
    throw new DeviceListError("UnsupportedVersion");
  }
  const name = take(take(1)[0]!);
  if (!validUsername(name)) {
    throw new DeviceListError("InvalidUsername");
  }
  const version = view(take(8)).getBigUint64(0);
  const timestampMs = view(take(8)).getBigUint64(0);
  const count = view(take(2)).getUint16(0);
  if (count === 0 || count > MAX_DEVICE_LIST_DEVICES) {
    throw new DeviceListError("DeviceCount");
  }
  const deviceIds: bigint[] = [];
  for (let i = 0; i < count; i++) {
    deviceIds.push(view(take(8)).getBigUint64(0));
  }
  const bodyLength = at;
  take(SIGNATURE_LEN);
  if (at !== bytes.length) {
    throw new DeviceListError("TrailingBytes");
  }
  const list = { username: new TextDecoder().decode(name), version, timestampMs, deviceIds };
  check(list);
  return { list, bodyLength };
}

/**
 * Parses `bytes`, verifies the signature under `identityKey` (strict, §2)
 * and, when `username` is given, that the list names it.
 */
export function verifyDeviceList(bytes: Uint8Array, identityKey: Uint8Array, username?: string): DeviceList {
  const { list, bodyLength } = parseDeviceList(bytes);
  const body = bytes.subarray(0, bodyLength);
  if (!verifyEd25519Strict(identityKey, concat(DEVICE_LIST_LABEL, body), bytes.subarray(bodyLength))) {
    throw new DeviceListError("BadSignature");
  }
  if (username !== undefined && !bytesEqual(utf8(list.username), utf8(username))) {
    throw new DeviceListError("WrongUsername");
  }
  return list;
}

/**
 * The signed device list (SPEC.md §20) in TypeScript: a list signed here
 * verifies, with its ids sorted; every flipped byte, every truncation and
 * a trailing byte are refused with a typed `DeviceListError`; another key
 * or another username is refused. (The vectors pin the bytes against the
 * Rust implementation.)
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DeviceListError,
  newDeviceList,
  parseDeviceList,
  signDeviceList,
  verifyDeviceList,
} from "../src/device_list.js";
import { IdentityKeyPair } from "../src/identity.js";

const seed = new Uint8Array(32).fill(0x11);
const identity = IdentityKeyPair.fromSeed(seed).publicKey.toBytes();
const other = IdentityKeyPair.fromSeed(new Uint8Array(32).fill(0x22)).publicKey.toBytes();

function refusal(f: () => unknown): string {
  try {
    f();
  } catch (error) {
    assert.ok(error instanceof DeviceListError, `not a DeviceListError: ${String(error)}`);
    return error.kind;
  }
  assert.fail("accepted");
}

test("a signed list verifies, sorted, under its identity and username only", () => {
  const signed = signDeviceList(newDeviceList("alice", 4n, 1000n, [9n, 2n, 5n]), seed);
  const list = verifyDeviceList(signed, identity, "alice");
  assert.deepStrictEqual(list.deviceIds, [2n, 5n, 9n]);
  assert.equal(list.version, 4n);
  assert.equal(refusal(() => verifyDeviceList(signed, other, "alice")), "BadSignature");
  assert.equal(refusal(() => verifyDeviceList(signed, identity, "bob")), "WrongUsername");
});

test("every flipped byte, every truncation and a trailing byte are refused", () => {
  const signed = signDeviceList(newDeviceList("alice", 1n, 7n, [1n, 2n]), seed);
  for (let i = 0; i < signed.length; i++) {
    const bytes = signed.slice();
    bytes[i]! ^= 0x01;
    assert.throws(() => verifyDeviceList(bytes, identity), DeviceListError, `byte ${i}`);
  }
  for (let cut = 0; cut < signed.length; cut++) {
    assert.throws(() => parseDeviceList(signed.subarray(0, cut)), DeviceListError, `cut at ${cut}`);
  }
  const longer = new Uint8Array(signed.length + 1);
  longer.set(signed);
  assert.equal(refusal(() => verifyDeviceList(longer, identity)), "TrailingBytes");
});

test("invalid lists cannot be made", () => {
  assert.equal(refusal(() => newDeviceList("alice", 1n, 0n, [3n, 3n])), "NotAscending");
  assert.equal(refusal(() => newDeviceList("Al", 1n, 0n, [3n])), "InvalidUsername");
  assert.equal(refusal(() => newDeviceList("alice", 0n, 0n, [3n])), "ZeroVersion");
  assert.equal(refusal(() => newDeviceList("alice", 1n, 0n, [])), "DeviceCount");
});

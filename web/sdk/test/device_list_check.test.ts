/**
 * A sender's device-list check (SPEC.md §20.4) on its own: each refusal
 * (forged, wrong account, rollback, equivocation, vanished) is a typed
 * `DeviceListCheckError`; a newer list replaces the remembered one and
 * names the devices it added; a first look announces only devices of a
 * contact it already had sessions with; a list of an earlier identity no
 * longer counts.
 */
import assert from "node:assert/strict";
import { test } from "node:test";

import { checkDeviceList, DeviceListCheckError, type DeviceListCheckInput } from "../src/client/device_list_check.js";
import { newDeviceList, signDeviceList } from "../src/device_list.js";
import { IdentityKeyPair } from "../src/identity.js";

const seed = new Uint8Array(32).fill(0x31);
const otherSeed = new Uint8Array(32).fill(0x32);
const identity = IdentityKeyPair.fromSeed(seed).publicKey.toBytes();

function signed(version: bigint, ids: bigint[], options: { seed?: Uint8Array; username?: string; at?: bigint } = {}): Uint8Array {
  return signDeviceList(newDeviceList(options.username ?? "bob", version, options.at ?? 1000n, ids), options.seed ?? seed);
}

function input(served: Uint8Array, remembered?: Uint8Array, sessionDevices: bigint[] = []): DeviceListCheckInput {
  return { username: "bob", identityKey: identity, served, remembered, sessionDevices };
}

function refusal(f: () => unknown): string {
  try {
    f();
  } catch (error) {
    assert.ok(error instanceof DeviceListCheckError, `not a DeviceListCheckError: ${String(error)}`);
    assert.equal(error.username, "bob");
    return error.kind;
  }
  assert.fail("accepted");
}

test("a list signed by another identity, or naming another account, is forged", () => {
  assert.equal(refusal(() => checkDeviceList(input(signed(1n, [1n], { seed: otherSeed })))), "Forged");
  assert.equal(refusal(() => checkDeviceList(input(signed(1n, [1n], { username: "carol" })))), "Forged");
  const flipped = signed(1n, [1n]);
  flipped[flipped.length - 1]! ^= 1;
  assert.equal(refusal(() => checkDeviceList(input(flipped))), "Forged");
  assert.equal(refusal(() => checkDeviceList(input(Uint8Array.of(1, 2, 3)))), "Forged");
});

test("a lower version is a rollback, another list of the same version an equivocation, none after one a downgrade", () => {
  const v2 = signed(2n, [1n, 2n]);
  assert.equal(refusal(() => checkDeviceList(input(signed(1n, [1n]), v2))), "Rollback");
  assert.equal(refusal(() => checkDeviceList(input(signed(2n, [1n, 2n, 9n]), v2))), "Equivocation");
  // Same version and devices, another timestamp: still another list.
  assert.equal(refusal(() => checkDeviceList(input(signed(2n, [1n, 2n], { at: 2000n }), v2))), "Equivocation");
  assert.equal(refusal(() => checkDeviceList(input(new Uint8Array(0), v2))), "Vanished");
  // The same list again passes and adds nothing.
  assert.deepEqual(checkDeviceList(input(v2, v2)).added, []);
});

test("a newer list replaces the remembered one and names exactly the devices it added", () => {
  const v1 = signed(1n, [1n, 2n]);
  const v3 = signed(3n, [2n, 5n, 7n]);
  const check = checkDeviceList(input(v3, v1, [1n, 2n]));
  assert.deepEqual(check.remember, v3);
  assert.deepEqual(check.list?.deviceIds, [2n, 5n, 7n]);
  assert.deepEqual(check.added, [5n, 7n]);
});

test("first look: devices announced only for a contact with sessions; no list at all keeps the rule before §20", () => {
  assert.deepEqual(checkDeviceList(input(signed(1n, [1n, 2n]))).added, []);
  assert.deepEqual(checkDeviceList(input(signed(1n, [1n, 2n]), undefined, [1n])).added, [2n]);
  const none = checkDeviceList(input(new Uint8Array(0)));
  assert.equal(none.list, undefined);
  assert.equal(none.remember, undefined);
});

test("a remembered list of an earlier identity does not count: the history starts again", () => {
  const old = signed(9n, [1n, 2n], { seed: otherSeed });
  const check = checkDeviceList(input(signed(1n, [4n]), old, [1n]));
  assert.deepEqual(check.list?.deviceIds, [4n]);
  assert.deepEqual(checkDeviceList(input(new Uint8Array(0), old)).list, undefined);
});

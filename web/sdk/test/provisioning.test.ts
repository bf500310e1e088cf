/** Provisioning messages (SPEC.md §12.14): open only with the new device's key and the slot they were sealed for. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { concat, toHex, utf8 } from "../src/bytes.js";
import { x25519PublicKey } from "../src/identity.js";
import { openProvisioning, ProvisioningError, SEALED_OVERHEAD, sealProvisioning } from "../src/provisioning.js";
import { seededRng } from "./helpers.js";

const rng = seededRng("provisioning");
const recipientSecret = rng.fill(32);
const recipient = x25519PublicKey(recipientSecret);
const slot = rng.fill(16);

function isProvisioningError(kind: ProvisioningError["kind"]) {
  return (e: unknown) => e instanceof ProvisioningError && e.kind === kind;
}

test("a sealed message opens with the recipient's key and slot, and nothing else", () => {
  const plaintext = utf8("identity seed and contacts");
  const sealed = sealProvisioning(rng.fill(32), recipient, slot, plaintext);
  assert.equal(sealed.length, plaintext.length + SEALED_OVERHEAD);
  assert.equal(sealed[0], 0x01);
  assert.equal(toHex(openProvisioning(recipientSecret, slot, sealed)), toHex(plaintext));
  assert.throws(() => openProvisioning(rng.fill(32), slot, sealed), isProvisioningError("authentication_failed"));
  assert.throws(() => openProvisioning(recipientSecret, rng.fill(16), sealed), isProvisioningError("authentication_failed"));
  const tampered = Uint8Array.from(sealed);
  tampered[tampered.length - 1]! ^= 1;
  assert.throws(() => openProvisioning(recipientSecret, slot, tampered), isProvisioningError("authentication_failed"));
  assert.throws(() => openProvisioning(recipientSecret, slot, sealed.subarray(0, 48)), isProvisioningError("malformed"));
  const v2 = Uint8Array.from(sealed);
  v2[0] = 0x02;
  assert.throws(() => openProvisioning(recipientSecret, slot, v2), isProvisioningError("malformed"));
  const smallOrder = concat(Uint8Array.of(0x01), new Uint8Array(32), sealed.subarray(33));
  assert.throws(() => openProvisioning(recipientSecret, slot, smallOrder), isProvisioningError("authentication_failed"));
});

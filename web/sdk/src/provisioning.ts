/**
 * Sealing the provisioning message of device linking (SPEC.md §12.14),
 * mirroring crypto-core `provisioning`:
 *
 *   sealed    = 0x01 ‖ E (32) ‖ ChaCha20-Poly1305(key, nonce, ad, plaintext) ‖ tag (16)
 *   shared    = X25519(e, R)              (refused if all-zero)
 *   key‖nonce = HKDF(no salt, shared ‖ E ‖ R, PROVISIONING_INFO, 44)
 *   ad        = 0x01 ‖ slot_id
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";

import { concat, wipe } from "./bytes.js";
import { x25519Dh, x25519PublicKey } from "./identity.js";
import { hkdf } from "./kdf.js";
import { KEY_LEN, NONCE_LEN, PROVISIONING_INFO, PROVISIONING_VERSION, TAG_LEN } from "./labels.js";

/** Bytes a sealed message adds to its plaintext. */
export const SEALED_OVERHEAD = 1 + KEY_LEN + TAG_LEN;

/** Why a provisioning message does not open (§12.14: every failure is one error to the user). */
export class ProvisioningError extends Error {
  /** `malformed` (shorter than 49 bytes, another version byte) or `authentication_failed` (not for this key or slot). */
  readonly kind: "malformed" | "authentication_failed";

  /** @param kind the failure */
  constructor(kind: ProvisioningError["kind"]) {
    super(`provisioning message: ${kind.replace("_", " ")}`);
    this.name = "ProvisioningError";
    this.kind = kind;
  }
}

function derive(shared: Uint8Array, sender: Uint8Array, recipient: Uint8Array): { key: Uint8Array; nonce: Uint8Array } {
  const okm = hkdf(undefined, concat(shared, sender, recipient), PROVISIONING_INFO, KEY_LEN + NONCE_LEN);
  return { key: okm.slice(0, KEY_LEN), nonce: okm.slice(KEY_LEN) };
}

function associatedData(slotId: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(PROVISIONING_VERSION), slotId);
}

/** Seals `plaintext` to `recipient` for `slotId` with the sender's fresh ephemeral secret. */
export function sealProvisioning(
  ephemeralSecret: Uint8Array,
  recipient: Uint8Array,
  slotId: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  const sender = x25519PublicKey(ephemeralSecret);
  const shared = x25519Dh(ephemeralSecret, recipient);
  const { key, nonce } = derive(shared, sender, recipient);
  const body = chacha20poly1305(key, nonce, associatedData(slotId)).encrypt(plaintext);
  wipe(shared, key);
  return concat(Uint8Array.of(PROVISIONING_VERSION), sender, body);
}

/** Opens a message sealed to the key pair of `recipientSecret` for `slotId`. */
export function openProvisioning(recipientSecret: Uint8Array, slotId: Uint8Array, sealed: Uint8Array): Uint8Array {
  if (sealed.length < SEALED_OVERHEAD || sealed[0] !== PROVISIONING_VERSION) {
    throw new ProvisioningError("malformed");
  }
  const sender = sealed.slice(1, 1 + KEY_LEN);
  const recipient = x25519PublicKey(recipientSecret);
  let shared: Uint8Array;
  try {
    shared = x25519Dh(recipientSecret, sender);
  } catch {
    // A small-order E (all-zero output, §2) is refused like any other failure.
    throw new ProvisioningError("authentication_failed");
  }
  const { key, nonce } = derive(shared, sender, recipient);
  try {
    return chacha20poly1305(key, nonce, associatedData(slotId)).decrypt(sealed.slice(1 + KEY_LEN));
  } catch {
    throw new ProvisioningError("authentication_failed");
  } finally {
    wipe(shared, key);
  }
}

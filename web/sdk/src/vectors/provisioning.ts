/** The `provisioning` vector kind (SPEC.md §12.14, §17.1): the sealed provisioning message. */
import { bytesEqual, toHex } from "../bytes.js";
import { x25519PublicKey } from "../identity.js";
import { openProvisioning, sealProvisioning } from "../provisioning.js";
import { bytesField, type Json } from "./json.js";

/** Seals, then opens with the recipient's key to check the round trip. */
export function computeProvisioning(input: Json): Json {
  const recipientSecret = bytesField(input, "recipient_secret");
  const recipient = x25519PublicKey(recipientSecret);
  const slotId = bytesField(input, "slot_id");
  const plaintext = bytesField(input, "plaintext");
  const sealed = sealProvisioning(bytesField(input, "ephemeral_secret"), recipient, slotId, plaintext);
  if (!bytesEqual(openProvisioning(recipientSecret, slotId, sealed), plaintext)) {
    throw new Error("the sealed message does not open");
  }
  return { recipient_public: toHex(recipient), sealed: toHex(sealed) };
}

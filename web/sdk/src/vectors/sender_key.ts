/** The `sender_key` vector kind (SPEC.md §17.1): distribution, signed messages, out-of-order receive. */
import { ReplayRng } from "../rng.js";
import { encodeSenderKeyDistribution, decodeSenderKeyDistribution, OutboundSenderKey, SenderKeyRecord } from "../sender_key.js";
import { byteListField, bytesField, hex, listField, VectorInputError, type Json } from "./json.js";

/** Computes a `sender_key` output, replaying `sender_draws`. */
export function computeSenderKey(input: Json): Json {
  const groupId = bytesField(input, "group_id");
  const rng = new ReplayRng(byteListField(input, "sender_draws"));
  const outbound = OutboundSenderKey.create(rng, groupId);
  rng.finish();
  const distribution = encodeSenderKeyDistribution(outbound.distribution());
  const record = new SenderKeyRecord(groupId);
  record.addDistribution(decodeSenderKeyDistribution(distribution));
  const messages: Json[] = [];
  const wire: Uint8Array[] = [];
  for (const plaintext of byteListField(input, "plaintexts")) {
    const t = outbound.encryptTraced(plaintext);
    messages.push({
      key_id: t.keyId,
      iteration: t.iteration,
      chain_key: hex(t.chainKey),
      message_key: hex(t.messageKey),
      aead_key: hex(t.aeadKey),
      nonce: hex(t.nonce),
      associated_data: hex(t.associatedData),
      ciphertext: hex(t.ciphertext),
      signature: hex(t.signature),
      message: hex(t.message),
    });
    wire.push(t.message);
  }
  const received = listField(input, "receive_order").map((index) => {
    const message = typeof index === "number" ? wire[index] : undefined;
    if (message === undefined) {
      throw new VectorInputError("receive_order names no message");
    }
    return hex(record.decrypt(message));
  });
  const inbound = record.generation(outbound.currentKeyId);
  if (inbound === undefined) {
    throw new Error("generation missing");
  }
  return {
    distribution: hex(distribution),
    messages,
    received,
    outbound_state: hex(outbound.toBytes()),
    inbound_state: hex(inbound.toBytes()),
    record_state: hex(record.toBytes()),
  };
}

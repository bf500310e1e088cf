/**
 * The test-vector kinds this SDK implements (SPEC.md §17): each computes a
 * vector's `output` from its `input`, replaying every random draw. Used by
 * the vector test and by the JSON-lines adapter (§17.3).
 */
import { computeAttachment } from "./attachment.js";
import { computeDeviceList } from "./device_list.js";
import { computeFailure } from "./failure.js";
import { computeFraming } from "./framing.js";
import type { Json } from "./json.js";
import { computeKdf } from "./kdf.js";
import { computeProvisioning } from "./provisioning.js";
import { computeSafetyNumber } from "./safety_number.js";
import { computeSealedSender } from "./sealed_sender.js";
import { computeRatchet } from "./ratchet.js";
import { computeSenderKey } from "./sender_key.js";
import { computeSession } from "./session.js";
import { computeX3dh } from "./x3dh.js";

export { VectorInputError, type Json } from "./json.js";

/** input → output for one kind. */
export type VectorKind = (input: Json) => Json;

/** Every implemented kind, by the name used in the vector files. */
export const VECTOR_KINDS: Readonly<Record<string, VectorKind>> = {
  kdf: computeKdf,
  framing: computeFraming,
  attachment: computeAttachment,
  safety_number: computeSafetyNumber,
  sender_key: computeSenderKey,
  x3dh: computeX3dh,
  ratchet: computeRatchet,
  session: computeSession,
  failure: computeFailure,
  provisioning: computeProvisioning,
  sealed_sender: computeSealedSender,
  device_list: computeDeviceList,
};

/** The kind's runner, or undefined when this SDK does not implement it. */
export function vectorKind(kind: string): VectorKind | undefined {
  return Object.hasOwn(VECTOR_KINDS, kind) ? VECTOR_KINDS[kind] : undefined;
}

/** The `attachment` vector kind (SPEC.md §17.1): lengths, digest and segment boundaries. */
import { AttachmentKey, encryptAttachment, decryptAttachment, SEALED_SEGMENT_LEN } from "../attachment.js";
import { bytesEqual } from "../bytes.js";
import { TAG_LEN } from "../labels.js";
import { bytesField, hex, uintField, VectorInputError, type Json } from "./json.js";

/** Computes an `attachment` output; also decrypts the result and checks the round trip. */
export function computeAttachment(input: Json): Json {
  const key = AttachmentKey.fromBytes(bytesField(input, "key"));
  const pattern = bytesField(input, "pattern");
  const length = uintField(input, "length");
  if (pattern.length === 0 && length > 0) {
    throw new VectorInputError("empty pattern");
  }
  const plaintext = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    plaintext[i] = pattern[i % pattern.length]!;
  }
  const { ciphertext, summary } = encryptAttachment(key, plaintext);
  if (!bytesEqual(decryptAttachment(key, summary.digest, ciphertext), plaintext)) {
    throw new Error("attachment round trip differs");
  }
  const segments: Json[] = [];
  for (let offset = 0; offset < ciphertext.length; offset += SEALED_SEGMENT_LEN) {
    const segment = ciphertext.subarray(offset, Math.min(offset + SEALED_SEGMENT_LEN, ciphertext.length));
    segments.push({
      length: segment.length,
      first_32: hex(segment.subarray(0, Math.min(32, segment.length))),
      tag: hex(segment.subarray(Math.max(0, segment.length - TAG_LEN))),
    });
  }
  return { ciphertext_length: summary.ciphertextLength, digest: hex(summary.digest), segments };
}

/**
 * Group metadata sealing (SPEC.md §11.5): the server keeps only
 * `encrypted_metadata = nonce (12) ‖ ChaCha20-Poly1305-Seal(metadata_key,
 * nonce, aad = group_id, GroupMetadata encoding)`; members learn
 * `metadata_key` from a `GroupChange` and believe a name only once that key
 * opens the server's current blob.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";

import { concat } from "./bytes.js";
import { type GroupMetadata, GroupMetadataSchema } from "./gen/content_pb.js";
import { KEY_LEN, NONCE_LEN, TAG_LEN } from "./labels.js";
import type { Rng } from "./rng.js";

/** Sealed metadata could not be opened: wrong length, key or group, or not a `GroupMetadata`. */
export class GroupMetadataError extends Error {
  /** `invalid_key`, `too_short`, `authentication_failed` or `decode`. */
  readonly kind: "invalid_key" | "too_short" | "authentication_failed" | "decode";

  /** @param kind the failure */
  constructor(kind: GroupMetadataError["kind"]) {
    super(kind.replaceAll("_", " "));
    this.name = "GroupMetadataError";
    this.kind = kind;
  }
}

/** Seals `metadata` for `groupId` under `metadataKey`, drawing a 12-byte nonce. */
export function sealGroupMetadata(rng: Rng, metadataKey: Uint8Array, groupId: Uint8Array, metadata: GroupMetadata): Uint8Array {
  if (metadataKey.length !== KEY_LEN) {
    throw new GroupMetadataError("invalid_key");
  }
  const nonce = rng.fill(NONCE_LEN);
  const plaintext = toBinary(GroupMetadataSchema, create(GroupMetadataSchema, metadata));
  return concat(nonce, chacha20poly1305(metadataKey, nonce, groupId).encrypt(plaintext));
}

/** Opens the server's `encrypted_metadata` with a key from a `GroupChange`. */
export function openGroupMetadata(metadataKey: Uint8Array, groupId: Uint8Array, sealed: Uint8Array): GroupMetadata {
  if (metadataKey.length !== KEY_LEN) {
    throw new GroupMetadataError("invalid_key");
  }
  if (sealed.length < NONCE_LEN + TAG_LEN) {
    throw new GroupMetadataError("too_short");
  }
  let plaintext: Uint8Array;
  try {
    plaintext = chacha20poly1305(metadataKey, sealed.subarray(0, NONCE_LEN), groupId).decrypt(sealed.subarray(NONCE_LEN));
  } catch {
    throw new GroupMetadataError("authentication_failed");
  }
  try {
    return fromBinary(GroupMetadataSchema, plaintext);
  } catch {
    throw new GroupMetadataError("decode");
  }
}

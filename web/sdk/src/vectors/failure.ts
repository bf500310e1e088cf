/**
 * The `failure` vector kind (SPEC.md §17.1): refused inputs, the error they
 * get and the state after (unchanged). Error names are the reference
 * implementation's variant names, which §5.8 lists as local diagnostics; this
 * SDK's typed errors map onto them one to one (`errorName`).
 */
import { AttachmentDecryptor, AttachmentError, AttachmentKey, encryptAttachment } from "../attachment.js";
import { HandshakeError, verifyBundle } from "../handshake.js";
import { IdentityKeyPair, KeyError } from "../identity.js";
import { LocalPreKeys, type PreKeyBundle } from "../prekeys.js";
import { RatchetError } from "../ratchet/header.js";
import { RatchetSession } from "../ratchet/session.js";
import { ReplayRng, systemRng } from "../rng.js";
import { SenderKeyError, SenderKeyRecord } from "../sender_key.js";
import { Session, SessionError } from "../session.js";
import { StateError } from "../state.js";
import { byteListField, bytesField, hex, objectOf, stringField, uintField, VectorInputError, type Json } from "./json.js";

const pascal = (kind: string): string => kind.split("_").map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join("");

/** Names that are not the PascalCase of this SDK's error kind. */
const RENAMED: Readonly<Record<string, string>> = {
  invalid_ratchet_key: "NonContributoryDh",
  invalid_kem_public_key: "InvalidPublicKey",
  invalid_identity_key: "InvalidPublicKey",
  unknown_signed_prekey: "UnknownSignedPreKey",
  unknown_one_time_prekey: "UnknownOneTimePreKey",
  unknown_kem_prekey: "UnknownKemPreKey",
};

/** The reference implementation's name of a typed error of this SDK; rethrows anything else. */
export function errorName(error: unknown): string {
  if (
    error instanceof RatchetError ||
    error instanceof SenderKeyError ||
    error instanceof AttachmentError ||
    error instanceof HandshakeError ||
    error instanceof SessionError ||
    error instanceof KeyError ||
    error instanceof StateError
  ) {
    return RENAMED[error.kind] ?? pascal(error.kind);
  }
  throw error;
}

function outcome(run: () => void): string {
  try {
    run();
    return "";
  } catch (e) {
    return errorName(e);
  }
}

function bundle(input: Json): PreKeyBundle {
  const signed = objectOf(input["signed_prekey"], "signed_prekey");
  const kem = input["kem_prekey"] === undefined ? undefined : objectOf(input["kem_prekey"], "kem_prekey");
  return {
    identityKey: bytesField(input, "identity_key"),
    signedPreKey: { id: uintField(signed, "id"), publicKey: bytesField(signed, "public_key"), signature: bytesField(signed, "signature") },
    kemPreKey: kem && { id: uintField(kem, "id"), publicKey: bytesField(kem, "public_key"), signature: bytesField(kem, "signature") },
  };
}

/** Computes a `failure` output. */
export function computeFailure(input: Json): Json {
  const op = stringField(input, "op");
  switch (op) {
    case "ratchet_decrypt": {
      const session = RatchetSession.fromBytes(bytesField(input, "state"));
      const rng = new ReplayRng(byteListField(input, "draws"));
      const error = outcome(() => session.decrypt(bytesField(input, "message"), rng));
      rng.finish();
      return { error, state: hex(session.toBytes()) };
    }
    case "sender_key_decrypt": {
      const record = SenderKeyRecord.fromBytes(bytesField(input, "state"));
      const error = outcome(() => record.decrypt(bytesField(input, "message")));
      return { error, state: hex(record.toBytes()) };
    }
    case "attachment_decrypt": {
      const key = AttachmentKey.fromBytes(bytesField(input, "key"));
      const pattern = bytesField(input, "pattern");
      const length = uintField(input, "length");
      const plaintext = Uint8Array.from({ length }, (_, i) => pattern[i % pattern.length]!);
      const { ciphertext, summary } = encryptAttachment(key, plaintext);
      const keep = uintField(input, "keep");
      if (keep > ciphertext.length) {
        throw new VectorInputError("keep exceeds the ciphertext");
      }
      const decryptor = new AttachmentDecryptor(key, summary.digest);
      return {
        error: outcome(() => {
          decryptor.update(ciphertext.subarray(0, keep));
          decryptor.finish();
        }),
      };
    }
    case "prekey_bundle":
      return { error: outcome(() => verifyBundle(bundle(input))) };
    case "prekey_message": {
      const identity = IdentityKeyPair.fromBytes(bytesField(input, "identity_state"));
      const prekeys = LocalPreKeys.fromBytes(identity, bytesField(input, "prekeys_state"));
      // The op has no `draws`: a responder's first decrypt draws one ratchet
      // key (§5.6 step 6) that never reaches this output (the session is not
      // written), so any bytes serve; the reference harness does the same.
      const error = outcome(() => Session.accept(systemRng, identity, prekeys, bytesField(input, "message")));
      return { error, prekeys_state: hex(prekeys.toBytes()) };
    }
    default:
      throw new VectorInputError(`unknown failure op ${op}`);
  }
}

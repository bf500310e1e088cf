/**
 * Receiving sealed-sender envelopes (SPEC.md §19) in the TypeScript SDK,
 * as the Rust SDK's `sealed.rs` does: the account's profile key (shared
 * with contacts in `Content.profile_key`), its access key registered with
 * the server (§19.7), the server certificate key fetched with this device's
 * sender certificate over the pinned, logged-in connection, and opening an
 * envelope that names no sender: the certificate is checked under that key
 * at the envelope's server time stamp (§19.4) and its identity against the
 * one trusted for the certified username. `Messenger` sends sealed with
 * `sealedConnection` set (messenger.ts). A sealed group message (content
 * type 0x02, `group_id ‖ SenderKeyMessage`) unseals into a group envelope
 * that `Groups` opens with the certified sender's key.
 */
import { create } from "@bufbuild/protobuf";

import { constantTimeEqual } from "../bytes.js";
import { EnvelopeSchema, type Envelope } from "../gen/transport_pb.js";
import type { IdentityKeyPair } from "../identity.js";
import type { Rng } from "../rng.js";
import { accessKey, openSealedSender, parseCertificate, PROFILE_KEY_LEN, SealedSenderError, verifyCertificate, type SenderCertificate } from "../sealed_sender.js";
import type { Connection } from "./connection.js";
import type { ClientStore } from "./store.js";

/** Why a sealed envelope was refused; the store is unchanged. */
export type SealedEnvelopeErrorKind =
  /** This device never fetched a sender certificate, so it trusts no server key yet. */
  | "NoServerKey"
  /** The envelope or its certificate was refused (`cause` is the `SealedSenderError`: expired, bad signature, …). */
  | "Refused"
  /** The certificate names an identity other than the one trusted for its username (or the session's). */
  | "UntrustedIdentity"
  /** A sealed group (sender-key) message outside `Groups` (which opens them), or one shorter than its group id. */
  | "GroupUnsupported"
  /** A sealed group message whose certified sender is not a member of the group in our record of it (§19.8). */
  | "NotMember";

/** A refused sealed envelope. */
export class SealedEnvelopeError extends Error {
  /** The refusal. */
  readonly kind: SealedEnvelopeErrorKind;

  /** A refusal of `kind`. */
  constructor(kind: SealedEnvelopeErrorKind, options?: { cause: unknown }) {
    super(`sealed envelope: ${kind}`, options);
    this.name = "SealedEnvelopeError";
    this.kind = kind;
  }
}

/** The account's profile key, drawn from `rng` and stored the first time. */
export function ownProfileKey(store: ClientStore, rng: Rng): Uint8Array {
  const known = store.profileKey();
  if (known && known.length === PROFILE_KEY_LEN) return known;
  const key = rng.fill(PROFILE_KEY_LEN);
  store.setProfileKey(key);
  return key;
}

/**
 * Lets contacts send to this account sealed: registers the access key of
 * its profile key (§19.7) and fetches this device's sender certificate,
 * whose server key becomes the trusted one. Over a logged-in connection.
 */
export async function enableSealedSender(connection: Connection, store: ClientStore, rng: Rng): Promise<SenderCertificate> {
  const me = store.device();
  if (!me) throw new Error("no enrolled device in the store");
  await connection.call({ case: "setUnidentifiedAccess", value: { accessKey: accessKey(ownProfileKey(store, rng)), allowAnyone: false } }, "ok");
  return fetchCertificate(connection, store);
}

/** Fetches this device's sender certificate over the logged-in `connection`; its server key becomes the trusted one. */
export async function fetchCertificate(connection: Connection, store: ClientStore): Promise<SenderCertificate> {
  const me = store.device();
  if (!me) throw new Error("no enrolled device in the store");
  const response = await connection.call({ case: "getSenderCertificate", value: {} }, "senderCertificate");
  const serverKey = { keyId: response.serverKeyId, publicKey: response.serverPublicKey };
  const certificate = parseCertificate(response.certificate);
  verifyCertificate(certificate, serverKey, BigInt(Date.now()));
  if (certificate.username !== me.username || certificate.deviceId !== me.deviceId || !constantTimeEqual(certificate.identityKey.toBytes(), me.identity.publicKey.toBytes())) {
    throw new SealedEnvelopeError("UntrustedIdentity");
  }
  store.setServerKey(serverKey);
  return certificate;
}

/** An opened sealed envelope: as if identified by its verified certificate, the inner session message as ciphertext. */
export interface Unsealed {
  /** The envelope with the certified sender and the inner message. */
  envelope: Envelope;
  /** The certified identity key. */
  identity: Uint8Array;
}

/** Opens an envelope with an empty `sender_username` for `identity` (throws `SealedEnvelopeError`). */
export function unsealEnvelope(store: ClientStore, identity: IdentityKeyPair, envelope: Envelope): Unsealed {
  const trusted = store.serverKey();
  if (!trusted) throw new SealedEnvelopeError("NoServerKey");
  let opened;
  try {
    // At the time the server accepted it (§19.4), not now.
    opened = openSealedSender(identity, trusted, envelope.serverTimestampMs, envelope.ciphertext);
  } catch (cause) {
    if (cause instanceof SealedSenderError) throw new SealedEnvelopeError("Refused", { cause });
    throw cause;
  }
  // 0x02: the group id first, then the SenderKeyMessage (§19.3).
  if (opened.contentType === 2 && opened.message.length < 16) throw new SealedEnvelopeError("GroupUnsupported");
  const certified = opened.certificate.identityKey.toBytes();
  const username = opened.certificate.username;
  const me = store.device();
  const expected = username === me?.username ? me.identity.publicKey.toBytes() : store.contactIdentity(username);
  if (expected && !constantTimeEqual(expected, certified)) throw new SealedEnvelopeError("UntrustedIdentity");
  return {
    envelope: create(EnvelopeSchema, {
      envelopeId: envelope.envelopeId,
      senderUsername: username,
      senderDeviceId: opened.certificate.deviceId,
      serverTimestampMs: envelope.serverTimestampMs,
      ciphertext: opened.contentType === 2 ? opened.message.slice(16) : opened.message,
      groupId: opened.contentType === 2 ? opened.message.slice(0, 16) : envelope.groupId,
    }),
    identity: certified,
  };
}

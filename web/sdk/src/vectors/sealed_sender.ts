/** The `sealed_sender` vector kind (SPEC.md §19, §17.1): certificate, envelope, and what the recipient opens. */
import { toHex } from "../bytes.js";
import { ed25519 } from "@noble/curves/ed25519.js";
import { IdentityKeyPair } from "../identity.js";
import {
  accessKey,
  issueCertificate,
  openSealedSender,
  sealSealedSender,
  SealedSenderError,
  type ContentType,
} from "../sealed_sender.js";
import { bytesField, stringField, uintField, type Json } from "./json.js";

/** Issues the certificate, seals, then opens as the recipient. */
export function computeSealedSender(input: Json): Json {
  const serverSeed = bytesField(input, "server_seed");
  const sender = IdentityKeyPair.fromSeed(bytesField(input, "sender_identity_seed"));
  const recipient = IdentityKeyPair.fromSeed(bytesField(input, "recipient_identity_seed"));
  const certificate = issueCertificate(
    serverSeed,
    uintField(input, "server_key_id"),
    stringField(input, "username"),
    BigInt(uintField(input, "device_id")),
    sender.publicKey,
    BigInt(uintField(input, "expires_at_ms")),
  );
  const contentType = uintField(input, "content_type");
  if (contentType !== 1 && contentType !== 2) {
    throw new Error("unknown content_type");
  }
  const sealed = sealSealedSender(
    bytesField(input, "ephemeral_secret"),
    sender,
    certificate,
    recipient.publicKey,
    contentType as ContentType,
    bytesField(input, "message"),
  );
  const trusted = { keyId: uintField(input, "trusted_server_key_id"), publicKey: bytesField(input, "trusted_server_public") };
  let opened: Json;
  try {
    const unsealed = openSealedSender(recipient, trusted, BigInt(uintField(input, "now_ms")), sealed);
    opened = {
      username: unsealed.certificate.username,
      device_id: Number(unsealed.certificate.deviceId),
      identity_key: toHex(unsealed.certificate.identityKey.toBytes()),
      content_type: unsealed.contentType,
      message: toHex(unsealed.message),
    };
  } catch (e) {
    if (!(e instanceof SealedSenderError)) {
      throw e;
    }
    opened = { error: e.kind };
  }
  return {
    server_public: toHex(ed25519.getPublicKey(serverSeed)),
    certificate: toHex(certificate.bytes),
    sealed: toHex(sealed),
    access_key: toHex(accessKey(bytesField(input, "profile_key"))),
    opened,
  };
}

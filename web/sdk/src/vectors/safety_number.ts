/** The `safety_number` vector kind (SPEC.md §17.1): digits, display and QR payloads. */
import { SafetyNumber } from "../fingerprint.js";
import { IdentityKeyPair } from "../identity.js";
import { bytesField, hex, type Json } from "./json.js";

/** Computes a `safety_number` output; both sides must agree and verify each other's QR payload. */
export function computeSafetyNumber(input: Json): Json {
  const alice = IdentityKeyPair.fromSeed(bytesField(input, "alice_identity_seed"));
  const bob = IdentityKeyPair.fromSeed(bytesField(input, "bob_identity_seed"));
  const aliceUid = bytesField(input, "alice_user_id");
  const bobUid = bytesField(input, "bob_user_id");
  const fromAlice = new SafetyNumber(alice.publicKey, aliceUid, bob.publicKey, bobUid);
  const fromBob = new SafetyNumber(bob.publicKey, bobUid, alice.publicKey, aliceUid);
  if (fromAlice.digits !== fromBob.digits) {
    throw new Error("the two sides disagree");
  }
  if (!fromAlice.verifyQrPayload(fromBob.qrPayload()) || !fromBob.verifyQrPayload(fromAlice.qrPayload())) {
    throw new Error("QR payloads do not verify");
  }
  return {
    digits: fromAlice.digits,
    display: fromAlice.display(),
    alice_qr_payload: hex(fromAlice.qrPayload()),
    bob_qr_payload: hex(fromBob.qrPayload()),
  };
}

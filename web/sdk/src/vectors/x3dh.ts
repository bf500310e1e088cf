/** The `x3dh` vector kind (SPEC.md §17.1): both sides of a classical or hybrid handshake. */
import { bytesEqual } from "../bytes.js";
import { initiate, respond } from "../handshake.js";
import { IdentityKeyPair } from "../identity.js";
import { KemPreKey, LocalPreKeys, OneTimePreKey, SignedPreKey } from "../prekeys.js";
import { ReplayRng } from "../rng.js";
import { boolField, byteListField, hex, uintField, type Json } from "./json.js";

/** Computes an `x3dh` output, replaying `bob_draws` and `alice_draws`; both sides must agree. */
export function computeX3dh(input: Json): Json {
  const withOneTime = boolField(input, "with_one_time");
  const withKem = boolField(input, "with_kem");
  const bobRng = new ReplayRng(byteListField(input, "bob_draws"));
  const bob = IdentityKeyPair.generate(bobRng);
  const signed = SignedPreKey.generate(bobRng, bob, uintField(input, "signed_prekey_id"), withKem);
  const oneTime = withOneTime ? OneTimePreKey.generate(bobRng, uintField(input, "one_time_prekey_id")) : undefined;
  const kem = withKem ? KemPreKey.generate(bobRng, bob, uintField(input, "kem_prekey_id")) : undefined;
  bobRng.finish();

  const aliceRng = new ReplayRng(byteListField(input, "alice_draws"));
  const alice = IdentityKeyPair.generate(aliceRng);
  const { output: a, header } = initiate(aliceRng, alice, {
    identityKey: bob.publicKey.toBytes(),
    signedPreKey: signed.public(),
    oneTimePreKey: oneTime?.public(),
    kemPreKey: kem?.public(),
  });
  aliceRng.finish();

  const prekeys = new LocalPreKeys();
  prekeys.addSigned(signed);
  if (oneTime !== undefined) {
    prekeys.addOneTime(oneTime);
  }
  if (kem !== undefined) {
    prekeys.addKem(kem);
  }
  const b = respond(bob, prekeys, header);
  if (!bytesEqual(a.sharedSecret, b.sharedSecret) || !bytesEqual(a.associatedData, b.associatedData) || a.mode !== b.mode) {
    throw new Error("initiator and responder disagree");
  }
  const empty = new Uint8Array(0);
  return {
    mode: a.mode,
    alice_identity_key: hex(alice.publicKey.toBytes()),
    bob_identity_key: hex(bob.publicKey.toBytes()),
    signed_prekey_public: hex(signed.public().publicKey),
    signed_prekey_signature: hex(signed.public().signature),
    one_time_prekey_public: hex(oneTime?.publicKey ?? empty),
    kem_prekey_public: hex(kem?.public().publicKey ?? empty),
    kem_prekey_signature: hex(kem?.public().signature ?? empty),
    base_key: hex(header.baseKey),
    dh1: hex(a.trace.dh1),
    dh2: hex(a.trace.dh2),
    dh3: hex(a.trace.dh3),
    dh4: hex(a.trace.dh4),
    kem_ciphertext: hex(header.kemCiphertext ?? empty),
    kem_shared_secret: hex(a.trace.kemSharedSecret),
    shared_secret: hex(a.sharedSecret),
    associated_data: hex(a.associatedData),
  };
}

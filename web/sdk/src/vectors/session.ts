/** The `session` vector kind (SPEC.md §17.1): a hybrid 1:1 session through `SessionMessage`s, with persisted states. */
import { IdentityKeyPair } from "../identity.js";
import { KemPreKey, LocalPreKeys, OneTimePreKey, SignedPreKey } from "../prekeys.js";
import { ReplayRng } from "../rng.js";
import { rootStep } from "./ratchet.js";
import { Session } from "../session.js";
import { byteListField, bytesField, hex, listField, objectOf, stringField, uintField, VectorInputError, type Json } from "./json.js";

/** Computes a `session` output, replaying `alice_draws` and `bob_draws`. */
export function computeSession(input: Json): Json {
  const aliceRng = new ReplayRng(byteListField(input, "alice_draws"));
  const bobRng = new ReplayRng(byteListField(input, "bob_draws"));
  const bob = IdentityKeyPair.generate(bobRng);
  const signed = SignedPreKey.generate(bobRng, bob, uintField(input, "signed_prekey_id"));
  const oneTime = OneTimePreKey.generate(bobRng, uintField(input, "one_time_prekey_id"));
  const kem = KemPreKey.generate(bobRng, bob, uintField(input, "kem_prekey_id"));
  const bobPreKeys = new LocalPreKeys();
  bobPreKeys.addSigned(signed);
  bobPreKeys.addOneTime(oneTime);
  bobPreKeys.addKem(kem);
  const prekeysBefore = hex(bobPreKeys.toBytes());

  const alice = IdentityKeyPair.generate(aliceRng);
  const initiated = Session.initiateTraced(aliceRng, alice, {
    identityKey: bob.publicKey.toBytes(),
    signedPreKey: signed.public(),
    oneTimePreKey: oneTime.public(),
    kemPreKey: kem.public(),
  });
  const aliceSession = initiated.session;
  const handshake = {
    shared_secret: hex(initiated.sharedSecret),
    associated_data: hex(initiated.associatedData),
    alice_initial_root_step: rootStep(initiated.rootStep),
  };
  if (aliceSession.mode !== "hybrid") {
    throw new Error("expected a hybrid session");
  }
  const pendingState = hex(aliceSession.toBytes());
  let bobSession: Session | undefined;
  const sent: { fromAlice: boolean; message: Uint8Array }[] = [];
  const deliveries: Json[] = [];
  for (const raw of listField(input, "steps")) {
    const step = objectOf(raw, "step");
    const op = stringField(step, "op");
    if (op === "encrypt") {
      const fromAlice = stringField(step, "from") === "alice";
      const plaintext = bytesField(step, "plaintext");
      if (!fromAlice && bobSession === undefined) {
        throw new VectorInputError("bob encrypts before he has a session");
      }
      sent.push({ fromAlice, message: (fromAlice ? aliceSession : bobSession!).encrypt(plaintext) });
    } else if (op === "deliver") {
      const index = uintField(step, "message");
      const item = sent[index];
      if (item === undefined) {
        throw new VectorInputError(`deliver names message ${index}, not yet encrypted`);
      }
      let plaintext: Uint8Array;
      if (!item.fromAlice) {
        plaintext = aliceSession.decrypt(item.message, aliceRng);
      } else if (bobSession !== undefined) {
        plaintext = bobSession.decrypt(item.message, bobRng);
      } else {
        const accepted = Session.accept(bobRng, bob, bobPreKeys, item.message);
        bobSession = accepted.session;
        plaintext = accepted.plaintext;
      }
      deliveries.push({ message_index: index, plaintext: hex(plaintext) });
    } else {
      throw new VectorInputError(`unknown session op ${op}`);
    }
  }
  aliceRng.finish();
  bobRng.finish();
  if (bobSession === undefined) {
    throw new VectorInputError("bob never received");
  }
  return {
    alice_identity_state: hex(alice.toBytes()),
    bob_identity_state: hex(bob.toBytes()),
    bob_prekeys_state_before: prekeysBefore,
    bob_prekeys_state_after: hex(bobPreKeys.toBytes()),
    alice_session_state_pending: pendingState,
    messages: sent.map((m) => hex(m.message)),
    deliveries,
    alice_session_state: hex(aliceSession.toBytes()),
    bob_session_state: hex(bobSession.toBytes()),
    handshake,
  };
}

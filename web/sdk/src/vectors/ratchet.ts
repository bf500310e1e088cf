/** The `ratchet` vector kind (SPEC.md §17.1): a conversation with reordering and DH steps, fully traced. */
import { x25519PublicKey } from "../identity.js";
import type { MessageTrace, RootStepTrace } from "../ratchet/session.js";
import { RatchetSession } from "../ratchet/session.js";
import { ReplayRng } from "../rng.js";
import { byteListField, bytesField, hex, listField, objectOf, stringField, uintField, VectorInputError, type Json } from "./json.js";

/** A root step as the vectors write it. */
export function rootStep(step: RootStepTrace): Json {
  return {
    own_ratchet_key: hex(step.ownRatchetKey),
    remote_ratchet_key: hex(step.remoteRatchetKey),
    dh_output: hex(step.dhOutput),
    previous_root_key: hex(step.previousRootKey),
    root_key: hex(step.rootKey),
    chain_key: hex(step.chainKey),
  };
}

function messageTrace(trace: MessageTrace): Json {
  return {
    root_steps: trace.rootSteps.map(rootStep),
    header: hex(trace.header),
    chain_key: trace.chainKey === undefined ? "" : hex(trace.chainKey),
    message_key: hex(trace.messageKey),
    aead_key: hex(trace.aeadKey),
    nonce: hex(trace.nonce),
    associated_data: hex(trace.associatedData),
    sealed: hex(trace.sealed),
  };
}

/** Computes a `ratchet` output, replaying `alice_draws` and `bob_draws`. */
export function computeRatchet(input: Json): Json {
  const sharedSecret = bytesField(input, "shared_secret");
  const associatedData = bytesField(input, "associated_data");
  const bobFirst = bytesField(input, "bob_ratchet_private_key");
  const aliceRng = new ReplayRng(byteListField(input, "alice_draws"));
  const bobRng = new ReplayRng(byteListField(input, "bob_draws"));
  const { session: alice, rootStep: initial } = RatchetSession.initiatorTraced(
    aliceRng,
    sharedSecret,
    associatedData,
    x25519PublicKey(bobFirst),
  );
  const bob = RatchetSession.responder(sharedSecret, associatedData, bobFirst);
  const sent: { fromAlice: boolean; message: Uint8Array }[] = [];
  const messages: Json[] = [];
  const deliveries: Json[] = [];
  for (const raw of listField(input, "steps")) {
    const step = objectOf(raw, "step");
    const op = stringField(step, "op");
    if (op === "encrypt") {
      const fromAlice = stringField(step, "from") === "alice";
      const { message, trace } = (fromAlice ? alice : bob).encryptTraced(bytesField(step, "plaintext"));
      messages.push({ ...messageTrace(trace), message: hex(message) });
      sent.push({ fromAlice, message });
    } else if (op === "deliver") {
      const index = uintField(step, "message");
      const item = sent[index];
      if (item === undefined) {
        throw new VectorInputError(`deliver names message ${index}, not yet encrypted`);
      }
      const [receiver, rng] = item.fromAlice ? [bob, bobRng] : [alice, aliceRng];
      const { plaintext, trace } = receiver.decryptTraced(item.message, rng);
      deliveries.push({ ...messageTrace(trace), message_index: index, plaintext: hex(plaintext) });
    } else {
      throw new VectorInputError(`unknown ratchet op ${op}`);
    }
  }
  aliceRng.finish();
  bobRng.finish();
  return {
    alice_initial_root_step: rootStep(initial),
    messages,
    deliveries,
    alice_state: hex(alice.toBytes()),
    bob_state: hex(bob.toBytes()),
  };
}

/**
 * Differential check against another implementation's adapter (SPEC.md §17.3):
 * random inputs of every vector kind, in the vectors' format, answered by this
 * SDK and by the other adapter; any difference is printed and fails the run.
 *
 *   node --import tsx scripts/differential.ts "<other adapter command>" [cases per kind] [seed]
 *   e.g. "../../target/debug/microbot-conformance adapter" 100
 *
 * Random draws are recorded from this SDK's run and become the input's
 * `*_draws`, so both sides replay the same randomness. Not part of `npm test`
 * (it needs the other implementation built).
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

import { sha256 } from "@noble/hashes/sha2.js";

import { answer } from "../src/adapter.js";
import { concat, toHex, u32be, utf8 } from "../src/bytes.js";
import { encodeFrame } from "../src/framing.js";
import { IdentityKeyPair, x25519PublicKey } from "../src/identity.js";
import { KemPreKey, kemPreKeyMessage, LocalPreKeys, OneTimePreKey, SignedPreKey } from "../src/prekeys.js";
import { RatchetSession } from "../src/ratchet/session.js";
import type { Rng } from "../src/rng.js";
import { OutboundSenderKey, SenderKeyRecord } from "../src/sender_key.js";
import { Session } from "../src/session.js";
import type { Json } from "../src/vectors/json.js";

const [command, perKindArg, seedArg] = process.argv.slice(2);
if (command === undefined) {
  console.error("usage: differential.ts \"<adapter command>\" [cases per kind] [seed]");
  process.exit(2);
}
const perKind = Number(perKindArg ?? "50");
let counter = 0;
const seed = seedArg ?? "differential";

/** Deterministic randomness for the generator (not the draws' source of truth: those are recorded). */
function bytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 32) {
    out.set(sha256(concat(utf8(seed), u32be(counter++ >>> 0))).subarray(0, Math.min(32, n - off)), off);
  }
  return out;
}
const int = (max: number): number => (bytes(4).reduce((a, b) => a * 256 + b, 0) >>> 0) % max;
const pick = <T>(items: T[]): T => items[int(items.length)]!;
function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** An RNG that hands out generator bytes and records every draw. */
function recording(): Rng & { draws: string[] } {
  const draws: string[] = [];
  return {
    draws,
    fill(n: number): Uint8Array {
      const b = bytes(n);
      draws.push(toHex(b));
      return b;
    },
  };
}

type Step = { op: "encrypt"; from: "alice" | "bob"; plaintext: string } | { op: "deliver"; message: number };

/** A random conversation: bursts, deliveries in random order, some messages lost. */
function conversation(
  encrypt: (fromAlice: boolean, plaintext: Uint8Array) => Uint8Array,
  deliver: (fromAlice: boolean, message: Uint8Array) => void,
): Step[] {
  const steps: Step[] = [];
  const sent: { fromAlice: boolean; message: Uint8Array; delivered: boolean }[] = [];
  let bobCanSend = false;
  for (let round = 0; round < 3 + int(6); round++) {
    const fromAlice = !bobCanSend || int(2) === 0;
    for (let k = 0; k < 1 + int(5); k++) {
      const plaintext = bytes(int(40));
      steps.push({ op: "encrypt", from: fromAlice ? "alice" : "bob", plaintext: toHex(plaintext) });
      sent.push({ fromAlice, message: encrypt(fromAlice, plaintext), delivered: false });
    }
    const pending = sent.map((m, i) => ({ m, i })).filter(({ m }) => !m.delivered);
    for (const { m, i } of shuffle(pending)) {
      if (int(5) === 0) {
        continue; // held back, maybe for ever
      }
      deliver(m.fromAlice, m.message);
      m.delivered = true;
      if (m.fromAlice) {
        bobCanSend = true;
      }
      steps.push({ op: "deliver", message: i });
    }
  }
  return steps;
}

const generators: Record<string, () => Json> = {
  kdf: () =>
    pick([
      () => ({ op: "hkdf", salt: toHex(bytes(int(3) * 16)), ikm: toHex(bytes(1 + int(64))), info: toHex(bytes(int(40))), length: pick([32, 44, 64]) }),
      () => ({ op: "root_step", root_key: toHex(bytes(32)), dh_output: toHex(bytes(32)) }),
      () => ({ op: "chain_step", chain_key: toHex(bytes(32)) }),
    ])(),
  framing: () => {
    if (int(4) === 0) {
      return { op: "encode_hello", request_id: int(1 << 30), versions: [1, 2].slice(0, 1 + int(2)), client_agent: `agent/${int(1000)}` };
    }
    const frames = Array.from({ length: int(4) }, () => encodeFrame(bytes(int(300)), 1 << 20));
    let stream = concat(...frames);
    if (stream.length > 0 && int(2) === 0) {
      stream = stream.subarray(0, int(stream.length + 1));
    }
    if (int(3) === 0) {
      stream = concat(stream, bytes(1 + int(11)));
    }
    return { op: "decode", max_frame_len: pick([0, 1, 100, 299, 1024, 1 << 20]), stream: toHex(stream), as_client_frames: int(4) === 0 };
  },
  attachment: () => {
    const length = pick([0, 1, 65535, 65536, 65537, 131072, int(300_000)]);
    return { key: toHex(bytes(32)), pattern: toHex(bytes(1 + int(40))), length };
  },
  safety_number: () => ({
    alice_identity_seed: toHex(bytes(32)),
    bob_identity_seed: toHex(bytes(32)),
    alice_user_id: toHex(utf8(`user${int(1000)}`)),
    bob_user_id: toHex(bytes(int(40))),
  }),
  x3dh: () => {
    const withOneTime = int(2) === 0;
    const withKem = int(2) === 0;
    const bobDraws = [toHex(bytes(32)), toHex(bytes(32)), ...(withOneTime ? [toHex(bytes(32))] : []), ...(withKem ? [toHex(bytes(64))] : [])];
    const aliceDraws = [toHex(bytes(32)), toHex(bytes(32)), ...(withKem ? [toHex(bytes(32))] : [])];
    return {
      with_one_time: withOneTime,
      with_kem: withKem,
      signed_prekey_id: int(1 << 30),
      ...(withOneTime ? { one_time_prekey_id: int(1 << 30) } : {}),
      ...(withKem ? { kem_prekey_id: int(1 << 30) } : {}),
      bob_draws: bobDraws,
      alice_draws: aliceDraws,
    };
  },
  provisioning: () => ({
    recipient_secret: toHex(bytes(32)),
    ephemeral_secret: toHex(bytes(32)),
    slot_id: toHex(bytes(16)),
    plaintext: toHex(bytes(int(300))),
  }),
  sender_key: () => {
    const plaintexts = Array.from({ length: 1 + int(20) }, () => toHex(bytes(int(60))));
    const order = shuffle(plaintexts.map((_, i) => i)).filter(() => int(6) !== 0);
    return {
      group_id: toHex(bytes(1 + int(255))),
      sender_draws: [toHex(bytes(4)), toHex(bytes(32)), toHex(bytes(32))],
      plaintexts,
      receive_order: order,
    };
  },
  ratchet: () => {
    const sharedSecret = bytes(32);
    const ad = bytes(64);
    const bobFirst = bytes(32);
    const aliceRng = recording();
    const bobRng = recording();
    const alice = RatchetSession.initiator(aliceRng, sharedSecret, ad, x25519PublicKey(bobFirst));
    const bob = RatchetSession.responder(sharedSecret, ad, bobFirst);
    const steps = conversation(
      (fromAlice, p) => (fromAlice ? alice : bob).encrypt(p),
      (fromAlice, m) => void (fromAlice ? bob.decrypt(m, bobRng) : alice.decrypt(m, aliceRng)),
    );
    return {
      shared_secret: toHex(sharedSecret),
      associated_data: toHex(ad),
      bob_ratchet_private_key: toHex(bobFirst),
      alice_draws: aliceRng.draws,
      bob_draws: bobRng.draws,
      steps,
    };
  },
  session: () => {
    const aliceRng = recording();
    const bobRng = recording();
    const ids = { signed_prekey_id: int(1 << 30), one_time_prekey_id: int(1 << 30), kem_prekey_id: int(1 << 30) };
    const bob = IdentityKeyPair.generate(bobRng);
    const signed = SignedPreKey.generate(bobRng, bob, ids.signed_prekey_id);
    const oneTime = OneTimePreKey.generate(bobRng, ids.one_time_prekey_id);
    const kem = KemPreKey.generate(bobRng, bob, ids.kem_prekey_id);
    const prekeys = new LocalPreKeys();
    prekeys.addSigned(signed);
    prekeys.addOneTime(oneTime);
    prekeys.addKem(kem);
    const alice = IdentityKeyPair.generate(aliceRng);
    const aliceSession = Session.initiate(aliceRng, alice, {
      identityKey: bob.publicKey.toBytes(),
      signedPreKey: signed.public(),
      oneTimePreKey: oneTime.public(),
      kemPreKey: kem.public(),
    });
    let bobSession: Session | undefined;
    const steps = conversation(
      (fromAlice, p) => (fromAlice ? aliceSession : bobSession!).encrypt(p),
      (fromAlice, m) => {
        if (!fromAlice) {
          aliceSession.decrypt(m, aliceRng);
        } else if (bobSession !== undefined) {
          bobSession.decrypt(m, bobRng);
        } else {
          bobSession = Session.accept(bobRng, bob, prekeys, m).session;
        }
      },
    );
    return { ...ids, alice_draws: aliceRng.draws, bob_draws: bobRng.draws, steps };
  },
  failure: () => {
    // A real mid-conversation receiver state, then a message that is genuine, replayed, tampered or cut.
    const sharedSecret = bytes(32);
    const ad = bytes(64);
    const bobFirst = bytes(32);
    const alice = RatchetSession.initiator(recording(), sharedSecret, ad, x25519PublicKey(bobFirst));
    const bob = RatchetSession.responder(sharedSecret, ad, bobFirst);
    const bobRng = recording();
    const messages = Array.from({ length: 1 + int(6) }, () => alice.encrypt(bytes(int(30))));
    for (const i of shuffle(messages.map((_, i) => i)).slice(0, int(messages.length))) {
      bob.decrypt(messages[i]!, bobRng);
    }
    const state = bob.toBytes();
    let message = pick(messages);
    const mutation = int(4);
    if (mutation === 1) {
      message = Uint8Array.from(message);
      message[int(message.length)]! ^= 1 << int(8);
    } else if (mutation === 2) {
      message = message.subarray(0, int(message.length));
    }
    const draws = recording();
    try {
      RatchetSession.fromBytes(state).decrypt(message, draws);
    } catch {
      // the refusal is what is compared
    }
    return { op: "ratchet_decrypt", state: toHex(state), message: toHex(message), draws: draws.draws };
  },
  "failure/ratchet_cap": () => {
    // Bob holds many skipped keys over several of Alice's chains; the probe
    // message makes him store more, so the total cap evicts (oldest chain first).
    const sharedSecret = bytes(32);
    const ad = bytes(64);
    const bobFirst = bytes(32);
    const aliceRng = recording();
    const bobRng = recording();
    const alice = RatchetSession.initiator(aliceRng, sharedSecret, ad, x25519PublicKey(bobFirst));
    const bob = RatchetSession.responder(sharedSecret, ad, bobFirst);
    const held: Uint8Array[] = [];
    for (let chain = 0; chain < 2 + int(3); chain++) {
      // 800..1000 skipped per chain: three chains already pass the cap.
      const burst = Array.from({ length: 801 + int(200) }, () => alice.encrypt(bytes(4)));
      held.push(...burst.slice(0, -1).filter(() => int(50) === 0));
      bob.decrypt(burst[burst.length - 1]!, bobRng);
      alice.decrypt(bob.encrypt(bytes(4)), aliceRng);
    }
    const state = bob.toBytes();
    const burst = Array.from({ length: 1 + int(1000) }, () => alice.encrypt(bytes(4)));
    const message = int(3) === 0 && held.length > 0 ? (int(2) === 0 ? held[0]! : pick(held)) : burst[burst.length - 1]!;
    const draws = recording();
    try {
      RatchetSession.fromBytes(state).decrypt(message, draws);
    } catch {
      // the refusal is what is compared
    }
    return { op: "ratchet_decrypt", state: toHex(state), message: toHex(message), draws: draws.draws };
  },
  "failure/sender_key": () => {
    const group = bytes(1 + int(40));
    const sender = OutboundSenderKey.create(recording(), group);
    const record = new SenderKeyRecord(group);
    record.addDistribution(sender.distribution());
    const messages = Array.from({ length: 1 + int(8) }, () => sender.encrypt(bytes(int(30))));
    for (const i of shuffle(messages.map((_, i) => i)).slice(0, int(messages.length))) {
      record.decrypt(messages[i]!);
    }
    let message = pick(messages);
    const mutation = int(4);
    if (mutation === 1) {
      message = Uint8Array.from(message);
      message[int(message.length)]! ^= 1 << int(8);
    } else if (mutation === 2) {
      message = message.subarray(0, int(message.length));
    }
    return { op: "sender_key_decrypt", state: toHex(record.toBytes()), message: toHex(message) };
  },
  "failure/prekey_message": () => {
    const rng = recording();
    const bob = IdentityKeyPair.generate(rng);
    const withKem = int(3) !== 0;
    const prekeys = new LocalPreKeys();
    const signed = SignedPreKey.generate(rng, bob, 1 + int(5), withKem);
    prekeys.addSigned(signed);
    const oneTime = prekeys.generateOneTime(rng, 1 + int(3));
    const kem = withKem ? KemPreKey.generate(rng, bob, 1 + int(5)) : undefined;
    if (kem !== undefined) {
      prekeys.addKem(kem);
    }
    const alice = IdentityKeyPair.generate(rng);
    const otk = int(4) === 0 ? undefined : pick(oneTime);
    const session = Session.initiate(rng, alice, {
      identityKey: bob.publicKey.toBytes(),
      signedPreKey: signed.public(),
      oneTimePreKey: otk?.public(),
      kemPreKey: kem?.public(),
    });
    let message = session.encrypt(bytes(int(40)));
    const mutation = int(5);
    if (mutation === 1 && otk !== undefined) {
      prekeys.removeOneTime(otk.id); // already used: a replay
    } else if (mutation === 2) {
      message = Uint8Array.from(message);
      message[message.length - 1 - int(20)]! ^= 1; // the inner ratchet message
    } else if (mutation === 3) {
      message = message.subarray(0, int(message.length));
    }
    return {
      op: "prekey_message",
      identity_state: toHex(bob.toBytes()),
      prekeys_state: toHex(prekeys.toBytes()),
      message: toHex(message),
    };
  },
  "failure/prekey_bundle": () => {
    const rng = recording();
    const identity = IdentityKeyPair.generate(rng);
    const withKem = int(3) !== 0;
    const signed = SignedPreKey.generate(rng, identity, int(1000), withKem).public();
    let kem = withKem ? KemPreKey.generate(rng, identity, int(1000)).public() : undefined;
    const mutation = int(5);
    if (mutation === 1) {
      signed.signature[int(64)]! ^= 1 << int(8);
    } else if (mutation === 2 && kem !== undefined) {
      kem = undefined;
    } else if (mutation === 3 && kem !== undefined) {
      kem.publicKey[0] = 0xff;
      kem.publicKey[1]! |= 0x0f;
      kem.signature = identity.sign(kemPreKeyMessage(kem.id, kem.publicKey));
    } else if (mutation === 4 && kem !== undefined) {
      kem.signature[int(64)]! ^= 1 << int(8);
    }
    const key = (k: { id: number; publicKey: Uint8Array; signature: Uint8Array }) => ({ id: k.id, public_key: toHex(k.publicKey), signature: toHex(k.signature) });
    return {
      op: "prekey_bundle",
      identity_key: toHex(identity.publicKey.toBytes()),
      signed_prekey: key(signed),
      ...(kem !== undefined ? { kem_prekey: key(kem) } : {}),
    };
  },
};

class Adapter {
  private readonly waiting: ((line: string) => void)[] = [];
  private readonly child;

  constructor(cmd: string) {
    this.child = spawn("sh", ["-c", cmd], { stdio: ["pipe", "pipe", "inherit"] });
    createInterface({ input: this.child.stdout }).on("line", (line) => this.waiting.shift()?.(line));
  }

  ask(request: Json): Promise<Json> {
    return new Promise((resolve) => {
      this.waiting.push((line) => resolve(JSON.parse(line) as Json));
      this.child.stdin.write(`${JSON.stringify(request)}\n`);
    });
  }

  close(): void {
    this.child.stdin.end();
  }
}

const other = new Adapter(command);
let failures = 0;
let compared = 0;
for (const [kind, generate] of Object.entries(generators)) {
  let agreed = 0;
  const outcomes = new Map<string, number>();
  for (let i = 0; i < perKind; i++) {
    const input = generate();
    const request = { id: compared, kind: kind.split("/")[0]!, input };
    const mine = answer(JSON.stringify(request));
    const theirs = await other.ask(request);
    compared += 1;
    if (JSON.stringify(sortKeys(mine)) !== JSON.stringify(sortKeys(theirs))) {
      failures += 1;
      if (failures <= 5) {
        console.log(`DIFF ${kind}: input ${JSON.stringify(input).slice(0, 400)}\n  mine   ${JSON.stringify(mine).slice(0, 600)}\n  theirs ${JSON.stringify(theirs).slice(0, 600)}`);
      }
    } else {
      agreed += 1;
      const out = mine["output"] as Json | undefined;
      const label = out === undefined ? "error" : typeof out["error"] === "string" ? `error=${out["error"] || "none"}` : "output";
      outcomes.set(label, (outcomes.get(label) ?? 0) + 1);
    }
  }
  console.log(`${kind}: ${agreed}/${perKind} agree (${[...outcomes].map(([k, n]) => `${k} ${n}`).join(", ")})`);
}
other.close();
console.log(`differential: ${compared - failures} passed, ${failures} failed`);
process.exitCode = failures === 0 ? 0 : 1;

/** JSON with object keys sorted, so that key order does not count. */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) {
    return value.map(sortKeys);
  }
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys((value as Json)[k])]));
  }
  return value;
}

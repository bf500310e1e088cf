/**
 * Per-operation cost of this SDK in Node (informative; BENCHMARKS.md will
 * hold the measured comparison with Rust): a 1:1 steady-chain message
 * (encrypt + decrypt), a group message (encrypt + sign + verify + decrypt)
 * and a hybrid handshake (bundle checks, X3DH + ML-KEM-768, both sides).
 *
 *   node --import tsx scripts/bench.ts [iterations] [message bytes, default 100]
 */
import { initiate, respond } from "../src/handshake.js";
import { IdentityKeyPair, x25519PublicKey } from "../src/identity.js";
import { KemPreKey, LocalPreKeys, OneTimePreKey, SignedPreKey } from "../src/prekeys.js";
import { RatchetSession } from "../src/ratchet/session.js";
import { systemRng } from "../src/rng.js";
import { OutboundSenderKey, SenderKeyRecord } from "../src/sender_key.js";

const n = Number(process.argv[2] ?? "2000");
// 100 B, as crypto-core's criterion benches (BENCHMARKS.md compares the two).
const plaintext = new Uint8Array(Number(process.argv[3] ?? "100"));

function time(label: string, iterations: number, run: () => void): void {
  for (let i = 0; i < Math.min(50, iterations); i++) {
    run();
  }
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    run();
  }
  const micros = Number(process.hrtime.bigint() - start) / 1000 / iterations;
  console.log(`${label.padEnd(44)} ${micros.toFixed(1).padStart(9)} µs/op  (${iterations} ops)`);
}

const spk = systemRng.fill(32);
const alice = RatchetSession.initiator(systemRng, new Uint8Array(32).fill(1), new Uint8Array(64), x25519PublicKey(spk));
const bob = RatchetSession.responder(new Uint8Array(32).fill(1), new Uint8Array(64), spk);
bob.decrypt(alice.encrypt(plaintext));
time(`1:1 steady chain: encrypt + decrypt (${plaintext.length} B)`, n, () => {
  bob.decrypt(alice.encrypt(plaintext));
});

const group = new Uint8Array(16).fill(2);
const sender = OutboundSenderKey.create(systemRng, group);
const record = new SenderKeyRecord(group);
record.addDistribution(sender.distribution());
time(`group: encrypt + decrypt (signed, ${plaintext.length} B)`, n, () => {
  record.decrypt(sender.encrypt(plaintext));
});

const bobId = IdentityKeyPair.generate(systemRng);
const aliceId = IdentityKeyPair.generate(systemRng);
const signed = SignedPreKey.generate(systemRng, bobId, 1);
const kem = KemPreKey.generate(systemRng, bobId, 2);
const prekeys = new LocalPreKeys();
prekeys.addSigned(signed);
prekeys.addKem(kem);
let otkId = 0;
time("hybrid handshake: initiate + respond", Math.max(20, Math.floor(n / 20)), () => {
  const oneTime = OneTimePreKey.generate(systemRng, otkId++);
  prekeys.addOneTime(oneTime);
  const bundle = { identityKey: bobId.publicKey.toBytes(), signedPreKey: signed.public(), oneTimePreKey: oneTime.public(), kemPreKey: kem.public() };
  respond(bobId, prekeys, initiate(systemRng, aliceId, bundle).header);
  prekeys.removeOneTime(oneTime.id);
});

// A hybrid (X3DH + ML-KEM-768) session between two devices, in memory.
// Run from web/sdk: node --import tsx examples/session.ts
import { IdentityKeyPair, KemPreKey, LocalPreKeys, OneTimePreKey, Session, SignedPreKey, systemRng } from "../src/index.js";

// Bob makes prekeys (a client uploads the public halves to the server, SPEC §12.6).
const bob = IdentityKeyPair.generate(systemRng);
const signed = SignedPreKey.generate(systemRng, bob, 1); // kem_flag 0x01: Bob publishes a KEM prekey
const oneTime = OneTimePreKey.generate(systemRng, 100);
const kem = KemPreKey.generate(systemRng, bob, 7);
const bobPreKeys = new LocalPreKeys();
bobPreKeys.addSigned(signed);
bobPreKeys.addOneTime(oneTime);
bobPreKeys.addKem(kem);
const bundle = { identityKey: bob.publicKey.toBytes(), signedPreKey: signed.public(), oneTimePreKey: oneTime.public(), kemPreKey: kem.public() };

// Alice fetched Bob's bundle: she starts a session and writes (a PreKeyMessage).
const alice = IdentityKeyPair.generate(systemRng);
const aliceSession = Session.initiate(systemRng, alice, bundle);
const wire = aliceSession.encrypt(new TextEncoder().encode("hello Bob"));

// Bob accepts it and answers; from then on both send ratchet messages.
const { session: bobSession, plaintext } = Session.accept(systemRng, bob, bobPreKeys, wire);
console.log(new TextDecoder().decode(plaintext), aliceSession.mode);
const reply = bobSession.encrypt(new TextEncoder().encode("hi Alice"));
console.log(new TextDecoder().decode(aliceSession.decrypt(reply)));

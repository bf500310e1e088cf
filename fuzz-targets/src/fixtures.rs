//! Deterministic real material the targets attack: identities, prekeys, a 1:1
//! session pair that has exchanged messages, sender keys, attachments.
//!
//! Everything is drawn from ChaCha20 seeded with fixed values, so the same
//! bytes come out on every run and on every machine: the committed seed
//! corpora (real messages, real states) keep matching the fixtures. Each
//! fixture is built once per process and cached; targets restore fresh
//! mutable copies from the cached bytes for every input.
//!
//! Setup draws no input, so a failure here is a bug in the code under test
//! with fixed, known arguments: it panics with `expect`, which the fuzzer
//! reports like any other crash.
#![allow(clippy::expect_used)]

use std::sync::OnceLock;

use microbot_crypto::attachment::{AttachmentDigest, AttachmentEncryptor, AttachmentKey};
use microbot_crypto::labels::ATTACHMENT_SEGMENT_LEN;
use microbot_crypto::prekeys::{KemPreKey, LocalPreKeys, PreKeyBundle, SignedPreKey};
use microbot_crypto::ratchet::RatchetSession;
use microbot_crypto::sender_key::{GroupId, InboundSenderKey, OutboundSenderKey, SenderKeyRecord};
use microbot_crypto::{IdentityKeyPair, Session};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use zeroize::Zeroizing;

/// The RNG of fixture number `stream`: ChaCha20 from a fixed seed.
pub fn rng(stream: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x6d69_6372_6f62_6f74 ^ stream)
}

/// A real message and the plaintext it carries.
#[derive(Clone)]
pub struct Sample {
    /// Short name, used for seed file names.
    pub name: &'static str,
    /// The wire bytes.
    pub bytes: Vec<u8>,
    /// The plaintext they decrypt to.
    pub plaintext: Vec<u8>,
}

/// Id of Bob's signed prekey.
pub const SIGNED_PREKEY_ID: u32 = 1;
/// Id of Bob's ML-KEM prekey.
pub const KEM_PREKEY_ID: u32 = 2;
/// Id of Bob's signed prekey with `kem_flag` 0x00 (SPEC.md §4.1), used by the
/// classical handshakes: the other one advertises KEM prekeys, so a bundle
/// without a KEM prekey naming it is refused as a downgrade.
pub const CLASSICAL_SIGNED_PREKEY_ID: u32 = 3;
/// Number of one-time prekeys Bob starts with (ids 0 to 7).
pub const ONE_TIME_PREKEYS: u32 = 8;

/// Bob: identity, prekeys, and Alice's identity.
pub struct Devices {
    /// Bob's identity key pair.
    pub bob: IdentityKeyPair,
    /// Bob's private prekeys, before any handshake.
    pub bob_prekeys: LocalPreKeys,
    /// Alice's identity key pair.
    pub alice: IdentityKeyPair,
}

/// The two devices, built once.
pub fn devices() -> &'static Devices {
    static DEVICES: OnceLock<Devices> = OnceLock::new();
    DEVICES.get_or_init(|| {
        let mut rng = rng(1);
        let bob = IdentityKeyPair::generate(&mut rng);
        let alice = IdentityKeyPair::generate(&mut rng);
        let mut bob_prekeys = LocalPreKeys::new();
        bob_prekeys.add_signed(SignedPreKey::generate(&mut rng, &bob, SIGNED_PREKEY_ID));
        bob_prekeys.add_kem(KemPreKey::generate(&mut rng, &bob, KEM_PREKEY_ID));
        bob_prekeys.generate_one_time(&mut rng, ONE_TIME_PREKEYS);
        // Drawn last so the keys above (and the committed seeds) keep their bytes.
        bob_prekeys.add_signed(SignedPreKey::generate_classical(
            &mut rng,
            &bob,
            CLASSICAL_SIGNED_PREKEY_ID,
        ));
        Devices {
            bob,
            bob_prekeys,
            alice,
        }
    })
}

/// Bob's bundle, with or without its KEM prekey and one-time prekey `one_time`.
pub fn bob_bundle(with_kem: bool, one_time: Option<u32>) -> PreKeyBundle {
    let devices = devices();
    let prekeys = &devices.bob_prekeys;
    PreKeyBundle {
        identity: *devices.bob.public(),
        signed_prekey: prekeys
            .signed(if with_kem {
                SIGNED_PREKEY_ID
            } else {
                CLASSICAL_SIGNED_PREKEY_ID
            })
            .expect("fixture signed prekey")
            .public()
            .clone(),
        one_time_prekey: one_time
            .and_then(|id| prekeys.one_time(id))
            .map(|key| *key.public()),
        kem_prekey: with_kem.then(|| {
            prekeys
                .kem(KEM_PREKEY_ID)
                .expect("fixture KEM prekey")
                .public()
                .clone()
        }),
    }
}

/// Initial (prekey) messages from Alice to Bob, one per handshake variant,
/// none accepted yet: hybrid or classical, with or without a one-time prekey.
pub fn initial_messages() -> &'static [Sample] {
    static MESSAGES: OnceLock<Vec<Sample>> = OnceLock::new();
    MESSAGES.get_or_init(|| {
        let variants: [(&str, bool, Option<u32>); 4] = [
            ("hybrid-one-time", true, Some(0)),
            ("hybrid", true, None),
            ("classical-one-time", false, Some(1)),
            ("classical", false, None),
        ];
        let mut rng = rng(2);
        variants
            .into_iter()
            .map(|(name, with_kem, one_time)| {
                let bundle = bob_bundle(with_kem, one_time);
                let mut session = Session::initiate(&mut rng, &devices().alice, &bundle)
                    .expect("fixture handshake");
                let plaintext = format!("first message, {name}").into_bytes();
                let bytes = session
                    .encrypt(&mut rng, &plaintext)
                    .expect("fixture encrypt");
                Sample {
                    name,
                    bytes,
                    plaintext,
                }
            })
            .collect()
    })
}

/// Bob's side of an established session, and real messages for it.
pub struct Conversation {
    /// Bob's `Session::to_bytes`, with skipped keys in two chains.
    pub bob_session: Zeroizing<Vec<u8>>,
    /// Real messages from Alice that Bob has not decrypted yet. Each decrypts
    /// exactly once, in any order.
    pub pending: Vec<Sample>,
    /// Messages Bob already decrypted (replays).
    pub delivered: Vec<Sample>,
}

/// Alice and Bob exchanged a few messages, out of order:
/// - a1, a2, a3 are prekey messages; Bob accepts a1, decrypts a3 (a2 skipped);
/// - Bob replies b1; Alice sends a4, a5, a6 on a new chain; Bob decrypts a5
///   (a4 skipped);
/// - Bob replies b2; Alice sends a7 on a third chain (a DH step for Bob).
///
/// Pending for Bob: a2 (a skipped prekey message), a4 (skipped), a6 (next on
/// the current chain), a7 (new chain, whose header says a6 was sent).
pub fn conversation() -> &'static Conversation {
    static CONVERSATION: OnceLock<Conversation> = OnceLock::new();
    CONVERSATION.get_or_init(|| {
        let mut rng = rng(3);
        let devices = devices();
        let mut bob_prekeys = devices.bob_prekeys.clone();
        let bundle = bob_bundle(true, Some(2));
        let mut alice =
            Session::initiate(&mut rng, &devices.alice, &bundle).expect("fixture handshake");
        let send = |session: &mut Session, name: &'static str, rng: &mut ChaCha20Rng| {
            let plaintext = format!("message {name}").into_bytes();
            let bytes = session.encrypt(rng, &plaintext).expect("fixture encrypt");
            Sample {
                name,
                bytes,
                plaintext,
            }
        };
        let a1 = send(&mut alice, "a1", &mut rng);
        let a2 = send(&mut alice, "a2", &mut rng);
        let a3 = send(&mut alice, "a3", &mut rng);
        let (mut bob, _) = Session::accept(&mut rng, &devices.bob, &mut bob_prekeys, &a1.bytes)
            .expect("fixture accept");
        bob.decrypt(&mut rng, &a3.bytes).expect("fixture a3");
        let b1 = send(&mut bob, "b1", &mut rng);
        alice.decrypt(&mut rng, &b1.bytes).expect("fixture b1");
        let a4 = send(&mut alice, "a4", &mut rng);
        let a5 = send(&mut alice, "a5", &mut rng);
        let a6 = send(&mut alice, "a6", &mut rng);
        bob.decrypt(&mut rng, &a5.bytes).expect("fixture a5");
        let b2 = send(&mut bob, "b2", &mut rng);
        alice.decrypt(&mut rng, &b2.bytes).expect("fixture b2");
        let a7 = send(&mut alice, "a7", &mut rng);
        Conversation {
            bob_session: bob.to_bytes(),
            pending: vec![a2, a4, a6, a7],
            delivered: vec![a1, a3, a5],
        }
    })
}

/// A fresh copy of Bob's session from [`conversation`].
pub fn bob_session() -> Session {
    Session::from_bytes(conversation().bob_session.as_slice()).expect("fixture session state")
}

/// A bare ratchet pair (no handshake): Alice the initiator, Bob the responder.
pub fn ratchet_pair() -> (RatchetSession, RatchetSession) {
    let mut rng = rng(4);
    let shared_secret = [0x5a; 32];
    let associated_data = b"microbot fuzz ratchet pair";
    let bob_key = x25519_dalek::StaticSecret::random_from_rng(&mut rng);
    let alice = RatchetSession::new_initiator(
        &mut rng,
        &shared_secret,
        associated_data,
        &x25519_dalek::PublicKey::from(&bob_key),
    )
    .expect("fixture ratchet initiator");
    let bob = RatchetSession::new_responder(&shared_secret, associated_data, bob_key);
    (alice, bob)
}

/// The group of the sender-key fixtures.
pub const GROUP_ID: [u8; 16] = *b"microbot-fuzz-gp";

/// A receiver's copy of Alice's sender keys, and real messages for it.
pub struct SenderKeys {
    /// `InboundSenderKey::to_bytes` of Alice's first generation after m0,
    /// m1, m3 and m5 (m2 and m4 skipped).
    pub inbound: Zeroizing<Vec<u8>>,
    /// `SenderKeyRecord::to_bytes` holding that generation and a second one
    /// (after a rotation) that has received nothing yet.
    pub record: Zeroizing<Vec<u8>>,
    /// Undelivered messages of the first generation (m2, m4, m6, m7).
    pub pending: Vec<Sample>,
    /// Undelivered messages of the second generation (n0, n1): the record decrypts them.
    pub second_generation: Vec<Sample>,
    /// Messages already delivered (replays).
    pub delivered: Vec<Sample>,
    /// `SenderKeyDistribution::to_bytes` of both generations.
    pub distributions: Vec<Vec<u8>>,
    /// `OutboundSenderKey::to_bytes` of Alice's first generation after m7.
    pub outbound: Zeroizing<Vec<u8>>,
}

/// Builds the sender-key fixture once.
pub fn sender_keys() -> &'static SenderKeys {
    static SENDER_KEYS: OnceLock<SenderKeys> = OnceLock::new();
    SENDER_KEYS.get_or_init(|| {
        let mut rng = rng(5);
        let group = GroupId::new(&GROUP_ID).expect("fixture group id");
        let mut alice = OutboundSenderKey::create(&mut rng, group.clone());
        let first = alice.distribution();
        let mut inbound = InboundSenderKey::new(group.clone(), &first);
        let names = ["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"];
        let mut sent: Vec<Sample> = names
            .iter()
            .map(|&name| {
                let plaintext = format!("group message {name}").into_bytes();
                let bytes = alice
                    .encrypt(&plaintext)
                    .expect("fixture sender-key encrypt");
                Sample {
                    name,
                    bytes,
                    plaintext,
                }
            })
            .collect();
        let mut delivered = Vec::new();
        for index in [5, 3, 1, 0] {
            let sample = sent.remove(index);
            inbound
                .decrypt(&sample.bytes)
                .expect("fixture sender-key decrypt");
            delivered.push(sample);
        }
        let mut alice_second = alice.rotate(&mut rng);
        let second = alice_second.distribution();
        let second_generation = ["n0", "n1"]
            .iter()
            .map(|&name| {
                let plaintext = format!("group message {name}").into_bytes();
                let bytes = alice_second
                    .encrypt(&plaintext)
                    .expect("fixture sender-key encrypt");
                Sample {
                    name,
                    bytes,
                    plaintext,
                }
            })
            .collect();
        let mut record = SenderKeyRecord::new();
        record.add(inbound.clone());
        record.add(InboundSenderKey::new(group, &second));
        SenderKeys {
            inbound: inbound.to_bytes(),
            record: record.to_bytes(),
            pending: sent,
            second_generation,
            delivered,
            distributions: vec![first.to_bytes().to_vec(), second.to_bytes().to_vec()],
            outbound: alice.to_bytes(),
        }
    })
}

/// A fresh copy of the receiver's first-generation key.
pub fn inbound_sender_key() -> InboundSenderKey {
    InboundSenderKey::from_bytes(sender_keys().inbound.as_slice()).expect("fixture inbound state")
}

/// A fresh copy of the receiver's record of both generations.
pub fn sender_key_record() -> SenderKeyRecord {
    SenderKeyRecord::from_bytes(sender_keys().record.as_slice()).expect("fixture record state")
}

/// One encrypted attachment.
pub struct Attachment {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// The ciphertext, all segments back to back.
    pub ciphertext: Vec<u8>,
    /// Its SHA-256.
    pub digest: AttachmentDigest,
}

/// The key every fixture attachment is encrypted under.
pub fn attachment_key() -> AttachmentKey {
    AttachmentKey::generate(&mut rng(6))
}

/// Plaintext lengths of the fixture attachments: empty, short, and around
/// every segment boundary.
pub const ATTACHMENT_LENGTHS: [usize; 6] = [
    0,
    1,
    100,
    ATTACHMENT_SEGMENT_LEN - 1,
    ATTACHMENT_SEGMENT_LEN,
    2 * ATTACHMENT_SEGMENT_LEN + 7,
];

/// Encrypts `plaintext` as one attachment under `key`.
pub fn encrypt_attachment(key: &AttachmentKey, plaintext: &[u8]) -> (Vec<u8>, AttachmentDigest) {
    let mut encryptor = AttachmentEncryptor::with_key(key);
    let mut ciphertext = Vec::new();
    encryptor
        .update(plaintext, &mut ciphertext)
        .expect("fixture attachment update");
    let summary = encryptor
        .finish(&mut ciphertext)
        .expect("fixture attachment finish");
    (ciphertext, summary.digest)
}

/// The fixture attachments, one per entry of [`ATTACHMENT_LENGTHS`].
pub fn attachments() -> &'static [Attachment] {
    static ATTACHMENTS: OnceLock<Vec<Attachment>> = OnceLock::new();
    ATTACHMENTS.get_or_init(|| {
        let key = attachment_key();
        ATTACHMENT_LENGTHS
            .iter()
            .map(|&len| {
                let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let (ciphertext, digest) = encrypt_attachment(&key, &plaintext);
                Attachment {
                    plaintext,
                    ciphertext,
                    digest,
                }
            })
            .collect()
    })
}

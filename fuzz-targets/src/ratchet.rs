//! 1:1 session targets (SPEC.md §4.3, §5): `session_decrypt` (arbitrary bytes
//! against Bob's real session), `ratchet_mutated` (real messages, mutated
//! and delivered in any order), `ratchet_conversation` (a two-party
//! conversation driven by the input).
//!
//! The invariants are those of the ratchet's contract: a failed decrypt
//! leaves the state byte-for-byte unchanged; every genuine message decrypts
//! exactly once, in any order, to what was sent; nothing else decrypts.

use arbitrary::{Arbitrary, Unstructured};
use microbot_crypto::Session;
use microbot_crypto::ratchet::RatchetSession;
use microbot_crypto::session::MESSAGE_TYPE_RATCHET;

use crate::fixtures::{self, Sample};
use crate::mutate::{Mutation, apply_all, sequence};

/// Decrypts with `session`; on error, asserts the session did not change.
fn decrypt_checked(session: &mut Session, message: &[u8]) -> Option<Vec<u8>> {
    let before = session.to_bytes();
    let mut rng = fixtures::rng(100);
    match session.decrypt(&mut rng, message) {
        Ok(plaintext) => Some(plaintext),
        Err(_) => {
            assert!(
                *session.to_bytes() == *before,
                "a failed decrypt changed the session"
            );
            None
        }
    }
}

/// Target `session_decrypt`: arbitrary bytes to Bob's session of
/// [`fixtures::conversation`], which holds skipped keys in two chains.
///
/// Only a pending real message may decrypt; a ratchet message (type 0x01)
/// only byte for byte. A message that decrypted is refused the second time.
pub fn session_decrypt(data: &[u8]) {
    let _ = Session::peek(data);
    let pending = &fixtures::conversation().pending;
    let mut session = fixtures::bob_session();
    let Some(plaintext) = decrypt_checked(&mut session, data) else {
        return;
    };
    let genuine = pending.iter().any(|sample| {
        sample.plaintext == plaintext
            && (data.first() != Some(&MESSAGE_TYPE_RATCHET) || sample.bytes == data)
    });
    assert!(genuine, "decrypted bytes that were never sent");
    assert!(
        decrypt_checked(&mut session, data).is_none(),
        "a replayed message decrypted twice"
    );
}

/// One delivery of a mutated real message.
#[derive(Debug, Arbitrary)]
struct Delivery {
    /// Which real message (modulo the pool size).
    index: u8,
    /// What the attacker does to it (often nothing).
    mutations: Vec<Mutation>,
}

/// Most deliveries one input makes.
const MAX_DELIVERIES: usize = 16;

/// Target `ratchet_mutated`: a sequence of deliveries of the conversation's
/// real messages (pending and already delivered), each possibly mutated, to
/// Bob's session. Genuine bytes decrypt iff not yet decrypted; mutated bytes
/// never decrypt, except a prekey message re-encoded equivalently (its
/// protobuf wrapper is not authenticated), which still carries the same
/// authenticated ratchet message.
pub fn ratchet_mutated(data: &[u8]) {
    let conversation = fixtures::conversation();
    let pool: Vec<&Sample> = conversation
        .pending
        .iter()
        .chain(&conversation.delivered)
        .collect();
    let mut decrypted: Vec<bool> = pool
        .iter()
        .map(|s| conversation.delivered.iter().any(|d| d.bytes == s.bytes))
        .collect();
    let mut session = fixtures::bob_session();
    for delivery in sequence::<Delivery>(Unstructured::new(data), MAX_DELIVERIES) {
        let index = usize::from(delivery.index) % pool.len();
        let Some(sample) = pool.get(index) else {
            return;
        };
        let bytes = apply_all(&sample.bytes, &delivery.mutations);
        let exact = pool.iter().position(|s| s.bytes == bytes);
        let target = exact.unwrap_or(index);
        let already = decrypted.get(target).copied().unwrap_or(true);
        match decrypt_checked(&mut session, &bytes) {
            Some(plaintext) => {
                let expected = pool.get(target).map(|s| s.plaintext.as_slice());
                assert_eq!(Some(plaintext.as_slice()), expected, "wrong plaintext");
                assert!(!already, "message {} decrypted twice", sample.name);
                assert!(
                    exact.is_some() || bytes.first() != Some(&MESSAGE_TYPE_RATCHET),
                    "a mutated ratchet message decrypted"
                );
                if let Some(flag) = decrypted.get_mut(target) {
                    *flag = true;
                }
            }
            None => assert!(
                exact.is_none() || already,
                "genuine message {} refused",
                sample.name
            ),
        }
    }
}

/// One step of [`ratchet_conversation`].
#[derive(Debug, Arbitrary)]
enum Op {
    /// Alice (or Bob) encrypts a message of `len` bytes.
    Send { from_bob: bool, len: u8 },
    /// A message to Bob (or Alice) is delivered, possibly again.
    Deliver { to_bob: bool, index: u8 },
    /// A message is delivered after one mutation.
    DeliverMutated {
        to_bob: bool,
        index: u8,
        mutation: Mutation,
    },
    /// A party saves its session and restores it.
    Persist { bob: bool },
}

/// Most steps one input makes (far below every skip limit).
const MAX_OPS: usize = 128;

/// A sent message and whether its receiver has decrypted it.
struct InFlight {
    bytes: Vec<u8>,
    plaintext: Vec<u8>,
    decrypted: bool,
}

/// One party of the conversation.
struct Party {
    session: RatchetSession,
    /// Messages sent *to* this party.
    inbox: Vec<InFlight>,
    /// Whether this party has decrypted anything (the responder needs to
    /// before it can send).
    received_any: bool,
    rng: rand_chacha::ChaCha20Rng,
}

impl Party {
    fn decrypt(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let before = self.session.to_bytes();
        match self.session.decrypt(&mut self.rng, bytes) {
            Ok(plaintext) => Some(plaintext),
            Err(_) => {
                assert!(
                    *self.session.to_bytes() == *before,
                    "a failed decrypt changed the ratchet"
                );
                None
            }
        }
    }

    /// Delivers message `index` of the inbox, after `mutation` if any.
    fn deliver(&mut self, index: u8, mutation: Option<&Mutation>) {
        let len = self.inbox.len();
        let Some(message) = (len > 0)
            .then(|| usize::from(index) % len)
            .and_then(|i| self.inbox.get(i))
        else {
            return;
        };
        let mut bytes = message.bytes.clone();
        if let Some(mutation) = mutation {
            mutation.apply(&mut bytes);
        }
        let genuine = bytes == message.bytes;
        let expect_ok = genuine && !message.decrypted;
        let expected_plaintext = message.plaintext.clone();
        let result = self.decrypt(&bytes);
        assert_eq!(result.is_some(), expect_ok, "genuine={genuine}");
        if let Some(plaintext) = result {
            assert_eq!(plaintext, expected_plaintext);
            self.received_any = true;
            if let Some(message) = self.inbox.get_mut(usize::from(index) % len) {
                message.decrypted = true;
            }
        }
    }

    fn persist(&mut self) {
        let bytes = self.session.to_bytes();
        let restored = RatchetSession::from_bytes(&bytes);
        assert!(restored.is_ok(), "own state refused: {restored:?}");
        if let Ok(restored) = restored {
            assert!(*restored.to_bytes() == *bytes, "state not stable");
            self.session = restored;
        }
    }
}

/// Target `ratchet_conversation`: Alice and Bob (bare ratchets) send and
/// receive as the input says, with replays, reordering, mutations and
/// save/restore. Bob can send once he has received; every genuine message
/// decrypts exactly once; nothing mutated decrypts.
pub fn ratchet_conversation(data: &[u8]) {
    let (alice, bob) = fixtures::ratchet_pair();
    let mut parties = [
        Party {
            session: alice,
            inbox: Vec::new(),
            received_any: false,
            rng: fixtures::rng(101),
        },
        Party {
            session: bob,
            inbox: Vec::new(),
            received_any: false,
            rng: fixtures::rng(102),
        },
    ];
    let mut counter: u32 = 0;
    for op in sequence::<Op>(Unstructured::new(data), MAX_OPS) {
        let [alice, bob] = &mut parties;
        match op {
            Op::Send { from_bob, len } => {
                let (sender, receiver) = if from_bob { (bob, alice) } else { (alice, bob) };
                counter += 1;
                let mut plaintext = counter.to_be_bytes().to_vec();
                plaintext.resize(usize::from(len).max(4), 0xA5);
                let mut rng = fixtures::rng(103);
                let result = sender.session.encrypt(&mut rng, &plaintext);
                let can_send = !from_bob || sender.received_any;
                assert_eq!(result.is_ok(), can_send, "encrypt: {result:?}");
                if let Ok(bytes) = result {
                    receiver.inbox.push(InFlight {
                        bytes,
                        plaintext,
                        decrypted: false,
                    });
                }
            }
            Op::Deliver { to_bob, index } => {
                let receiver = if to_bob { bob } else { alice };
                receiver.deliver(index, None);
            }
            Op::DeliverMutated {
                to_bob,
                index,
                mutation,
            } => {
                let receiver = if to_bob { bob } else { alice };
                receiver.deliver(index, Some(&mutation));
            }
            Op::Persist { bob: is_bob } => {
                if is_bob { bob } else { alice }.persist();
            }
        }
    }
}

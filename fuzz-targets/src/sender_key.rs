//! Sender-key targets (SPEC.md §6): `sender_key_decrypt` (arbitrary bytes to a
//! real inbound key and record) and `sender_key_mutated` (real messages of
//! two generations, mutated and delivered in any order).
//!
//! A sender-key message is signed over every byte before its signature and
//! verified strictly, so only the exact bytes the sender produced decrypt,
//! each once; a failed decrypt leaves the receiver's state unchanged.

use arbitrary::{Arbitrary, Unstructured};
use microbot_crypto::sender_key::{InboundSenderKey, SenderKeyMessage, SenderKeyRecord};

use crate::fixtures::{self, Sample};
use crate::mutate::{Mutation, apply_all, sequence};

/// `InboundSenderKey::decrypt`; asserts the key is unchanged on error.
fn inbound_checked(key: &mut InboundSenderKey, message: &[u8]) -> Option<Vec<u8>> {
    let before = key.to_bytes();
    let result = key.decrypt(message);
    if result.is_err() {
        assert!(*key.to_bytes() == *before, "failed decrypt changed the key");
    }
    result.ok()
}

/// `SenderKeyRecord::decrypt`; asserts the record is unchanged on error.
fn record_checked(record: &mut SenderKeyRecord, message: &[u8]) -> Option<Vec<u8>> {
    let before = record.to_bytes();
    let result = record.decrypt(message);
    if result.is_err() {
        assert!(
            *record.to_bytes() == *before,
            "failed decrypt changed the record"
        );
    }
    result.ok()
}

/// Every real message: undelivered first generation, second generation,
/// already delivered.
fn pool() -> Vec<&'static Sample> {
    let keys = fixtures::sender_keys();
    keys.pending
        .iter()
        .chain(&keys.second_generation)
        .chain(&keys.delivered)
        .collect()
}

/// Target `sender_key_decrypt`: arbitrary bytes to the receiver's first
/// generation and to its record of both generations. Only an undelivered
/// real message, byte for byte, decrypts, and only once.
pub fn sender_key_decrypt(data: &[u8]) {
    if let Ok(message) = SenderKeyMessage::parse(data) {
        let _ = (message.key_id(), message.iteration());
    }
    let keys = fixtures::sender_keys();
    let undelivered = |plaintext: &[u8]| {
        keys.pending
            .iter()
            .chain(&keys.second_generation)
            .any(|s| s.bytes == data && s.plaintext == plaintext)
    };
    let mut inbound = fixtures::inbound_sender_key();
    if let Some(plaintext) = inbound_checked(&mut inbound, data) {
        assert!(undelivered(&plaintext), "decrypted bytes never sent");
        assert!(
            inbound_checked(&mut inbound, data).is_none(),
            "replay accepted"
        );
    }
    let mut record = fixtures::sender_key_record();
    if let Some(plaintext) = record_checked(&mut record, data) {
        assert!(undelivered(&plaintext), "decrypted bytes never sent");
        assert!(
            record_checked(&mut record, data).is_none(),
            "replay accepted"
        );
    }
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
const MAX_DELIVERIES: usize = 24;

/// Target `sender_key_mutated`: deliveries of real messages, mutated or not,
/// to the record (both generations) and, for first-generation messages, to
/// the lone inbound key too; both must agree. Genuine bytes decrypt iff not
/// yet decrypted; anything else is refused.
pub fn sender_key_mutated(data: &[u8]) {
    let keys = fixtures::sender_keys();
    let pool = pool();
    let mut decrypted: Vec<bool> = pool
        .iter()
        .map(|s| keys.delivered.iter().any(|d| d.bytes == s.bytes))
        .collect();
    let first_generation: Vec<bool> = pool
        .iter()
        .map(|s| !keys.second_generation.iter().any(|g| g.bytes == s.bytes))
        .collect();
    let mut inbound = fixtures::inbound_sender_key();
    let mut record = fixtures::sender_key_record();
    for delivery in sequence::<Delivery>(Unstructured::new(data), MAX_DELIVERIES) {
        let index = usize::from(delivery.index) % pool.len();
        let Some(sample) = pool.get(index) else {
            return;
        };
        let bytes = apply_all(&sample.bytes, &delivery.mutations);
        let exact = pool.iter().position(|s| s.bytes == bytes);
        let expect = exact.filter(|&i| !decrypted.get(i).copied().unwrap_or(true));
        let from_record = record_checked(&mut record, &bytes);
        match (expect, &from_record) {
            (Some(i), Some(plaintext)) => {
                assert_eq!(Some(plaintext), pool.get(i).map(|s| &s.plaintext));
                if let Some(flag) = decrypted.get_mut(i) {
                    *flag = true;
                }
            }
            (None, None) => {}
            (Some(_), None) => panic!("genuine message {} refused", sample.name),
            (None, Some(_)) => panic!("mutated or replayed {} decrypted", sample.name),
        }
        // The lone first-generation key sees the same first-generation stream.
        let to_inbound = exact.is_none_or(|i| first_generation.get(i).copied().unwrap_or(false));
        if to_inbound {
            let from_inbound = inbound_checked(&mut inbound, &bytes);
            assert_eq!(from_inbound, from_record, "record and inbound key disagree");
        }
    }
}

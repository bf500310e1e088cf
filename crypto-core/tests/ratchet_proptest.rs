//! Random conversations between two ratchet sessions (SPEC.md §5): sends in
//! both directions, delivery in any order, dropped messages, replays, and
//! save/restore at random points. Every delivered message must decrypt
//! exactly once, to its own plaintext; every replay must be refused and
//! leave the receiver unchanged.

use microbot_crypto::ratchet::{EncryptError, RatchetSession};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use x25519_dalek::{PublicKey, StaticSecret};

#[derive(Debug, Clone)]
enum Event {
    /// Party 0 (Alice) or 1 (Bob) encrypts a new message.
    Send(usize),
    /// The in-flight message chosen by the index is delivered to its receiver.
    Deliver(prop::sample::Index),
    /// The in-flight message chosen by the index is lost for good.
    Drop(prop::sample::Index),
    /// A message already delivered is delivered again.
    Replay(prop::sample::Index),
    /// The party's session goes through `to_bytes` / `from_bytes`.
    SaveRestore(usize),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0..2usize).prop_map(Event::Send),
        4 => any::<prop::sample::Index>().prop_map(Event::Deliver),
        1 => any::<prop::sample::Index>().prop_map(Event::Drop),
        1 => any::<prop::sample::Index>().prop_map(Event::Replay),
        1 => (0..2usize).prop_map(Event::SaveRestore),
    ]
}

struct InFlight {
    to: usize,
    wire: Vec<u8>,
    plaintext: Vec<u8>,
}

fn run(seed: u64, events: &[Event]) -> Result<(), TestCaseError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut shared_secret = [0u8; 32];
    rng.fill_bytes(&mut shared_secret);
    let ad = [0x42u8; 64];
    let bob_prekey = StaticSecret::random_from_rng(&mut rng);
    let alice =
        RatchetSession::new_initiator(&mut rng, &shared_secret, &ad, &PublicKey::from(&bob_prekey))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let bob = RatchetSession::new_responder(&shared_secret, &ad, bob_prekey);
    let mut parties = [alice, bob];
    let mut bob_has_received = false;
    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut delivered: Vec<InFlight> = Vec::new();
    let mut sent = 0u32;

    for event in events {
        match event {
            Event::Send(from) => {
                let plaintext = format!("message {sent} from {from}").into_bytes();
                sent += 1;
                let result = parties[*from].encrypt(&mut rng, &plaintext);
                if *from == 1 && !bob_has_received {
                    prop_assert_eq!(result, Err(EncryptError::NoSendingChain));
                    continue;
                }
                let wire = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                in_flight.push(InFlight {
                    to: 1 - from,
                    wire,
                    plaintext,
                });
            }
            Event::Deliver(index) if !in_flight.is_empty() => {
                let message = in_flight.remove(index.index(in_flight.len()));
                let opened = parties[message.to].decrypt(&mut rng, &message.wire);
                prop_assert_eq!(opened.as_deref(), Ok(message.plaintext.as_slice()));
                bob_has_received |= message.to == 1;
                delivered.push(message);
            }
            Event::Drop(index) if !in_flight.is_empty() => {
                in_flight.remove(index.index(in_flight.len()));
            }
            Event::Replay(index) if !delivered.is_empty() => {
                let message = &delivered[index.index(delivered.len())];
                let receiver = &mut parties[message.to];
                let before = receiver.to_bytes();
                prop_assert!(receiver.decrypt(&mut rng, &message.wire).is_err());
                prop_assert_eq!(receiver.to_bytes(), before);
            }
            Event::SaveRestore(party) => {
                let bytes = parties[*party].to_bytes();
                let restored = RatchetSession::from_bytes(&bytes)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(restored.to_bytes(), bytes);
                parties[*party] = restored;
            }
            Event::Deliver(_) | Event::Drop(_) | Event::Replay(_) => {}
        }
    }
    // Whatever is still in flight arrives at the end, in reverse order.
    while let Some(message) = in_flight.pop() {
        let opened = parties[message.to].decrypt(&mut rng, &message.wire);
        prop_assert_eq!(opened.as_deref(), Ok(message.plaintext.as_slice()));
        delivered.push(message);
    }
    // And every message once more: all refused.
    for message in &delivered {
        prop_assert!(
            parties[message.to]
                .decrypt(&mut rng, &message.wire)
                .is_err()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_conversations_deliver_each_message_exactly_once(
        seed in any::<u64>(),
        events in prop::collection::vec(event(), 1..120),
    ) {
        run(seed, &events)?;
    }
}

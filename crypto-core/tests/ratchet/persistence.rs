//! Save and restore (SPEC.md §5.7): round trips mid-conversation, the
//! persisted bytes against the spec's .proto schema, refusal of bad fields.

use microbot_crypto::labels::{MAX_SKIPPED_KEYS_TOTAL, STATE_VERSION};
use microbot_crypto::ratchet::{RatchetSession, StateError};
use prost::Message;
use x25519_dalek::{PublicKey, StaticSecret};

use super::{Pair, busy_bob, pair, refused_any, rng};

#[test]
fn save_and_restore_mid_conversation() {
    let mut rng = rng(13);
    let Pair {
        mut alice, mut bob, ..
    } = pair(&mut rng);
    let reload = |s: &RatchetSession| {
        let bytes = s.to_bytes();
        let restored = RatchetSession::from_bytes(&bytes).unwrap();
        assert_eq!(restored.to_bytes(), bytes, "re-encoding is byte-identical");
        restored
    };
    // The responder before its first message.
    bob = reload(&bob);
    let a: Vec<Vec<u8>> = (0..5u8)
        .map(|i| alice.encrypt(&mut rng, &[i]).unwrap())
        .collect();
    alice = reload(&alice);
    bob.decrypt(&mut rng, &a[3]).unwrap();
    bob = reload(&bob);
    assert_eq!(bob.skipped_key_count(), 3);
    let b0 = bob.encrypt(&mut rng, b"b0").unwrap();
    bob = reload(&bob);
    alice.decrypt(&mut rng, &b0).unwrap();
    alice = reload(&alice);
    let a5 = alice.encrypt(&mut rng, b"a5").unwrap();
    assert_eq!(bob.decrypt(&mut rng, &a5).unwrap(), b"a5");
    bob = reload(&bob);
    for i in [4u8, 0, 2, 1] {
        assert_eq!(bob.decrypt(&mut rng, &a[usize::from(i)]).unwrap(), [i]);
        bob = reload(&bob);
    }
    refused_any(&mut bob, &mut rng, &a[3]);
    assert_eq!(bob.skipped_key_count(), 0);
    assert_eq!(bob.associated_data(), alice.associated_data());
    // The restored sessions keep talking.
    let b1 = bob.encrypt(&mut rng, b"b1").unwrap();
    assert_eq!(alice.decrypt(&mut rng, &b1).unwrap(), b"b1");
}

/// The persisted schema exactly as SPEC.md §5.7 writes it in .proto text.
mod schema {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RatchetState {
        #[prost(uint32, tag = "1")]
        pub version: u32,
        #[prost(bytes = "vec", tag = "2")]
        pub associated_data: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub root_key: Vec<u8>,
        #[prost(bytes = "vec", tag = "4")]
        pub own_ratchet_private_key: Vec<u8>,
        #[prost(bytes = "vec", tag = "5")]
        pub remote_ratchet_key: Vec<u8>,
        #[prost(message, optional, tag = "6")]
        pub sending_chain: Option<ChainState>,
        #[prost(message, optional, tag = "7")]
        pub receiving_chain: Option<ChainState>,
        #[prost(uint32, tag = "8")]
        pub previous_sending_chain_length: u32,
        #[prost(message, repeated, tag = "9")]
        pub skipped_chains: Vec<SkippedChainState>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ChainState {
        #[prost(bytes = "vec", tag = "1")]
        pub chain_key: Vec<u8>,
        #[prost(uint32, tag = "2")]
        pub index: u32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SkippedChainState {
        #[prost(bytes = "vec", tag = "1")]
        pub ratchet_key: Vec<u8>,
        #[prost(message, repeated, tag = "2")]
        pub keys: Vec<SkippedMessageKey>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SkippedMessageKey {
        #[prost(uint32, tag = "1")]
        pub message_number: u32,
        #[prost(bytes = "vec", tag = "2")]
        pub message_key: Vec<u8>,
    }
}

#[test]
fn persisted_state_follows_the_spec_schema_and_refuses_bad_fields() {
    let mut rng = rng(14);
    let (_, bob, _) = busy_bob(&mut rng);
    let bytes = bob.to_bytes();
    let state = schema::RatchetState::decode(bytes.as_slice()).unwrap();
    assert_eq!(state.version, STATE_VERSION);
    assert_eq!(state.associated_data, bob.associated_data());
    assert_eq!(state.root_key.len(), 32);
    let own = StaticSecret::from(<[u8; 32]>::try_from(&state.own_ratchet_private_key[..]).unwrap());
    assert_eq!(PublicKey::from(&own), *bob.own_ratchet_key());
    assert_eq!(state.receiving_chain.as_ref().unwrap().index, 3);
    assert_eq!(state.sending_chain.as_ref().unwrap().index, 0);
    assert_eq!(state.previous_sending_chain_length, 1);
    let skipped: Vec<Vec<u32>> = state
        .skipped_chains
        .iter()
        .map(|c| c.keys.iter().map(|k| k.message_number).collect())
        .collect();
    assert_eq!(
        skipped,
        vec![vec![1, 2, 3], vec![0, 1]],
        "oldest chain first, ascending"
    );
    assert_eq!(
        RatchetSession::from_bytes(&state.encode_to_vec())
            .unwrap()
            .to_bytes(),
        bytes
    );

    let refuse = |edit: &dyn Fn(&mut schema::RatchetState), expected: StateError| {
        let mut edited = state.clone();
        edit(&mut edited);
        assert_eq!(
            RatchetSession::from_bytes(&edited.encode_to_vec()).unwrap_err(),
            expected
        );
    };
    refuse(
        &|s| s.version = 2,
        StateError::UnsupportedVersion {
            version: 2,
            expected: STATE_VERSION,
        },
    );
    refuse(
        &|s| s.version = 0,
        StateError::UnsupportedVersion {
            version: 0,
            expected: STATE_VERSION,
        },
    );
    refuse(
        &|s| s.root_key.truncate(31),
        StateError::InvalidLength {
            field: "root_key",
            expected: 32,
            actual: 31,
        },
    );
    refuse(
        &|s| s.own_ratchet_private_key.push(0),
        StateError::InvalidLength {
            field: "own_ratchet_private_key",
            expected: 32,
            actual: 33,
        },
    );
    refuse(
        &|s| s.remote_ratchet_key.truncate(5),
        StateError::InvalidLength {
            field: "remote_ratchet_key",
            expected: 32,
            actual: 5,
        },
    );
    refuse(
        &|s| s.sending_chain.as_mut().unwrap().chain_key.clear(),
        StateError::InvalidLength {
            field: "sending_chain.chain_key",
            expected: 32,
            actual: 0,
        },
    );
    refuse(
        &|s| s.skipped_chains[1].keys[0].message_key.truncate(16),
        StateError::InvalidLength {
            field: "skipped_chains.keys.message_key",
            expected: 32,
            actual: 16,
        },
    );
    refuse(
        &|s| s.sending_chain = None,
        StateError::Inconsistent {
            reason: "a sending chain exists exactly when the remote ratchet key is known",
        },
    );
    refuse(
        &|s| {
            s.remote_ratchet_key.clear();
            s.sending_chain = None;
        },
        StateError::Inconsistent {
            reason: "a receiving chain without a remote ratchet key",
        },
    );
    refuse(
        &|s| s.skipped_chains[0].keys.swap(0, 1),
        StateError::Inconsistent {
            reason: "skipped message numbers are not strictly ascending",
        },
    );
    refuse(
        &|s| s.skipped_chains[1].ratchet_key = s.skipped_chains[0].ratchet_key.clone(),
        StateError::Inconsistent {
            reason: "two skipped chains share a ratchet key",
        },
    );
    refuse(
        &|s| s.skipped_chains[0].keys.clear(),
        StateError::Inconsistent {
            reason: "a skipped chain holds no keys",
        },
    );
    refuse(
        &|s| {
            let template = s.skipped_chains[0].keys[0].clone();
            s.skipped_chains[0].keys = (0..=MAX_SKIPPED_KEYS_TOTAL as u32)
                .map(|n| schema::SkippedMessageKey {
                    message_number: n,
                    ..template.clone()
                })
                .collect();
        },
        StateError::TooManySkippedKeys {
            count: MAX_SKIPPED_KEYS_TOTAL + 1 + 2,
            max: MAX_SKIPPED_KEYS_TOTAL,
        },
    );
    assert!(matches!(
        RatchetSession::from_bytes(&bytes[..bytes.len() - 1]),
        Err(StateError::Decode(_))
    ));
    assert!(matches!(
        RatchetSession::from_bytes(&[]),
        Err(StateError::UnsupportedVersion { version: 0, .. })
    ));
}

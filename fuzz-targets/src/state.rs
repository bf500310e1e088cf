//! Target `stored_state` (SPEC.md §5.7, §6.7, §9): every persisted type's
//! `from_bytes` on arbitrary bytes, then the restored value put to work.
//!
//! Input layout: `selector (1) ‖ state bytes`, selector modulo 7:
//! 0 `RatchetSession`, 1 `Session`, 2 `LocalPreKeys` (Bob's identity),
//! 3 `InboundSenderKey`, 4 `OutboundSenderKey`, 5 `SenderKeyRecord`,
//! 6 `SenderKeyDistribution`.
//!
//! Invariants: `from_bytes` never panics; when it accepts, `to_bytes` →
//! `from_bytes` → `to_bytes` gives the same bytes (a distribution, a fixed
//! layout, gives back its input exactly); the restored value can encrypt
//! and decrypt without panicking, and a failed decrypt leaves it unchanged;
//! a restored outbound sender key's messages decrypt under its own
//! distribution.

use microbot_crypto::Session;
use microbot_crypto::prekeys::LocalPreKeys;
use microbot_crypto::ratchet::RatchetSession;
use microbot_crypto::sender_key::{
    GroupId, InboundSenderKey, OutboundSenderKey, SenderKeyDistribution, SenderKeyRecord,
};
use zeroize::Zeroizing;

use crate::fixtures;

/// Asserts that re-encoding a restored value is stable.
fn stable<T, E>(first: &Zeroizing<Vec<u8>>, from_bytes: impl Fn(&[u8]) -> Result<T, E>)
where
    T: ToBytes,
{
    let again = from_bytes(first);
    assert!(again.is_ok(), "own to_bytes output refused");
    if let Ok(again) = again {
        assert!(*again.to_bytes() == **first, "to_bytes is not stable");
    }
}

/// The persisted types, so [`stable`] can take any of them.
trait ToBytes {
    fn to_bytes(&self) -> Zeroizing<Vec<u8>>;
}

macro_rules! to_bytes {
    ($($ty:ty),*) => {
        $(impl ToBytes for $ty {
            fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
                <$ty>::to_bytes(self)
            }
        })*
    };
}

to_bytes!(
    RatchetSession,
    Session,
    LocalPreKeys,
    InboundSenderKey,
    OutboundSenderKey,
    SenderKeyRecord
);

/// The target; see the module docs for the input layout.
pub fn stored_state(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 7 {
        0 => ratchet_session(bytes),
        1 => session(bytes),
        2 => local_prekeys(bytes),
        3 => inbound_sender_key(bytes),
        4 => outbound_sender_key(bytes),
        5 => sender_key_record(bytes),
        _ => distribution(bytes),
    }
}

/// Real messages a restored session or key may be asked to decrypt.
fn session_messages() -> impl Iterator<Item = &'static [u8]> {
    let conversation = fixtures::conversation();
    conversation
        .pending
        .iter()
        .chain(&conversation.delivered)
        .map(|s| s.bytes.as_slice())
}

fn ratchet_session(bytes: &[u8]) {
    let Ok(mut session) = RatchetSession::from_bytes(bytes) else {
        return;
    };
    stable(&session.to_bytes(), RatchetSession::from_bytes);
    let mut rng = fixtures::rng(300);
    for message in session_messages() {
        let inner = message.get(1..).unwrap_or_default();
        let before = session.to_bytes();
        if session.decrypt(&mut rng, inner).is_err() {
            assert!(
                *session.to_bytes() == *before,
                "failed decrypt changed the session"
            );
        }
    }
    let _ = session.encrypt(&mut rng, b"after restore");
    stable(&session.to_bytes(), RatchetSession::from_bytes);
}

fn session(bytes: &[u8]) {
    let Ok(mut session) = Session::from_bytes(bytes) else {
        return;
    };
    stable(&session.to_bytes(), Session::from_bytes);
    let mut rng = fixtures::rng(301);
    for message in session_messages() {
        let before = session.to_bytes();
        if session.decrypt(&mut rng, message).is_err() {
            assert!(
                *session.to_bytes() == *before,
                "failed decrypt changed the session"
            );
        }
    }
    let _ = session.encrypt(&mut rng, b"after restore");
    stable(&session.to_bytes(), Session::from_bytes);
}

fn local_prekeys(bytes: &[u8]) {
    let identity = &fixtures::devices().bob;
    let restore = |b: &[u8]| LocalPreKeys::from_bytes(identity, b);
    let Ok(mut prekeys) = restore(bytes) else {
        return;
    };
    stable(&prekeys.to_bytes(), restore);
    let mut rng = fixtures::rng(302);
    for sample in fixtures::initial_messages() {
        let count = prekeys.one_time_count();
        match Session::accept(&mut rng, identity, &mut prekeys, &sample.bytes) {
            Ok((_, plaintext)) => assert_eq!(plaintext, sample.plaintext),
            Err(_) => assert_eq!(prekeys.one_time_count(), count),
        }
    }
}

/// Real sender-key messages of both generations.
fn sender_key_messages() -> impl Iterator<Item = &'static [u8]> {
    let keys = fixtures::sender_keys();
    keys.pending
        .iter()
        .chain(&keys.second_generation)
        .chain(&keys.delivered)
        .map(|s| s.bytes.as_slice())
}

fn inbound_sender_key(bytes: &[u8]) {
    let Ok(mut key) = InboundSenderKey::from_bytes(bytes) else {
        return;
    };
    stable(&key.to_bytes(), InboundSenderKey::from_bytes);
    for message in sender_key_messages() {
        let before = key.to_bytes();
        if key.decrypt(message).is_err() {
            assert!(*key.to_bytes() == *before, "failed decrypt changed the key");
        }
    }
    stable(&key.to_bytes(), InboundSenderKey::from_bytes);
}

fn outbound_sender_key(bytes: &[u8]) {
    let Ok(mut key) = OutboundSenderKey::from_bytes(bytes) else {
        return;
    };
    stable(&key.to_bytes(), OutboundSenderKey::from_bytes);
    let distribution = key.distribution();
    let mut receiver = InboundSenderKey::new(key.group_id().clone(), &distribution);
    if let Ok(message) = key.encrypt(b"after restore") {
        let decrypted = receiver.decrypt(&message);
        assert!(
            matches!(decrypted, Ok(ref p) if p == b"after restore"),
            "own distribution cannot decrypt: {decrypted:?}"
        );
    }
    stable(&key.to_bytes(), OutboundSenderKey::from_bytes);
}

fn sender_key_record(bytes: &[u8]) {
    let Ok(mut record) = SenderKeyRecord::from_bytes(bytes) else {
        return;
    };
    stable(&record.to_bytes(), SenderKeyRecord::from_bytes);
    for message in sender_key_messages() {
        let before = record.to_bytes();
        if record.decrypt(message).is_err() {
            assert!(
                *record.to_bytes() == *before,
                "failed decrypt changed the record"
            );
        }
    }
}

fn distribution(bytes: &[u8]) {
    let Ok(distribution) = SenderKeyDistribution::from_bytes(bytes) else {
        return;
    };
    assert!(
        *distribution.to_bytes() == *bytes,
        "distribution does not re-encode to its input"
    );
    let Ok(group) = GroupId::new(&fixtures::GROUP_ID) else {
        return;
    };
    let mut key = InboundSenderKey::new(group, &distribution);
    for message in sender_key_messages() {
        let before = key.to_bytes();
        if key.decrypt(message).is_err() {
            assert!(*key.to_bytes() == *before, "failed decrypt changed the key");
        }
    }
}

//! The receiving planner (`process`) over a temp store, with envelopes
//! sealed by real sessions: no server, no connection.

use ed25519_dalek::SigningKey;
use microbot_crypto::prekeys::PreKeyBundle;
use microbot_crypto::{IdentityKeyPair, Session};
use microbot_protocol::transport::Envelope;

use super::*;
use crate::messages::encode_plaintext;
use crate::prekeys::{self, META_PREKEYS};
use crate::store::Store;

fn device(username: &str, device_id: u64) -> ThisDevice {
    ThisDevice {
        identity: IdentityKeyPair::generate(&mut rand::rng()),
        device_key: SigningKey::from_bytes(&[7; 32]),
        username: username.to_owned(),
        device_id,
    }
}

/// A store for `us` holding fresh prekeys, and the bundle a sender
/// would fetch for them.
fn receiver(us: &ThisDevice) -> (tempfile::TempDir, Store, PreKeyBundle) {
    let (dir, mut store) = crate::store::temporary();
    let keys = prekeys::initial(&us.identity);
    store
        .tx(|tx| tx.set_secret(META_PREKEYS, &keys.to_bytes()))
        .expect("prekeys");
    let bundle = PreKeyBundle {
        identity: *us.identity.public(),
        signed_prekey: keys.latest_signed().expect("signed").public().clone(),
        one_time_prekey: None,
        kem_prekey: keys.latest_kem().map(|k| k.public().clone()),
    };
    (dir, store, bundle)
}

/// A first (prekey) message from `from` to the owner of `bundle`.
fn sealed(from: &ThisDevice, bundle: &PreKeyBundle, content: &Content, id: u64) -> Envelope {
    let mut session = Session::initiate(&mut rand::rng(), &from.identity, bundle).expect("session");
    let ciphertext = session
        .encrypt(&mut rand::rng(), &encode_plaintext(content))
        .expect("encrypt");
    Envelope {
        envelope_id: id,
        sender_username: from.username.clone(),
        sender_device_id: from.device_id,
        server_timestamp_ms: 1,
        ciphertext: ciphertext.into(),
        group_id: Default::default(),
    }
}

fn run(store: &mut Store, us: &ThisDevice, receipts: bool, envelope: &Envelope) -> Outcome {
    store
        .tx(|tx| process(us, receipts, tx, envelope))
        .expect("process")
}

#[test]
fn a_first_text_is_stored_its_sender_trusted_and_a_receipt_planned() {
    let (alice, bob) = (device("alice", 1), device("bob", 1));
    let (_dir, mut store, bundle) = receiver(&bob);
    let content = Content::text([1; 16], 5, "hi bob");
    let envelope = sealed(&alice, &bundle, &content, 10);
    let Outcome::Delivered {
        events,
        receipt,
        refresh,
    } = run(&mut store, &bob, true, &envelope)
    else {
        panic!("a text from a new contact is delivered");
    };
    let [Event::Message(message)] = events.as_slice() else {
        panic!("one message event: {events:?}");
    };
    assert_eq!(message.text, "hi bob");
    assert_eq!(message.author, "alice");
    assert_eq!(message.conversation, Conversation::Direct("alice".into()));
    assert_eq!(
        receipt,
        Some((Conversation::Direct("alice".into()), [1; 16]))
    );
    assert!(refresh.is_none());
    let (contact, stored, processed) = store
        .tx(|tx| -> Result<_, StoreError> {
            Ok((
                tx.contact("alice")?,
                tx.message_events("alice", &[1; 16])?,
                tx.envelope_processed(10)?,
            ))
        })
        .expect("tx");
    let contact = contact.expect("trusted on first use");
    assert_eq!(contact.identity, alice.identity.public().to_bytes());
    assert!(contact.pending.is_none());
    assert_eq!(stored.len(), 1);
    assert!(processed);
    assert!(matches!(
        run(&mut store, &bob, true, &envelope),
        Outcome::Duplicate
    ));
}

#[test]
fn no_receipt_is_planned_when_receipts_are_off() {
    let (alice, bob) = (device("alice", 1), device("bob", 1));
    let (_dir, mut store, bundle) = receiver(&bob);
    let envelope = sealed(&alice, &bundle, &Content::text([2; 16], 5, "hi"), 11);
    let Outcome::Delivered { receipt, .. } = run(&mut store, &bob, false, &envelope) else {
        panic!("delivered");
    };
    assert!(receipt.is_none());
}

#[test]
fn an_undecryptable_envelope_is_refused_once_and_not_stored() {
    let (alice, bob) = (device("alice", 1), device("bob", 1));
    let (_dir, mut store, bundle) = receiver(&bob);
    let mut envelope = sealed(&alice, &bundle, &Content::text([3; 16], 5, "hi"), 12);
    let mut bytes = envelope.ciphertext.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    envelope.ciphertext = bytes.into();
    let outcome = run(&mut store, &bob, true, &envelope);
    assert!(
        matches!(
            &outcome,
            Outcome::Failed(Event::DecryptionFailed { sender, sender_device: 1, .. })
                if sender == "alice"
        ),
        "refused as undecryptable"
    );
    let stored = store
        .tx(|tx| tx.message_events("alice", &[3; 16]))
        .expect("tx");
    assert!(stored.is_empty());
    assert!(matches!(
        run(&mut store, &bob, true, &envelope),
        Outcome::Duplicate
    ));
}

#[test]
fn a_contact_under_a_new_identity_is_held_as_a_safety_number_change() {
    let (alice, bob) = (device("alice", 1), device("bob", 1));
    let (_dir, mut store, bundle) = receiver(&bob);
    let before = device("alice", 1).identity.public().to_bytes();
    store
        .tx(|tx| {
            tx.set_contact(
                "alice",
                &Contact {
                    identity: before,
                    pending: None,
                    devices_checked_ms: 0,
                },
            )
        })
        .expect("contact");
    let envelope = sealed(&alice, &bundle, &Content::text([4; 16], 5, "new phone"), 13);
    let Outcome::Delivered { events, .. } = run(&mut store, &bob, true, &envelope) else {
        panic!("delivered, with the change reported");
    };
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::SafetyNumberChanged { username, .. } if username == "alice"
        )),
        "{events:?}"
    );
    let contact = store
        .tx(|tx| tx.contact("alice"))
        .expect("tx")
        .expect("contact");
    assert_eq!(contact.identity, before, "the trusted identity stays");
    assert_eq!(
        contact.pending,
        Some(alice.identity.public().to_bytes()),
        "the new one waits for acknowledgement"
    );
}

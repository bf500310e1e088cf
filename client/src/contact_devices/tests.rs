//! The contact-devices planner over a temp store, with bundles made from
//! real prekeys: no server, no connection.

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use microbot_crypto::IdentityKeyPair;
use microbot_crypto::prekeys::PreKeyBundle;

use super::*;
use crate::config::StoreConfig;
use crate::prekeys;
use crate::store::Store;

fn us() -> ThisDevice {
    ThisDevice {
        identity: IdentityKeyPair::generate(&mut rand::rng()),
        device_key: SigningKey::from_bytes(&[3; 32]),
        username: "alice".into(),
        device_id: 1,
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&StoreConfig::new(dir.path().join("s.db"))).expect("store");
    (dir, store)
}

/// A bundle of a device of the account with identity `identity`.
fn bundle(identity: &IdentityKeyPair) -> PreKeyBundle {
    let keys = prekeys::initial(identity);
    PreKeyBundle {
        identity: *identity.public(),
        signed_prekey: keys.latest_signed().expect("signed").public().clone(),
        one_time_prekey: None,
        kem_prekey: keys.latest_kem().map(|k| k.public().clone()),
    }
}

fn trusted(identity: &IdentityKeyPair) -> Contact {
    Contact {
        identity: identity.public().to_bytes(),
        pending: None,
        devices_checked_ms: 0,
    }
}

fn decide(
    store: &mut Store,
    us: &ThisDevice,
    contact: Option<&Contact>,
    devices: &[u64],
    bundles: &[(u64, PreKeyBundle)],
    checked: &Checked,
) -> Decision {
    let known = Known { contact, devices };
    store
        .tx(|tx| apply_bundles(us, tx, "bob", &known, bundles, checked))
        .expect("tx")
}

fn sessions_with_bob(store: &mut Store) -> Vec<u64> {
    store.tx(|tx| tx.session_devices("bob")).expect("tx")
}

fn added(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::DeviceAdded {
                username,
                device_id,
            } if username == "bob" => Some(*device_id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_first_look_trusts_the_identity_and_starts_sessions_quietly() {
    let (_dir, mut store) = store();
    let (us, bob) = (us(), IdentityKeyPair::generate(&mut rand::rng()));
    let bundles = [(1, bundle(&bob)), (2, bundle(&bob))];
    let decision = decide(&mut store, &us, None, &[], &bundles, &Checked::Unlisted);
    assert_eq!(decision.verdict, Verdict::Ready);
    assert!(decision.events.is_empty(), "a first look is not news");
    assert_eq!(sessions_with_bob(&mut store), vec![1, 2]);
    let contact = store
        .tx(|tx| tx.contact("bob"))
        .expect("tx")
        .expect("saved");
    assert_eq!(contact.identity, bob.public().to_bytes());
    assert!(contact.devices_checked_ms > 0);
}

#[test]
fn a_new_device_of_a_known_contact_is_news_and_a_gone_one_is_forgotten() {
    let (_dir, mut store) = store();
    let (us, bob) = (us(), IdentityKeyPair::generate(&mut rand::rng()));
    let contact = trusted(&bob);
    let first = decide(
        &mut store,
        &us,
        Some(&contact),
        &[],
        &[(1, bundle(&bob)), (2, bundle(&bob))],
        &Checked::Unlisted,
    );
    assert_eq!(first.verdict, Verdict::Ready);
    let decision = decide(
        &mut store,
        &us,
        Some(&contact),
        &[1, 2],
        &[(1, bundle(&bob)), (3, bundle(&bob))],
        &Checked::Unlisted,
    );
    assert_eq!(decision.verdict, Verdict::Ready);
    assert_eq!(added(&decision.events), vec![3]);
    assert_eq!(sessions_with_bob(&mut store), vec![1, 3]);
}

#[test]
fn another_identity_holds_the_send_as_a_safety_number_change() {
    let (_dir, mut store) = store();
    let us = us();
    let (bob, reinstalled) = (
        IdentityKeyPair::generate(&mut rand::rng()),
        IdentityKeyPair::generate(&mut rand::rng()),
    );
    let contact = trusted(&bob);
    let decision = decide(
        &mut store,
        &us,
        Some(&contact),
        &[],
        &[(4, bundle(&reinstalled))],
        &Checked::Unlisted,
    );
    assert_eq!(decision.verdict, Verdict::Blocked);
    assert!(matches!(
        decision.events.as_slice(),
        [Event::SafetyNumberChanged { username, .. }] if username == "bob"
    ));
    assert!(
        sessions_with_bob(&mut store).is_empty(),
        "no session with it"
    );
    let stored = store
        .tx(|tx| tx.contact("bob"))
        .expect("tx")
        .expect("saved");
    assert_eq!(stored.identity, bob.public().to_bytes());
    assert_eq!(stored.pending, Some(reinstalled.public().to_bytes()));
}

#[test]
fn a_device_the_verified_list_leaves_out_gets_no_session() {
    let (_dir, mut store) = store();
    let (us, bob) = (us(), IdentityKeyPair::generate(&mut rand::rng()));
    let checked = Checked::Listed {
        devices: BTreeSet::from([1]),
        added: None,
    };
    let decision = decide(
        &mut store,
        &us,
        None,
        &[],
        &[(1, bundle(&bob)), (2, bundle(&bob))],
        &checked,
    );
    assert_eq!(decision.verdict, Verdict::Ready);
    assert_eq!(sessions_with_bob(&mut store), vec![1]);
}

#[test]
fn no_bundle_at_all_is_refused() {
    let (_dir, mut store) = store();
    let decision = decide(&mut store, &us(), None, &[], &[], &Checked::Unlisted);
    assert!(
        matches!(&decision.verdict, Verdict::Refused(reason) if reason.contains("no device")),
        "{:?}",
        decision.verdict
    );
    assert!(store.tx(|tx| tx.contact("bob")).expect("tx").is_none());
}

#[test]
fn a_bundle_stripped_of_its_kem_prekey_is_refused_as_a_downgrade() {
    let (_dir, mut store) = store();
    let (us, bob) = (us(), IdentityKeyPair::generate(&mut rand::rng()));
    let mut stripped = bundle(&bob);
    stripped.kem_prekey = None;
    let decision = decide(
        &mut store,
        &us,
        None,
        &[],
        &[(1, bundle(&bob)), (2, stripped)],
        &Checked::Unlisted,
    );
    assert!(
        matches!(&decision.verdict, Verdict::Refused(reason) if reason.contains("downgrade")),
        "{:?}",
        decision.verdict
    );
    assert!(sessions_with_bob(&mut store).is_empty(), "nothing saved");
}

#[test]
fn news_follows_the_verified_list_when_there_is_one() {
    let listed = Checked::Listed {
        devices: BTreeSet::from([1, 2, 5]),
        added: Some(vec![5]),
    };
    assert_eq!(news(&listed, true, &[1, 2], [9].into_iter()), vec![5]);
    let first_look = Checked::Listed {
        devices: BTreeSet::from([1, 2, 5]),
        added: None,
    };
    assert_eq!(news(&first_look, true, &[1, 2], [].into_iter()), vec![5]);
    assert!(news(&first_look, false, &[], [].into_iter()).is_empty());
    assert_eq!(
        news(&Checked::Unlisted, true, &[1], [7].into_iter()),
        vec![7]
    );
    assert!(news(&Checked::Unlisted, false, &[], [7].into_iter()).is_empty());
}

//! The device-sessions planners over a temp store, with bundles made from
//! real prekeys: no server, no connection.

use std::collections::BTreeSet;

use microbot_crypto::IdentityKeyPair;
use microbot_crypto::prekeys::PreKeyBundle;

use super::*;
use crate::store::Store;

use crate::test_fixtures::{alice_device as us, bundle};

fn store() -> (tempfile::TempDir, Store) {
    crate::store::temporary()
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
        matches!(
            &decision.verdict,
            Verdict::Refused(SendFailureReason::NoDevices { username }) if username == "bob"
        ),
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
        matches!(
            &decision.verdict,
            Verdict::Refused(SendFailureReason::KeysRefused {
                username,
                refusal: KeyRefusal::Downgrade { device_ids },
            }) if username == "bob" && device_ids == &[2]
        ),
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

#[test]
fn our_own_device_and_unlisted_ones_are_not_fetched() {
    let us = us();
    let checked = Checked::Listed {
        devices: BTreeSet::from([1, 2, 3]),
        added: None,
    };
    let (devices, unknown) = own_devices_to_fetch(&us, [1, 2, 3, 4], &checked, &[2]);
    assert_eq!(
        devices,
        BTreeSet::from([2, 3]),
        "not us (1), not unlisted 4"
    );
    assert_eq!(unknown, vec![3], "2 has a session already");
}

#[test]
fn own_bundles_under_another_identity_are_skipped_and_only_newer_devices_are_news() {
    let (_dir, mut store) = store();
    let mut us = us();
    us.device_id = 5;
    let stranger = IdentityKeyPair::generate(&mut rand::rng());
    let bundles = [
        (3, bundle(&us.identity)),
        (7, bundle(&us.identity)),
        (8, bundle(&stranger)),
    ];
    let devices = BTreeSet::from([2, 3, 7, 8]);
    let events = store
        .tx(|tx| {
            tx.save_session(
                "alice",
                2,
                &microbot_crypto::Session::initiate(
                    &mut rand::rng(),
                    &us.identity,
                    &bundle(&us.identity),
                )
                .expect("session"),
            )?;
            tx.save_session(
                "alice",
                9,
                &microbot_crypto::Session::initiate(
                    &mut rand::rng(),
                    &us.identity,
                    &bundle(&us.identity),
                )
                .expect("session"),
            )?;
            apply_own_bundles(&us, tx, &[2, 9], &devices, &bundles, &Checked::Unlisted)
        })
        .expect("tx");
    let news: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::DeviceAdded {
                username,
                device_id,
            } if username == "alice" => Some(*device_id),
            _ => None,
        })
        .collect();
    assert_eq!(news, vec![7], "3 enrolled before us, 8 is not ours");
    let (sessions, checked_ms) = store
        .tx(|tx| -> Result<_, StoreError> {
            Ok((
                tx.session_devices("alice")?,
                tx.meta_u64(META_OWN_DEVICES_CHECKED)?,
            ))
        })
        .expect("tx");
    assert_eq!(sessions, vec![2, 3, 7], "9 is no longer served");
    assert!(checked_ms.is_some_and(|t| t > 0));
}

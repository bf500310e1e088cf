//! The send planner over a temp store: what a send does next when every
//! device is known, when devices are missing, and when the server refuses
//! because the device set changed. No server, no connection: the tests
//! play the shell, applying real prekey bundles where a fetch would.

use microbot_crypto::IdentityKeyPair;
use microbot_crypto::prekeys::PreKeyBundle;

use super::*;
use crate::device_lists::Checked;
use crate::device_sessions::{Known, Verdict, apply_bundles};
use crate::groups::{GROUP_RECORD_VERSION, GroupRecord, MemberRecord};
use crate::now_ms;
use crate::store::{Contact, Store};
use crate::this_device::ThisDevice;

const REFRESH: Duration = Duration::from_secs(600);

use crate::test_fixtures::{alice_device as us, bundle};

/// One identity per account name, the same at every fetch.
fn identity_of(username: &str) -> IdentityKeyPair {
    let mut seed = [0x5a; 32];
    for (slot, byte) in seed.iter_mut().zip(username.bytes()) {
        *slot = byte;
    }
    IdentityKeyPair::from_seed(&seed)
}

/// What a fetch of `username`'s devices would apply: sessions with
/// `devices`, the list checked now.
fn serve_devices(store: &mut Store, us: &ThisDevice, username: &str, devices: &[u64]) {
    let identity = identity_of(username);
    let served: Vec<(u64, PreKeyBundle)> =
        devices.iter().map(|d| (*d, bundle(&identity))).collect();
    let decision = store
        .tx(|tx| {
            let contact = tx.contact(username)?;
            let known_devices = tx.session_devices(username)?;
            let known = Known {
                contact: contact.as_ref(),
                devices: &known_devices,
            };
            apply_bundles(us, tx, username, &known, &served, &Checked::Unlisted)
        })
        .expect("tx");
    assert_eq!(decision.verdict, Verdict::Ready);
}

/// Our own device list checked now.
fn own_checked(store: &mut Store) {
    store
        .tx(|tx| tx.set_meta(META_OWN_DEVICES_CHECKED, &now_ms().to_be_bytes()))
        .expect("tx");
}

fn next(store: &mut Store, plan: &mut SendPlan) -> Step {
    store.tx(|tx| plan.next(tx, now_ms())).expect("tx")
}

fn refuse(store: &mut Store, plan: &mut SendPlan, code: ErrorCode, ids: &[u64]) -> Refused {
    store.tx(|tx| plan.refused(tx, code, ids)).expect("tx")
}

/// Plays the shell's device steps until the plan sends (or stops),
/// serving `devices` for every account fetched.
fn until_send(store: &mut Store, us: &ThisDevice, plan: &mut SendPlan, devices: &[u64]) -> Step {
    for _ in 0..10 {
        match next(store, plan) {
            Step::FetchDevices { username } => {
                serve_devices(store, us, &username, devices);
                plan.devices_fetched(&username, DevicesFetched::Ready);
            }
            Step::FetchOwnDevices => {
                own_checked(store);
                plan.own_devices_fetched();
            }
            Step::RefreshGroup => plan.group_refreshed(),
            other => return other,
        }
    }
    panic!("the plan did not settle");
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn with_every_device_known_a_direct_send_goes_out_claiming_both_accounts() {
    let (_dir, mut store) = crate::store::temporary();
    let us = us();
    serve_devices(&mut store, &us, "bob", &[2]);
    own_checked(&mut store);
    let mut plan = SendPlan::direct("alice", "bob", REFRESH);
    assert_eq!(next(&mut store, &mut plan), Step::Send(Attempt::first()));
    assert_eq!(plan.complete_accounts(), names(&["alice", "bob"]));
    assert_eq!(plan.recipients(), names(&["bob"]));
}

#[test]
fn missing_devices_are_fetched_then_the_send_goes_out() {
    let (_dir, mut store) = crate::store::temporary();
    let us = us();
    let mut plan = SendPlan::direct("alice", "bob", REFRESH);
    assert_eq!(
        next(&mut store, &mut plan),
        Step::FetchDevices {
            username: "bob".into()
        }
    );
    serve_devices(&mut store, &us, "bob", &[2, 3]);
    plan.devices_fetched("bob", DevicesFetched::Ready);
    assert_eq!(next(&mut store, &mut plan), Step::FetchOwnDevices);
    plan.own_devices_fetched();
    assert_eq!(next(&mut store, &mut plan), Step::Send(Attempt::first()));
}

#[test]
fn an_account_without_devices_is_fetched_once_per_attempt() {
    let (_dir, mut store) = crate::store::temporary();
    let mut plan = SendPlan::direct("alice", "bob", REFRESH);
    assert!(matches!(
        next(&mut store, &mut plan),
        Step::FetchDevices { .. }
    ));
    // The fetch applied nothing (no devices served); a zero refresh
    // interval would call any list stale. Neither loops.
    plan.devices_fetched("bob", DevicesFetched::Ready);
    assert_eq!(next(&mut store, &mut plan), Step::FetchOwnDevices);
    plan.own_devices_fetched();
    assert_eq!(next(&mut store, &mut plan), Step::Send(Attempt::first()));

    let mut plan = SendPlan::direct("alice", "alice", Duration::ZERO);
    assert_eq!(next(&mut store, &mut plan), Step::FetchOwnDevices);
    plan.own_devices_fetched();
    assert_eq!(next(&mut store, &mut plan), Step::Send(Attempt::first()));
    assert_eq!(plan.complete_accounts(), names(&["alice"]));
}

#[test]
fn refusals_over_stale_devices_refetch_within_the_budget_then_end_the_send() {
    let (_dir, mut store) = crate::store::temporary();
    let us = us();
    serve_devices(&mut store, &us, "bob", &[2, 3]);
    own_checked(&mut store);
    let mut plan = SendPlan::direct("alice", "bob", REFRESH);
    let Step::Send(first) = next(&mut store, &mut plan) else {
        panic!("all devices known: send");
    };
    assert!(first.checks_devices());

    // A removed device is forgotten, and both lists are fetched again.
    assert_eq!(
        refuse(&mut store, &mut plan, ErrorCode::DeviceRemoved, &[3]),
        Refused::TryAgain
    );
    assert_eq!(
        store.tx(|tx| tx.session_devices("bob")).expect("tx"),
        vec![2]
    );
    assert_eq!(
        next(&mut store, &mut plan),
        Step::FetchDevices {
            username: "bob".into()
        }
    );
    let second = until_send(&mut store, &us, &mut plan, &[2, 4]);
    assert_eq!(second, Step::Send(first.next().expect("a second attempt")));
    assert_eq!(plan.complete_accounts(), names(&["alice", "bob"]));

    // Missing devices: fetched again; the last attempt claims nothing.
    assert_eq!(
        refuse(&mut store, &mut plan, ErrorCode::MissingDevices, &[5]),
        Refused::TryAgain
    );
    let Step::Send(last) = until_send(&mut store, &us, &mut plan, &[2, 4, 5]) else {
        panic!("the last attempt sends");
    };
    assert!(!last.checks_devices());
    assert!(plan.complete_accounts().is_empty());

    // The budget is spent: the refusal is final.
    assert_eq!(
        refuse(&mut store, &mut plan, ErrorCode::MissingDevices, &[6]),
        Refused::Final
    );
}

#[test]
fn a_recipient_without_an_encryptable_device_gives_up_and_a_note_to_self_may_be_empty() {
    let plan = SendPlan::direct("alice", "bob", REFRESH);
    assert_eq!(
        plan.encrypted(0, 2),
        Encrypted::GiveUp(SendFailureReason::NoDevices {
            username: "bob".into()
        })
    );
    assert_eq!(plan.encrypted(1, 3), Encrypted::Send);
    let to_self = SendPlan::direct("alice", "alice", REFRESH);
    assert_eq!(to_self.encrypted(0, 0), Encrypted::Nothing);
    assert_eq!(to_self.encrypted(0, 1), Encrypted::Send);
}

#[test]
fn a_refusal_not_about_devices_ends_the_send_at_once() {
    let (_dir, mut store) = crate::store::temporary();
    let mut plan = SendPlan::direct("alice", "bob", REFRESH);
    assert_eq!(
        refuse(&mut store, &mut plan, ErrorCode::QueueFull, &[]),
        Refused::Final
    );
}

#[test]
fn a_changed_safety_number_holds_and_an_unreachable_account_gives_up() {
    let (_dir, mut store) = crate::store::temporary();
    store
        .tx(|tx| {
            tx.set_contact(
                "bob",
                &Contact {
                    identity: [1; 32],
                    pending: Some([2; 32]),
                    devices_checked_ms: now_ms(),
                },
            )
        })
        .expect("tx");
    let mut plan = SendPlan::direct("alice", "bob", REFRESH);
    assert_eq!(next(&mut store, &mut plan), Step::Blocked);

    let mut plan = SendPlan::direct("alice", "carol", REFRESH);
    assert!(matches!(
        next(&mut store, &mut plan),
        Step::FetchDevices { .. }
    ));
    let reason = SendFailureReason::UnknownAccount {
        username: "carol".into(),
    };
    plan.devices_fetched("carol", DevicesFetched::Refused(reason.clone()));
    assert_eq!(next(&mut store, &mut plan), Step::GiveUp(reason));
}

fn group(store: &mut Store, members: &[&str], checked_ms: u64, active: bool) -> GroupId {
    let id = GroupId::from_bytes([7; 16]);
    let mut record = GroupRecord::default();
    record.format = GROUP_RECORD_VERSION;
    record.version = 1;
    record.active = active;
    record.checked_ms = checked_ms;
    record.members = members
        .iter()
        .map(|name| MemberRecord {
            username: (*name).to_owned(),
            role: 0,
            joined_at_version: 1,
        })
        .collect();
    store.tx(|tx| tx.set_group(&id, &record)).expect("tx");
    id
}

#[test]
fn a_group_send_refreshes_a_stale_membership_then_fetches_stale_members() {
    let (_dir, mut store) = crate::store::temporary();
    let us = us();
    let id = group(&mut store, &["alice", "bob", "carol"], 0, true);
    serve_devices(&mut store, &us, "carol", &[3]);
    let mut plan = SendPlan::group("alice", id, REFRESH);
    assert_eq!(next(&mut store, &mut plan), Step::RefreshGroup);
    plan.group_refreshed();
    assert_eq!(
        next(&mut store, &mut plan),
        Step::FetchDevices {
            username: "bob".into()
        }
    );
    serve_devices(&mut store, &us, "bob", &[2]);
    plan.devices_fetched("bob", DevicesFetched::Ready);
    assert_eq!(next(&mut store, &mut plan), Step::FetchOwnDevices);
    plan.own_devices_fetched();
    assert_eq!(next(&mut store, &mut plan), Step::Send(Attempt::first()));
    assert_eq!(plan.recipients(), names(&["bob", "carol"]));
}

#[test]
fn a_group_member_without_usable_devices_is_skipped() {
    let (_dir, mut store) = crate::store::temporary();
    let us = us();
    let id = group(&mut store, &["alice", "bob", "dave"], now_ms(), true);
    serve_devices(&mut store, &us, "bob", &[2]);
    own_checked(&mut store);
    let mut plan = SendPlan::group("alice", id, REFRESH);
    assert_eq!(
        next(&mut store, &mut plan),
        Step::FetchDevices {
            username: "dave".into()
        }
    );
    let reason = SendFailureReason::UnknownAccount {
        username: "dave".into(),
    };
    plan.devices_fetched("dave", DevicesFetched::Refused(reason));
    assert_eq!(next(&mut store, &mut plan), Step::Send(Attempt::first()));
    assert_eq!(plan.recipients(), names(&["bob"]));
}

#[test]
fn missing_group_devices_refresh_and_refetch_within_the_budget_then_give_up() {
    let (_dir, mut store) = crate::store::temporary();
    let us = us();
    let id = group(&mut store, &["alice", "bob"], now_ms(), true);
    serve_devices(&mut store, &us, "bob", &[2]);
    own_checked(&mut store);
    let mut plan = SendPlan::group("alice", id, REFRESH);
    assert_eq!(next(&mut store, &mut plan), Step::Send(Attempt::first()));

    // The server found a device we lack: membership refreshed although
    // recent, every list fetched again.
    assert_eq!(
        refuse(&mut store, &mut plan, ErrorCode::MissingDevices, &[9]),
        Refused::TryAgain
    );
    assert_eq!(next(&mut store, &mut plan), Step::RefreshGroup);
    plan.group_refreshed();
    assert_eq!(
        next(&mut store, &mut plan),
        Step::FetchDevices {
            username: "bob".into()
        }
    );
    let Step::Send(second) = until_send(&mut store, &us, &mut plan, &[2, 9]) else {
        panic!("the second attempt sends");
    };
    assert!(second.checks_devices());

    // Devices changed under the distribution: the third attempt, then no more.
    plan.devices_changed(false);
    let Step::Send(last) = until_send(&mut store, &us, &mut plan, &[2, 9]) else {
        panic!("the last attempt sends");
    };
    assert!(!last.checks_devices());
    plan.devices_changed(true);
    assert_eq!(
        next(&mut store, &mut plan),
        Step::GiveUp(SendFailureReason::GroupDevicesKeepChanging { group_id: id })
    );
}

#[test]
fn an_unknown_or_left_group_gives_up() {
    let (_dir, mut store) = crate::store::temporary();
    let id = GroupId::from_bytes([7; 16]);
    let mut plan = SendPlan::group("alice", id, REFRESH);
    assert_eq!(
        next(&mut store, &mut plan),
        Step::GiveUp(SendFailureReason::UnknownGroup { group_id: id })
    );

    let id = group(&mut store, &["bob"], now_ms(), false);
    let mut plan = SendPlan::group("alice", id, REFRESH);
    assert_eq!(next(&mut store, &mut plan), Step::RefreshGroup);
    plan.group_refreshed();
    assert_eq!(
        next(&mut store, &mut plan),
        Step::GiveUp(SendFailureReason::NotGroupMember { group_id: id })
    );
}

//! Which devices of an account we hold sessions with (SPEC.md §4.2, §8,
//! §20), decided over a store transaction without I/O from what the server
//! served. For a contact's prekey bundles ([`apply_bundles`]): trust
//! the first identity seen; a different one later is a safety-number
//! change that holds the send; a device the account's verified list does
//! not name gets nothing; a device that signs for post-quantum prekeys
//! but came without one is refused (a possible downgrade); sessions start
//! with new devices and devices no longer served are forgotten. For our
//! own account ([`own_devices_to_fetch`], [`apply_own_bundles`]): every
//! other device the verified list allows, a bundle under another identity
//! than ours skipped, and only devices enrolled after this one are news.
//! Not owned here: fetching the bundles and checking the list
//! (sessions.rs, device_lists.rs), encrypting (sessions.rs).

use std::collections::BTreeSet;

use microbot_crypto::Session;
use microbot_crypto::handshake::HandshakeError;
use microbot_crypto::prekeys::PreKeyBundle;
use microbot_crypto::session::SessionError;

use crate::device_lists::Checked;
use crate::error::StoreError;
use crate::events::Event;
use crate::now_ms;
use crate::send_failure::{KeyRefusal, SendFailureReason};
use crate::store::{Contact, Tx};
use crate::this_device::ThisDevice;

/// Whether sends to the contact may go on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Sessions are up to date with the devices served.
    Ready,
    /// The contact's identity changed; its sends wait for acknowledgement.
    Blocked,
    /// Sends to it cannot succeed, for this reason.
    Refused(SendFailureReason),
}

/// What was decided, and what to tell the application.
#[derive(Debug)]
pub(crate) struct Decision {
    /// Whether sends go on.
    pub(crate) verdict: Verdict,
    /// Events to raise (`DeviceAdded`, `SafetyNumberChanged`).
    pub(crate) events: Vec<Event>,
}

/// What we knew of the contact before the bundles were fetched.
pub(crate) struct Known<'a> {
    /// The contact record, if any.
    pub(crate) contact: Option<&'a Contact>,
    /// The devices we hold sessions with.
    pub(crate) devices: &'a [u64],
}

/// Applies the bundles served for `username` (each with its device id)
/// in `tx`, given what we `known` before fetching them and the verified
/// device list `checked`.
pub(crate) fn apply_bundles(
    us: &ThisDevice,
    tx: &Tx<'_>,
    username: &str,
    known: &Known<'_>,
    bundles: &[(u64, PreKeyBundle)],
    checked: &Checked,
) -> Result<Decision, StoreError> {
    let mut trusted = known.contact.map(|c| c.identity);
    let mut change = None;
    let mut sessions = Vec::new();
    let mut listed = BTreeSet::new();
    let mut downgraded = Vec::new();
    for (device, bundle) in bundles {
        let identity = bundle.identity.to_bytes();
        let trusted = *trusted.get_or_insert(identity);
        if identity != trusted {
            change = Some(identity);
            continue;
        }
        // SPEC.md §20: a device the account's signed list does not name
        // gets nothing, whatever the server says.
        if !checked.allows(*device) {
            tracing::warn!(device, "device not in the signed device list skipped");
            continue;
        }
        listed.insert(*device);
        if known.devices.contains(device) {
            continue;
        }
        match Session::initiate(&mut rand::rng(), &us.identity, bundle) {
            Ok(session) => sessions.push((*device, session)),
            Err(SessionError::Handshake(HandshakeError::HybridRequired)) => {
                tracing::warn!(device, "KEM prekey missing from bundle");
                downgraded.push(*device);
            }
            Err(error) => {
                tracing::warn!(device, %error, "unusable prekey bundle skipped");
            }
        }
    }
    let Some(identity) = trusted else {
        return Ok(refused(SendFailureReason::NoDevices {
            username: username.to_owned(),
        }));
    };
    // SPEC.md §4.2: never a classical session with a device that advertises
    // KEM prekeys; nothing is saved, the next send fetches the bundles again.
    if !downgraded.is_empty() {
        return Ok(refused(SendFailureReason::KeysRefused {
            username: username.to_owned(),
            refusal: KeyRefusal::Downgrade {
                device_ids: downgraded,
            },
        }));
    }
    let mut record = known.contact.cloned().unwrap_or(Contact {
        identity,
        pending: None,
        devices_checked_ms: 0,
    });
    if let Some(new) = change {
        record.pending = Some(new);
        tx.set_contact(username, &record)?;
        let events = us
            .safety_number_with(username, &new)
            .map(|safety_number| Event::SafetyNumberChanged {
                username: username.to_owned(),
                safety_number,
            })
            .into_iter()
            .collect();
        return Ok(Decision {
            verdict: Verdict::Blocked,
            events,
        });
    }
    record.devices_checked_ms = now_ms();
    for (device, session) in &sessions {
        tx.save_session(username, *device, session)?;
    }
    for device in known.devices.iter().filter(|d| !listed.contains(d)) {
        tx.delete_device(username, *device)?;
    }
    tx.set_contact(username, &record)?;
    let had_devices = known.contact.is_some() && !known.devices.is_empty();
    let created = sessions.iter().map(|(d, _)| *d);
    let events = news(checked, had_devices, known.devices, created)
        .into_iter()
        .map(|device_id| Event::DeviceAdded {
            username: username.to_owned(),
            device_id,
        })
        .collect();
    Ok(Decision {
        verdict: Verdict::Ready,
        events,
    })
}

fn refused(reason: SendFailureReason) -> Decision {
    Decision {
        verdict: Verdict::Refused(reason),
        events: Vec::new(),
    }
}

/// The one rule for `Event::DeviceAdded` on sends (SPEC.md §20): for an
/// account with a signed list, the devices its verified list gained since
/// the last one we verified (on our first look at its list, the listed
/// devices we held no session with, if we held any); for an account
/// without one, the devices we just started sessions with, if we knew
/// some of its devices before. A first look at a contact is not news.
pub(crate) fn news(
    checked: &Checked,
    had_devices: bool,
    known: &[u64],
    created: impl Iterator<Item = u64>,
) -> Vec<u64> {
    match checked {
        Checked::Listed {
            added: Some(added), ..
        } => added.clone(),
        Checked::Listed {
            added: None,
            devices,
        } if had_devices => devices
            .iter()
            .copied()
            .filter(|d| !known.contains(d))
            .collect(),
        Checked::Unlisted if had_devices => created.collect(),
        _ => Vec::new(),
    }
}

/// Meta key: when our own device list was last checked (ms).
pub(crate) const META_OWN_DEVICES_CHECKED: &str = "own_devices_checked_ms";

/// Makes the next send re-check our own device list.
pub(crate) fn reset_own_devices_check(tx: &Tx<'_>) -> Result<(), StoreError> {
    tx.set_meta(META_OWN_DEVICES_CHECKED, &0u64.to_be_bytes())
}

/// Our own account's devices as served (`served`, checked against our
/// verified list `checked`): the other devices we should hold sessions
/// with, and those of them we hold none with yet (whose bundles to fetch).
pub(crate) fn own_devices_to_fetch(
    us: &ThisDevice,
    served: impl IntoIterator<Item = u64>,
    checked: &Checked,
    known: &[u64],
) -> (BTreeSet<u64>, Vec<u64>) {
    let devices: BTreeSet<u64> = served
        .into_iter()
        .filter(|id| *id != us.device_id && checked.allows(*id))
        .collect();
    let unknown = devices
        .iter()
        .copied()
        .filter(|d| !known.contains(d))
        .collect();
    (devices, unknown)
}

/// Applies our own devices' bundles in `tx`: sessions with those under our
/// identity, devices not in `devices` forgotten, the check time recorded.
/// Returns the `DeviceAdded` news.
pub(crate) fn apply_own_bundles(
    us: &ThisDevice,
    tx: &Tx<'_>,
    known: &[u64],
    devices: &BTreeSet<u64>,
    bundles: &[(u64, PreKeyBundle)],
    checked: &Checked,
) -> Result<Vec<Event>, StoreError> {
    let me = us.username.as_str();
    let own_identity = us.identity.public().to_bytes();
    let mut sessions = Vec::new();
    for (device, bundle) in bundles {
        if bundle.identity.to_bytes() != own_identity {
            tracing::warn!(device, "own device with a foreign identity skipped");
            continue;
        }
        if let Ok(session) = Session::initiate(&mut rand::rng(), &us.identity, bundle) {
            sessions.push((*device, session));
        }
    }
    for (device, session) in &sessions {
        tx.save_session(me, *device, session)?;
    }
    for device in known.iter().filter(|d| !devices.contains(d)) {
        tx.delete_device(me, *device)?;
    }
    tx.set_meta(META_OWN_DEVICES_CHECKED, &now_ms().to_be_bytes())?;
    // Devices enrolled after this one are news (ids only grow); with a
    // signed list, the devices it gained.
    let created = sessions
        .iter()
        .map(|(d, _)| *d)
        .filter(|d| *d > us.device_id);
    Ok(news(checked, true, known, created)
        .into_iter()
        .filter(|device_id| *device_id != us.device_id)
        .map(|device_id| Event::DeviceAdded {
            username: me.to_owned(),
            device_id,
        })
        .collect())
}

#[cfg(test)]
mod tests;

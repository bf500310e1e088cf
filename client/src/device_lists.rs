//! Signed device lists on the client (SPEC.md §20): signing this device
//! into its account's list (at registration, after enrolment or linking),
//! signing a device out after `RemoveDevice`, and checking the lists the
//! server serves for contacts and for our own account before any device
//! of theirs gets a message.
//!
//! Invariants: a list is used only once its signature verified under the
//! identity we trust for that account (our own identity for our account);
//! per account we keep the highest verified list, so an older one served
//! later is a rollback and a missing one a downgrade, both refused. A new
//! list is always built from the last *verified* list, never from the
//! server's unsigned `DeviceList.devices`, so a server cannot get a device
//! of its own signed in. The remembered list belongs to the identity that
//! signed it: once a contact's identity changes (and the user accepted the
//! new safety number) the old list no longer verifies and history restarts.
//!
//! Not owned here: sessions (sessions.rs), the connection loop (sync.rs).

use std::collections::BTreeSet;

use bytes::Bytes;
use microbot_crypto::IdentityKey;
use microbot_crypto::device_list::{DeviceList, DeviceListError, SignedDeviceList};
use microbot_protocol::transport::{
    DeviceList as DeviceListProto, ErrorCode, ListDevicesRequest, UploadDeviceListRequest,
    client_frame::Request, response,
};

use crate::error::{StoreError, TransportError};
use crate::send_failure::{KeyRefusal, SendFailureReason};
use crate::store::{SharedStore, Tx};
use crate::this_device::ThisDevice;
use crate::transport::Connection;
use crate::{auth, now_ms};

/// Meta key: this device has signed itself into the account's list.
const META_LISTED: &str = "device_list_listed";

/// Attempts at signing a new list when other devices sign at the same time.
const SIGN_ATTEMPTS: usize = 3;

fn meta_key(username: &str) -> String {
    format!("device_list:{username}")
}

/// Why a list the server served was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ListRefusal {
    /// It does not verify, or names another account.
    #[error("{username}'s device list is not signed by the identity we trust ({error})")]
    Forged {
        /// The account.
        username: String,
        /// What was wrong.
        error: DeviceListError,
    },
    /// Older than a list we verified before.
    #[error("{username}'s device list went back from version {seen} to {served}")]
    Rollback {
        /// The account.
        username: String,
        /// The highest version verified before.
        seen: u64,
        /// The version served now.
        served: u64,
    },
    /// Another list with the version we verified before.
    #[error("{username}'s device list version {version} was served with other devices")]
    Equivocation {
        /// The account.
        username: String,
        /// The version.
        version: u64,
    },
    /// No list, where we verified one before.
    #[error("{username}'s signed device list (version {seen}) is missing")]
    Downgrade {
        /// The account.
        username: String,
        /// The version verified before.
        seen: u64,
    },
}

impl From<ListRefusal> for SendFailureReason {
    fn from(refusal: ListRefusal) -> Self {
        let (username, refusal) = match refusal {
            ListRefusal::Forged { username, error } => {
                (username, KeyRefusal::ForgedDeviceList { error })
            }
            ListRefusal::Rollback {
                username,
                seen,
                served,
            } => (username, KeyRefusal::DeviceListRollback { seen, served }),
            ListRefusal::Equivocation { username, version } => {
                (username, KeyRefusal::DeviceListEquivocation { version })
            }
            ListRefusal::Downgrade { username, seen } => {
                (username, KeyRefusal::DeviceListMissing { seen })
            }
        };
        SendFailureReason::KeysRefused { username, refusal }
    }
}

/// What a served list allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Checked {
    /// The account never had a signed list: every device the server names
    /// counts (the rule before §20, for older clients).
    Unlisted,
    /// The account's verified list.
    Listed {
        /// The listed devices.
        devices: BTreeSet<u64>,
        /// The devices the previous verified list lacked; `None` on our
        /// first look at this account's list.
        added: Option<Vec<u64>>,
    },
}

impl Checked {
    /// Whether `device` may receive messages.
    pub(crate) fn allows(&self, device: u64) -> bool {
        match self {
            Checked::Unlisted => true,
            Checked::Listed { devices, .. } => devices.contains(&device),
        }
    }
}

/// The verified list we remember for `username`, if it still verifies
/// under `identity`.
pub(crate) fn remembered(
    tx: &Tx<'_>,
    username: &str,
    identity: &IdentityKey,
) -> Result<Option<SignedDeviceList>, StoreError> {
    Ok(tx
        .meta(&meta_key(username))?
        .and_then(|bytes| SignedDeviceList::verify_for(&bytes, identity, username).ok()))
}

/// Whether we verified a signed list of `username` before (under any
/// identity): then news of its devices comes from its list only.
pub(crate) fn has_list(tx: &Tx<'_>, username: &str) -> Result<bool, StoreError> {
    Ok(tx.meta(&meta_key(username))?.is_some())
}

/// Checks the list served for `username` against `identity` (the one we
/// trust) and what we verified before; remembers a newer one.
pub(crate) fn check(
    tx: &Tx<'_>,
    username: &str,
    identity: &IdentityKey,
    served: &[u8],
) -> Result<Result<Checked, ListRefusal>, StoreError> {
    check_and(tx, username, identity, served, true)
}

/// [`check`] without remembering the list: for a look that must not use
/// up the news of a gained device (the send that follows reports it).
pub(crate) fn peek(
    tx: &Tx<'_>,
    username: &str,
    identity: &IdentityKey,
    served: &[u8],
) -> Result<Result<Checked, ListRefusal>, StoreError> {
    check_and(tx, username, identity, served, false)
}

fn check_and(
    tx: &Tx<'_>,
    username: &str,
    identity: &IdentityKey,
    served: &[u8],
    remember: bool,
) -> Result<Result<Checked, ListRefusal>, StoreError> {
    let previous = remembered(tx, username, identity)?;
    if served.is_empty() {
        return Ok(match previous {
            Some(seen) => Err(ListRefusal::Downgrade {
                username: username.to_owned(),
                seen: seen.list().version(),
            }),
            None => Ok(Checked::Unlisted),
        });
    }
    let list = match SignedDeviceList::verify_for(served, identity, username) {
        Ok(list) => list,
        Err(error) => {
            return Ok(Err(ListRefusal::Forged {
                username: username.to_owned(),
                error,
            }));
        }
    };
    let devices: BTreeSet<u64> = list.list().device_ids().iter().copied().collect();
    let added = match &previous {
        None => None,
        Some(seen) => {
            let (seen_version, version) = (seen.list().version(), list.list().version());
            if version < seen_version {
                return Ok(Err(ListRefusal::Rollback {
                    username: username.to_owned(),
                    seen: seen_version,
                    served: version,
                }));
            }
            if version == seen_version && seen.as_bytes() != list.as_bytes() {
                return Ok(Err(ListRefusal::Equivocation {
                    username: username.to_owned(),
                    version,
                }));
            }
            Some(
                devices
                    .iter()
                    .copied()
                    .filter(|d| !seen.list().contains(*d))
                    .collect(),
            )
        }
    };
    if remember {
        tx.set_meta(&meta_key(username), list.as_bytes())?;
    }
    Ok(Ok(Checked::Listed { devices, added }))
}

/// `ListDevices`: the server's view of our devices and the signed list.
pub(crate) async fn list_devices_signed(
    conn: &Connection,
) -> Result<DeviceListProto, TransportError> {
    match conn
        .request(Request::ListDevices(ListDevicesRequest {}))
        .await?
    {
        response::Result::DeviceList(list) => Ok(list),
        _ => Err(TransportError::UnexpectedResponse {
            expected: "DeviceList",
        }),
    }
}

/// Why this device could not sign a new list.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    /// The served list was refused.
    #[error(transparent)]
    Refused(#[from] ListRefusal),
    /// The list cannot take the change (full, or it would be empty).
    #[error("cannot build the next device list: {0}")]
    Build(#[from] DeviceListError),
    /// Other devices kept signing newer lists.
    #[error("the device list kept changing while signing")]
    Contended,
    /// The request failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signs the next list of our account, built by `next` from the last
/// verified one (`None` when the account has none yet), and uploads it;
/// `next` answering `None` means nothing to change. Retries when another
/// device signed in between.
async fn sign_next(
    store: &SharedStore,
    us: &ThisDevice,
    conn: &Connection,
    next: impl Fn(Option<&DeviceList>) -> Result<Option<DeviceList>, DeviceListError>,
) -> Result<(), SignError> {
    let me = us.username.as_str();
    let identity = *us.identity.public();
    for _ in 0..SIGN_ATTEMPTS {
        let served = list_devices_signed(conn).await?;
        let current = store.tx(|tx| -> Result<_, StoreError> {
            Ok(
                match check(tx, me, &identity, &served.signed_device_list)? {
                    Ok(_) => Ok(remembered(tx, me, &identity)?),
                    // Signed by another identity: this device was set up
                    // with a new identity (a reinstall, a new safety
                    // number), which starts a history of its own (the
                    // server allows it).
                    Err(ListRefusal::Forged {
                        error: DeviceListError::BadSignature,
                        ..
                    }) => Ok(None),
                    Err(refusal) => Err(refusal),
                },
            )
        })??;
        let Some(list) = next(current.as_ref().map(SignedDeviceList::list))? else {
            return Ok(());
        };
        let signed = list.sign(&us.identity);
        let request = Request::UploadDeviceList(UploadDeviceListRequest {
            signed_device_list: Bytes::copy_from_slice(signed.as_bytes()),
        });
        match conn.request(request).await {
            Ok(result) => {
                auth::expect_ok(result)?;
                store.tx(|tx| check(tx, me, &identity, signed.as_bytes()))??;
                tracing::info!(
                    version = signed.list().version(),
                    "signed device list uploaded"
                );
                return Ok(());
            }
            Err(TransportError::Server(e)) if e.code == ErrorCode::StaleDeviceList => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(SignError::Contended)
}

/// Signs this device into the account's list once (SPEC.md §20): version 1
/// naming only this device when the account has no list and no other
/// device (registration), otherwise the last verified list plus this device
/// (enrolment, linking). An account without a list whose other devices run
/// older clients gets none. Needs our identity key on the server (prekeys
/// uploaded first).
pub(crate) async fn ensure_listed(
    store: &SharedStore,
    us: &ThisDevice,
    conn: &Connection,
) -> Result<(), SignError> {
    if store.tx(|tx| tx.meta(META_LISTED))?.as_deref() == Some(&[1]) {
        return Ok(());
    }
    let (me, device) = (us.username.clone(), us.device_id);
    // An account whose other devices predate signed lists (older clients
    // that never sign one) keeps the rule before §20: a list naming only
    // this device would cut them off. A device that never logged in has
    // used nothing yet: it signs itself in when it first connects (both
    // SDKs sign themselves into an existing list), so it does not stop
    // this one from starting a list of itself. The server's unsigned list
    // decides only whether to start a list, never what goes in it.
    let served = list_devices_signed(conn).await?;
    if served.signed_device_list.is_empty()
        && served
            .devices
            .iter()
            .any(|d| d.device_id != device && d.last_login_ms != 0)
    {
        tracing::info!("the account's other devices keep no signed device list; none started");
        return Ok(());
    }
    sign_next(store, us, conn, |current| match current {
        None => DeviceList::new(&me, 1, now_ms(), &[device]).map(Some),
        Some(list) if list.contains(device) => Ok(None),
        Some(list) => list.with_device(device, now_ms()).map(Some),
    })
    .await?;
    store.tx(|tx| tx.set_meta(META_LISTED, &[1]))?;
    Ok(())
}

/// After `RemoveDevice`: signs the last verified list without `device`.
/// An account without a list has nothing to sign.
pub(crate) async fn sign_out(
    store: &SharedStore,
    us: &ThisDevice,
    conn: &Connection,
    device: u64,
) -> Result<(), SignError> {
    sign_next(store, us, conn, |current| match current {
        Some(list) if list.contains(device) => list.without_device(device, now_ms()).map(Some),
        _ => Ok(None),
    })
    .await
}

/// The identity a message from `username` must come under: ours for our
/// own account, the trusted one for a contact (`None`: no contact yet).
fn trusted_identity(
    us: &ThisDevice,
    tx: &Tx<'_>,
    username: &str,
) -> Result<Option<IdentityKey>, StoreError> {
    if username == us.username {
        return Ok(Some(*us.identity.public()));
    }
    Ok(tx
        .contact(username)?
        .and_then(|contact| IdentityKey::from_bytes(&contact.identity).ok()))
}

/// Whether `username`'s verified list (the one we remember) leaves out
/// `device` (SPEC.md §20.5): then a message from it is held until a fresh
/// look at the list. An account whose list we never verified has no say.
pub(crate) fn leaves_out(
    us: &ThisDevice,
    tx: &Tx<'_>,
    username: &str,
    device: u64,
) -> Result<bool, StoreError> {
    let Some(identity) = trusted_identity(us, tx, username)? else {
        return Ok(false);
    };
    Ok(remembered(tx, username, &identity)?.is_some_and(|list| !list.list().contains(device)))
}

/// The list the server serves now for `username`: `ListDevices` for our own
/// account, otherwise `FetchPrekeys` for device 0, which names no device
/// (ids start at 1), so the answer carries the list and no bundle and uses
/// up no one-time prekey.
async fn fetch_served(
    me: &ThisDevice,
    conn: &Connection,
    username: &str,
) -> Result<Vec<u8>, TransportError> {
    if username == me.username {
        return Ok(list_devices_signed(conn).await?.signed_device_list.to_vec());
    }
    let request = Request::FetchPrekeys(microbot_protocol::transport::FetchPrekeysRequest {
        username: username.to_owned(),
        device_ids: vec![0],
    });
    match conn.request(request).await? {
        response::Result::PrekeyBundles(bundles) => Ok(bundles.signed_device_list.to_vec()),
        _ => Err(TransportError::UnexpectedResponse {
            expected: "PrekeyBundles",
        }),
    }
}

/// Fetches `username`'s list again and checks it like a sender does
/// (§20.4: forged, rolled back, equivocated or missing lists are refused);
/// a valid newer one is remembered. Answers the devices it gained (for
/// `DeviceAdded`), or why it was refused.
pub(crate) async fn refresh(
    store: &SharedStore,
    us: &ThisDevice,
    conn: &Connection,
    username: &str,
) -> Result<Result<Vec<u64>, ListRefusal>, SignError> {
    let served = fetch_served(us, conn, username).await?;
    let Some(identity) = store.tx(|tx| trusted_identity(us, tx, username))? else {
        return Ok(Ok(Vec::new()));
    };
    Ok(store
        .tx(|tx| check(tx, username, &identity, &served))?
        .map(|checked| match checked {
            Checked::Listed { added, .. } => added.unwrap_or_default(),
            Checked::Unlisted => Vec::new(),
        }))
}

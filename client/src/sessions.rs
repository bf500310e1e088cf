//! Pairwise sessions with every device of a conversation (SPEC.md §4, §5):
//! learning a contact's devices from their prekey bundles, trusting an
//! identity on first use and holding sends when it changes, encrypting one
//! envelope per device (the recipient's devices and our own other devices),
//! and decrypting what arrives.
//!
//! The 1:1 send is a loop over the steps of its plan (send_plan.rs): this
//! file fetches what the plan asks for, encrypts and sends, and feeds the
//! outcome back; the group sender (groups/send.rs) uses the same device
//! steps ([`fetch_for_plan`]).
//!
//! Every session is saved before the ciphertext made with it leaves, so a
//! crash never reuses a message key. Not owned here: what a send does next
//! (send_plan.rs), which sessions a served device list leads to
//! (device_sessions.rs), the message kinds (messages.rs), the store
//! (store/), the connection loop (sync.rs).

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use microbot_crypto::Session;
use microbot_crypto::prekeys::{LocalPreKeys, PreKeyBundle};
use microbot_crypto::session::MessageKind;
use microbot_protocol::content::Content;
use microbot_protocol::transport::{
    ErrorCode, FetchPrekeysRequest, OutgoingEnvelope, PrekeyBundles, SendRequest,
    client_frame::Request, response,
};

use crate::account_state::{Inner, Local};
use crate::config::AccountConfig;
use crate::device_lists::{self, Checked};
use crate::device_sessions::{self, Known, Verdict};
use crate::error::{StoreError, TransportError};
use crate::messages::encode_plaintext;
use crate::now_ms;
use crate::prekeys::META_PREKEYS;
use crate::prekeys::bundle_from_proto;
use crate::send_failure::SendFailureReason;
use crate::send_plan::{self, ContactDevices, DevicesFetched, Encrypted, Refused, SendPlan, Step};
use crate::store::SharedStore;
use crate::store::{Contact, Tx};
use crate::this_device::ThisDevice;
use crate::transport::Connection;

/// What the server said when it stored a queued send.
#[derive(Debug)]
pub(crate) struct Stored {
    /// The server's time stamp.
    pub(crate) server_timestamp_ms: u64,
    /// Group sends only: recipient devices whose full queues were skipped
    /// (SPEC.md §12.10).
    pub(crate) skipped_device_ids: Vec<u64>,
}

impl Stored {
    /// A send stored for every recipient device.
    fn everywhere(server_timestamp_ms: u64) -> Self {
        Stored {
            server_timestamp_ms,
            skipped_device_ids: Vec::new(),
        }
    }
}

/// Why a queued send did not leave.
#[derive(Debug)]
pub(crate) enum SendFailure {
    /// The destination's safety number changed; wait for acknowledgement.
    Blocked,
    /// The send can never succeed, for this reason; drop it.
    Permanent(SendFailureReason),
    /// The connection failed; keep it and retry after reconnecting.
    Transport(TransportError),
    /// The store failed; keep it.
    Store(StoreError),
}

impl From<StoreError> for SendFailure {
    fn from(error: StoreError) -> Self {
        SendFailure::Store(error)
    }
}

/// A failed request as a send failure: a connection problem keeps the
/// row for a retry, anything else drops it for the reason it names.
pub(crate) fn transport_failure(error: TransportError) -> SendFailure {
    if error.is_connection_problem() {
        return SendFailure::Transport(error);
    }
    SendFailure::Permanent(match error {
        TransportError::Server(error) => SendFailureReason::ServerRefused {
            code: error.code,
            message: error.message,
        },
        other => SendFailureReason::RequestFailed {
            detail: other.to_string(),
        },
    })
}

/// The send failure for an answer of the wrong kind to `request`.
pub(crate) fn unexpected_answer(request: &str) -> SendFailure {
    SendFailure::Permanent(SendFailureReason::RequestFailed {
        detail: format!("unexpected answer to a {request}"),
    })
}

/// Sends one queued content to `to`: every device of the recipient and
/// our own other devices, in one atomic send request. Returns what the
/// server said when it stored it.
pub(crate) async fn send_direct(
    inner: &Inner,
    conn: &Connection,
    to: &str,
    content: &Content,
) -> Result<Stored, SendFailure> {
    let to = to.to_owned();
    let me = inner.me.username.clone();
    // 1:1 content to a contact carries our profile key (SPEC.md §19.7).
    let with_key;
    let content = if to == me {
        content
    } else {
        with_key = crate::sealed::with_profile_key(&inner.store, content)?;
        &with_key
    };
    // The plan (send_plan.rs) decides which device lists to fetch, when
    // to send and whether a refusal leads to another attempt; this loop
    // does what it says.
    let mut plan = SendPlan::direct(&me, &to, inner.config.device_refresh);
    loop {
        let attempt = match inner.store.tx(|tx| plan.next(tx, now_ms()))? {
            Step::Send(attempt) => attempt,
            Step::Blocked => return Err(SendFailure::Blocked),
            Step::GiveUp(reason) => return Err(SendFailure::Permanent(reason)),
            // Never asked of a 1:1 send; a no-op for it.
            Step::RefreshGroup => {
                plan.group_refreshed();
                continue;
            }
            step => {
                fetch_for_plan(inner.local(), conn, &mut plan, step).await?;
                continue;
            }
        };
        let (envelopes, to_recipient) = encrypt_for(&inner.store, &inner.me, &to, content)?;
        match plan.encrypted(to_recipient, envelopes.len()) {
            Encrypted::Send => {}
            Encrypted::Nothing => return Ok(Stored::everywhere(now_ms())),
            Encrypted::GiveUp(reason) => return Err(SendFailure::Permanent(reason)),
        }
        if !attempt.checks_devices() {
            tracing::warn!("device list still differs from the server's; sending without claims");
        }
        let complete_accounts = plan.complete_accounts();
        let sent = match sealed_access(&inner.store, &inner.me, &inner.config, &to)? {
            // Sealed to a contact whose profile key we hold (SPEC.md §19):
            // the recipient's devices over a connection that does not log
            // in, our own other devices identified as before.
            Some((access_key, identity)) => {
                send_sealed_then_own(
                    inner,
                    conn,
                    &to,
                    &identity,
                    &access_key,
                    envelopes,
                    complete_accounts,
                )
                .await
            }
            None => send_identified(conn, envelopes, complete_accounts).await,
        };
        match sent {
            Ok(timestamp) => return Ok(Stored::everywhere(timestamp)),
            Err(TransportError::Server(error)) => {
                let refused = inner
                    .store
                    .tx(|tx| plan.refused(tx, error.code, &error.device_ids))?;
                if refused == Refused::Final {
                    return Err(transport_failure(TransportError::Server(error)));
                }
            }
            Err(error) => return Err(transport_failure(error)),
        }
    }
}

/// Carries out a device step of `plan` ([`Step::FetchDevices`],
/// [`Step::FetchOwnDevices`]) and feeds back what came of it; any other
/// step is left to the caller. Only a failed connection or store (or our
/// own refused device list) stops the send here.
pub(crate) async fn fetch_for_plan(
    local: Local<'_>,
    conn: &Connection,
    plan: &mut SendPlan,
    step: Step,
) -> Result<(), SendFailure> {
    match step {
        Step::FetchDevices { username } => {
            let outcome = match fetch_contact_devices(local, conn, &username).await {
                Ok(()) => DevicesFetched::Ready,
                Err(SendFailure::Blocked) => DevicesFetched::Blocked,
                Err(SendFailure::Permanent(reason)) => DevicesFetched::Refused(reason),
                Err(other) => return Err(other),
            };
            plan.devices_fetched(&username, outcome);
        }
        Step::FetchOwnDevices => {
            fetch_own_devices(local, conn).await?;
            plan.own_devices_fetched();
        }
        _ => {}
    }
    Ok(())
}

/// The access key and trusted identity of `to` when this send goes sealed.
pub(crate) fn sealed_access(
    store: &SharedStore,
    us: &ThisDevice,
    config: &AccountConfig,
    to: &str,
) -> Result<Option<([u8; 16], microbot_crypto::IdentityKey)>, StoreError> {
    if !config.sealed_sender || to == us.username {
        return Ok(None);
    }
    store.tx(|tx| {
        let Some(access_key) = crate::sealed::contact_access_key(tx, to)? else {
            return Ok(None);
        };
        Ok(tx
            .contact(to)?
            .and_then(|c| microbot_crypto::IdentityKey::from_bytes(&c.identity).ok())
            .map(|identity| (access_key, identity)))
    })
}

/// One identified `SendRequest`; the server's time stamp.
pub(crate) async fn send_identified(
    conn: &Connection,
    envelopes: Vec<OutgoingEnvelope>,
    complete_accounts: Vec<String>,
) -> Result<u64, TransportError> {
    let request = SendRequest {
        envelopes,
        complete_accounts,
    };
    match conn.request(Request::Send(request)).await? {
        response::Result::Send(r) => Ok(r.server_timestamp_ms),
        _ => Err(TransportError::UnexpectedResponse { expected: "Send" }),
    }
}

/// Sends the recipient's envelopes sealed, then the copies for our own
/// devices identified. A recipient that refuses our access key (it changed
/// its profile key) gets the whole send identified instead.
async fn send_sealed_then_own(
    inner: &Inner,
    conn: &Connection,
    to: &str,
    identity: &microbot_crypto::IdentityKey,
    access_key: &[u8; 16],
    envelopes: Vec<OutgoingEnvelope>,
    complete_accounts: Vec<String>,
) -> Result<u64, TransportError> {
    let theirs_ids: BTreeSet<u64> = inner
        .store
        .tx(|tx| tx.session_devices(to))
        .map_err(|e| TransportError::Config(e.to_string()))?
        .into_iter()
        .collect();
    let (theirs, ours): (Vec<_>, Vec<_>) = envelopes
        .into_iter()
        .partition(|e| theirs_ids.contains(&e.recipient_device_id));
    if ours.is_empty() && complete_accounts.contains(&inner.me.username) {
        own_list_unchanged(inner.local(), conn).await?;
    }
    let certificate = crate::sealed::certificate(&inner.store, &inner.me, conn).await?;
    let sealed = crate::sealed::send_sealed(
        inner,
        to,
        identity,
        access_key,
        &certificate,
        theirs.clone(),
    )
    .await;
    let timestamp = match sealed {
        Ok(timestamp) => timestamp,
        Err(TransportError::Server(error)) if error.code == ErrorCode::UnidentifiedAccessDenied => {
            tracing::info!("sealed send refused by the recipient's access key; sending identified");
            let mut all = theirs;
            all.extend(ours);
            return send_identified(conn, all, complete_accounts).await;
        }
        Err(error) => return Err(error),
    };
    if ours.is_empty() {
        return Ok(timestamp);
    }
    let own: Vec<String> = complete_accounts
        .into_iter()
        .filter(|a| *a == inner.me.username)
        .collect();
    send_identified(conn, ours, own).await
}

/// With no copy of a sealed send for our own devices there is no
/// identified send whose `complete_accounts` would reveal a newly linked
/// device of ours: the server's list is compared instead, before anything
/// leaves. A listed device we hold no session with is answered the way the
/// server would (`MissingDevices`), so the send plan re-checks the lists.
async fn own_list_unchanged(local: Local<'_>, conn: &Connection) -> Result<(), TransportError> {
    let me = local.me.username.as_str();
    let unusable = |e: &dyn std::fmt::Display| TransportError::Config(e.to_string());
    let known = local
        .store
        .tx(|tx| tx.session_devices(me))
        .map_err(|e| unusable(&e))?;
    let served = device_lists::list_devices_signed(conn).await?;
    let checked = local
        .store
        .tx(|tx| {
            device_lists::peek(
                tx,
                me,
                local.me.identity.public(),
                &served.signed_device_list,
            )
        })
        .map_err(|e| unusable(&e))?
        .map_err(|refusal| unusable(&refusal))?;
    let (_, unknown) = device_sessions::own_devices_to_fetch(
        local.me,
        served.devices.iter().map(|d| d.device_id),
        &checked,
        &known,
    );
    if unknown.is_empty() {
        return Ok(());
    }
    Err(TransportError::Server(crate::error::ServerError {
        code: ErrorCode::MissingDevices,
        message: "a device of our own account is not known yet".into(),
        retry_after_ms: 0,
        device_ids: unknown,
    }))
}

async fn fetch_bundles(
    conn: &Connection,
    username: &str,
    device_ids: Vec<u64>,
) -> Result<PrekeyBundles, SendFailure> {
    match conn
        .request(Request::FetchPrekeys(FetchPrekeysRequest {
            username: username.to_owned(),
            device_ids,
        }))
        .await
    {
        Ok(response::Result::PrekeyBundles(b)) => Ok(b),
        Ok(_) => Err(unexpected_answer("prekey fetch")),
        Err(TransportError::Server(e)) if e.code == ErrorCode::UnknownAccount => {
            Err(SendFailure::Permanent(SendFailureReason::UnknownAccount {
                username: username.to_owned(),
            }))
        }
        Err(error) => Err(transport_failure(error)),
    }
}

/// Makes sure we hold a session with every device of the contact, fetching
/// its bundles when the device list is stale. Trusts the first identity seen;
/// a different one later is recorded as pending and holds the send.
pub(crate) async fn ensure_contact_devices(
    local: Local<'_>,
    refresh: Duration,
    conn: &Connection,
    username: &str,
) -> Result<(), SendFailure> {
    match local
        .store
        .tx(|tx| send_plan::contact_devices(tx, username, now_ms(), refresh))?
    {
        ContactDevices::Fresh => Ok(()),
        ContactDevices::Blocked => Err(SendFailure::Blocked),
        ContactDevices::Stale => fetch_contact_devices(local, conn, username).await,
    }
}

/// Fetches the contact's bundles and signed device list and applies them
/// (device_sessions.rs): sessions with new devices, the first identity
/// trusted, a changed one held as pending (the send is then blocked).
async fn fetch_contact_devices(
    local: Local<'_>,
    conn: &Connection,
    username: &str,
) -> Result<(), SendFailure> {
    let (contact, known) = local.store.tx(|tx| -> Result<_, StoreError> {
        Ok((tx.contact(username)?, tx.session_devices(username)?))
    })?;
    let bundles = fetch_bundles(conn, username, Vec::new()).await?;
    local
        .store
        .tx(|tx| crate::bots::remember(tx, username, bundles.bot))?;
    let checked = check_contact_list(local.store, username, contact.as_ref(), &bundles)?;
    let served: Vec<(u64, PreKeyBundle)> = bundles
        .bundles
        .iter()
        .filter_map(|proto| match bundle_from_proto(proto) {
            Ok(bundle) => Some((proto.device_id, bundle)),
            Err(_) => {
                tracing::warn!(device = proto.device_id, "malformed prekey bundle skipped");
                None
            }
        })
        .collect();
    let known = Known {
        contact: contact.as_ref(),
        devices: &known,
    };
    let decision = local.store.tx(|tx| {
        device_sessions::apply_bundles(local.me, tx, username, &known, &served, &checked)
    })?;
    for event in decision.events {
        local.events.emit(event);
    }
    match decision.verdict {
        Verdict::Ready => Ok(()),
        Verdict::Blocked => Err(SendFailure::Blocked),
        Verdict::Refused(reason) => Err(SendFailure::Permanent(reason)),
    }
}

/// Fetches our own account's device list and the bundles of the devices
/// we hold no session with yet, and applies them (device_sessions.rs).
async fn fetch_own_devices(local: Local<'_>, conn: &Connection) -> Result<(), SendFailure> {
    let me = local.me.username.as_str();
    let known = local.store.tx(|tx| tx.session_devices(me))?;
    let served = device_lists::list_devices_signed(conn)
        .await
        .map_err(transport_failure)?;
    let checked = local
        .store
        .tx(|tx| {
            device_lists::check(
                tx,
                me,
                local.me.identity.public(),
                &served.signed_device_list,
            )
        })?
        .map_err(|refusal| SendFailure::Permanent(refusal.into()))?;
    let (devices, unknown) = device_sessions::own_devices_to_fetch(
        local.me,
        served.devices.iter().map(|d| d.device_id),
        &checked,
        &known,
    );
    let mut bundles = Vec::new();
    if !unknown.is_empty() {
        for proto in fetch_bundles(conn, me, unknown).await?.bundles {
            if let Ok(bundle) = bundle_from_proto(&proto) {
                bundles.push((proto.device_id, bundle));
            }
        }
    }
    let events = local.store.tx(|tx| {
        device_sessions::apply_own_bundles(local.me, tx, &known, &devices, &bundles, &checked)
    })?;
    for event in events {
        local.events.emit(event);
    }
    Ok(())
}

/// Checks the signed list served with `bundles` under the identity we
/// trust for `username` (the one on record, else the one its bundles
/// carry: trust on first use). When the bundles carry another identity
/// than the one on record the list is not checked here: the identity
/// change holds the send first (and the list signed by the new identity
/// is checked once the user accepted it).
fn check_contact_list(
    store: &SharedStore,
    username: &str,
    contact: Option<&Contact>,
    bundles: &PrekeyBundles,
) -> Result<Checked, SendFailure> {
    let identities: Vec<[u8; 32]> = bundles
        .bundles
        .iter()
        .filter_map(|p| bundle_from_proto(p).ok())
        .map(|b| b.identity.to_bytes())
        .collect();
    let Some(trusted) = contact
        .map(|c| c.identity)
        .or_else(|| identities.first().copied())
    else {
        return Ok(Checked::Unlisted);
    };
    if identities.iter().any(|i| *i != trusted) {
        return Ok(Checked::Unlisted);
    }
    let Ok(identity) = microbot_crypto::IdentityKey::from_bytes(&trusted) else {
        return Ok(Checked::Unlisted);
    };
    store
        .tx(|tx| device_lists::check(tx, username, &identity, &bundles.signed_device_list))?
        .map_err(|refusal| SendFailure::Permanent(refusal.into()))
}

/// Encrypts `content` for every device of `to` and our other devices,
/// saving each session before returning. Returns the envelopes and how many
/// of them go to the recipient's devices.
pub(crate) fn encrypt_for(
    store: &SharedStore,
    us: &ThisDevice,
    to: &str,
    content: &Content,
) -> Result<(Vec<OutgoingEnvelope>, usize), StoreError> {
    let me = us.username.as_str();
    let for_recipient = encode_plaintext(content);
    let transcript = Content::sync_sent(crate::messages::new_id(), crate::now_ms(), to, content);
    let for_own = encode_plaintext(&transcript);
    store.tx(|tx| {
        let mut envelopes = Vec::new();
        let mut to_recipient = 0;
        let mut targets = vec![(me, &for_own)];
        if to != me {
            targets.insert(0, (to, &for_recipient));
        }
        let trusted = tx.contact(to)?.map(|c| c.identity);
        for (username, plaintext) in targets {
            for device in tx.session_devices(username)? {
                if username == me && device == us.device_id {
                    continue;
                }
                let Some(mut stored) = tx.sessions(username, device)?.into_iter().next() else {
                    continue;
                };
                let identity = stored.session.remote_identity().to_bytes();
                let expected = if username == me {
                    Some(us.identity.public().to_bytes())
                } else {
                    trusted
                };
                if Some(identity) != expected {
                    continue;
                }
                match stored.session.encrypt(&mut rand::rng(), plaintext) {
                    Ok(ciphertext) => {
                        tx.save_session(username, device, &stored.session)?;
                        if username != me {
                            to_recipient += 1;
                        }
                        envelopes.push(OutgoingEnvelope {
                            recipient_device_id: device,
                            ciphertext: Bytes::from(ciphertext),
                        });
                    }
                    Err(error) => tracing::warn!(device, %error, "cannot encrypt for device"),
                }
            }
        }
        Ok((envelopes, to_recipient))
    })
}

/// The result of decrypting one envelope inside a store transaction.
pub(crate) struct Decrypted {
    /// The plaintext.
    pub plaintext: zeroize::Zeroizing<Vec<u8>>,
    /// The sender's identity, now authenticated.
    pub identity: [u8; 32],
}

/// Why an envelope could not be decrypted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecryptFailure {
    /// No session decrypts it / the handshake failed.
    #[error("{0}")]
    Session(#[from] microbot_crypto::SessionError),
    /// A ratchet message for a device we hold no session with.
    #[error("no session with the sending device")]
    NoSession,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Decrypts `ciphertext` from (`sender`, `device`) and saves the session
/// (and our prekeys, when a one-time prekey was used) in `tx`.
pub(crate) fn decrypt(
    us: &ThisDevice,
    tx: &Tx<'_>,
    sender: &str,
    device: u64,
    ciphertext: &[u8],
) -> Result<Decrypted, DecryptFailure> {
    let rng = &mut rand::rng();
    let sessions = tx.sessions(sender, device)?;
    let (session, plaintext) = match Session::peek(ciphertext)? {
        MessageKind::PreKey { base_key, .. } => {
            match sessions
                .into_iter()
                .find(|s| s.session.base_key() == &base_key)
            {
                Some(mut stored) => {
                    let plaintext = stored.session.decrypt(rng, ciphertext)?;
                    (stored.session, plaintext)
                }
                None => {
                    let bytes = tx
                        .secret("prekeys", META_PREKEYS)?
                        .ok_or(StoreError::Corrupt { what: "prekeys" })?;
                    let mut prekeys = LocalPreKeys::from_bytes(&us.identity, &bytes)
                        .map_err(|_| StoreError::Corrupt { what: "prekeys" })?;
                    let (session, plaintext) =
                        Session::accept(rng, &us.identity, &mut prekeys, ciphertext)?;
                    tx.set_secret(META_PREKEYS, &prekeys.to_bytes())?;
                    (session, plaintext)
                }
            }
        }
        MessageKind::Ratchet => {
            let mut last_error = DecryptFailure::NoSession;
            let mut found = None;
            for mut stored in sessions {
                match stored.session.decrypt(rng, ciphertext) {
                    Ok(plaintext) => {
                        found = Some((stored.session, plaintext));
                        break;
                    }
                    Err(error) => last_error = error.into(),
                }
            }
            found.ok_or(last_error)?
        }
    };
    tx.save_session(sender, device, &session)?;
    Ok(Decrypted {
        plaintext: zeroize::Zeroizing::new(plaintext),
        identity: session.remote_identity().to_bytes(),
    })
}

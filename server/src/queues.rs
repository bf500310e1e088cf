//! Device queues (SPEC.md §12.5): atomic multi-recipient send acknowledged
//! after a durable commit, push to connected recipients, ordered fetch,
//! delete on acknowledgement, cap and time-to-live.
//!
//! Not owned here: the envelope bytes (opaque ciphertext; never logged), the
//! SQL (storage/), who is connected (bus/).

use std::collections::HashSet;
use std::sync::Arc;

use microbot_protocol::transport::{
    AckEnvelopesRequest, Envelope, Envelopes, FetchEnvelopesRequest, Push, SendRequest,
    SendResponse, push,
};

use crate::auth::devices::Caller;
use crate::bus::BusEvent;
use crate::state::ServerState;
use crate::storage::{
    FetchPage, OutgoingEnvelope, OwnedSendMeta, Storage, StorageResult, StoredEnvelope,
};

mod error;

pub use error::QueueError;

/// Default envelopes per fetch.
pub const DEFAULT_FETCH_LIMIT: u32 = 100;
/// Most envelopes per fetch.
pub const MAX_FETCH_LIMIT: u32 = 1000;
/// Most envelopes in one send.
pub const MAX_ENVELOPES_PER_SEND: usize = 1000;
/// Most ids in one ack.
pub const MAX_ACK_IDS: usize = 1000;
/// Bytes of frame budget counted per envelope besides its ciphertext.
pub const ENVELOPE_OVERHEAD: usize = 128;

/// The wire form of a stored envelope.
pub fn envelope_proto(e: StoredEnvelope) -> Envelope {
    Envelope {
        envelope_id: e.id,
        sender_username: e.sender_username,
        sender_device_id: e.sender_device_id,
        server_timestamp_ms: e.server_timestamp_ms,
        ciphertext: e.ciphertext,
        group_id: e.group_id.map(bytes::Bytes::from).unwrap_or_default(),
    }
}

/// Pushes a queued envelope to the device's live connections; when it has
/// none, queues a webhook notice (if configured).
pub fn deliver(state: &ServerState, device_id: u64, envelope: Envelope) {
    let push = Push {
        event: Some(push::Event::Envelope(envelope)),
    };
    publish(state, device_id, push);
}

pub(crate) fn publish(state: &ServerState, device_id: u64, push: Push) {
    let accepted = match &push.event {
        Some(push::Event::Envelope(e)) => Some(e.server_timestamp_ms),
        _ => None,
    };
    let reached = state.bus.publish(device_id, BusEvent::Push(Box::new(push)));
    if reached == 0 {
        if let Some(webhooks) = &state.webhooks {
            webhooks.notify(&state.metrics, device_id);
        }
    } else {
        state.metrics.messages_out.inc();
        if let Some(accepted) = accepted {
            state.metrics.observe_delivery(accepted, state.now_ms());
        }
    }
}

/// `SendRequest`, first half: everything it is checked for before its
/// envelopes go to storage — their shape, `complete_accounts`, the fan-out
/// limit (which it charges) — returning the envelopes that
/// [`store_and_push`] then stores all or none and pushes, answering only
/// after the commit. A connection runs this in request order and hands the
/// envelopes to storage before it takes the next request (dispatch.rs).
///
/// # Errors
/// `INVALID_ARGUMENT`, `UNKNOWN_ACCOUNT` and `MISSING_DEVICES` for
/// `complete_accounts`, the fan-out limit's `RATE_LIMITED`.
pub async fn checked_send(
    state: &Arc<ServerState>,
    caller: &Caller,
    request: SendRequest,
) -> Result<Vec<OutgoingEnvelope>, QueueError> {
    let (envelopes, seen) =
        checked_envelopes(state, request.envelopes, MAX_ENVELOPES_PER_SEND, "a send")?;
    if !request.complete_accounts.is_empty() {
        check_complete(state, caller, request.complete_accounts, seen).await?;
    }
    // One token per recipient device (SPEC.md §12.12).
    state
        .limits
        .charge_fan_out(&state.metrics, caller.account_id, envelopes.len())?;
    Ok(envelopes)
}

/// The envelopes of a send, checked (SPEC.md §12.5, §19.8): 1 to
/// `max_count` of them (`what` names the request in the error), each
/// ciphertext 1 to `max_envelope_len` bytes, at most one per recipient
/// device. Returns them with the set of addressed devices.
///
/// # Errors
/// `INVALID_ARGUMENT` naming the first rule broken.
pub(crate) fn checked_envelopes(
    state: &ServerState,
    envelopes: Vec<microbot_protocol::transport::OutgoingEnvelope>,
    max_count: usize,
    what: &'static str,
) -> Result<(Vec<OutgoingEnvelope>, HashSet<u64>), QueueError> {
    if envelopes.is_empty() || envelopes.len() > max_count {
        return Err(QueueError::EnvelopeCount {
            what,
            max: max_count,
        });
    }
    let max_len = usize::try_from(state.config.max_envelope_len).unwrap_or(usize::MAX);
    let mut seen = HashSet::with_capacity(envelopes.len());
    let mut checked = Vec::with_capacity(envelopes.len());
    for e in envelopes {
        if e.ciphertext.is_empty() || e.ciphertext.len() > max_len {
            return Err(QueueError::CiphertextLength);
        }
        if !seen.insert(e.recipient_device_id) {
            return Err(QueueError::DuplicateRecipient);
        }
        checked.push(OutgoingEnvelope {
            recipient_device_id: e.recipient_device_id,
            ciphertext: e.ciphertext,
        });
    }
    Ok((checked, seen))
}

/// Stores checked envelopes from `sender_username`/`sender_device_id`
/// (empty and 0 for a sealed send) all or none, counts them and pushes
/// each to its device; answers once the commit is durable.
///
/// # Errors
/// What storage refuses (`QUEUE_FULL` with the devices concerned).
pub(crate) async fn store_and_push(
    state: &Arc<ServerState>,
    sender_username: String,
    sender_device_id: u64,
    envelopes: Vec<OutgoingEnvelope>,
) -> Result<SendResponse, QueueError> {
    let now = state.now_ms();
    let ttl_ms = state.config.envelope_ttl_secs.saturating_mul(1000);
    let meta = OwnedSendMeta {
        sender_username: sender_username.clone(),
        sender_device_id,
        now_ms: now,
        expires_at_ms: now.saturating_add(ttl_ms),
        max_queue_len: state.config.max_queue_len,
        max_per_sender: state.config.max_queue_per_sender(),
    };
    // Answered only once the envelopes are durable (SPEC.md §12.7): the
    // backend's batching writer resolves this after its commit.
    let ids = state.storage.enqueue(&meta.borrowed(), &envelopes).await?;
    tracing::debug!(sender_device_id, recipients = ids.len(), "envelopes stored");
    state
        .metrics
        .messages_in
        .add(u64::try_from(ids.len()).unwrap_or(0));
    for (id, envelope) in ids.into_iter().zip(envelopes) {
        let push = Push {
            event: Some(push::Event::Envelope(envelope_proto(StoredEnvelope {
                id,
                device_id: envelope.recipient_device_id,
                sender_username: sender_username.clone(),
                sender_device_id,
                server_timestamp_ms: now,
                ciphertext: envelope.ciphertext,
                group_id: None,
            }))),
        };
        publish(state, envelope.recipient_device_id, push);
    }
    Ok(SendResponse {
        server_timestamp_ms: now,
        skipped_device_ids: Vec::new(),
    })
}

/// Most accounts one send may name in `SendRequest.complete_accounts`.
pub const MAX_COMPLETE_ACCOUNTS: usize = 8;

/// `SendRequest.complete_accounts` (SPEC.md §12.7): every device of each
/// named account that has published prekeys, except the sending device,
/// must be among the `addressed` recipients. Read before the enqueue, so a
/// device linked in between is caught by the sender's next send.
///
/// # Errors
/// `INVALID_ARGUMENT` (too many, duplicate or invalid names),
/// `UNKNOWN_ACCOUNT`, `MISSING_DEVICES` with the devices left out.
async fn check_complete(
    state: &Arc<ServerState>,
    caller: &Caller,
    accounts: Vec<String>,
    addressed: HashSet<u64>,
) -> Result<(), QueueError> {
    if accounts.len() > MAX_COMPLETE_ACCOUNTS {
        return Err(QueueError::TooManyCompleteAccounts);
    }
    let mut names = HashSet::with_capacity(accounts.len());
    for name in &accounts {
        if !crate::auth::valid_username(name) || !names.insert(name.as_str()) {
            return Err(QueueError::BadCompleteAccounts);
        }
    }
    let sender_device_id = caller.device_id;
    let mut missing = Vec::new();
    for name in &accounts {
        let account = state
            .storage
            .account_by_username(name)
            .await?
            .filter(|a| a.active)
            .ok_or(QueueError::UnknownCompleteAccount)?;
        left_out_devices(
            state.storage.as_ref(),
            account.id,
            sender_device_id,
            &addressed,
            &mut missing,
        )
        .await?;
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(QueueError::IncompleteAccounts(missing))
    }
}

/// Adds to `missing` the devices of `account_id` that a send claiming to
/// reach all of them left out: every device that published prekeys (one
/// that never did cannot be addressed), except the sending device and those
/// in `covered`, and, once the account has a signed device list (SPEC.md
/// §20), those it does not list. The one rule behind
/// `SendRequest.complete_accounts` (SPEC.md §12.7) and
/// `SendGroupRequest.key_holders` (§12.10).
///
/// # Errors
/// A storage failure.
pub(crate) async fn left_out_devices(
    storage: &dyn Storage,
    account_id: i64,
    sender_device_id: u64,
    covered: &HashSet<u64>,
    missing: &mut Vec<u64>,
) -> StorageResult<()> {
    let listed = crate::device_lists::listed_devices(storage, account_id).await?;
    for device in storage.account_devices(account_id).await? {
        if device.id == sender_device_id
            || covered.contains(&device.id)
            || listed.as_ref().is_some_and(|l| !l.contains(&device.id))
        {
            continue;
        }
        if storage.prekey_stock(device.id).await?.signed_prekey_id != 0 {
            missing.push(device.id);
        }
    }
    Ok(())
}

/// `FetchEnvelopesRequest` for the logged-in device, cut to fit one frame.
///
/// # Errors
/// `INTERNAL`.
pub async fn fetch(
    state: &Arc<ServerState>,
    device_id: u64,
    request: FetchEnvelopesRequest,
) -> Result<Envelopes, QueueError> {
    let limit = match request.limit {
        0 => DEFAULT_FETCH_LIMIT,
        n => n.min(MAX_FETCH_LIMIT),
    };
    let page = FetchPage {
        limit,
        max_bytes: usize::try_from(state.config.max_frame_len)
            .unwrap_or(usize::MAX)
            .saturating_sub(1024),
        overhead: ENVELOPE_OVERHEAD,
        now_ms: state.now_ms(),
    };
    let (rows, more) = state
        .storage
        .fetch_envelopes(device_id, request.after_envelope_id, page)
        .await?;
    state
        .metrics
        .messages_out
        .add(u64::try_from(rows.len()).unwrap_or(0));
    state
        .metrics
        .observe_deliveries(rows.iter().map(|r| r.server_timestamp_ms), state.now_ms());
    let envelopes = rows.into_iter().map(envelope_proto).collect();
    Ok(Envelopes { envelopes, more })
}

/// `AckEnvelopesRequest`: deletes envelopes of the logged-in device only.
///
/// # Errors
/// `INVALID_ARGUMENT`.
pub async fn ack(
    state: &Arc<ServerState>,
    device_id: u64,
    request: AckEnvelopesRequest,
) -> Result<u32, QueueError> {
    if request.envelope_ids.len() > MAX_ACK_IDS {
        return Err(QueueError::TooManyAcks);
    }
    Ok(state
        .storage
        .ack_envelopes(device_id, &request.envelope_ids)
        .await?)
}

/// Deletes expired envelopes and attachments, and accounts never confirmed
/// within `unconfirmed_account_ttl_secs`, every `purge_interval_secs` until
/// `stop` fires.
pub async fn purge_loop(state: Arc<ServerState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let period = std::time::Duration::from_secs(state.config.purge_interval_secs);
    let mut interval = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                match state.storage.purge_expired(state.now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "expired envelopes deleted"),
                    Err(error) => tracing::warn!(%error, "purge failed"),
                }
                match crate::attachments::purge_expired(&state).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "expired attachments deleted"),
                    Err(error) => tracing::warn!(%error, "attachment purge failed"),
                }
                let ttl_ms = state.config.unconfirmed_account_ttl_secs.saturating_mul(1000);
                if ttl_ms > 0 {
                    let before = state.now_ms().saturating_sub(ttl_ms);
                    match state.storage.purge_unconfirmed_accounts(before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(purged = n, "unconfirmed accounts deleted"),
                        Err(error) => tracing::warn!(%error, "account purge failed"),
                    }
                }
            }
            _ = stop.changed() => return,
        }
    }
}

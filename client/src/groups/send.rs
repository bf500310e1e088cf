//! Sending to a group with a sender key (SPEC.md §6, §12.10).
//!
//! Before a group message leaves, every current member device (members'
//! devices and our own other devices, with a trusted pairwise session) must
//! hold our current sender key: the distribution goes pairwise, in one
//! atomic send, to the devices that lack it, and is recorded per device.
//! If the key was ever given to a device that is no longer a member device
//! (a member removed or left, a device removed), the key is rotated first and
//! the new generation is distributed only to the remaining devices, so the
//! departed cannot read what follows (§6.1). The message is then encrypted
//! once and fanned out by the server (`send_group`), or, when we hold every
//! other member's access key, sent sealed per member (send_sealed.rs).
//!
//! The queue of each recipient device keeps send order, so a distribution
//! always arrives before the first message sealed with it. Not owned here:
//! what the send does next, across its attempts (send_plan.rs: this file
//! carries out its steps), pairwise sessions and device lists
//! (sessions.rs), membership (admin.rs, state.rs).

use std::collections::BTreeSet;

use bytes::Bytes;
use microbot_crypto::sender_key::{GroupId as SenderKeyGroup, OutboundSenderKey};
use microbot_protocol::content::Content;
use microbot_protocol::transport::{
    ErrorCode, OutgoingEnvelope, SendGroupRequest, SendRequest, client_frame::Request, response,
};

use super::GroupId;
use super::refresh::refresh;
use super::send_sealed::{self, MemberOutcome, SealedGroupFailure, SealedMember, SealedSender};
use crate::account_state::Inner;
use crate::error::{OnlineError, StoreError, TransportError};
use crate::messages::encode_plaintext;
use crate::messages::new_id;
use crate::now_ms;
use crate::send_failure::SendFailureReason;
use crate::send_plan::{Refused, SendPlan, Step};
use crate::sessions::{self, SendFailure, Stored, transport_failure, unexpected_answer};
use crate::store::SharedStore;
use crate::store::Tx;
use crate::this_device::ThisDevice;
use crate::transport::Connection;
use microbot_crypto::sealed_sender::ContentType;

/// Most envelopes in one send request (SPEC.md §12.7).
const MAX_ENVELOPES_PER_SEND: usize = 1000;

impl From<OnlineError> for SendFailure {
    fn from(error: OnlineError) -> Self {
        match error {
            OnlineError::NotConnected => {
                SendFailure::Transport(TransportError::ConnectionLost("not connected".into()))
            }
            OnlineError::Transport(error) => transport_failure(error),
            OnlineError::Store(error) => SendFailure::Store(error),
        }
    }
}

/// Sends one queued group content (its `group_id` already set). Returns the
/// server's time stamp and the member devices it skipped (full queues).
pub(crate) async fn send_group(
    inner: &Inner,
    conn: &Connection,
    id: GroupId,
    content: &Content,
) -> Result<Stored, SendFailure> {
    let not_member = || SendFailure::Permanent(SendFailureReason::NotGroupMember { group_id: id });
    // The plan (send_plan.rs) decides when the membership and device lists
    // are fetched, when to send and whether a refusal leads to another
    // attempt; this loop does what it says. A checking attempt lists the
    // devices holding our key and asks the server to check them (SPEC.md
    // §12.10).
    let mut plan = SendPlan::group(&inner.me.username, id, inner.config.device_refresh);
    loop {
        let attempt = match inner.store.tx(|tx| plan.next(tx, now_ms()))? {
            Step::Send(attempt) => attempt,
            Step::Blocked => return Err(SendFailure::Blocked),
            Step::GiveUp(reason) => return Err(SendFailure::Permanent(reason)),
            Step::RefreshGroup => {
                refresh(inner.local(), conn, id).await?;
                plan.group_refreshed();
                continue;
            }
            step => {
                sessions::fetch_for_plan(inner.local(), conn, &mut plan, step).await?;
                continue;
            }
        };
        let members = plan.recipients();
        let sealed_members =
            send_sealed::sealed_members(&inner.store, &inner.me, &inner.config, &members)?;
        match distribute(inner, conn, id, &members, sealed_members.as_deref()).await {
            Ok(()) => {}
            Err(Distribution::DevicesChanged) => {
                plan.devices_changed(false);
                continue;
            }
            Err(Distribution::Failed(failure)) => return Err(failure),
        }
        let plaintext = encode_plaintext(content);
        let (ciphertext, key_holders) = inner.store.tx(|tx| -> Result<_, SendFailure> {
            let mut key = tx
                .outbound_key(&id)?
                .ok_or(StoreError::Corrupt { what: "sender key" })?;
            let ciphertext = key.encrypt(&plaintext).map_err(|_exhausted| {
                SendFailure::Permanent(SendFailureReason::SenderKeyExhausted { group_id: id })
            })?;
            tx.set_outbound_key(&id, &key)?;
            let holders: Vec<u64> = tx
                .shared(&id)?
                .into_iter()
                .filter(|(_, _, key_id)| *key_id == key.key_id())
                .map(|(_, device, _)| device)
                .collect();
            Ok((ciphertext, holders))
        })?;
        if let Some(sealed_members) = &sealed_members {
            match send_sealed::send_sealed_group(
                inner,
                conn,
                id,
                sealed_members,
                &ciphertext,
                content,
            )
            .await
            {
                Ok(stored) => return Ok(stored),
                Err(SealedGroupFailure::DevicesChanged) => {
                    plan.devices_changed(true);
                    continue;
                }
                Err(SealedGroupFailure::AccessDenied) => {
                    tracing::info!(
                        "a member refused our access key; sending the group message identified"
                    );
                }
                Err(SealedGroupFailure::Failed(failure)) => return Err(failure),
            }
        }
        let check = attempt.checks_devices();
        return match conn
            .request(Request::SendGroup(SendGroupRequest {
                group_id: id.to_bytes(),
                ciphertext: Bytes::from(ciphertext),
                key_holders: if check { key_holders } else { Vec::new() },
                check_key_holders: check,
            }))
            .await
        {
            Ok(response::Result::Send(r)) => Ok(Stored {
                server_timestamp_ms: r.server_timestamp_ms,
                skipped_device_ids: r.skipped_device_ids,
            }),
            // A member device we have not seen: the plan re-checks every
            // member's devices and our own (within the retry budget),
            // gives them the key and sends again.
            Err(TransportError::Server(error)) if error.code == ErrorCode::MissingDevices => {
                let refused = inner
                    .store
                    .tx(|tx| plan.refused(tx, error.code, &error.device_ids))?;
                if refused == Refused::TryAgain {
                    continue;
                }
                Err(transport_failure(TransportError::Server(error)))
            }
            Ok(_) => Err(unexpected_answer("group send")),
            Err(TransportError::Server(error))
                if matches!(
                    error.code,
                    ErrorCode::NotGroupMember | ErrorCode::UnknownGroup
                ) =>
            {
                refresh(inner.local(), conn, id).await?;
                Err(not_member())
            }
            Err(error) => Err(transport_failure(error)),
        };
    }
}

/// Why the distribution step did not complete.
enum Distribution {
    /// The server named devices that no longer exist; device lists were reset.
    DevicesChanged,
    /// Anything else.
    Failed(SendFailure),
}

impl From<SendFailure> for Distribution {
    fn from(error: SendFailure) -> Self {
        Distribution::Failed(error)
    }
}

impl From<StoreError> for Distribution {
    fn from(error: StoreError) -> Self {
        Distribution::Failed(SendFailure::Store(error))
    }
}

/// The member devices we can reach: (username, device) with a session whose
/// identity we trust.
fn member_devices(
    us: &ThisDevice,
    tx: &Tx<'_>,
    members: &[String],
) -> Result<BTreeSet<(String, u64)>, StoreError> {
    let me = us.username.as_str();
    let mut targets = BTreeSet::new();
    let own = us.identity.public().to_bytes();
    for name in members.iter().map(String::as_str).chain([me]) {
        let trusted = if name == me {
            Some(own)
        } else {
            tx.contact(name)?
                .filter(|c| c.pending.is_none())
                .map(|c| c.identity)
        };
        let Some(trusted) = trusted else { continue };
        for device in tx.session_devices(name)? {
            if name == me && device == us.device_id {
                continue;
            }
            if tx.session_identity(name, device)? == Some(trusted) {
                targets.insert((name.to_owned(), device));
            }
        }
    }
    Ok(targets)
}

/// Makes sure every member device holds our current sender key, rotating it
/// first when a device that held it is no longer a member device.
/// With `sealed` (every other member's access key known), a member that
/// needs the key gets it on all its devices, sealed (SPEC.md §19.8: a
/// sealed send names every device of the account; a device that already
/// holds this generation ignores the repeat, §6.3).
async fn distribute(
    inner: &Inner,
    conn: &Connection,
    id: GroupId,
    members: &[String],
    sealed: Option<&[SealedMember]>,
) -> Result<(), Distribution> {
    let plan = inner.store.tx(|tx| -> Result<_, StoreError> {
        let targets = member_devices(&inner.me, tx, members)?;
        let existing = tx.outbound_key(&id)?;
        let shared = tx.shared(&id)?;
        let departed = |key: &OutboundSenderKey| {
            shared
                .iter()
                .any(|(u, d, k)| *k != key.key_id() || !targets.contains(&(u.clone(), *d)))
        };
        let key = match existing {
            Some(key) if key.iteration() < u32::MAX && !departed(&key) => key,
            other => {
                let rng = &mut rand::rng();
                let key = match other {
                    Some(old) => {
                        tracing::debug!(group = %id, "a member device left: sender key rotated");
                        old.rotate(rng)
                    }
                    None => OutboundSenderKey::create(
                        rng,
                        SenderKeyGroup::new(id.as_bytes())
                            .map_err(|_| StoreError::Corrupt { what: "group id" })?,
                    ),
                };
                tx.set_outbound_key(&id, &key)?;
                tx.clear_shared(&id)?;
                key
            }
        };
        let have: BTreeSet<(String, u64)> = tx
            .shared(&id)?
            .into_iter()
            .map(|(u, d, _)| (u, d))
            .collect();
        let mut need: BTreeSet<(String, u64)> = targets.difference(&have).cloned().collect();
        if need.is_empty() {
            return Ok(None);
        }
        for member in sealed.unwrap_or_default() {
            if need.iter().any(|(name, _)| name == member.username()) {
                need.extend(
                    member
                        .devices()
                        .iter()
                        .map(|d| (member.username().to_owned(), *d))
                        .filter(|target| targets.contains(target)),
                );
            }
        }
        let distribution = key.distribution().to_bytes();
        let content = Content::sender_key_distribution(
            new_id(),
            now_ms(),
            *id.as_bytes(),
            Bytes::copy_from_slice(&distribution),
        );
        let plaintext = encode_plaintext(&content);
        let mut envelopes = Vec::with_capacity(need.len());
        for (name, device) in need {
            let Some(mut stored) = tx.sessions(&name, device)?.into_iter().next() else {
                continue;
            };
            match stored.session.encrypt(&mut rand::rng(), &plaintext) {
                Ok(ciphertext) => {
                    tx.save_session(&name, device, &stored.session)?;
                    envelopes.push((
                        name,
                        OutgoingEnvelope {
                            recipient_device_id: device,
                            ciphertext: Bytes::from(ciphertext),
                        },
                    ));
                }
                Err(error) => tracing::warn!(device, %error, "cannot encrypt for device"),
            }
        }
        Ok(Some((key.key_id(), envelopes)))
    })?;
    let Some((key_id, mut envelopes)) = plan else {
        return Ok(());
    };
    if let Some(sealed) = sealed {
        envelopes = distribute_sealed(inner, conn, id, key_id, sealed, envelopes).await?;
    }
    let mut rest = envelopes.as_slice();
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_ENVELOPES_PER_SEND));
        rest = tail;
        let request = SendRequest {
            envelopes: chunk.iter().map(|(_, e)| e.clone()).collect(),
            complete_accounts: Vec::new(),
        };
        match conn.request(Request::Send(request)).await {
            Ok(response::Result::Send(_)) => {}
            Ok(_) => {
                return Err(unexpected_answer("send").into());
            }
            Err(TransportError::Server(error))
                if matches!(
                    error.code,
                    ErrorCode::UnknownDevice | ErrorCode::DeviceRemoved
                ) =>
            {
                forget_devices(&inner.store, &error.device_ids, chunk)?;
                return Err(Distribution::DevicesChanged);
            }
            Err(error) => return Err(transport_failure(error).into()),
        }
        inner.store.tx(|tx| -> Result<(), StoreError> {
            for (name, envelope) in chunk {
                tx.add_shared(&id, name, envelope.recipient_device_id, key_id)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Sends the distribution envelopes of `sealed` members sealed, one
/// `SendSealed` per member, and records who now holds the key; returns the
/// envelopes still to send identified (our own devices, and a member that
/// refused our access key).
async fn distribute_sealed(
    inner: &Inner,
    conn: &Connection,
    id: GroupId,
    key_id: u32,
    sealed: &[SealedMember],
    envelopes: Vec<(String, OutgoingEnvelope)>,
) -> Result<Vec<(String, OutgoingEnvelope)>, Distribution> {
    let mut by_member = Vec::new();
    for member in sealed {
        let mine: Vec<(String, OutgoingEnvelope)> = envelopes
            .iter()
            .filter(|(name, _)| name == member.username())
            .cloned()
            .collect();
        if !mine.is_empty() {
            by_member.push((member, mine));
        }
    }
    let mut rest: Vec<(String, OutgoingEnvelope)> = envelopes
        .into_iter()
        .filter(|(name, _)| !sealed.iter().any(|m| m.username() == name))
        .collect();
    if by_member.is_empty() {
        return Ok(rest);
    }
    let sender = SealedSender::open(inner, conn)
        .await
        .map_err(sealed_failure)?;
    let mut outcome = Ok(());
    for (member, mine) in by_member {
        let outgoing = mine.iter().map(|(_, e)| e.clone()).collect();
        match sender.send(member, ContentType::Session, outgoing).await {
            Ok(MemberOutcome::Stored(_)) => {
                inner.store.tx(|tx| -> Result<(), StoreError> {
                    for (name, envelope) in &mine {
                        tx.add_shared(&id, name, envelope.recipient_device_id, key_id)?;
                    }
                    Ok(())
                })?;
            }
            // Not recorded: the next send distributes to them again.
            Ok(MemberOutcome::QueueFull) => {}
            Err(SealedGroupFailure::AccessDenied) => rest.extend(mine),
            Err(failure) => {
                outcome = Err(sealed_failure(failure));
                break;
            }
        }
    }
    sender.close();
    outcome.map(|()| rest)
}

fn sealed_failure(failure: SealedGroupFailure) -> Distribution {
    match failure {
        SealedGroupFailure::DevicesChanged => Distribution::DevicesChanged,
        SealedGroupFailure::Failed(failure) => Distribution::Failed(failure),
        SealedGroupFailure::AccessDenied => {
            Distribution::Failed(SendFailure::Permanent(SendFailureReason::ServerRefused {
                code: ErrorCode::UnidentifiedAccessDenied,
                message: "a member refused our access key".into(),
            }))
        }
    }
}

/// Forgets devices the server no longer knows and marks their accounts'
/// device lists stale.
fn forget_devices(
    store: &SharedStore,
    device_ids: &[u64],
    chunk: &[(String, OutgoingEnvelope)],
) -> Result<(), StoreError> {
    store.tx(|tx| {
        for (name, envelope) in chunk {
            if !device_ids.contains(&envelope.recipient_device_id) {
                continue;
            }
            tx.delete_device(name, envelope.recipient_device_id)?;
            if let Some(mut contact) = tx.contact(name)? {
                contact.devices_checked_ms = 0;
                tx.set_contact(name, &contact)?;
            }
        }
        crate::device_sessions::reset_own_devices_check(tx)
    })
}

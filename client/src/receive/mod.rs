//! Processing one received envelope inside one store transaction (SPEC.md
//! §5, §6, §11): decrypt it (pairwise session, or the sender device's
//! sender key for a group envelope), check who sent it, then store the
//! content and derive the event, or apply it (sender key distributions,
//! group announcements).
//!
//! A group envelope's content must name the group of the sender key that
//! opened it; a sender key distribution is accepted only from a pairwise
//! session; content naming a group over a pairwise session is accepted only
//! from a member (or our own devices).
//!
//! [`process`] is the planner: no I/O, it returns an [`Outcome`] (events
//! to raise, a receipt to queue, a group or a device list to fetch first)
//! and tests.rs drives it over a temp store. deliver.rs is its shell over
//! the connection. Not owned here: fetching envelopes (sync.rs), the
//! cryptography (sessions.rs, crypto-core).

use microbot_protocol::MessageId;
use microbot_protocol::content::{
    Content, TypingAction, content::Body, sent_transcript, sync_message,
};
use microbot_protocol::transport::Envelope;

use crate::error::StoreError;
use crate::events::{Conversation, Event, IncomingMessage, ReceiptKind};
use crate::groups::{GroupId, state as group_state};
use crate::messages::{self, decode_plaintext};
use crate::sessions::{self, DecryptFailure};
use crate::store::{Contact, Tx};
use crate::this_device::ThisDevice;

/// What processing one envelope produced.
pub(crate) enum Outcome {
    /// Already processed earlier (redelivery after a crash, push + fetch).
    Duplicate,
    /// Dropped with an event.
    Failed(Event),
    /// From a device the sender account's verified list does not name
    /// (SPEC.md §20.5): nothing was decrypted, stored or marked; look at
    /// the account's list again, then process it once more or refuse it.
    Unlisted {
        /// The sender account.
        sender: String,
        /// The sender device.
        device: u64,
    },
    /// A sealed group message from someone this device does not know as
    /// a member of the group (it may not know the group at all: made or
    /// joined while it was offline). Nothing was decrypted, stored or
    /// marked; fetch the group, then process it once more or refuse it
    /// with [`refuse_non_member`].
    NotKnownMember {
        /// The group the message names.
        group: GroupId,
        /// The sender account, from the certificate.
        sender: String,
        /// The sender device.
        device: u64,
    },
    /// Stored or applied; emit these events.
    Delivered {
        /// Events to raise.
        events: Vec<Event>,
        /// A delivery receipt to queue.
        receipt: Option<(Conversation, MessageId)>,
        /// A group to fetch from the server (its state is behind).
        refresh: Option<GroupId>,
    },
}

/// An opened envelope: its content and where it belongs.
struct Opened {
    content: Content,
    conversation: Conversation,
    via_group: bool,
    events: Vec<Event>,
}

pub(crate) fn process(
    us: &ThisDevice,
    delivery_receipts: bool,
    tx: &Tx<'_>,
    envelope: &Envelope,
) -> Result<Outcome, StoreError> {
    if tx.envelope_processed(envelope.envelope_id)? {
        return Ok(Outcome::Duplicate);
    }
    let envelope_id = envelope.envelope_id;
    // A sealed envelope (SPEC.md §19) names no sender: the verified
    // certificate inside says who sent it.
    let unsealed;
    let mut certified = None;
    let envelope = if envelope.sender_username.is_empty() {
        match crate::sealed::unseal(us, tx, envelope)? {
            Ok((opened, identity)) => {
                unsealed = opened;
                certified = Some(identity);
                &unsealed
            }
            Err(error) => {
                tx.mark_envelope_processed(envelope_id)?;
                return Ok(Outcome::Failed(Event::DecryptionFailed {
                    sender: String::new(),
                    sender_device: 0,
                    reason: error.to_string(),
                }));
            }
        }
    } else {
        envelope
    };
    let sender = envelope.sender_username.as_str();
    let device = envelope.sender_device_id;
    // SPEC.md §20.5: checked before anything is decrypted, so a refused
    // message leaves every session and sender key as it was. A contact's
    // prekey message under another identity than the trusted one is an
    // identity change (a reinstall): the trusted identity's list has no say
    // over it, the safety-number rule below does (§8).
    if !claims_new_identity(tx, sender, envelope)?
        && crate::device_lists::leaves_out(us, tx, sender, device)?
    {
        return Ok(Outcome::Unlisted {
            sender: sender.to_owned(),
            device,
        });
    }
    // SPEC.md §19.8: for a sealed group message the server could not check
    // membership; the receiver does, against the group as the server last
    // told it, and asks again first when it does not know the sender as a
    // member.
    if certified.is_some()
        && let Some(group) = GroupId::from_slice(&envelope.group_id)
        && !knows_member(tx, &group, sender)?
    {
        return Ok(Outcome::NotKnownMember {
            group,
            sender: sender.to_owned(),
            device,
        });
    }
    tx.mark_envelope_processed(envelope_id)?;
    let failed = |reason: String| {
        Ok(Outcome::Failed(Event::DecryptionFailed {
            sender: sender.to_owned(),
            sender_device: device,
            reason,
        }))
    };
    let opened = if envelope.group_id.is_empty() {
        open_pairwise(us, tx, envelope, certified)?
    } else {
        open_group(tx, envelope)?
    };
    let Opened {
        content,
        conversation,
        via_group,
        mut events,
    } = match opened {
        Ok(opened) => opened,
        Err(reason) => return failed(reason),
    };
    let Some(message_id) = content.id() else {
        return failed("content without a message id".into());
    };
    // A contact's profile key comes only pairwise (SPEC.md §19.7).
    if !via_group {
        crate::sealed::remember_profile_key(us, tx, sender, &content)?;
    }
    let mut refresh = match &conversation {
        Conversation::Group(id) if tx.group(id)?.is_none() => Some(*id),
        _ => None,
    };
    match content.body.as_ref() {
        Some(Body::SenderKeyDistribution(distribution)) => {
            if via_group {
                return failed("a sender key distribution must come pairwise".into());
            }
            if let Err(reason) = group_state::accept_distribution(tx, sender, device, distribution)?
            {
                return failed(reason);
            }
            return Ok(Outcome::Delivered {
                events,
                receipt: None,
                refresh: None,
            });
        }
        Some(Body::GroupChange(change)) => {
            let in_its_group = matches!(&conversation,
                Conversation::Group(id) if id.as_bytes().as_slice() == change.group_id.as_ref());
            if !in_its_group {
                return failed("group change outside its group".into());
            }
            let applied = group_state::apply_change(tx, sender, change)?;
            events.extend(applied.events);
            if applied.refresh {
                refresh = GroupId::from_slice(&change.group_id);
            }
            return Ok(Outcome::Delivered {
                events,
                receipt: None,
                refresh,
            });
        }
        _ => {}
    }
    let me = us.username.as_str();
    let row = messages::row_for(&conversation, sender, &content, message_id);
    if !tx.insert_message(&row)? {
        // The same message again (resent after a crash): already delivered.
        return Ok(Outcome::Delivered {
            events,
            receipt: None,
            refresh,
        });
    }
    // Delivery receipts only in 1:1 conversations: in a group every member
    // would receive every member's receipt for every message.
    let receipt = (delivery_receipts
        && sender != me
        && matches!(conversation, Conversation::Direct(_))
        && matches!(content.body, Some(Body::Text(_) | Body::Attachment(_))))
    .then(|| (conversation.clone(), message_id));
    if matches!(
        content.body,
        Some(
            Body::Text(_)
                | Body::Attachment(_)
                | Body::Edit(_)
                | Body::Delete(_)
                | Body::Reaction(_)
        )
    ) {
        tx.mark_unshown(sender, &message_id, device)?;
    }
    if sender == me
        && let Some(Body::ReadReceipt(read)) = &content.body
    {
        mark_read_elsewhere(tx, &conversation, &read.message_ids)?;
    }
    let receipt_of = match &content.body {
        Some(Body::DeliveryReceipt(r)) => Some((ReceiptKind::Delivered, &r.message_ids)),
        Some(Body::ReadReceipt(r)) => Some((ReceiptKind::Read, &r.message_ids)),
        _ => None,
    };
    if let Some((kind, ids)) = receipt_of {
        let ids: Vec<MessageId> = ids.iter().filter_map(|id| id16(id)).collect();
        crate::delivery::record(tx, me, &conversation, sender, kind, &ids)?;
    }
    let all = u64::MAX;
    if let Some(event) = event_for(tx, &conversation, sender, device, &content, message_id, all)? {
        events.push(event);
    }
    Ok(Outcome::Delivered {
        events,
        receipt,
        refresh,
    })
}

/// Read state from another of our devices (§11.7): the messages it read
/// no longer count as unshown here.
fn mark_read_elsewhere(
    tx: &Tx<'_>,
    conversation: &Conversation,
    ids: &[bytes::Bytes],
) -> Result<(), StoreError> {
    let authors = match conversation {
        Conversation::Direct(peer) => vec![peer.clone()],
        Conversation::Group(id) => tx
            .group(id)?
            .map(|g| g.members.iter().map(|m| m.username.clone()).collect())
            .unwrap_or_default(),
    };
    for id in ids.iter().filter_map(|id| id16(id)) {
        for author in &authors {
            tx.mark_message_shown(author, &id)?;
        }
    }
    Ok(())
}

/// Opens a pairwise envelope and checks the sender's identity.
fn open_pairwise(
    us: &ThisDevice,
    tx: &Tx<'_>,
    envelope: &Envelope,
    certified: Option<[u8; 32]>,
) -> Result<Result<Opened, String>, StoreError> {
    let sender = envelope.sender_username.as_str();
    let device = envelope.sender_device_id;
    let me = us.username.as_str();
    // A device we hold no session with: news if we knew the account's other
    // devices already (a contact), or if it enrolled after this one (ours).
    let seen = tx.session_devices(sender)?;
    let unseen = !seen.contains(&device);
    // An account with a signed device list (SPEC.md §20): news comes from
    // its verified list only, so a device it does not list is never
    // announced; the next send checks the list again instead.
    let listed = crate::device_lists::has_list(tx, sender)?;
    if unseen && listed {
        if sender == me {
            crate::device_sessions::reset_own_devices_check(tx)?;
        } else if let Some(mut contact) = tx.contact(sender)? {
            contact.devices_checked_ms = 0;
            tx.set_contact(sender, &contact)?;
        }
    }
    let added = unseen
        && !listed
        && if sender == me {
            device > us.device_id
        } else {
            !seen.is_empty()
        };
    let decrypted = match sessions::decrypt(us, tx, sender, device, &envelope.ciphertext) {
        Ok(decrypted) => decrypted,
        Err(DecryptFailure::Store(error)) => return Err(error),
        Err(error) => return Ok(Err(error.to_string())),
    };
    if certified.is_some_and(|c| c != decrypted.identity) {
        return Ok(Err(
            "the sender certificate names another identity than the session".into(),
        ));
    }
    let mut events = Vec::new();
    if sender == me {
        if decrypted.identity != us.identity.public().to_bytes() {
            tx.delete_device(me, device)?;
            return Ok(Err("a device of our account uses another identity".into()));
        }
    } else if let Some(event) = check_identity(us, tx, sender, decrypted.identity)? {
        events.push(event);
    }
    if added {
        events.push(Event::DeviceAdded {
            username: sender.to_owned(),
            device_id: device,
        });
    }
    let (mut content, legacy_destination) = match decode_plaintext(&decrypted.plaintext) {
        Ok(decoded) => decoded,
        Err(error) => return Ok(Err(format!("invalid content: {error}"))),
    };
    // §11.7: a transcript from one of our own devices stands for the content
    // it carries, filed under the conversation it names.
    let mut transcript = None;
    if let Some(Body::Sync(sync)) = &content.body {
        if sender != me {
            return Ok(Err("a sync message from another account".into()));
        }
        let Some(sync_message::Kind::Sent(sent)) = &sync.kind else {
            return Ok(Err("a sync message of an unknown kind".into()));
        };
        let (Some(inner), Some(destination)) = (sent.content.as_deref(), &sent.destination) else {
            return Ok(Err("an incomplete sent transcript".into()));
        };
        let conversation = match destination {
            sent_transcript::Destination::DestinationUsername(name) => {
                Conversation::Direct(name.clone())
            }
            sent_transcript::Destination::DestinationGroupId(id) => match GroupId::from_slice(id) {
                Some(id) => Conversation::Group(id),
                None => return Ok(Err("invalid group id".into())),
            },
        };
        transcript = Some(conversation);
        content = inner.clone();
    }
    if let Some(conversation) = transcript {
        return Ok(Ok(Opened {
            content,
            conversation,
            via_group: false,
            events,
        }));
    }
    let distribution = matches!(content.body, Some(Body::SenderKeyDistribution(_)));
    let conversation = if !content.group_id.is_empty() && !distribution {
        let Some(id) = GroupId::from_slice(&content.group_id) else {
            return Ok(Err("invalid group id".into()));
        };
        let member = tx.group(&id)?.is_some_and(|g| g.is_member(sender));
        if sender != me && !member {
            return Ok(Err("group content from a non-member".into()));
        }
        Conversation::Group(id)
    } else {
        match (sender == me, legacy_destination) {
            (true, Some(destination)) => Conversation::Direct(destination),
            (true, None) => Conversation::Direct(me.to_owned()),
            (false, _) => Conversation::Direct(sender.to_owned()),
        }
    };
    Ok(Ok(Opened {
        content,
        conversation,
        via_group: false,
        events,
    }))
}

/// Whether this device knows `sender` as a member of `group`, an active
/// group of its own.
fn knows_member(tx: &Tx<'_>, group: &GroupId, sender: &str) -> Result<bool, StoreError> {
    Ok(tx
        .group(group)?
        .is_some_and(|g| g.active && g.is_member(sender)))
}

/// Refuses a sealed group message whose sender is still no member after
/// the group was fetched (see [`Outcome::NotKnownMember`]): marked
/// processed, the event to raise.
pub(crate) fn refuse_non_member(
    tx: &Tx<'_>,
    envelope: &Envelope,
    sender: &str,
    device: u64,
) -> Result<Event, StoreError> {
    tx.mark_envelope_processed(envelope.envelope_id)?;
    Ok(Event::DecryptionFailed {
        sender: sender.to_owned(),
        sender_device: device,
        reason: "a sealed group message from a non-member".into(),
    })
}

/// Opens a group envelope with the sender device's sender key (a sealed
/// one's sender was checked as a member before: see [`process`]).
fn open_group(tx: &Tx<'_>, envelope: &Envelope) -> Result<Result<Opened, String>, StoreError> {
    let opened = group_state::open_group_message(
        tx,
        &envelope.group_id,
        &envelope.sender_username,
        envelope.sender_device_id,
        &envelope.ciphertext,
    )?;
    let (id, plaintext) = match opened {
        Ok(opened) => opened,
        Err(reason) => return Ok(Err(reason)),
    };
    let content = match decode_plaintext(&plaintext) {
        Ok((content, _)) => content,
        Err(error) => return Ok(Err(format!("invalid content: {error}"))),
    };
    if matches!(content.body, Some(Body::Sync(_))) {
        return Ok(Err("a sync message must come pairwise".into()));
    }
    if content.group_id.as_ref() != id.as_bytes().as_slice() {
        return Ok(Err(
            "the content names another group than its sender key".into()
        ));
    }
    Ok(Ok(Opened {
        content,
        conversation: Conversation::Group(id),
        via_group: true,
        events: Vec::new(),
    }))
}

/// Trust on first use; a different identity later becomes a pending change.
/// Whether `envelope` is a contact's pairwise prekey message claiming an
/// identity other than the one trusted for `username`.
fn claims_new_identity(
    tx: &Tx<'_>,
    username: &str,
    envelope: &Envelope,
) -> Result<bool, StoreError> {
    if !envelope.group_id.is_empty() {
        return Ok(false);
    }
    let Ok(microbot_crypto::session::MessageKind::PreKey { identity, .. }) =
        microbot_crypto::session::Session::peek(&envelope.ciphertext)
    else {
        return Ok(false);
    };
    let claimed = identity.to_bytes();
    Ok(tx
        .contact(username)?
        .is_some_and(|contact| contact.identity != claimed))
}

fn check_identity(
    us: &ThisDevice,
    tx: &Tx<'_>,
    username: &str,
    identity: [u8; 32],
) -> Result<Option<Event>, StoreError> {
    match tx.contact(username)? {
        None => {
            tx.set_contact(
                username,
                &Contact {
                    identity,
                    pending: None,
                    devices_checked_ms: 0,
                },
            )?;
            Ok(None)
        }
        Some(contact) if contact.identity == identity || contact.pending == Some(identity) => {
            Ok(None)
        }
        Some(mut contact) => {
            contact.pending = Some(identity);
            tx.set_contact(username, &contact)?;
            Ok(us
                .safety_number_with(username, &identity)
                .map(|safety_number| Event::SafetyNumberChanged {
                    username: username.to_owned(),
                    safety_number,
                }))
        }
    }
}

fn id16(bytes: &[u8]) -> Option<MessageId> {
    <[u8; 16]>::try_from(bytes).ok()
}

/// The event for newly stored content, using the converged view for texts
/// and edits, as of the rows stored at positions up to `until` (`u64::MAX`:
/// all; shown.rs rebuilds a stored row's event as it was raised).
pub(crate) fn event_for(
    tx: &Tx<'_>,
    conversation: &Conversation,
    author: &str,
    device: u64,
    content: &Content,
    message_id: MessageId,
    until: u64,
) -> Result<Option<Event>, StoreError> {
    let conversation = conversation.clone();
    let Some(body) = content.body.as_ref() else {
        return Ok(None);
    };
    let view = |target: &MessageId| -> Result<_, StoreError> {
        Ok(messages::fold(
            author,
            target,
            &tx.message_events_until(author, target, until)?,
        ))
    };
    Ok(match body {
        Body::Text(_) | Body::Attachment(_) => match view(&message_id)? {
            Some(snapshot) => match snapshot.status {
                messages::MessageStatus::Visible { text, .. } => {
                    Some(Event::Message(Box::new(IncomingMessage {
                        conversation,
                        author: author.to_owned(),
                        author_device: device,
                        message_id,
                        sent_at_ms: content.sent_at_ms,
                        text,
                        reply_to: snapshot.reply_to,
                        attachment: snapshot.attachment,
                    })))
                }
                _ => None,
            },
            None => None,
        },
        Body::Edit(edit) => {
            let Some(target) = id16(&edit.target_message_id) else {
                return Ok(None);
            };
            match view(&target)?.map(|s| s.status) {
                Some(messages::MessageStatus::Visible { text, .. }) => Some(Event::Edited {
                    conversation,
                    author: author.to_owned(),
                    target,
                    text,
                }),
                _ => None,
            }
        }
        Body::Delete(delete) => id16(&delete.target_message_id).map(|target| Event::Deleted {
            conversation,
            author: author.to_owned(),
            target,
        }),
        Body::Reaction(reaction) => {
            id16(&reaction.target_message_id).map(|target| Event::Reaction {
                conversation,
                from: author.to_owned(),
                target,
                emoji: reaction.emoji.clone(),
                removed: reaction.remove,
            })
        }
        Body::ReadReceipt(r) => Some(Event::Receipt {
            conversation,
            from: author.to_owned(),
            kind: ReceiptKind::Read,
            message_ids: r.message_ids.iter().filter_map(|id| id16(id)).collect(),
        }),
        Body::DeliveryReceipt(r) => Some(Event::Receipt {
            conversation,
            from: author.to_owned(),
            kind: ReceiptKind::Delivered,
            message_ids: r.message_ids.iter().filter_map(|id| id16(id)).collect(),
        }),
        Body::Typing(typing) => Some(Event::Typing {
            conversation,
            from: author.to_owned(),
            started: typing.action == TypingAction::Started as i32,
        }),
        Body::GroupChange(_)
        | Body::SenderKeyDistribution(_)
        | Body::CallSignal(_)
        | Body::Sync(_)
        | Body::MiniappEvent(_) => None,
    })
}

mod deliver;
#[cfg(test)]
mod tests;

pub(crate) use deliver::deliver;

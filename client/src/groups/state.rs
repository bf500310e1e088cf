//! Keeping the group records current, inside one store transaction each:
//! the server's `GroupInfo` (from a push, a fetch or the answer to our own
//! change), `GroupChange` announcements from members, sender key
//! distributions, and group messages sealed with a sender key (SPEC.md §6.6).
//!
//! The server's state is the authority on membership (§11.2: a
//! `GroupChange` is believed only as far as the server confirms it); an
//! announcement only brings the name and the metadata key, and tells who
//! left. Events are derived from the difference between the stored and the
//! new state, so the same change reported twice (push and answer) raises
//! one event. Not owned here: requests (admin.rs), sending (send.rs).

use std::collections::BTreeSet;

use microbot_crypto::sender_key::{
    GroupId as SenderKeyGroup, InboundSenderKey, SenderKeyDistribution, SenderKeyRecord,
};
use microbot_protocol::content::{self, GroupChangeKind};
use microbot_protocol::transport;
use zeroize::Zeroizing;

use super::{GROUP_RECORD_VERSION, GroupId, GroupRecord, GroupUpdate, MemberRecord};
use crate::error::StoreError;
use crate::events::Event;
use crate::now_ms;
use crate::store::Tx;
use crate::this_device::ThisDevice;

fn event(id: GroupId, version: u64, update: GroupUpdate) -> Event {
    Event::GroupChanged {
        group_id: id,
        version,
        update,
    }
}

pub(crate) fn empty_record() -> GroupRecord {
    GroupRecord {
        format: GROUP_RECORD_VERSION,
        version: 0,
        active: true,
        members: Vec::new(),
        name: String::new(),
        description: String::new(),
        metadata_key: Vec::new(),
        encrypted_metadata: Vec::new(),
        checked_ms: 0,
        leaving: Vec::new(),
        pending_key: Vec::new(),
        pending_created_by: String::new(),
    }
}

/// Applies the server's state of a group; returns the events for what changed.
pub(crate) fn apply_info(
    us: &ThisDevice,
    tx: &Tx<'_>,
    info: &transport::GroupInfo,
) -> Result<Vec<Event>, StoreError> {
    let Some(id) = GroupId::from_slice(&info.group_id) else {
        return Ok(Vec::new());
    };
    let me = us.username.as_str();
    let members: Vec<MemberRecord> = info
        .members
        .iter()
        .map(|m| MemberRecord {
            username: m.username.clone(),
            role: m.role,
            joined_at_version: m.joined_at_version,
        })
        .collect();
    let is_member = members.iter().any(|m| m.username == me);
    let old = tx.group(&id)?;
    match &old {
        Some(record) if record.version >= info.version => {
            let mut record = record.clone();
            record.checked_ms = now_ms();
            tx.set_group(&id, &record)?;
            return Ok(Vec::new());
        }
        None if !is_member => return Ok(Vec::new()),
        _ => {}
    }
    let mut updates = Vec::new();
    let mut record = match old {
        // A record made from an announcement before the server's state
        // (version 0) is a first sight too.
        Some(record) if record.version > 0 => {
            let before: BTreeSet<&str> =
                record.members.iter().map(|m| m.username.as_str()).collect();
            let after: BTreeSet<&str> = members.iter().map(|m| m.username.as_str()).collect();
            let added: Vec<String> = after.difference(&before).map(|s| (*s).to_owned()).collect();
            let removed: Vec<String> = before
                .difference(&after)
                .filter(|name| !record.leaving.iter().any(|l| l == *name))
                .map(|s| (*s).to_owned())
                .collect();
            if !added.is_empty() {
                updates.push(GroupUpdate::MembersAdded { usernames: added });
            }
            if !removed.is_empty() {
                updates.push(GroupUpdate::MembersRemoved { usernames: removed });
            }
            let roles_changed = members.iter().any(|m| {
                record
                    .members
                    .iter()
                    .any(|o| o.username == m.username && o.role != m.role)
            });
            if roles_changed {
                updates.push(GroupUpdate::RolesChanged);
            }
            record
        }
        provisional => {
            // First sight of a group we belong to. Version 1 is its creation,
            // announced with its name by the creator's `CREATED`.
            if info.version > 1 {
                let joined: Vec<String> = members
                    .iter()
                    .filter(|m| m.joined_at_version == info.version)
                    .map(|m| m.username.clone())
                    .collect();
                if !joined.is_empty() {
                    updates.push(GroupUpdate::MembersAdded { usernames: joined });
                }
            }
            provisional.unwrap_or_else(empty_record)
        }
    };
    record
        .leaving
        .retain(|name| members.iter().any(|m| &m.username == name));
    record.version = info.version;
    record.members = members;
    record.active = is_member;
    record.checked_ms = now_ms();
    if info.encrypted_metadata.as_ref() != record.encrypted_metadata.as_slice() {
        record.encrypted_metadata = info.encrypted_metadata.to_vec();
        updates.extend(record.open_blob(id));
    }
    if !record.active {
        tx.delete_outbound_key(&id)?;
    }
    tx.set_group(&id, &record)?;
    Ok(updates
        .into_iter()
        .map(|u| event(id, info.version, u))
        .collect())
}

/// Marks the group as left by this account (after a successful leave).
pub(crate) fn mark_left(
    us: &ThisDevice,
    tx: &Tx<'_>,
    id: GroupId,
) -> Result<Vec<Event>, StoreError> {
    let Some(mut record) = tx.group(&id)? else {
        return Ok(Vec::new());
    };
    let me = us.username.as_str();
    record.members.retain(|m| m.username != me);
    record.active = false;
    tx.set_group(&id, &record)?;
    tx.delete_group_keys(&id)?;
    Ok(vec![event(
        id,
        record.version,
        GroupUpdate::Left {
            username: me.to_owned(),
        },
    )])
}

/// What applying an announcement produced.
pub(crate) struct Applied {
    /// Events to raise.
    pub events: Vec<Event>,
    /// The announcement is newer than our state: fetch the group.
    pub refresh: bool,
}

/// Applies a member's `GroupChange` announcement (already decrypted and
/// checked against the protocol's limits).
pub(crate) fn apply_change(
    tx: &Tx<'_>,
    sender: &str,
    change: &content::GroupChange,
) -> Result<Applied, StoreError> {
    let Some(id) = GroupId::from_slice(&change.group_id) else {
        return Ok(Applied {
            events: Vec::new(),
            refresh: false,
        });
    };
    let kind = GroupChangeKind::try_from(change.kind).unwrap_or(GroupChangeKind::Unspecified);
    let stored = tx.group(&id)?;
    if let Some(record) = &stored
        && !record.is_member(sender)
        && kind != GroupChangeKind::Created
    {
        // Not a member as far as we know: believe nothing, check the server.
        return Ok(Applied {
            events: Vec::new(),
            refresh: true,
        });
    }
    let mut record = stored.unwrap_or_else(empty_record);
    let mut updates = Vec::new();
    // The name is believed only from the server's blob, which only admins
    // can set: an announced key counts once it opens that blob.
    if let Ok(key) = <[u8; 32]>::try_from(change.metadata_key.as_ref())
        && record.key() != Some(key)
    {
        record.pending_key = key.to_vec();
    }
    // The creator is the group's first admin: a `CREATED` from anyone else
    // (once we know the group) is not a creation.
    let creator = record.version == 0 || record.role_of(sender) == Some(super::GroupRole::Admin);
    if kind == GroupChangeKind::Created && creator {
        record.pending_created_by = sender.to_owned();
    }
    updates.extend(record.open_blob(id));
    if kind == GroupChangeKind::Left {
        if !record.leaving.iter().any(|l| l == sender) {
            record.leaving.push(sender.to_owned());
        }
        updates.push(GroupUpdate::Left {
            username: sender.to_owned(),
        });
    }
    let unconfirmed = !record.pending_key.is_empty() || !record.pending_created_by.is_empty();
    let refresh = change.version > record.version || unconfirmed;
    tx.set_group(&id, &record)?;
    Ok(Applied {
        events: updates
            .into_iter()
            .map(|u| event(id, change.version, u))
            .collect(),
        refresh,
    })
}

/// Stores a sender key distribution received from (`sender`, `device`)
/// over a pairwise session. `Ok(Err(reason))` when it is refused.
pub(crate) fn accept_distribution(
    tx: &Tx<'_>,
    sender: &str,
    device: u64,
    distribution: &content::SenderKeyDistribution,
) -> Result<Result<(), String>, StoreError> {
    let Some(id) = GroupId::from_slice(&distribution.group_id) else {
        return Ok(Err("distribution group id is not 16 bytes".into()));
    };
    let parsed = match SenderKeyDistribution::from_bytes(&distribution.distribution) {
        Ok(parsed) => parsed,
        Err(error) => return Ok(Err(format!("invalid sender key distribution: {error}"))),
    };
    let Ok(group) = SenderKeyGroup::new(id.as_bytes()) else {
        return Ok(Err("invalid group id".into()));
    };
    let mut record = tx
        .inbound_record(&id, sender, device)?
        .unwrap_or_else(SenderKeyRecord::new);
    record.add(InboundSenderKey::new(group, &parsed));
    tx.set_inbound_record(&id, sender, device, &record)?;
    Ok(Ok(()))
}

/// A decrypted group message: its group and padded plaintext.
pub(crate) type GroupPlaintext = (GroupId, Zeroizing<Vec<u8>>);

/// Decrypts a group envelope with the sender device's key and saves the
/// advanced record. `Ok(Err(reason))` when it cannot be decrypted (the
/// record is then unchanged).
pub(crate) fn open_group_message(
    tx: &Tx<'_>,
    group_id: &[u8],
    sender: &str,
    device: u64,
    ciphertext: &[u8],
) -> Result<Result<GroupPlaintext, String>, StoreError> {
    let Some(id) = GroupId::from_slice(group_id) else {
        return Ok(Err("group id is not 16 bytes".into()));
    };
    let Some(mut record) = tx.inbound_record(&id, sender, device)? else {
        return Ok(Err("no sender key from this device for the group".into()));
    };
    match record.decrypt(ciphertext) {
        Ok(plaintext) => {
            tx.set_inbound_record(&id, sender, device, &record)?;
            Ok(Ok((id, Zeroizing::new(plaintext))))
        }
        Err(error) => Ok(Err(error.to_string())),
    }
}

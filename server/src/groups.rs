//! Groups (SPEC.md §12.10): create, add/remove members, leave, roles,
//! encrypted metadata, membership fetch, and send-to-group fan-out.
//!
//! Membership and roles are server state, kept so the server can fan out
//! and authorise; every change bumps the group's version inside one
//! transaction, and a change naming a stale version is refused with the
//! current one (`ERROR_CODE_STALE_GROUP_VERSION`), so concurrent changes
//! land in one order that every member observes through `group_changed`
//! pushes. The name/avatar is an opaque blob the server never reads.
//!
//! Not owned here: the SQL (storage/sqlite/groups.rs), the group's keys
//! (clients distribute Sender Keys inside pairwise sessions).

use std::sync::Arc;

use bytes::Bytes;
use microbot_protocol::transport::{
    self, AddGroupMembersRequest, CreateGroupRequest, GetGroupRequest, GroupInfo, GroupMember,
    LeaveGroupRequest, Push, RemoveGroupMembersRequest, SendGroupRequest, SendResponse,
    SetGroupMetadataRequest, SetGroupRoleRequest, push,
};

use crate::auth::devices::Caller;
use crate::bus::BusEvent;
use crate::limits::quotas::FanOutReservation;
use crate::queues::envelope_proto;
use crate::state::ServerState;
use crate::storage::groups::{GROUP_ID_LEN, GroupRole};
use crate::storage::{
    GroupCaps, GroupChange, GroupChangeOutcome, GroupRecord, SendMeta, StorageError, StoredEnvelope,
};

mod error;

pub use error::GroupError;

/// Largest encrypted metadata blob.
pub const MAX_METADATA_LEN: usize = 64 * 1024;
/// Most usernames named in one request.
pub const MAX_USERNAMES_PER_REQUEST: usize = 1000;

fn group_id(bytes: &[u8]) -> Result<[u8; GROUP_ID_LEN], GroupError> {
    bytes.try_into().map_err(|_| GroupError::GroupIdLength)
}

fn usernames(names: Vec<String>) -> Result<Vec<String>, GroupError> {
    if names.is_empty() || names.len() > MAX_USERNAMES_PER_REQUEST {
        return Err(GroupError::UsernameCount);
    }
    Ok(names)
}

fn metadata(bytes: &[u8]) -> Result<Vec<u8>, GroupError> {
    if bytes.len() > MAX_METADATA_LEN {
        return Err(GroupError::MetadataTooLarge);
    }
    Ok(bytes.to_vec())
}

fn role(value: i32) -> Result<GroupRole, GroupError> {
    match transport::GroupRole::try_from(value) {
        Ok(transport::GroupRole::Member) => Ok(GroupRole::Member),
        Ok(transport::GroupRole::Admin) => Ok(GroupRole::Admin),
        _ => Err(GroupError::BadRole),
    }
}

/// The wire form of a group.
pub fn group_proto(group: &GroupRecord) -> GroupInfo {
    GroupInfo {
        group_id: Bytes::copy_from_slice(&group.id),
        version: group.version,
        members: group
            .members
            .iter()
            .map(|m| GroupMember {
                username: m.username.clone(),
                role: match m.role {
                    GroupRole::Member => transport::GroupRole::Member as i32,
                    GroupRole::Admin => transport::GroupRole::Admin as i32,
                },
                joined_at_version: m.joined_at_version,
            })
            .collect(),
        encrypted_metadata: Bytes::from(group.metadata.clone()),
    }
}

/// Pushes the new state to every device concerned and answers with it.
fn announce(state: &ServerState, outcome: GroupChangeOutcome) -> GroupInfo {
    let info = group_proto(&outcome.group);
    for device in outcome.notify_devices {
        let push = Push {
            event: Some(push::Event::GroupChanged(info.clone())),
        };
        state.bus.publish(device, BusEvent::Push(Box::new(push)));
    }
    state.metrics.group_changes.inc();
    info
}

/// `CreateGroupRequest`: the creator becomes the first admin; version 1.
///
/// # Errors
/// `INVALID_ARGUMENT` (bad id, id taken, too large), `UNKNOWN_ACCOUNT`,
/// `RATE_LIMITED`, `QUOTA_EXCEEDED` (`max_groups_per_account` created).
pub async fn create(
    state: &Arc<ServerState>,
    caller: &Caller,
    request: CreateGroupRequest,
) -> Result<GroupInfo, GroupError> {
    let id = group_id(&request.group_id)?;
    if request.members.len() > MAX_USERNAMES_PER_REQUEST {
        return Err(GroupError::TooManyMembers);
    }
    let meta = metadata(&request.encrypted_metadata)?;
    let creator = caller.account_id;
    state
        .limits
        .check_group_change_account(&state.metrics, creator)?;
    state.limits.check_group_change_group(&state.metrics, &id)?;
    let caps = GroupCaps {
        max_members: state.config.max_group_members,
        max_created: state.config.max_groups_per_account,
    };
    let outcome = state
        .storage
        .create_group_capped(&id, creator, &request.members, &meta, caps, state.now_ms())
        .await?;
    Ok(announce(state, outcome))
}

async fn change(
    state: &Arc<ServerState>,
    caller: &Caller,
    id: &[u8],
    expected_version: Option<u64>,
    change: GroupChange,
) -> Result<GroupInfo, GroupError> {
    let id = group_id(id)?;
    let actor = caller.account_id;
    // Leaving is never limited: a member can always get out. Only an admin
    // (checked first, so a non-admin cannot spend them) takes one of the
    // group's tokens; the storage transaction checks again.
    if !matches!(change, GroupChange::Leave) {
        state
            .limits
            .check_group_change_account(&state.metrics, actor)?;
        let group = state.storage.group(&id, actor).await?;
        let admin = group
            .members
            .iter()
            .any(|m| m.account_id == actor && m.role == GroupRole::Admin);
        if !admin {
            return Err(StorageError::NotGroupAdmin.into());
        }
        state.limits.check_group_change_group(&state.metrics, &id)?;
    }
    let outcome = state
        .storage
        .change_group(
            &id,
            actor,
            expected_version,
            &change,
            state.config.max_group_members,
        )
        .await?;
    Ok(announce(state, outcome))
}

/// `AddGroupMembersRequest` (admins only, version-checked).
///
/// # Errors
/// `UNKNOWN_GROUP`, `NOT_GROUP_MEMBER`, `NOT_GROUP_ADMIN`,
/// `STALE_GROUP_VERSION`, `UNKNOWN_ACCOUNT`, `INVALID_ARGUMENT`,
/// `RATE_LIMITED` (per account and per group).
pub async fn add(
    state: &Arc<ServerState>,
    caller: &Caller,
    r: AddGroupMembersRequest,
) -> Result<GroupInfo, GroupError> {
    let names = usernames(r.usernames)?;
    change(
        state,
        caller,
        &r.group_id,
        Some(r.expected_version),
        GroupChange::Add(names),
    )
    .await
}

/// `RemoveGroupMembersRequest` (admins only, version-checked).
///
/// # Errors
/// As [`add`].
pub async fn remove(
    state: &Arc<ServerState>,
    caller: &Caller,
    r: RemoveGroupMembersRequest,
) -> Result<GroupInfo, GroupError> {
    let names = usernames(r.usernames)?;
    change(
        state,
        caller,
        &r.group_id,
        Some(r.expected_version),
        GroupChange::Remove(names),
    )
    .await
}

/// `LeaveGroupRequest` (any member; not version-checked).
///
/// # Errors
/// `UNKNOWN_GROUP`, `NOT_GROUP_MEMBER`.
pub async fn leave(
    state: &Arc<ServerState>,
    caller: &Caller,
    r: LeaveGroupRequest,
) -> Result<(), GroupError> {
    change(state, caller, &r.group_id, None, GroupChange::Leave)
        .await
        .map(|_| ())
}

/// `SetGroupRoleRequest` (admins only, version-checked).
///
/// # Errors
/// As [`add`]; `INVALID_ARGUMENT` for demoting the last admin.
pub async fn set_role(
    state: &Arc<ServerState>,
    caller: &Caller,
    r: SetGroupRoleRequest,
) -> Result<GroupInfo, GroupError> {
    let role = role(r.role)?;
    let change_ = GroupChange::SetRole(r.username, role);
    change(
        state,
        caller,
        &r.group_id,
        Some(r.expected_version),
        change_,
    )
    .await
}

/// `SetGroupMetadataRequest` (admins only, version-checked).
///
/// # Errors
/// As [`add`].
pub async fn set_metadata(
    state: &Arc<ServerState>,
    caller: &Caller,
    r: SetGroupMetadataRequest,
) -> Result<GroupInfo, GroupError> {
    let meta = metadata(&r.encrypted_metadata)?;
    let change_ = GroupChange::SetMetadata(meta);
    change(
        state,
        caller,
        &r.group_id,
        Some(r.expected_version),
        change_,
    )
    .await
}

/// `GetGroupRequest` (members only).
///
/// # Errors
/// `UNKNOWN_GROUP`, `NOT_GROUP_MEMBER`.
pub async fn get(
    state: &Arc<ServerState>,
    caller: &Caller,
    r: GetGroupRequest,
) -> Result<GroupInfo, GroupError> {
    let id = group_id(&r.group_id)?;
    let actor = caller.account_id;
    let group = state.storage.group(&id, actor).await?;
    Ok(group_proto(&group))
}

/// Most ids in `SendGroupRequest.key_holders`.
pub const MAX_KEY_HOLDERS: usize = 65_536;

/// `SendGroupRequest.key_holders` (SPEC.md §12.10): every device of every
/// member with published prekeys, except the sending device, must be
/// listed. Read before the fan-out, like `SendRequest.complete_accounts`.
///
/// # Errors
/// `INVALID_ARGUMENT` (too many ids), `UNKNOWN_GROUP`, `NOT_GROUP_MEMBER`,
/// `MISSING_DEVICES` with the member devices left out.
async fn check_key_holders(
    state: &Arc<ServerState>,
    caller: &Caller,
    id: [u8; GROUP_ID_LEN],
    holders: &[u64],
) -> Result<(), GroupError> {
    if holders.len() > MAX_KEY_HOLDERS {
        return Err(GroupError::TooManyKeyHolders);
    }
    let holders: std::collections::HashSet<u64> = holders.iter().copied().collect();
    let (actor, sender_device) = (caller.account_id, caller.device_id);
    let mut missing = Vec::new();
    for member in state.storage.group(&id, actor).await?.members {
        crate::queues::left_out_devices(
            state.storage.as_ref(),
            member.account_id,
            sender_device,
            &holders,
            &mut missing,
        )
        .await?;
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(GroupError::MissingKeyHolders(missing))
    }
}

/// A group message that passed every check before storage: the group and
/// the ciphertext to queue for its members.
#[derive(Debug)]
pub struct CheckedGroupSend {
    id: [u8; GROUP_ID_LEN],
    ciphertext: Bytes,
    /// What admission took from the sender's fan-out bucket.
    reserved: FanOutReservation,
}

/// `SendGroupRequest`, first half: its group id and ciphertext length,
/// `key_holders` when asked, and the fan-out limit's admission (which
/// reserves the group's last fan-out, so the group sends a connection
/// pipelines behind this one meet the bucket as if it were charged) — returning
/// what [`store_and_push`] then stores and pushes. A connection whose
/// storage keeps group sends in order runs this in request order and hands
/// the message to storage before it takes the next request (dispatch.rs).
///
/// # Errors
/// `INVALID_ARGUMENT`, `UNKNOWN_GROUP`, `NOT_GROUP_MEMBER`, `RATE_LIMITED`,
/// `MISSING_DEVICES` (with `check_key_holders`).
pub async fn checked_send(
    state: &Arc<ServerState>,
    caller: &Caller,
    r: SendGroupRequest,
) -> Result<CheckedGroupSend, GroupError> {
    let id = group_id(&r.group_id)?;
    let max_len = usize::try_from(state.config.max_envelope_len).unwrap_or(usize::MAX);
    if r.ciphertext.is_empty() || r.ciphertext.len() > max_len {
        return Err(GroupError::CiphertextLength);
    }
    if r.check_key_holders {
        check_key_holders(state, caller, id, &r.key_holders).await?;
    }
    let reserved = state
        .limits
        .admit_group_fan_out(&state.metrics, caller.account_id, &id)?;
    Ok(CheckedGroupSend {
        id,
        ciphertext: r.ciphertext,
        reserved,
    })
}

/// `SendGroupRequest`, second half: stores the ciphertext once and queues
/// it for every other member device whose queue has room, in one
/// transaction (storage's first step queues the write, so writes start in
/// call order), charges the fan-out (one token per device reached, SPEC.md
/// §12.10, §12.12), then pushes each copy. The devices without room are
/// listed in `SendResponse.skipped_device_ids`.
///
/// # Errors
/// `UNKNOWN_GROUP`, `NOT_GROUP_MEMBER` (the membership is read by the
/// storing transaction), storage errors.
pub async fn store_and_push(
    state: &Arc<ServerState>,
    caller: &Caller,
    checked: CheckedGroupSend,
) -> Result<SendResponse, GroupError> {
    let CheckedGroupSend {
        id,
        ciphertext,
        reserved,
    } = checked;
    let now = state.now_ms();
    let ttl_ms = state.config.envelope_ttl_secs.saturating_mul(1000);
    let sender_device_id = caller.device_id;
    let meta = SendMeta {
        sender_username: &caller.username,
        sender_device_id,
        now_ms: now,
        expires_at_ms: now.saturating_add(ttl_ms),
        max_queue_len: state.config.max_queue_len,
        max_per_sender: state.config.max_queue_per_sender(),
    };
    let fan_out = state
        .storage
        .enqueue_group(&id, caller.account_id, &meta, &ciphertext)
        .await?;
    state
        .limits
        .settle_group_fan_out(caller.account_id, &id, reserved, fan_out.delivered.len());
    state.metrics.messages_in.inc();
    state
        .metrics
        .fan_out
        .observe(fan_out.delivered.len() as f64);
    tracing::debug!(
        sender_device_id,
        recipients = fan_out.delivered.len(),
        skipped = fan_out.skipped.len(),
        "group message stored"
    );
    for copy in fan_out.delivered {
        let envelope = envelope_proto(StoredEnvelope {
            id: copy.envelope_id,
            device_id: copy.device_id,
            sender_username: caller.username.clone(),
            sender_device_id,
            server_timestamp_ms: now,
            ciphertext: ciphertext.clone(),
            group_id: Some(id.to_vec()),
        });
        crate::queues::deliver(state, copy.device_id, envelope);
    }
    Ok(SendResponse {
        server_timestamp_ms: now,
        skipped_device_ids: fan_out.skipped,
    })
}

//! Group records and the [`GroupStorage`] half of the storage trait
//! (SPEC.md §12.10 "Groups", §14.1).
//!
//! Membership is per account; fan-out reaches every non-removed device of
//! every member account. Every change runs in one transaction that checks
//! the expected version and bumps it, so concurrent changes are serialised
//! into one order that every member sees.
//!
//! Not owned here: request validation and pushes (groups.rs).

use super::{SendMeta, StorageResult};

/// The outcome of a group send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupFanOut {
    /// The copies stored, one per recipient device with room.
    pub delivered: Vec<FanOut>,
    /// Recipient devices whose queue was full (or held the sender's share
    /// of it): nothing was stored for them.
    pub skipped: Vec<u64>,
}

/// Length of a group id.
pub const GROUP_ID_LEN: usize = 16;

/// A member's role (the wire `GroupRole` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupRole {
    /// May send and leave.
    Member = 1,
    /// May also change membership, roles and metadata.
    Admin = 2,
}

impl GroupRole {
    /// From the stored / wire integer; `None` for anything else.
    pub fn from_i64(value: i64) -> Option<Self> {
        match value {
            1 => Some(Self::Member),
            2 => Some(Self::Admin),
            _ => None,
        }
    }
}

/// One member of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    /// The member account.
    pub account_id: i64,
    /// Its username.
    pub username: String,
    /// Its role.
    pub role: GroupRole,
    /// Group version at which it joined.
    pub joined_at_version: u64,
}

/// A group's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRecord {
    /// 16-byte id chosen by the creator.
    pub id: [u8; GROUP_ID_LEN],
    /// Increases by one with every change.
    pub version: u64,
    /// Opaque encrypted name/avatar.
    pub metadata: Vec<u8>,
    /// Members ordered by join version, then account id.
    pub members: Vec<MemberRecord>,
}

/// A membership or metadata change.
#[derive(Clone, Debug)]
pub enum GroupChange {
    /// Add these accounts as members (admin only).
    Add(Vec<String>),
    /// Remove these members (admin only; not oneself).
    Remove(Vec<String>),
    /// The actor leaves (any member; no version check).
    Leave,
    /// Set a member's role (admin only).
    SetRole(String, GroupRole),
    /// Replace the encrypted metadata (admin only).
    SetMetadata(Vec<u8>),
}

/// The result of a change.
#[derive(Clone, Debug)]
pub struct GroupChangeOutcome {
    /// The group after the change; its member list is empty when the last
    /// member left and the group was deleted.
    pub group: GroupRecord,
    /// Devices of every account that was a member before or after the
    /// change: they get a `group_changed` push.
    pub notify_devices: Vec<u64>,
}

/// One fanned-out copy of a group message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanOut {
    /// The envelope id in the recipient's queue.
    pub envelope_id: u64,
    /// The recipient device.
    pub device_id: u64,
}

/// Caps on a group creation (SPEC.md §12.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCaps {
    /// Most members of the group.
    pub max_members: u32,
    /// Most existing groups the creator may have created, this one included.
    pub max_created: u32,
}

/// Group operations of [`super::Storage`]. Every method is one transaction.
#[async_trait::async_trait]
pub trait GroupStorage {
    /// Creates a group with `creator` as admin and `members` as members,
    /// all joined at version 1, and records `creator` as its creator.
    /// Refused with [`super::StorageError::TooManyGroups`] when `creator`
    /// has created `caps.max_created` groups that still exist.
    async fn create_group_capped(
        &self,
        id: &[u8; GROUP_ID_LEN],
        creator: i64,
        members: &[String],
        metadata: &[u8],
        caps: GroupCaps,
        now_ms: u64,
    ) -> StorageResult<GroupChangeOutcome>;
    /// [`GroupStorage::create_group_capped`] with no cap on created groups.
    async fn create_group(
        &self,
        id: &[u8; GROUP_ID_LEN],
        creator: i64,
        members: &[String],
        metadata: &[u8],
        max_members: u32,
        now_ms: u64,
    ) -> StorageResult<GroupChangeOutcome> {
        let caps = GroupCaps {
            max_members,
            max_created: u32::MAX,
        };
        self.create_group_capped(id, creator, members, metadata, caps, now_ms)
            .await
    }
    /// Applies a change by `actor` if `expected_version` (when given) is
    /// current; bumps the version by one.
    async fn change_group(
        &self,
        id: &[u8; GROUP_ID_LEN],
        actor: i64,
        expected_version: Option<u64>,
        change: &GroupChange,
        max_members: u32,
    ) -> StorageResult<GroupChangeOutcome>;
    /// The group as seen by a member.
    async fn group(&self, id: &[u8; GROUP_ID_LEN], actor: i64) -> StorageResult<GroupRecord>;
    /// Stores `ciphertext` once and queues a reference to it for every
    /// member device except the sender's whose queue has room; the devices
    /// without room are skipped and named in the result.
    async fn enqueue_group(
        &self,
        id: &[u8; GROUP_ID_LEN],
        sender_account: i64,
        meta: &SendMeta<'_>,
        ciphertext: &[u8],
    ) -> StorageResult<GroupFanOut>;
    /// True when this store runs [`enqueue_group`](Self::enqueue_group)
    /// calls in the order they are first polled, in one order with
    /// `enqueue` and `ack`, so a connection may pipeline group sends with
    /// its other stored writes (SPEC.md §12.4 rule 4). False here: a store
    /// that fans out in a transaction of its own commits concurrent calls in
    /// any order, and a connection waits for each group send's answer.
    fn orders_group_sends(&self) -> bool {
        false
    }
}

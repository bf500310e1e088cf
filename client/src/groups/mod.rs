//! Groups (SPEC.md §6, §11.5, §12.10): the public names of groups and their
//! members, and the record this device keeps of each group.
//!
//! The server's `GroupInfo` is the authority on membership, roles and the
//! version; the group's name travels end-to-end encrypted inside
//! `GroupChange` contents and, for devices that join later, sealed under the
//! group's metadata key as the server's opaque `encrypted_metadata` (§11.5).
//! The record keeps both, sealed at rest like every other secret.
//!
//! Submodules: `admin` (the account's group operations, with retries on
//! stale versions), `change_plan` (what each change asks and announces,
//! without I/O), `refresh` (fetching one group from the server), `state` (applying server state and announcements,
//! producing events), `send` (sender keys: distribution, rotation and group
//! sends from the outbox). Not owned here: pairwise sessions (sessions.rs),
//! the SQL (store/).

pub(crate) mod admin;
pub(crate) mod change_plan;
pub(crate) mod refresh;
pub(crate) mod send;
pub(crate) mod send_sealed;
pub(crate) mod state;

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use microbot_crypto::kdf::{aead_open, aead_seal};
use microbot_protocol::content::GroupMetadata;
use prost::Message as _;
use rand::Rng as _;
use zeroize::Zeroize as _;

/// Longest group name in bytes (SPEC.md §11.2, `GroupMetadata.name`).
pub const MAX_GROUP_NAME_LEN: usize = 256;

/// A group's 16-byte id, chosen at random by its creator. Shown and parsed
/// as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId([u8; 16]);

impl GroupId {
    /// Wraps 16 id bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses 16 bytes from a slice; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(bytes).ok().map(Self)
    }

    pub(crate) fn random() -> Self {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        Self(id)
    }

    pub(crate) fn to_bytes(self) -> Bytes {
        Bytes::copy_from_slice(&self.0)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({self})")
    }
}

/// A group id that is not 32 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a group id is 32 hex digits")]
pub struct InvalidGroupId;

impl FromStr for GroupId {
    type Err = InvalidGroupId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s.trim()).map_err(|_| InvalidGroupId)?;
        Self::from_slice(&bytes).ok_or(InvalidGroupId)
    }
}

/// A member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupRole {
    /// An ordinary member.
    Member,
    /// May add and remove members, change roles and the name.
    Admin,
}

impl GroupRole {
    pub(crate) fn from_wire(value: i32) -> Self {
        if value == microbot_protocol::transport::GroupRole::Admin as i32 {
            GroupRole::Admin
        } else {
            GroupRole::Member
        }
    }

    pub(crate) fn to_wire(self) -> i32 {
        match self {
            GroupRole::Member => microbot_protocol::transport::GroupRole::Member as i32,
            GroupRole::Admin => microbot_protocol::transport::GroupRole::Admin as i32,
        }
    }
}

/// One member of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// The member's account.
    pub username: String,
    /// Its role.
    pub role: GroupRole,
    /// The group version at which it joined (it reads only later messages).
    pub joined_at_version: u64,
}

/// What this device knows of a group.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub id: GroupId,
    /// Its name (empty until the name reached this device).
    pub name: String,
    /// The server's version of the group.
    pub version: u64,
    /// Its members (as of `version`).
    pub members: Vec<GroupMember>,
    /// False once this account left or was removed: the group is kept for
    /// its history but can no longer be written to.
    pub active: bool,
}

impl fmt::Debug for GroupInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupInfo")
            .field("id", &self.id)
            .field("name_len", &self.name.len())
            .field("version", &self.version)
            .field("members", &self.members.len())
            .field("active", &self.active)
            .finish()
    }
}

/// What changed in a group ([`crate::Event::GroupChanged`]).
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq)]
pub enum GroupUpdate {
    /// The group was created (by `by`) with us as a member.
    Created {
        /// The creator.
        by: String,
        /// Its name.
        name: String,
    },
    /// These accounts joined (possibly us).
    MembersAdded {
        /// Who joined.
        usernames: Vec<String>,
    },
    /// These accounts were removed by an admin (possibly us: the group is
    /// then inactive).
    MembersRemoved {
        /// Who was removed.
        usernames: Vec<String>,
    },
    /// This account left the group (possibly us).
    Left {
        /// Who left.
        username: String,
    },
    /// The group's name changed.
    Renamed {
        /// The new name.
        name: String,
    },
    /// Roles changed (see [`crate::Account::group`]).
    RolesChanged,
}

impl fmt::Debug for GroupUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupUpdate::Created { by, .. } => f
                .debug_struct("Created")
                .field("by", by)
                .finish_non_exhaustive(),
            GroupUpdate::MembersAdded { usernames } => f
                .debug_struct("MembersAdded")
                .field("usernames", usernames)
                .finish(),
            GroupUpdate::MembersRemoved { usernames } => f
                .debug_struct("MembersRemoved")
                .field("usernames", usernames)
                .finish(),
            GroupUpdate::Left { username } => {
                f.debug_struct("Left").field("username", username).finish()
            }
            GroupUpdate::Renamed { name } => f
                .debug_struct("Renamed")
                .field("name_len", &name.len())
                .finish(),
            GroupUpdate::RolesChanged => f.write_str("RolesChanged"),
        }
    }
}

/// Format version of [`GroupRecord`].
pub(crate) const GROUP_RECORD_VERSION: u32 = 1;

/// One member in a [`GroupRecord`].
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MemberRecord {
    #[prost(string, tag = "1")]
    pub username: String,
    #[prost(int32, tag = "2")]
    pub role: i32,
    #[prost(uint64, tag = "3")]
    pub joined_at_version: u64,
}

/// The stored state of one group (sealed at rest as a whole). Versioned by
/// field 1; a reader refuses other versions. Its `Debug` omits the keys.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub(crate) struct GroupRecord {
    #[prost(uint32, tag = "1")]
    pub format: u32,
    #[prost(uint64, tag = "2")]
    pub version: u64,
    #[prost(bool, tag = "3")]
    pub active: bool,
    #[prost(message, repeated, tag = "4")]
    pub members: Vec<MemberRecord>,
    #[prost(string, tag = "5")]
    pub name: String,
    #[prost(string, tag = "6")]
    pub description: String,
    /// 32 bytes, or empty while unknown (§11.5).
    #[prost(bytes = "vec", tag = "7")]
    pub metadata_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "8")]
    pub encrypted_metadata: Vec<u8>,
    /// When the membership was last fetched from the server (ms).
    #[prost(uint64, tag = "9")]
    pub checked_ms: u64,
    /// Members that announced they are leaving (their removal from the
    /// server's state is then reported as `Left`, not `MembersRemoved`).
    #[prost(string, repeated, tag = "10")]
    pub leaving: Vec<String>,
    /// A metadata key announced by a member that does not open the
    /// server's blob yet (the blob it sealed has not been fetched).
    #[prost(bytes = "vec", tag = "11")]
    pub pending_key: Vec<u8>,
    /// The creator, while the `CREATED` event waits for the name to be
    /// confirmed by the server's blob.
    #[prost(string, tag = "12")]
    pub pending_created_by: String,
}

impl fmt::Debug for GroupRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupRecord")
            .field("version", &self.version)
            .field("active", &self.active)
            .field("members", &self.members.len())
            .field("has_key", &!self.metadata_key.is_empty())
            .finish_non_exhaustive()
    }
}

impl Drop for GroupRecord {
    fn drop(&mut self) {
        self.metadata_key.zeroize();
        self.pending_key.zeroize();
    }
}

impl GroupRecord {
    pub(crate) fn is_member(&self, username: &str) -> bool {
        self.members.iter().any(|m| m.username == username)
    }

    pub(crate) fn role_of(&self, username: &str) -> Option<GroupRole> {
        self.members
            .iter()
            .find(|m| m.username == username)
            .map(|m| GroupRole::from_wire(m.role))
    }

    pub(crate) fn key(&self) -> Option<[u8; 32]> {
        <[u8; 32]>::try_from(self.metadata_key.as_slice()).ok()
    }

    /// Opens the server's blob with the known key or, failing that, the
    /// pending one (which then becomes the key). On success sets the name
    /// and returns the update to report, if the name changed (`Created`
    /// while the creation waited for it).
    pub(crate) fn open_blob(&mut self, id: GroupId) -> Option<GroupUpdate> {
        let candidates = [
            self.key(),
            <[u8; 32]>::try_from(self.pending_key.as_slice()).ok(),
        ];
        let (key, metadata) = candidates
            .into_iter()
            .flatten()
            .find_map(|key| open_metadata(&key, id, &self.encrypted_metadata).map(|m| (key, m)))?;
        self.metadata_key = key.to_vec();
        if self.pending_key.as_slice() == key.as_slice() {
            self.pending_key.zeroize();
            self.pending_key.clear();
        }
        let changed = metadata.name != self.name;
        self.name = metadata.name.clone();
        self.description = metadata.description;
        if !self.pending_created_by.is_empty() {
            return Some(GroupUpdate::Created {
                by: std::mem::take(&mut self.pending_created_by),
                name: metadata.name,
            });
        }
        changed.then_some(GroupUpdate::Renamed {
            name: metadata.name,
        })
    }

    pub(crate) fn usernames(&self) -> Vec<String> {
        self.members.iter().map(|m| m.username.clone()).collect()
    }

    pub(crate) fn metadata(&self) -> GroupMetadata {
        GroupMetadata {
            name: self.name.clone(),
            description: self.description.clone(),
            avatar: None,
        }
    }

    pub(crate) fn public(&self, id: GroupId) -> GroupInfo {
        GroupInfo {
            id,
            name: self.name.clone(),
            version: self.version,
            members: self
                .members
                .iter()
                .map(|m| GroupMember {
                    username: m.username.clone(),
                    role: GroupRole::from_wire(m.role),
                    joined_at_version: m.joined_at_version,
                })
                .collect(),
            active: self.active,
        }
    }
}

/// A fresh 32-byte metadata key.
pub(crate) fn new_metadata_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// `nonce ‖ Seal(metadata_key, nonce, aad = group_id, GroupMetadata)` (§11.5).
pub(crate) fn seal_metadata(key: &[u8; 32], id: GroupId, metadata: &GroupMetadata) -> Vec<u8> {
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    let mut out = nonce.to_vec();
    out.extend_from_slice(&aead_seal(
        key,
        &nonce,
        id.as_bytes(),
        &metadata.encode_to_vec(),
    ));
    out
}

/// Opens [`seal_metadata`]'s output; `None` when it does not open or decode.
pub(crate) fn open_metadata(key: &[u8; 32], id: GroupId, blob: &[u8]) -> Option<GroupMetadata> {
    let (nonce, sealed) = blob.split_first_chunk::<12>()?;
    let plain = zeroize::Zeroizing::new(aead_open(key, nonce, id.as_bytes(), sealed).ok()?);
    GroupMetadata::decode(plain.as_slice()).ok()
}

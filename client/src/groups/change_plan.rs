//! What one group change asks of the server and announces to the members
//! (SPEC.md §12.10, §11.5), decided from the group's record alone: no I/O.
//! admin.rs runs these against the record it holds, sends the request,
//! and on a stale version runs them again against the refetched record,
//! so the intent is re-applied (members already added are not added
//! twice, a role already held is not set again).
//! Not owned here: sending and retrying (admin.rs), applying the server's
//! answer (state.rs).

use microbot_protocol::content::{self, GroupChange, GroupChangeKind};
use microbot_protocol::transport::{
    AddGroupMembersRequest, RemoveGroupMembersRequest, SetGroupRoleRequest, client_frame::Request,
};

use super::{GroupId, GroupRecord, GroupRole, MAX_GROUP_NAME_LEN};
use crate::auth::valid_username;
use crate::error::GroupError;

/// The usernames a change names: each valid, each once, without our own
/// name `me` (we are in every group we change).
pub(crate) fn checked_usernames(me: &str, usernames: &[&str]) -> Result<Vec<String>, GroupError> {
    let mut out: Vec<String> = Vec::with_capacity(usernames.len());
    for name in usernames {
        if !valid_username(name) {
            return Err(GroupError::InvalidInput("invalid username"));
        }
        if *name != me && !out.iter().any(|o| o == name) {
            out.push((*name).to_owned());
        }
    }
    Ok(out)
}

/// Refuses a group name longer than [`MAX_GROUP_NAME_LEN`] bytes.
pub(crate) fn check_name(name: &str) -> Result<(), GroupError> {
    if name.len() > MAX_GROUP_NAME_LEN {
        return Err(GroupError::InvalidInput("group name over 256 bytes"));
    }
    Ok(())
}

/// Adding `wanted` to the group as `record` has it: the request for those
/// not in it yet, and who they are; `None` when all of them are in.
pub(crate) fn add_members(
    id: GroupId,
    record: &GroupRecord,
    wanted: &[String],
) -> Option<(Request, Vec<String>)> {
    let added: Vec<String> = wanted
        .iter()
        .filter(|u| !record.is_member(u))
        .cloned()
        .collect();
    (!added.is_empty()).then(|| {
        let request = Request::AddGroupMembers(AddGroupMembersRequest {
            group_id: id.to_bytes(),
            expected_version: record.version,
            usernames: added.clone(),
        });
        (request, added)
    })
}

/// Removing `wanted` from the group as `record` has it: the request for
/// those still in it, and who they are; `None` when none of them is in.
pub(crate) fn remove_members(
    id: GroupId,
    record: &GroupRecord,
    wanted: &[String],
) -> Option<(Request, Vec<String>)> {
    let removed: Vec<String> = wanted
        .iter()
        .filter(|u| record.is_member(u))
        .cloned()
        .collect();
    (!removed.is_empty()).then(|| {
        let request = Request::RemoveGroupMembers(RemoveGroupMembersRequest {
            group_id: id.to_bytes(),
            expected_version: record.version,
            usernames: removed.clone(),
        });
        (request, removed)
    })
}

/// Giving `username` the role `role`; `None` when it holds it already.
pub(crate) fn set_role(
    id: GroupId,
    record: &GroupRecord,
    username: &str,
    role: GroupRole,
) -> Option<Request> {
    (record.role_of(username) != Some(role)).then(|| {
        Request::SetGroupRole(SetGroupRoleRequest {
            group_id: id.to_bytes(),
            expected_version: record.version,
            username: username.to_owned(),
            role: role.to_wire(),
        })
    })
}

/// The bare announcement of a change at `version` (at least 1).
pub(crate) fn announcement(id: GroupId, version: u64, kind: GroupChangeKind) -> GroupChange {
    GroupChange {
        group_id: id.to_bytes(),
        version: version.max(1),
        kind: kind as i32,
        ..GroupChange::default()
    }
}

/// The announcement of members `added` to the group now at `record`: the
/// new members learn the name and the metadata key with it.
pub(crate) fn members_added(id: GroupId, record: &GroupRecord, added: Vec<String>) -> GroupChange {
    let mut change = announcement(id, record.version, GroupChangeKind::MembersAdded);
    change.usernames = added;
    change.metadata = Some(record.metadata());
    if let Some(key) = record.key() {
        change.metadata_key = key.to_vec().into();
    }
    change
}

/// The announcement that `username` now has `role`, at `version`.
pub(crate) fn role_changed(
    id: GroupId,
    version: u64,
    username: &str,
    role: GroupRole,
) -> GroupChange {
    let mut change = announcement(id, version, GroupChangeKind::RoleChanged);
    change.usernames = vec![username.to_owned()];
    change.role = match role {
        GroupRole::Member => content::GroupRole::Member as i32,
        GroupRole::Admin => content::GroupRole::Admin as i32,
    };
    change
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::{GROUP_RECORD_VERSION, MemberRecord};

    const ID: GroupId = GroupId([5; 16]);

    fn record(version: u64, members: &[(&str, GroupRole)]) -> GroupRecord {
        let mut record = GroupRecord::default();
        record.format = GROUP_RECORD_VERSION;
        record.version = version;
        record.active = true;
        record.members = members
            .iter()
            .map(|(name, role)| MemberRecord {
                username: (*name).to_owned(),
                role: role.to_wire(),
                joined_at_version: 1,
            })
            .collect();
        record.name = "climbers".into();
        record.metadata_key = vec![9; 32];
        record
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn usernames_are_checked_deduplicated_and_exclude_us() {
        assert_eq!(
            checked_usernames("alice", &["bob", "alice", "carol", "bob"]).expect("valid"),
            names(&["bob", "carol"])
        );
        assert!(matches!(
            checked_usernames("alice", &["bob", "not a name!"]),
            Err(GroupError::InvalidInput(_))
        ));
    }

    #[test]
    fn a_name_over_the_limit_is_refused() {
        assert!(check_name(&"n".repeat(MAX_GROUP_NAME_LEN)).is_ok());
        assert!(check_name(&"n".repeat(MAX_GROUP_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn adding_skips_members_already_in_and_names_the_version_seen() {
        let group = record(
            7,
            &[("alice", GroupRole::Admin), ("bob", GroupRole::Member)],
        );
        let (request, added) =
            add_members(ID, &group, &names(&["bob", "carol"])).expect("carol is new");
        assert_eq!(added, names(&["carol"]));
        let Request::AddGroupMembers(add) = request else {
            panic!("an add request");
        };
        assert_eq!(add.expected_version, 7);
        assert_eq!(add.usernames, names(&["carol"]));
        assert_eq!(add.group_id.as_ref(), ID.as_bytes());
    }

    #[test]
    fn adding_members_who_are_all_in_asks_nothing() {
        let group = record(
            3,
            &[("alice", GroupRole::Admin), ("bob", GroupRole::Member)],
        );
        assert!(add_members(ID, &group, &names(&["bob"])).is_none());
    }

    #[test]
    fn removing_asks_only_for_current_members() {
        let group = record(
            4,
            &[("alice", GroupRole::Admin), ("bob", GroupRole::Member)],
        );
        let (request, removed) =
            remove_members(ID, &group, &names(&["bob", "dave"])).expect("bob is in");
        assert_eq!(removed, names(&["bob"]));
        assert!(matches!(request, Request::RemoveGroupMembers(r) if r.expected_version == 4));
        assert!(remove_members(ID, &group, &names(&["dave"])).is_none());
    }

    #[test]
    fn a_role_already_held_is_not_set_again() {
        let group = record(
            2,
            &[("alice", GroupRole::Admin), ("bob", GroupRole::Member)],
        );
        assert!(set_role(ID, &group, "bob", GroupRole::Member).is_none());
        let Some(Request::SetGroupRole(set)) = set_role(ID, &group, "bob", GroupRole::Admin) else {
            panic!("bob becomes admin");
        };
        assert_eq!(set.role, GroupRole::Admin.to_wire());
        assert_eq!(set.expected_version, 2);
    }

    #[test]
    fn new_members_get_the_name_and_the_metadata_key() {
        let group = record(
            8,
            &[("alice", GroupRole::Admin), ("carol", GroupRole::Member)],
        );
        let change = members_added(ID, &group, names(&["carol"]));
        assert_eq!(change.kind, GroupChangeKind::MembersAdded as i32);
        assert_eq!(change.version, 8);
        assert_eq!(change.usernames, names(&["carol"]));
        assert_eq!(change.metadata.map(|m| m.name).as_deref(), Some("climbers"));
        assert_eq!(change.metadata_key.as_ref(), [9; 32].as_slice());
    }

    #[test]
    fn an_announcement_never_names_version_zero() {
        assert_eq!(announcement(ID, 0, GroupChangeKind::Left).version, 1);
        let change = role_changed(ID, 6, "bob", GroupRole::Admin);
        assert_eq!(change.role, content::GroupRole::Admin as i32);
        assert_eq!(change.usernames, names(&["bob"]));
    }
}

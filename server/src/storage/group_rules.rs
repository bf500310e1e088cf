//! The group rules of SPEC.md §12.10, written once for both backends: who
//! may change a group, what a change may do, and which member rows it
//! writes. Pure: group_flow.rs loads the group (locked) and resolves the
//! usernames a change names to active accounts through a backend's rows,
//! asks this module for a plan, and has the backend write the plan's rows;
//! the backend decides nothing itself.
//!
//! Not owned here: the load → plan → write sequence (group_flow.rs),
//! reading and writing rows (sqlite/groups.rs, postgres/groups.rs),
//! request validation and pushes (crate::groups).

use std::collections::{BTreeSet, HashMap};

use super::StorageError;
use super::groups::{GroupChange, GroupRecord, GroupRole};

/// Active accounts by username, as the backend found them; a name missing
/// here has no active account.
pub(crate) type Accounts = HashMap<String, i64>;

/// One row write of a planned change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MemberWrite {
    /// A new member row.
    Insert {
        /// The account joining.
        account: i64,
        /// Its role.
        role: GroupRole,
        /// The group version it joins at.
        joined_at_version: u64,
    },
    /// A member row deleted.
    Delete(i64),
    /// A member's role changed.
    SetRole(i64, GroupRole),
    /// The group's encrypted metadata replaced.
    SetMetadata(Vec<u8>),
}

/// What a change writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChangePlan {
    /// The rows, in order.
    pub writes: Vec<MemberWrite>,
    /// The group's version after the change.
    pub version: u64,
    /// No member is left: the group row goes too.
    pub delete_group: bool,
}

impl ChangePlan {
    /// The group as a change that deleted it leaves it: the new version,
    /// no metadata and no member. `None` when the group still exists (the
    /// backend reads it back).
    pub(crate) fn deleted_group(
        &self,
        id: &[u8; super::groups::GROUP_ID_LEN],
    ) -> Option<GroupRecord> {
        self.delete_group.then(|| GroupRecord {
            id: *id,
            version: self.version,
            metadata: Vec::new(),
            members: Vec::new(),
        })
    }
}

/// The usernames `change` names, for the backend to resolve.
pub(crate) fn named_users(change: &GroupChange) -> Vec<&str> {
    match change {
        GroupChange::Add(names) | GroupChange::Remove(names) => {
            names.iter().map(String::as_str).collect()
        }
        GroupChange::SetRole(name, _) => vec![name.as_str()],
        GroupChange::Leave | GroupChange::SetMetadata(_) => Vec::new(),
    }
}

/// The account ids of `group`'s members.
pub(crate) fn member_ids(group: &GroupRecord) -> BTreeSet<i64> {
    group.members.iter().map(|m| m.account_id).collect()
}

/// Only a member reads a group or sends to it.
///
/// # Errors
/// [`StorageError::NotGroupMember`] when `account` is not one.
pub(crate) fn require_member(group: &GroupRecord, account: i64) -> Result<(), StorageError> {
    if group.members.iter().any(|m| m.account_id == account) {
        Ok(())
    } else {
        Err(StorageError::NotGroupMember)
    }
}

fn account_of(accounts: &Accounts, name: &str) -> Result<i64, StorageError> {
    accounts
        .get(name)
        .copied()
        .ok_or_else(|| StorageError::UnknownAccount(name.to_owned()))
}

fn too_large(members: usize, max_members: u32) -> bool {
    members > usize::try_from(max_members).unwrap_or(usize::MAX)
}

/// Plans `change` by `actor` on `before`: the actor must be a member, an
/// admin for anything but leaving, and `expected_version` (when given)
/// current. Then: members are added once each and within `max_members`;
/// removing needs a member other than oneself (leave is for that); the
/// last admin leaving hands the role to the longest-standing member; the
/// last admin cannot be demoted.
///
/// # Errors
/// [`StorageError::NotGroupMember`], [`StorageError::StaleGroupVersion`],
/// [`StorageError::NotGroupAdmin`], [`StorageError::UnknownAccount`],
/// [`StorageError::InvalidGroupChange`].
pub(crate) fn plan_change(
    before: &GroupRecord,
    actor: i64,
    expected_version: Option<u64>,
    change: &GroupChange,
    accounts: &Accounts,
    max_members: u32,
) -> Result<ChangePlan, StorageError> {
    let role_of = |account: i64| {
        before
            .members
            .iter()
            .find(|m| m.account_id == account)
            .map(|m| m.role)
    };
    let actor_role = role_of(actor).ok_or(StorageError::NotGroupMember)?;
    if let Some(expected) = expected_version
        && expected != before.version
    {
        return Err(StorageError::StaleGroupVersion(before.version));
    }
    if !matches!(change, GroupChange::Leave) && actor_role != GroupRole::Admin {
        return Err(StorageError::NotGroupAdmin);
    }
    let version = before.version.saturating_add(1);
    let admins = before
        .members
        .iter()
        .filter(|m| m.role == GroupRole::Admin)
        .count();
    let mut writes = Vec::new();
    let mut left = before.members.len();
    match change {
        GroupChange::Add(names) => {
            let mut added = BTreeSet::new();
            for name in names {
                let account = account_of(accounts, name)?;
                if role_of(account).is_some() || !added.insert(account) {
                    return Err(StorageError::InvalidGroupChange("already a member"));
                }
            }
            if too_large(
                before.members.len().saturating_add(added.len()),
                max_members,
            ) {
                return Err(StorageError::InvalidGroupChange("group would be too large"));
            }
            left = left.saturating_add(added.len());
            writes.extend(added.into_iter().map(|account| MemberWrite::Insert {
                account,
                role: GroupRole::Member,
                joined_at_version: version,
            }));
        }
        GroupChange::Remove(names) => {
            let mut removed = BTreeSet::new();
            for name in names {
                let account = account_of(accounts, name)?;
                if account == actor {
                    return Err(StorageError::InvalidGroupChange(
                        "use leave to remove yourself",
                    ));
                }
                if role_of(account).is_none() || !removed.insert(account) {
                    return Err(StorageError::NotGroupMember);
                }
                writes.push(MemberWrite::Delete(account));
            }
            left = left.saturating_sub(removed.len());
        }
        GroupChange::Leave => {
            writes.push(MemberWrite::Delete(actor));
            left = left.saturating_sub(1);
            if actor_role == GroupRole::Admin
                && admins == 1
                && let Some(heir) = before.members.iter().find(|m| m.account_id != actor)
            {
                writes.push(MemberWrite::SetRole(heir.account_id, GroupRole::Admin));
            }
        }
        GroupChange::SetRole(name, role) => {
            let account = account_of(accounts, name)?;
            let current = role_of(account).ok_or(StorageError::NotGroupMember)?;
            if current == GroupRole::Admin && *role == GroupRole::Member && admins == 1 {
                return Err(StorageError::InvalidGroupChange(
                    "cannot demote the last admin",
                ));
            }
            writes.push(MemberWrite::SetRole(account, *role));
        }
        GroupChange::SetMetadata(metadata) => {
            writes.push(MemberWrite::SetMetadata(metadata.clone()));
        }
    }
    Ok(ChangePlan {
        writes,
        version,
        delete_group: left == 0,
    })
}

/// What the backend read before creating a group.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CreateFacts {
    /// A group with this id exists.
    pub exists: bool,
    /// Groups the creator created that still exist.
    pub created_by_creator: u64,
}

/// Plans a group creation by `creator` with the listed `members`: a new
/// id, every member an active account (the creator listed among them is
/// ignored), at most `max_members` with the creator, and the creator below
/// `max_created` existing groups of its own. Returns the member accounts
/// other than the creator, ascending; the creator joins as admin, the rest
/// as members, all at version 1.
///
/// # Errors
/// [`StorageError::GroupExists`], [`StorageError::UnknownAccount`],
/// [`StorageError::InvalidGroupChange`], [`StorageError::TooManyGroups`].
pub(crate) fn plan_create(
    creator: i64,
    members: &[String],
    accounts: &Accounts,
    facts: CreateFacts,
    max_members: u32,
    max_created: u32,
) -> Result<BTreeSet<i64>, StorageError> {
    if facts.exists {
        return Err(StorageError::GroupExists);
    }
    let mut joining = BTreeSet::new();
    for name in members {
        let account = account_of(accounts, name)?;
        if account != creator {
            joining.insert(account);
        }
    }
    if too_large(joining.len().saturating_add(1), max_members) {
        return Err(StorageError::InvalidGroupChange("group would be too large"));
    }
    if facts.created_by_creator >= u64::from(max_created) {
        return Err(StorageError::TooManyGroups);
    }
    Ok(joining)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::groups::MemberRecord;

    fn member(account_id: i64, role: GroupRole) -> MemberRecord {
        MemberRecord {
            account_id,
            username: format!("u{account_id}"),
            role,
            joined_at_version: 1,
        }
    }

    fn group() -> GroupRecord {
        GroupRecord {
            id: [7; 16],
            version: 3,
            metadata: Vec::new(),
            members: vec![
                member(1, GroupRole::Admin),
                member(2, GroupRole::Member),
                member(3, GroupRole::Member),
            ],
        }
    }

    fn accounts() -> Accounts {
        (1..=5).map(|a| (format!("u{a}"), a)).collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn plan(actor: i64, change: &GroupChange) -> Result<ChangePlan, StorageError> {
        plan_change(&group(), actor, None, change, &accounts(), 4)
    }

    #[test]
    fn only_members_read_or_send() {
        assert_eq!(member_ids(&group()), BTreeSet::from([1, 2, 3]));
        assert!(require_member(&group(), 2).is_ok());
        assert!(matches!(
            require_member(&group(), 4),
            Err(StorageError::NotGroupMember)
        ));
    }

    #[test]
    fn only_members_change_and_only_admins_change_others() {
        let add = GroupChange::Add(names(&["u4"]));
        assert!(matches!(plan(9, &add), Err(StorageError::NotGroupMember)));
        assert!(matches!(plan(2, &add), Err(StorageError::NotGroupAdmin)));
        assert!(plan(2, &GroupChange::Leave).is_ok());
        let stale = plan_change(&group(), 1, Some(2), &add, &accounts(), 4);
        assert!(matches!(stale, Err(StorageError::StaleGroupVersion(3))));
    }

    #[test]
    fn adding_checks_membership_duplicates_and_size() {
        let ok = plan(1, &GroupChange::Add(names(&["u4"]))).map(|p| p.writes);
        assert_eq!(
            ok.ok(),
            Some(vec![MemberWrite::Insert {
                account: 4,
                role: GroupRole::Member,
                joined_at_version: 4,
            }])
        );
        for list in [&["u2"][..], &["u4", "u4"]] {
            assert!(matches!(
                plan(1, &GroupChange::Add(names(list))),
                Err(StorageError::InvalidGroupChange("already a member"))
            ));
        }
        assert!(matches!(
            plan(1, &GroupChange::Add(names(&["u4", "u5"]))),
            Err(StorageError::InvalidGroupChange("group would be too large"))
        ));
        assert!(matches!(
            plan(1, &GroupChange::Add(names(&["nobody"]))),
            Err(StorageError::UnknownAccount(n)) if n == "nobody"
        ));
    }

    #[test]
    fn removing_needs_another_member() {
        assert!(matches!(
            plan(1, &GroupChange::Remove(names(&["u1"]))),
            Err(StorageError::InvalidGroupChange(
                "use leave to remove yourself"
            ))
        ));
        for list in [&["u4"][..], &["u2", "u2"]] {
            assert!(matches!(
                plan(1, &GroupChange::Remove(names(list))),
                Err(StorageError::NotGroupMember)
            ));
        }
        let p = plan(1, &GroupChange::Remove(names(&["u2", "u3"]))).ok();
        assert_eq!(
            p.map(|p| (p.writes, p.delete_group)),
            Some((vec![MemberWrite::Delete(2), MemberWrite::Delete(3)], false))
        );
    }

    #[test]
    fn the_last_admin_leaving_hands_the_role_on_and_cannot_be_demoted() {
        let p = plan(1, &GroupChange::Leave).ok().map(|p| p.writes);
        assert_eq!(
            p,
            Some(vec![
                MemberWrite::Delete(1),
                MemberWrite::SetRole(2, GroupRole::Admin)
            ])
        );
        assert!(matches!(
            plan(1, &GroupChange::SetRole("u1".into(), GroupRole::Member)),
            Err(StorageError::InvalidGroupChange(
                "cannot demote the last admin"
            ))
        ));
    }

    #[test]
    fn the_last_member_leaving_deletes_the_group() {
        let alone = GroupRecord {
            members: vec![member(1, GroupRole::Admin)],
            ..group()
        };
        let p = plan_change(&alone, 1, None, &GroupChange::Leave, &accounts(), 4);
        assert_eq!(p.map(|p| p.delete_group).ok(), Some(true));
    }

    #[test]
    fn creation_checks_id_members_size_and_the_creators_count() {
        let facts = CreateFacts {
            exists: false,
            created_by_creator: 0,
        };
        let ok = plan_create(1, &names(&["u1", "u2", "u2"]), &accounts(), facts, 3, 1);
        assert_eq!(ok.ok(), Some(BTreeSet::from([2])));
        let taken = CreateFacts {
            exists: true,
            ..facts
        };
        assert!(matches!(
            plan_create(1, &[], &accounts(), taken, 3, 1),
            Err(StorageError::GroupExists)
        ));
        assert!(matches!(
            plan_create(1, &names(&["u2", "u3", "u4"]), &accounts(), facts, 3, 1),
            Err(StorageError::InvalidGroupChange("group would be too large"))
        ));
        let many = CreateFacts {
            created_by_creator: 1,
            ..facts
        };
        assert!(matches!(
            plan_create(1, &[], &accounts(), many, 3, 1),
            Err(StorageError::TooManyGroups)
        ));
    }
}

//! SQLite implementation of [`GroupStorage`] (SPEC.md §12.10).
//!
//! Every change is one IMMEDIATE transaction: the version check, the change
//! and the version bump commit together, so two concurrent changes with the
//! same expected version cannot both succeed.

use std::collections::BTreeSet;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{SqliteStorage, db, grow_queue, has_room, net_id, sql_id, sql_time};
use crate::storage::OwnedSendMeta;
use crate::storage::groups::{GROUP_ID_LEN, GroupRole};
use crate::storage::{
    FanOut, GroupCaps, GroupChange, GroupChangeOutcome, GroupFanOut, GroupRecord, GroupStorage,
    SendMeta, StorageError, StorageResult,
};

type GroupId = [u8; GROUP_ID_LEN];

fn load_group(tx: &Connection, id: &GroupId) -> StorageResult<GroupRecord> {
    let head: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT version, metadata FROM groups WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([id.as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(db)?;
    let (version, metadata) = head.ok_or(StorageError::UnknownGroup)?;
    let mut stmt = tx
        .prepare_cached(
            "SELECT m.account_id, a.username, m.role, m.joined_at_version \
             FROM group_members m JOIN accounts a ON a.id = m.account_id \
             WHERE m.group_id = ?1 ORDER BY m.joined_at_version, m.account_id",
        )
        .map_err(db)?;
    let members = stmt
        .query_map([id.as_slice()], |r| {
            Ok(crate::storage::groups::MemberRecord {
                account_id: r.get(0)?,
                username: r.get(1)?,
                role: GroupRole::from_i64(r.get(2)?).unwrap_or(GroupRole::Member),
                joined_at_version: net_id(r.get(3)?),
            })
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)?;
    Ok(GroupRecord {
        id: *id,
        version: net_id(version),
        metadata,
        members,
    })
}

/// An active account's id by username.
fn active_account(tx: &Transaction<'_>, username: &str) -> StorageResult<i64> {
    tx.query_row(
        "SELECT id FROM accounts WHERE username = ?1 AND active = 1",
        [username],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)?
    .ok_or_else(|| StorageError::UnknownAccount(username.to_owned()))
}

/// Live devices of the given accounts, ascending.
fn devices_of(tx: &Connection, accounts: &BTreeSet<i64>) -> StorageResult<Vec<u64>> {
    let mut stmt = tx
        .prepare_cached("SELECT id FROM devices WHERE account_id = ?1 AND removed = 0 ORDER BY id")
        .map_err(db)?;
    let mut out = Vec::new();
    for account in accounts {
        let ids = stmt
            .query_map([account], |r| r.get::<_, i64>(0))
            .map_err(db)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db)?;
        out.extend(ids.into_iter().map(net_id));
    }
    Ok(out)
}

/// The member devices a group message goes to: for an account with a signed
/// device list (SPEC.md §20), only the devices it lists.
fn recipients_of(tx: &Connection, accounts: &BTreeSet<i64>) -> StorageResult<Vec<u64>> {
    let mut stmt = tx
        .prepare_cached("SELECT list FROM device_lists WHERE account_id = ?1")
        .map_err(db)?;
    let mut devices = Vec::new();
    let mut lists = Vec::new();
    for &account in accounts {
        if let Some(list) = stmt
            .query_row([account], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .map_err(db)?
        {
            lists.push((account, list));
        }
        let ids = devices_of(tx, &BTreeSet::from([account]))?;
        devices.extend(ids.into_iter().map(|id| (account, id)));
    }
    Ok(crate::storage::device_lists::keep_listed(devices, lists))
}

fn member_ids(group: &GroupRecord) -> BTreeSet<i64> {
    group.members.iter().map(|m| m.account_id).collect()
}

fn insert_member(
    tx: &Transaction<'_>,
    id: &GroupId,
    account: i64,
    role: GroupRole,
    version: u64,
) -> StorageResult<()> {
    tx.execute(
        "INSERT INTO group_members (group_id, account_id, role, joined_at_version) VALUES (?1, ?2, ?3, ?4)",
        params![id.as_slice(), account, role as i64, sql_id(version)],
    )
    .map_err(db)?;
    Ok(())
}

fn apply_change(
    tx: &Transaction<'_>,
    group: &GroupRecord,
    actor: i64,
    change: &GroupChange,
    max_members: u32,
) -> StorageResult<()> {
    let id = group.id.as_slice();
    let next = group.version.saturating_add(1);
    let role_of = |account: i64| {
        group
            .members
            .iter()
            .find(|m| m.account_id == account)
            .map(|m| m.role)
    };
    let admins = group
        .members
        .iter()
        .filter(|m| m.role == GroupRole::Admin)
        .count();
    match change {
        GroupChange::Add(usernames) => {
            let mut accounts = BTreeSet::new();
            for name in usernames {
                let account = active_account(tx, name)?;
                if role_of(account).is_some() || !accounts.insert(account) {
                    return Err(StorageError::InvalidGroupChange("already a member"));
                }
            }
            if group.members.len().saturating_add(accounts.len())
                > usize::try_from(max_members).unwrap_or(usize::MAX)
            {
                return Err(StorageError::InvalidGroupChange("group would be too large"));
            }
            for account in accounts {
                insert_member(tx, &group.id, account, GroupRole::Member, next)?;
            }
        }
        GroupChange::Remove(usernames) => {
            for name in usernames {
                let account = active_account(tx, name)?;
                if account == actor {
                    return Err(StorageError::InvalidGroupChange(
                        "use leave to remove yourself",
                    ));
                }
                let n = tx
                    .execute(
                        "DELETE FROM group_members WHERE group_id = ?1 AND account_id = ?2",
                        params![id, account],
                    )
                    .map_err(db)?;
                if n == 0 {
                    return Err(StorageError::NotGroupMember);
                }
            }
        }
        GroupChange::Leave => {
            tx.execute(
                "DELETE FROM group_members WHERE group_id = ?1 AND account_id = ?2",
                params![id, actor],
            )
            .map_err(db)?;
            // The last admin leaving hands the role to the longest-standing
            // member, so a group is never left without an admin.
            if role_of(actor) == Some(GroupRole::Admin)
                && admins == 1
                && let Some(heir) = group.members.iter().find(|m| m.account_id != actor)
            {
                tx.execute(
                    "UPDATE group_members SET role = ?3 WHERE group_id = ?1 AND account_id = ?2",
                    params![id, heir.account_id, GroupRole::Admin as i64],
                )
                .map_err(db)?;
            }
        }
        GroupChange::SetRole(name, role) => {
            let account = active_account(tx, name)?;
            let current = role_of(account).ok_or(StorageError::NotGroupMember)?;
            if current == GroupRole::Admin && *role == GroupRole::Member && admins == 1 {
                return Err(StorageError::InvalidGroupChange(
                    "cannot demote the last admin",
                ));
            }
            tx.execute(
                "UPDATE group_members SET role = ?3 WHERE group_id = ?1 AND account_id = ?2",
                params![id, account, *role as i64],
            )
            .map_err(db)?;
        }
        GroupChange::SetMetadata(metadata) => {
            tx.execute(
                "UPDATE groups SET metadata = ?2 WHERE id = ?1",
                params![id, metadata],
            )
            .map_err(db)?;
        }
    }
    tx.execute(
        "UPDATE groups SET version = ?2 WHERE id = ?1",
        params![id, sql_id(next)],
    )
    .map_err(db)?;
    Ok(())
}

impl GroupStorage for SqliteStorage {
    fn create_group_capped(
        &self,
        id: &GroupId,
        creator: i64,
        members: &[String],
        metadata: &[u8],
        caps: GroupCaps,
        now_ms: u64,
    ) -> StorageResult<GroupChangeOutcome> {
        let max_members = caps.max_members;
        self.with_tx(|tx| {
            let exists: Option<i64> = tx
                .query_row("SELECT 1 FROM groups WHERE id = ?1", [id.as_slice()], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db)?;
            if exists.is_some() {
                return Err(StorageError::GroupExists);
            }
            let mut accounts = BTreeSet::new();
            for name in members {
                let account = active_account(tx, name)?;
                if account != creator {
                    accounts.insert(account);
                }
            }
            if accounts.len().saturating_add(1) > usize::try_from(max_members).unwrap_or(usize::MAX)
            {
                return Err(StorageError::InvalidGroupChange("group would be too large"));
            }
            let created: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM groups WHERE created_by = ?1",
                    [creator],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if u32::try_from(created).unwrap_or(u32::MAX) >= caps.max_created {
                return Err(StorageError::TooManyGroups);
            }
            tx.execute(
                "INSERT INTO groups (id, version, metadata, created_at_ms, created_by) \
                 VALUES (?1, 1, ?2, ?3, ?4)",
                params![id.as_slice(), metadata, sql_time(now_ms), creator],
            )
            .map_err(db)?;
            insert_member(tx, id, creator, GroupRole::Admin, 1)?;
            for account in &accounts {
                insert_member(tx, id, *account, GroupRole::Member, 1)?;
            }
            let group = load_group(tx, id)?;
            let notify_devices = devices_of(tx, &member_ids(&group))?;
            Ok(GroupChangeOutcome {
                group,
                notify_devices,
            })
        })
    }

    fn change_group(
        &self,
        id: &GroupId,
        actor: i64,
        expected_version: Option<u64>,
        change: &GroupChange,
        max_members: u32,
    ) -> StorageResult<GroupChangeOutcome> {
        self.with_tx(|tx| {
            let before = load_group(tx, id)?;
            let actor_role = before
                .members
                .iter()
                .find(|m| m.account_id == actor)
                .map(|m| m.role)
                .ok_or(StorageError::NotGroupMember)?;
            if let Some(expected) = expected_version
                && expected != before.version
            {
                return Err(StorageError::StaleGroupVersion(before.version));
            }
            if !matches!(change, GroupChange::Leave) && actor_role != GroupRole::Admin {
                return Err(StorageError::NotGroupAdmin);
            }
            apply_change(tx, &before, actor, change, max_members)?;
            let mut group = load_group(tx, id)?;
            let mut accounts = member_ids(&before);
            accounts.extend(member_ids(&group));
            if group.members.is_empty() {
                tx.execute("DELETE FROM groups WHERE id = ?1", [id.as_slice()])
                    .map_err(db)?;
                group.metadata.clear();
            }
            let notify_devices = devices_of(tx, &accounts)?;
            Ok(GroupChangeOutcome {
                group,
                notify_devices,
            })
        })
    }

    fn group(&self, id: &GroupId, actor: i64) -> StorageResult<GroupRecord> {
        self.with_tx(|tx| {
            let group = load_group(tx, id)?;
            if group.members.iter().any(|m| m.account_id == actor) {
                Ok(group)
            } else {
                Err(StorageError::NotGroupMember)
            }
        })
    }

    fn enqueue_group(
        &self,
        id: &GroupId,
        sender_account: i64,
        meta: &SendMeta<'_>,
        ciphertext: &[u8],
    ) -> StorageResult<GroupFanOut> {
        // Runs on the group-commit writer thread, so it owns its inputs.
        let id: GroupId = *id;
        let meta = OwnedSendMeta::from(meta);
        let ciphertext = ciphertext.to_vec();
        self.writer.run(super::Isolation::Savepoint, move |tx| {
            let (id, meta) = (&id, meta.borrowed());
            let group = load_group(tx, id)?;
            let accounts = member_ids(&group);
            if !accounts.contains(&sender_account) {
                return Err(StorageError::NotGroupMember);
            }
            let mut recipients = Vec::new();
            let mut skipped = Vec::new();
            for device in recipients_of(tx, &accounts)? {
                if device == meta.sender_device_id {
                    continue;
                }
                if has_room(tx, &meta, sql_id(device))? {
                    recipients.push(device);
                } else {
                    skipped.push(device);
                }
            }
            if recipients.is_empty() {
                return Ok(GroupFanOut {
                    delivered: Vec::new(),
                    skipped,
                });
            }
            // The ciphertext is stored once; each queue holds a reference.
            tx.execute(
                "INSERT INTO group_messages (group_id, ciphertext) VALUES (?1, ?2)",
                params![id.as_slice(), &ciphertext],
            )
            .map_err(db)?;
            let message = tx.last_insert_rowid();
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO envelopes (device_id, sender_username, sender_device_id, server_timestamp_ms, \
                     expires_at_ms, ciphertext, group_message_id) VALUES (?1, ?2, ?3, ?4, ?5, X'', ?6)",
                )
                .map_err(db)?;
            let mut out = Vec::with_capacity(recipients.len());
            for device in recipients {
                stmt.execute(params![
                    sql_id(device),
                    meta.sender_username,
                    sql_id(meta.sender_device_id),
                    sql_time(meta.now_ms),
                    sql_time(meta.expires_at_ms),
                    message,
                ])
                .map_err(db)?;
                out.push(FanOut {
                    envelope_id: net_id(tx.last_insert_rowid()),
                    device_id: device,
                });
                grow_queue(tx, sql_id(device))?;
            }
            Ok(GroupFanOut {
                delivered: out,
                skipped,
            })
        })
    }
}

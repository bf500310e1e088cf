//! PostgreSQL implementation of [`GroupStorage`] (SPEC.md §12.10).
//!
//! A change locks the group row (`FOR UPDATE`) before checking the expected
//! version, so two nodes applying changes with the same expected version
//! serialise and the second gets `StaleGroupVersion`. A group send locks
//! the group row `FOR SHARE` (membership cannot change under it) and the
//! recipient device rows (queue caps, per-device id order).

use std::collections::BTreeSet;

use super::{
    PgError, PgResult, PostgresStorage, Tx, col, full_queues, lock_devices, net_id, sql_id,
    sql_time,
};
use crate::storage::groups::{GROUP_ID_LEN, GroupRole, MemberRecord};
use crate::storage::{
    FanOut, GroupCaps, GroupChange, GroupChangeOutcome, GroupFanOut, GroupRecord, GroupStorage,
    SendMeta, StorageError, StorageResult,
};

type GroupId = [u8; GROUP_ID_LEN];

/// How [`load_group`] locks the group row.
#[derive(Clone, Copy)]
enum Lock {
    None,
    Share,
    Update,
}

async fn load_group(tx: &Tx<'_, '_>, id: &GroupId, lock: Lock) -> PgResult<GroupRecord> {
    let suffix = match lock {
        Lock::None => "",
        Lock::Share => " FOR SHARE",
        Lock::Update => " FOR UPDATE",
    };
    let head = tx
        .query_opt(
            &format!("SELECT version, metadata FROM chat_groups WHERE id = $1{suffix}"),
            &[&id.as_slice()],
        )
        .await?
        .ok_or(StorageError::UnknownGroup)?;
    let rows = tx
        .query(
            "SELECT m.account_id, a.username, m.role, m.joined_at_version \
             FROM group_members m JOIN accounts a ON a.id = m.account_id \
             WHERE m.group_id = $1 ORDER BY m.joined_at_version, m.account_id",
            &[&id.as_slice()],
        )
        .await?;
    let members = rows
        .iter()
        .map(|r| {
            Ok(MemberRecord {
                account_id: col(r, 0)?,
                username: col(r, 1)?,
                role: GroupRole::from_i64(col(r, 2)?).unwrap_or(GroupRole::Member),
                joined_at_version: net_id(col(r, 3)?),
            })
        })
        .collect::<PgResult<Vec<_>>>()?;
    Ok(GroupRecord {
        id: *id,
        version: net_id(col(&head, 0)?),
        metadata: col(&head, 1)?,
        members,
    })
}

/// An active account's id by username.
async fn active_account(tx: &Tx<'_, '_>, username: &str) -> PgResult<i64> {
    let row = tx
        .query_opt(
            "SELECT id FROM accounts WHERE username = $1 AND active",
            &[&username],
        )
        .await?
        .ok_or_else(|| StorageError::UnknownAccount(username.to_owned()))?;
    col(&row, 0)
}

/// Live devices of the given accounts, grouped by account ascending.
async fn devices_of(tx: &Tx<'_, '_>, accounts: &BTreeSet<i64>) -> PgResult<Vec<u64>> {
    let accounts: Vec<i64> = accounts.iter().copied().collect();
    let rows = tx
        .query(
            "SELECT id FROM devices WHERE account_id = ANY($1) AND NOT removed \
             ORDER BY account_id, id",
            &[&accounts],
        )
        .await?;
    rows.iter().map(|r| Ok(net_id(col(r, 0)?))).collect()
}

/// The member devices a group message goes to: for an account with a signed
/// device list (SPEC.md §20), only the devices it lists.
async fn recipients_of(tx: &Tx<'_, '_>, accounts: &BTreeSet<i64>) -> PgResult<Vec<u64>> {
    let accounts: Vec<i64> = accounts.iter().copied().collect();
    let devices = tx
        .query(
            "SELECT account_id, id FROM devices WHERE account_id = ANY($1) AND NOT removed \
             ORDER BY account_id, id",
            &[&accounts],
        )
        .await?;
    let lists = tx
        .query(
            "SELECT account_id, list FROM device_lists WHERE account_id = ANY($1)",
            &[&accounts],
        )
        .await?;
    let devices = devices
        .iter()
        .map(|r| Ok((col(r, 0)?, net_id(col(r, 1)?))))
        .collect::<PgResult<Vec<_>>>()?;
    let lists = lists
        .iter()
        .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
        .collect::<PgResult<Vec<_>>>()?;
    Ok(crate::storage::device_lists::keep_listed(devices, lists))
}

fn member_ids(group: &GroupRecord) -> BTreeSet<i64> {
    group.members.iter().map(|m| m.account_id).collect()
}

async fn insert_member(
    tx: &Tx<'_, '_>,
    id: &GroupId,
    account: i64,
    role: GroupRole,
    version: u64,
) -> PgResult<()> {
    tx.execute(
        "INSERT INTO group_members (group_id, account_id, role, joined_at_version) \
         VALUES ($1, $2, $3, $4)",
        &[&id.as_slice(), &account, &(role as i64), &sql_id(version)],
    )
    .await?;
    Ok(())
}

async fn set_role(tx: &Tx<'_, '_>, id: &[u8], account: i64, role: GroupRole) -> PgResult<()> {
    tx.execute(
        "UPDATE group_members SET role = $3 WHERE group_id = $1 AND account_id = $2",
        &[&id, &account, &(role as i64)],
    )
    .await?;
    Ok(())
}

async fn apply_change(
    tx: &Tx<'_, '_>,
    group: &GroupRecord,
    actor: i64,
    change: &GroupChange,
    max_members: u32,
) -> PgResult<()> {
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
                let account = active_account(tx, name).await?;
                if role_of(account).is_some() || !accounts.insert(account) {
                    return Err(StorageError::InvalidGroupChange("already a member").into());
                }
            }
            if group.members.len().saturating_add(accounts.len())
                > usize::try_from(max_members).unwrap_or(usize::MAX)
            {
                return Err(StorageError::InvalidGroupChange("group would be too large").into());
            }
            for account in accounts {
                insert_member(tx, &group.id, account, GroupRole::Member, next).await?;
            }
        }
        GroupChange::Remove(usernames) => {
            for name in usernames {
                let account = active_account(tx, name).await?;
                if account == actor {
                    return Err(
                        StorageError::InvalidGroupChange("use leave to remove yourself").into(),
                    );
                }
                let n = tx
                    .execute(
                        "DELETE FROM group_members WHERE group_id = $1 AND account_id = $2",
                        &[&id, &account],
                    )
                    .await?;
                if n == 0 {
                    return Err(StorageError::NotGroupMember.into());
                }
            }
        }
        GroupChange::Leave => {
            tx.execute(
                "DELETE FROM group_members WHERE group_id = $1 AND account_id = $2",
                &[&id, &actor],
            )
            .await?;
            // The last admin leaving hands the role to the longest-standing
            // member, so a group is never left without an admin.
            if role_of(actor) == Some(GroupRole::Admin)
                && admins == 1
                && let Some(heir) = group.members.iter().find(|m| m.account_id != actor)
            {
                set_role(tx, id, heir.account_id, GroupRole::Admin).await?;
            }
        }
        GroupChange::SetRole(name, role) => {
            let account = active_account(tx, name).await?;
            let current = role_of(account).ok_or(StorageError::NotGroupMember)?;
            if current == GroupRole::Admin && *role == GroupRole::Member && admins == 1 {
                return Err(
                    StorageError::InvalidGroupChange("cannot demote the last admin").into(),
                );
            }
            set_role(tx, id, account, *role).await?;
        }
        GroupChange::SetMetadata(metadata) => {
            tx.execute(
                "UPDATE chat_groups SET metadata = $2 WHERE id = $1",
                &[&id, metadata],
            )
            .await?;
        }
    }
    tx.execute(
        "UPDATE chat_groups SET version = $2 WHERE id = $1",
        &[&id, &sql_id(next)],
    )
    .await?;
    Ok(())
}

impl GroupStorage for PostgresStorage {
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
        self.with_tx(async |tx| {
            // One creation at a time per account, across nodes, so the
            // count below holds.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('microbot-groups'), $1::int)",
                &[&i32::try_from(creator.rem_euclid(i64::from(i32::MAX))).unwrap_or(0)],
            )
            .await?;
            let created: i64 = col(
                &tx.query_one(
                    "SELECT COUNT(*) FROM chat_groups WHERE created_by = $1",
                    &[&creator],
                )
                .await?,
                0,
            )?;
            if u32::try_from(created).unwrap_or(u32::MAX) >= caps.max_created {
                return Err(StorageError::TooManyGroups.into());
            }
            let mut accounts = BTreeSet::new();
            for name in members {
                let account = active_account(tx, name).await?;
                if account != creator {
                    accounts.insert(account);
                }
            }
            let inserted = tx
                .execute(
                    "INSERT INTO chat_groups (id, version, metadata, created_at_ms, created_by) \
                     VALUES ($1, 1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                    &[&id.as_slice(), &metadata, &sql_time(now_ms), &creator],
                )
                .await?;
            if inserted == 0 {
                return Err(StorageError::GroupExists.into());
            }
            if accounts.len().saturating_add(1) > usize::try_from(max_members).unwrap_or(usize::MAX)
            {
                return Err(StorageError::InvalidGroupChange("group would be too large").into());
            }
            insert_member(tx, id, creator, GroupRole::Admin, 1).await?;
            for account in &accounts {
                insert_member(tx, id, *account, GroupRole::Member, 1).await?;
            }
            let group = load_group(tx, id, Lock::None).await?;
            let notify_devices = devices_of(tx, &member_ids(&group)).await?;
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
        self.with_tx(async |tx| {
            let before = load_group(tx, id, Lock::Update).await?;
            let actor_role = before
                .members
                .iter()
                .find(|m| m.account_id == actor)
                .map(|m| m.role)
                .ok_or(StorageError::NotGroupMember)?;
            if let Some(expected) = expected_version
                && expected != before.version
            {
                return Err(StorageError::StaleGroupVersion(before.version).into());
            }
            if !matches!(change, GroupChange::Leave) && actor_role != GroupRole::Admin {
                return Err(StorageError::NotGroupAdmin.into());
            }
            apply_change(tx, &before, actor, change, max_members).await?;
            let mut group = load_group(tx, id, Lock::None).await?;
            let mut accounts = member_ids(&before);
            accounts.extend(member_ids(&group));
            if group.members.is_empty() {
                tx.execute("DELETE FROM chat_groups WHERE id = $1", &[&id.as_slice()])
                    .await?;
                group.metadata.clear();
            }
            let notify_devices = devices_of(tx, &accounts).await?;
            Ok(GroupChangeOutcome {
                group,
                notify_devices,
            })
        })
    }

    fn group(&self, id: &GroupId, actor: i64) -> StorageResult<GroupRecord> {
        self.with_tx(async |tx| {
            let group = load_group(tx, id, Lock::None).await?;
            if group.members.iter().any(|m| m.account_id == actor) {
                Ok(group)
            } else {
                Err(StorageError::NotGroupMember.into())
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
        self.with_tx(async |tx| {
            let group = load_group(tx, id, Lock::Share).await?;
            let accounts = member_ids(&group);
            if !accounts.contains(&sender_account) {
                return Err(StorageError::NotGroupMember.into());
            }
            let everyone: Vec<u64> = recipients_of(tx, &accounts)
                .await?
                .into_iter()
                .filter(|d| *d != meta.sender_device_id)
                .collect();
            let sql_devices: Vec<i64> = everyone.iter().map(|d| sql_id(*d)).collect();
            lock_devices(tx, &sql_devices).await?;
            let skipped = full_queues(tx, &sql_devices, meta).await?;
            let recipients: Vec<u64> = everyone
                .into_iter()
                .filter(|d| !skipped.contains(d))
                .collect();
            if recipients.is_empty() {
                return Ok(GroupFanOut {
                    delivered: Vec::new(),
                    skipped,
                });
            }
            // The ciphertext is stored once; each queue holds a reference.
            let message: i64 = col(
                &tx.query_one(
                    "INSERT INTO group_messages (group_id, ciphertext) VALUES ($1, $2) RETURNING id",
                    &[&id.as_slice(), &ciphertext],
                )
                .await?,
                0,
            )?;
            let reached: Vec<i64> = recipients.iter().map(|d| sql_id(*d)).collect();
            tx.execute(
                "UPDATE devices SET queue_len = queue_len + 1 WHERE id = ANY($1)",
                &[&reached],
            )
            .await?;
            let mut out = Vec::with_capacity(recipients.len());
            for device in recipients {
                let row = tx
                    .query_one(
                        "INSERT INTO envelopes (device_id, sender_username, sender_device_id, \
                         server_timestamp_ms, expires_at_ms, ciphertext, group_message_id) \
                         VALUES ($1, $2, $3, $4, $5, ''::bytea, $6) RETURNING id",
                        &[
                            &sql_id(device),
                            &meta.sender_username,
                            &sql_id(meta.sender_device_id),
                            &sql_time(meta.now_ms),
                            &sql_time(meta.expires_at_ms),
                            &message,
                        ],
                    )
                    .await?;
                out.push(FanOut {
                    envelope_id: net_id(col(&row, 0)?),
                    device_id: device,
                });
            }
            Ok(GroupFanOut {
                delivered: out,
                skipped,
            })
        })
    }
}

impl From<PgError> for StorageError {
    fn from(e: PgError) -> Self {
        e.into_storage()
    }
}

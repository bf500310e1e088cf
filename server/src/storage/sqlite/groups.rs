//! SQLite implementation of [`GroupStorage`] (SPEC.md §12.10).
//!
//! Every change is one IMMEDIATE transaction: the version check, the change
//! and the version bump commit together, so two concurrent changes with the
//! same expected version cannot both succeed. The sequence of each
//! operation is [`group_flow`]'s; this file supplies its rows
//! ([`GroupRows`] for [`Connection`]) and a group send's queue writes.

use std::collections::BTreeSet;

use futures_util::FutureExt as _;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStorage, blocking, db, grow_queue, has_room, net_id, sql_id, sql_time};
use crate::storage::OwnedSendMeta;
use crate::storage::group_flow::{self, GroupLock, GroupRows};
use crate::storage::group_rules::{Accounts, ChangePlan, CreateFacts, MemberWrite};
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

/// The active accounts among `names` (the rules decide what a missing
/// one means).
fn resolve(tx: &Connection, names: &[&str]) -> StorageResult<Accounts> {
    let mut stmt = tx
        .prepare_cached("SELECT id FROM accounts WHERE username = ?1 AND active = 1")
        .map_err(db)?;
    let mut accounts = Accounts::new();
    for name in names {
        if let Some(id) = stmt
            .query_row([name], |r| r.get::<_, i64>(0))
            .optional()
            .map_err(db)?
        {
            accounts.insert((*name).to_owned(), id);
        }
    }
    Ok(accounts)
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

fn insert_member(
    tx: &Connection,
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

/// Writes a planned change's rows and the version bump (or deletes the
/// group the last member left).
fn write_plan(tx: &Connection, id: &GroupId, plan: &ChangePlan) -> StorageResult<()> {
    let group = id.as_slice();
    for write in &plan.writes {
        match write {
            MemberWrite::Insert {
                account,
                role,
                joined_at_version,
            } => insert_member(tx, id, *account, *role, *joined_at_version)?,
            MemberWrite::Delete(account) => {
                tx.execute(
                    "DELETE FROM group_members WHERE group_id = ?1 AND account_id = ?2",
                    params![group, account],
                )
                .map_err(db)?;
            }
            MemberWrite::SetRole(account, role) => {
                tx.execute(
                    "UPDATE group_members SET role = ?3 WHERE group_id = ?1 AND account_id = ?2",
                    params![group, account, *role as i64],
                )
                .map_err(db)?;
            }
            MemberWrite::SetMetadata(metadata) => {
                tx.execute(
                    "UPDATE groups SET metadata = ?2 WHERE id = ?1",
                    params![group, metadata],
                )
                .map_err(db)?;
            }
        }
    }
    if plan.delete_group {
        tx.execute("DELETE FROM groups WHERE id = ?1", [group])
            .map_err(db)?;
    } else {
        tx.execute(
            "UPDATE groups SET version = ?2 WHERE id = ?1",
            params![group, sql_id(plan.version)],
        )
        .map_err(db)?;
    }
    Ok(())
}

/// Runs a [`group_flow`] sequence over SQLite rows. Every [`GroupRows`]
/// method of [`Connection`] is synchronous under its `async`, so the
/// sequence completes on its first poll; a sequence that waited would be a
/// bug, reported as a database error rather than a hang.
fn run_now<T>(flow: impl Future<Output = StorageResult<T>>) -> StorageResult<T> {
    flow.now_or_never().unwrap_or_else(|| {
        Err(StorageError::Database(
            "a SQLite group operation waited".to_owned(),
        ))
    })
}

impl GroupRows for Connection {
    type Error = StorageError;

    async fn load_group(&self, id: &GroupId, _lock: GroupLock) -> StorageResult<GroupRecord> {
        load_group(self, id)
    }

    async fn resolve(&self, names: &[&str]) -> StorageResult<Accounts> {
        resolve(self, names)
    }

    async fn devices_of(&self, accounts: &BTreeSet<i64>) -> StorageResult<Vec<u64>> {
        devices_of(self, accounts)
    }

    async fn recipients_of(&self, accounts: &BTreeSet<i64>) -> StorageResult<Vec<u64>> {
        recipients_of(self, accounts)
    }

    async fn create_facts(&self, id: &GroupId, creator: i64) -> StorageResult<CreateFacts> {
        let exists: Option<i64> = self
            .query_row("SELECT 1 FROM groups WHERE id = ?1", [id.as_slice()], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        let created: i64 = self
            .query_row(
                "SELECT COUNT(*) FROM groups WHERE created_by = ?1",
                [creator],
                |r| r.get(0),
            )
            .map_err(db)?;
        Ok(CreateFacts {
            exists: exists.is_some(),
            created_by_creator: net_id(created),
        })
    }

    async fn insert_group(
        &self,
        id: &GroupId,
        metadata: &[u8],
        now_ms: u64,
        creator: i64,
    ) -> StorageResult<()> {
        self.execute(
            "INSERT INTO groups (id, version, metadata, created_at_ms, created_by) \
             VALUES (?1, 1, ?2, ?3, ?4)",
            params![id.as_slice(), metadata, sql_time(now_ms), creator],
        )
        .map_err(db)?;
        Ok(())
    }

    async fn insert_member(
        &self,
        id: &GroupId,
        account: i64,
        role: GroupRole,
        joined_at_version: u64,
    ) -> StorageResult<()> {
        insert_member(self, id, account, role, joined_at_version)
    }

    async fn write_plan(&self, id: &GroupId, plan: &ChangePlan) -> StorageResult<()> {
        write_plan(self, id, plan)
    }
}

#[async_trait::async_trait]
impl GroupStorage for SqliteStorage {
    async fn create_group_capped(
        &self,
        id: &GroupId,
        creator: i64,
        members: &[String],
        metadata: &[u8],
        caps: GroupCaps,
        now_ms: u64,
    ) -> StorageResult<GroupChangeOutcome> {
        blocking(|| {
            self.with_tx(|tx| {
                let rows: &Connection = tx;
                run_now(group_flow::create(
                    rows, id, creator, members, metadata, caps, now_ms,
                ))
            })
        })
    }

    async fn change_group(
        &self,
        id: &GroupId,
        actor: i64,
        expected_version: Option<u64>,
        change: &GroupChange,
        max_members: u32,
    ) -> StorageResult<GroupChangeOutcome> {
        blocking(|| {
            self.with_tx(|tx| {
                let rows: &Connection = tx;
                run_now(group_flow::change(
                    rows,
                    id,
                    actor,
                    expected_version,
                    change,
                    max_members,
                ))
            })
        })
    }

    async fn group(&self, id: &GroupId, actor: i64) -> StorageResult<GroupRecord> {
        blocking(|| {
            self.with_tx(|tx| {
                let rows: &Connection = tx;
                run_now(group_flow::read(rows, id, actor))
            })
        })
    }

    /// Group sends are jobs of the one writer thread, queued on the call's
    /// first poll, like every other write.
    fn orders_group_sends(&self) -> bool {
        true
    }

    async fn enqueue_group(
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
        // Every check (membership, queue room) reads before the first write.
        self.writer
            .submit(super::Isolation::ChecksFirst, move |tx| {
            let (id, meta) = (&id, meta.borrowed());
            let targets = run_now(group_flow::send_targets(
                tx,
                id,
                sender_account,
                meta.sender_device_id,
            ))?;
            let mut recipients = Vec::new();
            let mut skipped = Vec::new();
            for device in targets {
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
            .await
    }
}

//! PostgreSQL implementation of [`GroupStorage`] (SPEC.md §12.10).
//!
//! A change locks the group row (`FOR UPDATE`) before checking the expected
//! version, so two nodes applying changes with the same expected version
//! serialise and the second gets `StaleGroupVersion`. A group send locks
//! the group row `FOR SHARE` (membership cannot change under it) and the
//! recipient device rows (queue caps, per-device id order). The sequence
//! of each operation is [`group_flow`]'s; this file supplies its rows
//! ([`GroupRows`] for [`Tx`]) and a group send's queue writes.

use std::collections::BTreeSet;

use super::{
    PgError, PgResult, PostgresStorage, Tx, col, full_queues, lock_devices, net_id, sql_id,
    sql_time,
};
use crate::storage::group_flow::{self, GroupLock, GroupRows};
use crate::storage::group_rules::{Accounts, ChangePlan, CreateFacts, MemberWrite};
use crate::storage::groups::{GROUP_ID_LEN, GroupRole, MemberRecord};
use crate::storage::{
    FanOut, GroupCaps, GroupChange, GroupChangeOutcome, GroupFanOut, GroupRecord, GroupStorage,
    SendMeta, StorageError, StorageResult,
};

type GroupId = [u8; GROUP_ID_LEN];

async fn load_group(tx: &Tx<'_, '_>, id: &GroupId, lock: GroupLock) -> PgResult<GroupRecord> {
    let suffix = match lock {
        GroupLock::None => "",
        GroupLock::Share => " FOR SHARE",
        GroupLock::Update => " FOR UPDATE",
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

/// The active accounts among `names` (the rules decide what a missing
/// one means).
async fn resolve(tx: &Tx<'_, '_>, names: &[&str]) -> PgResult<Accounts> {
    if names.is_empty() {
        return Ok(Accounts::new());
    }
    let rows = tx
        .query(
            "SELECT username, id FROM accounts WHERE username = ANY($1) AND active",
            &[&names],
        )
        .await?;
    rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
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

/// Writes a planned change's rows and the version bump (or deletes the
/// group the last member left).
async fn write_plan(tx: &Tx<'_, '_>, id: &GroupId, plan: &ChangePlan) -> PgResult<()> {
    let group = id.as_slice();
    for write in &plan.writes {
        match write {
            MemberWrite::Insert {
                account,
                role,
                joined_at_version,
            } => insert_member(tx, id, *account, *role, *joined_at_version).await?,
            MemberWrite::Delete(account) => {
                tx.execute(
                    "DELETE FROM group_members WHERE group_id = $1 AND account_id = $2",
                    &[&group, account],
                )
                .await?;
            }
            MemberWrite::SetRole(account, role) => {
                tx.execute(
                    "UPDATE group_members SET role = $3 WHERE group_id = $1 AND account_id = $2",
                    &[&group, account, &(*role as i64)],
                )
                .await?;
            }
            MemberWrite::SetMetadata(metadata) => {
                tx.execute(
                    "UPDATE chat_groups SET metadata = $2 WHERE id = $1",
                    &[&group, metadata],
                )
                .await?;
            }
        }
    }
    if plan.delete_group {
        tx.execute("DELETE FROM chat_groups WHERE id = $1", &[&group])
            .await?;
    } else {
        tx.execute(
            "UPDATE chat_groups SET version = $2 WHERE id = $1",
            &[&group, &sql_id(plan.version)],
        )
        .await?;
    }
    Ok(())
}

impl GroupRows for Tx<'_, '_> {
    type Error = PgError;

    async fn load_group(&self, id: &GroupId, lock: GroupLock) -> PgResult<GroupRecord> {
        load_group(self, id, lock).await
    }

    async fn resolve(&self, names: &[&str]) -> PgResult<Accounts> {
        resolve(self, names).await
    }

    async fn devices_of(&self, accounts: &BTreeSet<i64>) -> PgResult<Vec<u64>> {
        devices_of(self, accounts).await
    }

    async fn recipients_of(&self, accounts: &BTreeSet<i64>) -> PgResult<Vec<u64>> {
        recipients_of(self, accounts).await
    }

    async fn create_facts(&self, id: &GroupId, creator: i64) -> PgResult<CreateFacts> {
        // One creation at a time per account, across nodes, so the count
        // below holds.
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtext('microbot-groups'), $1::int)",
            &[&i32::try_from(creator.rem_euclid(i64::from(i32::MAX))).unwrap_or(0)],
        )
        .await?;
        let facts = self
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM chat_groups WHERE id = $1), \
                 (SELECT COUNT(*) FROM chat_groups WHERE created_by = $2)",
                &[&id.as_slice(), &creator],
            )
            .await?;
        Ok(CreateFacts {
            exists: col(&facts, 0)?,
            created_by_creator: net_id(col(&facts, 1)?),
        })
    }

    async fn insert_group(
        &self,
        id: &GroupId,
        metadata: &[u8],
        now_ms: u64,
        creator: i64,
    ) -> PgResult<()> {
        // Another node may have taken the id since the facts were read.
        let inserted = self
            .execute(
                "INSERT INTO chat_groups (id, version, metadata, created_at_ms, created_by) \
                 VALUES ($1, 1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                &[&id.as_slice(), &metadata, &sql_time(now_ms), &creator],
            )
            .await?;
        if inserted == 0 {
            return Err(StorageError::GroupExists.into());
        }
        Ok(())
    }

    async fn insert_member(
        &self,
        id: &GroupId,
        account: i64,
        role: GroupRole,
        joined_at_version: u64,
    ) -> PgResult<()> {
        insert_member(self, id, account, role, joined_at_version).await
    }

    async fn write_plan(&self, id: &GroupId, plan: &ChangePlan) -> PgResult<()> {
        write_plan(self, id, plan).await
    }
}

#[async_trait::async_trait]
impl GroupStorage for PostgresStorage {
    async fn create_group_capped(
        &self,
        id: &GroupId,
        creator: i64,
        members: &[String],
        metadata: &[u8],
        caps: GroupCaps,
        now_ms: u64,
    ) -> StorageResult<GroupChangeOutcome> {
        with_tx!(self, |tx| group_flow::create(
            tx, id, creator, members, metadata, caps, now_ms
        ))
    }

    async fn change_group(
        &self,
        id: &GroupId,
        actor: i64,
        expected_version: Option<u64>,
        change: &GroupChange,
        max_members: u32,
    ) -> StorageResult<GroupChangeOutcome> {
        with_tx!(self, |tx| group_flow::change(
            tx,
            id,
            actor,
            expected_version,
            change,
            max_members
        ))
    }

    async fn group(&self, id: &GroupId, actor: i64) -> StorageResult<GroupRecord> {
        with_tx!(self, |tx| group_flow::read(tx, id, actor))
    }

    async fn enqueue_group(
        &self,
        id: &GroupId,
        sender_account: i64,
        meta: &SendMeta<'_>,
        ciphertext: &[u8],
    ) -> StorageResult<GroupFanOut> {
        with_tx!(self, |tx| async {
            let everyone =
                group_flow::send_targets(tx, id, sender_account, meta.sender_device_id).await?;
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
            // One statement for every reference; RETURNING pairs each id
            // with its device (each device occurs once).
            let rows = tx
                .query(
                    "INSERT INTO envelopes (device_id, sender_username, sender_device_id, \
                     server_timestamp_ms, expires_at_ms, ciphertext, group_message_id) \
                     SELECT d, $2, $3, $4, $5, ''::bytea, $6 FROM unnest($1::bigint[]) AS u(d) \
                     RETURNING id, device_id",
                    &[
                        &reached,
                        &meta.sender_username,
                        &sql_id(meta.sender_device_id),
                        &sql_time(meta.now_ms),
                        &sql_time(meta.expires_at_ms),
                        &message,
                    ],
                )
                .await?;
            let mut ids = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                ids.insert(net_id(col(r, 1)?), net_id(col(r, 0)?));
            }
            let mut out = Vec::with_capacity(recipients.len());
            for device in recipients {
                let Some(envelope_id) = ids.get(&device).copied() else {
                    return Err(StorageError::Database(format!(
                        "no envelope stored for device {device}"
                    ))
                    .into());
                };
                out.push(FanOut {
                    envelope_id,
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

//! PostgreSQL implementation of [`SuspensionStorage`] (SPEC.md §18.7), the
//! same rules as the SQLite one.

use super::{PgResult, PostgresStorage, col, net_id, sql_id, sql_time};
use crate::storage::StorageResult;
use crate::storage::suspension::{
    SuspensionRecord, SuspensionStorage, SuspensionTarget, effective_suspension,
};

/// Deletes the suspensions of deleted accounts and removed devices.
const DROP_GONE: &str = "DELETE FROM suspensions WHERE \
     (kind = 'account' AND target_id NOT IN (SELECT id FROM accounts)) \
     OR (kind = 'device' AND target_id NOT IN (SELECT id FROM devices WHERE NOT removed))";

#[async_trait::async_trait]
impl SuspensionStorage for PostgresStorage {
    async fn suspend(
        &self,
        target: SuspensionTarget,
        by: &str,
        now_ms: u64,
    ) -> StorageResult<bool> {
        let (kind, id) = target.key();
        with_tx!(self, |tx| async {
            let n = tx
                .execute(
                    "INSERT INTO suspensions (kind, target_id, created_by, created_at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (kind, target_id) DO NOTHING",
                    &[&kind, &id, &by, &sql_time(now_ms)],
                )
                .await?;
            Ok(n == 1)
        })
    }

    async fn unsuspend(&self, target: SuspensionTarget) -> StorageResult<bool> {
        let (kind, id) = target.key();
        with_tx!(self, |tx| async {
            let n = tx
                .execute(
                    "DELETE FROM suspensions WHERE kind = $1 AND target_id = $2",
                    &[&kind, &id],
                )
                .await?;
            Ok(n == 1)
        })
    }

    async fn suspensions(&self) -> StorageResult<Vec<SuspensionRecord>> {
        with_tx!(self, |tx| async {
            tx.execute(DROP_GONE, &[]).await?;
            let rows = tx
                .query(
                    "SELECT s.kind, s.target_id, COALESCE(a.username, ''), s.created_by, s.created_at_ms \
                     FROM suspensions s \
                     LEFT JOIN devices d ON s.kind = 'device' AND d.id = s.target_id \
                     LEFT JOIN accounts a ON a.id = CASE s.kind WHEN 'account' THEN s.target_id ELSE d.account_id END \
                     ORDER BY s.created_at_ms, s.kind, s.target_id",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(SuspensionRecord {
                        target: SuspensionTarget::from_key(col(r, 0)?, col(r, 1)?),
                        username: col(r, 2)?,
                        created_by: col(r, 3)?,
                        created_at_ms: net_id(col(r, 4)?),
                    })
                })
                .collect()
        })
    }

    async fn suspension_of(
        &self,
        account_id: i64,
        device_id: u64,
    ) -> StorageResult<Option<SuspensionTarget>> {
        with_client!(self, |db| async {
            let rows = db
                .query(
                    "SELECT kind FROM suspensions WHERE (kind = 'account' AND target_id = $1) \
                     OR (kind = 'device' AND target_id = $2)",
                    &[&account_id, &sql_id(device_id)],
                )
                .await?;
            let kinds = rows
                .iter()
                .map(|r| col::<&str>(r, 0))
                .collect::<PgResult<Vec<_>>>()?;
            Ok(effective_suspension(account_id, device_id, kinds))
        })
    }
}

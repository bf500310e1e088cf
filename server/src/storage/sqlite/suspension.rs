//! SQLite implementation of [`SuspensionStorage`] (SPEC.md §18.7).

use rusqlite::params;

use super::{SqliteStorage, blocking, db, net_id, sql_id, sql_time};
use crate::storage::StorageResult;
use crate::storage::suspension::{
    SuspensionRecord, SuspensionStorage, SuspensionTarget, effective_suspension,
};

/// Deletes the suspensions of deleted accounts and removed devices.
const DROP_GONE: &str = "DELETE FROM suspensions WHERE \
     (kind = 'account' AND target_id NOT IN (SELECT id FROM accounts)) \
     OR (kind = 'device' AND target_id NOT IN (SELECT id FROM devices WHERE removed = 0))";

#[async_trait::async_trait]
impl SuspensionStorage for SqliteStorage {
    async fn suspend(
        &self,
        target: SuspensionTarget,
        by: &str,
        now_ms: u64,
    ) -> StorageResult<bool> {
        blocking(|| {
            let (kind, id) = target.key();
            self.with_tx(|tx| {
                let n = tx
                    .execute(
                        "INSERT INTO suspensions (kind, target_id, created_by, created_at_ms) \
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (kind, target_id) DO NOTHING",
                        params![kind, id, by, sql_time(now_ms)],
                    )
                    .map_err(db)?;
                Ok(n == 1)
            })
        })
    }

    async fn unsuspend(&self, target: SuspensionTarget) -> StorageResult<bool> {
        blocking(|| {
            let (kind, id) = target.key();
            self.with_tx(|tx| {
                let n = tx
                    .execute(
                        "DELETE FROM suspensions WHERE kind = ?1 AND target_id = ?2",
                        params![kind, id],
                    )
                    .map_err(db)?;
                Ok(n == 1)
            })
        })
    }

    async fn suspensions(&self) -> StorageResult<Vec<SuspensionRecord>> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute_batch(DROP_GONE).map_err(db)?;
                let mut statement = tx
                    .prepare(
                        "SELECT s.kind, s.target_id, COALESCE(a.username, ''), s.created_by, s.created_at_ms \
                         FROM suspensions s \
                         LEFT JOIN devices d ON s.kind = 'device' AND d.id = s.target_id \
                         LEFT JOIN accounts a ON a.id = CASE s.kind WHEN 'account' THEN s.target_id ELSE d.account_id END \
                         ORDER BY s.created_at_ms, s.kind, s.target_id",
                    )
                    .map_err(db)?;
                let rows = statement
                    .query_map([], |r| {
                        let kind: String = r.get(0)?;
                        Ok(SuspensionRecord {
                            target: SuspensionTarget::from_key(&kind, r.get(1)?),
                            username: r.get(2)?,
                            created_by: r.get(3)?,
                            created_at_ms: net_id(r.get(4)?),
                        })
                    })
                    .map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)
            })
        })
    }

    async fn suspension_of(
        &self,
        account_id: i64,
        device_id: u64,
    ) -> StorageResult<Option<SuspensionTarget>> {
        self.lookup(|conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT kind FROM suspensions WHERE (kind = 'account' AND target_id = ?1) \
                         OR (kind = 'device' AND target_id = ?2) ORDER BY kind",
                )
                .map_err(db)?;
            let kinds = statement
                .query_map(params![account_id, sql_id(device_id)], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db)?;
            Ok(effective_suspension(
                account_id,
                device_id,
                kinds.iter().map(String::as_str),
            ))
        })
    }
}

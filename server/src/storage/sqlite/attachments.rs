//! SQLite implementation of [`AttachmentStorage`] (SPEC.md §12.11).

use rusqlite::{OptionalExtension, params};

use super::{SqliteStorage, blocking, db, net_id, sql_id, sql_time};
use crate::storage::attachments::{ATTACHMENT_ID_LEN, check_quota, owned_by};
use crate::storage::{AttachmentRecord, AttachmentStorage, StorageResult};

type AttachmentId = [u8; ATTACHMENT_ID_LEN];

const COLUMNS: &str = "id, account_id, token_hash, size, committed, expires_at_ms";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttachmentRecord> {
    Ok(AttachmentRecord::from_columns(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn load(
    conn: &rusqlite::Connection,
    id: &AttachmentId,
    now_ms: u64,
) -> StorageResult<Option<AttachmentRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM attachments WHERE id = ?1 AND expires_at_ms > ?2"),
        params![id.as_slice(), sql_time(now_ms)],
        from_row,
    )
    .optional()
    .map_err(db)
}

#[async_trait::async_trait]
impl AttachmentStorage for SqliteStorage {
    async fn create_attachment(
        &self,
        record: &AttachmentRecord,
        quota: u64,
        now_ms: u64,
    ) -> StorageResult<()> {
        blocking(|| {
            self.with_tx(|tx| {
                if quota > 0 {
                    let used: i64 = tx
                        .query_row(
                            "SELECT COALESCE(SUM(size), 0) FROM attachments \
                             WHERE account_id = ?1 AND expires_at_ms > ?2",
                            params![record.account_id, sql_time(now_ms)],
                            |r| r.get(0),
                        )
                        .map_err(db)?;
                    check_quota(quota, net_id(used), record.size)?;
                }
                tx.execute(
                    "INSERT INTO attachments (id, account_id, token_hash, size, committed, created_at_ms, \
                     expires_at_ms) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
                    params![
                        record.id.as_slice(),
                        record.account_id,
                        record.token_hash.as_slice(),
                        sql_id(record.size),
                        sql_time(now_ms),
                        sql_time(record.expires_at_ms)
                    ],
                )
                .map_err(db)?;
                Ok(())
            })
        })
    }

    async fn attachment(
        &self,
        id: &AttachmentId,
        now_ms: u64,
    ) -> StorageResult<Option<AttachmentRecord>> {
        self.lookup(|conn| load(conn, id, now_ms))
    }

    async fn replace_upload_token(
        &self,
        id: &AttachmentId,
        account_id: i64,
        token_hash: &[u8; 32],
        now_ms: u64,
    ) -> StorageResult<AttachmentRecord> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut record = owned_by(load(tx, id, now_ms)?, account_id)?;
                tx.execute(
                    "UPDATE attachments SET token_hash = ?2 WHERE id = ?1",
                    params![id.as_slice(), token_hash.as_slice()],
                )
                .map_err(db)?;
                record.token_hash = *token_hash;
                Ok(record)
            })
        })
    }

    async fn commit_attachment(&self, id: &AttachmentId, committed: u64) -> StorageResult<()> {
        blocking(|| {
            self.lock()
                .execute(
                    "UPDATE attachments SET committed = ?2 WHERE id = ?1 AND committed < ?2 AND size >= ?2",
                    params![id.as_slice(), sql_id(committed)],
                )
                .map_err(db)?;
            Ok(())
        })
    }

    async fn purge_expired_attachments(&self, now_ms: u64) -> StorageResult<Vec<AttachmentId>> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut stmt = tx
                    .prepare("DELETE FROM attachments WHERE expires_at_ms <= ?1 RETURNING id")
                    .map_err(db)?;
                let ids = stmt
                    .query_map([sql_time(now_ms)], |r| r.get::<_, Vec<u8>>(0))
                    .map_err(db)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db)?;
                Ok(ids
                    .into_iter()
                    .filter_map(|id| AttachmentId::try_from(id).ok())
                    .collect())
            })
        })
    }
}

//! PostgreSQL implementation of [`AttachmentStorage`] (SPEC.md §12.11).
//! Only the records live here; the bytes are files in the attachments
//! directory, which every node of a cluster must share.

use super::{PgResult, PostgresStorage, Tx, col, net_id, sql_id, sql_time};
use crate::storage::attachments::{ATTACHMENT_ID_LEN, check_quota, owned_by};
use crate::storage::{AttachmentRecord, AttachmentStorage, StorageResult};

type AttachmentId = [u8; ATTACHMENT_ID_LEN];

const COLUMNS: &str = "id, account_id, token_hash, size, committed, expires_at_ms";

fn from_row(r: &tokio_postgres::Row) -> PgResult<AttachmentRecord> {
    Ok(AttachmentRecord::from_columns(
        col(r, 0)?,
        col(r, 1)?,
        col(r, 2)?,
        col(r, 3)?,
        col(r, 4)?,
        col(r, 5)?,
    ))
}

async fn load(
    tx: &Tx<'_, '_>,
    id: &AttachmentId,
    now_ms: u64,
    for_update: bool,
) -> PgResult<Option<AttachmentRecord>> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    tx.query_opt(
        &format!("SELECT {COLUMNS} FROM attachments WHERE id = $1 AND expires_at_ms > $2{lock}"),
        &[&id.as_slice(), &sql_time(now_ms)],
    )
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

#[async_trait::async_trait]
impl AttachmentStorage for PostgresStorage {
    async fn create_attachment(
        &self,
        record: &AttachmentRecord,
        quota: u64,
        now_ms: u64,
    ) -> StorageResult<()> {
        with_tx!(self, |tx| async {
            if quota > 0 {
                // One quota check at a time per account, across nodes.
                tx.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('microbot-quota'), $1::int)",
                    &[
                        &i32::try_from(record.account_id.rem_euclid(i64::from(i32::MAX)))
                            .unwrap_or(0),
                    ],
                )
                .await?;
                let used: i64 = col(
                    &tx.query_one(
                        "SELECT COALESCE(SUM(size), 0)::bigint FROM attachments \
                         WHERE account_id = $1 AND expires_at_ms > $2",
                        &[&record.account_id, &sql_time(now_ms)],
                    )
                    .await?,
                    0,
                )?;
                check_quota(quota, net_id(used), record.size)?;
            }
            tx.execute(
                "INSERT INTO attachments (id, account_id, token_hash, size, committed, \
                 created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, 0, $5, $6)",
                &[
                    &record.id.as_slice(),
                    &record.account_id,
                    &record.token_hash.as_slice(),
                    &sql_id(record.size),
                    &sql_time(now_ms),
                    &sql_time(record.expires_at_ms),
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn attachment(
        &self,
        id: &AttachmentId,
        now_ms: u64,
    ) -> StorageResult<Option<AttachmentRecord>> {
        with_tx!(self, |tx| load(tx, id, now_ms, false))
    }

    async fn replace_upload_token(
        &self,
        id: &AttachmentId,
        account_id: i64,
        token_hash: &[u8; 32],
        now_ms: u64,
    ) -> StorageResult<AttachmentRecord> {
        with_tx!(self, |tx| async {
            let mut record = owned_by(load(tx, id, now_ms, true).await?, account_id)?;
            tx.execute(
                "UPDATE attachments SET token_hash = $2 WHERE id = $1",
                &[&id.as_slice(), &token_hash.as_slice()],
            )
            .await?;
            record.token_hash = *token_hash;
            Ok(record)
        })
    }

    async fn commit_attachment(&self, id: &AttachmentId, committed: u64) -> StorageResult<()> {
        with_tx!(self, |tx| async {
            tx.execute(
                "UPDATE attachments SET committed = $2 WHERE id = $1 AND committed < $2 AND size >= $2",
                &[&id.as_slice(), &sql_id(committed)],
            )
            .await?;
            Ok(())
        })
    }

    async fn purge_expired_attachments(&self, now_ms: u64) -> StorageResult<Vec<AttachmentId>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "DELETE FROM attachments WHERE expires_at_ms <= $1 RETURNING id",
                    &[&sql_time(now_ms)],
                )
                .await?;
            Ok(rows
                .iter()
                .filter_map(|r| col::<Vec<u8>>(r, 0).ok())
                .filter_map(|id| AttachmentId::try_from(id).ok())
                .collect())
        })
    }
}

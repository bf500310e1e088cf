//! PostgreSQL implementation of [`ProvisioningStorage`] (SPEC.md §12.14),
//! the same rules as the SQLite one.

use super::{PostgresStorage, col, sql_time};
use crate::storage::StorageResult;
use crate::storage::provisioning::{ProvisioningStorage, SLOT_ID_LEN, SlotRead, slot_room};

type SlotId = [u8; SLOT_ID_LEN];

#[async_trait::async_trait]
impl ProvisioningStorage for PostgresStorage {
    async fn create_provisioning_slot(
        &self,
        id: &SlotId,
        expires_at_ms: u64,
        now_ms: u64,
        max_open: u64,
    ) -> StorageResult<bool> {
        with_tx!(self, |tx| async {
            tx.execute(
                "DELETE FROM provisioning_slots WHERE expires_at_ms <= $1",
                &[&sql_time(now_ms)],
            )
            .await?;
            let open: i64 = col(
                &tx.query_one("SELECT COUNT(*)::bigint FROM provisioning_slots", &[])
                    .await?,
                0,
            )?;
            if !slot_room(open, max_open) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO provisioning_slots (id, expires_at_ms, sealed) VALUES ($1, $2, NULL)",
                &[&id.as_slice(), &sql_time(expires_at_ms)],
            )
            .await?;
            Ok(true)
        })
    }

    async fn put_provisioning_message(
        &self,
        id: &SlotId,
        sealed: &[u8],
        now_ms: u64,
    ) -> StorageResult<bool> {
        with_tx!(self, |tx| async {
            let changed = tx
                .execute(
                    "UPDATE provisioning_slots SET sealed = $2 \
                     WHERE id = $1 AND sealed IS NULL AND expires_at_ms > $3",
                    &[&id.as_slice(), &sealed, &sql_time(now_ms)],
                )
                .await?;
            Ok(changed == 1)
        })
    }

    async fn take_provisioning_message(&self, id: &SlotId, now_ms: u64) -> StorageResult<SlotRead> {
        with_tx!(self, |tx| async {
            // DELETE … RETURNING: one statement, so two concurrent reads of a
            // filled slot cannot both get the message.
            let taken = tx
                .query_opt(
                    "DELETE FROM provisioning_slots \
                     WHERE id = $1 AND expires_at_ms > $2 AND sealed IS NOT NULL \
                     RETURNING sealed",
                    &[&id.as_slice(), &sql_time(now_ms)],
                )
                .await?;
            if let Some(row) = taken {
                return Ok(SlotRead::Ready(col(&row, 0)?));
            }
            let waiting = tx
                .query_opt(
                    "SELECT 1 FROM provisioning_slots WHERE id = $1 AND expires_at_ms > $2",
                    &[&id.as_slice(), &sql_time(now_ms)],
                )
                .await?;
            Ok(if waiting.is_some() {
                SlotRead::Waiting
            } else {
                SlotRead::Missing
            })
        })
    }
}

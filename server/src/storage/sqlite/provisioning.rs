//! SQLite implementation of [`ProvisioningStorage`] (SPEC.md §12.14).

use rusqlite::{OptionalExtension, params};

use super::{SqliteStorage, blocking, db, sql_time};
use crate::storage::StorageResult;
use crate::storage::provisioning::{ProvisioningStorage, SLOT_ID_LEN, SlotRead, slot_room};

type SlotId = [u8; SLOT_ID_LEN];

#[async_trait::async_trait]
impl ProvisioningStorage for SqliteStorage {
    async fn create_provisioning_slot(
        &self,
        id: &SlotId,
        expires_at_ms: u64,
        now_ms: u64,
        max_open: u64,
    ) -> StorageResult<bool> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "DELETE FROM provisioning_slots WHERE expires_at_ms <= ?1",
                    params![sql_time(now_ms)],
                )
                .map_err(db)?;
                let open: i64 = tx
                    .query_row("SELECT COUNT(*) FROM provisioning_slots", [], |r| r.get(0))
                    .map_err(db)?;
                if !slot_room(open, max_open) {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO provisioning_slots (id, expires_at_ms, sealed) VALUES (?1, ?2, NULL)",
                    params![id.as_slice(), sql_time(expires_at_ms)],
                )
                .map_err(db)?;
                Ok(true)
            })
        })
    }

    async fn put_provisioning_message(
        &self,
        id: &SlotId,
        sealed: &[u8],
        now_ms: u64,
    ) -> StorageResult<bool> {
        blocking(|| {
            self.with_tx(|tx| {
                let changed = tx
                    .execute(
                        "UPDATE provisioning_slots SET sealed = ?2 \
                         WHERE id = ?1 AND sealed IS NULL AND expires_at_ms > ?3",
                        params![id.as_slice(), sealed, sql_time(now_ms)],
                    )
                    .map_err(db)?;
                Ok(changed == 1)
            })
        })
    }

    async fn take_provisioning_message(&self, id: &SlotId, now_ms: u64) -> StorageResult<SlotRead> {
        blocking(|| {
            self.with_tx(|tx| {
                let row: Option<Option<Vec<u8>>> = tx
                    .query_row(
                        "SELECT sealed FROM provisioning_slots WHERE id = ?1 AND expires_at_ms > ?2",
                        params![id.as_slice(), sql_time(now_ms)],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?;
                match row {
                    None => Ok(SlotRead::Missing),
                    Some(None) => Ok(SlotRead::Waiting),
                    Some(Some(sealed)) => {
                        tx.execute(
                            "DELETE FROM provisioning_slots WHERE id = ?1",
                            params![id.as_slice()],
                        )
                        .map_err(db)?;
                        Ok(SlotRead::Ready(sealed))
                    }
                }
            })
        })
    }
}

//! SQLite implementation of [`DeviceListStorage`] (SPEC.md §20).

use rusqlite::{OptionalExtension, params};

use super::{SqliteStorage, blocking, db, net_id};
use crate::storage::StorageResult;
use crate::storage::device_lists::{DeviceListStorage, StoredDeviceList, sql_version};

#[async_trait::async_trait]
impl DeviceListStorage for SqliteStorage {
    async fn device_list(&self, account_id: i64) -> StorageResult<Option<StoredDeviceList>> {
        self.lookup(|conn| {
            conn.query_row(
                "SELECT version, list FROM device_lists WHERE account_id = ?1",
                [account_id],
                |r| {
                    Ok(StoredDeviceList {
                        version: net_id(r.get(0)?),
                        bytes: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
    }

    async fn put_device_list(
        &self,
        account_id: i64,
        version: u64,
        bytes: &[u8],
        replace_any: bool,
    ) -> StorageResult<bool> {
        blocking(|| {
            let changed = self
                .lock()
                .execute(
                    "INSERT INTO device_lists (account_id, version, list) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (account_id) DO UPDATE SET version = excluded.version, list = excluded.list \
                     WHERE ?4 OR device_lists.version < excluded.version",
                    params![account_id, sql_version(version), bytes, replace_any],
                )
                .map_err(db)?;
            Ok(changed == 1)
        })
    }
}

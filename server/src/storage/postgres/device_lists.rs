//! PostgreSQL implementation of [`DeviceListStorage`] (SPEC.md §20), the
//! same rules as the SQLite one.

use super::{PostgresStorage, col, net_id};
use crate::storage::StorageResult;
use crate::storage::device_lists::{DeviceListStorage, StoredDeviceList, sql_version};

#[async_trait::async_trait]
impl DeviceListStorage for PostgresStorage {
    async fn device_list(&self, account_id: i64) -> StorageResult<Option<StoredDeviceList>> {
        with_client!(self, |db| async {
            let row = db
                .query_opt(
                    "SELECT version, list FROM device_lists WHERE account_id = $1",
                    &[&account_id],
                )
                .await?;
            row.map(|row| {
                Ok(StoredDeviceList {
                    version: net_id(col(&row, 0)?),
                    bytes: col(&row, 1)?,
                })
            })
            .transpose()
        })
    }

    async fn put_device_list(
        &self,
        account_id: i64,
        version: u64,
        bytes: &[u8],
        replace_any: bool,
    ) -> StorageResult<bool> {
        with_client!(self, |db| async {
            let changed = db
                .execute(
                    "INSERT INTO device_lists (account_id, version, list) VALUES ($1, $2, $3) \
                     ON CONFLICT (account_id) DO UPDATE SET version = excluded.version, list = excluded.list \
                     WHERE $4 OR device_lists.version < excluded.version",
                    &[&account_id, &sql_version(version), &bytes, &replace_any],
                )
                .await?;
            Ok(changed == 1)
        })
    }
}

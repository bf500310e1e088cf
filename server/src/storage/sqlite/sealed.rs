//! SQLite implementation of [`SealedStorage`] (SPEC.md §19.6, §19.7).

use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use super::{SqliteStorage, blocking, db, sql_id};
use crate::storage::StorageResult;
use crate::storage::sealed::{
    ACCESS_KEY_LEN, SealedStorage, UnidentifiedAccess, access_key_from, stored_key,
};

#[async_trait::async_trait]
impl SealedStorage for SqliteStorage {
    async fn certificate_key(
        &self,
        key_id: u32,
        candidate: &[u8; 32],
    ) -> StorageResult<(u32, Zeroizing<[u8; 32]>)> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "INSERT OR IGNORE INTO server_keys (name, key_id, secret) VALUES ('sender_certificate', ?1, ?2)",
                    params![i64::from(key_id), candidate.as_slice()],
                )
                .map_err(db)?;
                let (id, secret): (i64, Zeroizing<Vec<u8>>) = tx
                    .query_row(
                        "SELECT key_id, secret FROM server_keys WHERE name = 'sender_certificate'",
                        [],
                        |r| Ok((r.get(0)?, Zeroizing::new(r.get(1)?))),
                    )
                    .map_err(db)?;
                stored_key(id, &secret)
            })
        })
    }

    async fn set_unidentified_access(
        &self,
        account_id: i64,
        access_key: Option<&[u8; ACCESS_KEY_LEN]>,
        allow_anyone: bool,
    ) -> StorageResult<()> {
        blocking(|| {
            self.lock()
                .execute(
                    "UPDATE accounts SET access_key = ?2, allow_unidentified = ?3 WHERE id = ?1",
                    params![account_id, access_key.map(|k| k.to_vec()), allow_anyone],
                )
                .map_err(db)?;
            Ok(())
        })
    }

    async fn unidentified_access(
        &self,
        username: &str,
    ) -> StorageResult<Option<UnidentifiedAccess>> {
        self.lookup(|conn| {
            conn
                .query_row(
                    "SELECT id, access_key, allow_unidentified FROM accounts WHERE username = ?1 AND active = 1",
                    [username],
                    |r| {
                        Ok(UnidentifiedAccess {
                            account_id: r.get(0)?,
                            access_key: access_key_from(r.get(1)?),
                            allow_anyone: r.get(2)?,
                        })
                    },
                )
                .optional()
                .map_err(db)
        })
    }

    async fn device_identity_key(&self, device_id: u64) -> StorageResult<Option<Vec<u8>>> {
        self.lookup(|conn| {
            conn.query_row(
                "SELECT identity_key FROM device_keys WHERE device_id = ?1",
                [sql_id(device_id)],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
        })
    }
}

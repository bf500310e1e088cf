//! PostgreSQL implementation of [`SealedStorage`] (SPEC.md §19.6, §19.7),
//! the same rules as the SQLite one.

use zeroize::Zeroizing;

use super::{PostgresStorage, col, sql_id};
use crate::storage::StorageResult;
use crate::storage::sealed::{
    ACCESS_KEY_LEN, SealedStorage, UnidentifiedAccess, access_key_from, stored_key,
};

#[async_trait::async_trait]
impl SealedStorage for PostgresStorage {
    async fn certificate_key(
        &self,
        key_id: u32,
        candidate: &[u8; 32],
    ) -> StorageResult<(u32, Zeroizing<[u8; 32]>)> {
        let (id, secret): (i64, Zeroizing<Vec<u8>>) = with_tx!(self, |tx| async {
            tx.execute(
                "INSERT INTO server_keys (name, key_id, secret) VALUES ('sender_certificate', $1, $2) \
                 ON CONFLICT (name) DO NOTHING",
                &[&i64::from(key_id), &candidate.as_slice()],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT key_id, secret FROM server_keys WHERE name = 'sender_certificate'",
                    &[],
                )
                .await?;
            Ok((col(&row, 0)?, Zeroizing::new(col(&row, 1)?)))
        })?;
        stored_key(id, &secret)
    }

    async fn set_unidentified_access(
        &self,
        account_id: i64,
        access_key: Option<&[u8; ACCESS_KEY_LEN]>,
        allow_anyone: bool,
    ) -> StorageResult<()> {
        let key = access_key.map(|k| k.to_vec());
        with_client!(self, |db| async {
            db.execute(
                "UPDATE accounts SET access_key = $2, allow_unidentified = $3 WHERE id = $1",
                &[&account_id, &key, &allow_anyone],
            )
            .await?;
            Ok(())
        })
    }

    async fn unidentified_access(
        &self,
        username: &str,
    ) -> StorageResult<Option<UnidentifiedAccess>> {
        with_client!(self, |db| async {
            let row = db
                .query_opt(
                    "SELECT id, access_key, allow_unidentified FROM accounts \
                     WHERE username = $1 AND active",
                    &[&username],
                )
                .await?;
            row.map(|row| {
                Ok(UnidentifiedAccess {
                    account_id: col(&row, 0)?,
                    access_key: access_key_from(col(&row, 1)?),
                    allow_anyone: col(&row, 2)?,
                })
            })
            .transpose()
        })
    }

    async fn device_identity_key(&self, device_id: u64) -> StorageResult<Option<Vec<u8>>> {
        with_client!(self, |db| async {
            let row = db
                .query_opt(
                    "SELECT identity_key FROM device_keys WHERE device_id = $1",
                    &[&sql_id(device_id)],
                )
                .await?;
            row.map(|row| col(&row, 0)).transpose()
        })
    }
}

//! Group rows: the group records, our outbound sender key per group with the
//! devices it was distributed to, and the inbound sender-key records per
//! (group, sender device). Every secret is sealed like the rest of the
//! store; the associated data names the row.

use microbot_crypto::sender_key::{OutboundSenderKey, SenderKeyRecord};
use microbot_protocol::MessageId;
use microbot_protocol::content::{AttachmentPointer, Content, content::Body};
use prost::Message as _;
use rusqlite::{OptionalExtension as _, params};

use super::{Tx, from_sql_u64, to_sql_u64};
use crate::error::StoreError;
use crate::groups::{GROUP_RECORD_VERSION, GroupId, GroupRecord};

fn group_ad(id: &GroupId) -> Vec<u8> {
    format!("group/{id}").into_bytes()
}

fn outbound_ad(id: &GroupId) -> Vec<u8> {
    format!("sender_key_out/{id}").into_bytes()
}

fn inbound_ad(id: &GroupId, username: &str, device_id: u64) -> Vec<u8> {
    format!("sender_key_in/{id}/{username}/{device_id}").into_bytes()
}

impl Tx<'_> {
    // ---- group records ----

    pub(crate) fn group(&self, id: &GroupId) -> Result<Option<GroupRecord>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT record FROM groups WHERE group_id = ?1",
                [id.as_bytes().as_slice()],
                |row| row.get(0),
            )
            .optional()?;
        blob.map(|blob| self.open_group(id, &blob)).transpose()
    }

    fn open_group(&self, id: &GroupId, blob: &[u8]) -> Result<GroupRecord, StoreError> {
        let bytes = self.sealer.open("group", &group_ad(id), blob)?;
        let record = GroupRecord::decode(bytes.as_slice())
            .map_err(|_| StoreError::Corrupt { what: "group" })?;
        if record.format != GROUP_RECORD_VERSION {
            return Err(StoreError::Corrupt { what: "group" });
        }
        Ok(record)
    }

    pub(crate) fn set_group(&self, id: &GroupId, record: &GroupRecord) -> Result<(), StoreError> {
        let bytes = zeroize::Zeroizing::new(record.encode_to_vec());
        let blob = self.sealer.seal(&group_ad(id), &bytes);
        self.conn.execute(
            "INSERT OR REPLACE INTO groups (group_id, record) VALUES (?1, ?2)",
            params![id.as_bytes().as_slice(), blob],
        )?;
        Ok(())
    }

    pub(crate) fn groups(&self) -> Result<Vec<(GroupId, GroupRecord)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT group_id, record FROM groups ORDER BY group_id")?;
        let rows = stmt
            .query_map([], |row| {
                Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, blob)| {
                let id =
                    GroupId::from_slice(&id).ok_or(StoreError::Corrupt { what: "group id" })?;
                Ok((id, self.open_group(&id, &blob)?))
            })
            .collect()
    }

    // ---- our outbound sender key ----

    pub(crate) fn outbound_key(
        &self,
        id: &GroupId,
    ) -> Result<Option<OutboundSenderKey>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT state FROM sender_keys_out WHERE group_id = ?1",
                [id.as_bytes().as_slice()],
                |row| row.get(0),
            )
            .optional()?;
        blob.map(|blob| {
            let bytes = self.sealer.open("sender key", &outbound_ad(id), &blob)?;
            OutboundSenderKey::from_bytes(&bytes)
                .map_err(|_| StoreError::Corrupt { what: "sender key" })
        })
        .transpose()
    }

    pub(crate) fn set_outbound_key(
        &self,
        id: &GroupId,
        key: &OutboundSenderKey,
    ) -> Result<(), StoreError> {
        let blob = self.sealer.seal(&outbound_ad(id), &key.to_bytes());
        self.conn.execute(
            "INSERT OR REPLACE INTO sender_keys_out (group_id, state) VALUES (?1, ?2)",
            params![id.as_bytes().as_slice(), blob],
        )?;
        Ok(())
    }

    /// Forgets our sender key for the group and where it was distributed.
    pub(crate) fn delete_outbound_key(&self, id: &GroupId) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM sender_keys_out WHERE group_id = ?1",
            [id.as_bytes().as_slice()],
        )?;
        self.clear_shared(id)
    }

    /// Devices our current sender key was distributed to: (username, device, key id).
    pub(crate) fn shared(&self, id: &GroupId) -> Result<Vec<(String, u64, u32)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT username, device_id, key_id FROM sender_key_shared WHERE group_id = ?1",
        )?;
        let rows = stmt
            .query_map([id.as_bytes().as_slice()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    from_sql_u64(row.get::<_, i64>(1)?),
                    row.get::<_, u32>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub(crate) fn add_shared(
        &self,
        id: &GroupId,
        username: &str,
        device_id: u64,
        key_id: u32,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO sender_key_shared (group_id, username, device_id, key_id)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                id.as_bytes().as_slice(),
                username,
                to_sql_u64(device_id),
                key_id
            ],
        )?;
        Ok(())
    }

    pub(crate) fn clear_shared(&self, id: &GroupId) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM sender_key_shared WHERE group_id = ?1",
            [id.as_bytes().as_slice()],
        )?;
        Ok(())
    }

    // ---- inbound sender keys ----

    pub(crate) fn inbound_record(
        &self,
        id: &GroupId,
        username: &str,
        device_id: u64,
    ) -> Result<Option<SenderKeyRecord>, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT state FROM sender_keys_in WHERE group_id = ?1 AND username = ?2 AND device_id = ?3",
                params![id.as_bytes().as_slice(), username, to_sql_u64(device_id)],
                |row| row.get(0),
            )
            .optional()?;
        blob.map(|blob| {
            let bytes = self.sealer.open(
                "sender key record",
                &inbound_ad(id, username, device_id),
                &blob,
            )?;
            SenderKeyRecord::from_bytes(&bytes).map_err(|_| StoreError::Corrupt {
                what: "sender key record",
            })
        })
        .transpose()
    }

    pub(crate) fn set_inbound_record(
        &self,
        id: &GroupId,
        username: &str,
        device_id: u64,
        record: &SenderKeyRecord,
    ) -> Result<(), StoreError> {
        let blob = self
            .sealer
            .seal(&inbound_ad(id, username, device_id), &record.to_bytes());
        self.conn.execute(
            "INSERT OR REPLACE INTO sender_keys_in (group_id, username, device_id, state)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                id.as_bytes().as_slice(),
                username,
                to_sql_u64(device_id),
                blob
            ],
        )?;
        Ok(())
    }

    /// Forgets every sender key of the group (after we left it).
    pub(crate) fn delete_group_keys(&self, id: &GroupId) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM sender_keys_in WHERE group_id = ?1",
            [id.as_bytes().as_slice()],
        )?;
        self.delete_outbound_key(id)
    }

    // ---- attachments and the outbox ----

    /// The attachment pointer of the file message with this id (any author).
    pub(crate) fn attachment_pointer(
        &self,
        message_id: &MessageId,
    ) -> Result<Option<AttachmentPointer>, StoreError> {
        let rows = self.message_rows(
            "SELECT conversation, author, message_id, target_id, kind, sent_at_ms, received_at_ms, body
             FROM messages WHERE message_id = ?1 AND kind = 'attachment' ORDER BY seq",
            params![message_id.as_slice()],
        )?;
        Ok(rows.into_iter().find_map(|row| {
            match Content::decode(row.content.as_slice()).ok()?.body? {
                Body::Attachment(pointer) => Some(pointer),
                _ => None,
            }
        }))
    }

    /// Whether a send with this message id still waits in the outbox.
    pub(crate) fn outbox_contains(&self, message_id: &MessageId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM outbox WHERE message_id = ?1",
                [message_id.as_slice()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

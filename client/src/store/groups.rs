//! Group rows: the group records, our outbound sender key per group with the
//! devices it was distributed to, and the inbound sender-key records per
//! (group, sender device). Every secret is sealed like the rest of the
//! store; the associated data names the row. The group id is the index
//! field the backend sees.

use microbot_crypto::sender_key::{OutboundSenderKey, SenderKeyRecord};
use microbot_protocol::MessageId;
use microbot_protocol::content::{AttachmentPointer, Content, content::Body};
use prost::Message as _;

use super::Tx;
use super::backend::{InboundKeyRecord, SharedKeyRecord};
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
        let blob = self.read()?.group(id.as_bytes())?;
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
        self.write()?.put_group(id.as_bytes(), &blob)
    }

    pub(crate) fn groups(&self) -> Result<Vec<(GroupId, GroupRecord)>, StoreError> {
        let mut rows = self.read()?.groups()?;
        rows.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        rows.into_iter()
            .map(|entry| {
                let id = GroupId::from_slice(&entry.group_id)
                    .ok_or(StoreError::Corrupt { what: "group id" })?;
                Ok((id, self.open_group(&id, &entry.record)?))
            })
            .collect()
    }

    // ---- our outbound sender key ----

    pub(crate) fn outbound_key(
        &self,
        id: &GroupId,
    ) -> Result<Option<OutboundSenderKey>, StoreError> {
        let blob = self.read()?.outbound_key(id.as_bytes())?;
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
        self.write()?.put_outbound_key(id.as_bytes(), &blob)
    }

    /// Forgets our sender key for the group and where it was distributed.
    pub(crate) fn delete_outbound_key(&self, id: &GroupId) -> Result<(), StoreError> {
        self.write()?.delete_outbound_key(id.as_bytes())?;
        self.clear_shared(id)
    }

    /// Devices our current sender key was distributed to: (username, device, key id).
    pub(crate) fn shared(&self, id: &GroupId) -> Result<Vec<(String, u64, u32)>, StoreError> {
        let mut rows: Vec<(String, u64, u32)> = self
            .read()?
            .shared_keys(id.as_bytes())?
            .into_iter()
            .map(|r| (r.username, r.device_id, r.key_id))
            .collect();
        rows.sort();
        Ok(rows)
    }

    pub(crate) fn add_shared(
        &self,
        id: &GroupId,
        username: &str,
        device_id: u64,
        key_id: u32,
    ) -> Result<(), StoreError> {
        self.write()?.put_shared_key(&SharedKeyRecord {
            group_id: id.as_bytes().to_vec(),
            username: username.to_owned(),
            device_id,
            key_id,
        })
    }

    pub(crate) fn clear_shared(&self, id: &GroupId) -> Result<(), StoreError> {
        self.write()?.clear_shared_keys(id.as_bytes())
    }

    // ---- inbound sender keys ----

    pub(crate) fn inbound_record(
        &self,
        id: &GroupId,
        username: &str,
        device_id: u64,
    ) -> Result<Option<SenderKeyRecord>, StoreError> {
        let blob = self
            .read()?
            .inbound_key(id.as_bytes(), username, device_id)?;
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
        let state = self
            .sealer
            .seal(&inbound_ad(id, username, device_id), &record.to_bytes());
        self.write()?.put_inbound_key(&InboundKeyRecord {
            group_id: id.as_bytes().to_vec(),
            username: username.to_owned(),
            device_id,
            state,
        })
    }

    /// Forgets every sender key of the group (after we left it).
    pub(crate) fn delete_group_keys(&self, id: &GroupId) -> Result<(), StoreError> {
        self.write()?.delete_inbound_keys(id.as_bytes())?;
        self.delete_outbound_key(id)
    }

    // ---- attachments and the outbox ----

    /// The attachment pointer of the file message with this id (any author).
    pub(crate) fn attachment_pointer(
        &self,
        message_id: &MessageId,
    ) -> Result<Option<AttachmentPointer>, StoreError> {
        let mut records = self.read()?.messages_with_id(message_id)?;
        records.retain(|m| m.kind == "attachment");
        let rows = self.open_messages(records)?;
        Ok(rows.into_iter().find_map(|row| {
            match Content::decode(row.content.as_slice()).ok()?.body? {
                Body::Attachment(pointer) => Some(pointer),
                _ => None,
            }
        }))
    }

    /// Whether a send with this message id still waits in the outbox.
    pub(crate) fn outbox_contains(&self, message_id: &MessageId) -> Result<bool, StoreError> {
        self.in_outbox(message_id)
    }
}

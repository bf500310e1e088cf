//! Typed access to the store's tables: contacts, sessions, messages (and
//! their history pages), processed envelopes, the outbox and the receipts
//! for our own messages. Secret values are sealed with the
//! store's [`super::crypt::Sealer`]; the associated data names the row.
//! The rules are here, once, over any [`super::backend::Backend`]: which
//! session is used and how many are kept, duplicate messages, history
//! pages, the outbox order, receipts that only move forward.

use microbot_crypto::Session;
use microbot_protocol::MessageId;
use zeroize::Zeroizing;

use super::Tx;
use super::backend::{
    ContactRecord, HISTORY_KINDS, MessageRecord, OutboxRecord, ReceiptRecord, SendOutcomeRecord,
    SessionRecord,
};
use crate::error::StoreError;

/// Sessions kept per remote device (the newest is used for sending; older
/// ones still decrypt messages in flight after a simultaneous start).
const SESSIONS_PER_DEVICE: usize = 4;

/// What the store knows about a contact.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Contact {
    /// The identity key trusted for this contact (Ed25519 public).
    pub identity: [u8; 32],
    /// A different identity seen since, not acknowledged yet.
    pub pending: Option<[u8; 32]>,
    /// When the device list was last fetched from the server (ms).
    pub devices_checked_ms: u64,
}

/// A session with one remote device.
pub(crate) struct StoredSession {
    /// The session.
    pub session: Session,
}

/// One stored message (any content kind).
pub(crate) struct MessageRow {
    /// Conversation key ([`crate::Conversation::key`]).
    pub conversation: String,
    /// Username of the author.
    pub author: String,
    /// `Content.message_id`.
    pub message_id: MessageId,
    /// The message an edit, delete or reaction targets.
    pub target_id: Option<MessageId>,
    /// Short kind name (`text`, `edit`, …).
    pub kind: String,
    /// Sender's clock.
    pub sent_at_ms: u64,
    /// Our clock when stored.
    pub received_at_ms: u64,
    /// The encoded `Content`.
    pub content: Zeroizing<Vec<u8>>,
}

/// Where a text or file message sits in history.
pub(crate) struct HistoryHead {
    /// Its insertion position in the store (grows with every row).
    pub seq: u64,
    /// Username of the author.
    pub author: String,
    /// `Content.message_id`.
    pub message_id: MessageId,
}

/// How one of our sends ended when it left the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// The server stored it (at this time, when known).
    Stored {
        /// The server's time stamp.
        server_timestamp_ms: Option<u64>,
    },
    /// It was dropped: the reason's kind and text.
    Failed {
        /// `SendFailureReason::kind()`.
        kind: String,
        /// The reason's text.
        text: String,
    },
}

/// One queued send.
pub(crate) struct OutboxRow {
    /// Queue position (sends leave in this order).
    pub seq: i64,
    /// `Content.message_id` of the queued content.
    pub message_id: MessageId,
    /// Conversation key of the destination.
    pub destination: String,
    /// The encoded `Content` (not padded yet).
    pub content: Zeroizing<Vec<u8>>,
    /// Whether the application sent it, so its fate is announced
    /// (`Sent`, `NotDelivered`, `SendFailed`); false for what the SDK
    /// queued by itself (automatic receipts, group control messages).
    pub announce: bool,
}

fn id_array(bytes: &[u8], what: &'static str) -> Result<[u8; 16], StoreError> {
    <[u8; 16]>::try_from(bytes).map_err(|_| StoreError::Corrupt { what })
}

fn key_array(bytes: &[u8], what: &'static str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt { what })
}

fn session_ad(username: &str, device_id: u64) -> Vec<u8> {
    format!("session/{username}/{device_id}").into_bytes()
}

pub(super) fn message_ad(author: &str, id: &MessageId) -> Vec<u8> {
    format!("message/{author}/{}", hex::encode(id)).into_bytes()
}

fn outbox_ad(destination: &str, id: &MessageId) -> Vec<u8> {
    format!("outbox/{destination}/{}", hex::encode(id)).into_bytes()
}

/// An outbox position as the typed API hands it out (bit for bit).
fn outbox_seq(seq: u64) -> i64 {
    i64::from_ne_bytes(seq.to_ne_bytes())
}

/// Inverse of [`outbox_seq`].
fn backend_seq(seq: i64) -> u64 {
    u64::from_ne_bytes(seq.to_ne_bytes())
}

/// The message kinds that make up the view of one message: the original
/// and its edits and deletes.
const EVENT_KINDS: [&str; 4] = ["text", "edit", "delete", "attachment"];

/// The receipt kinds kept in history.
const RECEIPT_KINDS: [&str; 2] = ["delivery_receipt", "read_receipt"];

/// Sorts message records into store order.
fn by_seq(mut rows: Vec<MessageRecord>) -> Vec<MessageRecord> {
    rows.sort_by_key(|m| m.seq);
    rows
}

impl Tx<'_> {
    // ---- contacts ----

    pub(crate) fn contact(&self, username: &str) -> Result<Option<Contact>, StoreError> {
        self.read()?
            .contact(username)?
            .map(|record| decode_contact(&record))
            .transpose()
    }

    pub(crate) fn set_contact(&self, username: &str, contact: &Contact) -> Result<(), StoreError> {
        self.write()?.put_contact(&ContactRecord {
            username: username.to_owned(),
            identity_key: contact.identity.to_vec(),
            pending_identity: contact.pending.map(|p| p.to_vec()),
            devices_checked_ms: contact.devices_checked_ms,
        })
    }

    pub(crate) fn contacts(&self) -> Result<Vec<(String, Contact)>, StoreError> {
        let mut records = self.read()?.contacts()?;
        records.sort_by(|a, b| a.username.cmp(&b.username));
        records
            .into_iter()
            .map(|record| Ok((record.username.clone(), decode_contact(&record)?)))
            .collect()
    }

    // ---- sessions ----

    /// The sessions with one device, newest (last chosen) first.
    fn session_records(
        &self,
        username: &str,
        device_id: u64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut records = self.read()?.sessions(username, Some(device_id))?;
        records.sort_by_key(|r| std::cmp::Reverse(r.used_seq));
        Ok(records)
    }

    /// Sessions with one device, the one to send with first.
    pub(crate) fn sessions(
        &self,
        username: &str,
        device_id: u64,
    ) -> Result<Vec<StoredSession>, StoreError> {
        let ad = session_ad(username, device_id);
        self.session_records(username, device_id)?
            .iter()
            .map(|record| {
                let bytes = self.sealer.open("session", &ad, &record.state)?;
                let session = Session::from_bytes(&bytes)
                    .map_err(|_| StoreError::Corrupt { what: "session" })?;
                Ok(StoredSession { session })
            })
            .collect()
    }

    /// The remote identity of the session used for sending to the device.
    pub(crate) fn session_identity(
        &self,
        username: &str,
        device_id: u64,
    ) -> Result<Option<[u8; 32]>, StoreError> {
        self.session_records(username, device_id)?
            .first()
            .map(|record| key_array(&record.remote_identity, "session identity"))
            .transpose()
    }

    /// Devices of `username` we hold a session with.
    pub(crate) fn session_devices(&self, username: &str) -> Result<Vec<u64>, StoreError> {
        let mut ids: Vec<u64> = self
            .read()?
            .sessions(username, None)?
            .iter()
            .map(|s| s.device_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Stores a session and makes it the one used for sending to its
    /// device; the [`SESSIONS_PER_DEVICE`] newest of the device are kept.
    pub(crate) fn save_session(
        &self,
        username: &str,
        device_id: u64,
        session: &Session,
    ) -> Result<(), StoreError> {
        let state = self
            .sealer
            .seal(&session_ad(username, device_id), &session.to_bytes());
        let used_seq = self.read()?.last_session_use()? + 1;
        self.write()?.put_session(&SessionRecord {
            username: username.to_owned(),
            device_id,
            base_key: session.base_key().to_vec(),
            remote_identity: session.remote_identity().to_bytes().to_vec(),
            state,
            used_seq,
        })?;
        let older = self.session_records(username, device_id)?;
        for record in older.iter().skip(SESSIONS_PER_DEVICE) {
            self.write()?
                .delete_session(username, device_id, &record.base_key)?;
        }
        Ok(())
    }

    /// Forgets every session with one device.
    pub(crate) fn delete_device(&self, username: &str, device_id: u64) -> Result<(), StoreError> {
        let records = self.read()?.sessions(username, Some(device_id))?;
        for record in records {
            self.write()?
                .delete_session(username, device_id, &record.base_key)?;
        }
        Ok(())
    }

    /// Forgets the sessions of `username` whose remote identity is not `identity`.
    pub(crate) fn delete_sessions_not_of(
        &self,
        username: &str,
        identity: &[u8; 32],
    ) -> Result<(), StoreError> {
        let records = self.read()?.sessions(username, None)?;
        for record in records {
            if record.remote_identity != identity.as_slice() {
                self.write()?
                    .delete_session(username, record.device_id, &record.base_key)?;
            }
        }
        Ok(())
    }

    // ---- messages ----

    /// Stores a message; false when one with the same author and id exists
    /// (a duplicate).
    pub(crate) fn insert_message(&self, row: &MessageRow) -> Result<bool, StoreError> {
        let body = self
            .sealer
            .seal(&message_ad(&row.author, &row.message_id), &row.content);
        let inserted = self.write()?.insert_message(&MessageRecord {
            seq: 0,
            conversation: row.conversation.clone(),
            author: row.author.clone(),
            message_id: row.message_id.to_vec(),
            target_id: row.target_id.map(|t| t.to_vec()),
            kind: row.kind.clone(),
            sent_at_ms: row.sent_at_ms,
            received_at_ms: row.received_at_ms,
            body,
            shown: true,
            author_device: 0,
        })?;
        Ok(inserted.is_some())
    }

    /// A stored record, opened.
    pub(super) fn open_message(&self, record: &MessageRecord) -> Result<MessageRow, StoreError> {
        let message_id = id_array(&record.message_id, "message id")?;
        let content = self.sealer.open(
            "message",
            &message_ad(&record.author, &message_id),
            &record.body,
        )?;
        Ok(MessageRow {
            conversation: record.conversation.clone(),
            author: record.author.clone(),
            message_id,
            target_id: record
                .target_id
                .as_deref()
                .map(|t| id_array(t, "target id"))
                .transpose()?,
            kind: record.kind.clone(),
            sent_at_ms: record.sent_at_ms,
            received_at_ms: record.received_at_ms,
            content,
        })
    }

    /// Records opened, in store order.
    pub(super) fn open_messages(
        &self,
        records: Vec<MessageRecord>,
    ) -> Result<Vec<MessageRow>, StoreError> {
        by_seq(records)
            .iter()
            .map(|record| self.open_message(record))
            .collect()
    }

    /// The original, edits and deletes of the message (`author`, `id`).
    pub(crate) fn message_events(
        &self,
        author: &str,
        id: &MessageId,
    ) -> Result<Vec<MessageRow>, StoreError> {
        self.message_events_until(author, id, u64::MAX)
    }

    /// [`Tx::message_events`] stored at positions up to `until` (the view
    /// as it was when that row arrived).
    pub(crate) fn message_events_until(
        &self,
        author: &str,
        id: &MessageId,
        until: u64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let mut records = self.read()?.messages_about(author, id)?;
        records.retain(|m| EVENT_KINDS.contains(&m.kind.as_str()) && m.seq <= until);
        self.open_messages(records)
    }

    /// Every stored delivery and read receipt, oldest first.
    pub(crate) fn receipt_rows(&self) -> Result<Vec<MessageRow>, StoreError> {
        let mut records = Vec::new();
        for kind in RECEIPT_KINDS {
            records.extend(self.read()?.messages_of_kind(kind)?);
        }
        self.open_messages(records)
    }

    /// Reactions to a message, oldest first.
    pub(crate) fn reactions(&self, target: &MessageId) -> Result<Vec<MessageRow>, StoreError> {
        let mut records = self.read()?.messages_targeting(target)?;
        records.retain(|m| m.kind == "reaction");
        self.open_messages(records)
    }

    /// The newest `limit` texts and files of a conversation, oldest first
    /// (the newest page of [`Tx::history_page`]).
    pub(crate) fn history(
        &self,
        conversation: &str,
        limit: u32,
    ) -> Result<Vec<HistoryHead>, StoreError> {
        Ok(self.history_page(conversation, None, limit)?.0)
    }

    /// Up to `limit` texts and files of a conversation stored before
    /// position `before` (all when `None`), the newest of them, oldest
    /// first; and whether older ones exist (one more row is asked for).
    pub(crate) fn history_page(
        &self,
        conversation: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<HistoryHead>, bool), StoreError> {
        let entries = self.read()?.history_before(
            conversation,
            before.unwrap_or(u64::MAX),
            u64::from(limit) + 1,
        )?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let older = entries.len() > limit;
        let mut heads = entries
            .into_iter()
            .take(limit)
            .map(|entry| {
                Ok(HistoryHead {
                    seq: entry.seq,
                    author: entry.author,
                    message_id: id_array(&entry.message_id, "message id")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        heads.reverse();
        Ok((heads, older))
    }

    // ---- processed envelopes ----

    pub(crate) fn envelope_processed(&self, envelope_id: u64) -> Result<bool, StoreError> {
        self.read()?.envelope_processed(envelope_id)
    }

    /// Records the envelope as processed (once: the first time stays).
    pub(crate) fn mark_envelope_processed(&self, envelope_id: u64) -> Result<(), StoreError> {
        if self.envelope_processed(envelope_id)? {
            return Ok(());
        }
        self.write()?
            .insert_processed_envelope(envelope_id, crate::now_ms())
    }

    // ---- shown flags (the CLI's `recv`) ----

    /// Flags a just-received message row (`author`, `id`) as not shown yet,
    /// from `device`.
    pub(crate) fn mark_unshown(
        &self,
        author: &str,
        id: &MessageId,
        device: u64,
    ) -> Result<(), StoreError> {
        let Some(record) = self.read()?.message(author, id)? else {
            return Ok(());
        };
        let mut rows = self.write()?;
        rows.set_message_shown(record.seq, false)?;
        rows.set_message_author_device(record.seq, device)
    }

    /// Up to `limit` rows not shown yet with `seq > after`, in store order:
    /// `(seq, author_device, row)`.
    pub(crate) fn unshown(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, u64, MessageRow)>, StoreError> {
        let records = self.read()?.unshown(after, limit)?;
        records
            .iter()
            .map(|record| Ok((record.seq, record.author_device, self.open_message(record)?)))
            .collect()
    }

    /// Flags shown the message (`author`, `id`), its edits and deletes, and
    /// the reactions to it.
    pub(crate) fn mark_message_shown(
        &self,
        author: &str,
        id: &MessageId,
    ) -> Result<(), StoreError> {
        let mut records = self.read()?.messages_about(author, id)?;
        records.extend(
            self.read()?
                .messages_targeting(id)?
                .into_iter()
                .filter(|m| m.kind == "reaction"),
        );
        for record in records.iter().filter(|m| !m.shown) {
            self.write()?.set_message_shown(record.seq, true)?;
        }
        Ok(())
    }

    /// Flags the row `seq` as shown.
    pub(crate) fn mark_shown(&self, seq: u64) -> Result<(), StoreError> {
        self.write()?.set_message_shown(seq, true)
    }

    // ---- outbox ----

    /// Queues `content` for `destination`; `announce`: see [`OutboxRow::announce`].
    pub(crate) fn push_outbox(
        &self,
        destination: &str,
        message_id: &MessageId,
        content: &[u8],
        announce: bool,
    ) -> Result<(), StoreError> {
        let payload = self
            .sealer
            .seal(&outbox_ad(destination, message_id), content);
        self.write()?.push_outbox(&OutboxRecord {
            seq: 0,
            destination: destination.to_owned(),
            message_id: message_id.to_vec(),
            payload,
            created_ms: crate::now_ms(),
            announce,
        })?;
        Ok(())
    }

    /// Every queued send, in the order they leave.
    pub(crate) fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let mut records = self.read()?.outbox()?;
        records.sort_by_key(|r| r.seq);
        records
            .into_iter()
            .map(|record| {
                let id = id_array(&record.message_id, "outbox message id")?;
                let content = self.sealer.open(
                    "outbox entry",
                    &outbox_ad(&record.destination, &id),
                    &record.payload,
                )?;
                Ok(OutboxRow {
                    seq: outbox_seq(record.seq),
                    message_id: id,
                    destination: record.destination,
                    content,
                    announce: record.announce,
                })
            })
            .collect()
    }

    /// Removes a queued row, and the upload its file message waited for
    /// (the staging copy is then removed by who called this: see
    /// [`Tx::pending_upload`]).
    pub(crate) fn delete_outbox(&self, seq: i64) -> Result<(), StoreError> {
        let seq = backend_seq(seq);
        let entry = self.read()?.outbox_entry(seq)?;
        let mut rows = self.write()?;
        if let Some(entry) = entry {
            rows.delete_upload(&entry.message_id)?;
        }
        rows.delete_outbox(seq)
    }

    /// Replaces the content of the queued row `row` (sealed for its
    /// destination).
    pub(super) fn replace_outbox_content(
        &self,
        row: &OutboxRow,
        content: &[u8],
    ) -> Result<(), StoreError> {
        let payload = self
            .sealer
            .seal(&outbox_ad(&row.destination, &row.message_id), content);
        self.write()?
            .set_outbox_payload(backend_seq(row.seq), &payload)
    }

    /// Whether a send of message `id` waits in the outbox.
    pub(crate) fn in_outbox(&self, id: &MessageId) -> Result<bool, StoreError> {
        self.read()?.outbox_has_message(id)
    }

    // ---- receipts for our own messages ----

    /// Whether `author` wrote the text or file message `id` in `conversation`.
    pub(crate) fn authored_in(
        &self,
        author: &str,
        id: &MessageId,
        conversation: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.read()?.message(author, id)?.is_some_and(|m| {
            m.conversation == conversation && HISTORY_KINDS.contains(&m.kind.as_str())
        }))
    }

    /// Records that `reader` reached `stage` for message `id`; a stage
    /// lower than the one stored changes nothing.
    pub(crate) fn raise_receipt(
        &self,
        id: &MessageId,
        reader: &str,
        stage: i64,
    ) -> Result<(), StoreError> {
        let stored = self
            .read()?
            .receipts(id)?
            .into_iter()
            .find(|r| r.reader == reader);
        if stored.is_some_and(|r| r.stage >= stage) {
            return Ok(());
        }
        self.write()?.put_receipt(&ReceiptRecord {
            message_id: id.to_vec(),
            reader: reader.to_owned(),
            stage,
        })
    }

    /// Each reader's furthest stage for message `id`, by reader.
    pub(crate) fn receipts(&self, id: &MessageId) -> Result<Vec<(String, i64)>, StoreError> {
        let mut rows: Vec<(String, i64)> = self
            .read()?
            .receipts(id)?
            .into_iter()
            .map(|r| (r.reader, r.stage))
            .collect();
        rows.sort();
        Ok(rows)
    }

    // ---- how our sends ended ----

    /// Records that the server stored our message `id` at
    /// `server_timestamp_ms`.
    pub(crate) fn record_sent(
        &self,
        id: &MessageId,
        server_timestamp_ms: u64,
    ) -> Result<(), StoreError> {
        self.write()?.put_send_outcome(&SendOutcomeRecord {
            message_id: id.to_vec(),
            server_timestamp_ms: Some(server_timestamp_ms),
            failure_kind: None,
            failure: None,
        })
    }

    /// Records that our message `id` was dropped from the outbox: the
    /// reason's `kind` and text.
    pub(crate) fn record_send_failure(
        &self,
        id: &MessageId,
        kind: &str,
        text: &str,
    ) -> Result<(), StoreError> {
        self.write()?.put_send_outcome(&SendOutcomeRecord {
            message_id: id.to_vec(),
            server_timestamp_ms: None,
            failure_kind: Some(kind.to_owned()),
            failure: Some(text.to_owned()),
        })
    }

    /// How our send of `id` ended, if it left the outbox from this device.
    pub(crate) fn send_outcome(&self, id: &MessageId) -> Result<Option<SendOutcome>, StoreError> {
        Ok(self.read()?.send_outcome(id)?.map(|record| {
            match (record.failure_kind, record.server_timestamp_ms) {
                (Some(kind), _) => SendOutcome::Failed {
                    kind,
                    text: record.failure.unwrap_or_default(),
                },
                (None, stamp) => SendOutcome::Stored {
                    server_timestamp_ms: stamp,
                },
            }
        }))
    }

    pub(crate) fn outbox_len(&self) -> Result<u64, StoreError> {
        self.read()?.outbox_len()
    }
}

fn decode_contact(record: &ContactRecord) -> Result<Contact, StoreError> {
    Ok(Contact {
        identity: key_array(&record.identity_key, "contact identity")?,
        pending: record
            .pending_identity
            .as_deref()
            .map(|p| key_array(p, "pending identity"))
            .transpose()?,
        devices_checked_ms: record.devices_checked_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> (tempfile::TempDir, Store) {
        crate::store::temporary()
    }

    fn row(conversation: &str, id: u8, kind: &str) -> MessageRow {
        MessageRow {
            conversation: conversation.to_owned(),
            author: "alice".to_owned(),
            message_id: [id; 16],
            target_id: None,
            kind: kind.to_owned(),
            sent_at_ms: 1,
            received_at_ms: 1,
            content: Zeroizing::new(vec![id]),
        }
    }

    fn ids(heads: &[HistoryHead]) -> Vec<u8> {
        heads.iter().map(|h| h.message_id[0]).collect()
    }

    #[test]
    fn pages_walk_back_by_position_and_skip_other_kinds_and_conversations() {
        let (_dir, mut store) = store();
        store
            .tx(|tx| -> Result<(), StoreError> {
                for id in 1..=5 {
                    tx.insert_message(&row("u:bob", id, "text"))?;
                    tx.insert_message(&row("u:carol", id + 100, "text"))?;
                    tx.insert_message(&row("u:bob", id + 50, "read_receipt"))?;
                }
                let (newest, older) = tx.history_page("u:bob", None, 2)?;
                assert_eq!((ids(&newest), older), (vec![4, 5], true));
                let (middle, older) = tx.history_page("u:bob", Some(newest[0].seq), 2)?;
                assert_eq!((ids(&middle), older), (vec![2, 3], true));
                // A new message does not move the pages already handed out.
                tx.insert_message(&row("u:bob", 6, "text"))?;
                let (last, older) = tx.history_page("u:bob", Some(middle[0].seq), 2)?;
                assert_eq!((ids(&last), older), (vec![1], false));
                let (none, older) = tx.history_page("u:bob", Some(last[0].seq), 2)?;
                assert!(none.is_empty() && !older);
                // Limit 0: nothing handed out, but older ones are there.
                let (empty, older) = tx.history_page("u:bob", None, 0)?;
                assert!(empty.is_empty() && older);
                assert_eq!(ids(&tx.history("u:bob", 3)?), vec![4, 5, 6]);
                Ok(())
            })
            .expect("tx");
    }
}

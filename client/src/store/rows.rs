//! Typed access to the store's tables: contacts, sessions, messages (and
//! their history pages), processed envelopes, the outbox and the receipts
//! for our own messages. Secret columns are sealed with the
//! store's [`super::crypt::Sealer`]; the associated data names the row.

use microbot_crypto::Session;
use microbot_protocol::MessageId;
use rusqlite::{OptionalExtension as _, params};
use zeroize::Zeroizing;

use super::{Tx, from_sql_u64, to_sql_u64};
use crate::error::StoreError;

/// Sessions kept per remote device (the newest is used for sending; older
/// ones still decrypt messages in flight after a simultaneous start).
const SESSIONS_PER_DEVICE: i64 = 4;

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

/// One page of history: (position, author, id) of the texts and files of
/// conversation ?1 stored before position ?2, the newest ?3. The WHERE
/// names the same kinds as the `messages_history` index (schema v4), so
/// the query walks that index backwards and stops after ?3 rows.
const HISTORY_PAGE: &str = "SELECT seq, author, message_id FROM messages
     WHERE conversation = ?1 AND kind IN ('text', 'attachment') AND seq < ?2
     ORDER BY seq DESC LIMIT ?3";

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

pub(super) fn outbox_ad(destination: &str, id: &MessageId) -> Vec<u8> {
    format!("outbox/{destination}/{}", hex::encode(id)).into_bytes()
}

impl Tx<'_> {
    // ---- contacts ----

    pub(crate) fn contact(&self, username: &str) -> Result<Option<Contact>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT identity_key, pending_identity, devices_checked_ms FROM contacts WHERE username = ?1",
                [username],
                |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, Option<Vec<u8>>>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(identity, pending, checked)| {
            Ok(Contact {
                identity: key_array(&identity, "contact identity")?,
                pending: pending
                    .map(|p| key_array(&p, "pending identity"))
                    .transpose()?,
                devices_checked_ms: from_sql_u64(checked),
            })
        })
        .transpose()
    }

    pub(crate) fn set_contact(&self, username: &str, contact: &Contact) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO contacts (username, identity_key, pending_identity, devices_checked_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                username,
                contact.identity.as_slice(),
                contact.pending.as_ref().map(|p| p.to_vec()),
                to_sql_u64(contact.devices_checked_ms)
            ],
        )?;
        Ok(())
    }

    pub(crate) fn contacts(&self) -> Result<Vec<(String, Contact)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT username FROM contacts ORDER BY username")?;
        let names = stmt
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(contact) = self.contact(&name)? {
                out.push((name, contact));
            }
        }
        Ok(out)
    }

    // ---- sessions ----

    /// Sessions with one device, the one to send with first.
    pub(crate) fn sessions(
        &self,
        username: &str,
        device_id: u64,
    ) -> Result<Vec<StoredSession>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT state FROM sessions WHERE username = ?1 AND device_id = ?2 ORDER BY used_seq DESC",
        )?;
        let blobs = stmt
            .query_map(params![username, to_sql_u64(device_id)], |row| {
                row.get::<_, Vec<u8>>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let ad = session_ad(username, device_id);
        blobs
            .iter()
            .map(|blob| {
                let bytes = self.sealer.open("session", &ad, blob)?;
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
        let identity: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT remote_identity FROM sessions WHERE username = ?1 AND device_id = ?2
                 ORDER BY used_seq DESC LIMIT 1",
                params![username, to_sql_u64(device_id)],
                |row| row.get(0),
            )
            .optional()?;
        identity
            .map(|i| key_array(&i, "session identity"))
            .transpose()
    }

    /// Devices of `username` we hold a session with.
    pub(crate) fn session_devices(&self, username: &str) -> Result<Vec<u64>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT DISTINCT device_id FROM sessions WHERE username = ?1 ORDER BY device_id",
        )?;
        let ids = stmt
            .query_map([username], |row| row.get::<_, i64>(0))?
            .map(|r| r.map(from_sql_u64))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// Stores a session and makes it the one used for sending to its device.
    pub(crate) fn save_session(
        &self,
        username: &str,
        device_id: u64,
        session: &Session,
    ) -> Result<(), StoreError> {
        let blob = self
            .sealer
            .seal(&session_ad(username, device_id), &session.to_bytes());
        let device = to_sql_u64(device_id);
        self.conn.execute(
            "INSERT OR REPLACE INTO sessions (username, device_id, base_key, remote_identity, state, used_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(used_seq), 0) + 1 FROM sessions))",
            params![
                username,
                device,
                session.base_key().as_slice(),
                session.remote_identity().to_bytes().as_slice(),
                blob
            ],
        )?;
        self.conn.execute(
            "DELETE FROM sessions WHERE username = ?1 AND device_id = ?2 AND base_key NOT IN
               (SELECT base_key FROM sessions WHERE username = ?1 AND device_id = ?2
                ORDER BY used_seq DESC LIMIT ?3)",
            params![username, device, SESSIONS_PER_DEVICE],
        )?;
        Ok(())
    }

    /// Forgets every session with one device.
    pub(crate) fn delete_device(&self, username: &str, device_id: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM sessions WHERE username = ?1 AND device_id = ?2",
            params![username, to_sql_u64(device_id)],
        )?;
        Ok(())
    }

    /// Forgets the sessions of `username` whose remote identity is not `identity`.
    pub(crate) fn delete_sessions_not_of(
        &self,
        username: &str,
        identity: &[u8; 32],
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM sessions WHERE username = ?1 AND remote_identity != ?2",
            params![username, identity.as_slice()],
        )?;
        Ok(())
    }

    // ---- messages ----

    /// Stores a message; false when one with the same author and id exists
    /// (a duplicate).
    pub(crate) fn insert_message(&self, row: &MessageRow) -> Result<bool, StoreError> {
        let body = self
            .sealer
            .seal(&message_ad(&row.author, &row.message_id), &row.content);
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO messages
               (conversation, author, message_id, target_id, kind, sent_at_ms, received_at_ms, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                row.conversation,
                row.author,
                row.message_id.as_slice(),
                row.target_id.map(|t| t.to_vec()),
                row.kind,
                to_sql_u64(row.sent_at_ms),
                to_sql_u64(row.received_at_ms),
                body
            ],
        )?;
        Ok(inserted > 0)
    }

    pub(crate) fn message_rows(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let mut stmt = self.conn.prepare(sql)?;
        let raw = stmt
            .query_map(args, |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, Option<Vec<u8>>>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, Vec<u8>>(7)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(
                |(conversation, author, id, target, kind, sent, received, body)| {
                    let message_id = id_array(&id, "message id")?;
                    let content =
                        self.sealer
                            .open("message", &message_ad(&author, &message_id), &body)?;
                    Ok(MessageRow {
                        conversation,
                        author,
                        message_id,
                        target_id: target.map(|t| id_array(&t, "target id")).transpose()?,
                        kind,
                        sent_at_ms: from_sql_u64(sent),
                        received_at_ms: from_sql_u64(received),
                        content,
                    })
                },
            )
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
        self.message_rows(
            "SELECT conversation, author, message_id, target_id, kind, sent_at_ms, received_at_ms, body
             FROM messages
             WHERE author = ?1 AND (message_id = ?2 OR target_id = ?2)
               AND kind IN ('text', 'edit', 'delete', 'attachment') AND seq <= ?3
             ORDER BY seq",
            params![author, id.as_slice(), i64::try_from(until).unwrap_or(i64::MAX)],
        )
    }

    /// Every stored delivery and read receipt, oldest first.
    pub(crate) fn receipt_rows(&self) -> Result<Vec<MessageRow>, StoreError> {
        self.message_rows(
            "SELECT conversation, author, message_id, target_id, kind, sent_at_ms, received_at_ms, body
             FROM messages WHERE kind IN ('delivery_receipt', 'read_receipt') ORDER BY seq",
            [],
        )
    }

    /// Reactions to a message, oldest first.
    pub(crate) fn reactions(&self, target: &MessageId) -> Result<Vec<MessageRow>, StoreError> {
        self.message_rows(
            "SELECT conversation, author, message_id, target_id, kind, sent_at_ms, received_at_ms, body
             FROM messages WHERE target_id = ?1 AND kind = 'reaction' ORDER BY seq",
            params![target.as_slice()],
        )
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
    /// first; and whether older ones exist.
    pub(crate) fn history_page(
        &self,
        conversation: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<(Vec<HistoryHead>, bool), StoreError> {
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let mut stmt = self.conn.prepare(HISTORY_PAGE)?;
        let raw = stmt
            .query_map(params![conversation, before, i64::from(limit) + 1], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let older = raw.len() > usize::try_from(limit).unwrap_or(usize::MAX);
        let mut heads = raw
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(|(seq, author, id)| {
                Ok(HistoryHead {
                    seq: from_sql_u64(seq),
                    author,
                    message_id: id_array(&id, "message id")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        heads.reverse();
        Ok((heads, older))
    }

    // ---- processed envelopes ----

    pub(crate) fn envelope_processed(&self, envelope_id: u64) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM processed_envelopes WHERE envelope_id = ?1",
                [to_sql_u64(envelope_id)],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub(crate) fn mark_envelope_processed(&self, envelope_id: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO processed_envelopes (envelope_id, processed_ms) VALUES (?1, ?2)",
            params![to_sql_u64(envelope_id), to_sql_u64(crate::now_ms())],
        )?;
        Ok(())
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
        self.conn.execute(
            "UPDATE messages SET shown = 0, author_device = ?3
             WHERE author = ?1 AND message_id = ?2",
            params![author, id.as_slice(), to_sql_u64(device)],
        )?;
        Ok(())
    }

    /// Up to `limit` rows not shown yet with `seq > after`, in store order:
    /// `(seq, author_device, row)`.
    pub(crate) fn unshown(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, u64, MessageRow)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, author_device FROM messages WHERE shown = 0 AND seq > ?1
             ORDER BY seq LIMIT ?2",
        )?;
        let heads = stmt
            .query_map(params![to_sql_u64(after), limit], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(heads.len());
        for (seq, device) in heads {
            let row = self
                .message_rows(
                    "SELECT conversation, author, message_id, target_id, kind, sent_at_ms,
                            received_at_ms, body
                     FROM messages WHERE seq = ?1",
                    params![seq],
                )?
                .pop()
                .ok_or(StoreError::Corrupt { what: "message" })?;
            out.push((from_sql_u64(seq), from_sql_u64(device), row));
        }
        Ok(out)
    }

    /// Flags shown the message (`author`, `id`), its edits and deletes, and
    /// the reactions to it.
    pub(crate) fn mark_message_shown(
        &self,
        author: &str,
        id: &MessageId,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE messages SET shown = 1 WHERE shown = 0 AND (
                 (author = ?1 AND (message_id = ?2 OR target_id = ?2))
                 OR (kind = 'reaction' AND target_id = ?2))",
            params![author, id.as_slice()],
        )?;
        Ok(())
    }

    /// Flags the row `seq` as shown.
    pub(crate) fn mark_shown(&self, seq: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE messages SET shown = 1 WHERE seq = ?1",
            params![to_sql_u64(seq)],
        )?;
        Ok(())
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
        self.conn.execute(
            "INSERT INTO outbox (destination, message_id, payload, created_ms, announce)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                destination,
                message_id.as_slice(),
                payload,
                to_sql_u64(crate::now_ms()),
                announce
            ],
        )?;
        Ok(())
    }

    pub(crate) fn outbox(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, destination, message_id, payload, announce FROM outbox ORDER BY seq",
        )?;
        let raw = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                    row.get::<_, bool>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        raw.into_iter()
            .map(|(seq, destination, id, payload, announce)| {
                let id = id_array(&id, "outbox message id")?;
                let content =
                    self.sealer
                        .open("outbox entry", &outbox_ad(&destination, &id), &payload)?;
                Ok(OutboxRow {
                    seq,
                    message_id: id,
                    destination,
                    content,
                    announce,
                })
            })
            .collect()
    }

    /// Removes a queued row, and the upload its file message waited for
    /// (the staging copy is then removed by who called this: see
    /// [`Tx::pending_upload`]).
    pub(crate) fn delete_outbox(&self, seq: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM uploads WHERE message_id IN
                 (SELECT message_id FROM outbox WHERE seq = ?1)",
            [seq],
        )?;
        self.conn
            .execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
        Ok(())
    }

    /// Whether a send of message `id` waits in the outbox.
    pub(crate) fn in_outbox(&self, id: &MessageId) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM outbox WHERE message_id = ?1 LIMIT 1",
                [id.as_slice()],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    // ---- receipts for our own messages ----

    /// Whether `author` wrote the text or file message `id` in `conversation`.
    pub(crate) fn authored_in(
        &self,
        author: &str,
        id: &MessageId,
        conversation: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM messages WHERE author = ?1 AND message_id = ?2
                   AND conversation = ?3 AND kind IN ('text', 'attachment')",
                params![author, id.as_slice(), conversation],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records that `reader` reached `stage` for message `id`; a stage
    /// lower than the one stored changes nothing.
    pub(crate) fn raise_receipt(
        &self,
        id: &MessageId,
        reader: &str,
        stage: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO receipts (message_id, reader, stage) VALUES (?1, ?2, ?3)
             ON CONFLICT (message_id, reader) DO UPDATE SET stage = excluded.stage
             WHERE excluded.stage > receipts.stage",
            params![id.as_slice(), reader, stage],
        )?;
        Ok(())
    }

    /// Each reader's furthest stage for message `id`, by reader.
    pub(crate) fn receipts(&self, id: &MessageId) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT reader, stage FROM receipts WHERE message_id = ?1 ORDER BY reader")?;
        let rows = stmt
            .query_map([id.as_slice()], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
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
        self.conn.execute(
            "INSERT INTO send_outcomes (message_id, server_timestamp_ms) VALUES (?1, ?2)
             ON CONFLICT (message_id) DO UPDATE SET server_timestamp_ms = excluded.server_timestamp_ms,
                 failure_kind = NULL, failure = NULL",
            params![id.as_slice(), to_sql_u64(server_timestamp_ms)],
        )?;
        Ok(())
    }

    /// Records that our message `id` was dropped from the outbox: the
    /// reason's `kind` and text.
    pub(crate) fn record_send_failure(
        &self,
        id: &MessageId,
        kind: &str,
        text: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO send_outcomes (message_id, failure_kind, failure) VALUES (?1, ?2, ?3)
             ON CONFLICT (message_id) DO UPDATE SET failure_kind = excluded.failure_kind,
                 failure = excluded.failure, server_timestamp_ms = NULL",
            params![id.as_slice(), kind, text],
        )?;
        Ok(())
    }

    /// How our send of `id` ended, if it left the outbox from this device.
    pub(crate) fn send_outcome(&self, id: &MessageId) -> Result<Option<SendOutcome>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT server_timestamp_ms, failure_kind, failure FROM send_outcomes
                 WHERE message_id = ?1",
                [id.as_slice()],
                |row| {
                    let stamp: Option<i64> = row.get(0)?;
                    let kind: Option<String> = row.get(1)?;
                    let text: Option<String> = row.get(2)?;
                    Ok(match (kind, stamp) {
                        (Some(kind), _) => SendOutcome::Failed {
                            kind,
                            text: text.unwrap_or_default(),
                        },
                        (None, stamp) => SendOutcome::Stored {
                            server_timestamp_ms: stamp.map(from_sql_u64),
                        },
                    })
                },
            )
            .optional()?)
    }

    pub(crate) fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))?;
        Ok(from_sql_u64(n))
    }
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

    #[test]
    fn the_history_query_uses_its_index() {
        let (_dir, mut store) = store();
        let plan = store
            .tx(|tx| -> Result<String, StoreError> {
                let mut stmt = tx
                    .conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {HISTORY_PAGE}"))?;
                let details = stmt
                    .query_map(params!["u:bob", 10, 3], |row| row.get::<_, String>(3))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(details.join("; "))
            })
            .expect("plan");
        assert!(plan.contains("messages_history"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}

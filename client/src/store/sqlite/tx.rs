//! The SQL of every row operation of [`BackendTx`], over one SQLite
//! transaction (`BEGIN` … `COMMIT`, rolled back when dropped uncommitted).

use rusqlite::{Connection, OptionalExtension as _, Row, params};

use super::convert::{Db as _, from_sql_u64, seq_bound, to_sql_u64};
use crate::error::StoreError;
use crate::store::backend::{
    BackendTx, ContactRecord, GroupEntry, HistoryEntry, InboundKeyRecord, MessageRecord,
    OutboxRecord, ReceiptRecord, SendOutcomeRecord, SessionRecord, SharedKeyRecord, UploadRecord,
};

/// One page of history: (position, author, id) of the texts and files of
/// conversation ?1 stored before position ?2, the newest ?3. The WHERE
/// names the same kinds as the `messages_history` index (schema v4), so
/// the query walks that index backwards and stops after ?3 rows.
pub(crate) const HISTORY_PAGE: &str = "SELECT seq, author, message_id FROM messages
     WHERE conversation = ?1 AND kind IN ('text', 'attachment') AND seq < ?2
     ORDER BY seq DESC LIMIT ?3";

/// The columns of a [`MessageRecord`], in [`message_row`]'s order.
const MESSAGE_COLUMNS: &str = "SELECT seq, conversation, author, message_id, target_id, kind,
     sent_at_ms, received_at_ms, body, shown, author_device FROM messages";

const SESSION_COLUMNS: &str =
    "SELECT username, device_id, base_key, remote_identity, state, used_seq FROM sessions";

const OUTBOX_COLUMNS: &str =
    "SELECT seq, destination, message_id, payload, created_ms, announce FROM outbox";

const UPLOAD_COLUMNS: &str =
    "SELECT message_id, staging, ciphertext_len, attachment_id FROM uploads";

/// A transaction on the store's connection.
pub(super) struct SqliteTx<'a> {
    conn: &'a mut Connection,
    committed: bool,
}

impl<'a> SqliteTx<'a> {
    /// Begins a (deferred) transaction.
    pub(super) fn begin(conn: &'a mut Connection) -> Result<Self, StoreError> {
        conn.execute_batch("BEGIN DEFERRED").db()?;
        Ok(Self {
            conn,
            committed: false,
        })
    }

    /// The rows of `sql` read with `read`.
    fn rows<T>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        read: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).db()?;
        let rows = stmt
            .query_map(args, read)
            .db()?
            .collect::<Result<Vec<_>, _>>()
            .db()?;
        Ok(rows)
    }

    /// The row of `sql`, if any.
    fn row<T>(
        &self,
        sql: &str,
        args: impl rusqlite::Params,
        read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        self.conn
            .prepare_cached(sql)
            .db()?
            .query_row(args, read)
            .optional()
            .db()
    }

    /// Runs a statement.
    fn run(&self, sql: &str, args: impl rusqlite::Params) -> Result<(), StoreError> {
        self.conn.prepare_cached(sql).db()?.execute(args).db()?;
        Ok(())
    }

    fn messages(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        self.rows(&format!("{MESSAGE_COLUMNS} {filter}"), args, message_row)
    }
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // Nothing more to do when it fails: SQLite already rolled back.
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

fn message_row(row: &Row<'_>) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        seq: from_sql_u64(row.get(0)?),
        conversation: row.get(1)?,
        author: row.get(2)?,
        message_id: row.get(3)?,
        target_id: row.get(4)?,
        kind: row.get(5)?,
        sent_at_ms: from_sql_u64(row.get(6)?),
        received_at_ms: from_sql_u64(row.get(7)?),
        body: row.get(8)?,
        shown: row.get(9)?,
        author_device: from_sql_u64(row.get(10)?),
    })
}

fn session_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        username: row.get(0)?,
        device_id: from_sql_u64(row.get(1)?),
        base_key: row.get(2)?,
        remote_identity: row.get(3)?,
        state: row.get(4)?,
        used_seq: from_sql_u64(row.get(5)?),
    })
}

fn outbox_row(row: &Row<'_>) -> rusqlite::Result<OutboxRecord> {
    Ok(OutboxRecord {
        seq: from_sql_u64(row.get(0)?),
        destination: row.get(1)?,
        message_id: row.get(2)?,
        payload: row.get(3)?,
        created_ms: from_sql_u64(row.get(4)?),
        announce: row.get(5)?,
    })
}

fn upload_row(row: &Row<'_>) -> rusqlite::Result<UploadRecord> {
    Ok(UploadRecord {
        message_id: row.get(0)?,
        staging: row.get(1)?,
        ciphertext_len: from_sql_u64(row.get(2)?),
        attachment_id: row.get(3)?,
    })
}

fn contact_row(row: &Row<'_>) -> rusqlite::Result<ContactRecord> {
    Ok(ContactRecord {
        username: row.get(0)?,
        identity_key: row.get(1)?,
        pending_identity: row.get(2)?,
        devices_checked_ms: from_sql_u64(row.get(3)?),
    })
}

const CONTACT_COLUMNS: &str =
    "SELECT username, identity_key, pending_identity, devices_checked_ms FROM contacts";

impl BackendTx for SqliteTx<'_> {
    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT").db()?;
        self.committed = true;
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
    }

    fn put_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )
    }

    fn contact(&self, username: &str) -> Result<Option<ContactRecord>, StoreError> {
        self.row(
            &format!("{CONTACT_COLUMNS} WHERE username = ?1"),
            [username],
            contact_row,
        )
    }

    fn contacts(&self) -> Result<Vec<ContactRecord>, StoreError> {
        self.rows(
            &format!("{CONTACT_COLUMNS} ORDER BY username"),
            [],
            contact_row,
        )
    }

    fn put_contact(&mut self, record: &ContactRecord) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO contacts (username, identity_key, pending_identity, devices_checked_ms)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                record.username,
                record.identity_key,
                record.pending_identity,
                to_sql_u64(record.devices_checked_ms)
            ],
        )
    }

    fn sessions(
        &self,
        username: &str,
        device_id: Option<u64>,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        match device_id {
            Some(device) => self.rows(
                &format!("{SESSION_COLUMNS} WHERE username = ?1 AND device_id = ?2"),
                params![username, to_sql_u64(device)],
                session_row,
            ),
            None => self.rows(
                &format!("{SESSION_COLUMNS} WHERE username = ?1"),
                [username],
                session_row,
            ),
        }
    }

    fn last_session_use(&self) -> Result<u64, StoreError> {
        let last: Option<i64> = self
            .row("SELECT MAX(used_seq) FROM sessions", [], |row| row.get(0))?
            .flatten();
        Ok(last.map_or(0, from_sql_u64))
    }

    fn put_session(&mut self, record: &SessionRecord) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO sessions (username, device_id, base_key, remote_identity, state, used_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                record.username,
                to_sql_u64(record.device_id),
                record.base_key,
                record.remote_identity,
                record.state,
                to_sql_u64(record.used_seq)
            ],
        )
    }

    fn delete_session(
        &mut self,
        username: &str,
        device_id: u64,
        base_key: &[u8],
    ) -> Result<(), StoreError> {
        self.run(
            "DELETE FROM sessions WHERE username = ?1 AND device_id = ?2 AND base_key = ?3",
            params![username, to_sql_u64(device_id), base_key],
        )
    }

    fn insert_message(&mut self, record: &MessageRecord) -> Result<Option<u64>, StoreError> {
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT OR IGNORE INTO messages (conversation, author, message_id, target_id, kind,
                 sent_at_ms, received_at_ms, body, shown, author_device)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .db()?
            .execute(params![
                record.conversation,
                record.author,
                record.message_id,
                record.target_id,
                record.kind,
                to_sql_u64(record.sent_at_ms),
                to_sql_u64(record.received_at_ms),
                record.body,
                record.shown,
                to_sql_u64(record.author_device)
            ])
            .db()?;
        Ok((inserted > 0).then(|| from_sql_u64(self.conn.last_insert_rowid())))
    }

    fn message(
        &self,
        author: &str,
        message_id: &[u8],
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.row(
            &format!("{MESSAGE_COLUMNS} WHERE author = ?1 AND message_id = ?2"),
            params![author, message_id],
            message_row,
        )
    }

    fn messages_with_id(&self, message_id: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        self.messages("WHERE message_id = ?1", [message_id])
    }

    fn messages_about(&self, author: &str, id: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        self.messages(
            "WHERE author = ?1 AND (message_id = ?2 OR target_id = ?2)",
            params![author, id],
        )
    }

    fn messages_targeting(&self, target_id: &[u8]) -> Result<Vec<MessageRecord>, StoreError> {
        self.messages("WHERE target_id = ?1", [target_id])
    }

    fn messages_of_kind(&self, kind: &str) -> Result<Vec<MessageRecord>, StoreError> {
        self.messages("WHERE kind = ?1", [kind])
    }

    fn history_before(
        &self,
        conversation: &str,
        before: u64,
        limit: u64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.rows(
            HISTORY_PAGE,
            params![conversation, seq_bound(before), seq_bound(limit)],
            |row| {
                Ok(HistoryEntry {
                    seq: from_sql_u64(row.get(0)?),
                    author: row.get(1)?,
                    message_id: row.get(2)?,
                })
            },
        )
    }

    fn unshown(&self, after: u64, limit: u32) -> Result<Vec<MessageRecord>, StoreError> {
        self.messages(
            "WHERE shown = 0 AND seq > ?1 ORDER BY seq LIMIT ?2",
            params![seq_bound(after), limit],
        )
    }

    fn set_message_shown(&mut self, seq: u64, shown: bool) -> Result<(), StoreError> {
        self.run(
            "UPDATE messages SET shown = ?2 WHERE seq = ?1",
            params![to_sql_u64(seq), shown],
        )
    }

    fn set_message_author_device(&mut self, seq: u64, device_id: u64) -> Result<(), StoreError> {
        self.run(
            "UPDATE messages SET author_device = ?2 WHERE seq = ?1",
            params![to_sql_u64(seq), to_sql_u64(device_id)],
        )
    }

    fn set_message_body(&mut self, seq: u64, body: &[u8]) -> Result<(), StoreError> {
        self.run(
            "UPDATE messages SET body = ?2 WHERE seq = ?1",
            params![to_sql_u64(seq), body],
        )
    }

    fn envelope_processed(&self, envelope_id: u64) -> Result<bool, StoreError> {
        Ok(self
            .row(
                "SELECT 1 FROM processed_envelopes WHERE envelope_id = ?1",
                [to_sql_u64(envelope_id)],
                |_| Ok(()),
            )?
            .is_some())
    }

    fn insert_processed_envelope(
        &mut self,
        envelope_id: u64,
        processed_ms: u64,
    ) -> Result<(), StoreError> {
        self.run(
            "INSERT OR IGNORE INTO processed_envelopes (envelope_id, processed_ms) VALUES (?1, ?2)",
            params![to_sql_u64(envelope_id), to_sql_u64(processed_ms)],
        )
    }

    fn prune_processed_envelopes(&mut self, before_ms: u64) -> Result<(), StoreError> {
        self.run(
            "DELETE FROM processed_envelopes WHERE processed_ms < ?1",
            [to_sql_u64(before_ms)],
        )
    }

    fn push_outbox(&mut self, record: &OutboxRecord) -> Result<u64, StoreError> {
        self.run(
            "INSERT INTO outbox (destination, message_id, payload, created_ms, announce)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                record.destination,
                record.message_id,
                record.payload,
                to_sql_u64(record.created_ms),
                record.announce
            ],
        )?;
        Ok(from_sql_u64(self.conn.last_insert_rowid()))
    }

    fn outbox(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        self.rows(&format!("{OUTBOX_COLUMNS} ORDER BY seq"), [], outbox_row)
    }

    fn outbox_entry(&self, seq: u64) -> Result<Option<OutboxRecord>, StoreError> {
        self.row(
            &format!("{OUTBOX_COLUMNS} WHERE seq = ?1"),
            [to_sql_u64(seq)],
            outbox_row,
        )
    }

    fn outbox_has_message(&self, message_id: &[u8]) -> Result<bool, StoreError> {
        Ok(self
            .row(
                "SELECT 1 FROM outbox WHERE message_id = ?1 LIMIT 1",
                [message_id],
                |_| Ok(()),
            )?
            .is_some())
    }

    fn outbox_len(&self) -> Result<u64, StoreError> {
        let n: Option<i64> = self.row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))?;
        Ok(n.map_or(0, from_sql_u64))
    }

    fn set_outbox_payload(&mut self, seq: u64, payload: &[u8]) -> Result<(), StoreError> {
        self.run(
            "UPDATE outbox SET payload = ?1 WHERE seq = ?2",
            params![payload, to_sql_u64(seq)],
        )
    }

    fn delete_outbox(&mut self, seq: u64) -> Result<(), StoreError> {
        self.run("DELETE FROM outbox WHERE seq = ?1", [to_sql_u64(seq)])
    }

    fn receipts(&self, message_id: &[u8]) -> Result<Vec<ReceiptRecord>, StoreError> {
        self.rows(
            "SELECT reader, stage FROM receipts WHERE message_id = ?1",
            [message_id],
            |row| {
                Ok(ReceiptRecord {
                    message_id: message_id.to_vec(),
                    reader: row.get(0)?,
                    stage: row.get(1)?,
                })
            },
        )
    }

    fn put_receipt(&mut self, record: &ReceiptRecord) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO receipts (message_id, reader, stage) VALUES (?1, ?2, ?3)",
            params![record.message_id, record.reader, record.stage],
        )
    }

    fn send_outcome(&self, message_id: &[u8]) -> Result<Option<SendOutcomeRecord>, StoreError> {
        self.row(
            "SELECT server_timestamp_ms, failure_kind, failure FROM send_outcomes
             WHERE message_id = ?1",
            [message_id],
            |row| {
                Ok(SendOutcomeRecord {
                    message_id: message_id.to_vec(),
                    server_timestamp_ms: row.get::<_, Option<i64>>(0)?.map(from_sql_u64),
                    failure_kind: row.get(1)?,
                    failure: row.get(2)?,
                })
            },
        )
    }

    fn put_send_outcome(&mut self, record: &SendOutcomeRecord) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO send_outcomes
                 (message_id, server_timestamp_ms, failure_kind, failure)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                record.message_id,
                record.server_timestamp_ms.map(to_sql_u64),
                record.failure_kind,
                record.failure
            ],
        )
    }

    fn group(&self, group_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.row(
            "SELECT record FROM groups WHERE group_id = ?1",
            [group_id],
            |row| row.get(0),
        )
    }

    fn groups(&self) -> Result<Vec<GroupEntry>, StoreError> {
        self.rows(
            "SELECT group_id, record FROM groups ORDER BY group_id",
            [],
            |row| {
                Ok(GroupEntry {
                    group_id: row.get(0)?,
                    record: row.get(1)?,
                })
            },
        )
    }

    fn put_group(&mut self, group_id: &[u8], record: &[u8]) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO groups (group_id, record) VALUES (?1, ?2)",
            params![group_id, record],
        )
    }

    fn outbound_key(&self, group_id: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.row(
            "SELECT state FROM sender_keys_out WHERE group_id = ?1",
            [group_id],
            |row| row.get(0),
        )
    }

    fn put_outbound_key(&mut self, group_id: &[u8], state: &[u8]) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO sender_keys_out (group_id, state) VALUES (?1, ?2)",
            params![group_id, state],
        )
    }

    fn delete_outbound_key(&mut self, group_id: &[u8]) -> Result<(), StoreError> {
        self.run(
            "DELETE FROM sender_keys_out WHERE group_id = ?1",
            [group_id],
        )
    }

    fn shared_keys(&self, group_id: &[u8]) -> Result<Vec<SharedKeyRecord>, StoreError> {
        self.rows(
            "SELECT username, device_id, key_id FROM sender_key_shared WHERE group_id = ?1",
            [group_id],
            |row| {
                Ok(SharedKeyRecord {
                    group_id: group_id.to_vec(),
                    username: row.get(0)?,
                    device_id: from_sql_u64(row.get(1)?),
                    key_id: row.get(2)?,
                })
            },
        )
    }

    fn put_shared_key(&mut self, record: &SharedKeyRecord) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO sender_key_shared (group_id, username, device_id, key_id)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                record.group_id,
                record.username,
                to_sql_u64(record.device_id),
                record.key_id
            ],
        )
    }

    fn clear_shared_keys(&mut self, group_id: &[u8]) -> Result<(), StoreError> {
        self.run(
            "DELETE FROM sender_key_shared WHERE group_id = ?1",
            [group_id],
        )
    }

    fn inbound_key(
        &self,
        group_id: &[u8],
        username: &str,
        device_id: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.row(
            "SELECT state FROM sender_keys_in WHERE group_id = ?1 AND username = ?2 AND device_id = ?3",
            params![group_id, username, to_sql_u64(device_id)],
            |row| row.get(0),
        )
    }

    fn put_inbound_key(&mut self, record: &InboundKeyRecord) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO sender_keys_in (group_id, username, device_id, state)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                record.group_id,
                record.username,
                to_sql_u64(record.device_id),
                record.state
            ],
        )
    }

    fn delete_inbound_keys(&mut self, group_id: &[u8]) -> Result<(), StoreError> {
        self.run("DELETE FROM sender_keys_in WHERE group_id = ?1", [group_id])
    }

    fn upload(&self, message_id: &[u8]) -> Result<Option<UploadRecord>, StoreError> {
        self.row(
            &format!("{UPLOAD_COLUMNS} WHERE message_id = ?1"),
            [message_id],
            upload_row,
        )
    }

    fn uploads(&self) -> Result<Vec<UploadRecord>, StoreError> {
        self.rows(UPLOAD_COLUMNS, [], upload_row)
    }

    fn insert_upload(&mut self, record: &UploadRecord) -> Result<(), StoreError> {
        self.run(
            "INSERT INTO uploads (message_id, staging, ciphertext_len, attachment_id)
             VALUES (?1, ?2, ?3, ?4)",
            params![
                record.message_id,
                record.staging,
                to_sql_u64(record.ciphertext_len),
                record.attachment_id
            ],
        )
    }

    fn set_upload_attachment_id(
        &mut self,
        message_id: &[u8],
        attachment_id: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.run(
            "UPDATE uploads SET attachment_id = ?1 WHERE message_id = ?2",
            params![attachment_id, message_id],
        )
    }

    fn delete_upload(&mut self, message_id: &[u8]) -> Result<(), StoreError> {
        self.run("DELETE FROM uploads WHERE message_id = ?1", [message_id])
    }
}

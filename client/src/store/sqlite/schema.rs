//! The store's SQL schema and its versioned migrations.
//!
//! `meta.schema_version` holds the version; each migration moves it up by
//! one inside a transaction. A file with a newer version than this build
//! knows is refused rather than misread.

use rusqlite::{Connection, OptionalExtension as _};

use super::convert::Db as _;
use crate::error::OpenError;

/// Every migration, in order; index + 1 is the version it produces.
pub(crate) const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
     CREATE TABLE contacts (
         username TEXT PRIMARY KEY,
         identity_key BLOB NOT NULL,
         pending_identity BLOB,
         devices_checked_ms INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE sessions (
         username TEXT NOT NULL,
         device_id INTEGER NOT NULL,
         base_key BLOB NOT NULL,
         remote_identity BLOB NOT NULL,
         state BLOB NOT NULL,
         used_seq INTEGER NOT NULL,
         PRIMARY KEY (username, device_id, base_key)
     );
     CREATE TABLE messages (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         conversation TEXT NOT NULL,
         author TEXT NOT NULL,
         message_id BLOB NOT NULL,
         target_id BLOB,
         kind TEXT NOT NULL,
         sent_at_ms INTEGER NOT NULL,
         received_at_ms INTEGER NOT NULL,
         body BLOB NOT NULL,
         UNIQUE (author, message_id)
     );
     CREATE INDEX messages_target ON messages (author, target_id);
     CREATE INDEX messages_conversation ON messages (conversation, seq);
     CREATE TABLE processed_envelopes (
         envelope_id INTEGER PRIMARY KEY,
         processed_ms INTEGER NOT NULL
     );
     CREATE TABLE outbox (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         destination TEXT NOT NULL,
         message_id BLOB NOT NULL,
         payload BLOB NOT NULL,
         created_ms INTEGER NOT NULL
     );",
    // v2: groups and sender keys (SPEC.md §6, §12.10), file lookups by id.
    "CREATE TABLE groups (group_id BLOB PRIMARY KEY, record BLOB NOT NULL);
     CREATE TABLE sender_keys_out (group_id BLOB PRIMARY KEY, state BLOB NOT NULL);
     CREATE TABLE sender_key_shared (
         group_id BLOB NOT NULL,
         username TEXT NOT NULL,
         device_id INTEGER NOT NULL,
         key_id INTEGER NOT NULL,
         PRIMARY KEY (group_id, username, device_id)
     );
     CREATE TABLE sender_keys_in (
         group_id BLOB NOT NULL,
         username TEXT NOT NULL,
         device_id INTEGER NOT NULL,
         state BLOB NOT NULL,
         PRIMARY KEY (group_id, username, device_id)
     );
     CREATE INDEX messages_id ON messages (message_id);
     CREATE INDEX outbox_message ON outbox (message_id);",
    // v3: which received messages the application has shown, and the
    // sending device (to rebuild their events). Rows stored before count as
    // shown, so an upgrade does not replay the whole history.
    "ALTER TABLE messages ADD COLUMN shown INTEGER NOT NULL DEFAULT 1;
     ALTER TABLE messages ADD COLUMN author_device INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX messages_unshown ON messages (seq) WHERE shown = 0;",
    // v4: history pages (texts and files of one conversation by position,
    // delivery/read receipts left out of the scan) and the receipts for our
    // own messages, the furthest stage per reader (1 delivered, 2 read).
    "CREATE INDEX messages_history ON messages (conversation, seq)
         WHERE kind IN ('text', 'attachment');
     CREATE TABLE receipts (
         message_id BLOB NOT NULL,
         reader TEXT NOT NULL,
         stage INTEGER NOT NULL,
         PRIMARY KEY (message_id, reader)
     );",
    // v5: whether the application sent an outbox row, so only its own
    // sends are announced (Sent, NotDelivered, SendFailed), not what the
    // SDK queued by itself. Rows queued before count as the application's,
    // as they were announced then.
    "ALTER TABLE outbox ADD COLUMN announce INTEGER NOT NULL DEFAULT 1;",
    // v6: how the application's sends ended when they left the outbox: the
    // server's time stamp, or why the send was dropped (its kind and text).
    "CREATE TABLE send_outcomes (
         message_id BLOB PRIMARY KEY,
         server_timestamp_ms INTEGER,
         failure_kind TEXT,
         failure TEXT
     );",
    // v7: files queued for upload (attachments/staging.rs): the outbox row
    // of a file message waits for its upload, whose encrypted staging copy
    // is the file `staging` in the store's staging directory. The key,
    // digest and names are in the (sealed) outbox payload; `attachment_id`
    // is the server's id once the upload started, to resume it.
    "CREATE TABLE uploads (
         message_id BLOB PRIMARY KEY,
         staging TEXT NOT NULL UNIQUE,
         ciphertext_len INTEGER NOT NULL,
         attachment_id BLOB
     );",
];

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema of `conn` up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), OpenError> {
    let has_meta: bool = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |_| Ok(true),
        )
        .optional()
        .db()?
        .unwrap_or(false);
    let mut version: i64 = if has_meta {
        conn.query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()
        .db()?
        .unwrap_or(0)
    } else {
        0
    };
    if version > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for migration in MIGRATIONS
        .iter()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.transaction().db()?;
        tx.execute_batch(migration).db()?;
        version += 1;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
            [version],
        )
        .db()?;
        tx.commit().db()?;
    }
    Ok(())
}

//! The SQLite schema and its versioned migrations (SPEC.md §14.1 lists what
//! the tables hold).
//!
//! The version is `PRAGMA user_version`; [`MIGRATIONS`] holds one script per
//! version, applied in order, each in its own transaction. A file with a
//! higher version than this build knows is refused.
//!
//! Not owned here: queries (sqlite.rs).

use rusqlite::Connection;

/// Schema scripts; index + 1 is the `user_version` they produce.
///
/// Version 2 (server part 2): groups, their members, group messages (one
/// ciphertext stored once and referenced by every fanned-out envelope) and
/// attachments. Version 3: account ids never reused (AUTOINCREMENT).
/// Version 4: envelopes indexed by (device, sender) for the sender share.
/// Version 5: groups record their creator. Version 6: devices keep their
/// queue length. Version 10: admins' saved dashboard layouts. Version 11:
/// IP deny rules from the dashboard. Version 13: usage analytics. Version
/// 14: account and device suspensions. Version 15: signed device lists.
/// Version 16: rate limits set on the dashboard. Version 17: every node's
/// minute rollups of chart history.
pub const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    totp_secret BLOB NOT NULL,
    last_totp_step INTEGER NOT NULL DEFAULT -1,
    active INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE recovery_codes (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    code_hash BLOB NOT NULL,
    PRIMARY KEY (account_id, code_hash)
) WITHOUT ROWID;
CREATE TABLE devices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    name TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_login_ms INTEGER NOT NULL DEFAULT 0,
    removed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_account ON devices(account_id);
CREATE TABLE device_keys (
    device_id INTEGER PRIMARY KEY,
    identity_key BLOB NOT NULL,
    signed_prekey_id INTEGER NOT NULL,
    signed_prekey BLOB NOT NULL,
    signed_prekey_signature BLOB NOT NULL,
    last_resort_kem_id INTEGER,
    last_resort_kem BLOB,
    last_resort_kem_signature BLOB
);
CREATE TABLE one_time_prekeys (
    device_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    PRIMARY KEY (device_id, id)
) WITHOUT ROWID;
CREATE TABLE kem_prekeys (
    device_id INTEGER NOT NULL,
    id INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (device_id, id)
) WITHOUT ROWID;
CREATE TABLE envelopes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id INTEGER NOT NULL,
    sender_username TEXT NOT NULL,
    sender_device_id INTEGER NOT NULL,
    server_timestamp_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    ciphertext BLOB NOT NULL
);
CREATE INDEX envelopes_by_device ON envelopes(device_id, id);
CREATE INDEX envelopes_by_expiry ON envelopes(expires_at_ms);
",
    r"
CREATE TABLE groups (
    id BLOB PRIMARY KEY,
    version INTEGER NOT NULL,
    metadata BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE group_members (
    group_id BLOB NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    account_id INTEGER NOT NULL,
    role INTEGER NOT NULL,
    joined_at_version INTEGER NOT NULL,
    PRIMARY KEY (group_id, account_id)
) WITHOUT ROWID;
CREATE INDEX group_members_by_account ON group_members(account_id);
CREATE TABLE group_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);
ALTER TABLE envelopes ADD COLUMN group_message_id INTEGER;
CREATE INDEX envelopes_by_group_message ON envelopes(group_message_id)
    WHERE group_message_id IS NOT NULL;
CREATE TABLE attachments (
    id BLOB PRIMARY KEY,
    account_id INTEGER NOT NULL,
    token_hash BLOB NOT NULL,
    size INTEGER NOT NULL,
    committed INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX attachments_by_account ON attachments(account_id);
CREATE INDEX attachments_by_expiry ON attachments(expires_at_ms);
",
    // Version 3 (issue 14): account ids are never reused. The table is
    // rebuilt with AUTOINCREMENT (recovery codes with it, so the drop of the
    // old table cascades into nothing), and the id sequence starts above
    // every account id still named anywhere (removed devices, attachments).
    r"
CREATE TABLE accounts_v3 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    totp_secret BLOB NOT NULL,
    last_totp_step INTEGER NOT NULL DEFAULT -1,
    active INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);
INSERT INTO accounts_v3 (id, username, password_hash, totp_secret, last_totp_step, active, created_at_ms)
    SELECT id, username, password_hash, totp_secret, last_totp_step, active, created_at_ms FROM accounts;
CREATE TABLE recovery_codes_v3 (
    account_id INTEGER NOT NULL REFERENCES accounts_v3(id) ON DELETE CASCADE,
    code_hash BLOB NOT NULL,
    PRIMARY KEY (account_id, code_hash)
) WITHOUT ROWID;
INSERT INTO recovery_codes_v3 (account_id, code_hash) SELECT account_id, code_hash FROM recovery_codes;
DROP TABLE recovery_codes;
DROP TABLE accounts;
ALTER TABLE accounts_v3 RENAME TO accounts;
ALTER TABLE recovery_codes_v3 RENAME TO recovery_codes;
DELETE FROM sqlite_sequence WHERE name = 'accounts';
INSERT INTO sqlite_sequence (name, seq) SELECT 'accounts', MAX(
    COALESCE((SELECT MAX(id) FROM accounts), 0),
    COALESCE((SELECT MAX(account_id) FROM devices), 0),
    COALESCE((SELECT MAX(account_id) FROM attachments), 0),
    COALESCE((SELECT MAX(account_id) FROM group_members), 0));
",
    // Version 4 (issue 14): a sender's share of a queue is counted from
    // this index alone (SPEC.md §12.7).
    r"
CREATE INDEX envelopes_by_sender ON envelopes(device_id, sender_username, expires_at_ms);
",
    // Version 5 (issue 14): who created a group, for the per-account cap
    // (SPEC.md §12.10); groups created before it count for nobody.
    r"
ALTER TABLE groups ADD COLUMN created_by INTEGER NOT NULL DEFAULT 0;
CREATE INDEX groups_by_creator ON groups(created_by);
",
    // Version 6 (issue 14): each device row keeps the number of envelopes
    // stored in its queue, so the queue cap and the metrics gauge read one
    // column instead of counting envelopes on every send.
    r"
ALTER TABLE devices ADD COLUMN queue_len INTEGER NOT NULL DEFAULT 0;
UPDATE devices SET queue_len = (SELECT COUNT(*) FROM envelopes e WHERE e.device_id = devices.id);
",
    // Version 7 (issue 20): provisioning slots for device linking (SPEC.md
    // §12.14): ciphertext only, one read, deleted when read or expired.
    r"
CREATE TABLE provisioning_slots (
    id BLOB PRIMARY KEY,
    expires_at_ms INTEGER NOT NULL,
    sealed BLOB
) WITHOUT ROWID;
CREATE INDEX provisioning_slots_by_expiry ON provisioning_slots(expires_at_ms);
",
    // Version 8 (issue 20): sealed sender (SPEC.md §19.6, §19.7): the
    // deployment's certificate signing key, and per account its
    // unidentified-access key and whether it accepts sealed sends from anyone.
    r"
CREATE TABLE server_keys (
    name TEXT PRIMARY KEY,
    key_id INTEGER NOT NULL,
    secret BLOB NOT NULL
) WITHOUT ROWID;
ALTER TABLE accounts ADD COLUMN access_key BLOB;
ALTER TABLE accounts ADD COLUMN allow_unidentified INTEGER NOT NULL DEFAULT 0;
",
    // Version 9 (issue 19): operator accounts, their sessions (by token
    // hash) and the audit log of the admin dashboard (SPEC.md §18.7).
    r"
CREATE TABLE admins (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret BLOB NOT NULL,
    last_totp_step INTEGER NOT NULL DEFAULT -1,
    active INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE admin_sessions (
    token_hash BLOB PRIMARY KEY,
    admin_id INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE admin_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    admin TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
",
    // Version 10 (issue 19): each admin's saved dashboard layout (SPEC.md
    // §18.7) as text, deleted with its admin.
    r"
CREATE TABLE admin_layouts (
    admin_id INTEGER PRIMARY KEY,
    layout TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
", // Version 11 (issue 19): IP deny rules edited on the dashboard (SPEC.md
    // §18.7), applied to new connections on every node.
    r"
CREATE TABLE admin_ip_rules (
    cidr TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
", // Version 12 (issue 22): bot accounts, flagged at registration and shown
    // to clients with the account's prekey bundles (SPEC.md §12.3, §12.7).
    r"
ALTER TABLE accounts ADD COLUMN bot INTEGER NOT NULL DEFAULT 0;
",
    // Version 13 (issue 19): content-free analytics (SPEC.md §14.1): counters
    // per day, login working sets kept 35 days, retention cohorts.
    r"
CREATE TABLE analytics_counts (
    day INTEGER NOT NULL,
    metric TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (day, metric)
) WITHOUT ROWID;
CREATE TABLE analytics_seen (
    period INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    id INTEGER NOT NULL,
    PRIMARY KEY (period, kind, id)
) WITHOUT ROWID;
CREATE TABLE analytics_cohorts (
    cohort_week INTEGER NOT NULL,
    week INTEGER NOT NULL,
    accounts INTEGER NOT NULL,
    PRIMARY KEY (cohort_week, week)
) WITHOUT ROWID;
",
    // Version 14 (issue 19): accounts and devices suspended on the dashboard
    // (SPEC.md §18.7): their logins are refused on every node.
    r"
CREATE TABLE suspensions (
    kind TEXT NOT NULL,
    target_id INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, target_id)
) WITHOUT ROWID;
",
    // Version 15 (issue 20): each account's latest signed device list
    // (SPEC.md §20), the bytes as uploaded.
    r"
CREATE TABLE device_lists (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    list BLOB NOT NULL
);
",
    // Version 16 (issue 19): rate limits set on the dashboard (SPEC.md
    // §18.7), overriding the server's settings of those names on every node.
    r"
CREATE TABLE admin_rate_limits (
    name TEXT PRIMARY KEY,
    per_minute INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
",
    // Version 17 (issue 19): each node's closed minutes of chart history
    // (SPEC.md §18.7 Charts), kept 30 days, so the charts of another node
    // or of the cluster reach as far back as a node's own.
    r"
CREATE TABLE node_minutes (
    node TEXT NOT NULL,
    minute INTEGER NOT NULL,
    rollup TEXT NOT NULL,
    PRIMARY KEY (node, minute)
) WITHOUT ROWID;
CREATE INDEX node_minutes_by_minute ON node_minutes (minute);
",
];

/// The schema version this build writes.
pub fn schema_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

pub(super) enum MigrateError {
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// The file's version is newer than this build's.
    TooNew(i64),
}

pub(super) fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(MigrateError::Sqlite)?;
    if current > schema_version() {
        return Err(MigrateError::TooNew(current));
    }
    let start = usize::try_from(current).unwrap_or(0);
    for (index, script) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn.transaction().map_err(MigrateError::Sqlite)?;
        tx.execute_batch(script).map_err(MigrateError::Sqlite)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(index + 1).unwrap_or(i64::MAX),
        )
        .map_err(MigrateError::Sqlite)?;
        tx.commit().map_err(MigrateError::Sqlite)?;
    }
    Ok(())
}

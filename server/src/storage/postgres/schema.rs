//! The PostgreSQL schema and its versioned migrations (SPEC.md §14.1 lists
//! what the tables hold; the tables mirror the SQLite ones in
//! `storage/schema.rs`).
//!
//! The applied version is the highest row of `microbot_schema`. All
//! pending scripts run in one transaction that first takes a
//! transaction-scoped advisory lock, so several nodes starting at once
//! apply each script exactly once and never see a half-migrated schema. A
//! database with a higher version than this build knows is refused.
//!
//! Not owned here: queries (postgres.rs and its submodules).

use tokio_postgres::Client;

use super::PgError;

/// Advisory lock key taken while migrating ("microbot" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d69_6372_6f62_6f74;

/// Schema scripts; index + 1 is the version they produce.
pub const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE accounts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    totp_secret BYTEA NOT NULL,
    last_totp_step BIGINT NOT NULL DEFAULT -1,
    active BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE recovery_codes (
    account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    code_hash BYTEA NOT NULL,
    PRIMARY KEY (account_id, code_hash)
);
CREATE TABLE devices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT NOT NULL,
    public_key BYTEA NOT NULL,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_login_ms BIGINT NOT NULL DEFAULT 0,
    removed BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX devices_by_account ON devices(account_id);
CREATE TABLE device_keys (
    device_id BIGINT PRIMARY KEY,
    identity_key BYTEA NOT NULL,
    signed_prekey_id BIGINT NOT NULL,
    signed_prekey BYTEA NOT NULL,
    signed_prekey_signature BYTEA NOT NULL,
    last_resort_kem_id BIGINT,
    last_resort_kem BYTEA,
    last_resort_kem_signature BYTEA
);
CREATE TABLE one_time_prekeys (
    device_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    public_key BYTEA NOT NULL,
    PRIMARY KEY (device_id, id)
);
CREATE TABLE kem_prekeys (
    device_id BIGINT NOT NULL,
    id BIGINT NOT NULL,
    public_key BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (device_id, id)
);
CREATE TABLE envelopes (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id BIGINT NOT NULL,
    sender_username TEXT NOT NULL,
    sender_device_id BIGINT NOT NULL,
    server_timestamp_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    ciphertext BYTEA NOT NULL,
    group_message_id BIGINT
);
CREATE INDEX envelopes_by_device ON envelopes(device_id, id);
CREATE INDEX envelopes_by_expiry ON envelopes(expires_at_ms);
CREATE INDEX envelopes_by_group_message ON envelopes(group_message_id)
    WHERE group_message_id IS NOT NULL;
CREATE TABLE chat_groups (
    id BYTEA PRIMARY KEY,
    version BIGINT NOT NULL,
    metadata BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE group_members (
    group_id BYTEA NOT NULL REFERENCES chat_groups(id) ON DELETE CASCADE,
    account_id BIGINT NOT NULL,
    role BIGINT NOT NULL,
    joined_at_version BIGINT NOT NULL,
    PRIMARY KEY (group_id, account_id)
);
CREATE INDEX group_members_by_account ON group_members(account_id);
CREATE TABLE group_messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id BYTEA NOT NULL,
    ciphertext BYTEA NOT NULL
);
CREATE TABLE attachments (
    id BYTEA PRIMARY KEY,
    account_id BIGINT NOT NULL,
    token_hash BYTEA NOT NULL,
    size BIGINT NOT NULL,
    committed BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX attachments_by_account ON attachments(account_id);
CREATE INDEX attachments_by_expiry ON attachments(expires_at_ms);
",
    // Version 2 (issue 14): a sender's share of a queue is counted from
    // this index (SPEC.md §12.7).
    r"
CREATE INDEX envelopes_by_sender ON envelopes(device_id, sender_username, expires_at_ms);
",
    // Version 3 (issue 14): who created a group, for the per-account cap
    // (SPEC.md §12.10); groups created before it count for nobody.
    r"
ALTER TABLE chat_groups ADD COLUMN created_by BIGINT NOT NULL DEFAULT 0;
CREATE INDEX chat_groups_by_creator ON chat_groups(created_by);
",
    // Version 4 (issue 14): each device row keeps the number of envelopes
    // stored in its queue (the cap check reads it under the row lock senders
    // take anyway, instead of counting envelopes and their dead rows).
    r"
ALTER TABLE devices ADD COLUMN queue_len BIGINT NOT NULL DEFAULT 0;
UPDATE devices SET queue_len = (SELECT COUNT(*) FROM envelopes e WHERE e.device_id = devices.id);
",
    // Version 5 (issue 20): provisioning slots for device linking (SPEC.md
    // §12.14): ciphertext only, one read, deleted when read or expired.
    r"
CREATE TABLE provisioning_slots (
    id BYTEA PRIMARY KEY,
    expires_at_ms BIGINT NOT NULL,
    sealed BYTEA
);
CREATE INDEX provisioning_slots_by_expiry ON provisioning_slots(expires_at_ms);
",
    // Version 6 (issue 20): sealed sender (SPEC.md §19.6, §19.7): the
    // deployment's certificate signing key (shared by every node), and per
    // account its unidentified-access key and whether it accepts sealed
    // sends from anyone.
    r"
CREATE TABLE server_keys (
    name TEXT PRIMARY KEY,
    key_id BIGINT NOT NULL,
    secret BYTEA NOT NULL
);
ALTER TABLE accounts ADD COLUMN access_key BYTEA;
ALTER TABLE accounts ADD COLUMN allow_unidentified BOOLEAN NOT NULL DEFAULT FALSE;
",
    // Version 7 (issue 19): operator accounts, their sessions (by token
    // hash) and the audit log of the admin dashboard (SPEC.md §18.7).
    r"
CREATE TABLE admins (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret BYTEA NOT NULL,
    last_totp_step BIGINT NOT NULL DEFAULT -1,
    active BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE admin_sessions (
    token_hash BYTEA PRIMARY KEY,
    admin_id BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE TABLE admin_audit (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    admin TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
",
    // Version 8 (issue 19): each admin's saved dashboard layout (SPEC.md
    // §18.7) as text, deleted with its admin.
    r"
CREATE TABLE admin_layouts (
    admin_id BIGINT PRIMARY KEY,
    layout TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
", // Version 9 (issue 19): IP deny rules edited on the dashboard (SPEC.md
    // §18.7), applied to new connections on every node.
    r"
CREATE TABLE admin_ip_rules (
    cidr TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
", // Version 10 (issue 22): bot accounts, flagged at registration and shown
    // to clients with the account's prekey bundles (SPEC.md §12.3, §12.7).
    r"
ALTER TABLE accounts ADD COLUMN bot BOOLEAN NOT NULL DEFAULT FALSE;
",
    // Version 11 (issue 19): content-free analytics (SPEC.md §14.1): counters
    // per day, login working sets kept 35 days, retention cohorts.
    r"
CREATE TABLE analytics_counts (
    day BIGINT NOT NULL,
    metric TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (day, metric)
);
CREATE TABLE analytics_seen (
    period BIGINT NOT NULL,
    kind SMALLINT NOT NULL,
    id BIGINT NOT NULL,
    PRIMARY KEY (period, kind, id)
);
CREATE TABLE analytics_cohorts (
    cohort_week BIGINT NOT NULL,
    week BIGINT NOT NULL,
    accounts BIGINT NOT NULL,
    PRIMARY KEY (cohort_week, week)
);
",
    // Version 12 (issue 19): accounts and devices suspended on the dashboard
    // (SPEC.md §18.7): their logins are refused on every node.
    r"
CREATE TABLE suspensions (
    kind TEXT NOT NULL,
    target_id BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (kind, target_id)
);
",
    // Version 13 (issue 20): each account's latest signed device list
    // (SPEC.md §20), the bytes as uploaded.
    r"
CREATE TABLE device_lists (
    account_id BIGINT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    version BIGINT NOT NULL,
    list BYTEA NOT NULL
);
",
    // Version 14 (issue 19): rate limits set on the dashboard (SPEC.md
    // §18.7), overriding the server's settings of those names on every node.
    r"
CREATE TABLE admin_rate_limits (
    name TEXT PRIMARY KEY,
    per_minute BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
",
    // Version 15 (issue 19): each node's closed minutes of chart history
    // (SPEC.md §18.7 Charts), kept 30 days.
    r"
CREATE TABLE node_minutes (
    node TEXT NOT NULL,
    minute BIGINT NOT NULL,
    rollup TEXT NOT NULL,
    PRIMARY KEY (node, minute)
);
CREATE INDEX node_minutes_by_minute ON node_minutes (minute);
",
];

/// The schema version this build writes.
pub fn schema_version() -> i32 {
    i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX)
}

/// Applies every pending migration; returns the version found before.
pub(super) async fn migrate(client: &mut Client) -> Result<i32, PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS microbot_schema (\
         version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let current: i32 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM microbot_schema", &[])
        .await?
        .try_get(0)?;
    if current > schema_version() {
        return Err(PgError::TooNew(current));
    }
    let start = usize::try_from(current).unwrap_or(0);
    for (index, script) in MIGRATIONS.iter().enumerate().skip(start) {
        tx.batch_execute(script).await?;
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO microbot_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(current)
}

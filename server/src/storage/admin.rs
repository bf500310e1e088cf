//! Operator accounts, their sessions and the audit log: the
//! [`AdminStorage`] half of the storage trait (SPEC.md §18.7, §14.1).
//!
//! An admin has a name, a role, an argon2id password hash and a TOTP
//! secret, like a user account, and becomes active once a first code is
//! confirmed. A session is stored by the SHA-256 of its token (the token
//! itself lives only in the operator's cookie). Audit entries are appended,
//! never changed. Each admin may have one saved dashboard layout: an opaque
//! text here (its form and checks are admin/layout.rs's), deleted with its
//! admin. IP deny rules edited on the dashboard are stored here too (one
//! row per CIDR block, shared by every node of a cluster).
//!
//! Not owned here: checking credentials and roles (admin/).

use super::StorageResult;

/// What an admin may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminRole {
    /// May read everything and change settings.
    Admin,
    /// May read everything and change nothing.
    Viewer,
}

impl AdminRole {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::Viewer => "viewer",
        }
    }

    /// Parses a stored or typed name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(AdminRole::Admin),
            "viewer" => Some(AdminRole::Viewer),
            _ => None,
        }
    }

    /// The role a stored name grants, for every backend: a name this
    /// build does not know (written by a newer one) reads as
    /// [`AdminRole::Viewer`], the least power, rather than locking every
    /// admin out of a lookup that fails.
    pub fn stored(text: &str) -> Self {
        Self::parse(text).unwrap_or(AdminRole::Viewer)
    }
}

/// One stored admin.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminRecord {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// Role.
    pub role: AdminRole,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Raw TOTP secret.
    pub totp_secret: Vec<u8>,
    /// Whether a first TOTP code was confirmed.
    pub active: bool,
}

impl std::fmt::Debug for AdminRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// A live session's admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminSession {
    /// The admin's row id.
    pub admin_id: i64,
    /// The admin's name.
    pub name: String,
    /// The admin's role now (a changed role applies at once).
    pub role: AdminRole,
    /// When the session ends, ms since the epoch.
    pub expires_at_ms: u64,
}

/// One audit log entry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// Which admin (name at the time).
    pub admin: String,
    /// What kind of change (`login`, `layout`, `ip_rule`, …).
    pub action: String,
    /// What exactly, in words (never a secret).
    pub detail: String,
}

/// One IP rule made on the dashboard.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IpRuleRecord {
    /// `deny` (the only kind the dashboard makes).
    pub kind: String,
    /// The CIDR block, canonical (host bits zero), e.g. `10.0.0.0/8`.
    pub cidr: String,
    /// The admin who made it (name at the time).
    pub created_by: String,
    /// When, ms since the epoch.
    pub created_at_ms: u64,
}

/// A rate limit set on the dashboard (SPEC.md §18.7 Rate limits): it
/// overrides the server's setting of that name on every node until removed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RateLimitRecord {
    /// The setting's name (`rate_send_per_account`, …).
    pub name: String,
    /// Requests per minute; 0 turns the limit off.
    pub per_minute: u32,
    /// The admin who set it (name at the time).
    pub updated_by: String,
    /// When, ms since the epoch.
    pub updated_at_ms: u64,
}

/// One node's closed minute of chart history, as stored (SPEC.md §18.7
/// Charts): every node of a cluster writes its own, and reads every
/// node's for the charts of another node or of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeMinuteRecord {
    /// The node's bus id.
    pub node: String,
    /// The minute's start, seconds since the epoch.
    pub minute: u64,
    /// The rollup, as `admin::rollups::MinuteRollup` encodes it.
    pub rollup: String,
}

/// Admin operations of [`super::Storage`].
#[async_trait::async_trait]
pub trait AdminStorage {
    /// Inserts an inactive admin; `false` when the name is taken.
    async fn create_admin(
        &self,
        name: &str,
        role: AdminRole,
        password_hash: &str,
        totp_secret: &[u8],
        now_ms: u64,
    ) -> StorageResult<bool>;
    /// The admin called `name`, active or not.
    async fn admin_by_name(&self, name: &str) -> StorageResult<Option<AdminRecord>>;
    /// Marks the admin active (its first code was confirmed).
    async fn activate_admin(&self, admin_id: i64) -> StorageResult<()>;
    /// Deletes the admin and its sessions; `false` when there was none.
    async fn remove_admin(&self, name: &str) -> StorageResult<bool>;
    /// Records TOTP `step` as used by the admin; `false` when that step or
    /// a later one was used already (one use per step).
    async fn consume_admin_totp_step(&self, admin_id: i64, step: i64) -> StorageResult<bool>;
    /// Stores a session by the SHA-256 of its token; expired sessions are
    /// deleted on the way.
    async fn create_admin_session(
        &self,
        token_hash: &[u8; 32],
        admin_id: i64,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> StorageResult<()>;
    /// The unexpired session with this token hash.
    async fn admin_session(
        &self,
        token_hash: &[u8; 32],
        now_ms: u64,
    ) -> StorageResult<Option<AdminSession>>;
    /// Ends a session (logout).
    async fn delete_admin_session(&self, token_hash: &[u8; 32]) -> StorageResult<()>;
    /// Appends an audit entry.
    async fn append_audit(&self, entry: &AuditEntry) -> StorageResult<()>;
    /// The newest `limit` audit entries, newest first.
    async fn audit_log(&self, limit: u32) -> StorageResult<Vec<AuditEntry>>;
    /// The admin's saved dashboard layout (opaque text), if any.
    async fn admin_layout(&self, admin_id: i64) -> StorageResult<Option<String>>;
    /// Saves (replaces) the admin's dashboard layout.
    async fn set_admin_layout(&self, admin_id: i64, layout: &str, now_ms: u64)
    -> StorageResult<()>;
    /// Every IP rule made on the dashboard, oldest first.
    async fn ip_rules(&self) -> StorageResult<Vec<IpRuleRecord>>;
    /// Adds a rule; `false` when a rule for that CIDR exists already.
    async fn add_ip_rule(&self, rule: &IpRuleRecord) -> StorageResult<bool>;
    /// Removes the rule for `cidr`; its kind (`deny` or `allow`), `None`
    /// when there was none.
    async fn remove_ip_rule(&self, cidr: &str) -> StorageResult<Option<String>>;
    /// Every rate-limit override, by name.
    async fn rate_limits(&self) -> StorageResult<Vec<RateLimitRecord>>;
    /// Sets (inserts or replaces) the override of `record.name`.
    async fn set_rate_limit(&self, record: &RateLimitRecord) -> StorageResult<()>;
    /// Removes the override of `name`; `false` when there was none.
    async fn remove_rate_limit(&self, name: &str) -> StorageResult<bool>;
    /// Stores a node's closed minute (replacing one of the same node and
    /// minute), and forgets every node's minutes before `keep_from`
    /// (seconds since the epoch).
    async fn put_node_minute(&self, record: &NodeMinuteRecord, keep_from: u64)
    -> StorageResult<()>;
    /// The stored minutes in `[from, to)` (seconds since the epoch) of
    /// `node`, or of every node when `None`, ascending by minute, then
    /// by node.
    async fn node_minutes(
        &self,
        node: Option<&str>,
        from: u64,
        to: u64,
    ) -> StorageResult<Vec<NodeMinuteRecord>>;
}

//! SQLite implementation of [`AdminStorage`] (SPEC.md §18.7).

use rusqlite::{OptionalExtension, params};

use super::{SqliteStorage, blocking, count, db, net_id, sql_time};
use crate::storage::StorageResult;
use crate::storage::admin::{
    AdminRecord, AdminRole, AdminSession, AdminStorage, AuditEntry, IpRuleRecord, NodeMinuteRecord,
    RateLimitRecord,
};

#[async_trait::async_trait]
impl AdminStorage for SqliteStorage {
    async fn create_admin(
        &self,
        name: &str,
        role: AdminRole,
        password_hash: &str,
        totp_secret: &[u8],
        now_ms: u64,
    ) -> StorageResult<bool> {
        blocking(|| {
            self.with_tx(|tx| {
                let n = tx
                    .execute(
                        "INSERT INTO admins (name, role, password_hash, totp_secret, created_at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
                        params![
                            name,
                            role.as_str(),
                            password_hash,
                            totp_secret,
                            sql_time(now_ms)
                        ],
                    )
                    .map_err(db)?;
                Ok(n == 1)
            })
        })
    }

    async fn admin_by_name(&self, name: &str) -> StorageResult<Option<AdminRecord>> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.query_row(
                    "SELECT id, name, role, password_hash, totp_secret, active FROM admins WHERE name = ?1",
                    params![name],
                    |r| {
                        Ok(AdminRecord {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            role: AdminRole::stored(&r.get::<_, String>(2)?),
                            password_hash: r.get(3)?,
                            totp_secret: r.get(4)?,
                            active: r.get::<_, i64>(5)? != 0,
                        })
                    },
                )
                .optional()
                .map_err(db)
            })
        })
    }

    async fn activate_admin(&self, admin_id: i64) -> StorageResult<()> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "UPDATE admins SET active = 1 WHERE id = ?1",
                    params![admin_id],
                )
                .map_err(db)?;
                Ok(())
            })
        })
    }

    async fn remove_admin(&self, name: &str) -> StorageResult<bool> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "DELETE FROM admin_sessions WHERE admin_id IN (SELECT id FROM admins WHERE name = ?1)",
                    params![name],
                )
                .map_err(db)?;
                tx.execute(
                    "DELETE FROM admin_layouts WHERE admin_id IN (SELECT id FROM admins WHERE name = ?1)",
                    params![name],
                )
                .map_err(db)?;
                let n = tx
                    .execute("DELETE FROM admins WHERE name = ?1", params![name])
                    .map_err(db)?;
                Ok(n == 1)
            })
        })
    }

    async fn consume_admin_totp_step(&self, admin_id: i64, step: i64) -> StorageResult<bool> {
        blocking(|| {
            self.with_tx(|tx| {
                let n = tx
                    .execute(
                        "UPDATE admins SET last_totp_step = ?2 WHERE id = ?1 AND last_totp_step < ?2",
                        params![admin_id, step],
                    )
                    .map_err(db)?;
                Ok(n == 1)
            })
        })
    }

    async fn create_admin_session(
        &self,
        token_hash: &[u8; 32],
        admin_id: i64,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> StorageResult<()> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "DELETE FROM admin_sessions WHERE expires_at_ms <= ?1",
                    params![sql_time(now_ms)],
                )
                .map_err(db)?;
                tx.execute(
                    "INSERT INTO admin_sessions (token_hash, admin_id, expires_at_ms) VALUES (?1, ?2, ?3)",
                    params![token_hash.as_slice(), admin_id, sql_time(expires_at_ms)],
                )
                .map_err(db)?;
                Ok(())
            })
        })
    }

    async fn admin_session(
        &self,
        token_hash: &[u8; 32],
        now_ms: u64,
    ) -> StorageResult<Option<AdminSession>> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.query_row(
                    "SELECT a.id, a.name, a.role, s.expires_at_ms FROM admin_sessions s \
                     JOIN admins a ON a.id = s.admin_id \
                     WHERE s.token_hash = ?1 AND s.expires_at_ms > ?2 AND a.active = 1",
                    params![token_hash.as_slice(), sql_time(now_ms)],
                    |r| {
                        Ok(AdminSession {
                            admin_id: r.get(0)?,
                            name: r.get(1)?,
                            role: AdminRole::stored(&r.get::<_, String>(2)?),
                            expires_at_ms: net_id(r.get(3)?),
                        })
                    },
                )
                .optional()
                .map_err(db)
            })
        })
    }

    async fn delete_admin_session(&self, token_hash: &[u8; 32]) -> StorageResult<()> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "DELETE FROM admin_sessions WHERE token_hash = ?1",
                    params![token_hash.as_slice()],
                )
                .map_err(db)?;
                Ok(())
            })
        })
    }

    async fn append_audit(&self, entry: &AuditEntry) -> StorageResult<()> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "INSERT INTO admin_audit (at_ms, admin, action, detail) VALUES (?1, ?2, ?3, ?4)",
                    params![
                        sql_time(entry.at_ms),
                        entry.admin,
                        entry.action,
                        entry.detail
                    ],
                )
                .map_err(db)?;
                Ok(())
            })
        })
    }

    async fn audit_log(&self, limit: u32) -> StorageResult<Vec<AuditEntry>> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut statement = tx
                    .prepare("SELECT at_ms, admin, action, detail FROM admin_audit ORDER BY id DESC LIMIT ?1")
                    .map_err(db)?;
                let rows = statement
                    .query_map(params![i64::from(limit)], |r| {
                        Ok(AuditEntry {
                            at_ms: net_id(r.get(0)?),
                            admin: r.get(1)?,
                            action: r.get(2)?,
                            detail: r.get(3)?,
                        })
                    })
                    .map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)
            })
        })
    }

    async fn admin_layout(&self, admin_id: i64) -> StorageResult<Option<String>> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.query_row(
                    "SELECT layout FROM admin_layouts WHERE admin_id = ?1",
                    params![admin_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)
            })
        })
    }

    async fn set_admin_layout(
        &self,
        admin_id: i64,
        layout: &str,
        now_ms: u64,
    ) -> StorageResult<()> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "INSERT INTO admin_layouts (admin_id, layout, updated_at_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (admin_id) DO UPDATE SET layout = excluded.layout, updated_at_ms = excluded.updated_at_ms",
                    params![admin_id, layout, sql_time(now_ms)],
                )
                .map_err(db)?;
                Ok(())
            })
        })
    }

    async fn ip_rules(&self) -> StorageResult<Vec<IpRuleRecord>> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut statement = tx
                    .prepare(
                        "SELECT kind, cidr, created_by, created_at_ms FROM admin_ip_rules \
                         ORDER BY created_at_ms, cidr",
                    )
                    .map_err(db)?;
                let rows = statement
                    .query_map([], |r| {
                        Ok(IpRuleRecord {
                            kind: r.get(0)?,
                            cidr: r.get(1)?,
                            created_by: r.get(2)?,
                            created_at_ms: net_id(r.get(3)?),
                        })
                    })
                    .map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)
            })
        })
    }

    async fn add_ip_rule(&self, rule: &IpRuleRecord) -> StorageResult<bool> {
        blocking(|| {
            self.with_tx(|tx| {
                let n = tx
                    .execute(
                        "INSERT INTO admin_ip_rules (cidr, kind, created_by, created_at_ms) \
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (cidr) DO NOTHING",
                        params![
                            rule.cidr,
                            rule.kind,
                            rule.created_by,
                            sql_time(rule.created_at_ms)
                        ],
                    )
                    .map_err(db)?;
                Ok(n == 1)
            })
        })
    }

    async fn remove_ip_rule(&self, cidr: &str) -> StorageResult<Option<String>> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.query_row(
                    "DELETE FROM admin_ip_rules WHERE cidr = ?1 RETURNING kind",
                    params![cidr],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)
            })
        })
    }

    async fn rate_limits(&self) -> StorageResult<Vec<RateLimitRecord>> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut statement = tx
                    .prepare(
                        "SELECT name, per_minute, updated_by, updated_at_ms FROM admin_rate_limits \
                         ORDER BY name",
                    )
                    .map_err(db)?;
                let rows = statement
                    .query_map([], |r| {
                        Ok(RateLimitRecord {
                            name: r.get(0)?,
                            per_minute: count(r.get(1)?),
                            updated_by: r.get(2)?,
                            updated_at_ms: net_id(r.get(3)?),
                        })
                    })
                    .map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)
            })
        })
    }

    async fn set_rate_limit(&self, record: &RateLimitRecord) -> StorageResult<()> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "INSERT INTO admin_rate_limits (name, per_minute, updated_by, updated_at_ms) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET \
                     per_minute = excluded.per_minute, updated_by = excluded.updated_by, \
                     updated_at_ms = excluded.updated_at_ms",
                    params![
                        record.name,
                        i64::from(record.per_minute),
                        record.updated_by,
                        sql_time(record.updated_at_ms)
                    ],
                )
                .map_err(db)?;
                Ok(())
            })
        })
    }

    async fn remove_rate_limit(&self, name: &str) -> StorageResult<bool> {
        blocking(|| {
            self.with_tx(|tx| {
                let n = tx
                    .execute(
                        "DELETE FROM admin_rate_limits WHERE name = ?1",
                        params![name],
                    )
                    .map_err(db)?;
                Ok(n == 1)
            })
        })
    }

    async fn put_node_minute(
        &self,
        record: &NodeMinuteRecord,
        keep_from: u64,
    ) -> StorageResult<()> {
        blocking(|| {
            self.with_tx(|tx| {
                tx.execute(
                    "INSERT INTO node_minutes (node, minute, rollup) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (node, minute) DO UPDATE SET rollup = excluded.rollup",
                    params![record.node, sql_time(record.minute), record.rollup],
                )
                .map_err(db)?;
                tx.execute(
                    "DELETE FROM node_minutes WHERE minute < ?1",
                    params![sql_time(keep_from)],
                )
                .map_err(db)?;
                Ok(())
            })
        })
    }

    async fn node_minutes(
        &self,
        node: Option<&str>,
        from: u64,
        to: u64,
    ) -> StorageResult<Vec<NodeMinuteRecord>> {
        blocking(|| {
            self.with_tx(|tx| {
                let mut statement = tx
                    .prepare(
                        "SELECT node, minute, rollup FROM node_minutes \
                         WHERE minute >= ?1 AND minute < ?2 AND (?3 IS NULL OR node = ?3) \
                         ORDER BY minute, node",
                    )
                    .map_err(db)?;
                let rows = statement
                    .query_map(params![sql_time(from), sql_time(to), node], |r| {
                        Ok(NodeMinuteRecord {
                            node: r.get(0)?,
                            minute: net_id(r.get(1)?),
                            rollup: r.get(2)?,
                        })
                    })
                    .map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)
            })
        })
    }
}

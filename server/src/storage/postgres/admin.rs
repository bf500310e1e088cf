//! PostgreSQL implementation of [`AdminStorage`] (SPEC.md §18.7), the same
//! rules as the SQLite one.

use super::{PostgresStorage, col, count, net_id, sql_time};
use crate::storage::StorageResult;
use crate::storage::admin::{
    AdminRecord, AdminRole, AdminSession, AdminStorage, AuditEntry, IpRuleRecord, NodeMinuteRecord,
    RateLimitRecord,
};

#[async_trait::async_trait]
impl AdminStorage for PostgresStorage {
    async fn create_admin(
        &self,
        name: &str,
        role: AdminRole,
        password_hash: &str,
        totp_secret: &[u8],
        now_ms: u64,
    ) -> StorageResult<bool> {
        with_tx!(self, |tx| async {
            let n = tx
                .execute(
                    "INSERT INTO admins (name, role, password_hash, totp_secret, created_at_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                    &[
                        &name,
                        &role.as_str(),
                        &password_hash,
                        &totp_secret,
                        &sql_time(now_ms),
                    ],
                )
                .await?;
            Ok(n == 1)
        })
    }

    async fn admin_by_name(&self, name: &str) -> StorageResult<Option<AdminRecord>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT id, name, role, password_hash, totp_secret, active FROM admins WHERE name = $1",
                    &[&name],
                )
                .await?;
            let Some(r) = rows.first() else {
                return Ok(None);
            };
            Ok(Some(AdminRecord {
                id: col(r, 0)?,
                name: col(r, 1)?,
                role: AdminRole::stored(col::<&str>(r, 2)?),
                password_hash: col(r, 3)?,
                totp_secret: col(r, 4)?,
                active: col(r, 5)?,
            }))
        })
    }

    async fn activate_admin(&self, admin_id: i64) -> StorageResult<()> {
        with_tx!(self, |tx| async {
            tx.execute(
                "UPDATE admins SET active = TRUE WHERE id = $1",
                &[&admin_id],
            )
            .await?;
            Ok(())
        })
    }

    async fn remove_admin(&self, name: &str) -> StorageResult<bool> {
        with_tx!(self, |tx| async {
            tx.execute(
                "DELETE FROM admin_sessions WHERE admin_id IN (SELECT id FROM admins WHERE name = $1)",
                &[&name],
            )
            .await?;
            tx.execute(
                "DELETE FROM admin_layouts WHERE admin_id IN (SELECT id FROM admins WHERE name = $1)",
                &[&name],
            )
            .await?;
            let n = tx
                .execute("DELETE FROM admins WHERE name = $1", &[&name])
                .await?;
            Ok(n == 1)
        })
    }

    async fn consume_admin_totp_step(&self, admin_id: i64, step: i64) -> StorageResult<bool> {
        with_tx!(self, |tx| async {
            let n = tx
                .execute(
                    "UPDATE admins SET last_totp_step = $2 WHERE id = $1 AND last_totp_step < $2",
                    &[&admin_id, &step],
                )
                .await?;
            Ok(n == 1)
        })
    }

    async fn create_admin_session(
        &self,
        token_hash: &[u8; 32],
        admin_id: i64,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> StorageResult<()> {
        with_tx!(self, |tx| async {
            tx.execute(
                "DELETE FROM admin_sessions WHERE expires_at_ms <= $1",
                &[&sql_time(now_ms)],
            )
            .await?;
            tx.execute(
                "INSERT INTO admin_sessions (token_hash, admin_id, expires_at_ms) VALUES ($1, $2, $3)",
                &[&token_hash.as_slice(), &admin_id, &sql_time(expires_at_ms)],
            )
            .await?;
            Ok(())
        })
    }

    async fn admin_session(
        &self,
        token_hash: &[u8; 32],
        now_ms: u64,
    ) -> StorageResult<Option<AdminSession>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT a.id, a.name, a.role, s.expires_at_ms FROM admin_sessions s \
                     JOIN admins a ON a.id = s.admin_id \
                     WHERE s.token_hash = $1 AND s.expires_at_ms > $2 AND a.active",
                    &[&token_hash.as_slice(), &sql_time(now_ms)],
                )
                .await?;
            let Some(r) = rows.first() else {
                return Ok(None);
            };
            Ok(Some(AdminSession {
                admin_id: col(r, 0)?,
                name: col(r, 1)?,
                role: AdminRole::stored(col::<&str>(r, 2)?),
                expires_at_ms: net_id(col(r, 3)?),
            }))
        })
    }

    async fn delete_admin_session(&self, token_hash: &[u8; 32]) -> StorageResult<()> {
        with_tx!(self, |tx| async {
            tx.execute(
                "DELETE FROM admin_sessions WHERE token_hash = $1",
                &[&token_hash.as_slice()],
            )
            .await?;
            Ok(())
        })
    }

    async fn append_audit(&self, entry: &AuditEntry) -> StorageResult<()> {
        with_tx!(self, |tx| async {
            tx.execute(
                "INSERT INTO admin_audit (at_ms, admin, action, detail) VALUES ($1, $2, $3, $4)",
                &[
                    &sql_time(entry.at_ms),
                    &entry.admin,
                    &entry.action,
                    &entry.detail,
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn audit_log(&self, limit: u32) -> StorageResult<Vec<AuditEntry>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT at_ms, admin, action, detail FROM admin_audit ORDER BY id DESC LIMIT $1",
                    &[&i64::from(limit)],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                out.push(AuditEntry {
                    at_ms: net_id(col(r, 0)?),
                    admin: col(r, 1)?,
                    action: col(r, 2)?,
                    detail: col(r, 3)?,
                });
            }
            Ok(out)
        })
    }

    async fn admin_layout(&self, admin_id: i64) -> StorageResult<Option<String>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT layout FROM admin_layouts WHERE admin_id = $1",
                    &[&admin_id],
                )
                .await?;
            rows.first().map(|r| col(r, 0)).transpose()
        })
    }

    async fn set_admin_layout(
        &self,
        admin_id: i64,
        layout: &str,
        now_ms: u64,
    ) -> StorageResult<()> {
        with_tx!(self, |tx| async {
            tx.execute(
                "INSERT INTO admin_layouts (admin_id, layout, updated_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (admin_id) DO UPDATE SET layout = EXCLUDED.layout, updated_at_ms = EXCLUDED.updated_at_ms",
                &[&admin_id, &layout, &sql_time(now_ms)],
            )
            .await?;
            Ok(())
        })
    }

    async fn ip_rules(&self) -> StorageResult<Vec<IpRuleRecord>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT kind, cidr, created_by, created_at_ms FROM admin_ip_rules \
                     ORDER BY created_at_ms, cidr",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(IpRuleRecord {
                        kind: col(r, 0)?,
                        cidr: col(r, 1)?,
                        created_by: col(r, 2)?,
                        created_at_ms: net_id(col(r, 3)?),
                    })
                })
                .collect()
        })
    }

    async fn add_ip_rule(&self, rule: &IpRuleRecord) -> StorageResult<bool> {
        with_tx!(self, |tx| async {
            let n = tx
                .execute(
                    "INSERT INTO admin_ip_rules (cidr, kind, created_by, created_at_ms) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (cidr) DO NOTHING",
                    &[
                        &rule.cidr,
                        &rule.kind,
                        &rule.created_by,
                        &sql_time(rule.created_at_ms),
                    ],
                )
                .await?;
            Ok(n == 1)
        })
    }

    async fn remove_ip_rule(&self, cidr: &str) -> StorageResult<Option<String>> {
        with_tx!(self, |tx| async {
            let row = tx
                .query_opt(
                    "DELETE FROM admin_ip_rules WHERE cidr = $1 RETURNING kind",
                    &[&cidr],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    async fn rate_limits(&self) -> StorageResult<Vec<RateLimitRecord>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT name, per_minute, updated_by, updated_at_ms FROM admin_rate_limits \
                     ORDER BY name",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(RateLimitRecord {
                        name: col(r, 0)?,
                        per_minute: count(col(r, 1)?),
                        updated_by: col(r, 2)?,
                        updated_at_ms: net_id(col(r, 3)?),
                    })
                })
                .collect()
        })
    }

    async fn set_rate_limit(&self, record: &RateLimitRecord) -> StorageResult<()> {
        with_tx!(self, |tx| async {
            tx.execute(
                "INSERT INTO admin_rate_limits (name, per_minute, updated_by, updated_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
                 per_minute = EXCLUDED.per_minute, updated_by = EXCLUDED.updated_by, \
                 updated_at_ms = EXCLUDED.updated_at_ms",
                &[
                    &record.name,
                    &i64::from(record.per_minute),
                    &record.updated_by,
                    &sql_time(record.updated_at_ms),
                ],
            )
            .await?;
            Ok(())
        })
    }

    async fn remove_rate_limit(&self, name: &str) -> StorageResult<bool> {
        with_tx!(self, |tx| async {
            let n = tx
                .execute("DELETE FROM admin_rate_limits WHERE name = $1", &[&name])
                .await?;
            Ok(n == 1)
        })
    }

    async fn put_node_minute(
        &self,
        record: &NodeMinuteRecord,
        keep_from: u64,
    ) -> StorageResult<()> {
        with_tx!(self, |tx| async {
            tx.execute(
                "INSERT INTO node_minutes (node, minute, rollup) VALUES ($1, $2, $3) \
                 ON CONFLICT (node, minute) DO UPDATE SET rollup = EXCLUDED.rollup",
                &[&record.node, &sql_time(record.minute), &record.rollup],
            )
            .await?;
            tx.execute(
                "DELETE FROM node_minutes WHERE minute < $1",
                &[&sql_time(keep_from)],
            )
            .await?;
            Ok(())
        })
    }

    async fn node_minutes(
        &self,
        node: Option<&str>,
        from: u64,
        to: u64,
    ) -> StorageResult<Vec<NodeMinuteRecord>> {
        with_tx!(self, |tx| async {
            let rows = tx
                .query(
                    "SELECT node, minute, rollup FROM node_minutes \
                     WHERE minute >= $1 AND minute < $2 AND ($3::TEXT IS NULL OR node = $3) \
                     ORDER BY minute, node",
                    &[&sql_time(from), &sql_time(to), &node],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(NodeMinuteRecord {
                        node: col(r, 0)?,
                        minute: net_id(col(r, 1)?),
                        rollup: col(r, 2)?,
                    })
                })
                .collect()
        })
    }
}

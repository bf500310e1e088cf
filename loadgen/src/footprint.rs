//! What a cluster run leaves in its engines, for sizing PostgreSQL and
//! Redis (docs/OPERATIONS.md "Sizing"): the size of the run's PostgreSQL
//! schema (tables, indexes and TOAST) and what the run's Redis keys take.
//!
//! Not owned here: the runs (cluster.rs).

use std::process::{Command, Stdio};

use crate::error::{LoadError, LoadResult};

/// Runs `sql` on `url` with `psql` (installed with PostgreSQL); its
/// unaligned, tuples-only output.
///
/// # Errors
/// [`LoadError::Process`] when psql cannot start or the statement fails.
pub fn psql(url: &str, sql: &str) -> LoadResult<String> {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LoadError::Process {
            name: "psql".to_owned(),
            reason: format!("cannot start (is the PostgreSQL client installed?): {e}"),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(LoadError::Process {
            name: "psql".to_owned(),
            reason: format!(
                "`{sql}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Bytes of every table of `schema` with its indexes and TOAST.
///
/// # Errors
/// As [`psql`], or [`LoadError::Process`] when the answer is not a number.
pub fn schema_bytes(url: &str, schema: &str) -> LoadResult<u64> {
    let answer = psql(
        url,
        &format!(
            "SELECT COALESCE(sum(pg_total_relation_size(format('%I.%I', schemaname, tablename)::regclass)), 0) \
             FROM pg_tables WHERE schemaname = '{schema}'"
        ),
    )?;
    answer.parse().map_err(|_| LoadError::Process {
        name: "psql".to_owned(),
        reason: format!("schema size is not a number: {answer:?}"),
    })
}

/// `redis-cli -u url ARGS…`: its standard output, or `None`.
fn redis_cli(url: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .arg("-u")
        .arg(url)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Keys of a node namespace and the bytes Redis says they take (`MEMORY
/// USAGE` of every key whose name contains `namespace`, found with
/// `SCAN`), or `None` when they cannot be read (a Redis Cluster URL, no
/// redis-cli).
pub fn redis_namespace_bytes(url: &str, namespace: &str) -> Option<(u64, u64)> {
    if !url.starts_with("redis://") {
        return None;
    }
    let pattern = format!("*{namespace}*");
    let keys = redis_cli(url, &["--scan", "--pattern", &pattern])?;
    let mut count = 0;
    let mut bytes = 0;
    for key in keys.lines().filter(|k| !k.is_empty()) {
        let used = redis_cli(url, &["MEMORY", "USAGE", key])?;
        bytes += used.trim().parse::<u64>().unwrap_or(0);
        count += 1;
    }
    Some((count, bytes))
}

/// What one run left in the engines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Footprint {
    /// Devices provisioned.
    pub devices: usize,
    /// PostgreSQL schema bytes after provisioning (accounts, devices and
    /// an SDK-sized prekey upload each), before any message.
    pub schema_provisioned: Option<u64>,
    /// PostgreSQL schema bytes after the run (queues drained).
    pub schema_after: Option<u64>,
    /// Keys of the run's Redis namespace and their bytes while every
    /// device was connected (presence sets, rate-limit state).
    pub redis_connected: Option<(u64, u64)>,
}

impl Footprint {
    /// "PostgreSQL 4.1 MB after provisioning (130 KB/device), 5.0 MB after
    /// the run; Redis 2 keys, 1.2 KB with 32 devices connected (38
    /// B/device)".
    pub fn describe(&self) -> String {
        #[allow(clippy::cast_precision_loss)]
        let per_device = |bytes: f64| bytes / self.devices.max(1) as f64 / 1024.0;
        let mut parts = Vec::new();
        if let (Some(p), Some(a)) = (self.schema_provisioned, self.schema_after) {
            #[allow(clippy::cast_precision_loss)]
            let (p, a) = (p as f64, a as f64);
            parts.push(format!(
                "PostgreSQL {:.1} MB after provisioning ({:.0} KB/device), {:.1} MB after the run",
                p / 1e6,
                per_device(p),
                a / 1e6
            ));
        }
        if let Some((keys, bytes)) = self.redis_connected {
            #[allow(clippy::cast_precision_loss)]
            let b = bytes as f64;
            parts.push(format!(
                "Redis {keys} keys, {:.1} KB with {} devices connected ({:.0} B/device)",
                b / 1024.0,
                self.devices,
                b / self.devices.max(1) as f64
            ));
        }
        parts.join("; ")
    }
}

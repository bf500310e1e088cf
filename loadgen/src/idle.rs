//! Workload (c): many idle, logged-in connections, and what they cost the
//! server in resident memory (read from `/proc/<pid>/status` when the
//! server runs as a child process).
//!
//! Not owned here: starting the server (procs.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{LoadError, LoadResult};
use crate::procs::rss_bytes;
use crate::provision::DeviceCredentials;
use crate::wire::{Endpoints, RequestChannel};

/// What the idle workload measured.
#[derive(Clone, Debug, Default)]
pub struct IdleReport {
    /// Connections held open and logged in at the same time.
    pub connections: usize,
    /// Server RSS before opening them (bytes), when the pid is known.
    pub rss_before: Option<u64>,
    /// Server RSS with all of them open.
    pub rss_after: Option<u64>,
    /// Time to open and log in all of them.
    pub setup: Duration,
}

impl IdleReport {
    /// Server memory per connection in bytes.
    pub fn per_connection(&self) -> Option<u64> {
        let (before, after) = (self.rss_before?, self.rss_after?);
        let n = u64::try_from(self.connections).ok()?.max(1);
        Some(after.saturating_sub(before) / n)
    }
}

/// Opens `connections` logged-in connections (device `i % devices.len()`),
/// `concurrency` at a time, holds them for `settle`, samples the server's
/// RSS (if `server_pid`), then closes them.
///
/// # Errors
/// The first connection or login failure.
pub async fn run(
    endpoints: &Arc<Endpoints>,
    devices: &[DeviceCredentials],
    connections: usize,
    concurrency: usize,
    server_pid: Option<u32>,
    settle: Duration,
) -> LoadResult<IdleReport> {
    if devices.is_empty() {
        return Err(LoadError::Invalid(
            "idle connections need at least one device",
        ));
    }
    let rss_before = server_pid.map(rss_bytes).transpose()?;
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connections {
        let device = devices
            .get(i % devices.len())
            .cloned()
            .ok_or(LoadError::Invalid("no device"))?;
        let endpoints = Arc::clone(endpoints);
        let semaphore = Arc::clone(&semaphore);
        tasks.spawn(async move {
            let _permit = semaphore
                .acquire_owned()
                .await
                .map_err(|_| LoadError::Invalid("semaphore closed"))?;
            let mut channel = RequestChannel::open(&endpoints).await?;
            channel.login(device.device_id, &device.key).await?;
            Ok::<_, LoadError>(channel)
        });
    }
    let mut channels = Vec::with_capacity(connections);
    while let Some(joined) = tasks.join_next().await {
        channels.push(joined.map_err(|e| LoadError::Connection(e.to_string()))??);
    }
    let setup = started.elapsed();
    tokio::time::sleep(settle).await;
    let rss_after = server_pid.map(rss_bytes).transpose()?;
    for channel in &channels {
        channel.connection.close(0u32.into(), b"done");
    }
    Ok(IdleReport {
        connections,
        rss_before,
        rss_after,
        setup,
    })
}

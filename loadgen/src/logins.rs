//! Workload (d): connection handshakes + logins per second. Each attempt
//! is a fresh QUIC connection (TLS 1.3 handshake), Hello, and a challenge
//! login signed with the device key (SPEC.md §12.5); the connection is then
//! closed. Both ends run on this machine, so the client's handshake CPU is
//! part of the figure.
//!
//! Not owned here: provisioning the devices (provision.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{LoadError, LoadResult};
use crate::provision::DeviceCredentials;
use crate::stats::{Latencies, per_second};
use crate::wire::{Endpoints, RequestChannel};

/// What the login workload measured.
#[derive(Clone, Debug, Default)]
pub struct LoginsReport {
    /// Successful handshake + login sequences.
    pub logins: u64,
    /// Failed ones.
    pub failures: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Connect → login answered, per login.
    pub latency: Latencies,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl LoginsReport {
    /// Logins per second.
    pub fn rate(&self) -> f64 {
        per_second(self.logins, self.elapsed)
    }
}

/// Runs `total` handshakes + logins, `concurrency` at a time, cycling over `devices`.
///
/// # Errors
/// [`LoadError::Invalid`] without devices.
pub async fn run(
    endpoints: &Arc<Endpoints>,
    devices: &[DeviceCredentials],
    total: u64,
    concurrency: usize,
) -> LoadResult<LoginsReport> {
    if devices.is_empty() {
        return Err(LoadError::Invalid("logins need at least one device"));
    }
    let devices: Arc<Vec<DeviceCredentials>> = Arc::new(devices.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let endpoints = Arc::clone(endpoints);
        let devices = Arc::clone(&devices);
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            let mut report = LoginsReport::default();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let index = usize::try_from(n).unwrap_or(0) % devices.len();
                let Some(device) = devices.get(index) else {
                    break;
                };
                let t0 = Instant::now();
                let attempt = async {
                    let mut channel = RequestChannel::open(&endpoints).await?;
                    channel.login(device.device_id, &device.key).await?;
                    Ok::<_, LoadError>(channel)
                }
                .await;
                match attempt {
                    Ok(channel) => {
                        report
                            .latency
                            .record_us(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                        report.logins += 1;
                        channel.connection.close(0u32.into(), b"done");
                    }
                    Err(e) => {
                        report.failures += 1;
                        report.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            report
        });
    }
    let mut report = LoginsReport::default();
    while let Some(joined) = tasks.join_next().await {
        let r = joined.map_err(|e| LoadError::Connection(e.to_string()))?;
        report.logins += r.logins;
        report.failures += r.failures;
        report.latency.merge(r.latency);
        if report.first_error.is_none() {
            report.first_error = r.first_error;
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

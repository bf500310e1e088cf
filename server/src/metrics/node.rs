//! The node's own health on the metrics port (SPEC.md §18.3, §18.6): build
//! information, whether the bus to the other nodes is linked (and so
//! whether `/readyz` answers 200), webhook notifications given up, and the
//! standard Prometheus process metrics read from `/proc/self` (Linux; on
//! other systems those series are left out rather than reported as zero).
//!
//! CPU time in `/proc/self/stat` is in clock ticks of `USER_HZ`, which the
//! Linux user-space ABI fixes at 100 per second.
//!
//! Not owned here: the counters themselves (`Metrics`), the HTTP responder
//! (the parent module).

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::state::ServerState;

/// Ticks per second of the CPU times in `/proc/self/stat` (`USER_HZ`).
const USER_HZ: f64 = 100.0;

/// Whether this node may be sent traffic: its bus is linked (SPEC.md
/// §18.6). `Err` carries the reason for the 503 body.
pub(crate) fn readiness(state: &ServerState) -> Result<(), &'static str> {
    if state.bus.linked() {
        Ok(())
    } else {
        Err("the Redis bus is not linked")
    }
}

/// This process's resident bytes and CPU seconds, where `/proc/self`
/// tells them.
pub(crate) fn usage() -> Option<(u64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let process = parse(&stat, &status)?;
    Some((process.resident_bytes, process.cpu_seconds))
}

/// What `/proc/self` says about this process.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Process {
    resident_bytes: u64,
    cpu_seconds: f64,
    open_fds: u64,
    max_fds: Option<u64>,
    start_time_seconds: Option<f64>,
}

impl Process {
    /// `None` where `/proc/self` is not there (not Linux).
    /// Reads it; `None` where `/proc` is missing or unreadable.
    pub(crate) fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let mut process = parse(&stat, &status)?;
        process.open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|dir| dir.count() as u64)
            .unwrap_or(0);
        process.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| max_open_files(&limits));
        if let (Some(start), Some(boot)) = (
            process.start_time_seconds,
            std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|s| boot_time(&s)),
        ) {
            process.start_time_seconds = Some(boot as f64 + start);
        } else {
            process.start_time_seconds = None;
        }
        Some(process)
    }

    /// Encodes the `process_*` series of the Prometheus conventions.
    pub(crate) fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = |encoder: &mut DescriptorEncoder, name, help, value: f64| {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)
        };
        #[allow(clippy::cast_precision_loss)]
        gauge(
            encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            self.resident_bytes as f64,
        )?;
        ConstCounter::new(self.cpu_seconds).encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?)?;
        #[allow(clippy::cast_precision_loss)]
        gauge(
            encoder,
            "process_open_fds",
            "Open file descriptors.",
            self.open_fds as f64,
        )?;
        if let Some(max) = self.max_fds {
            #[allow(clippy::cast_precision_loss)]
            gauge(
                encoder,
                "process_max_fds",
                "Limit of open file descriptors.",
                max as f64,
            )?;
        }
        if let Some(start) = self.start_time_seconds {
            gauge(
                encoder,
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                start,
            )?;
        }
        Ok(())
    }
}

/// CPU time and resident size from `/proc/self/stat` and
/// `/proc/self/status`; the start time is left in seconds after boot.
fn parse(stat: &str, status: &str) -> Option<Process> {
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from after its closing parenthesis (field 3 = state).
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    let cpu_seconds = (field(14)? + field(15)?) / USER_HZ;
    let start_time_seconds = field(22).map(|ticks| ticks / USER_HZ);
    let resident_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(Process {
        resident_bytes: resident_kib.saturating_mul(1024),
        cpu_seconds,
        open_fds: 0,
        max_fds: None,
        start_time_seconds,
    })
}

/// The soft limit of "Max open files" in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `btime` of `/proc/stat`: the boot time, seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_field_by_field() {
        let stat = "4242 (micro bot) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 9 0 12345 0 0";
        let status = "Name:\tmicrobot\nVmRSS:\t   2048 kB\nThreads: 9\n";
        let p = parse(stat, status).unwrap();
        assert_eq!(p.resident_bytes, 2048 * 1024);
        assert!((p.cpu_seconds - 4.0).abs() < 1e-9);
        assert_eq!(p.start_time_seconds, Some(123.45));
        assert_eq!(parse("garbage", status), None);
        assert_eq!(parse(stat, "Name: x\n"), None);
        let limits = "Limit Soft Limit Hard Limit Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_is_measured() {
        if let Some(p) = Process::read() {
            assert!(p.resident_bytes > 0);
            assert!(p.open_fds > 0);
        }
    }
}

//! Where the CPU went during a measured interval, from `/proc` (Linux):
//! the server process, this load generator, and the whole machine's busy
//! share; the same figures per unit of work (message, delivery, login);
//! and, when the machine was saturated, what cap that CPU cost puts on
//! the rate this machine can reach (issue 17: a target that cannot be met
//! here is explained with a measurement, not a guess).
//!
//! The per-unit rule and the machine counters are written here once;
//! `suite` and `cluster` both use them.
//!
//! Not owned here: reading one process's CPU time (procs.rs), judging the
//! targets (targets.rs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::procs::cpu_time;

/// A run counts as CPU-bound when the machine was at least this busy
/// (share of all CPUs) over it.
pub const SATURATED_BUSY: f64 = 0.90;

/// A saturated run is CPU-bound on the server and load generator only
/// when its rate reaches at least this share of what their CPU cost
/// allows; below it, other processes took the machine.
pub const OWN_SHARE: f64 = 0.80;

/// How often a running [`CpuMeter`] reads the machine's counters, so the
/// busy share can be taken over the part of the interval the workload was
/// active (a run's last moments wait for its final acknowledgements and
/// would dilute it).
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Microseconds of `cpu` per unit of work (`units` of zero count as one,
/// so nothing divides by zero).
pub fn per_unit_us(cpu: Duration, units: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = units.max(1) as f64;
    cpu.as_secs_f64() * 1e6 / n
}

/// The rate (units/s) `cpus` CPUs can sustain when each unit costs
/// `us_per_unit` microseconds of CPU in all; `None` for a zero or
/// negative cost, or no CPUs.
pub fn cpu_cap(cpus: usize, us_per_unit: f64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    (us_per_unit > 0.0 && cpus > 0).then(|| cpus as f64 * 1e6 / us_per_unit)
}

/// CPUs this process may use (`std::thread::available_parallelism`; 1 if unknown).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Jiffies of all CPUs together, from the `cpu ` line of `/proc/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineJiffies {
    /// user + nice + system + irq + softirq + steal (guest is in user).
    pub busy: u64,
    /// Idle waiting for I/O.
    pub iowait: u64,
    /// busy + idle + iowait.
    pub total: u64,
}

impl MachineJiffies {
    /// Parses the aggregate `cpu ` line of a `/proc/stat` text.
    pub fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal.
        let get = |i: usize| v.get(i).copied().unwrap_or(0);
        let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
        Some(Self {
            busy,
            iowait: get(4),
            total: busy + get(3) + get(4),
        })
    }

    /// The machine's counters now; `None` when `/proc/stat` is unreadable.
    pub fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// `(busy, iowait)` shares of all CPUs (0–1) between `self` and
    /// `later`; zeros when no time passed.
    pub fn shares_until(&self, later: &Self) -> (f64, f64) {
        if later.total <= self.total {
            return (0.0, 0.0);
        }
        #[allow(clippy::cast_precision_loss)]
        let total = (later.total - self.total) as f64;
        #[allow(clippy::cast_precision_loss)]
        (
            later.busy.saturating_sub(self.busy) as f64 / total,
            later.iowait.saturating_sub(self.iowait) as f64 / total,
        )
    }
}

/// CPU used over one measured interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuUse {
    /// The server process (`None`: its pid was not known).
    pub server: Option<Duration>,
    /// This load generator.
    pub loadgen: Duration,
    /// Share of all CPUs busy over the interval (0–1), whoever used them.
    pub machine_busy: f64,
    /// Wall time of the interval.
    pub wall: Duration,
}

impl CpuUse {
    /// The same figures per unit of work (`units` messages, deliveries or logins).
    pub fn per_unit(&self, units: u64) -> CpuCost {
        CpuCost {
            server_us: self.server.map(|s| per_unit_us(s, units)),
            loadgen_us: per_unit_us(self.loadgen, units),
            machine_busy: self.machine_busy,
        }
    }
}

/// The machine's counters read every [`SAMPLE_EVERY`] by a thread of its
/// own, each with the time since the meter started.
struct Sampler {
    samples: Arc<Mutex<Vec<(Duration, MachineJiffies)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    fn start(started: Instant) -> Option<Self> {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("cpu-sampler".to_owned())
            .spawn({
                let (samples, stop) = (Arc::clone(&samples), Arc::clone(&stop));
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(now) = MachineJiffies::now() {
                            samples
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push((started.elapsed(), now));
                        }
                        std::thread::sleep(SAMPLE_EVERY);
                    }
                }
            })
            .ok()?;
        Some(Self {
            samples,
            stop,
            thread: Some(thread),
        })
    }

    fn busy_within(&self, active: Duration) -> Option<f64> {
        busy_within(
            &self.samples.lock().unwrap_or_else(PoisonError::into_inner),
            active,
        )
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The machine's busy share from the first sample to the last one taken
/// within `active` of the start; `None` when fewer than two samples fall
/// in it (too short to say).
fn busy_within(samples: &[(Duration, MachineJiffies)], active: Duration) -> Option<f64> {
    let (_, first) = samples.first()?;
    let (_, last) = samples.iter().rev().find(|(at, _)| *at <= active)?;
    (last.total > first.total).then(|| first.shares_until(last).0)
}

/// CPU counters at the start of an interval; [`CpuMeter::finish`] gives
/// what was used since.
pub struct CpuMeter {
    server_pid: Option<u32>,
    server: Option<Duration>,
    loadgen: Duration,
    machine: Option<MachineJiffies>,
    started: Instant,
    sampler: Option<Sampler>,
}

impl CpuMeter {
    /// Starts counting for the server `server_pid` (if known), this
    /// process and the machine.
    pub fn start(server_pid: Option<u32>) -> Self {
        let started = Instant::now();
        Self {
            server_pid,
            server: server_pid.and_then(cpu_time),
            loadgen: cpu_time(std::process::id()).unwrap_or_default(),
            machine: MachineJiffies::now(),
            started,
            sampler: Sampler::start(started),
        }
    }

    /// CPU used since [`CpuMeter::start`].
    pub fn finish(&self) -> CpuUse {
        let server = match (self.server, self.server_pid.and_then(cpu_time)) {
            (Some(start), Some(end)) => Some(end.saturating_sub(start)),
            _ => None,
        };
        let machine_busy = match (self.machine, MachineJiffies::now()) {
            (Some(start), Some(end)) => start.shares_until(&end).0,
            _ => 0.0,
        };
        CpuUse {
            server,
            loadgen: cpu_time(std::process::id())
                .unwrap_or_default()
                .saturating_sub(self.loadgen),
            machine_busy,
            wall: self.started.elapsed(),
        }
    }

    /// As [`CpuMeter::finish`] (every process's CPU since the start), with
    /// the machine's busy share taken over the first `active` of the
    /// interval only: the time the workload ran (its report's `elapsed`),
    /// not the wait for its last acknowledgements after it.
    pub fn finish_active(&self, active: Duration) -> CpuUse {
        let mut used = self.finish();
        if let Some(busy) = self.sampler.as_ref().and_then(|s| s.busy_within(active)) {
            used.machine_busy = busy;
        }
        used
    }
}

/// CPU per unit of work over one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuCost {
    /// Server µs per unit (`None`: the server's pid was not known).
    pub server_us: Option<f64>,
    /// Load generator µs per unit.
    pub loadgen_us: f64,
    /// Share of all CPUs busy over the interval (0–1).
    pub machine_busy: f64,
}

impl CpuCost {
    /// "CPU µs/login: server 1010, loadgen 700; machine 98% busy" for `unit` "login".
    pub fn describe(&self, unit: &str) -> String {
        self.describe_as(unit, "server")
    }

    /// [`CpuCost::describe`] with the measured process called `process`
    /// (the relay floor is measured where a server would be).
    pub fn describe_as(&self, unit: &str, process: &str) -> String {
        let server = self
            .server_us
            .map_or_else(|| "unknown".to_owned(), |us| format!("{us:.0}"));
        format!(
            "CPU µs/{unit}: {process} {server}, loadgen {:.0}; machine {:.0}% busy",
            self.loadgen_us,
            self.machine_busy * 100.0
        )
    }

    /// Whether the machine was saturated ([`SATURATED_BUSY`] or more).
    pub fn saturated(&self) -> bool {
        self.machine_busy >= SATURATED_BUSY
    }

    /// The rate (units/s) `cpus` CPUs can sustain at this server +
    /// load generator cost; `None` without the server's figure.
    pub fn cap(&self, cpus: usize) -> Option<f64> {
        cpu_cap(cpus, self.server_us? + self.loadgen_us)
    }

    /// When the machine was saturated: "CPU-bound: server X µs + loadgen
    /// Y µs per login on 2 CPUs caps this machine at Z logins/s" (`unit`
    /// "login", `rate_unit` "logins/s"). When the `measured` rate is below
    /// [`OWN_SHARE`] of that cap, the two processes did not fill the
    /// machine (others did), and the explanation says so instead of
    /// naming a cap this run did not reach. `None` when the machine was
    /// not saturated or without the server's figure.
    pub fn explain(
        &self,
        cpus: usize,
        unit: &str,
        rate_unit: &str,
        measured: Option<f64>,
    ) -> Option<String> {
        if !self.saturated() {
            return None;
        }
        let server = self.server_us?;
        let cap = self.cap(cpus)?;
        if let Some(rate) = measured.filter(|rate| *rate < OWN_SHARE * cap) {
            return Some(format!(
                "machine shared: server + loadgen filled {:.0} % of the CPUs at {rate:.0} \
                 {rate_unit}, other processes the rest; not a clean measurement",
                rate / cap * 100.0
            ));
        }
        let plural = if cpus == 1 { "CPU" } else { "CPUs" };
        Some(format!(
            "CPU-bound: server {server:.0} µs + loadgen {:.0} µs per {unit} on {cpus} {plural} \
             caps this machine at {cap:.0} {rate_unit}",
            self.loadgen_us
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_share_is_taken_over_the_active_part_only() {
        let at = |ms: u64, busy: u64, total: u64| {
            (
                Duration::from_millis(ms),
                MachineJiffies {
                    busy,
                    iowait: 0,
                    total,
                },
            )
        };
        // Fully busy for 400 ms, then idle for 100 ms.
        let samples = [
            at(0, 0, 0),
            at(200, 40, 40),
            at(400, 80, 80),
            at(500, 80, 100),
        ];
        assert_eq!(busy_within(&samples, Duration::from_millis(400)), Some(1.0));
        assert_eq!(busy_within(&samples, Duration::from_millis(450)), Some(1.0));
        assert_eq!(busy_within(&samples, Duration::from_millis(500)), Some(0.8));
        // Nothing in the active part after the first sample: too short.
        assert_eq!(busy_within(&samples, Duration::from_millis(100)), None);
        assert_eq!(busy_within(&[], Duration::from_millis(100)), None);
    }

    #[test]
    fn per_unit_divides_by_the_units_and_never_by_zero() {
        assert!((per_unit_us(Duration::from_millis(1010), 1000) - 1010.0).abs() < 1e-9);
        assert!((per_unit_us(Duration::from_millis(3), 0) - 3000.0).abs() < 1e-9);
        let use_ = CpuUse {
            server: Some(Duration::from_millis(2020)),
            loadgen: Duration::from_millis(1400),
            machine_busy: 0.98,
            wall: Duration::from_secs(1),
        };
        let cost = use_.per_unit(2000);
        assert_eq!(cost.server_us, Some(1010.0));
        assert!((cost.loadgen_us - 700.0).abs() < 1e-9);
        assert_eq!(CpuUse::default().per_unit(5).server_us, None);
    }

    #[test]
    fn the_cap_is_cpus_over_the_cost_of_one_unit() {
        // 2 CPUs, 1000 + 700 µs per login: 2e6 / 1700 ≈ 1176.5 logins/s.
        let cap = cpu_cap(2, 1700.0).unwrap();
        assert!((cap - 1_176.470_588).abs() < 1e-3, "{cap}");
        assert_eq!(cpu_cap(2, 0.0), None);
        assert_eq!(cpu_cap(0, 1700.0), None);
        let cost = CpuCost {
            server_us: Some(1000.0),
            loadgen_us: 700.0,
            machine_busy: 0.5,
        };
        assert_eq!(cost.cap(4), cpu_cap(4, 1700.0));
        assert_eq!(
            CpuCost {
                server_us: None,
                ..cost
            }
            .cap(2),
            None
        );
    }

    #[test]
    fn the_description_and_the_explanation() {
        let cost = CpuCost {
            server_us: Some(1010.4),
            loadgen_us: 699.6,
            machine_busy: 0.981,
        };
        assert_eq!(
            cost.describe("login"),
            "CPU µs/login: server 1010, loadgen 700; machine 98% busy"
        );
        assert_eq!(
            cost.explain(2, "login", "logins/s", Some(1100.0))
                .as_deref(),
            Some(
                "CPU-bound: server 1010 µs + loadgen 700 µs per login on 2 CPUs \
                 caps this machine at 1170 logins/s"
            )
        );
        // Far below the cap, the machine went to other processes.
        assert_eq!(
            cost.explain(2, "login", "logins/s", Some(585.0)).as_deref(),
            Some(
                "machine shared: server + loadgen filled 50 % of the CPUs at 585 \
                 logins/s, other processes the rest; not a clean measurement"
            )
        );
        // Exactly at the threshold counts; just below does not.
        let at = CpuCost {
            machine_busy: SATURATED_BUSY,
            ..cost
        };
        assert!(at.explain(2, "msg", "msg/s", None).is_some());
        let below = CpuCost {
            machine_busy: 0.899,
            ..cost
        };
        assert_eq!(below.explain(2, "msg", "msg/s", None), None);
        // Without the server's figure there is nothing to explain with.
        let unknown = CpuCost {
            server_us: None,
            ..cost
        };
        assert_eq!(unknown.explain(2, "msg", "msg/s", None), None);
        assert_eq!(
            unknown.describe("msg"),
            "CPU µs/msg: server unknown, loadgen 700; machine 98% busy"
        );
    }

    #[test]
    fn machine_shares_from_proc_stat() {
        let a = MachineJiffies::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n").unwrap();
        assert_eq!(
            a,
            MachineJiffies {
                busy: 150,
                iowait: 50,
                total: 1000
            }
        );
        let b = MachineJiffies::parse("cpu  190 0 50 805 55 0 0 0 0 0\n").unwrap();
        let (busy, iowait) = a.shares_until(&b);
        assert!((busy - 0.9).abs() < 1e-9, "{busy}");
        assert!((iowait - 0.05).abs() < 1e-9, "{iowait}");
        assert_eq!(b.shares_until(&a), (0.0, 0.0));
        assert_eq!(MachineJiffies::parse("intr 1 2\n"), None);
    }
}

//! Latency samples, percentiles and the result table.
//!
//! Percentiles are nearest-rank over every sample (no histogram buckets):
//! a run keeps at most a few million `u32` microsecond samples.

use std::fmt::Write as _;
use std::time::Duration;

/// End-to-end latency samples in microseconds.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    samples: Vec<u32>,
}

impl Latencies {
    /// No samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one latency in microseconds (saturating at `u32::MAX`, 71 minutes).
    pub fn record_us(&mut self, us: u64) {
        self.samples.push(u32::try_from(us).unwrap_or(u32::MAX));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// p50/p90/p99/max; `None` without samples.
    pub fn summary(&mut self) -> Option<Summary> {
        if self.samples.is_empty() {
            return None;
        }
        self.samples.sort_unstable();
        let at = |q: f64| -> Duration {
            let n = self.samples.len();
            // Nearest rank: ceil(q * n), 1-based.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            Duration::from_micros(u64::from(self.samples.get(rank - 1).copied().unwrap_or(0)))
        };
        Some(Summary {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// Latency percentiles of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// Events per second over `elapsed`.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// One line of the result table.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// The workload and its parameters.
    pub workload: String,
    /// What was measured against (server, relay floor, mosquitto).
    pub target: String,
    /// The headline figure with its unit.
    pub value: String,
    /// Latency, when the workload measures it.
    pub latency: Option<Summary>,
    /// Ratio, target and verdict, or anything else worth a word.
    pub note: String,
}

/// Renders rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | target | result | p50 ms | p90 ms | p99 ms | max ms | note |\n|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let (p50, p90, p99, max) = row.latency.map_or_else(
            || ("".into(), "".into(), "".into(), "".into()),
            |s| (ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max)),
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {p50} | {p90} | {p99} | {max} | {} |",
            row.workload, row.target, row.value, row.note
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::new();
        for us in 1..=100 {
            l.record_us(us * 1000);
        }
        let s = l.summary().unwrap();
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p90, Duration::from_millis(90));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert!(Latencies::new().summary().is_none());
    }
}

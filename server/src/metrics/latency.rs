//! Delivery latency (SPEC.md §18.3, §18.7): how long an envelope waited on
//! the server, from its acceptance (`server_timestamp_ms`, taken when the
//! send arrives) to the moment a node hands it to one of the recipient
//! device's connections (a push, or a fetch page).
//!
//! [`LatencySketch`] is a bounded log-scale histogram: bucket 0 holds
//! waits under 1 ms, bucket `i` ≥ 1 those in `[2^((i-1)/4), 2^(i/4))` ms,
//! up to [`BUCKETS`] buckets (the last one takes everything longer, about
//! 49 days). A quantile is the geometric middle of its bucket, so it is
//! within about 9 % of the true value. The counts are kept sparse (only the
//! buckets that were hit, sorted), so a sketch is at most [`BUCKETS`]
//! entries however many waits it holds, and merging two is exact. Sans-I/O.
//!
//! Not owned here: where waits are measured (queues.rs), where sketches
//! are kept per second and per minute (admin/rollups.rs).

/// Buckets of a sketch (the last one is open-ended).
pub const BUCKETS: usize = 129;

/// Sub-buckets per doubling.
const PER_DOUBLING: f64 = 4.0;

/// The bucket a wait of `ms` milliseconds falls in.
pub fn bucket_of(ms: u64) -> usize {
    if ms == 0 {
        return 0;
    }
    #[allow(clippy::cast_precision_loss)]
    let log = (ms as f64).log2() * PER_DOUBLING;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = log.floor() as usize + 1;
    i.min(BUCKETS - 1)
}

/// The milliseconds a bucket stands for: 0.5 for bucket 0, else the
/// geometric middle of its bounds.
pub fn bucket_value(i: usize) -> f64 {
    if i == 0 {
        return 0.5;
    }
    #[allow(clippy::cast_precision_loss)]
    let low = (i as f64 - 1.0) / PER_DOUBLING;
    (low + 0.5 / PER_DOUBLING).exp2()
}

/// A bounded histogram of waits (see the module documentation). It is
/// stored (admin/minutes.rs) as its `[bucket, count]` pairs; reading one
/// back checks them ([`SketchError`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<(u8, u32)>", into = "Vec<(u8, u32)>")]
pub struct LatencySketch {
    /// (bucket, count), sorted by bucket, no zero count.
    counts: Vec<(u8, u32)>,
}

/// Why stored `[bucket, count]` pairs are not a sketch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    /// A bucket number is [`BUCKETS`] or more.
    #[error("latency bucket out of range")]
    BucketOutOfRange,
    /// The buckets are not strictly ascending, or a count is zero.
    #[error("latency buckets must ascend, each with a count above zero")]
    NotCanonical,
}

impl TryFrom<Vec<(u8, u32)>> for LatencySketch {
    type Error = SketchError;

    fn try_from(counts: Vec<(u8, u32)>) -> Result<Self, SketchError> {
        if counts.iter().any(|(b, _)| usize::from(*b) >= BUCKETS) {
            return Err(SketchError::BucketOutOfRange);
        }
        if counts.iter().any(|(_, c)| *c == 0) || counts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(SketchError::NotCanonical);
        }
        Ok(Self { counts })
    }
}

impl From<LatencySketch> for Vec<(u8, u32)> {
    fn from(sketch: LatencySketch) -> Self {
        sketch.counts
    }
}

impl LatencySketch {
    /// Records one wait of `ms` milliseconds.
    pub fn add(&mut self, ms: u64) {
        #[allow(clippy::cast_possible_truncation)]
        let b = bucket_of(ms) as u8;
        match self.counts.binary_search_by_key(&b, |(k, _)| *k) {
            Ok(i) => {
                if let Some(entry) = self.counts.get_mut(i) {
                    entry.1 = entry.1.saturating_add(1);
                }
            }
            Err(i) => self.counts.insert(i, (b, 1)),
        }
    }

    /// Adds every wait of `other`.
    pub fn merge(&mut self, other: &LatencySketch) {
        if other.counts.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.counts.len() + other.counts.len());
        let (mut i, mut j) = (0, 0);
        while let (Some(x), Some(y)) = (self.counts.get(i), other.counts.get(j)) {
            if x.0 == y.0 {
                merged.push((x.0, x.1.saturating_add(y.1)));
                i += 1;
                j += 1;
            } else if x.0 < y.0 {
                merged.push(*x);
                i += 1;
            } else {
                merged.push(*y);
                j += 1;
            }
        }
        merged.extend_from_slice(self.counts.get(i..).unwrap_or_default());
        merged.extend_from_slice(other.counts.get(j..).unwrap_or_default());
        self.counts = merged;
    }

    /// Waits recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|(_, n)| u64::from(*n)).sum()
    }

    /// Whether no wait was recorded.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Buckets in use (at most [`BUCKETS`]).
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// The `q` quantile (0 ≤ q ≤ 1) in milliseconds, `None` when empty:
    /// the value of the bucket holding the ⌈q·n⌉-th smallest wait.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for (b, c) in &self.counts {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(bucket_value(usize::from(*b)));
            }
        }
        self.counts
            .last()
            .map(|(b, _)| bucket_value(usize::from(*b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bounded() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
        assert_eq!(bucket_of(2), 5);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        let mut last = 0;
        for ms in (0..100_000u64).step_by(7) {
            let b = bucket_of(ms);
            assert!(b >= last);
            last = b;
        }
        // A bucket's value is within 10 % of every wait it holds.
        for ms in [1u64, 3, 17, 250, 999, 1000, 4321, 60_000, 3_600_000] {
            #[allow(clippy::cast_precision_loss)]
            let err = (bucket_value(bucket_of(ms)) - ms as f64).abs() / ms as f64;
            assert!(err < 0.1, "{ms}: {err}");
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut s = LatencySketch::default();
        assert_eq!(s.quantile(0.5), None);
        for ms in 1..=1000u64 {
            s.add(ms);
        }
        assert_eq!(s.count(), 1000);
        let p50 = s.quantile(0.5).unwrap();
        let p99 = s.quantile(0.99).unwrap();
        assert!((455.0..=550.0).contains(&p50), "{p50}");
        assert!((900.0..=1090.0).contains(&p99), "{p99}");
        assert!(p50 <= p99);
        // A single zero wait reads as half a millisecond, not as nothing.
        let mut zero = LatencySketch::default();
        zero.add(0);
        assert_eq!(zero.quantile(0.99), Some(0.5));
    }

    #[test]
    fn merging_equals_adding_everything_and_stays_bounded() {
        let (mut a, mut b, mut all) = (
            LatencySketch::default(),
            LatencySketch::default(),
            LatencySketch::default(),
        );
        let mut x = 12_345u64;
        for i in 0..5000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let ms = (x >> 20) % (1 << (i % 40));
            if i % 3 == 0 { &mut a } else { &mut b }.add(ms);
            all.add(ms);
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged, all);
        assert!(merged.len() <= BUCKETS);
        assert!(merged.counts.windows(2).all(|w| w[0].0 < w[1].0));
        merged.merge(&LatencySketch::default());
        assert_eq!(merged, all);
        let mut empty = LatencySketch::default();
        empty.merge(&all);
        assert_eq!(empty, all);
        // Stored and read back: the same sketch; bad pairs are errors.
        let text = serde_json::to_string(&all).unwrap();
        assert_eq!(serde_json::from_str::<LatencySketch>(&text).unwrap(), all);
        for bad in [
            "[[129,1]]",
            "[[3,1],[3,1]]",
            "[[4,1],[3,1]]",
            "[[2,0]]",
            "{}",
        ] {
            assert!(serde_json::from_str::<LatencySketch>(bad).is_err(), "{bad}");
        }
    }
}

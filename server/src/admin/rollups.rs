//! The dashboard's chart history (SPEC.md §18.7): a ring of per-second
//! samples (the last hour) and one of per-minute rollups (the last 30
//! days), kept in memory on each node and fed once a second from the
//! counters and gauges the server already keeps (metrics.rs). This node's
//! own charts read the memory only (a restart starts an empty one); each
//! closed minute is also stored ([`MinuteRollup`], minutes.rs), which is
//! what the charts of another node or of the cluster read beyond the
//! bus's window ([`MinuteFold`]).
//!
//! Every sample is content-free: counts of envelopes, deliveries, logins
//! and attachment bytes, the number of open connections, the total queue
//! depth, the process's CPU time and resident memory, and how long the
//! envelopes handed to devices waited (a bounded latency sketch per
//! second, merged into the minute's, charted as p50 and p99; SPEC.md
//! §18.3).
//!
//! [`History`] is sans-I/O (the caller passes the time and the values), so
//! its arithmetic is tested without a clock; the sampler task is the
//! node's snapshot publisher (cluster.rs), which runs on every node and
//! sends each new point to the other nodes too.
//!
//! Not owned here: the counters (metrics.rs), the routes (api.rs, live.rs).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::metrics::LatencySketch;
use crate::state::ServerState;

/// Per-second samples kept: one hour.
pub const SECOND_SAMPLES: usize = 3600;
/// Per-minute rollups kept: 30 days.
pub const MINUTE_ROLLUPS: usize = 30 * 24 * 60;
/// The longest range a series request may ask for (30 days), seconds.
pub const MAX_RANGE_SECS: u64 = MINUTE_ROLLUPS as u64 * 60;
/// The shortest range, seconds.
pub const MIN_RANGE_SECS: u64 = 60;
/// Points per series answer, about (one more where the range does not
/// start on a step boundary): longer ranges use wider steps.
pub const MAX_POINTS: u64 = 1200;

/// The cumulative counters a sample is the difference of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Envelopes accepted (`microbot_messages_in_total`).
    pub messages_in: u64,
    /// Envelopes delivered (`microbot_messages_out_total`).
    pub messages_out: u64,
    /// Successful logins.
    pub logins_ok: u64,
    /// Failed logins.
    pub logins_failed: u64,
    /// Attachment bytes committed from uploads.
    pub attachment_bytes_in: u64,
    /// Attachment bytes sent to downloads.
    pub attachment_bytes_out: u64,
    /// CPU time of the process, milliseconds, where known.
    pub cpu_ms: Option<u64>,
}

/// The gauges read at the time of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Open connections (QUIC and WebSocket).
    pub connections: u64,
    /// Envelopes queued in all queues, when the storage could count.
    pub queued: Option<u64>,
    /// Resident memory of the process, bytes, where known.
    pub memory: Option<u64>,
}

/// Sums over some seconds; a per-second sample, a minute rollup and a
/// point of an answer are all one of these. A closed minute is stored as
/// this, JSON ([`MinuteRollup`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    /// Label: the second a sample ends at, or the start of a minute or step.
    at: u64,
    /// Seconds covered.
    secs: u64,
    messages: u64,
    deliveries: u64,
    logins: u64,
    failed: u64,
    /// Open connections × seconds.
    connection_secs: u64,
    /// Queue depth × seconds, over `queued_secs` seconds.
    queued_sum: u64,
    queued_secs: u64,
    attachment_in: u64,
    attachment_out: u64,
    /// CPU milliseconds used over `cpu_secs` seconds.
    cpu_ms: u64,
    cpu_secs: u64,
    /// Resident bytes × seconds, over `memory_secs` seconds.
    memory_sum: u64,
    memory_secs: u64,
    /// Waits of the envelopes handed to devices.
    latency: LatencySketch,
}

impl Bucket {
    /// Adds the seconds that follow (or precede) this bucket's: every sum
    /// grows, and so do the seconds covered.
    fn merge(&mut self, other: &Bucket) {
        self.secs = self.secs.saturating_add(other.secs);
        self.add_sums(other);
        self.connection_secs = self.connection_secs.saturating_add(other.connection_secs);
        self.queued_sum = self.queued_sum.saturating_add(other.queued_sum);
        self.queued_secs = self.queued_secs.saturating_add(other.queued_secs);
        self.cpu_ms = self.cpu_ms.saturating_add(other.cpu_ms);
        self.cpu_secs = self.cpu_secs.saturating_add(other.cpu_secs);
        self.memory_sum = self.memory_sum.saturating_add(other.memory_sum);
        self.memory_secs = self.memory_secs.saturating_add(other.memory_secs);
    }

    /// Adds another node's bucket of the same seconds, as the cluster's
    /// total: counts, connections, CPU and memory add up over the same
    /// seconds; the queue depth is the larger node's (one database: every
    /// node counts the same queue); the latencies merge.
    fn merge_alongside(&mut self, other: &Bucket) {
        self.secs = self.secs.max(other.secs);
        self.add_sums(other);
        self.connection_secs = self.connection_secs.saturating_add(other.connection_secs);
        let average = |sum: u64, secs: u64| u128::from(sum) * 1_000_000 / u128::from(secs.max(1));
        if other.queued_secs > 0
            && (self.queued_secs == 0
                || average(other.queued_sum, other.queued_secs)
                    > average(self.queued_sum, self.queued_secs))
        {
            self.queued_sum = other.queued_sum;
            self.queued_secs = other.queued_secs;
        }
        self.cpu_ms = self.cpu_ms.saturating_add(other.cpu_ms);
        self.cpu_secs = self.cpu_secs.max(other.cpu_secs);
        self.memory_sum = self.memory_sum.saturating_add(other.memory_sum);
        self.memory_secs = self.memory_secs.max(other.memory_secs);
    }

    /// The event counts and the latencies, which add up either way.
    fn add_sums(&mut self, other: &Bucket) {
        self.messages = self.messages.saturating_add(other.messages);
        self.deliveries = self.deliveries.saturating_add(other.deliveries);
        self.logins = self.logins.saturating_add(other.logins);
        self.failed = self.failed.saturating_add(other.failed);
        self.attachment_in = self.attachment_in.saturating_add(other.attachment_in);
        self.attachment_out = self.attachment_out.saturating_add(other.attachment_out);
        self.latency.merge(&other.latency);
    }

    fn point(&self) -> Point {
        #[allow(clippy::cast_precision_loss)]
        let per = |n: u64, secs: u64| n as f64 / secs.max(1) as f64;
        Point {
            t: self.at,
            messages_per_s: per(self.messages, self.secs),
            deliveries_per_s: per(self.deliveries, self.secs),
            logins_per_s: per(self.logins, self.secs),
            failed_logins_per_s: per(self.failed, self.secs),
            connections: per(self.connection_secs, self.secs),
            queued_envelopes: (self.queued_secs > 0)
                .then(|| per(self.queued_sum, self.queued_secs)),
            attachment_in_bytes_per_s: per(self.attachment_in, self.secs),
            attachment_out_bytes_per_s: per(self.attachment_out, self.secs),
            cpu_percent: (self.cpu_secs > 0).then(|| per(self.cpu_ms, self.cpu_secs) / 10.0),
            memory_bytes: (self.memory_secs > 0).then(|| per(self.memory_sum, self.memory_secs)),
            latency_p50_ms: self.latency.quantile(0.5),
            latency_p99_ms: self.latency.quantile(0.99),
        }
    }
}

/// One point of the charts: rates per second and gauge averages over the
/// seconds it covers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Seconds since the epoch: a sample's second, or the start of a step.
    pub t: u64,
    /// Envelopes accepted per second.
    pub messages_per_s: f64,
    /// Envelopes delivered per second.
    pub deliveries_per_s: f64,
    /// Successful logins per second.
    pub logins_per_s: f64,
    /// Failed logins per second.
    pub failed_logins_per_s: f64,
    /// Open connections (average).
    pub connections: f64,
    /// Queued envelopes (average), when counted.
    pub queued_envelopes: Option<f64>,
    /// Attachment bytes uploaded per second.
    pub attachment_in_bytes_per_s: f64,
    /// Attachment bytes downloaded per second.
    pub attachment_out_bytes_per_s: f64,
    /// CPU time used, percent of one core, where known.
    pub cpu_percent: Option<f64>,
    /// Resident memory (average), bytes, where known.
    pub memory_bytes: Option<f64>,
    /// Median delivery latency, ms (`None`: nothing delivered).
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile delivery latency, ms (`None`: nothing delivered).
    pub latency_p99_ms: Option<f64>,
}

/// A series answer (`GET /admin/api/series`): one array per chart, all of
/// the same length, indexed like `t` (the layout uPlot takes as it is).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The range asked for, seconds back from `now_ms`.
    pub range_secs: u64,
    /// Seconds one point covers.
    pub step_secs: u64,
    /// When the answer was made, ms since the epoch.
    pub now_ms: u64,
    /// The oldest second this node has data for (`null`: none yet).
    pub since: Option<u64>,
    /// Point times, seconds since the epoch, ascending.
    pub t: Vec<u64>,
    /// Envelopes accepted per second.
    pub messages_per_s: Vec<f64>,
    /// Envelopes delivered per second.
    pub deliveries_per_s: Vec<f64>,
    /// Successful logins per second.
    pub logins_per_s: Vec<f64>,
    /// Failed logins per second.
    pub failed_logins_per_s: Vec<f64>,
    /// Open connections.
    pub connections: Vec<f64>,
    /// Queued envelopes (`null` where not counted).
    pub queued_envelopes: Vec<Option<f64>>,
    /// Attachment bytes uploaded per second.
    pub attachment_in_bytes_per_s: Vec<f64>,
    /// Attachment bytes downloaded per second.
    pub attachment_out_bytes_per_s: Vec<f64>,
    /// CPU, percent of one core (`null` where unknown).
    pub cpu_percent: Vec<Option<f64>>,
    /// Resident memory, bytes (`null` where unknown).
    pub memory_bytes: Vec<Option<f64>>,
    /// Median delivery latency, ms (`null` where nothing was delivered).
    pub latency_p50_ms: Vec<Option<f64>>,
    /// 99th percentile delivery latency, ms (`null` where nothing was
    /// delivered).
    pub latency_p99_ms: Vec<Option<f64>>,
}

/// Why a range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `<number>[s|m|h|d]`.
    #[error("range must be a number with an optional unit s, m, h or d (like 5m, 24h, 30d)")]
    Malformed,
    /// Shorter than a minute or longer than 30 days.
    #[error("range must be between 1 minute and 30 days")]
    OutOfBounds,
}

/// Parses a range like `300`, `5m`, `6h` or `30d` into seconds.
///
/// # Errors
/// [`RangeError`].
pub fn parse_range(text: &str) -> Result<u64, RangeError> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(RangeError::Malformed),
    };
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Malformed);
    }
    let n: u64 = digits.parse().map_err(|_| RangeError::Malformed)?;
    let secs = n * scale;
    if (MIN_RANGE_SECS..=MAX_RANGE_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(RangeError::OutOfBounds)
    }
}

/// The history of one node.
#[derive(Debug, Default)]
pub struct History {
    started: Option<u64>,
    last: Option<(u64, Counters)>,
    seconds: VecDeque<Bucket>,
    minutes: VecDeque<Bucket>,
    open_minute: Option<Bucket>,
    /// Minutes closed since [`History::take_closed`] last ran, oldest
    /// first, at most [`CLOSED_KEPT`].
    closed: VecDeque<Bucket>,
}

/// Closed minutes kept for [`History::take_closed`] (older ones are
/// dropped when nobody takes them).
pub const CLOSED_KEPT: usize = 60;

impl History {
    /// Records the values read at `now` (seconds since the epoch). The
    /// first call only sets the baseline; a call in the same second as
    /// the previous one (or earlier: the clock stepped back) is ignored.
    /// Returns the new per-second point.
    #[cfg(test)]
    pub fn record(&mut self, now: u64, counters: Counters, gauges: Gauges) -> Option<Point> {
        self.record_with_latency(now, counters, gauges, LatencySketch::default())
    }

    /// [`History::record`] with the waits of the envelopes delivered since
    /// the previous sample (dropped with an ignored sample: the baseline or
    /// a clock step).
    pub fn record_with_latency(
        &mut self,
        now: u64,
        counters: Counters,
        gauges: Gauges,
        latency: LatencySketch,
    ) -> Option<Point> {
        let Some((then, before)) = self.last else {
            self.last = Some((now, counters));
            self.started = Some(now);
            return None;
        };
        if now <= then {
            return None;
        }
        self.last = Some((now, counters));
        let secs = now - then;
        let sample = Bucket {
            at: now,
            secs,
            messages: counters.messages_in.saturating_sub(before.messages_in),
            deliveries: counters.messages_out.saturating_sub(before.messages_out),
            logins: counters.logins_ok.saturating_sub(before.logins_ok),
            failed: counters.logins_failed.saturating_sub(before.logins_failed),
            connection_secs: gauges.connections * secs,
            queued_sum: gauges.queued.map_or(0, |q| q * secs),
            queued_secs: if gauges.queued.is_some() { secs } else { 0 },
            attachment_in: counters
                .attachment_bytes_in
                .saturating_sub(before.attachment_bytes_in),
            attachment_out: counters
                .attachment_bytes_out
                .saturating_sub(before.attachment_bytes_out),
            cpu_ms: match (counters.cpu_ms, before.cpu_ms) {
                (Some(now), Some(then)) => now.saturating_sub(then),
                _ => 0,
            },
            cpu_secs: if counters.cpu_ms.is_some() && before.cpu_ms.is_some() {
                secs
            } else {
                0
            },
            memory_sum: gauges.memory.map_or(0, |m| m.saturating_mul(secs)),
            memory_secs: if gauges.memory.is_some() { secs } else { 0 },
            latency,
        };
        let point = sample.point();
        if self.seconds.len() == SECOND_SAMPLES {
            self.seconds.pop_front();
        }
        let minute = now / 60 * 60;
        match &mut self.open_minute {
            Some(open) if open.at == minute => open.merge(&sample),
            open => {
                if let Some(done) = open.take() {
                    if self.minutes.len() == MINUTE_ROLLUPS {
                        self.minutes.pop_front();
                    }
                    if self.closed.len() == CLOSED_KEPT {
                        self.closed.pop_front();
                    }
                    self.closed.push_back(done.clone());
                    self.minutes.push_back(done);
                }
                let mut fresh = sample.clone();
                fresh.at = minute;
                *open = Some(fresh);
            }
        }
        self.seconds.push_back(sample);
        Some(point)
    }

    /// The oldest second with data: the first sample's start, or the
    /// oldest minute kept once the minute ring is full.
    fn since(&self) -> Option<u64> {
        let started = self.started?;
        match self.minutes.front() {
            Some(m) if self.minutes.len() == MINUTE_ROLLUPS => Some(started.max(m.at)),
            _ => Some(started),
        }
    }

    /// The charts' data over the `range_secs` before `now`: per-second
    /// samples up to an hour, per-minute rollups beyond, summed into steps
    /// so that no answer has more than [`MAX_POINTS`] + 1 points.
    pub fn series(&self, now: u64, now_ms: u64, range_secs: u64) -> Series {
        let from = now.saturating_sub(range_secs);
        let (base, source): (u64, Vec<&Bucket>) = if range_secs <= SECOND_SAMPLES as u64 {
            (1, self.seconds.iter().filter(|b| b.at > from).collect())
        } else {
            (
                60,
                self.minutes
                    .iter()
                    .chain(self.open_minute.iter())
                    .filter(|b| b.at + 60 > from)
                    .collect(),
            )
        };
        let step = step_for(base, range_secs);
        let mut steps = Steps::new(step);
        for b in source {
            steps.push(b);
        }
        let points: Vec<Point> = steps.0.iter().map(Bucket::point).collect();
        Series::of(range_secs, step, now_ms, self.since(), &points)
    }

    /// The minutes closed since the last call, oldest first (for the
    /// shared store: admin/cluster.rs).
    pub fn take_closed(&mut self) -> Vec<MinuteRollup> {
        self.closed
            .drain(..)
            .map(|bucket| MinuteRollup { bucket })
            .collect()
    }
}

/// The seconds one point covers over `range_secs`, a multiple of `base`
/// (1 for per-second samples, 60 for minute rollups), so that an answer
/// has at most [`MAX_POINTS`] + 1 points.
fn step_for(base: u64, range_secs: u64) -> u64 {
    base * range_secs.div_ceil(base * MAX_POINTS).max(1)
}

/// Buckets summed into steps of a fixed length, fed in ascending time.
#[derive(Debug)]
struct Steps(Vec<Bucket>, u64);

impl Steps {
    fn new(step: u64) -> Self {
        Steps(Vec::new(), step)
    }

    fn push(&mut self, b: &Bucket) {
        let at = b.at / self.1 * self.1;
        match self.0.last_mut() {
            Some(last) if last.at == at => last.merge(b),
            _ => {
                let mut fresh = b.clone();
                fresh.at = at;
                self.0.push(fresh);
            }
        }
    }
}

/// One closed minute of one node's history, as every node of a cluster
/// stores its own in the shared database and reads the others' (SPEC.md
/// §18.7): the minute's sums, JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteRollup {
    bucket: Bucket,
}

/// Why stored text is not a minute rollup.
#[derive(Debug, thiserror::Error)]
pub enum MinuteError {
    /// Not the JSON of a rollup (or a latency sketch that is not one).
    #[error("not a minute rollup: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Its time is not the start of a minute, or it covers more than one.
    #[error("a minute rollup must start on a minute and cover at most 60 seconds")]
    NotAMinute,
}

impl MinuteRollup {
    /// The minute's start, seconds since the epoch.
    pub fn minute(&self) -> u64 {
        self.bucket.at
    }

    /// The text stored.
    pub fn encode(&self) -> String {
        serde_json::to_string(&self.bucket).unwrap_or_default()
    }

    /// Reads stored text back.
    ///
    /// # Errors
    /// [`MinuteError`]: the text is not a rollup this build wrote.
    pub fn decode(text: &str) -> Result<Self, MinuteError> {
        let bucket: Bucket = serde_json::from_str(text)?;
        let within = |secs: u64| secs <= 60;
        if !bucket.at.is_multiple_of(60)
            || ![
                bucket.secs,
                bucket.queued_secs,
                bucket.cpu_secs,
                bucket.memory_secs,
            ]
            .into_iter()
            .all(within)
        {
            return Err(MinuteError::NotAMinute);
        }
        Ok(Self { bucket })
    }
}

/// Stored minute rollups folded into a series answer (another node's, or
/// the cluster's total, over a range longer than the bus keeps). Feed it
/// minutes in ascending order; several nodes' rollups of one minute add
/// up as the cluster's (see `Bucket::merge_alongside`). Its memory is
/// bounded by the answer's points, however many rollups go through it.
#[derive(Debug)]
pub struct MinuteFold {
    range_secs: u64,
    from: u64,
    steps: Steps,
    minute: Option<Bucket>,
    since: Option<u64>,
}

impl MinuteFold {
    /// A fold for the `range_secs` before `now` (seconds since the epoch).
    pub fn new(now: u64, range_secs: u64) -> Self {
        Self {
            range_secs,
            from: now.saturating_sub(range_secs),
            steps: Steps::new(step_for(60, range_secs)),
            minute: None,
            since: None,
        }
    }

    /// The first minute worth reading (earlier ones end before the range).
    pub fn first_minute(&self) -> u64 {
        self.from / 60 * 60
    }

    /// Adds one rollup; one older than the previous is ignored, one
    /// before the range too.
    pub fn add(&mut self, rollup: &MinuteRollup) {
        let b = &rollup.bucket;
        if b.at + 60 <= self.from {
            return;
        }
        match &mut self.minute {
            Some(current) if current.at == b.at => current.merge_alongside(b),
            Some(current) if current.at > b.at => {}
            current => {
                if let Some(done) = current.replace(b.clone()) {
                    self.steps.push(&done);
                }
                self.since.get_or_insert(b.at);
            }
        }
    }

    /// The answer, made at `now_ms`.
    pub fn finish(mut self, now_ms: u64) -> Series {
        if let Some(done) = self.minute.take() {
            self.steps.push(&done);
        }
        let points: Vec<Point> = self.steps.0.iter().map(Bucket::point).collect();
        Series::of(self.range_secs, self.steps.1, now_ms, self.since, &points)
    }
}

impl Series {
    /// Per-second `points` of another node or of the cluster (bus/nodes.rs)
    /// as an answer over `range_secs`: one point a second, `since` the
    /// oldest point.
    pub fn from_points(range_secs: u64, now_ms: u64, points: &[Point]) -> Self {
        Self::of(range_secs, 1, now_ms, points.first().map(|p| p.t), points)
    }

    fn of(range_secs: u64, step: u64, now_ms: u64, since: Option<u64>, points: &[Point]) -> Self {
        Series {
            range_secs,
            step_secs: step,
            now_ms,
            since,
            t: points.iter().map(|p| p.t).collect(),
            messages_per_s: points.iter().map(|p| p.messages_per_s).collect(),
            deliveries_per_s: points.iter().map(|p| p.deliveries_per_s).collect(),
            logins_per_s: points.iter().map(|p| p.logins_per_s).collect(),
            failed_logins_per_s: points.iter().map(|p| p.failed_logins_per_s).collect(),
            connections: points.iter().map(|p| p.connections).collect(),
            queued_envelopes: points.iter().map(|p| p.queued_envelopes).collect(),
            attachment_in_bytes_per_s: points.iter().map(|p| p.attachment_in_bytes_per_s).collect(),
            attachment_out_bytes_per_s: points
                .iter()
                .map(|p| p.attachment_out_bytes_per_s)
                .collect(),
            cpu_percent: points.iter().map(|p| p.cpu_percent).collect(),
            memory_bytes: points.iter().map(|p| p.memory_bytes).collect(),
            latency_p50_ms: points.iter().map(|p| p.latency_p50_ms).collect(),
            latency_p99_ms: points.iter().map(|p| p.latency_p99_ms).collect(),
        }
    }
}

/// A node's history shared by the sampler and the API.
#[derive(Debug, Default)]
pub struct Rollups {
    history: Mutex<History>,
    latest: Mutex<Option<Point>>,
}

impl Rollups {
    /// Records one sample (see [`History::record_with_latency`]); the new
    /// per-second point.
    pub fn record(
        &self,
        now: u64,
        counters: Counters,
        gauges: Gauges,
        latency: LatencySketch,
    ) -> Option<Point> {
        let point = self
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record_with_latency(now, counters, gauges, latency);
        if point.is_some() {
            *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = point;
        }
        point
    }

    /// The series over `range_secs` up to now.
    pub fn series(&self, range_secs: u64) -> Series {
        let now_ms = crate::clock::system_now_ms();
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .series(now_ms / 1000, now_ms, range_secs)
    }

    /// The minutes closed since the last call (see [`History::take_closed`]).
    pub fn take_closed(&self) -> Vec<MinuteRollup> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take_closed()
    }

    /// The newest per-second point, for the live feed.
    pub fn latest(&self) -> Option<Point> {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads this node's counters and gauges.
pub(crate) async fn read(state: &Arc<ServerState>) -> (Counters, Gauges) {
    let m = &state.metrics;
    let usage = crate::metrics::process_usage();
    let counters = Counters {
        messages_in: m.messages_in.get(),
        messages_out: m.messages_out.get(),
        logins_ok: m.logins_ok.get(),
        logins_failed: m.logins_failed.get(),
        attachment_bytes_in: m.attachment_bytes_in.get(),
        attachment_bytes_out: m.attachment_bytes_out.get(),
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        cpu_ms: usage.map(|u| (u.1 * 1000.0) as u64),
    };
    let gauges = Gauges {
        connections: u64::try_from(m.connections_open.get()).unwrap_or(0),
        queued: crate::metrics::queued(state).await,
        memory: usage.map(|u| u.0),
    };
    (counters, gauges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(messages: u64, logins: u64) -> Counters {
        Counters {
            messages_in: messages,
            messages_out: messages * 2,
            logins_ok: logins,
            logins_failed: 1,
            attachment_bytes_in: messages * 1000,
            attachment_bytes_out: messages * 3000,
            cpu_ms: Some(messages * 250),
        }
    }

    const G: Gauges = Gauges {
        connections: 3,
        queued: Some(10),
        memory: Some(1 << 20),
    };

    #[test]
    fn ranges_parse_with_units_and_bounds() {
        assert_eq!(parse_range("300"), Ok(300));
        assert_eq!(parse_range("5m"), Ok(300));
        assert_eq!(parse_range("6h"), Ok(21_600));
        assert_eq!(parse_range("30d"), Ok(MAX_RANGE_SECS));
        assert_eq!(parse_range("31d"), Err(RangeError::OutOfBounds));
        assert_eq!(parse_range("59s"), Err(RangeError::OutOfBounds));
        for bad in ["", "m", "5x", "-5m", "5.5m", "99999999999d", "５m"] {
            assert_eq!(parse_range(bad), Err(RangeError::Malformed), "{bad}");
        }
    }

    #[test]
    fn per_second_samples_are_differences_and_rates() {
        let mut h = History::default();
        assert_eq!(h.record(1000, counters(5, 0), G), None);
        let p = h.record(1001, counters(9, 2), G).unwrap();
        assert_eq!(p.messages_per_s, 4.0);
        assert_eq!(p.deliveries_per_s, 8.0);
        assert_eq!(p.logins_per_s, 2.0);
        assert_eq!(p.failed_logins_per_s, 0.0);
        assert_eq!(p.connections, 3.0);
        assert_eq!(p.queued_envelopes, Some(10.0));
        assert_eq!(p.attachment_in_bytes_per_s, 4000.0);
        assert_eq!(p.attachment_out_bytes_per_s, 12_000.0);
        assert_eq!(p.cpu_percent, Some(100.0));
        assert_eq!(p.memory_bytes, Some(1_048_576.0));
        // Two seconds late: the difference is spread over both.
        let p = h.record(1003, counters(19, 2), G).unwrap();
        assert_eq!(p.messages_per_s, 5.0);
        // Same second or the clock stepped back: ignored.
        assert_eq!(h.record(1003, counters(50, 2), G), None);
        assert_eq!(h.record(900, counters(50, 2), G), None);
        let s = h.series(1003, 1_003_000, 300);
        assert_eq!(s.step_secs, 1);
        assert_eq!(s.t, [1001, 1003]);
        assert_eq!(s.messages_per_s, [4.0, 5.0]);
        assert_eq!(s.since, Some(1000));
        assert_eq!(s.queued_envelopes, [Some(10.0), Some(10.0)]);
    }

    #[test]
    fn a_counter_reset_counts_nothing_and_unknown_gauges_are_null() {
        let mut h = History::default();
        h.record(10, counters(100, 5), G);
        let p = h
            .record(
                11,
                Counters {
                    cpu_ms: None,
                    ..counters(3, 5)
                },
                Gauges {
                    connections: 0,
                    queued: None,
                    memory: None,
                },
            )
            .unwrap();
        assert_eq!(p.messages_per_s, 0.0);
        assert_eq!(p.queued_envelopes, None);
        assert_eq!(p.cpu_percent, None);
        assert_eq!(p.memory_bytes, None);
    }

    #[test]
    fn long_ranges_use_minute_rollups_and_wider_steps() {
        let mut h = History::default();
        let start = 1_000_020u64 / 60 * 60;
        // Two hours of one message a second.
        for s in 0..=7200u64 {
            h.record(start + s, counters(s, 0), G);
        }
        let now = start + 7200;
        // The per-second ring holds only the last hour.
        let hour = h.series(now, now * 1000, 3600);
        assert_eq!(hour.step_secs, 3);
        assert!((1200..=1201).contains(&hour.t.len()), "{}", hour.t.len());
        assert!(hour.messages_per_s.iter().all(|r| *r == 1.0));
        assert!(hour.t.windows(2).all(|w| w[0] < w[1]));
        // Six hours: one point a minute, back to the first minute.
        let six = h.series(now, now * 1000, 6 * 3600);
        assert_eq!(six.step_secs, 60);
        assert_eq!(six.t.first(), Some(&start));
        assert_eq!(six.t.len(), 121);
        assert!(six.messages_per_s.iter().all(|r| *r == 1.0));
        assert_eq!(six.since, Some(start));
        // Thirty days: at most MAX_POINTS points, 36-minute steps.
        let month = h.series(now, now * 1000, MAX_RANGE_SECS);
        assert_eq!(month.step_secs, 36 * 60);
        assert!(month.t.len() <= MAX_POINTS as usize + 1);
        assert!(
            month
                .connections
                .iter()
                .all(|c| (*c - 3.0).abs() < f64::EPSILON)
        );
    }

    #[test]
    fn delivery_latency_is_kept_per_second_and_merged_per_minute() {
        let mut h = History::default();
        let start = 6000u64;
        h.record(start, counters(0, 0), G);
        let waits = |ms: &[u64]| {
            let mut s = LatencySketch::default();
            for m in ms {
                s.add(*m);
            }
            s
        };
        // Second 1: ten waits of 100 ms; second 2: nothing; second 3: one of 10 s.
        let p = h
            .record_with_latency(start + 1, counters(1, 0), G, waits(&[100; 10]))
            .unwrap();
        let p50 = p.latency_p50_ms.unwrap();
        assert!((90.0..=110.0).contains(&p50), "{p50}");
        assert_eq!(p.latency_p50_ms, p.latency_p99_ms);
        let p = h.record(start + 2, counters(2, 0), G).unwrap();
        assert_eq!(p.latency_p50_ms, None);
        h.record_with_latency(start + 3, counters(3, 0), G, waits(&[10_000]));
        let s = h.series(start + 3, (start + 3) * 1000, 300);
        assert_eq!(s.latency_p50_ms.len(), 3);
        assert_eq!(s.latency_p50_ms[1], None);
        let p99 = s.latency_p99_ms[2].unwrap();
        assert!((9000.0..=11_000.0).contains(&p99), "{p99}");
        // The minute rollup holds all eleven waits: p50 is 100 ms, p99 10 s.
        let long = h.series(start + 3, (start + 3) * 1000, 6 * 3600);
        assert_eq!(long.t.len(), 1);
        let (p50, p99) = (
            long.latency_p50_ms[0].unwrap(),
            long.latency_p99_ms[0].unwrap(),
        );
        assert!((90.0..=110.0).contains(&p50), "{p50}");
        assert!((9000.0..=11_000.0).contains(&p99), "{p99}");
    }

    /// Two hours of one node's history at `rate` messages a second, and
    /// the minutes it closed.
    fn closed_minutes(start: u64, rate: u64, connections: u64) -> Vec<MinuteRollup> {
        let mut h = History::default();
        let gauges = Gauges { connections, ..G };
        for s in 0..=7200u64 {
            h.record(start + s, counters(s * rate, 0), gauges);
        }
        h.take_closed()
    }

    #[test]
    fn closed_minutes_are_taken_once_and_bounded() {
        let start = 600_000u64;
        let closed = closed_minutes(start, 1, 3);
        assert_eq!(closed.len(), CLOSED_KEPT);
        assert_eq!(closed.last().unwrap().minute(), start + 7140);
        assert!(
            closed
                .windows(2)
                .all(|w| w[0].minute() + 60 == w[1].minute())
        );
        let mut h = History::default();
        for s in 0..=130u64 {
            h.record(start + s, counters(s, 0), G);
        }
        assert_eq!(h.take_closed().len(), 2);
        assert!(h.take_closed().is_empty());
    }

    #[test]
    fn stored_minutes_read_back_and_bad_ones_are_refused() {
        let minute = closed_minutes(600_000, 2, 3).pop().unwrap();
        let back = MinuteRollup::decode(&minute.encode()).unwrap();
        assert_eq!(back, minute);
        assert!(matches!(
            MinuteRollup::decode("{}"),
            Err(MinuteError::Malformed(_))
        ));
        assert!(matches!(
            MinuteRollup::decode("not json"),
            Err(MinuteError::Malformed(_))
        ));
        let mut off = minute.clone();
        off.bucket.at += 1;
        assert!(matches!(
            MinuteRollup::decode(&off.encode()),
            Err(MinuteError::NotAMinute)
        ));
        let mut long = minute.clone();
        long.bucket.secs = 61;
        assert!(matches!(
            MinuteRollup::decode(&long.encode()),
            Err(MinuteError::NotAMinute)
        ));
        // A latency sketch out of range is no sketch.
        let text = minute.encode();
        let bad = text.replacen("\"latency\":[]", "\"latency\":[[250,1]]", 1);
        assert_ne!(bad, text);
        assert!(matches!(
            MinuteRollup::decode(&bad),
            Err(MinuteError::Malformed(_))
        ));
    }

    #[test]
    fn stored_minutes_of_two_nodes_fold_into_the_clusters_total() {
        let start = 600_000u64;
        let a = closed_minutes(start, 1, 3);
        let b = closed_minutes(start, 2, 5);
        let now = start + 7200;
        // Fed as storage answers: by minute, then by node.
        let mut fold = MinuteFold::new(now, 6 * 3600);
        assert_eq!(fold.first_minute(), (now - 6 * 3600) / 60 * 60);
        for (x, y) in a.iter().zip(&b) {
            fold.add(x);
            fold.add(y);
        }
        let total = fold.finish(now * 1000);
        assert_eq!(total.step_secs, 60);
        assert_eq!(total.t.len(), CLOSED_KEPT);
        assert_eq!(total.since, Some(a[0].minute()));
        assert!(
            total.messages_per_s.iter().all(|r| *r == 3.0),
            "{:?}",
            total.messages_per_s
        );
        assert!(total.connections.iter().all(|c| *c == 8.0));
        // The queue is one database's: the larger count, not the sum.
        assert!(total.queued_envelopes.iter().all(|q| *q == Some(10.0)));
        // One node alone, over a range that starts mid-way: only its minutes in range.
        let mut fold = MinuteFold::new(now, 1800);
        for x in &b {
            fold.add(x);
        }
        // An older minute after a newer one is ignored.
        fold.add(&b[0]);
        let one = fold.finish(now * 1000);
        assert_eq!(one.t.len(), 30);
        assert!(one.t.iter().all(|t| *t + 60 > now - 1800));
        assert!(one.messages_per_s.iter().all(|r| *r == 2.0));
        assert!(one.connections.iter().all(|c| *c == 5.0));
        // Thirty days of nothing but these: wider steps, bounded points.
        let mut fold = MinuteFold::new(now, MAX_RANGE_SECS);
        for x in &a {
            fold.add(x);
        }
        let month = fold.finish(now * 1000);
        assert_eq!(month.step_secs, 36 * 60);
        assert!(month.t.len() <= 3);
    }

    #[test]
    fn the_rings_are_bounded() {
        let mut h = History::default();
        for s in 0..(SECOND_SAMPLES as u64 + 100) {
            h.record(s * 60, counters(s, 0), G);
        }
        assert_eq!(h.seconds.len(), SECOND_SAMPLES);
        assert!(h.minutes.len() <= MINUTE_ROLLUPS);
        let mut h = History::default();
        for m in 0..(MINUTE_ROLLUPS as u64 + 10) {
            h.record(m * 60, counters(m, 0), G);
        }
        assert_eq!(h.minutes.len(), MINUTE_ROLLUPS);
    }
}

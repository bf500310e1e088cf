//! Reply pacing: a bot answering a busy group must not run into the
//! server's send limit (`rate_send_per_account`, SPEC.md §12.12) and have
//! its outbox stall. Each conversation gets a token bucket, and the bot as
//! a whole another; a reply that finds a bucket empty *waits* for its
//! token instead of being dropped. The arithmetic ([`Bucket`]) is pure and
//! takes the time as an argument; [`Pacer`] adds the clock and the wait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How fast a bot may send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PacingConfig {
    /// Replies per second in one conversation, sustained.
    pub per_conversation_per_sec: f64,
    /// Replies one conversation may get at once.
    pub per_conversation_burst: f64,
    /// Replies per second over all conversations, sustained.
    pub overall_per_sec: f64,
    /// Replies at once over all conversations.
    pub overall_burst: f64,
}

impl Default for PacingConfig {
    /// 1 reply/s per conversation (bursts of 5) and 10/s overall (bursts
    /// of 20): below the reference server's default send limit.
    fn default() -> Self {
        Self {
            per_conversation_per_sec: 1.0,
            per_conversation_burst: 5.0,
            overall_per_sec: 10.0,
            overall_burst: 20.0,
        }
    }
}

/// A token bucket: `capacity` tokens, refilled at `rate` per second.
#[derive(Clone, Debug)]
pub struct Bucket {
    tokens: f64,
    capacity: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`. A rate of 0 or less never refills.
    pub fn new(capacity: f64, rate: f64, now: Instant) -> Self {
        let capacity = capacity.max(1.0);
        Self {
            tokens: capacity,
            capacity,
            rate: rate.max(0.0),
            at: now,
        }
    }

    /// Takes a token at `now`; returns how long the caller must wait before
    /// acting (zero when a token was there). The token is taken either way:
    /// later callers queue behind this one.
    pub fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        if self.rate <= 0.0 {
            return Duration::MAX;
        }
        Duration::from_secs_f64(-self.tokens / self.rate)
    }
}

/// Most conversations whose buckets are remembered; the oldest half is
/// forgotten beyond this (a forgotten conversation starts full again).
const MAX_BUCKETS: usize = 4096;

/// The buckets of one bot.
#[derive(Debug)]
pub struct Pacer {
    config: PacingConfig,
    state: Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    overall: Bucket,
    conversations: HashMap<String, Bucket>,
}

impl Pacer {
    /// Full buckets.
    pub fn new(config: PacingConfig) -> Self {
        let now = Instant::now();
        Self {
            config,
            state: Mutex::new(PacerState {
                overall: Bucket::new(config.overall_burst, config.overall_per_sec, now),
                conversations: HashMap::new(),
            }),
        }
    }

    /// How long a reply to `conversation` must wait from `now`.
    pub fn delay(&self, conversation: &str, now: Instant) -> Duration {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.conversations.len() >= MAX_BUCKETS
            && !state.conversations.contains_key(conversation)
        {
            let mut by_age: Vec<(Instant, String)> = state
                .conversations
                .iter()
                .map(|(k, b)| (b.at, k.clone()))
                .collect();
            by_age.sort();
            for (_, key) in by_age.into_iter().take(MAX_BUCKETS / 2) {
                state.conversations.remove(&key);
            }
        }
        let config = self.config;
        let own = state
            .conversations
            .entry(conversation.to_owned())
            .or_insert_with(|| {
                Bucket::new(
                    config.per_conversation_burst,
                    config.per_conversation_per_sec,
                    now,
                )
            })
            .take(now);
        own.max(state.overall.take(now))
    }

    /// Waits until a reply to `conversation` may go.
    pub async fn wait(&self, conversation: &str) {
        let delay = self.delay(conversation, Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay.min(Duration::from_secs(3600))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_spaces_by_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3.0, 2.0, t0);
        for _ in 0..3 {
            assert_eq!(b.take(t0), Duration::ZERO);
        }
        assert_eq!(b.take(t0), Duration::from_millis(500));
        assert_eq!(b.take(t0), Duration::from_millis(1000));
        // After a second two tokens came back, both already promised.
        assert_eq!(
            b.take(t0 + Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        // Long idle: full again, no more than the capacity.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(later), Duration::ZERO);
        }
        assert!(b.take(later) > Duration::ZERO);
    }

    #[test]
    fn conversations_are_paced_apart_and_together() {
        let pacer = Pacer::new(PacingConfig {
            per_conversation_per_sec: 1.0,
            per_conversation_burst: 2.0,
            overall_per_sec: 100.0,
            overall_burst: 3.0,
        });
        let now = Instant::now();
        assert_eq!(pacer.delay("u:a", now), Duration::ZERO);
        assert_eq!(pacer.delay("u:a", now), Duration::ZERO);
        assert_eq!(pacer.delay("u:a", now), Duration::from_secs(1));
        // Another conversation has its own bucket but shares the overall one.
        assert!(pacer.delay("u:b", now) > Duration::ZERO);
    }

    #[test]
    fn the_bucket_map_stays_bounded() {
        let pacer = Pacer::new(PacingConfig::default());
        let now = Instant::now();
        for i in 0..(MAX_BUCKETS * 2) {
            pacer.delay(&format!("u:{i}"), now);
        }
        let state = pacer.state.lock().unwrap();
        assert!(state.conversations.len() <= MAX_BUCKETS);
    }
}

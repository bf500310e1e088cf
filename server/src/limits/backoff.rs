//! Credential back-off records kept in this process (SPEC.md §12.12
//! "Credential back-off").
//!
//! A record belongs to one *back-off key* (limits.rs chooses it: username
//! and source network before login, username and device after). An attempt
//! is **reserved before** the password or code is looked at and settled
//! after, under one lock, so concurrent guesses cannot overtake the count:
//! with `failures` recorded and `in_flight` reserved, a new attempt is
//! admitted only while `failures + in_flight < threshold`, and once the
//! threshold is reached (the lock has run out) one attempt at a time.
//!
//! Invariant: the map is bounded in entries and key bytes. Records with an
//! attempt in flight are never dropped; unlocked records go first, then the
//! least recently touched.
//!
//! Not owned here: the Redis-shared records (shared.rs), which follow the
//! same rules in Lua.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::buckets::{Footprint, KeyBytes as _, MAX_ENTRIES, MAX_KEY_BYTES};
use super::lock;
use super::shared::Backoff;

/// Retry hint when the attempt is refused because others are in flight.
pub const IN_FLIGHT_RETRY_MS: u64 = 250;

/// How a reserved attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The credentials were right: the record is cleared.
    Success,
    /// Wrong password or code, or a replayed code: counts.
    Failure,
    /// Anything else (bad input, storage error, cancelled): not counted.
    Neutral,
}

struct Record {
    failures: u32,
    in_flight: u32,
    locked_until: Option<Instant>,
    touched: Instant,
}

#[derive(Default)]
struct Map {
    records: HashMap<String, Record>,
    key_bytes: usize,
}

/// Back-off records of this node.
pub struct Backoffs {
    params: Backoff,
    map: Mutex<Map>,
}

/// Admitted attempts at once for a record with `failures`.
pub fn allowed_in_flight(failures: u32, after: u32) -> u32 {
    if failures < after {
        after - failures
    } else {
        1
    }
}

/// Lock length after `failures` failures, if any.
pub fn lock_ms(params: Backoff, failures: u32) -> Option<u64> {
    if failures < params.after {
        return None;
    }
    let doublings = (failures - params.after).min(30);
    Some(
        params
            .base_ms
            .saturating_mul(1u64 << doublings)
            .min(params.max_ms),
    )
}

impl Backoffs {
    /// Records with these parameters.
    pub fn new(params: Backoff) -> Self {
        Self {
            params,
            map: Mutex::new(Map::default()),
        }
    }

    /// Reserves one attempt for `key`, or returns the milliseconds to wait.
    ///
    /// # Errors
    /// The retry delay: the lock's rest, or [`IN_FLIGHT_RETRY_MS`].
    pub fn begin(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = lock(&self.map);
        if let Some(record) = map.records.get_mut(key) {
            if let Some(left) = record
                .locked_until
                .and_then(|t| t.checked_duration_since(now))
                .filter(|d| !d.is_zero())
            {
                return Err(u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1));
            }
            if record.in_flight >= allowed_in_flight(record.failures, self.params.after) {
                return Err(IN_FLIGHT_RETRY_MS);
            }
            record.in_flight += 1;
            record.touched = now;
            return Ok(());
        }
        let key = key.to_owned();
        if map.records.len() >= MAX_ENTRIES
            || map.key_bytes.saturating_add(key.key_bytes()) > MAX_KEY_BYTES
        {
            prune(&mut map, now);
        }
        map.key_bytes = map.key_bytes.saturating_add(key.key_bytes());
        map.records.insert(
            key,
            Record {
                failures: 0,
                in_flight: 1,
                locked_until: None,
                touched: now,
            },
        );
        Ok(())
    }

    /// Settles an attempt reserved with [`Backoffs::begin`].
    pub fn finish(&self, key: &str, outcome: Outcome) {
        let now = Instant::now();
        let mut map = lock(&self.map);
        let Some(record) = map.records.get_mut(key) else {
            return;
        };
        record.in_flight = record.in_flight.saturating_sub(1);
        record.touched = now;
        match outcome {
            Outcome::Success => {
                record.failures = 0;
                record.locked_until = None;
            }
            Outcome::Failure => {
                record.failures = record.failures.saturating_add(1);
                if let Some(ms) = lock_ms(self.params, record.failures) {
                    record.locked_until = Some(now + Duration::from_millis(ms));
                }
            }
            Outcome::Neutral => {}
        }
        if record.failures == 0 && record.in_flight == 0 {
            remove(&mut map, key);
        }
    }

    /// Entries and key bytes held now.
    pub fn footprint(&self) -> Footprint {
        let map = lock(&self.map);
        Footprint {
            entries: map.records.len(),
            key_bytes: map.key_bytes,
        }
    }
}

fn remove(map: &mut Map, key: &str) {
    if let Some((key, _)) = map.records.remove_entry(key) {
        map.key_bytes = map.key_bytes.saturating_sub(key.key_bytes());
    }
}

/// Drops unlocked records without attempts in flight, then the least
/// recently touched idle ones, down to three quarters of both bounds.
fn prune(map: &mut Map, now: Instant) {
    let (max_entries, max_bytes) = (MAX_ENTRIES / 4 * 3, MAX_KEY_BYTES / 4 * 3);
    let idle = |r: &Record| r.in_flight == 0;
    let unlocked = |r: &Record| r.locked_until.is_none_or(|t| t <= now);
    let mut candidates: Vec<(bool, Instant, String)> = map
        .records
        .iter()
        .filter(|(_, r)| idle(r))
        .map(|(k, r)| (!unlocked(r), r.touched, k.clone()))
        .collect();
    // Unlocked first (false < true), then the oldest.
    candidates.sort_unstable_by_key(|c| (c.0, c.1));
    for (_, _, key) in candidates {
        if map.records.len() <= max_entries && map.key_bytes <= max_bytes {
            break;
        }
        remove(map, &key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: Backoff = Backoff {
        after: 3,
        base_ms: 60_000,
        max_ms: 900_000,
    };

    #[test]
    fn concurrent_attempts_are_reserved_up_to_the_threshold() {
        let b = Backoffs::new(PARAMS);
        for _ in 0..3 {
            b.begin("k").unwrap();
        }
        assert_eq!(b.begin("k"), Err(IN_FLIGHT_RETRY_MS));
        for _ in 0..3 {
            b.finish("k", Outcome::Failure);
        }
        let locked = b.begin("k").unwrap_err();
        assert!((59_000..=60_000).contains(&locked), "{locked}");
        assert!(b.begin("other").is_ok(), "per key");
    }

    #[test]
    fn success_clears_and_neutral_outcomes_do_not_count() {
        let b = Backoffs::new(PARAMS);
        for _ in 0..5 {
            b.begin("k").unwrap();
            b.finish("k", Outcome::Neutral);
        }
        b.begin("k").unwrap();
        b.finish("k", Outcome::Failure);
        b.begin("k").unwrap();
        b.finish("k", Outcome::Success);
        assert_eq!(b.footprint().entries, 0);
    }
}

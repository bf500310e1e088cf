//! In-memory token buckets, one per key, for one limit (SPEC.md §12.12).
//!
//! Invariant: the map stays bounded in entries *and* key bytes, whatever
//! the keys. When it reaches [`MAX_ENTRIES`] or [`MAX_KEY_BYTES`], buckets
//! that are full again (a key that stopped sending) are dropped; if that is
//! not enough, the least recently used buckets are dropped until the map is
//! at three quarters of both bounds. Dropping a bucket only ever gives its
//! key a fresh (full) bucket, never a wrong refusal.
//!
//! Not owned here: which request takes a token from which limit
//! (limits.rs), the Redis-shared buckets (shared.rs).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::lock;

/// Keys kept per limit before pruning.
pub const MAX_ENTRIES: usize = 65_536;
/// Key bytes kept per limit before pruning.
pub const MAX_KEY_BYTES: usize = 4 * 1024 * 1024;

/// Bytes a key holds on the heap and inline, for the byte bound.
pub trait KeyBytes {
    /// Bytes this key occupies.
    fn key_bytes(&self) -> usize;
}

impl KeyBytes for String {
    fn key_bytes(&self) -> usize {
        std::mem::size_of::<String>() + self.capacity()
    }
}

impl KeyBytes for IpAddr {
    fn key_bytes(&self) -> usize {
        std::mem::size_of::<IpAddr>()
    }
}

impl KeyBytes for i64 {
    fn key_bytes(&self) -> usize {
        std::mem::size_of::<i64>()
    }
}

impl KeyBytes for u8 {
    fn key_bytes(&self) -> usize {
        1
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Map<K> {
    buckets: HashMap<K, Bucket>,
    key_bytes: usize,
}

/// Keyed token buckets for one limit.
pub struct TokenBuckets<K> {
    capacity: f64,
    per_ms: f64,
    map: Mutex<Map<K>>,
}

/// Entries and key bytes of a limiter map, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Keys held.
    pub entries: usize,
    /// Bytes of those keys.
    pub key_bytes: usize,
}

impl std::ops::Add for Footprint {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            entries: self.entries + other.entries,
            key_bytes: self.key_bytes + other.key_bytes,
        }
    }
}

impl<K: Hash + Eq + Clone + KeyBytes> TokenBuckets<K> {
    /// `per_minute` tokens of capacity, refilled at `per_minute` per
    /// minute; 0 disables the limit.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            capacity: f64::from(per_minute),
            per_ms: f64::from(per_minute) / 60_000.0,
            map: Mutex::new(Map {
                buckets: HashMap::new(),
                key_bytes: 0,
            }),
        }
    }

    /// Takes one token for `key`, or returns the milliseconds until one is
    /// available.
    ///
    /// # Errors
    /// The retry delay in milliseconds.
    pub fn check(&self, key: K) -> Result<(), u64> {
        if self.capacity <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = lock(&self.map);
        if !map.buckets.contains_key(&key)
            && (map.buckets.len() >= MAX_ENTRIES
                || map.key_bytes.saturating_add(key.key_bytes()) > MAX_KEY_BYTES)
        {
            self.prune(&mut map, now);
        }
        let key_bytes = key.key_bytes();
        let fresh = !map.buckets.contains_key(&key);
        let bucket = map.buckets.entry(key).or_insert(Bucket {
            tokens: self.capacity,
            last: now,
        });
        let elapsed_ms = now.duration_since(bucket.last).as_secs_f64() * 1000.0;
        bucket.tokens = (bucket.tokens + elapsed_ms * self.per_ms).min(self.capacity);
        bucket.last = now;
        let outcome = if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / self.per_ms).ceil();
            // Float to integer: the value is positive and finite here.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err(wait.max(1.0) as u64)
        };
        if fresh {
            map.key_bytes = map.key_bytes.saturating_add(key_bytes);
        }
        outcome
    }

    /// Drops full buckets, then the least recently used ones, until the map
    /// is at three quarters of both bounds.
    fn prune(&self, map: &mut Map<K>, now: Instant) {
        let (capacity, per_ms) = (self.capacity, self.per_ms);
        let mut freed = 0usize;
        map.buckets.retain(|key, b| {
            let full =
                b.tokens + now.duration_since(b.last).as_secs_f64() * 1000.0 * per_ms >= capacity;
            if full {
                freed = freed.saturating_add(key.key_bytes());
            }
            !full
        });
        map.key_bytes = map.key_bytes.saturating_sub(freed);
        let (max_entries, max_bytes) = (MAX_ENTRIES / 4 * 3, MAX_KEY_BYTES / 4 * 3);
        if map.buckets.len() <= max_entries && map.key_bytes <= max_bytes {
            return;
        }
        let mut by_age: Vec<(Instant, K)> = map
            .buckets
            .iter()
            .map(|(k, b)| (b.last, k.clone()))
            .collect();
        by_age.sort_unstable_by_key(|(last, _)| *last);
        for (_, key) in by_age {
            if map.buckets.len() <= max_entries && map.key_bytes <= max_bytes {
                break;
            }
            if map.buckets.remove(&key).is_some() {
                map.key_bytes = map.key_bytes.saturating_sub(key.key_bytes());
            }
        }
    }

    /// Entries and key bytes held now.
    pub fn footprint(&self) -> Footprint {
        let map = lock(&self.map);
        Footprint {
            entries: map.buckets.len(),
            key_bytes: map.key_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_after_capacity_and_names_a_wait() {
        let buckets = TokenBuckets::per_minute(2);
        assert!(buckets.check(1u8).is_ok());
        assert!(buckets.check(1u8).is_ok());
        let wait = buckets.check(1u8).unwrap_err();
        assert!((1..=30_000).contains(&wait), "{wait}");
        assert!(buckets.check(2u8).is_ok(), "keys are independent");
        assert!(TokenBuckets::per_minute(0).check(1u8).is_ok(), "0 is off");
    }

    #[test]
    fn large_keys_are_bounded_by_bytes() {
        // Buckets that are not full (each key took its only token) cannot
        // be pruned as full: the least recently used go.
        let buckets = TokenBuckets::per_minute(1);
        let big = "x".repeat(100_000);
        for i in 0..200 {
            let _ = buckets.check(format!("{i}{big}"));
            let footprint = buckets.footprint();
            assert!(footprint.key_bytes <= MAX_KEY_BYTES, "{footprint:?}");
        }
        let footprint = buckets.footprint();
        assert!(footprint.entries < 200, "{footprint:?}");
        // The most recent key is still limited.
        assert!(buckets.check(format!("199{big}")).is_err());
    }
}

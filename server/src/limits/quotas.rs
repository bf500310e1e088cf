//! The per-account quotas of issue 14 that handlers check once they know
//! what a request touches (SPEC.md §12.6, §12.7, §12.10, §12.12): group
//! changes per account and per group, prekey uploads per account, prekey
//! fetches per (fetcher, fetched account), one low-stock push per device per
//! minute, and the send fan-out weight (one token per recipient device).
//!
//! Every limit here is a token bucket kept in Redis when one is configured
//! (so it holds across the cluster, like the others) and on this node while
//! Redis is unreachable: the plain ones through [`Limits::take`], the
//! fan-out weight through a weighted take ([`super::shared::SharedLimits::charge`]).
//!
//! Not owned here: the bucket arithmetic (buckets.rs, shared.rs) and the
//! limits checked before a request runs (limits.rs).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Limits, LiveBuckets, RateLimited, TokenBuckets, lock};
use crate::config::Config;
use crate::metrics::Metrics;

/// Low-stock pushes per device per minute.
const LOW_STOCK_PUSHES_PER_MINUTE: u32 = 1;
/// Accounts with a fan-out bucket kept before full ones are dropped.
const MAX_ENTRIES: usize = 65_536;
/// Groups whose last fan-out is remembered before the memory is cleared.
const MAX_FAN_OUT_HINTS: usize = 65_536;

/// What a group send took from its sender's fan-out bucket when it was
/// admitted: as many tokens as the group's last send on this node reached
/// ([`Limits::admit_group_fan_out`]); [`Limits::settle_group_fan_out`]
/// takes the rest once the send is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanOutReservation {
    /// Tokens taken at admission.
    pub devices: usize,
}

/// The quota buckets of one server (a field of [`Limits`]).
pub struct QuotaBuckets {
    group_change_account: LiveBuckets<i64>,
    group_change_group: LiveBuckets<String>,
    prekey_upload_account: LiveBuckets<i64>,
    prekey_fetch_target: LiveBuckets<String>,
    low_stock_push: TokenBuckets<i64>,
    /// At the send rate in force (`rate_send_per_account`, editable):
    /// rebuilt (all full) when it changes, like [`LiveBuckets`].
    fan_out: Mutex<(u32, Arc<FanOutBuckets>)>,
    /// Devices the last group send to each group reached on this node:
    /// what the next one reserves (an estimate; cleared when full).
    group_fan_out_hints: Mutex<HashMap<[u8; 16], usize>>,
}

impl QuotaBuckets {
    /// Buckets sized from the configuration.
    pub fn new(config: &Config) -> Self {
        Self {
            group_change_account: LiveBuckets::new(
                "rate_group_change_per_account",
                config.rate_group_change_per_account,
            ),
            group_change_group: LiveBuckets::new(
                "rate_group_change_per_group",
                config.rate_group_change_per_group,
            ),
            prekey_upload_account: LiveBuckets::new(
                "rate_prekey_upload_per_account",
                config.rate_prekey_upload_per_account,
            ),
            prekey_fetch_target: LiveBuckets::new(
                "rate_prekey_fetch_per_target",
                config.rate_prekey_fetch_per_target,
            ),
            low_stock_push: TokenBuckets::per_minute(LOW_STOCK_PUSHES_PER_MINUTE),
            fan_out: Mutex::new((
                config.rate_send_per_account,
                Arc::new(FanOutBuckets::per_minute(config.rate_send_per_account)),
            )),
            group_fan_out_hints: Mutex::new(HashMap::new()),
        }
    }
}

struct Tokens {
    tokens: f64,
    last: Instant,
}

/// Per-account buckets from which a send takes one token per recipient
/// device. A group send reserves its group's last fan-out when admitted and
/// is charged the rest after it is stored (its recipients are known only
/// then), and may leave the bucket in debt; a send that finds less than it
/// needs (a group send: less than one token) is refused.
struct FanOutBuckets {
    capacity: f64,
    per_ms: f64,
    map: Mutex<HashMap<i64, Tokens>>,
}

impl FanOutBuckets {
    fn per_minute(per_minute: u32) -> Self {
        Self {
            capacity: f64::from(per_minute),
            per_ms: f64::from(per_minute) / 60_000.0,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Refills `account`'s bucket; when it holds at least `need` tokens
    /// (capped at the capacity), takes `take` of them, else returns the ms
    /// until it will hold `need`.
    fn charge(&self, account: i64, need: f64, take: f64) -> Result<(), u64> {
        if self.capacity <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut map = lock(&self.map);
        if map.len() >= MAX_ENTRIES && !map.contains_key(&account) {
            // Full buckets carry no information: drop them.
            let (capacity, per_ms) = (self.capacity, self.per_ms);
            map.retain(|_, b| {
                b.tokens + now.duration_since(b.last).as_secs_f64() * 1000.0 * per_ms < capacity
            });
            if map.len() >= MAX_ENTRIES {
                // Every bucket is in use: refuse a new key rather than grow.
                return Err(1000);
            }
        }
        let bucket = map.entry(account).or_insert(Tokens {
            tokens: self.capacity,
            last: now,
        });
        let elapsed_ms = now.duration_since(bucket.last).as_secs_f64() * 1000.0;
        bucket.tokens = (bucket.tokens + elapsed_ms * self.per_ms).min(self.capacity);
        bucket.last = now;
        let need = need.min(self.capacity);
        if bucket.tokens >= need {
            // The debt is bounded: at most one bucket's worth below zero.
            bucket.tokens = (bucket.tokens - take).max(-self.capacity);
            Ok(())
        } else {
            let wait = ((need - bucket.tokens) / self.per_ms).ceil();
            // Float to integer: the value is positive and finite here.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err(wait.max(1.0) as u64)
        }
    }
}

/// Whole-number weight as a bucket amount.
#[allow(clippy::cast_precision_loss)]
fn weight(n: usize) -> f64 {
    n as f64
}

impl Limits {
    fn quota_refusal(
        metrics: &Metrics,
        limit: &'static str,
        what: &'static str,
        ms: u64,
    ) -> RateLimited {
        metrics.rate_limited(limit);
        RateLimited {
            what,
            retry_after_ms: ms,
        }
    }

    /// A group change (create, add, remove, role, metadata) by `account`:
    /// one token of the account's bucket.
    ///
    /// # Errors
    /// [`RateLimited`].
    pub fn check_group_change_account(
        &self,
        metrics: &Metrics,
        account: i64,
    ) -> Result<(), RateLimited> {
        self.take_live(
            "group_change_account",
            &self.quotas.group_change_account,
            account,
        )
        .map_err(|ms| Self::quota_refusal(metrics, "group_change_account", "group changes", ms))
    }

    /// A group change on the group `group_id` by a caller allowed to make
    /// it (checked first, so outsiders cannot spend the group's tokens): one
    /// token of the group's bucket, which bounds the `group_changed` pushes
    /// every member gets, whether or not it asked to join.
    ///
    /// # Errors
    /// [`RateLimited`].
    pub fn check_group_change_group(
        &self,
        metrics: &Metrics,
        group_id: &[u8],
    ) -> Result<(), RateLimited> {
        self.take_live(
            "group_change_group",
            &self.quotas.group_change_group,
            hex::encode(group_id),
        )
        .map_err(|ms| {
            Self::quota_refusal(metrics, "group_change_group", "changes of this group", ms)
        })
    }

    /// A prekey upload by `account`.
    ///
    /// # Errors
    /// [`RateLimited`].
    pub fn check_prekey_upload(&self, metrics: &Metrics, account: i64) -> Result<(), RateLimited> {
        self.take_live(
            "prekey_upload_account",
            &self.quotas.prekey_upload_account,
            account,
        )
        .map_err(|ms| Self::quota_refusal(metrics, "prekey_upload_account", "prekey uploads", ms))
    }

    /// A prekey fetch by `fetcher` of `target`'s bundles.
    ///
    /// # Errors
    /// [`RateLimited`].
    pub fn check_prekey_fetch(
        &self,
        metrics: &Metrics,
        fetcher: i64,
        target: i64,
    ) -> Result<(), RateLimited> {
        self.take_live(
            "prekey_fetch_target",
            &self.quotas.prekey_fetch_target,
            format!("{fetcher}:{target}"),
        )
        .map_err(|ms| {
            Self::quota_refusal(
                metrics,
                "prekey_fetch_target",
                "prekey fetches of this account",
                ms,
            )
        })
    }

    /// Whether `device` may get a low-stock push now (at most one per
    /// minute); takes the turn when it may.
    pub fn low_stock_push_due(&self, device: u64) -> bool {
        let key = i64::try_from(device).unwrap_or(i64::MAX);
        self.take(
            "low_stock_push",
            &self.quotas.low_stock_push,
            LOW_STOCK_PUSHES_PER_MINUTE,
            key,
        )
        .is_ok()
    }

    /// A send by `account` to `devices` recipient devices, known before it
    /// is stored: needs and takes one token per device.
    ///
    /// # Errors
    /// [`RateLimited`].
    pub fn charge_fan_out(
        &self,
        metrics: &Metrics,
        account: i64,
        devices: usize,
    ) -> Result<(), RateLimited> {
        self.fan_out(account, devices, devices)
            .map_err(|ms| Self::quota_refusal(metrics, "send_fan_out", "recipient devices", ms))
    }

    /// Before a group send by `account` to `group`: refused while the
    /// account's fan-out bucket holds less than one token; else takes, as
    /// a reservation, as many tokens as the group's last send on this node
    /// reached while the limit was on (none for a group not seen yet), so
    /// that the sends that
    /// follow before this one is stored (a connection pipelines them) find
    /// the bucket as they would after it. The bucket may go into debt.
    ///
    /// # Errors
    /// [`RateLimited`].
    pub fn admit_group_fan_out(
        &self,
        metrics: &Metrics,
        account: i64,
        group: &[u8; 16],
    ) -> Result<FanOutReservation, RateLimited> {
        let per_minute = self.fan_out_rate();
        if per_minute == 0 {
            // No limit: nothing to reserve, nothing to remember.
            return Ok(FanOutReservation::default());
        }
        let devices = lock(&self.quotas.group_fan_out_hints)
            .get(group)
            .copied()
            .unwrap_or(0);
        self.fan_out_at(per_minute, account, 1, devices)
            .map_err(|ms| Self::quota_refusal(metrics, "send_fan_out", "recipient devices", ms))?;
        Ok(FanOutReservation { devices })
    }

    /// After a group send by `account` to `group` reached `devices`
    /// devices: takes the tokens its reservation did not cover (none back
    /// when it reached fewer; the bucket may go into debt) and remembers
    /// the count for the group's next send. With the limit off (rate 0)
    /// there is nothing to take or remember.
    pub fn settle_group_fan_out(
        &self,
        account: i64,
        group: &[u8; 16],
        reserved: FanOutReservation,
        devices: usize,
    ) {
        let per_minute = self.fan_out_rate();
        if per_minute == 0 {
            return;
        }
        let _ = self.fan_out_at(
            per_minute,
            account,
            0,
            devices.saturating_sub(reserved.devices),
        );
        let mut hints = lock(&self.quotas.group_fan_out_hints);
        if hints.len() >= MAX_FAN_OUT_HINTS && !hints.contains_key(group) {
            hints.clear();
        }
        hints.insert(*group, devices);
    }

    /// The fan-out bucket of `account`: takes `take` tokens when `need` are
    /// there; in Redis when shared and reachable, else on this node.
    fn fan_out(&self, account: i64, need: usize, take: usize) -> Result<(), u64> {
        self.fan_out_at(self.fan_out_rate(), account, need, take)
    }

    /// The fan-out bucket's rate in force (0: no limit).
    fn fan_out_rate(&self) -> u32 {
        self.rate("rate_send_per_account")
    }

    /// [`Limits::fan_out`] at the rate `per_minute` already read.
    fn fan_out_at(
        &self,
        per_minute: u32,
        account: i64,
        need: usize,
        take: usize,
    ) -> Result<(), u64> {
        if per_minute == 0 {
            return Ok(());
        }
        if let Some(shared) = &self.shared {
            let whole = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
            if let Ok(outcome) = shared.charge(
                "send_fan_out",
                &account.to_string(),
                per_minute,
                whole(need),
                whole(take),
            ) {
                return outcome;
            }
        }
        let local = {
            let mut current = lock(&self.quotas.fan_out);
            if current.0 != per_minute {
                *current = (per_minute, Arc::new(FanOutBuckets::per_minute(per_minute)));
            }
            Arc::clone(&current.1)
        };
        local.charge(account, weight(need), weight(take))
    }
}

#[cfg(test)]
mod tests {
    use super::{FanOutBuckets, FanOutReservation};
    use crate::config::Config;
    use crate::limits::Limits;
    use crate::metrics::Metrics;

    #[test]
    fn a_group_send_reserves_its_groups_last_fan_out_and_settles_the_rest() {
        let limits = Limits::new(&Config {
            rate_send_per_account: 10,
            ..Config::default()
        });
        let metrics = Metrics::default();
        let (group, other) = ([1u8; 16], [2u8; 16]);
        // A group not seen yet reserves nothing; its send is charged once stored.
        let first = limits.admit_group_fan_out(&metrics, 7, &group).unwrap();
        assert_eq!(first, FanOutReservation { devices: 0 });
        limits.settle_group_fan_out(7, &group, first, 4);
        // 6 left. The next two reserve 4 each before either is stored
        // (6 → 2 → -2), so a third written behind them is refused, as it
        // would be had each been charged before the next arrived.
        let second = limits.admit_group_fan_out(&metrics, 7, &group).unwrap();
        let third = limits.admit_group_fan_out(&metrics, 7, &group).unwrap();
        assert_eq!((second.devices, third.devices), (4, 4));
        assert!(limits.admit_group_fan_out(&metrics, 7, &group).is_err());
        // Settling takes only what the reservation did not cover (a send
        // that reached 5 takes 1 more; one that reached 3 gives none back),
        // and the next send to the group reserves the last count.
        limits.settle_group_fan_out(7, &group, second, 5);
        limits.settle_group_fan_out(7, &group, third, 3);
        assert!(limits.admit_group_fan_out(&metrics, 7, &group).is_err());
        let elsewhere = limits.admit_group_fan_out(&metrics, 8, &group).unwrap();
        assert_eq!(
            elsewhere.devices, 3,
            "the group's last fan-out, whoever sent it"
        );
        let fresh = limits.admit_group_fan_out(&metrics, 9, &other).unwrap();
        assert_eq!(fresh.devices, 0);
    }

    #[test]
    fn fan_out_takes_one_token_per_device_and_debt_blocks() {
        let buckets = FanOutBuckets::per_minute(10);
        assert!(buckets.charge(1, 4.0, 4.0).is_ok());
        assert!(buckets.charge(1, 7.0, 7.0).is_err(), "6 left");
        assert!(buckets.charge(1, 6.0, 6.0).is_ok());
        // A group send charged afterwards leaves a debt; the next is refused.
        assert!(buckets.charge(2, 1.0, 0.0).is_ok());
        assert!(buckets.charge(2, 0.0, 25.0).is_ok());
        assert!(buckets.charge(2, 1.0, 0.0).is_err());
        assert!(FanOutBuckets::per_minute(0).charge(3, 9.0, 9.0).is_ok());
    }
}

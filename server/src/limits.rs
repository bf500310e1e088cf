//! Abuse limits (SPEC.md §12.12 "Limits"): per-IP and per-account token
//! buckets, exponential back-off of failed credential checks per account,
//! IP allow/deny lists and connection caps.
//!
//! Token buckets are in memory, one per (limit, key): capacity = the
//! configured per-minute count, refilled continuously at that rate; a
//! refused request gets `ERROR_CODE_RATE_LIMITED` with the time until one
//! token is back in `retry_after_ms`. A limit of 0 is off. State is lost on
//! restart (a restart is rare and costs an attacker nothing it could not
//! get by waiting a minute).
//!
//! Credential back-off: after `login_backoff_after_failures` failed
//! password / TOTP / recovery-code checks in a row, an account is locked
//! for `login_backoff_base_ms × 2^(failures − threshold)` (capped at
//! `login_backoff_max_ms`); while locked every credential check of that
//! account is refused before the password or code is looked at, so a right
//! code guessed during the lock is refused too. A success resets it.
//!
//! Several nodes: with a Redis configured, buckets and back-off records
//! live in Redis ([`shared`]) and hold across the cluster; the in-memory
//! ones above serve only while Redis is unreachable. Connection caps stay
//! per node (they protect the node's own sockets and memory).
//!
//! Not owned here: which request is what (connection.rs calls in).

pub mod shared;

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use microbot_protocol::transport::{ErrorCode, client_frame::Request};

use crate::auth::devices::DeviceSession;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Keys kept per limit before full buckets are pruned.
const PRUNE_AT: usize = 65_536;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Keyed token buckets for one limit.
pub struct TokenBuckets<K> {
    capacity: f64,
    per_ms: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq> TokenBuckets<K> {
    /// `per_minute` tokens of capacity, refilled at `per_minute` per
    /// minute; 0 disables the limit.
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            capacity: f64::from(per_minute),
            per_ms: f64::from(per_minute) / 60_000.0,
            buckets: Mutex::new(HashMap::new()),
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
        let mut map = lock(&self.buckets);
        if map.len() >= PRUNE_AT {
            let (capacity, per_ms) = (self.capacity, self.per_ms);
            map.retain(|_, b| {
                b.tokens + now.duration_since(b.last).as_secs_f64() * 1000.0 * per_ms < capacity
            });
        }
        let bucket = map.entry(key).or_insert(Bucket {
            tokens: self.capacity,
            last: now,
        });
        let elapsed_ms = now.duration_since(bucket.last).as_secs_f64() * 1000.0;
        bucket.tokens = (bucket.tokens + elapsed_ms * self.per_ms).min(self.capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - bucket.tokens) / self.per_ms).ceil();
            // Float to integer: the value is positive and finite here.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Err(wait.max(1.0) as u64)
        }
    }
}

struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// Connections currently open, in total and per IP.
#[derive(Default)]
struct Slots {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The address is on the deny list or not on a non-empty allow list.
    Blocked,
    /// The server holds `max_connections` already.
    TooManyConnections,
    /// This address holds `max_connections_per_ip` already.
    TooManyFromAddress,
}

/// Releases a connection slot when dropped.
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut slots = lock(&self.limits.slots);
        slots.total = slots.total.saturating_sub(1);
        if let Some(n) = slots.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                slots.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Every limit of one server.
pub struct Limits {
    config: Config,
    login_ip: TokenBuckets<IpAddr>,
    login_account: TokenBuckets<String>,
    register_ip: TokenBuckets<IpAddr>,
    send_account: TokenBuckets<i64>,
    prekey_fetch_account: TokenBuckets<i64>,
    upload_account: TokenBuckets<i64>,
    failures: Mutex<HashMap<String, Failures>>,
    slots: Mutex<Slots>,
    shared: Option<shared::SharedLimits>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

/// The username whose credentials a request checks, if any.
pub fn credential_subject<'a>(
    request: &'a Request,
    session: Option<&'a DeviceSession>,
) -> Option<&'a str> {
    match request {
        Request::ConfirmRegistration(r) => Some(&r.username),
        Request::EnrolDevice(r) => Some(&r.username),
        Request::ChangePassword(_) | Request::RemoveDevice(_) | Request::DeleteAccount(_) => {
            session.map(|s| s.username.as_str())
        }
        _ => None,
    }
}

impl Limits {
    /// Limits from the configuration, shared through Redis when `shared`
    /// is given.
    pub fn with_shared(config: &Config, shared: Option<shared::SharedLimits>) -> Self {
        Self {
            shared,
            ..Self::new(config)
        }
    }

    /// Limits from the configuration, kept in this process.
    pub fn new(config: &Config) -> Self {
        Self {
            config: config.clone(),
            login_ip: TokenBuckets::per_minute(config.rate_login_per_ip),
            login_account: TokenBuckets::per_minute(config.rate_login_per_account),
            register_ip: TokenBuckets::per_minute(config.rate_register_per_ip),
            send_account: TokenBuckets::per_minute(config.rate_send_per_account),
            prekey_fetch_account: TokenBuckets::per_minute(config.rate_prekey_fetch_per_account),
            upload_account: TokenBuckets::per_minute(config.rate_upload_per_account),
            failures: Mutex::new(HashMap::new()),
            slots: Mutex::new(Slots::default()),
            shared: None,
        }
    }

    /// Admits a new connection from `ip` or says why not.
    ///
    /// # Errors
    /// [`Refusal`].
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let ip = canonical(ip);
        if self.config.deny_ips.iter().any(|net| net.contains(&ip))
            || (!self.config.allow_ips.is_empty()
                && !self.config.allow_ips.iter().any(|net| net.contains(&ip)))
        {
            return Err(Refusal::Blocked);
        }
        let mut slots = lock(&self.slots);
        if slots.total >= self.config.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        let here = slots.per_ip.entry(ip).or_insert(0);
        if *here >= self.config.max_connections_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        *here += 1;
        slots.total += 1;
        Ok(ConnectionSlot {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Applies the rate limits and the credential lock to one request.
    ///
    /// # Errors
    /// `ERROR_CODE_RATE_LIMITED` with `retry_after_ms`.
    pub fn check_request(
        &self,
        metrics: &Metrics,
        ip: IpAddr,
        session: Option<&DeviceSession>,
        request: &Request,
    ) -> Result<(), ApiError> {
        let ip = canonical(ip);
        let refuse = |limit: &'static str, what: &str, ms: u64| {
            metrics.rate_limited(limit);
            ApiError::rate_limited(what, ms)
        };
        let account = session.map(|s| s.account_id);
        let c = &self.config;
        match request {
            Request::Register(_) => self
                .take("register_ip", &self.register_ip, c.rate_register_per_ip, ip)
                .map_err(|ms| refuse("register_ip", "registrations", ms))?,
            Request::Login(_) => self
                .take("login_ip", &self.login_ip, c.rate_login_per_ip, ip)
                .map_err(|ms| refuse("login_ip", "login attempts", ms))?,
            Request::Send(_) | Request::SendGroup(_) => {
                if let Some(a) = account {
                    self.take(
                        "send_account",
                        &self.send_account,
                        c.rate_send_per_account,
                        a,
                    )
                    .map_err(|ms| refuse("send_account", "sends", ms))?;
                }
            }
            Request::FetchPrekeys(_) => {
                if let Some(a) = account {
                    self.take(
                        "prekey_fetch_account",
                        &self.prekey_fetch_account,
                        c.rate_prekey_fetch_per_account,
                        a,
                    )
                    .map_err(|ms| refuse("prekey_fetch_account", "prekey fetches", ms))?;
                }
            }
            Request::AttachmentUpload(_) => {
                if let Some(a) = account {
                    self.take(
                        "upload_account",
                        &self.upload_account,
                        c.rate_upload_per_account,
                        a,
                    )
                    .map_err(|ms| refuse("upload_account", "uploads", ms))?;
                }
            }
            _ => {}
        }
        if let Some(username) = credential_subject(request, session) {
            self.take("login_ip", &self.login_ip, c.rate_login_per_ip, ip)
                .map_err(|ms| refuse("login_ip", "login attempts", ms))?;
            self.take(
                "login_account",
                &self.login_account,
                c.rate_login_per_account,
                username.to_owned(),
            )
            .map_err(|ms| refuse("login_account", "login attempts", ms))?;
            if let Some(ms) = self.locked_for(username) {
                return Err(refuse("login_backoff", "failed logins", ms));
            }
        }
        Ok(())
    }

    /// One token of a limit: from Redis when shared and reachable, else
    /// from this node's buckets.
    fn take<K: Hash + Eq + std::fmt::Display>(
        &self,
        name: &str,
        local: &TokenBuckets<K>,
        per_minute: u32,
        key: K,
    ) -> Result<(), u64> {
        if per_minute == 0 {
            return Ok(());
        }
        if let Some(shared) = &self.shared
            && let Ok(outcome) = shared.take(name, &key.to_string(), per_minute)
        {
            return outcome;
        }
        local.check(key)
    }

    fn locked_for(&self, username: &str) -> Option<u64> {
        if let Some(shared) = &self.shared
            && let Ok(locked) = shared.locked_for(username)
        {
            return locked;
        }
        let failures = lock(&self.failures);
        let until = failures.get(username)?.locked_until?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1))
    }

    /// Records the outcome of a credential check for `username`: failures
    /// (wrong password, wrong or replayed code) extend the back-off, a
    /// success clears it, other errors change nothing.
    pub fn record_credentials(&self, username: &str, outcome: Result<(), ErrorCode>) {
        if let Some(shared) = &self.shared {
            let done = match outcome {
                Ok(()) => shared.clear_failures(username),
                Err(
                    ErrorCode::InvalidCredentials
                    | ErrorCode::InvalidSecondFactor
                    | ErrorCode::TotpReplayed,
                ) => shared.record_failure(
                    username,
                    shared::Backoff {
                        after: self.config.login_backoff_after_failures,
                        base_ms: self.config.login_backoff_base_ms,
                        max_ms: self.config.login_backoff_max_ms,
                    },
                ),
                Err(_) => Ok(()),
            };
            if done.is_ok() {
                return;
            }
        }
        let mut failures = lock(&self.failures);
        match outcome {
            Ok(()) => {
                failures.remove(username);
            }
            Err(
                ErrorCode::InvalidCredentials
                | ErrorCode::InvalidSecondFactor
                | ErrorCode::TotpReplayed,
            ) => {
                if failures.len() >= PRUNE_AT {
                    let now = Instant::now();
                    failures.retain(|_, f| f.locked_until.is_some_and(|t| t > now));
                }
                let entry = failures.entry(username.to_owned()).or_insert(Failures {
                    count: 0,
                    locked_until: None,
                });
                entry.count = entry.count.saturating_add(1);
                let after = self.config.login_backoff_after_failures;
                if entry.count >= after {
                    let doublings = (entry.count - after).min(30);
                    let ms = self
                        .config
                        .login_backoff_base_ms
                        .saturating_mul(1u64 << doublings)
                        .min(self.config.login_backoff_max_ms);
                    entry.locked_until = Some(Instant::now() + Duration::from_millis(ms));
                }
            }
            Err(_) => {}
        }
    }
}

/// IPv4-mapped IPv6 addresses are matched as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
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
}

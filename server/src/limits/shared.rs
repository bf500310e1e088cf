//! Rate limits and credential back-off shared by every node through Redis
//! (SPEC.md §12.12, §18 "Scale-out"), so a client cannot multiply its
//! allowance by spreading requests over the nodes.
//!
//! Each token bucket and each back-off record is one Redis hash, updated by
//! a Lua script in one atomic step with Redis's own clock (nodes' clocks do
//! not matter). Bucket keys expire once a bucket would be full again;
//! failure records a day after the last failure.
//!
//! Redis unavailable: the caller falls back to its in-memory limits (per
//! node), and this module does not try Redis again for [`RETRY_AFTER`], so
//! a dead Redis costs one short timeout per second, not one per request.
//!
//! The limits are checked on the request path, which is async; the
//! commands are synchronous with short timeouts and run inside
//! `tokio::task::block_in_place` on a multi-threaded runtime.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest wait to connect or for one reply.
const TIMEOUT: Duration = Duration::from_millis(300);
/// After a failure, Redis is not tried again for this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Idle connections kept.
const MAX_IDLE: usize = 32;
/// Failure records expire this long after the last failure.
const FAILURES_TTL_MS: u64 = 24 * 3600 * 1000;

const NOW: &str = "local t = redis.call('TIME') \
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) ";

/// Takes a token; returns 0 or the milliseconds until one is back.
const TAKE_TOKEN: &str = "local cap = tonumber(ARGV[1]) \
    local per_ms = cap / 60000 \
    local b = redis.call('HMGET', KEYS[1], 't', 'l') \
    local tokens = tonumber(b[1]) or cap \
    local last = tonumber(b[2]) or now \
    if now > last then tokens = math.min(cap, tokens + (now - last) * per_ms) end \
    local wait = 0 \
    if tokens >= 1 then tokens = tokens - 1 \
    else wait = math.max(1, math.ceil((1 - tokens) / per_ms)) end \
    redis.call('HSET', KEYS[1], 't', tostring(tokens), 'l', tostring(now)) \
    redis.call('PEXPIRE', KEYS[1], 61000) \
    return wait";

/// Counts a failure and sets the lock; returns the failure count.
const RECORD_FAILURE: &str = "local count = redis.call('HINCRBY', KEYS[1], 'c', 1) \
    local after = tonumber(ARGV[1]) \
    if count >= after then \
      local d = math.min(count - after, 30) \
      local ms = math.min(tonumber(ARGV[2]) * 2 ^ d, tonumber(ARGV[3])) \
      redis.call('HSET', KEYS[1], 'u', tostring(now + ms)) \
    end \
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4])) \
    return count";

/// Milliseconds the account stays locked (0: not locked).
const LOCKED_FOR: &str = "local u = tonumber(redis.call('HGET', KEYS[1], 'u')) \
    if not u or u <= now then return 0 end \
    return u - now";

/// Back-off parameters (from the configuration).
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Failures before the first lock.
    pub after: u32,
    /// First lock in ms.
    pub base_ms: u64,
    /// Longest lock in ms.
    pub max_ms: u64,
}

/// A Redis reachable for shared limits.
pub struct SharedLimits {
    client: redis::Client,
    namespace: String,
    idle: Mutex<Vec<redis::Connection>>,
    take_token: redis::Script,
    record_failure: redis::Script,
    locked_for: redis::Script,
    /// `Instant` offset (ms since `epoch`) before which Redis is not tried.
    down_until_ms: AtomicU64,
    epoch: Instant,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Redis could not answer; use the local limits.
#[derive(Debug)]
pub struct Unavailable;

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{NOW}{body}"))
}

/// Runs blocking I/O without stalling the async workers when possible.
fn blocking_section<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl SharedLimits {
    /// Limits kept under `<namespace>:` keys in the Redis at `url`.
    ///
    /// # Errors
    /// The URL's parse error.
    pub fn new(url: &str, namespace: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            namespace: namespace.to_owned(),
            idle: Mutex::new(Vec::new()),
            take_token: script(TAKE_TOKEN),
            record_failure: script(RECORD_FAILURE),
            locked_for: script(LOCKED_FOR),
            down_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Unavailable> {
        if self.now_ms() < self.down_until_ms.load(Ordering::Relaxed) {
            return Err(Unavailable);
        }
        blocking_section(|| {
            let reused = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let mut conn = match reused {
                Some(conn) => conn,
                None => {
                    let conn = self.client.get_connection_with_timeout(TIMEOUT);
                    let conn = conn.and_then(|c| {
                        c.set_read_timeout(Some(TIMEOUT))?;
                        c.set_write_timeout(Some(TIMEOUT))?;
                        Ok(c)
                    });
                    match conn {
                        Ok(conn) => conn,
                        Err(error) => return Err(self.failed(&error)),
                    }
                }
            };
            match f(&mut conn) {
                Ok(value) => {
                    let mut idle = self
                        .idle
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if idle.len() < MAX_IDLE {
                        idle.push(conn);
                    }
                    Ok(value)
                }
                Err(error) => Err(self.failed(&error)),
            }
        })
    }

    fn failed(&self, error: &redis::RedisError) -> Unavailable {
        let retry = u64::try_from(RETRY_AFTER.as_millis()).unwrap_or(1000);
        self.down_until_ms
            .store(self.now_ms().saturating_add(retry), Ordering::Relaxed);
        tracing::warn!(%error, "Redis unavailable: limits fall back to this node's own for a second");
        Unavailable
    }

    /// Takes one token of `limit` for `key` at `per_minute`.
    ///
    /// # Errors
    /// [`Unavailable`]; the inner error is the retry delay in ms.
    pub fn take(
        &self,
        limit: &str,
        key: &str,
        per_minute: u32,
    ) -> Result<Result<(), u64>, Unavailable> {
        let redis_key = format!("{}:rate:{limit}:{key}", self.namespace);
        let wait: u64 =
            self.with_connection(|c| self.take_token.key(&redis_key).arg(per_minute).invoke(c))?;
        Ok(if wait == 0 { Ok(()) } else { Err(wait) })
    }

    fn failures_key(&self, username: &str) -> String {
        format!("{}:failures:{username}", self.namespace)
    }

    /// Milliseconds `username` stays locked, if it is.
    ///
    /// # Errors
    /// [`Unavailable`].
    pub fn locked_for(&self, username: &str) -> Result<Option<u64>, Unavailable> {
        let key = self.failures_key(username);
        let ms: u64 = self.with_connection(|c| self.locked_for.key(&key).invoke(c))?;
        Ok((ms > 0).then_some(ms))
    }

    /// Counts a failed credential check.
    ///
    /// # Errors
    /// [`Unavailable`].
    pub fn record_failure(&self, username: &str, backoff: Backoff) -> Result<(), Unavailable> {
        let key = self.failures_key(username);
        self.with_connection(|c| {
            self.record_failure
                .key(&key)
                .arg(backoff.after)
                .arg(backoff.base_ms)
                .arg(backoff.max_ms)
                .arg(FAILURES_TTL_MS)
                .invoke::<i64>(c)
        })
        .map(|_| ())
    }

    /// Clears the failures after a success.
    ///
    /// # Errors
    /// [`Unavailable`].
    pub fn clear_failures(&self, username: &str) -> Result<(), Unavailable> {
        let key = self.failures_key(username);
        self.with_connection(|c| redis::cmd("DEL").arg(&key).query::<i64>(c))
            .map(|_| ())
    }
}

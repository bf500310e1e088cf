//! Rate limits and credential back-off shared by every node through Redis
//! (SPEC.md §12.12, §18 "Scale-out"), so a client cannot multiply its
//! allowance by spreading requests over the nodes.
//!
//! Each token bucket and each back-off record is one Redis hash, updated by
//! a Lua script in one atomic step with Redis's own clock (nodes' clocks do
//! not matter). Bucket keys expire once a bucket would be full again;
//! failure records a day after the last failure. A credential attempt is
//! reserved (counted in flight) before it is evaluated and settled after,
//! as in backoff.rs. Key parts longer than [`MAX_PLAIN_KEY`] bytes are
//! stored as their SHA-256, so every Redis key has a bounded size.
//!
//! A Redis Cluster (`redis+cluster://`, SPEC.md §18.6): every script
//! reads and writes exactly one key (`KEYS[1]`), so each bucket and each
//! back-off record lives in its own key's hash slot and the keys spread
//! over the primaries; no hash tags are needed. A failover shows as a
//! failed command: the node falls back for [`RETRY_AFTER`], then the
//! cluster connection rereads the topology and reaches the new primary.
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
/// A reserved attempt not settled for this long no longer counts.
const STALE_ATTEMPT_MS: u64 = 60_000;
/// Longest key part stored as it is (longer ones are hashed).
pub const MAX_PLAIN_KEY: usize = 96;

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

/// A weighted take (quotas.rs, the send fan-out): when the bucket holds at
/// least ARGV[2] tokens (capped at the capacity), takes ARGV[3] of them —
/// it may go into debt, down to minus one capacity; returns 0 or the
/// milliseconds until ARGV[2] tokens are back.
const CHARGE: &str = "local cap = tonumber(ARGV[1]) \
    local need = math.min(tonumber(ARGV[2]), cap) \
    local take = tonumber(ARGV[3]) \
    local per_ms = cap / 60000 \
    local b = redis.call('HMGET', KEYS[1], 't', 'l') \
    local tokens = tonumber(b[1]) or cap \
    local last = tonumber(b[2]) or now \
    if now > last then tokens = math.min(cap, tokens + (now - last) * per_ms) end \
    local wait = 0 \
    if tokens >= need then tokens = math.max(tokens - take, -cap) \
    else wait = math.max(1, math.ceil((need - tokens) / per_ms)) end \
    redis.call('HSET', KEYS[1], 't', tostring(tokens), 'l', tostring(now)) \
    redis.call('PEXPIRE', KEYS[1], 121000) \
    return wait";

/// Reserves a credential attempt (back-off.rs rules): returns 0, or the
/// milliseconds to wait (the lock's rest, or ARGV[4] while the admitted
/// attempts are in flight). A reservation older than ARGV[2] ms is
/// forgotten (its node died before settling it).
const BEGIN_ATTEMPT: &str = "local h = redis.call('HMGET', KEYS[1], 'c', 'u', 'i', 'it') \
    local count = tonumber(h[1]) or 0 \
    local lk = tonumber(h[2]) or 0 \
    local inflight = tonumber(h[3]) or 0 \
    local it = tonumber(h[4]) or 0 \
    if inflight > 0 and now - it > tonumber(ARGV[2]) then inflight = 0 end \
    if lk > now then return lk - now end \
    local after = tonumber(ARGV[1]) \
    local allowed = 1 \
    if count < after then allowed = after - count end \
    if inflight >= allowed then return tonumber(ARGV[4]) end \
    redis.call('HSET', KEYS[1], 'i', tostring(inflight + 1), 'it', tostring(now)) \
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3])) \
    return 0";

/// Settles a reserved attempt: ARGV[1] is 0 (not counted), 1 (failure) or
/// 2 (success); then threshold, base, max and the record's TTL.
const FINISH_ATTEMPT: &str = "local i = tonumber(redis.call('HGET', KEYS[1], 'i')) or 0 \
    if i > 0 then i = i - 1 end \
    local outcome = tonumber(ARGV[1]) \
    if outcome == 2 then redis.call('HSET', KEYS[1], 'c', '0', 'u', '0') end \
    redis.call('HSET', KEYS[1], 'i', tostring(i)) \
    local count = tonumber(redis.call('HGET', KEYS[1], 'c')) or 0 \
    if outcome == 1 then \
      count = redis.call('HINCRBY', KEYS[1], 'c', 1) \
      local after = tonumber(ARGV[2]) \
      if count >= after then \
        local d = math.min(count - after, 30) \
        local ms = math.min(tonumber(ARGV[3]) * 2 ^ d, tonumber(ARGV[4])) \
        redis.call('HSET', KEYS[1], 'u', tostring(now + ms)) \
      end \
    end \
    if count == 0 and i == 0 then redis.call('DEL', KEYS[1]) \
    else redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5])) end \
    return count";

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

/// One Redis or a Redis Cluster.
enum Client {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// A connection to one of them.
enum Connection {
    Single(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Connection {
    fn as_dyn(&mut self) -> &mut dyn redis::ConnectionLike {
        match self {
            Self::Single(c) => c,
            Self::Cluster(c) => c.as_mut(),
        }
    }
}

impl Client {
    fn connect(&self) -> redis::RedisResult<Connection> {
        match self {
            Self::Single(client) => {
                let conn = client.get_connection_with_timeout(TIMEOUT)?;
                conn.set_read_timeout(Some(TIMEOUT))?;
                conn.set_write_timeout(Some(TIMEOUT))?;
                Ok(Connection::Single(conn))
            }
            Self::Cluster(client) => client
                .get_connection()
                .map(|c| Connection::Cluster(Box::new(c))),
        }
    }
}

/// A Redis reachable for shared limits.
pub struct SharedLimits {
    client: Client,
    namespace: String,
    idle: Mutex<Vec<Connection>>,
    take_token: redis::Script,
    charge: redis::Script,
    begin_attempt: redis::Script,
    finish_attempt: redis::Script,
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
    /// Limits kept under `<namespace>:` keys in the Redis (or, for a
    /// `redis+cluster://` URL, the Redis Cluster) at `url`.
    ///
    /// # Errors
    /// The URL's parse error.
    pub fn new(url: &str, namespace: &str) -> Result<Self, String> {
        use crate::bus::target::Target;
        let client = match Target::parse(url).map_err(|e| e.to_string())? {
            Target::Single(url) => {
                Client::Single(redis::Client::open(url).map_err(|e| e.to_string())?)
            }
            Target::Cluster(seeds) => Client::Cluster(Box::new(
                redis::cluster::ClusterClientBuilder::new(seeds.iter().map(String::as_str))
                    .connection_timeout(TIMEOUT)
                    .response_timeout(TIMEOUT)
                    .retries(1)
                    .build()
                    .map_err(|e| e.to_string())?,
            )),
        };
        Ok(Self {
            client,
            namespace: namespace.to_owned(),
            idle: Mutex::new(Vec::new()),
            take_token: script(TAKE_TOKEN),
            charge: script(CHARGE),
            begin_attempt: script(BEGIN_ATTEMPT),
            finish_attempt: script(FINISH_ATTEMPT),
            down_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn with_connection<T>(
        &self,
        f: impl FnOnce(&mut dyn redis::ConnectionLike) -> redis::RedisResult<T>,
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
                None => match self.client.connect() {
                    Ok(conn) => conn,
                    Err(error) => return Err(self.failed(&error)),
                },
            };
            match f(conn.as_dyn()) {
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
        let redis_key = format!("{}:rate:{limit}:{}", self.namespace, bounded_key(key));
        let wait: u64 =
            self.with_connection(|c| self.take_token.key(&redis_key).arg(per_minute).invoke(c))?;
        Ok(if wait == 0 { Ok(()) } else { Err(wait) })
    }

    /// A weighted take of `limit` for `key` at `per_minute` (see
    /// [`CHARGE`]): takes `take` tokens when `need` are there.
    ///
    /// # Errors
    /// [`Unavailable`]; the inner error is the retry delay in ms.
    pub fn charge(
        &self,
        limit: &str,
        key: &str,
        per_minute: u32,
        need: u32,
        take: u32,
    ) -> Result<Result<(), u64>, Unavailable> {
        let redis_key = format!("{}:rate:{limit}:{}", self.namespace, bounded_key(key));
        let wait: u64 = self.with_connection(|c| {
            self.charge
                .key(&redis_key)
                .arg(per_minute)
                .arg(need)
                .arg(take)
                .invoke(c)
        })?;
        Ok(if wait == 0 { Ok(()) } else { Err(wait) })
    }

    fn failures_key(&self, key: &str) -> String {
        format!("{}:failures:{}", self.namespace, bounded_key(key))
    }

    /// Reserves one credential attempt for back-off key `key`.
    ///
    /// # Errors
    /// [`Unavailable`]; the inner error is the retry delay in ms.
    pub fn begin_attempt(
        &self,
        key: &str,
        backoff: Backoff,
    ) -> Result<Result<(), u64>, Unavailable> {
        let redis_key = self.failures_key(key);
        let wait: u64 = self.with_connection(|c| {
            self.begin_attempt
                .key(&redis_key)
                .arg(backoff.after)
                .arg(STALE_ATTEMPT_MS)
                .arg(FAILURES_TTL_MS)
                .arg(super::backoff::IN_FLIGHT_RETRY_MS)
                .invoke(c)
        })?;
        Ok(if wait == 0 { Ok(()) } else { Err(wait) })
    }

    /// Settles an attempt reserved with [`SharedLimits::begin_attempt`].
    ///
    /// # Errors
    /// [`Unavailable`].
    pub fn finish_attempt(
        &self,
        key: &str,
        outcome: super::backoff::Outcome,
        backoff: Backoff,
    ) -> Result<(), Unavailable> {
        let redis_key = self.failures_key(key);
        let code: u8 = match outcome {
            super::backoff::Outcome::Neutral => 0,
            super::backoff::Outcome::Failure => 1,
            super::backoff::Outcome::Success => 2,
        };
        self.with_connection(|c| {
            self.finish_attempt
                .key(&redis_key)
                .arg(code)
                .arg(backoff.after)
                .arg(backoff.base_ms)
                .arg(backoff.max_ms)
                .arg(FAILURES_TTL_MS)
                .invoke::<i64>(c)
        })
        .map(|_| ())
    }
}

/// A Redis key part of bounded length: keys up to [`MAX_PLAIN_KEY`] bytes
/// as they are, longer ones as `sha256:` and the hex of their SHA-256.
pub fn bounded_key(key: &str) -> std::borrow::Cow<'_, str> {
    if key.len() <= MAX_PLAIN_KEY {
        std::borrow::Cow::Borrowed(key)
    } else {
        use sha2::Digest as _;
        std::borrow::Cow::Owned(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(key.as_bytes()))
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_hashed() {
        assert_eq!(bounded_key("alice@192.0.2.1"), "alice@192.0.2.1");
        let long = "x".repeat(1_000_000);
        let key = bounded_key(&long);
        assert_eq!(key.len(), 7 + 64);
        assert_ne!(key, bounded_key(&"y".repeat(1_000_000)));
    }
}

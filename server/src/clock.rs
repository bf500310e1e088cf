//! Time and randomness as the server sees them: every handler reads the
//! clock and draws from the random source in
//! [`crate::state::ServerState`], so tests and fuzzing can drive them (a
//! queue's time-to-live, an attachment's expiry, a provisioning slot's
//! life; the challenges, ids and tokens a run hands out) instead of
//! sleeping through them or seeing different bytes each run.
//!
//! Not owned here: timers (tokio's, which pace the sweeps in real time);
//! the admin command line and the bus's node id, which run without a
//! server state; password salts (argon2's own draw).

#[cfg(any(test, feature = "testing"))]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
}

/// The operating system's clock: what a running server uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        system_now_ms()
    }
}

/// A clock that moves only when told to, for tests and fuzzing.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

#[cfg(any(test, feature = "testing"))]
impl ManualClock {
    /// A clock standing at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self(AtomicU64::new(now_ms))
    }

    /// A clock standing at the system's current time.
    pub fn at_system_time() -> Self {
        Self::new(system_now_ms())
    }

    /// Moves the clock `ms` forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "testing"))]
impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source of random bytes for ids, tokens, challenges and secrets.
pub trait Rng: Send + Sync + std::fmt::Debug {
    /// Fills `out` with random bytes.
    fn fill(&self, out: &mut [u8]);
}

/// The operating system's generator (through `rand`'s thread-local
/// ChaCha, reseeded from the OS): what a running server uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemRng;

impl Rng for SystemRng {
    fn fill(&self, out: &mut [u8]) {
        rand::Rng::fill_bytes(&mut rand::rng(), out);
    }
}

/// A generator that draws the same bytes from the same seed, for tests
/// and fuzzing. Never for a server that serves users.
#[cfg(any(test, feature = "testing"))]
pub struct SeededRng(std::sync::Mutex<rand_chacha::ChaCha20Rng>);

#[cfg(any(test, feature = "testing"))]
impl SeededRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(std::sync::Mutex::new(
            <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(seed),
        ))
    }
}

#[cfg(any(test, feature = "testing"))]
impl std::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The state would let a reader predict every later draw.
        f.debug_struct("SeededRng").finish_non_exhaustive()
    }
}

#[cfg(any(test, feature = "testing"))]
impl Rng for SeededRng {
    fn fill(&self, out: &mut [u8]) {
        let mut rng = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rand::Rng::fill_bytes(&mut *rng, out);
    }
}

/// The system clock read directly, for the few parts that run before or
/// outside a server state (the bus's node snapshots, the admin command
/// line).
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(5_000);
        assert_eq!((clock.now_ms(), clock.now_secs()), (5_000, 5));
        clock.advance(2_500);
        assert_eq!(clock.now_ms(), 7_500);
        assert!(SystemClock.now_ms() > 1_700_000_000_000);
    }

    #[test]
    fn a_seeded_rng_repeats_its_draws_and_the_system_one_does_not() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        SeededRng::new(7).fill(&mut a);
        SeededRng::new(7).fill(&mut b);
        assert_eq!(a, b);
        SeededRng::new(8).fill(&mut b);
        assert_ne!(a, b);
        SystemRng.fill(&mut a);
        SystemRng.fill(&mut b);
        assert_ne!(a, b);
        assert_eq!(format!("{:?}", SeededRng::new(7)), "SeededRng { .. }");
    }
}

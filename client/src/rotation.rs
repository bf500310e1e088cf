//! Which server address the background connection tries next, and when
//! (SPEC.md §12.1): a device starts at its stable index into the address
//! list, moves to the next address (round robin) at once when a connect
//! fails or a connection is lost, and backs off only after every address
//! failed in a row; a login resets both. With one address this is plain
//! exponential backoff. Not owned here: the connection itself (sync.rs),
//! the index (config.rs), the jitter (sync.rs).

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::ServerConfig;

/// The reconnect state of one background connection.
#[derive(Debug)]
pub(crate) struct Rotation {
    /// Index of the address to try next.
    next: usize,
    /// Addresses that failed since the last login or the last wait.
    failed_in_round: usize,
    /// The wait after the next full round of failures.
    delay: Duration,
    min: Duration,
    max: Duration,
}

impl Rotation {
    /// Starts at the device's own index.
    pub(crate) fn new(
        server: &ServerConfig,
        username: &str,
        device_id: u64,
        min: Duration,
        max: Duration,
    ) -> Self {
        Self {
            next: server.start_index(username, device_id),
            failed_in_round: 0,
            delay: min,
            min,
            max: max.max(min),
        }
    }

    /// The address to connect to now.
    pub(crate) fn address(&self, server: &ServerConfig) -> Option<SocketAddr> {
        let addresses = server.addresses();
        addresses.get(self.next % addresses.len().max(1)).copied()
    }

    /// Logged in: the next failure starts a new round from the first delay.
    pub(crate) fn logged_in(&mut self) {
        self.failed_in_round = 0;
        self.delay = self.min;
    }

    /// The current address failed or its connection was lost: move to the
    /// next one. Returns how long to wait first: zero while the round has
    /// addresses left, the (doubling) backoff delay once all failed.
    pub(crate) fn failed(&mut self, server: &ServerConfig) -> Duration {
        let count = server.addresses().len().max(1);
        self.next = (self.next % count + 1) % count;
        self.failed_in_round += 1;
        if self.failed_in_round < count {
            return Duration::ZERO;
        }
        self.failed_in_round = 0;
        let wait = self.delay;
        self.delay = self.delay.saturating_mul(2).min(self.max);
        wait
    }
}

//! Which server address the background connection tries next, and when
//! (SPEC.md §12.1): a device starts at its stable index into the address
//! list, moves on at once when a connect fails or a connection is lost,
//! and backs off only after every address failed in a row; a login resets
//! both. With one address this is plain exponential backoff.
//!
//! "Moves on" is by the device's own stride ([`stride`]): a step coprime
//! with the number of addresses, so one round still visits every address
//! once, but the devices of a node that dies spread over the other nodes
//! instead of all landing on the next one in the list.
//!
//! Not owned here: the connection itself (sync.rs), the start index
//! (config.rs), the jitter (sync.rs).

use std::net::SocketAddr;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::config::ServerConfig;

/// The step a device moves by among `count` addresses (SPEC.md §12.1): of
/// the steps in `1..count` coprime with `count` (so a round visits every
/// address), the one at index `u64_be(SHA-256(username ‖ 0x00 ‖
/// u64_be(device_id))[8..16]) mod (number of such steps)`. 1 when `count`
/// is at most 2.
pub(crate) fn stride(username: &str, device_id: u64, count: usize) -> usize {
    if count <= 2 {
        return 1;
    }
    let steps: Vec<usize> = (1..count).filter(|k| gcd(*k, count) == 1).collect();
    let mut hash = Sha256::new();
    hash.update(username.as_bytes());
    hash.update([0u8]);
    hash.update(device_id.to_be_bytes());
    let digest = hash.finalize();
    let value = digest
        .get(8..16)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes);
    let index = u64::try_from(steps.len())
        .ok()
        .filter(|n| *n > 0)
        .map_or(0, |n| usize::try_from(value % n).unwrap_or(0));
    steps.get(index).copied().unwrap_or(1)
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The reconnect state of one background connection.
#[derive(Debug)]
pub(crate) struct Rotation {
    /// Index of the address to try next.
    next: usize,
    /// How far to move after a failure (coprime with the address count).
    stride: usize,
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
            stride: stride(username, device_id, server.addresses().len()),
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

    /// The current address failed or its connection was lost: move on by
    /// the device's stride. Returns how long to wait first: zero while the round has
    /// addresses left, the (doubling) backoff delay once all failed.
    pub(crate) fn failed(&mut self, server: &ServerConfig) -> Duration {
        let count = server.addresses().len().max(1);
        self.next = (self.next % count + self.stride % count) % count;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(n: usize) -> ServerConfig {
        let addresses = (0..n).map(|i| SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16)));
        ServerConfig::with_addresses(addresses, &"ab".repeat(32)).unwrap()
    }

    fn rotation(server: &ServerConfig, name: &str, device: u64) -> Rotation {
        Rotation::new(
            server,
            name,
            device,
            Duration::from_millis(100),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn a_round_visits_every_address_once_then_backs_off() {
        for n in 1..=7 {
            let server = cluster(n);
            for device in 1..50 {
                let mut r = rotation(&server, "round", device);
                let mut seen = Vec::new();
                for i in 0..n {
                    seen.push(r.address(&server).unwrap());
                    let wait = r.failed(&server);
                    assert_eq!(wait.is_zero(), i + 1 < n, "n={n} device={device}");
                }
                seen.sort();
                seen.dedup();
                assert_eq!(seen.len(), n, "n={n} device={device}");
            }
        }
    }

    #[test]
    fn devices_of_a_dead_node_spread_over_the_others() {
        for n in [3, 5] {
            let server = cluster(n);
            let dead = server.addresses()[0];
            let mut moved_to = std::collections::BTreeMap::new();
            for (i, name) in (0..3000).map(|i| (i, format!("user{i}"))) {
                let mut r = rotation(&server, &name, i);
                if r.address(&server) != Some(dead) {
                    continue;
                }
                r.failed(&server);
                *moved_to.entry(r.address(&server).unwrap()).or_insert(0u32) += 1;
            }
            assert_eq!(moved_to.len(), n - 1, "n={n}: {moved_to:?}");
            let total: u32 = moved_to.values().sum();
            for count in moved_to.values() {
                // Even shares give total / (n - 1) each.
                assert!(*count * 2 * (n as u32 - 1) >= total, "n={n}: {moved_to:?}");
            }
        }
    }
}

//! What the workload (a) drivers of the peers (mosquitto, RabbitMQ) share
//! while a run goes: the clock, when sending starts and must stop, and how
//! many sends were answered and messages delivered. One definition, so
//! both peers are measured by the same rule.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::driver::DriveConfig;
use crate::payload::Clock;

/// The run's shared counters and times (microseconds on `clock`).
pub(crate) struct PeerRun {
    /// The run's clock.
    pub clock: Clock,
    /// When the first send may go (20 ms after set-up).
    pub start_us: u64,
    /// When the run gives up.
    pub deadline_us: u64,
    /// Sends the run makes in all.
    pub total_sends: u64,
    /// Sends the broker has answered.
    pub answered: AtomicU64,
    /// Messages delivered to a receiver.
    pub delivered: AtomicU64,
}

impl PeerRun {
    /// A run of `messages` per device over `devices`, starting now.
    pub(crate) fn start(devices: usize, messages: u64, config: &DriveConfig) -> Self {
        let clock = Clock::new();
        let start_us = clock.now_us() + 20_000;
        Self {
            clock,
            start_us,
            deadline_us: start_us
                + u64::try_from(config.deadline.as_micros()).unwrap_or(u64::MAX / 2),
            total_sends: messages * u64::try_from(devices).unwrap_or(0),
            answered: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    /// Every send answered and every answered one delivered.
    pub(crate) fn finished(&self) -> bool {
        self.answered.load(Ordering::Acquire) >= self.total_sends
            && self.delivered.load(Ordering::Acquire) >= self.answered.load(Ordering::Acquire)
    }

    /// When send `k` of a device goes: at once (saturation, `interval_us`
    /// `None`), or at its slot of a paced run (`start + offset + k ×
    /// interval`, slept until). Returns the send time stamped in the
    /// payload.
    pub(crate) async fn send_time(&self, k: u64, offset_us: u64, interval_us: Option<u64>) -> u64 {
        match interval_us {
            Some(iv) => {
                let at = self.start_us + offset_us + k * iv;
                tokio::time::sleep_until(self.clock.instant_at(at).into()).await;
                at
            }
            None => self.clock.now_us(),
        }
    }

    /// Finished, or past the deadline.
    pub(crate) fn over(&self) -> bool {
        self.finished() || self.clock.now_us() > self.deadline_us
    }
}

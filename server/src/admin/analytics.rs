//! Feeds the usage analytics (SPEC.md §14.1 "Analytics") from this node's
//! counters: every [`FLUSH_EVERY`], and before a report is answered, the
//! growth of the envelope, group-send and attachment-byte counters since
//! the last flush is added to today's stored counters. Logins are recorded
//! by the login itself (auth/devices.rs), not here.
//!
//! [`Tally`] is sans-I/O arithmetic (the caller passes the counter values);
//! [`Flusher`] adds the storage and the lock that keeps two flushes from
//! counting the same growth twice.
//!
//! Not owned here: the tables (storage/analytics.rs), the report
//! (report.rs).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};

use super::error::AdminError;
use crate::state::ServerState;
use crate::storage::analytics::{Metric, day_of};

/// Time between two flushes.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);

/// The cumulative counters of this node that analytics are taken from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// Envelopes accepted (one per recipient device; one per group send).
    pub envelopes: u64,
    /// Group sends accepted.
    pub group_sends: u64,
    /// Attachment bytes committed from uploads.
    pub attachment_bytes: u64,
}

impl Taken {
    /// Reads `state`'s counters now.
    pub fn read(state: &ServerState) -> Self {
        let m = &state.metrics;
        Self {
            envelopes: m.messages_in.get(),
            group_sends: m.fan_out.count(),
            attachment_bytes: m.attachment_bytes_in.get(),
        }
    }
}

/// What was flushed last.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    last: Taken,
}

impl Tally {
    /// The counts to add for counter values `now`: one-to-one envelopes
    /// (a group send counts one envelope in the metric, which is taken
    /// out), group sends and attachment bytes.
    pub fn deltas(&self, now: Taken) -> [(Metric, u64); 3] {
        let envelopes = now.envelopes.saturating_sub(self.last.envelopes);
        let group = now.group_sends.saturating_sub(self.last.group_sends);
        [
            (Metric::Messages, envelopes.saturating_sub(group)),
            (Metric::GroupMessages, group),
            (
                Metric::AttachmentBytes,
                now.attachment_bytes
                    .saturating_sub(self.last.attachment_bytes),
            ),
        ]
    }

    /// Marks `now` as flushed.
    pub fn flushed(&mut self, now: Taken) {
        self.last = now;
    }
}

/// This node's analytics feed.
#[derive(Default)]
pub struct Flusher {
    tally: Mutex<Tally>,
}

impl Flusher {
    /// Adds the counters' growth since the last flush to today's counters.
    ///
    /// # Errors
    /// [`AdminError::Storage`] (the growth is kept for the next flush),
    /// [`AdminError::Internal`].
    pub async fn flush(&self, state: &Arc<ServerState>) -> Result<(), AdminError> {
        let mut tally = self.tally.lock().await;
        let now = Taken::read(state);
        let deltas = tally.deltas(now);
        let day = day_of(state.now_ms());
        state.storage.add_counts(day, &deltas).await?;
        tally.flushed(now);
        Ok(())
    }
}

/// Flushes every [`FLUSH_EVERY`] until `stop`, then once more.
pub async fn run(state: Arc<ServerState>, flusher: Arc<Flusher>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {
                if let Err(error) = flusher.flush(&state).await {
                    tracing::warn!(%error, "could not store the last analytics counts");
                }
                return;
            }
        }
        if let Err(error) = flusher.flush(&state).await {
            tracing::warn!(%error, "could not store the analytics counts");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_sends_are_taken_out_of_the_envelopes() {
        let mut tally = Tally::default();
        let now = Taken {
            envelopes: 10,
            group_sends: 3,
            attachment_bytes: 500,
        };
        assert_eq!(
            tally.deltas(now),
            [
                (Metric::Messages, 7),
                (Metric::GroupMessages, 3),
                (Metric::AttachmentBytes, 500)
            ]
        );
        tally.flushed(now);
        let later = Taken {
            envelopes: 12,
            group_sends: 3,
            attachment_bytes: 500,
        };
        assert_eq!(
            tally.deltas(later),
            [
                (Metric::Messages, 2),
                (Metric::GroupMessages, 0),
                (Metric::AttachmentBytes, 0)
            ]
        );
    }
}

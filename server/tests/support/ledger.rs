//! What the SDK devices of a cluster test sent and received, recorded from
//! their events, and the one exactly-once check every such test makes:
//! each queued send acknowledged, each expected message delivered once,
//! nothing unexpected.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use microbot_client::{ConnectionState, Event, Events};
use microbot_protocol::MessageId;

/// What one device saw.
#[derive(Default)]
struct Seen {
    /// Received message ids, with repeats.
    received: Vec<MessageId>,
    acknowledged: HashSet<MessageId>,
    /// Logins after recording started.
    connected: usize,
}

/// The sends and deliveries of a set of devices, by index.
#[derive(Default)]
pub struct Ledger {
    seen: Vec<Arc<Mutex<Seen>>>,
    expected: Vec<HashSet<MessageId>>,
    queued: Vec<HashSet<MessageId>>,
}

impl Ledger {
    /// Starts recording `events`; returns the device's index.
    pub fn record(&mut self, mut events: Events) -> usize {
        let record: Arc<Mutex<Seen>> = Arc::default();
        self.seen.push(Arc::clone(&record));
        self.expected.push(HashSet::new());
        self.queued.push(HashSet::new());
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let mut record = record.lock().unwrap();
                match event {
                    Event::Message(m) => record.received.push(m.message_id),
                    Event::Sent { message_id, .. } => {
                        record.acknowledged.insert(message_id);
                    }
                    Event::Connection(ConnectionState::Connected) => record.connected += 1,
                    _ => {}
                }
            }
        });
        self.seen.len() - 1
    }

    /// Notes that device `from` queued `id` for the devices `to`.
    pub fn sent(&mut self, from: usize, id: MessageId, to: impl IntoIterator<Item = usize>) {
        self.queued[from].insert(id);
        for r in to {
            self.expected[r].insert(id);
        }
    }

    /// Logins of device `i` since recording started.
    pub fn logins(&self, i: usize) -> usize {
        self.seen[i].lock().unwrap().connected
    }

    /// Messages expected in all.
    pub fn total_expected(&self) -> usize {
        self.expected.iter().map(HashSet::len).sum()
    }

    fn complete(&self) -> bool {
        (0..self.seen.len()).all(|i| {
            let s = self.seen[i].lock().unwrap();
            let got: HashSet<_> = s.received.iter().copied().collect();
            self.queued[i].is_subset(&s.acknowledged) && self.expected[i].is_subset(&got)
        })
    }

    /// Waits up to `within` for every send to be acknowledged and every
    /// message delivered, then a little longer so a late duplicate shows,
    /// and asserts exactly once; `context` explains a miss (node logs).
    pub async fn assert_exactly_once(&self, within: Duration, context: impl Fn() -> String) {
        let deadline = tokio::time::Instant::now() + within;
        while !self.complete() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        for i in 0..self.seen.len() {
            let s = self.seen[i].lock().unwrap();
            let missing_acks = self.queued[i].difference(&s.acknowledged).count();
            assert_eq!(missing_acks, 0, "device {i}: sends never acknowledged");
            let mut counts: HashMap<MessageId, usize> = HashMap::new();
            for id in &s.received {
                *counts.entry(*id).or_default() += 1;
            }
            let missing = self.expected[i]
                .iter()
                .filter(|id| !counts.contains_key(*id))
                .count();
            let repeated = counts.values().filter(|n| **n > 1).count();
            let unexpected = counts
                .keys()
                .filter(|id| !self.expected[i].contains(*id))
                .count();
            assert_eq!(
                (missing, repeated, unexpected),
                (0, 0, 0),
                "device {i}: {} expected, {} distinct received{}",
                self.expected[i].len(),
                counts.len(),
                if missing > 0 {
                    format!("; {}", context())
                } else {
                    String::new()
                }
            );
        }
    }
}

//! The in-process [`Bus`]: a map from device id to the senders of its
//! connections' channels.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::nodes::{NodeSnapshot, NodeStatus, NodeTable, Scope};
use super::{Bus, BusEvent, PUSH_CHANNEL_CAPACITY, Subscription};
use crate::admin::rollups::Point;

/// Live connections per device: (subscription id, channel).
type Routes = HashMap<u64, Vec<(u64, mpsc::Sender<BusEvent>)>>;

/// In-process bus for a single server node.
#[derive(Debug, Default)]
pub struct LocalBus {
    next_id: AtomicU64,
    devices: Mutex<Routes>,
    nodes: Mutex<NodeTable>,
}

impl LocalBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    fn devices(&self) -> std::sync::MutexGuard<'_, Routes> {
        // The map stays consistent even if a holder panicked.
        self.devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Bus for LocalBus {
    fn subscribe(&self, device_id: u64) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(PUSH_CHANNEL_CAPACITY);
        self.devices().entry(device_id).or_default().push((id, tx));
        Subscription {
            device_id,
            id,
            events: rx,
        }
    }

    fn unsubscribe(&self, device_id: u64, subscription_id: u64) {
        let mut devices = self.devices();
        if let Some(list) = devices.get_mut(&device_id) {
            list.retain(|(id, _)| *id != subscription_id);
            if list.is_empty() {
                devices.remove(&device_id);
            }
        }
    }

    fn publish(&self, device_id: u64, event: BusEvent) -> usize {
        let mut devices = self.devices();
        let Some(list) = devices.get_mut(&device_id) else {
            return 0;
        };
        let mut reached = 0;
        // A full channel means the client is not reading its pushes: drop its
        // sender so the connection sees the channel close, disconnects, and
        // the client reconnects and fetches. The envelope stays in its queue.
        list.retain(|(_, tx)| match tx.try_send(event.clone()) {
            Ok(()) => {
                reached += 1;
                true
            }
            Err(_) => false,
        });
        if list.is_empty() {
            devices.remove(&device_id);
        }
        reached
    }

    fn publish_node(&self, snapshot: NodeSnapshot) {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .update(snapshot, crate::clock::system_now_ms());
    }

    fn nodes(&self, now_ms: u64) -> Vec<NodeStatus> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .rows(now_ms)
    }

    fn points(&self, scope: Scope<'_>, from: u64) -> Option<Vec<Point>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .points(scope, from)
    }
}

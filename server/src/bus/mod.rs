//! Who is connected where: routes pushes to a device's live connections
//! (SPEC.md §12.7 "Pushes").
//!
//! The [`Bus`] trait lets a multi-node deployment replace the in-process
//! [`local::LocalBus`] with [`redis::RedisBus`] (Redis pub/sub plus a
//! presence set per node, SPEC.md §18), so a push accepted on one node
//! reaches a device connected to another.
//! Pushes are best-effort notifications of durable state: an envelope stays
//! queued until acknowledged whether or not its push arrived. A connection
//! whose push channel is full is unsubscribed (its channel closes) and disconnects, so the client
//! reconnects and fetches instead of silently missing a push.
//!
//! Not owned here: what a connection does with an event (connection.rs).

pub mod local;
pub mod nodes;
pub mod redis;
pub mod redis_link;
pub mod target;

use microbot_protocol::transport::{ErrorCode, Push};
use tokio::sync::mpsc;

/// Capacity of each connection's push channel.
pub const PUSH_CHANNEL_CAPACITY: usize = 1024;

/// Something for one device's live connections.
#[derive(Clone, Debug)]
pub enum BusEvent {
    /// Forward this push to the client.
    Push(Box<Push>),
    /// Close the connection with this code (device removed, account deleted,
    /// push backlog).
    Disconnect(ErrorCode),
}

/// One connection's subscription; pass it back to [`Bus::unsubscribe`].
#[derive(Debug)]
pub struct Subscription {
    /// The device.
    pub device_id: u64,
    /// Unique id of this subscription.
    pub id: u64,
    /// Events for the connection.
    pub events: mpsc::Receiver<BusEvent>,
}

/// Routes events to the connections of a device.
pub trait Bus: Send + Sync + 'static {
    /// Registers a logged-in connection of `device_id`.
    fn subscribe(&self, device_id: u64) -> Subscription;
    /// Removes a subscription (idempotent).
    fn unsubscribe(&self, device_id: u64, subscription_id: u64);
    /// Sends an event to every live connection of the device; returns how
    /// many connections it reached (a shared bus adds the other nodes known
    /// to hold a connection of the device; 0 means offline everywhere).
    fn publish(&self, device_id: u64, event: BusEvent) -> usize;
    /// Whether the bus reaches the other nodes now (SPEC.md §18.6): always
    /// for the in-process bus; for a shared bus, while its link is up. A
    /// node whose bus is not linked reports itself not ready (`/readyz`).
    fn linked(&self) -> bool {
        true
    }
    /// This node's id on the bus (`local` for the in-process bus).
    fn node_id(&self) -> String {
        "local".to_owned()
    }
    /// Publishes this node's snapshot to every node, itself included
    /// (SPEC.md §18.7 Nodes).
    fn publish_node(&self, snapshot: nodes::NodeSnapshot);
    /// The nodes heard from, at `now_ms` (stale ones marked, silent ones
    /// dropped).
    fn nodes(&self, now_ms: u64) -> Vec<nodes::NodeStatus>;
    /// The chart points heard from `scope` since `from` (seconds), `None`
    /// for an unknown node ([`nodes::NodeTable::points`]).
    fn points(
        &self,
        scope: nodes::Scope<'_>,
        from: u64,
    ) -> Option<Vec<crate::admin::rollups::Point>>;
}

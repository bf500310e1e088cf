//! This node's part in the cluster view (SPEC.md §18.7 Nodes): every
//! [`PUBLISH_EVERY`], whether or not its admin listener runs, a node
//! publishes a snapshot of itself on the bus (bus/nodes.rs); the live view
//! lists every node heard from.
//!
//! Not owned here: the transport and the table of nodes (bus/), the
//! dashboard's rendering (`web/dashboard`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::bus::nodes::NodeSnapshot;
use crate::metrics;
use crate::state::{ServerState, now_ms};

/// Time between two snapshots of this node.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// This node's snapshot now.
pub async fn snapshot(state: &Arc<ServerState>) -> NodeSnapshot {
    let m = &state.metrics;
    let ws_open = u64::try_from(m.websocket_connections_open.get()).unwrap_or(0);
    let open = u64::try_from(m.connections_open.get()).unwrap_or(0);
    let ws_total = m.websocket_connections_total.get();
    let usage = metrics::process_usage();
    NodeSnapshot {
        id: state.bus.node_id(),
        address: state.config.listen.to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ready: metrics::readiness(state).is_ok(),
        connections_quic: open.saturating_sub(ws_open),
        connections_websocket: ws_open,
        connections_quic_total: m.connections_total.get().saturating_sub(ws_total),
        connections_websocket_total: ws_total,
        queued_envelopes: metrics::queued(state).await,
        memory_bytes: usage.map(|u| u.0),
        cpu_seconds: usage.map(|u| u.1),
        at_ms: now_ms(),
    }
}

/// Publishes this node's snapshot every [`PUBLISH_EVERY`] until `stop`.
pub async fn publish_loop(state: Arc<ServerState>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let snapshot = snapshot(&state).await;
                state.bus.publish_node(snapshot);
            }
            _ = stop.changed() => return,
        }
    }
}

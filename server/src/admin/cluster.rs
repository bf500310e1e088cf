//! This node's part in the cluster view (SPEC.md §18.7 Nodes): every
//! [`PUBLISH_EVERY`], whether or not its admin listener runs, a node
//! samples itself into its chart history (rollups.rs) and publishes a
//! snapshot of itself with the new per-second point on the bus
//! (bus/nodes.rs), and stores each minute it closes (minutes.rs); the live
//! view lists every node heard from, and the charts can show another node
//! or the cluster's total from those points and minutes.
//!
//! Not owned here: the transport and the table of nodes (bus/), the
//! dashboard's rendering (`web/dashboard`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::rollups::{Point, Rollups};
use crate::bus::nodes::NodeSnapshot;
use crate::metrics;
use crate::state::ServerState;

/// Time between two snapshots of this node.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// This node's snapshot now, with its newest chart point.
pub async fn snapshot(state: &Arc<ServerState>, point: Option<Point>) -> NodeSnapshot {
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
        at_ms: state.now_ms(),
        point,
    }
}

/// Samples this node into `rollups` and publishes its snapshot every
/// [`PUBLISH_EVERY`] until `stop`.
pub async fn publish_loop(
    state: Arc<ServerState>,
    rollups: Arc<Rollups>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (counters, gauges) = super::rollups::read(&state).await;
                let latency = state.metrics.take_delivery_latency();
                let point = rollups.record(state.now_ms() / 1000, counters, gauges, latency);
                let snapshot = snapshot(&state, point).await;
                state.bus.publish_node(snapshot);
                super::minutes::store_closed(&state, &rollups).await;
            }
            _ = stop.changed() => return,
        }
    }
}

//! The nodes of the cluster (SPEC.md §18.6, §18.7): each node publishes a
//! snapshot of itself about once a second on the bus (Redis when
//! configured, only itself in-process otherwise); every node keeps the
//! newest snapshot of each node it heard from, marks a node stale when it
//! has been silent for [`STALE_AFTER_MS`] and forgets it after
//! [`DROP_AFTER_MS`].
//!
//! A snapshot travels as JSON of at most [`MAX_SNAPSHOT_LEN`] bytes;
//! [`decode`] turns any bytes into a snapshot or a typed error, never a
//! panic. [`NodeTable`] is sans-I/O (the caller passes the time) and
//! bounded to [`MAX_NODES`] nodes. Counts only: no username, device id or
//! user address.
//!
//! Each node's snapshot carries its newest per-second chart point; the
//! table keeps the last [`POINTS_KEPT`] of them per node, so the charts can
//! show another node, or the cluster's total ([`NodeTable::points`]), over
//! that window (longer ranges: the minutes every node stores,
//! admin/minutes.rs).
//!
//! Not owned here: what goes into a snapshot (admin/cluster.rs), the
//! transport (local.rs, redis.rs).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::admin::rollups::Point;

/// Per-second points kept per node (15 minutes).
pub const POINTS_KEPT: usize = 900;

/// A node silent this long is shown as stale, ms.
pub const STALE_AFTER_MS: u64 = 5_000;
/// A node silent this long is forgotten, ms.
pub const DROP_AFTER_MS: u64 = 60_000;
/// Most nodes remembered (a newer node beyond this is ignored).
pub const MAX_NODES: usize = 256;
/// Longest encoded snapshot, bytes.
pub const MAX_SNAPSHOT_LEN: usize = 4096;
/// Longest node id or address text.
const MAX_TEXT: usize = 128;

/// What one node says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// The node's bus id (`local` without Redis).
    pub id: String,
    /// The address its clients connect to (the `listen` setting).
    pub address: String,
    /// Server version.
    pub version: String,
    /// `/readyz` would answer 200.
    pub ready: bool,
    /// Open QUIC connections.
    pub connections_quic: u64,
    /// Open WebSocket connections.
    pub connections_websocket: u64,
    /// Connections admitted since start, QUIC.
    pub connections_quic_total: u64,
    /// Connections admitted since start, WebSocket.
    pub connections_websocket_total: u64,
    /// Envelopes queued in all queues (one database: the same on every node).
    pub queued_envelopes: Option<u64>,
    /// Resident memory, bytes.
    pub memory_bytes: Option<u64>,
    /// CPU time since start, seconds.
    pub cpu_seconds: Option<f64>,
    /// When the node took the snapshot, ms since the epoch (its clock).
    pub at_ms: u64,
    /// Its newest per-second chart point, if it has one yet.
    #[serde(default)]
    pub point: Option<Point>,
}

/// A node as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    /// Its newest snapshot.
    #[serde(flatten)]
    pub snapshot: NodeSnapshot,
    /// When this node last heard from it, ms since the epoch (this node's clock).
    pub last_seen_ms: u64,
    /// Silent for [`STALE_AFTER_MS`] or longer.
    pub stale: bool,
}

/// Why bytes from the bus are not a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Longer than [`MAX_SNAPSHOT_LEN`].
    #[error("node snapshot longer than {MAX_SNAPSHOT_LEN} bytes")]
    TooLong,
    /// Not the JSON of a snapshot.
    #[error("malformed node snapshot")]
    Malformed,
    /// An empty or over-long id or address.
    #[error("node snapshot id or address is empty or too long")]
    BadText,
}

/// The bytes a snapshot travels as.
pub fn encode(snapshot: &NodeSnapshot) -> Vec<u8> {
    serde_json::to_vec(snapshot).unwrap_or_default()
}

/// A snapshot from the bus.
///
/// # Errors
/// [`SnapshotError`].
pub fn decode(bytes: &[u8]) -> Result<NodeSnapshot, SnapshotError> {
    if bytes.len() > MAX_SNAPSHOT_LEN {
        return Err(SnapshotError::TooLong);
    }
    let snapshot: NodeSnapshot =
        serde_json::from_slice(bytes).map_err(|_| SnapshotError::Malformed)?;
    if snapshot.id.is_empty() || snapshot.id.len() > MAX_TEXT || snapshot.address.len() > MAX_TEXT {
        return Err(SnapshotError::BadText);
    }
    Ok(snapshot)
}

/// Which points to chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One node, by id.
    Node(&'a str),
    /// The sum over every node heard from.
    Cluster,
}

/// One node: its newest snapshot, when it was heard, its recent points.
#[derive(Debug)]
struct Entry {
    snapshot: NodeSnapshot,
    seen: u64,
    points: VecDeque<Point>,
}

/// The newest snapshot of each node heard from.
#[derive(Debug, Default)]
pub struct NodeTable {
    nodes: HashMap<String, Entry>,
}

impl NodeTable {
    /// Keeps `snapshot` as its node's newest, heard at `now_ms`.
    pub fn update(&mut self, snapshot: NodeSnapshot, now_ms: u64) {
        self.prune(now_ms);
        if self.nodes.len() >= MAX_NODES && !self.nodes.contains_key(&snapshot.id) {
            return;
        }
        let entry = self
            .nodes
            .entry(snapshot.id.clone())
            .or_insert_with(|| Entry {
                snapshot: snapshot.clone(),
                seen: now_ms,
                points: VecDeque::new(),
            });
        if let Some(point) = snapshot.point
            && entry.points.back().is_none_or(|last| last.t < point.t)
        {
            if entry.points.len() >= POINTS_KEPT {
                entry.points.pop_front();
            }
            entry.points.push_back(point);
        }
        entry.snapshot = snapshot;
        entry.seen = now_ms;
    }

    /// The points of `scope` at or after `from` (seconds), ascending;
    /// `None` for an unknown node. The cluster's point of a second sums
    /// the nodes' rates, connections, CPU and memory; its queue depth and
    /// latencies are the largest node's (the queue is one database's, and
    /// percentiles do not add up).
    pub fn points(&self, scope: Scope<'_>, from: u64) -> Option<Vec<Point>> {
        match scope {
            Scope::Node(id) => Some(
                self.nodes
                    .get(id)?
                    .points
                    .iter()
                    .filter(|p| p.t >= from)
                    .copied()
                    .collect(),
            ),
            Scope::Cluster => {
                let mut by_second: BTreeMap<u64, Point> = BTreeMap::new();
                for entry in self.nodes.values() {
                    for p in entry.points.iter().filter(|p| p.t >= from) {
                        by_second
                            .entry(p.t)
                            .and_modify(|sum| add(sum, p))
                            .or_insert(*p);
                    }
                }
                Some(by_second.into_values().collect())
            }
        }
    }

    /// Forgets the nodes silent for [`DROP_AFTER_MS`].
    fn prune(&mut self, now_ms: u64) {
        self.nodes
            .retain(|_, e| now_ms.saturating_sub(e.seen) < DROP_AFTER_MS);
    }

    /// The nodes at `now_ms`, by id.
    pub fn rows(&mut self, now_ms: u64) -> Vec<NodeStatus> {
        self.prune(now_ms);
        let mut rows: Vec<NodeStatus> = self
            .nodes
            .values()
            .map(|e| NodeStatus {
                snapshot: e.snapshot.clone(),
                last_seen_ms: e.seen,
                stale: now_ms.saturating_sub(e.seen) >= STALE_AFTER_MS,
            })
            .collect();
        rows.sort_by(|a, b| a.snapshot.id.cmp(&b.snapshot.id));
        rows
    }
}

/// Adds node point `p` into the cluster's point `sum` of the same second.
fn add(sum: &mut Point, p: &Point) {
    let some_sum = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    let some_max = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    sum.messages_per_s += p.messages_per_s;
    sum.deliveries_per_s += p.deliveries_per_s;
    sum.logins_per_s += p.logins_per_s;
    sum.failed_logins_per_s += p.failed_logins_per_s;
    sum.connections += p.connections;
    sum.queued_envelopes = some_max(sum.queued_envelopes, p.queued_envelopes);
    sum.attachment_in_bytes_per_s += p.attachment_in_bytes_per_s;
    sum.attachment_out_bytes_per_s += p.attachment_out_bytes_per_s;
    sum.cpu_percent = some_sum(sum.cpu_percent, p.cpu_percent);
    sum.memory_bytes = some_sum(sum.memory_bytes, p.memory_bytes);
    sum.latency_p50_ms = some_max(sum.latency_p50_ms, p.latency_p50_ms);
    sum.latency_p99_ms = some_max(sum.latency_p99_ms, p.latency_p99_ms);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, quic: u64) -> NodeSnapshot {
        NodeSnapshot {
            id: id.to_owned(),
            address: "127.0.0.1:7447".to_owned(),
            version: "0.1.0".to_owned(),
            ready: true,
            connections_quic: quic,
            connections_websocket: 1,
            connections_quic_total: quic,
            connections_websocket_total: 1,
            queued_envelopes: Some(3),
            memory_bytes: None,
            cpu_seconds: Some(1.5),
            at_ms: 1,
            point: None,
        }
    }

    fn point(t: u64, connections: f64, p99: Option<f64>) -> Point {
        Point {
            t,
            messages_per_s: 1.0,
            deliveries_per_s: 2.0,
            logins_per_s: 0.0,
            failed_logins_per_s: 0.0,
            connections,
            queued_envelopes: Some(5.0),
            attachment_in_bytes_per_s: 0.0,
            attachment_out_bytes_per_s: 0.0,
            cpu_percent: Some(10.0),
            memory_bytes: None,
            latency_p50_ms: p99.map(|q| q / 2.0),
            latency_p99_ms: p99,
        }
    }

    #[test]
    fn points_per_node_are_bounded_and_the_cluster_sums_them() {
        let mut t = NodeTable::default();
        for s in 0..(POINTS_KEPT as u64 + 50) {
            let mut a = snap("a", 1);
            a.point = Some(point(s, 2.0, Some(10.0)));
            t.update(a, s * 1000);
        }
        // A repeated or older point is not kept twice.
        let mut again = snap("a", 1);
        again.point = Some(point(3, 9.0, None));
        t.update(again, 1000 * (POINTS_KEPT as u64 + 50));
        let a = t.points(Scope::Node("a"), 0).unwrap();
        assert_eq!(a.len(), POINTS_KEPT);
        assert_eq!(a.first().unwrap().t, 50);
        assert_eq!(t.points(Scope::Node("zz"), 0), None);
        let mut b = snap("b", 1);
        b.point = Some(point(POINTS_KEPT as u64 + 49, 3.0, Some(40.0)));
        t.update(b, 1000 * (POINTS_KEPT as u64 + 50));
        let total = t.points(Scope::Cluster, POINTS_KEPT as u64 + 48).unwrap();
        assert_eq!(total.len(), 2);
        let last = total[1];
        assert_eq!(last.connections, 5.0);
        assert_eq!(last.messages_per_s, 2.0);
        assert_eq!(last.queued_envelopes, Some(5.0));
        assert_eq!(last.cpu_percent, Some(20.0));
        assert_eq!(last.memory_bytes, None);
        assert_eq!(last.latency_p99_ms, Some(40.0));
        assert_eq!(total[0].connections, 2.0);
    }

    #[test]
    fn snapshots_round_trip_and_bad_bytes_are_errors() {
        let s = snap("a1", 2);
        assert_eq!(decode(&encode(&s)), Ok(s));
        assert_eq!(decode(b""), Err(SnapshotError::Malformed));
        assert_eq!(decode(b"{\"id\":1}"), Err(SnapshotError::Malformed));
        assert_eq!(
            decode(&vec![b' '; MAX_SNAPSHOT_LEN + 1]),
            Err(SnapshotError::TooLong)
        );
        assert_eq!(decode(&encode(&snap("", 0))), Err(SnapshotError::BadText));
        assert_eq!(
            decode(&encode(&snap(&"x".repeat(200), 0))),
            Err(SnapshotError::BadText)
        );
    }

    #[test]
    fn silent_nodes_turn_stale_then_go() {
        let mut t = NodeTable::default();
        t.update(snap("b", 1), 1000);
        t.update(snap("a", 4), 1000);
        t.update(snap("a", 5), 2000);
        let rows = t.rows(2000);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].snapshot.id, "a");
        assert_eq!(rows[0].snapshot.connections_quic, 5);
        assert!(!rows[1].stale);
        let rows = t.rows(1000 + STALE_AFTER_MS);
        assert!(rows[1].stale && !rows[0].stale);
        let rows = t.rows(2000 + DROP_AFTER_MS);
        assert!(rows.is_empty());
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = NodeTable::default();
        for i in 0..(MAX_NODES + 10) {
            t.update(snap(&format!("n{i}"), 0), 5);
        }
        assert_eq!(t.rows(5).len(), MAX_NODES);
        // A known node still updates.
        t.update(snap("n0", 9), 6);
        assert_eq!(
            t.rows(6)
                .iter()
                .find(|r| r.snapshot.id == "n0")
                .map(|r| r.snapshot.connections_quic),
            Some(9)
        );
    }
}

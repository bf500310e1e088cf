//! The charts' history beyond what the bus keeps (SPEC.md §18.7 Charts):
//! every node stores its own closed minutes (rollups.rs) in its database,
//! which a cluster shares, and the charts of another node, or of the
//! cluster's total, over a range longer than the bus's per-second window
//! (bus/nodes.rs, 15 minutes) are folded from every node's stored minutes.
//! Minutes are kept [`rollups::MAX_RANGE_SECS`] (30 days).
//!
//! Reading goes by chunks of [`CHUNK_MINUTES`] so a 30-day answer over
//! many nodes never holds more than one chunk of rows; a stored minute
//! that does not read back (another build's, a damaged row) is skipped.
//!
//! Not owned here: the arithmetic (rollups.rs), the route (live.rs), the
//! table (storage/admin.rs).

use std::sync::Arc;

use super::error::AdminError;
use super::rollups::{self, MinuteFold, MinuteRollup, Rollups, Series};
use crate::bus::nodes::Scope;
use crate::state::ServerState;
use crate::storage::admin::NodeMinuteRecord;

/// Minutes read per storage call (6 hours).
pub const CHUNK_MINUTES: u64 = 360;

/// Stores the minutes this node closed since the last call; a failure is
/// logged and those minutes are not retried (the charts show a gap).
pub async fn store_closed(state: &Arc<ServerState>, rollups: &Rollups) {
    let closed = rollups.take_closed();
    if closed.is_empty() {
        return;
    }
    let node = state.bus.node_id();
    let stored = async {
        for rollup in closed {
            let record = NodeMinuteRecord {
                node: node.clone(),
                minute: rollup.minute(),
                rollup: rollup.encode(),
            };
            let keep_from = rollup.minute().saturating_sub(rollups::MAX_RANGE_SECS);
            state.storage.put_node_minute(&record, keep_from).await?;
        }
        Ok::<(), crate::storage::StorageError>(())
    }
    .await;
    if let Err(error) = stored {
        tracing::warn!(%error, "could not store this node's chart minutes");
    }
}

/// The series of `scope` over the `range_secs` before `now_ms`, folded
/// from the stored minutes; `None` when a node has no stored minute in
/// the range.
///
/// # Errors
/// [`AdminError::Storage`] when the database fails.
pub async fn series(
    state: &Arc<ServerState>,
    scope: Scope<'_>,
    range_secs: u64,
    now_ms: u64,
) -> Result<Option<Series>, AdminError> {
    let now = now_ms / 1000;
    let mut fold = MinuteFold::new(now, range_secs);
    let node = match scope {
        Scope::Node(id) => Some(id.to_owned()),
        Scope::Cluster => None,
    };
    let mut any = false;
    let mut from = fold.first_minute();
    while from <= now {
        let to = from + CHUNK_MINUTES * 60;
        let rows = state
            .storage
            .node_minutes(node.as_deref(), from, to)
            .await?;
        for row in rows {
            match MinuteRollup::decode(&row.rollup) {
                Ok(rollup) if rollup.minute() == row.minute => {
                    any = true;
                    fold.add(&rollup);
                }
                Ok(_) => {
                    tracing::debug!(node = %row.node, "a stored chart minute names another time")
                }
                Err(error) => {
                    tracing::debug!(%error, node = %row.node, "a stored chart minute does not read")
                }
            }
        }
        from = to;
    }
    if !any && node.is_some() {
        return Ok(None);
    }
    Ok(Some(fold.finish(now_ms)))
}

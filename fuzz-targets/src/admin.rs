//! Admin-side inputs (SPEC.md §18.7): `admin_input` feeds arbitrary bytes
//! to the node-snapshot decoder a node runs on every message of kind 6 on
//! the Redis bus (and the snapshots it accepts to the table of nodes), and
//! as text to the dashboard API's checks of a rate-limit name and of a
//! chart range, and to the reader of a stored chart minute (a row of
//! `node_minutes`, written by another node of the cluster).
//!
//! Invariants: a decoded snapshot has a non-empty id, decodes again from
//! its encoding, and the table lists it (stale, since heard long ago); an
//! accepted limit name is one of `limits::EDITABLE`; an accepted range is
//! within 1 minute ..= 30 days; a stored minute that reads starts on a
//! minute, reads again from its encoding, and folds into a series of at
//! most one point whose rates are finite.

use microbot_server::testing::admin::{rate_limits, rollups};
use microbot_server::testing::bus::nodes::{self, NodeTable, STALE_AFTER_MS};
use microbot_server::testing::limits::EDITABLE;

/// The target.
pub fn admin_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(name) = rate_limits::editable(&text) {
        assert!(EDITABLE.iter().any(|e| e.name == name));
    }
    if let Ok(secs) = rollups::parse_range(&text) {
        assert!((rollups::MIN_RANGE_SECS..=rollups::MAX_RANGE_SECS).contains(&secs));
    }
    if let Ok(minute) = rollups::MinuteRollup::decode(&text) {
        assert_eq!(minute.minute() % 60, 0);
        let again = rollups::MinuteRollup::decode(&minute.encode())
            .unwrap_or_else(|e| panic!("a stored minute does not read again: {e}"));
        assert_eq!(again, minute);
        let now = minute.minute().saturating_add(60);
        let mut fold = rollups::MinuteFold::new(now, 3600);
        fold.add(&minute);
        fold.add(&minute);
        let series = fold.finish(now.saturating_mul(1000));
        assert!(series.t.len() <= 1);
        assert!(series.messages_per_s.iter().all(|r| r.is_finite()));
    }
    let Ok(snapshot) = nodes::decode(data) else {
        return;
    };
    assert!(!snapshot.id.is_empty());
    let again = nodes::decode(&nodes::encode(&snapshot));
    // JSON floats may not survive a round trip bit for bit (NaN is not JSON):
    // compare everything else.
    let again = again.unwrap_or_else(|e| panic!("a decoded snapshot does not decode again: {e}"));
    assert_eq!(again.id, snapshot.id);
    assert_eq!(again.connections_quic, snapshot.connections_quic);
    let mut table = NodeTable::default();
    table.update(snapshot, 1);
    let rows = table.rows(1 + STALE_AFTER_MS);
    assert_eq!(rows.len(), 1);
    assert!(rows.iter().all(|r| r.stale));
}

//! The dashboard's live view (SPEC.md §18.7): `GET /admin/api/overview`
//! answers one snapshot of this node with the list of every node of the
//! cluster (their own snapshots, through the bus), `GET /admin/api/live` pushes one
//! every second as Server-Sent Events (`event: overview`, followed by
//! `event: sample` with the newest per-second chart point), until the
//! session ends; `GET /admin/api/series?range=5m` answers the charts'
//! history over a range. Counts only: no username, device id or address
//! of a user.
//!
//! Not owned here: the counters (metrics.rs), the history (rollups.rs).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};

use super::api::{Api, reader};
use super::error::AdminError;
use super::rollups::{self, Series};
use crate::bus::nodes::{NodeStatus, POINTS_KEPT, Scope};
use crate::metrics;
use crate::state::ServerState;

/// Time between two pushed snapshots.
pub const PUSH_EVERY: Duration = Duration::from_secs(1);

/// One node's state as the dashboard shows it.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// When the snapshot was taken, ms since the epoch.
    pub at_ms: u64,
    /// This node.
    pub node: NodeRow,
    /// Every node of the cluster heard from lately, this one included
    /// (stale ones marked).
    pub nodes: Vec<NodeStatus>,
    /// Open connections by transport.
    pub connections: Vec<TransportRow>,
    /// Refusals by limit since start.
    pub rate_limited: Vec<LimitRow>,
    /// The IP rules in force.
    pub ip_rules: Vec<IpRuleRow>,
    /// Counters since start.
    pub totals: Totals,
}

/// A node and its health.
#[derive(Debug, Serialize)]
pub struct NodeRow {
    /// `local` without Redis, else the bus node id (hex).
    pub id: String,
    /// Server version.
    pub version: &'static str,
    /// `/readyz` would answer 200.
    pub ready: bool,
    /// Resident memory, bytes.
    pub memory_bytes: Option<u64>,
    /// CPU time since start, seconds.
    pub cpu_seconds: Option<f64>,
    /// Envelopes queued in all queues (cluster-wide: one database).
    pub queued_envelopes: Option<u64>,
}

/// Connections of one transport.
#[derive(Debug, Serialize)]
pub struct TransportRow {
    /// `quic` or `websocket`.
    pub transport: &'static str,
    /// Open now.
    pub open: i64,
    /// Admitted since start.
    pub total: u64,
}

/// Refusals by one limit.
#[derive(Debug, Serialize)]
pub struct LimitRow {
    /// Limit name (SPEC.md §18.3).
    pub limit: &'static str,
    /// Refusals since start.
    pub hits: u64,
}

/// One IP rule.
#[derive(Debug, Serialize)]
pub struct IpRuleRow {
    /// `allow` or `deny`.
    pub kind: &'static str,
    /// CIDR block.
    pub cidr: String,
    /// `config` (the server's settings) or `dashboard` (editable there).
    pub source: &'static str,
}

/// Counters since start.
#[derive(Debug, Serialize)]
pub struct Totals {
    /// Envelopes accepted.
    pub messages_in: u64,
    /// Envelopes delivered.
    pub messages_out: u64,
    /// Successful logins.
    pub logins_ok: u64,
    /// Failed logins.
    pub logins_failed: u64,
    /// Connections refused.
    pub connections_refused: u64,
    /// Attachment bytes uploaded.
    pub attachment_bytes_in: u64,
    /// Attachment bytes downloaded.
    pub attachment_bytes_out: u64,
}

/// The snapshot of this node now.
pub async fn overview(state: &Arc<ServerState>) -> Overview {
    let m = &state.metrics;
    let ws_open = m.websocket_connections_open.get();
    let ws_total = m.websocket_connections_total.get();
    let usage = metrics::process_usage();
    let config = &state.config;
    let dashboard = state.limits.dashboard_rules();
    let rules = [
        ("deny", "config", &config.deny_ips),
        ("allow", "config", &config.allow_ips),
        ("deny", "dashboard", &dashboard.deny),
        ("allow", "dashboard", &dashboard.allow),
    ];
    let ip_rules = rules
        .into_iter()
        .flat_map(|(kind, source, nets)| {
            nets.iter().map(move |n| IpRuleRow {
                kind,
                cidr: n.to_string(),
                source,
            })
        })
        .collect();
    Overview {
        at_ms: state.now_ms(),
        node: NodeRow {
            id: state.bus.node_id(),
            version: env!("CARGO_PKG_VERSION"),
            ready: metrics::readiness(state).is_ok(),
            memory_bytes: usage.map(|u| u.0),
            cpu_seconds: usage.map(|u| u.1),
            queued_envelopes: metrics::queued(state).await,
        },
        connections: vec![
            TransportRow {
                transport: "quic",
                open: m.connections_open.get().saturating_sub(ws_open),
                total: m.connections_total.get().saturating_sub(ws_total),
            },
            TransportRow {
                transport: "websocket",
                open: ws_open,
                total: ws_total,
            },
        ],
        rate_limited: m
            .rate_limited_counts()
            .into_iter()
            .map(|(limit, hits)| LimitRow { limit, hits })
            .collect(),
        nodes: state.bus.nodes(state.now_ms()),
        ip_rules,
        totals: Totals {
            messages_in: m.messages_in.get(),
            messages_out: m.messages_out.get(),
            logins_ok: m.logins_ok.get(),
            logins_failed: m.logins_failed.get(),
            connections_refused: m.connections_refused.get(),
            attachment_bytes_in: m.attachment_bytes_in.get(),
            attachment_bytes_out: m.attachment_bytes_out.get(),
        },
    }
}

/// `GET /admin/api/overview`.
pub(super) async fn get_overview(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<axum::Json<Overview>, AdminError> {
    reader(&api, &headers).await?;
    Ok(axum::Json(overview(&api.state).await))
}

/// `GET /admin/api/live`: snapshots as Server-Sent Events while the
/// session lasts.
pub(super) async fn live(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AdminError> {
    reader(&api, &headers).await?;
    let stream = futures_util::stream::unfold(
        (api, headers, true, None),
        |(api, headers, first, sent): (Api, HeaderMap, bool, Option<u64>)| async move {
            if !first {
                tokio::time::sleep(PUSH_EVERY).await;
                // A session that ended (logout, expiry, admin removed) stops the feed.
                reader(&api, &headers).await.ok()?;
            }
            let snapshot = overview(&api.state).await;
            let mut events = vec![json_event("overview", &snapshot)];
            let mut sent = sent;
            if let Some(point) = api.rollups.latest()
                && sent != Some(point.t)
            {
                sent = Some(point.t);
                events.push(json_event("sample", &point));
            }
            let batch = futures_util::stream::iter(events.into_iter().map(Ok));
            Some((batch, (api, headers, false, sent)))
        },
    )
    .flatten();
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn json_event(name: &'static str, value: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|_| Event::default().event("error").data("serialisation failed"))
}

/// The query of `GET /admin/api/series`.
#[derive(Deserialize)]
pub(super) struct SeriesQuery {
    /// `300`, `5m`, `6h`, `30d` (default `5m`).
    range: Option<String>,
    /// A node's id, or `cluster` (default: this node).
    node: Option<String>,
}

/// `GET /admin/api/series?range=…&node=…`: the charts' history of this
/// node (its whole history, from memory), of another node or of the
/// cluster's total: up to [`POINTS_KEPT`] seconds from the per-second
/// points heard on the bus, longer ranges from the minutes every node
/// stores (minutes.rs).
pub(super) async fn series(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<Series>, AdminError> {
    reader(&api, &headers).await?;
    let Query(query) = query.map_err(|e| AdminError::BadRequest(e.body_text()))?;
    let range = match query.range.as_deref() {
        None => 300,
        Some(text) => {
            rollups::parse_range(text).map_err(|e| AdminError::BadRequest(e.to_string()))?
        }
    };
    let own = api.state.bus.node_id();
    let scope = match query.node.as_deref() {
        None => return Ok(axum::Json(api.rollups.series(range))),
        Some(id) if id == own => return Ok(axum::Json(api.rollups.series(range))),
        Some("cluster") => Scope::Cluster,
        Some(id) => Scope::Node(id),
    };
    let now_ms = api.state.now_ms();
    let unknown = || AdminError::NotFound("no such node (or no history of it)".to_owned());
    if range > POINTS_KEPT as u64 {
        let series = super::minutes::series(&api.state, scope, range, now_ms).await?;
        return series.map(axum::Json).ok_or_else(unknown);
    }
    let from = (now_ms / 1000).saturating_sub(range) + 1;
    let points = api.state.bus.points(scope, from).ok_or_else(unknown)?;
    Ok(axum::Json(Series::from_points(range, now_ms, &points)))
}

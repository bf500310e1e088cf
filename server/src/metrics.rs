//! Prometheus metrics, `/healthz` (the process answers) and `/readyz` (the
//! node may be sent traffic: its bus is linked) on a separate HTTP port
//! (SPEC.md §18.3, §18.6).
//!
//! Counters, gauges and histograms are hand-rolled over atomics (no metrics
//! crate: a dozen series do not need one), rendered in the Prometheus text
//! exposition format 0.0.4; the admin listener (admin/) serves it on
//! `GET /metrics`. Off unless `metrics_listen` is configured.
//!
//! `microbot_queued_envelopes` is a count over every queue: it is taken at
//! most once per [`QUEUED_MAX_AGE`] and served from that cache meanwhile, so
//! a scraper (or many) cannot make the server walk all envelopes per scrape.
//!
//! No label ever carries a username, device id, address or payload: labels
//! are request kinds, limit names and results only.
//!
//! Not owned here: where the values are recorded (each handler).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::state::{ServerState, now_ms};

pub mod latency;
mod node;

pub use latency::LatencySketch;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed upper bounds (cumulative on render).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_bits: AtomicU64,
}

/// Request latency buckets, seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Delivery latency buckets, seconds (a wait on the server may be long:
/// the recipient was offline).
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0, 86_400.0,
];
/// Fan-out size buckets, recipient devices.
pub const FAN_OUT_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];

impl Histogram {
    /// An empty histogram.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b)
            && let Some(c) = self.counts.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (bound, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = f64::from_bits(self.sum_bits.load(Ordering::Relaxed));
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    /// Open QUIC connections.
    pub connections_open: Gauge,
    /// Connections accepted since start.
    pub connections_total: Counter,
    /// Connections refused (deny list, caps).
    pub connections_refused: Counter,
    /// Open WebSocket connections (also counted in `connections_open`).
    pub websocket_connections_open: Gauge,
    /// WebSocket connections accepted (also counted in `connections_total`).
    pub websocket_connections_total: Counter,
    /// Successful device logins.
    pub logins_ok: Counter,
    /// Failed logins and credential checks.
    pub logins_failed: Counter,
    /// Envelopes accepted (one per recipient of a send; one per group send).
    pub messages_in: Counter,
    /// Envelopes handed to devices (pushes and fetches).
    pub messages_out: Counter,
    /// Recipient devices per group send.
    pub fan_out: Histogram,
    /// Group changes applied.
    pub group_changes: Counter,
    /// Attachment bytes committed from uploads.
    pub attachment_bytes_in: Counter,
    /// Attachment bytes sent to downloads.
    pub attachment_bytes_out: Counter,
    /// How long delivered envelopes waited (acceptance to a push or fetch).
    pub delivery_latency: Histogram,
    /// Webhook notifications delivered.
    pub webhooks_sent: Counter,
    /// Webhook attempts that failed.
    pub webhooks_failed: Counter,
    /// Webhook notifications dropped because the channel was full.
    pub webhooks_dropped: Counter,
    /// Webhook notifications given up after their last attempt failed.
    pub webhooks_given_up: Counter,
    latency: Mutex<BTreeMap<&'static str, Arc<Histogram>>>,
    rate_limited: Mutex<BTreeMap<&'static str, u64>>,
    /// Waits since the chart sampler last took them.
    pending_latency: Mutex<LatencySketch>,
    /// The last count of queued envelopes and when it was taken.
    queued: tokio::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            connections_open: Gauge::default(),
            connections_total: Counter::default(),
            connections_refused: Counter::default(),
            websocket_connections_open: Gauge::default(),
            websocket_connections_total: Counter::default(),
            logins_ok: Counter::default(),
            logins_failed: Counter::default(),
            messages_in: Counter::default(),
            messages_out: Counter::default(),
            fan_out: Histogram::new(FAN_OUT_BUCKETS),
            group_changes: Counter::default(),
            attachment_bytes_in: Counter::default(),
            attachment_bytes_out: Counter::default(),
            delivery_latency: Histogram::new(DELIVERY_BUCKETS),
            webhooks_sent: Counter::default(),
            webhooks_failed: Counter::default(),
            webhooks_dropped: Counter::default(),
            webhooks_given_up: Counter::default(),
            latency: Mutex::new(BTreeMap::new()),
            rate_limited: Mutex::new(BTreeMap::new()),
            pending_latency: Mutex::new(LatencySketch::default()),
            queued: tokio::sync::Mutex::new(None),
        }
    }
}

impl Metrics {
    /// Records how long one request of `kind` took.
    pub fn observe_request(&self, kind: &'static str, elapsed: Duration) {
        let histogram = {
            let mut map = self
                .latency
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(
                map.entry(kind)
                    .or_insert_with(|| Arc::new(Histogram::new(LATENCY_BUCKETS))),
            )
        };
        histogram.observe(elapsed.as_secs_f64());
    }

    /// Records that an envelope accepted at `accepted_ms` was handed to a
    /// recipient connection at `now_ms` (SPEC.md §18.3 delivery latency).
    pub fn observe_delivery(&self, accepted_ms: u64, now_ms: u64) {
        self.observe_deliveries(std::iter::once(accepted_ms), now_ms);
    }

    /// [`Metrics::observe_delivery`] for a batch handed over together (a
    /// fetch page): the chart sketch is locked once for all of them.
    pub fn observe_deliveries(&self, accepted_ms: impl IntoIterator<Item = u64>, now_ms: u64) {
        let mut pending = self
            .pending_latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for accepted in accepted_ms {
            let waited = now_ms.saturating_sub(accepted);
            #[allow(clippy::cast_precision_loss)]
            self.delivery_latency.observe(waited as f64 / 1000.0);
            pending.add(waited);
        }
    }

    /// The waits recorded since the last call (the chart sampler's).
    pub fn take_delivery_latency(&self) -> LatencySketch {
        std::mem::take(
            &mut *self
                .pending_latency
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Counts one refusal by the named limit.
    pub fn rate_limited(&self, limit: &'static str) {
        let mut map = self
            .rate_limited
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(limit).or_default() += 1;
    }

    /// Refusals so far by limit name, for the dashboard.
    pub fn rate_limited_counts(&self) -> Vec<(&'static str, u64)> {
        self.rate_limited
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// The text exposition; `queued` is the current total queue depth.
    pub fn render(&self, queued: Option<u64>) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "microbot_connections_total",
            "Connections accepted (QUIC and WebSocket).",
            self.connections_total.get(),
        );
        counter(
            &mut out,
            "microbot_connections_refused_total",
            "Connections refused by IP rules or caps.",
            self.connections_refused.get(),
        );
        let _ = writeln!(
            out,
            "# HELP microbot_logins_total Device logins and credential checks by result.\n# TYPE microbot_logins_total counter\nmicrobot_logins_total{{result=\"ok\"}} {}\nmicrobot_logins_total{{result=\"failed\"}} {}",
            self.logins_ok.get(),
            self.logins_failed.get()
        );
        counter(
            &mut out,
            "microbot_messages_in_total",
            "Envelopes accepted from senders.",
            self.messages_in.get(),
        );
        counter(
            &mut out,
            "microbot_messages_out_total",
            "Envelopes delivered to devices (push or fetch).",
            self.messages_out.get(),
        );
        counter(
            &mut out,
            "microbot_group_changes_total",
            "Group changes applied.",
            self.group_changes.get(),
        );
        counter(
            &mut out,
            "microbot_attachment_bytes_in_total",
            "Attachment bytes committed from uploads.",
            self.attachment_bytes_in.get(),
        );
        counter(
            &mut out,
            "microbot_attachment_bytes_out_total",
            "Attachment bytes sent to downloads.",
            self.attachment_bytes_out.get(),
        );
        counter(
            &mut out,
            "microbot_webhooks_sent_total",
            "Webhook notifications delivered.",
            self.webhooks_sent.get(),
        );
        counter(
            &mut out,
            "microbot_webhooks_failed_total",
            "Webhook attempts that failed.",
            self.webhooks_failed.get(),
        );
        counter(
            &mut out,
            "microbot_webhooks_dropped_total",
            "Webhook notifications dropped (channel full).",
            self.webhooks_dropped.get(),
        );
        let _ = writeln!(
            out,
            "# HELP microbot_connections_open Open connections (QUIC and WebSocket).\n# TYPE microbot_connections_open gauge\nmicrobot_connections_open {}",
            self.connections_open.get()
        );
        let ws_open = self.websocket_connections_open.get();
        let ws_total = self.websocket_connections_total.get();
        let _ = writeln!(
            out,
            "# HELP microbot_transport_connections_open Open connections by transport.\n# TYPE microbot_transport_connections_open gauge\nmicrobot_transport_connections_open{{transport=\"quic\"}} {}\nmicrobot_transport_connections_open{{transport=\"websocket\"}} {ws_open}",
            self.connections_open.get().saturating_sub(ws_open)
        );
        let _ = writeln!(
            out,
            "# HELP microbot_transport_connections_total Connections admitted by transport.\n# TYPE microbot_transport_connections_total counter\nmicrobot_transport_connections_total{{transport=\"quic\"}} {}\nmicrobot_transport_connections_total{{transport=\"websocket\"}} {ws_total}",
            self.connections_total.get().saturating_sub(ws_total)
        );
        if let Some(queued) = queued {
            let _ = writeln!(
                out,
                "# HELP microbot_queued_envelopes Envelopes waiting in all device queues.\n# TYPE microbot_queued_envelopes gauge\nmicrobot_queued_envelopes {queued}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP microbot_rate_limited_total Requests refused by a rate limit, by limit.\n# TYPE microbot_rate_limited_total counter"
        );
        for (limit, n) in self
            .rate_limited
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(out, "microbot_rate_limited_total{{limit=\"{limit}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP microbot_group_fan_out Recipient devices per group send.\n# TYPE microbot_group_fan_out histogram"
        );
        self.fan_out.render(&mut out, "microbot_group_fan_out", "");
        let _ = writeln!(
            out,
            "# HELP microbot_delivery_latency_seconds Time from an envelope's acceptance to its hand-over to a recipient connection (push or fetch).\n# TYPE microbot_delivery_latency_seconds histogram"
        );
        self.delivery_latency
            .render(&mut out, "microbot_delivery_latency_seconds", "");
        let _ = writeln!(
            out,
            "# HELP microbot_request_duration_seconds Request handling time by request kind.\n# TYPE microbot_request_duration_seconds histogram"
        );
        let latency: Vec<_> = self
            .latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(k, h)| (*k, Arc::clone(h)))
            .collect();
        for (kind, h) in latency {
            h.render(
                &mut out,
                "microbot_request_duration_seconds",
                &format!("kind=\"{kind}\""),
            );
        }
        out
    }
}

/// How stale `microbot_queued_envelopes` may be: the queues are counted at
/// most once per this period, however often `/metrics` is scraped.
pub const QUEUED_MAX_AGE: Duration = Duration::from_secs(5);

/// Envelopes queued in all device queues, counted at most once per
/// [`QUEUED_MAX_AGE`] (concurrent scrapes share one count); `None` when
/// the storage cannot count.
async fn queued_envelopes(state: &Arc<ServerState>) -> Option<u64> {
    let mut cached = state.metrics.queued.lock().await;
    if let Some((at, n)) = *cached
        && at.elapsed() < QUEUED_MAX_AGE
    {
        return Some(n);
    }
    let n = state
        .blocking(|s| Ok(s.storage.total_queued(now_ms())?))
        .await
        .ok()?;
    *cached = Some((std::time::Instant::now(), n));
    Some(n)
}

/// The whole `/metrics` body: the counters and the node series.
pub async fn exposition(state: &Arc<ServerState>) -> String {
    let queued = queued_envelopes(state).await;
    let mut body = state.metrics.render(queued);
    node::render(&mut body, state);
    body
}

/// Envelopes queued in all device queues (cached as for `/metrics`).
pub async fn queued(state: &Arc<ServerState>) -> Option<u64> {
    queued_envelopes(state).await
}

/// Resident memory (bytes) and CPU time (seconds) of this process, where
/// `/proc/self` exists.
pub fn process_usage() -> Option<(u64, f64)> {
    node::usage()
}

/// Whether this node may be sent traffic (`/readyz`); `Err` carries the
/// reason.
///
/// # Errors
/// The reason the node is not ready.
pub fn readiness(state: &ServerState) -> Result<(), &'static str> {
    node::readiness(state)
}

/// Name of a request kind, for the latency histogram.
pub fn request_kind(request: &microbot_protocol::transport::client_frame::Request) -> &'static str {
    use microbot_protocol::transport::client_frame::Request as R;
    match request {
        R::Hello(_) => "hello",
        R::Register(_) => "register",
        R::ConfirmRegistration(_) => "confirm_registration",
        R::EnrolDevice(_) => "enrol_device",
        R::Challenge(_) => "challenge",
        R::Login(_) => "login",
        R::ChangePassword(_) => "change_password",
        R::RemoveDevice(_) => "remove_device",
        R::DeleteAccount(_) => "delete_account",
        R::ListDevices(_) => "list_devices",
        R::UploadDeviceList(_) => "upload_device_list",
        R::UploadPrekeys(_) => "upload_prekeys",
        R::FetchPrekeys(_) => "fetch_prekeys",
        R::PrekeyStatus(_) => "prekey_status",
        R::Send(_) => "send",
        R::FetchEnvelopes(_) => "fetch_envelopes",
        R::AckEnvelopes(_) => "ack_envelopes",
        R::SendGroup(_) => "send_group",
        R::CreateGroup(_) => "create_group",
        R::AddGroupMembers(_) => "add_group_members",
        R::RemoveGroupMembers(_) => "remove_group_members",
        R::LeaveGroup(_) => "leave_group",
        R::SetGroupRole(_) => "set_group_role",
        R::GetGroup(_) => "get_group",
        R::SetGroupMetadata(_) => "set_group_metadata",
        R::AttachmentUpload(_) => "attachment_upload",
        R::AttachmentDownload(_) => "attachment_download",
        R::CreateProvisioningSlot(_) => "create_provisioning_slot",
        R::FetchProvisioningSlot(_) => "fetch_provisioning_slot",
        R::PutProvisioningSlot(_) => "put_provisioning_slot",
        R::GetSenderCertificate(_) => "get_sender_certificate",
        R::SetUnidentifiedAccess(_) => "set_unidentified_access",
        R::SendSealed(_) => "send_sealed",
    }
}

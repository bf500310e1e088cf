//! Prometheus metrics, `/healthz` (the process answers) and `/readyz` (the
//! node may be sent traffic: its bus is linked) on a separate HTTP port
//! (SPEC.md §18.3, §18.6).
//!
//! The series live in a `prometheus-client` registry (the Prometheus
//! project's Rust client) and are encoded by its Prometheus text format
//! 0.0.4 encoder; the admin listener (admin/) serves it on `GET /metrics`.
//! Off unless `metrics_listen` is configured. Values read at scrape time
//! (the queue depth, the split by transport, the bus link, the process)
//! are encoded by a per-scrape [`Collector`] ([`Scrape`]), so each is
//! taken once per scrape and none is kept twice.
//!
//! `microbot_queued_envelopes` is a count over every queue: it is taken at
//! most once per [`QUEUED_MAX_AGE`] and served from that cache meanwhile, so
//! a scraper (or many) cannot make the server walk all envelopes per scrape.
//!
//! No label ever carries a username, device id, address or payload: labels
//! are request kinds, limit names and results only.
//!
//! Not owned here: where the values are recorded (each handler).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::state::ServerState;

pub mod latency;
mod node;

pub use latency::LatencySketch;

/// A monotonically increasing count (a `prometheus-client` counter).
#[derive(Clone, Debug, Default)]
pub struct Counter(prometheus_client::metrics::counter::Counter);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down (a `prometheus-client` gauge).
#[derive(Clone, Debug, Default)]
pub struct Gauge(prometheus_client::metrics::gauge::Gauge);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.0.dec();
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// A histogram with fixed upper bounds (a `prometheus-client` histogram).
#[derive(Clone, Debug)]
pub struct Histogram(prometheus_client::metrics::histogram::Histogram);

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
        Self(prometheus_client::metrics::histogram::Histogram::new(
            bounds.iter().copied(),
        ))
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        self.0.observe(value);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0.count()
    }
}

/// One label, `name="value"`, with a value known at compile time.
type Label = [(&'static str, &'static str); 1];

fn request_histogram() -> prometheus_client::metrics::histogram::Histogram {
    Histogram::new(LATENCY_BUCKETS).0
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
    /// QUIC Retry packets sent: attempts asked to prove their address
    /// (those that bring a token from an earlier connection are not).
    pub quic_retries: Counter,
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
    request_duration: Family<
        Label,
        prometheus_client::metrics::histogram::Histogram,
        fn() -> prometheus_client::metrics::histogram::Histogram,
    >,
    rate_limited: Family<Label, prometheus_client::metrics::counter::Counter>,
    /// The limit names that refused something, for the dashboard's list.
    rate_limited_names: Mutex<BTreeSet<&'static str>>,
    /// Waits since the chart sampler last took them.
    pending_latency: Mutex<LatencySketch>,
    /// The last count of queued envelopes and when it was taken.
    queued: tokio::sync::Mutex<Option<(std::time::Instant, u64)>>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let logins: Family<Label, prometheus_client::metrics::counter::Counter> = Family::default();
        let mut metrics = Self {
            connections_open: Gauge::default(),
            connections_total: Counter::default(),
            connections_refused: Counter::default(),
            quic_retries: Counter::default(),
            websocket_connections_open: Gauge::default(),
            websocket_connections_total: Counter::default(),
            logins_ok: Counter(logins.get_or_create_owned(&[("result", "ok")])),
            logins_failed: Counter(logins.get_or_create_owned(&[("result", "failed")])),
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
            request_duration: Family::new_with_constructor(request_histogram),
            rate_limited: Family::default(),
            rate_limited_names: Mutex::new(BTreeSet::new()),
            pending_latency: Mutex::new(LatencySketch::default()),
            queued: tokio::sync::Mutex::new(None),
            registry: Registry::default(),
        };
        let r = &mut metrics.registry;
        let counters: [(&str, &str, &Counter); 12] = [
            (
                "microbot_connections",
                "Connections accepted (QUIC and WebSocket)",
                &metrics.connections_total,
            ),
            (
                "microbot_connections_refused",
                "Connections refused by IP rules or caps",
                &metrics.connections_refused,
            ),
            (
                "microbot_quic_retries",
                "QUIC Retry packets sent (attempts asked to prove their address)",
                &metrics.quic_retries,
            ),
            (
                "microbot_messages_in",
                "Envelopes accepted from senders",
                &metrics.messages_in,
            ),
            (
                "microbot_messages_out",
                "Envelopes delivered to devices (push or fetch)",
                &metrics.messages_out,
            ),
            (
                "microbot_group_changes",
                "Group changes applied",
                &metrics.group_changes,
            ),
            (
                "microbot_attachment_bytes_in",
                "Attachment bytes committed from uploads",
                &metrics.attachment_bytes_in,
            ),
            (
                "microbot_attachment_bytes_out",
                "Attachment bytes sent to downloads",
                &metrics.attachment_bytes_out,
            ),
            (
                "microbot_webhooks_sent",
                "Webhook notifications delivered",
                &metrics.webhooks_sent,
            ),
            (
                "microbot_webhooks_failed",
                "Webhook attempts that failed",
                &metrics.webhooks_failed,
            ),
            (
                "microbot_webhooks_dropped",
                "Webhook notifications dropped (channel full)",
                &metrics.webhooks_dropped,
            ),
            (
                "microbot_webhooks_given_up",
                "Webhook notifications given up after their last attempt",
                &metrics.webhooks_given_up,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.0.clone());
        }
        r.register(
            "microbot_logins",
            "Device logins and credential checks by result",
            logins,
        );
        r.register(
            "microbot_connections_open",
            "Open connections (QUIC and WebSocket)",
            metrics.connections_open.0.clone(),
        );
        r.register(
            "microbot_rate_limited",
            "Requests refused by a rate limit, by limit",
            metrics.rate_limited.clone(),
        );
        r.register(
            "microbot_group_fan_out",
            "Recipient devices per group send",
            metrics.fan_out.0.clone(),
        );
        r.register(
            "microbot_delivery_latency_seconds",
            "Time from an envelope's acceptance to its hand-over to a recipient connection (push or fetch)",
            metrics.delivery_latency.0.clone(),
        );
        r.register(
            "microbot_request_duration_seconds",
            "Request handling time by request kind",
            metrics.request_duration.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// Records how long one request of `kind` took.
    pub fn observe_request(&self, kind: &'static str, elapsed: Duration) {
        self.request_duration
            .get_or_create(&[("kind", kind)])
            .observe(elapsed.as_secs_f64());
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
        self.rate_limited.get_or_create(&[("limit", limit)]).inc();
        self.rate_limited_names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(limit);
    }

    /// Refusals so far by limit name, for the dashboard.
    pub fn rate_limited_counts(&self) -> Vec<(&'static str, u64)> {
        let names: Vec<&'static str> = self
            .rate_limited_names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .copied()
            .collect();
        names
            .into_iter()
            .map(|name| {
                (
                    name,
                    self.rate_limited.get_or_create(&[("limit", name)]).get(),
                )
            })
            .collect()
    }

    /// The text exposition of the registry plus what `scrape` read now.
    pub fn render(&self, scrape: Scrape) -> String {
        let mut out = String::new();
        // (The registry adds the final "." of each HELP text.)
        let mut per_scrape = Registry::default();
        per_scrape.register_collector(Box::new(scrape));
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &per_scrape);
        out
    }
}

/// The series read at scrape time, encoded once per scrape.
#[derive(Debug)]
pub struct Scrape {
    /// Envelopes in all queues, when the storage could count them.
    pub queued: Option<u64>,
    /// Open connections by transport: (QUIC, WebSocket).
    pub open: (i64, i64),
    /// Connections admitted by transport: (QUIC, WebSocket).
    pub admitted: (u64, u64),
    /// Whether the bus to the other nodes is linked.
    pub bus_linked: bool,
    /// The process's memory, CPU and files, where `/proc` exists.
    process: Option<node::Process>,
}

impl Scrape {
    /// Reads what changes between scrapes from `metrics` and the process.
    pub fn read(metrics: &Metrics, queued: Option<u64>, bus_linked: bool) -> Self {
        let open = metrics.connections_open.get();
        let ws_open = metrics.websocket_connections_open.get();
        let total = metrics.connections_total.get();
        let ws_total = metrics.websocket_connections_total.get();
        Self {
            queued,
            open: (open.saturating_sub(ws_open), ws_open),
            admitted: (total.saturating_sub(ws_total), ws_total),
            bus_linked,
            process: node::Process::read(),
        }
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut family = encoder.encode_descriptor(
                "microbot_transport_connections_open",
                "Open connections by transport.",
                None,
                MetricType::Gauge,
            )?;
            for (transport, value) in [("quic", self.open.0), ("websocket", self.open.1)] {
                ConstGauge::new(value)
                    .encode(family.encode_family(&[("transport", transport)])?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "microbot_transport_connections",
                "Connections admitted by transport.",
                None,
                MetricType::Counter,
            )?;
            for (transport, value) in [("quic", self.admitted.0), ("websocket", self.admitted.1)] {
                ConstCounter::new(value)
                    .encode(family.encode_family(&[("transport", transport)])?)?;
            }
        }
        if let Some(queued) = self.queued {
            ConstGauge::new(i64::try_from(queued).unwrap_or(i64::MAX)).encode(
                encoder.encode_descriptor(
                    "microbot_queued_envelopes",
                    "Envelopes waiting in all device queues.",
                    None,
                    MetricType::Gauge,
                )?,
            )?;
        }
        {
            let mut info = encoder.encode_descriptor(
                "microbot_build_info",
                "The running server's version (always 1).",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(1i64)
                .encode(info.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        }
        ConstGauge::new(i64::from(self.bus_linked)).encode(encoder.encode_descriptor(
            "microbot_bus_linked",
            "1 while the bus to the other nodes is linked (always 1 without Redis); 0 means not ready.",
            None,
            MetricType::Gauge,
        )?)?;
        if let Some(process) = &self.process {
            process.encode(&mut encoder)?;
        }
        Ok(())
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
    let n = state.storage.total_queued(state.now_ms()).await.ok()?;
    *cached = Some((std::time::Instant::now(), n));
    Some(n)
}

/// The whole `/metrics` body.
pub async fn exposition(state: &Arc<ServerState>) -> String {
    let queued = queued_envelopes(state).await;
    let scrape = Scrape::read(&state.metrics, queued, state.bus.linked());
    state.metrics.render(scrape)
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

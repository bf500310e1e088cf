//! The load engine shared by the message workloads: every device is one
//! connection with three tasks.
//!
//! - a sender that keeps at most `window` sends unanswered (saturation) or
//!   follows a fixed schedule (offered rate; latency then counts from the
//!   *scheduled* time, so a server that falls behind cannot hide its
//!   queueing: no coordinated omission);
//! - a reader that takes responses and pushed envelopes and records
//!   end-to-end latency from the timestamp inside each payload;
//! - an acker that deletes delivered envelopes in batches, as a real
//!   client does.
//!
//! A run ends when every send was answered and every message the target
//! accepted was delivered, or at the deadline.
//!
//! Not owned here: what a send looks like (a [`Plan`] builds it: pairs.rs,
//! fanout.rs), accounts and logins (provision.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use microbot_protocol::transport::{
    AckEnvelopesRequest, client_frame::Request, push, response, server_frame,
};
use tokio::sync::{Semaphore, mpsc};

use crate::error::{LoadError, LoadResult};
use crate::payload::{self, Clock, Stamp};
use crate::stats::{Latencies, per_second};
use crate::wire::{FrameSink, FrameSource, RequestChannel, encode_client_frame};

/// How one device's sends are built.
pub type BuildSend = Arc<dyn Fn(Bytes) -> Request + Send + Sync>;

/// What one device does in a run.
#[derive(Clone)]
pub struct Plan {
    /// Messages this device sends (0: it only receives).
    pub sends: u64,
    /// Turns a payload into the send request.
    pub build: BuildSend,
    /// Deliveries one accepted send causes (1 for a pair, members − 1 for a group).
    pub fan_out: u64,
}

/// Parameters common to the message workloads.
#[derive(Clone, Debug)]
pub struct DriveConfig {
    /// Bytes per message.
    pub payload_len: usize,
    /// Unanswered sends allowed per sending device.
    pub window: usize,
    /// Offered load over all sending devices in sends/s; `None`: as fast
    /// as the window allows (saturation).
    pub rate: Option<f64>,
    /// How long a receiver collects envelope ids before acknowledging them.
    pub ack_delay: Duration,
    /// Longest the run may take; undelivered messages are then reported.
    pub deadline: Duration,
}

impl Default for DriveConfig {
    fn default() -> Self {
        Self {
            payload_len: payload::PAYLOAD_LEN,
            window: 16,
            rate: None,
            ack_delay: Duration::from_millis(5),
            deadline: Duration::from_secs(300),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct DriveReport {
    /// Connections taking part.
    pub devices: usize,
    /// Sends the target acknowledged.
    pub sent_ok: u64,
    /// Sends the target refused.
    pub send_errors: u64,
    /// Envelopes delivered to recipients.
    pub delivered: u64,
    /// Envelopes the accepted sends should have delivered.
    pub expected: u64,
    /// From the first send to the last delivery.
    pub elapsed: Duration,
    /// From the first send to the last send's answer (zero where the
    /// workload does not record it). Far below `elapsed`, deliveries lag
    /// behind the stored sends.
    pub answered: Duration,
    /// Send (or scheduled send) to delivery, per delivered envelope.
    pub latency: Latencies,
}

impl DriveReport {
    /// Delivered envelopes per second.
    pub fn delivered_rate(&self) -> f64 {
        per_second(self.delivered, self.elapsed)
    }

    /// Accepted sends per second.
    pub fn send_rate(&self) -> f64 {
        per_second(self.sent_ok, self.elapsed)
    }

    /// True when every accepted send reached every recipient and nothing was refused.
    pub fn complete(&self) -> bool {
        self.send_errors == 0 && self.delivered == self.expected
    }

    /// "N delivered", or what was missing when the run is not complete.
    pub fn delivery_note(&self) -> String {
        if self.complete() {
            format!("{} delivered", self.delivered)
        } else {
            format!(
                "INCOMPLETE: {} of {} delivered, {} refused",
                self.delivered, self.expected, self.send_errors
            )
        }
    }
}

/// Request ids on the duplex side: sends are even, acks odd.
fn is_send(request_id: u64) -> bool {
    request_id & 1 == 0
}

struct Shared {
    clock: Clock,
    start_us: u64,
    deadline_us: u64,
    total_sends: u64,
    answered: AtomicU64,
    to_deliver: AtomicU64,
    delivered: AtomicU64,
}

impl Shared {
    fn finished(&self) -> bool {
        self.answered.load(Ordering::Acquire) >= self.total_sends
            && self.delivered.load(Ordering::Acquire) >= self.to_deliver.load(Ordering::Acquire)
    }
}

/// Runs `plans[i]` on `channels[i]` (logged-in channels).
///
/// # Errors
/// [`LoadError::Invalid`] for mismatched lengths or a zero window.
pub async fn drive(
    channels: Vec<RequestChannel>,
    plans: Vec<Plan>,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    if channels.len() != plans.len() || channels.is_empty() {
        return Err(LoadError::Invalid("one plan per channel, at least one"));
    }
    if config.window == 0 {
        return Err(LoadError::Invalid("the window must be at least 1"));
    }
    let senders = plans.iter().filter(|p| p.sends > 0).count().max(1);
    let clock = Clock::new();
    let start_us = clock.now_us() + 20_000;
    let shared = Arc::new(Shared {
        clock,
        start_us,
        deadline_us: start_us + u64::try_from(config.deadline.as_micros()).unwrap_or(u64::MAX / 2),
        total_sends: plans.iter().map(|p| p.sends).sum(),
        answered: AtomicU64::new(0),
        to_deliver: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
    });
    let devices = channels.len();
    let mut readers = tokio::task::JoinSet::new();
    let mut connections = Vec::with_capacity(devices);
    let mut sender_index = 0usize;
    for (i, (channel, plan)) in channels.into_iter().zip(plans).enumerate() {
        let (connection, sink, source) = channel.into_duplex();
        connections.push(connection);
        let window = Arc::new(Semaphore::new(config.window));
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        tokio::spawn(ack_loop(sink.clone(), ack_rx, config.ack_delay));
        if plan.sends > 0 {
            tokio::spawn(send_loop(
                sink,
                Arc::clone(&window),
                Arc::clone(&shared),
                config.clone(),
                plan.clone(),
                Slot {
                    device: i,
                    sender: sender_index,
                    senders,
                },
            ));
            sender_index += 1;
        }
        readers.spawn(read_loop(
            source,
            window,
            Arc::clone(&shared),
            plan.fan_out,
            ack_tx,
        ));
    }
    let mut report = DriveReport {
        devices,
        ..DriveReport::default()
    };
    let mut last_us = start_us;
    let mut answered_us = start_us;
    while let Some(joined) = readers.join_next().await {
        let r = joined.map_err(|e| LoadError::Connection(e.to_string()))?;
        report.sent_ok += r.sent_ok;
        report.send_errors += r.send_errors;
        report.delivered += r.delivered;
        last_us = last_us.max(r.last_delivery_us);
        answered_us = answered_us.max(r.last_answer_us);
        report.latency.merge(r.latency);
    }
    report.expected = shared.to_deliver.load(Ordering::Acquire);
    report.elapsed = Duration::from_micros(last_us.saturating_sub(start_us));
    report.answered = Duration::from_micros(answered_us.saturating_sub(start_us));
    // Let the last acknowledgements leave before the connections close.
    tokio::time::sleep(config.ack_delay * 2 + Duration::from_millis(100)).await;
    for connection in connections {
        connection.close(0u32.into(), b"done");
    }
    Ok(report)
}

/// Where a sender sits: its device index and its rank among senders.
struct Slot {
    device: usize,
    sender: usize,
    senders: usize,
}

async fn send_loop(
    sink: FrameSink,
    window: Arc<Semaphore>,
    shared: Arc<Shared>,
    config: DriveConfig,
    plan: Plan,
    slot: Slot,
) {
    // Per-sender interval for an offered rate; senders are staggered so the
    // total load is smooth rather than simultaneous bursts.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let interval_us = config
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| ((slot.senders as f64 / r) * 1e6).max(1.0) as u64);
    let offset_us = interval_us.map_or(0, |iv| {
        iv.saturating_mul(u64::try_from(slot.sender).unwrap_or(0))
            / u64::try_from(slot.senders).unwrap_or(1).max(1)
    });
    tokio::time::sleep_until(shared.clock.instant_at(shared.start_us).into()).await;
    for k in 0..plan.sends {
        let Ok(permit) = window.acquire().await else {
            return;
        };
        permit.forget();
        let sent_us = match interval_us {
            Some(iv) => {
                let at = shared.start_us + offset_us + k * iv;
                tokio::time::sleep_until(shared.clock.instant_at(at).into()).await;
                at
            }
            None => shared.clock.now_us(),
        };
        let stamp = Stamp {
            sent_us,
            seq: k,
            sender: u32::try_from(slot.device).unwrap_or(u32::MAX),
        };
        let request = (plan.build)(payload::encode(stamp, config.payload_len));
        let Ok(frame) = encode_client_frame(k << 1, request) else {
            return;
        };
        if !sink.send(frame) {
            return;
        }
    }
}

async fn ack_loop(sink: FrameSink, mut ids: mpsc::UnboundedReceiver<u64>, delay: Duration) {
    let mut next = 0u64;
    while let Some(first) = ids.recv().await {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut batch = vec![first];
        while batch.len() < 1000 {
            match ids.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        let request = Request::AckEnvelopes(AckEnvelopesRequest {
            envelope_ids: batch,
        });
        let Ok(frame) = encode_client_frame((next << 1) | 1, request) else {
            return;
        };
        next += 1;
        if !sink.send(frame) {
            return;
        }
    }
}

/// What one device's reader saw.
#[derive(Default)]
struct ReaderReport {
    sent_ok: u64,
    send_errors: u64,
    delivered: u64,
    last_delivery_us: u64,
    last_answer_us: u64,
    latency: Latencies,
}

async fn read_loop(
    mut source: FrameSource,
    window: Arc<Semaphore>,
    shared: Arc<Shared>,
    fan_out: u64,
    acks: mpsc::UnboundedSender<u64>,
) -> ReaderReport {
    let mut r = ReaderReport::default();
    loop {
        if shared.finished() || shared.clock.now_us() > shared.deadline_us {
            break;
        }
        let frame = match tokio::time::timeout(Duration::from_millis(100), source.next()).await {
            Err(_) => continue,
            Ok(Ok(Some(frame))) => frame,
            Ok(_) => break,
        };
        match frame.kind {
            Some(server_frame::Kind::Response(resp)) if is_send(resp.request_id) => {
                window.add_permits(1);
                r.last_answer_us = shared.clock.now_us();
                if matches!(resp.result, Some(response::Result::Send(_))) {
                    r.sent_ok += 1;
                    shared.to_deliver.fetch_add(fan_out, Ordering::AcqRel);
                } else {
                    r.send_errors += 1;
                }
                shared.answered.fetch_add(1, Ordering::AcqRel);
            }
            Some(server_frame::Kind::Push(p)) => {
                if let Some(push::Event::Envelope(envelope)) = p.event {
                    let now = shared.clock.now_us();
                    if let Some(stamp) = payload::decode(&envelope.ciphertext) {
                        r.latency.record_us(now.saturating_sub(stamp.sent_us));
                    }
                    r.delivered += 1;
                    r.last_delivery_us = now;
                    shared.delivered.fetch_add(1, Ordering::AcqRel);
                    let _ = acks.send(envelope.envelope_id);
                }
            }
            Some(server_frame::Kind::Closing(_)) => break,
            _ => {}
        }
    }
    r
}

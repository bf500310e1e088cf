//! Push-gateway webhooks (SPEC.md §18.5): a content-free HTTP POST when an
//! envelope is queued for a device that has no live connection.
//!
//! Body (`Content-Type: application/json`), nothing else:
//! `{"device_id":<u64>,"queued":<u32>}` — the device and how many envelopes
//! wait in its queue when the notification is sent. With `webhook_secret`
//! set, the `X-Microbot-Signature` header signs it (HMAC-SHA256, see
//! [`http::signature`]).
//!
//! Delivery never waits for the webhook: handlers put the device id into a
//! bounded channel with `try_send` (a full channel drops the notice and
//! counts it); a worker drains the channel and delivers up to
//! [`MAX_IN_FLIGHT`] devices' notices at once, so a gateway that accepts a
//! request and never answers holds one slot, not every other notice. A
//! notice for a device whose notice is in flight is coalesced into it.
//! Each POST has a timeout (`webhook_timeout_ms`); failures (connection
//! error, TLS refusal, timeout, non-2xx) are retried with exponential
//! back-off, and a notice given up is counted — the dead-letter count,
//! `microbot_webhooks_given_up_total` — and logged at WARN with the last
//! attempt's cause. `http://` and `https://` (certificates verified against
//! the Mozilla roots and `webhook_ca_pem`); internal addresses only with
//! `webhook_allow_private` ([`target`]).
//!
//! Not owned here: deciding that a device is offline (queues.rs).

pub mod http;
pub mod target;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};

use crate::metrics::Metrics;
use crate::state::ServerState;

/// Notices buffered before new ones are dropped.
pub const CHANNEL_CAPACITY: usize = 1024;
/// Devices whose notices are delivered (or retried) at the same time.
pub const MAX_IN_FLIGHT: usize = 16;
pub use http::{AttemptError, ClientError, WebhookClient};
pub use target::{BadWebhookUrl, WebhookTarget};

/// The handlers' side: queue a notice without waiting.
#[derive(Debug)]
pub struct Webhooks {
    tx: mpsc::Sender<u64>,
}

impl Webhooks {
    /// A sender and the receiver [`run`] drains.
    pub fn channel() -> (Self, mpsc::Receiver<u64>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        (Self { tx }, rx)
    }

    /// Queues a notice for `device_id`; drops it when the channel is full.
    pub fn notify(&self, metrics: &Metrics, device_id: u64) {
        if self.tx.try_send(device_id).is_err() {
            metrics.webhooks_dropped.inc();
        }
    }
}

/// Delivers notices until `stop` fires: up to [`MAX_IN_FLIGHT`] devices'
/// notices at once (each with its own timeouts and retries), so a gateway
/// that holds one request does not hold the others; a notice for a device
/// whose notice is still in flight is coalesced into it.
pub async fn run(
    state: Arc<ServerState>,
    client: WebhookClient,
    mut rx: mpsc::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let client = Arc::new(client);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let in_flight: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let device_id = tokio::select! {
            id = rx.recv() => match id { Some(id) => id, None => break },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = stop.changed() => break,
        };
        if !lock(&in_flight).insert(device_id) {
            continue;
        }
        // Waiting for a slot leaves new notices in the bounded channel
        // (which drops and counts them when full).
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let (state, client, in_flight) = (
            Arc::clone(&state),
            Arc::clone(&client),
            Arc::clone(&in_flight),
        );
        tasks.spawn(async move {
            notify_one(&state, &client, device_id).await;
            lock(&in_flight).remove(&device_id);
            drop(permit);
        });
    }
    tasks.shutdown().await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Notifies the gateway about one device, if it still has anything queued.
async fn notify_one(state: &Arc<ServerState>, client: &WebhookClient, device_id: u64) {
    let queued = state
        .storage
        .queue_len(device_id, state.now_ms())
        .await
        .unwrap_or(0);
    if queued == 0 {
        return;
    }
    let body = format!("{{\"device_id\":{device_id},\"queued\":{queued}}}");
    deliver(state, client, &body).await;
}

async fn deliver(state: &ServerState, client: &WebhookClient, body: &str) {
    let config = &state.config;
    let timeout = Duration::from_millis(config.webhook_timeout_ms);
    let mut last = None;
    for attempt in 0..=config.webhook_retries {
        if attempt > 0 {
            let doublings = (attempt - 1).min(16);
            let delay = config
                .webhook_backoff_base_ms
                .saturating_mul(1u64 << doublings);
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let now_secs = state.now_ms() / 1000;
        // reqwest has the same timeout; this one also bounds name resolution.
        let error = match tokio::time::timeout(timeout, client.post(body, now_secs)).await {
            Ok(Ok(())) => {
                state.metrics.webhooks_sent.inc();
                return;
            }
            Ok(Err(error)) => error,
            Err(_) => AttemptError::Timeout(config.webhook_timeout_ms),
        };
        tracing::debug!(%error, attempt, "webhook attempt failed");
        state.metrics.webhooks_failed.inc();
        last = Some(error);
    }
    state.metrics.webhooks_given_up.inc();
    if let Some(cause) = last {
        tracing::warn!(
            %cause,
            attempts = config.webhook_retries.saturating_add(1),
            "webhook notice given up"
        );
    }
}

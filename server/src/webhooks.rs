//! Push-gateway webhooks (SPEC.md §18.5): a content-free HTTP POST when an
//! envelope is queued for a device that has no live connection.
//!
//! Body (`Content-Type: application/json`), nothing else:
//! `{"device_id":<u64>,"queued":<u32>}` — the device and how many envelopes
//! wait in its queue when the notification is sent.
//!
//! Delivery never waits for the webhook: handlers put the device id into a
//! bounded channel with `try_send` (a full channel drops the notice and
//! counts it); a worker drains the channel and delivers up to
//! [`MAX_IN_FLIGHT`] devices' notices at once, so a gateway that accepts a
//! request and never answers holds one slot, not every other notice. A
//! notice for a device whose notice is in flight is coalesced into it.
//! Each POST has a timeout (`webhook_timeout_ms`); failures (connection
//! error, timeout, non-2xx) are retried with exponential back-off, and a
//! notice given up is counted (`microbot_webhooks_given_up_total`) and
//! logged at WARN with the last attempt's cause. Only
//! `http://` URLs are supported: run the gateway on the same host or a
//! private network, or put a TLS-terminating proxy in front of it.
//!
//! Not owned here: deciding that a device is offline (queues.rs).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::metrics::Metrics;
use crate::state::{ServerState, now_ms};

/// Notices buffered before new ones are dropped.
pub const CHANNEL_CAPACITY: usize = 1024;
/// Devices whose notices are delivered (or retried) at the same time.
pub const MAX_IN_FLIGHT: usize = 16;
/// Largest response head read from the gateway.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// A parsed `http://host[:port][/path]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 80).
    pub port: u16,
    /// Request path (default `/`).
    pub path: String,
}

/// A webhook URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("webhook URL must be http://host[:port][/path]")]
pub struct BadWebhookUrl;

impl WebhookTarget {
    /// Parses an `http://` URL.
    ///
    /// # Errors
    /// [`BadWebhookUrl`].
    pub fn parse(url: &str) -> Result<Self, BadWebhookUrl> {
        let rest = url.strip_prefix("http://").ok_or(BadWebhookUrl)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or(BadWebhookUrl)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| BadWebhookUrl)?,
                None if after.is_empty() => 80,
                None => return Err(BadWebhookUrl),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().map_err(|_| BadWebhookUrl)?),
                None => (authority, 80),
            }
        };
        if host.is_empty()
            || path.bytes().any(|b| b.is_ascii_control() || b == b' ')
            || host
                .bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || b == b'@')
        {
            return Err(BadWebhookUrl);
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

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

/// Why one attempt to notify the gateway failed (named in the give-up WARN).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// No TCP connection (refused, unreachable, name not resolved).
    #[error("connection failed: {0}")]
    Connect(std::io::Error),
    /// The connection broke while sending or reading the answer.
    #[error("connection broken: {0}")]
    Io(std::io::Error),
    /// The gateway answered with a status other than 2xx.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The gateway closed or answered something that is not HTTP.
    #[error("no HTTP status in the answer")]
    NoStatus,
    /// No answer within `webhook_timeout_ms`.
    #[error("no answer within {0} ms")]
    Timeout(u64),
}

/// Delivers notices until `stop` fires: up to [`MAX_IN_FLIGHT`] devices'
/// notices at once (each with its own timeouts and retries), so a gateway
/// that holds one request does not hold the others; a notice for a device
/// whose notice is still in flight is coalesced into it.
pub async fn run(
    state: Arc<ServerState>,
    target: WebhookTarget,
    mut rx: mpsc::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let target = Arc::new(target);
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
        let (state, target, in_flight) = (
            Arc::clone(&state),
            Arc::clone(&target),
            Arc::clone(&in_flight),
        );
        tasks.spawn(async move {
            notify_one(&state, &target, device_id).await;
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
async fn notify_one(state: &Arc<ServerState>, target: &WebhookTarget, device_id: u64) {
    let queued = state
        .blocking(move |s| Ok(s.storage.queue_len(device_id, now_ms())?))
        .await
        .unwrap_or(0);
    if queued == 0 {
        return;
    }
    let body = format!("{{\"device_id\":{device_id},\"queued\":{queued}}}");
    deliver(state, target, &body).await;
}

async fn deliver(state: &ServerState, target: &WebhookTarget, body: &str) {
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
        let error = match tokio::time::timeout(timeout, post(target, body)).await {
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

async fn post(target: &WebhookTarget, body: &str) -> Result<(), AttemptError> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(AttemptError::Connect)?;
    let host = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: microbot-server\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        target.path,
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(AttemptError::Io)?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_RESPONSE_HEAD {
        let n = stream.read(&mut buf).await.map_err(AttemptError::Io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    // "HTTP/1.1 204 No Content": the status is the second word.
    let status = head
        .split(|b| *b == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(()),
        Some(status) => Err(AttemptError::Status(status)),
        None => Err(AttemptError::NoStatus),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_are_refused() {
        let t = WebhookTarget::parse("http://127.0.0.1:8080/push/v1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/push/v1")
        );
        let t = WebhookTarget::parse("http://gw.example").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = WebhookTarget::parse("http://[::1]:81/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 81));
        assert!(WebhookTarget::parse("https://gw.example/").is_err());
        assert!(WebhookTarget::parse("http://:80/").is_err());
        assert!(WebhookTarget::parse("http://h:99999/").is_err());
        assert!(WebhookTarget::parse("http://h/a b").is_err());
    }
}

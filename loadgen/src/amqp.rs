//! The durable peer: workload (a) against RabbitMQ with one quorum queue
//! per receiving device and publisher confirms (issue 17). A quorum queue
//! writes every message to its Raft log and fsyncs that log before the
//! publisher confirm goes out, so a confirmed message survives a crash —
//! the same promise the microbot server keeps before its `SendResponse`
//! (mosquitto, the other peer, answers before anything reaches the disk).
//!
//! Mapping: each device is one AMQP connection with one channel in
//! confirm mode; it declares its own durable quorum queue and consumes it
//! with manual acknowledgements (prefetch bounded). A message is a
//! persistent publish through the default exchange to the partner's queue;
//! the broker's confirm (`basic.ack` to the publisher) is the counterpart
//! of the server's `SendResponse` and frees one slot of the window; the
//! receiver acknowledges what it has taken (`basic.ack` with `multiple`
//! for everything pending, as the microbot driver acknowledges in
//! batches). Sizes, window, offered rate and latency (send → delivery on
//! the partner's connection) are those of the MQTT peer (mqtt.rs).
//!
//! Uses the `amqprs` client (tokio-native), built with the crate's `amqp`
//! feature (amqp_absent.rs stands in without it). Not owned here: starting
//! the broker (procs.rs, `spawn_rabbitmq`).

/// This build has the AMQP client (the `amqp` feature is on).
pub const BUILT: bool = true;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use amqprs::callbacks::{ChannelCallback, DefaultConnectionCallback};
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ConfirmSelectArguments, ConsumerMessage, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{
    Ack, BasicProperties, Cancel, CloseChannel, DELIVERY_MODE_PERSISTENT, FieldTable, FieldValue,
    Nack, Return,
};
use tokio::sync::{Semaphore, mpsc};

use crate::driver::{DriveConfig, DriveReport};
use crate::error::{LoadError, LoadResult};
use crate::payload::{self, Stamp};
use crate::peer_run::PeerRun;
use crate::stats::Latencies;

/// The broker's default account (RabbitMQ lets it in from loopback only).
const USER: &str = "guest";
/// Its password.
const PASSWORD: &str = "guest";
/// Deliveries the broker may push to one consumer before it acknowledges.
const PREFETCH: u16 = 1000;

fn amqp(what: &str) -> impl FnOnce(amqprs::error::Error) -> LoadError + '_ {
    move |e| LoadError::Amqp(format!("{what}: {e}"))
}

/// What the broker said about one publish (or several, with `multiple`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confirm {
    /// Delivery tag of the publish (1 for the channel's first).
    pub tag: u64,
    /// Whether it covers every earlier tag too.
    pub multiple: bool,
    /// `true` for `basic.ack`, `false` for `basic.nack` (not stored).
    pub stored: bool,
}

/// Turns the broker's confirms into counts of newly settled publishes:
/// a confirm may cover one tag or every tag up to it, and single confirms
/// may come out of order; nothing is counted twice.
#[derive(Debug, Default)]
pub struct ConfirmTracker {
    /// Every tag up to this one is settled.
    upto: u64,
    /// Settled tags above `upto`.
    above: BTreeSet<u64>,
}

impl ConfirmTracker {
    /// No publish settled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes that `confirm` settles which were not settled before.
    pub fn settle(&mut self, confirm: Confirm) -> u64 {
        let tag = confirm.tag;
        if tag <= self.upto {
            return 0;
        }
        let newly = if confirm.multiple {
            let later = self.above.split_off(&(tag + 1));
            let already = u64::try_from(self.above.len()).unwrap_or(u64::MAX);
            self.above = later;
            let newly = (tag - self.upto).saturating_sub(already);
            self.upto = tag;
            newly
        } else {
            u64::from(self.above.insert(tag))
        };
        while self.above.remove(&(self.upto + 1)) {
            self.upto += 1;
        }
        newly
    }
}

/// The channel callback: forwards publisher confirms to the device's reader.
struct Confirms(mpsc::UnboundedSender<Confirm>);

#[async_trait::async_trait]
impl ChannelCallback for Confirms {
    async fn close(
        &mut self,
        _channel: &Channel,
        _close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn cancel(
        &mut self,
        _channel: &Channel,
        _cancel: Cancel,
    ) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(
        &mut self,
        _channel: &Channel,
        active: bool,
    ) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _channel: &Channel, ack: Ack) {
        let _ = self.0.send(Confirm {
            tag: ack.delivery_tag(),
            multiple: ack.mutiple(),
            stored: true,
        });
    }
    async fn publish_nack(&mut self, _channel: &Channel, nack: Nack) {
        let _ = self.0.send(Confirm {
            tag: nack.delivery_tag(),
            multiple: nack.multiple(),
            stored: false,
        });
    }
    async fn publish_return(
        &mut self,
        _channel: &Channel,
        _ret: Return,
        _basic_properties: BasicProperties,
        _content: Vec<u8>,
    ) {
    }
}

/// A connected device: its queue declared and consumed, confirms on.
struct AmqpDevice {
    connection: Connection,
    channel: Channel,
    deliveries: mpsc::UnboundedReceiver<ConsumerMessage>,
    confirms: mpsc::UnboundedReceiver<Confirm>,
}

/// Arguments of a durable quorum queue named `name`.
fn quorum_queue(name: &str) -> QueueDeclareArguments {
    let mut arguments = FieldTable::new();
    if let Ok(key) = "x-queue-type".try_into() {
        arguments.insert(key, FieldValue::from("quorum"));
    }
    QueueDeclareArguments::durable_client_named(name)
        .arguments(arguments)
        .finish()
}

async fn open_device(broker: SocketAddr, name: &str, queue: &str) -> LoadResult<AmqpDevice> {
    let mut args =
        OpenConnectionArguments::new(&broker.ip().to_string(), broker.port(), USER, PASSWORD);
    args.connection_name(name);
    let connection = tokio::time::timeout(Duration::from_secs(10), Connection::open(&args))
        .await
        .map_err(|_| LoadError::Timeout("connecting to RabbitMQ"))?
        .map_err(amqp("connect"))?;
    connection
        .register_callback(DefaultConnectionCallback)
        .await
        .map_err(amqp("connection callback"))?;
    let channel = connection
        .open_channel(None)
        .await
        .map_err(amqp("open channel"))?;
    let (tx, confirms) = mpsc::unbounded_channel();
    channel
        .register_callback(Confirms(tx))
        .await
        .map_err(amqp("channel callback"))?;
    channel
        .confirm_select(ConfirmSelectArguments::default())
        .await
        .map_err(amqp("confirm.select"))?;
    channel
        .queue_declare(quorum_queue(queue))
        .await
        .map_err(amqp("declaring a quorum queue"))?;
    channel
        .basic_qos(BasicQosArguments::new(0, PREFETCH, false))
        .await
        .map_err(amqp("basic.qos"))?;
    let (_, deliveries) = channel
        .basic_consume_rx(
            BasicConsumeArguments::new(queue, name)
                .manual_ack(true)
                .finish(),
        )
        .await
        .map_err(amqp("basic.consume"))?;
    Ok(AmqpDevice {
        connection,
        channel,
        deliveries,
        confirms,
    })
}

/// What one device's reader counted.
#[derive(Default)]
struct DeviceTally {
    delivered: u64,
    confirmed: u64,
    refused: u64,
    last_us: u64,
    latency: Latencies,
}

/// Workload (a) against the RabbitMQ broker at `broker` (AMQP 0-9-1,
/// `guest` from loopback): `devices` connections in pairs, each
/// publishing `messages` persistent messages to its partner's quorum
/// queue under publisher confirms.
///
/// # Errors
/// [`LoadError::Invalid`] for an odd device count or a zero window;
/// [`LoadError::Amqp`] or [`LoadError::Timeout`] while setting up.
pub async fn run_pairs(
    broker: SocketAddr,
    devices: usize,
    messages: u64,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    if devices == 0 || !devices.is_multiple_of(2) || config.window == 0 {
        return Err(LoadError::Invalid(
            "amqp pairs: even device count, window ≥ 1",
        ));
    }
    let prefix = crate::provision::run_prefix();
    let mut conns = Vec::with_capacity(devices);
    for i in 0..devices {
        conns.push(open_device(broker, &format!("{prefix}-{i}"), &format!("{prefix}.{i}")).await?);
    }
    let shared = Arc::new(PeerRun::start(devices, messages, config));
    let start_us = shared.start_us;
    let mut readers = tokio::task::JoinSet::new();
    let mut connections = Vec::with_capacity(devices);
    for (i, device) in conns.into_iter().enumerate() {
        let window = Arc::new(Semaphore::new(config.window));
        tokio::spawn(send_loop(
            device.channel.clone(),
            Arc::clone(&window),
            Arc::clone(&shared),
            config.clone(),
            messages,
            (i, devices),
            format!("{prefix}.{}", i ^ 1),
        ));
        readers.spawn(read_loop(device, window, Arc::clone(&shared)));
    }
    let mut report = DriveReport {
        devices,
        ..DriveReport::default()
    };
    let mut last_us = start_us;
    while let Some(joined) = readers.join_next().await {
        let (tally, connection) = joined.map_err(|e| LoadError::Connection(e.to_string()))?;
        report.delivered += tally.delivered;
        report.sent_ok += tally.confirmed;
        report.send_errors += tally.refused;
        last_us = last_us.max(tally.last_us);
        report.latency.merge(tally.latency);
        connections.push(connection);
    }
    for connection in connections {
        let _ = tokio::time::timeout(Duration::from_secs(5), connection.close()).await;
    }
    report.expected = report.sent_ok;
    report.elapsed = Duration::from_micros(last_us.saturating_sub(start_us));
    Ok(report)
}

async fn send_loop(
    channel: Channel,
    window: Arc<Semaphore>,
    shared: Arc<PeerRun>,
    config: DriveConfig,
    messages: u64,
    (index, devices): (usize, usize),
    queue: String,
) {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let interval_us = config
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| ((devices as f64 / r) * 1e6).max(1.0) as u64);
    let offset_us = interval_us.map_or(0, |iv| {
        iv.saturating_mul(u64::try_from(index).unwrap_or(0)) / u64::try_from(devices).unwrap_or(1)
    });
    let publish = BasicPublishArguments::new("", &queue);
    let mut properties = BasicProperties::default();
    properties.with_delivery_mode(DELIVERY_MODE_PERSISTENT);
    tokio::time::sleep_until(shared.clock.instant_at(shared.start_us).into()).await;
    for k in 0..messages {
        let Ok(permit) = window.acquire().await else {
            return;
        };
        permit.forget();
        let sent_us = shared.send_time(k, offset_us, interval_us).await;
        let stamp = Stamp {
            sent_us,
            seq: k,
            sender: u32::try_from(index).unwrap_or(u32::MAX),
        };
        let body = payload::encode(stamp, config.payload_len).to_vec();
        if channel
            .basic_publish(properties.clone(), body, publish.clone())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Takes confirms and deliveries until the run is over; returns the
/// tally and the connection (closed by the caller).
async fn read_loop(
    mut device: AmqpDevice,
    window: Arc<Semaphore>,
    shared: Arc<PeerRun>,
) -> (DeviceTally, Connection) {
    let mut tally = DeviceTally::default();
    let mut tracker = ConfirmTracker::new();
    let mut confirms_open = true;
    let mut deliveries_open = true;
    while !shared.over() && (confirms_open || deliveries_open) {
        tokio::select! {
            confirm = device.confirms.recv(), if confirms_open => {
                let Some(confirm) = confirm else {
                    confirms_open = false;
                    continue;
                };
                let newly = tracker.settle(confirm);
                if newly == 0 {
                    continue;
                }
                window.add_permits(usize::try_from(newly).unwrap_or(usize::MAX));
                if confirm.stored {
                    tally.confirmed += newly;
                } else {
                    tally.refused += newly;
                }
                shared.answered.fetch_add(newly, Ordering::AcqRel);
            }
            message = device.deliveries.recv(), if deliveries_open => {
                let Some(message) = message else {
                    deliveries_open = false;
                    continue;
                };
                // Everything already here, then one acknowledgement for all.
                let mut last_tag = take(&mut tally, &shared, message);
                while let Ok(more) = device.deliveries.try_recv() {
                    last_tag = take(&mut tally, &shared, more).or(last_tag);
                }
                if let Some(tag) = last_tag {
                    let _ = device
                        .channel
                        .basic_ack(BasicAckArguments::new(tag, true))
                        .await;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    let _ = device.channel.close().await;
    (tally, device.connection)
}

/// Records one delivery; its delivery tag, if it had one.
fn take(tally: &mut DeviceTally, shared: &PeerRun, message: ConsumerMessage) -> Option<u64> {
    let tag = message
        .deliver
        .as_ref()
        .map(amqprs::Deliver::delivery_tag)?;
    let now = shared.clock.now_us();
    if let Some(stamp) = message.content.as_deref().and_then(payload::decode) {
        tally.latency.record_us(now.saturating_sub(stamp.sent_us));
    }
    tally.delivered += 1;
    tally.last_us = now;
    shared.delivered.fetch_add(1, Ordering::AcqRel);
    Some(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(tag: u64, multiple: bool) -> Confirm {
        Confirm {
            tag,
            multiple,
            stored: true,
        }
    }

    #[test]
    fn single_and_multiple_confirms_count_each_publish_once() {
        let mut t = ConfirmTracker::new();
        assert_eq!(t.settle(ack(1, false)), 1);
        assert_eq!(t.settle(ack(1, false)), 0, "a repeat counts nothing");
        assert_eq!(t.settle(ack(3, false)), 1, "out of order");
        assert_eq!(
            t.settle(ack(5, true)),
            3,
            "2, 4 and 5; 3 was already settled"
        );
        assert_eq!(t.settle(ack(4, false)), 0);
        assert_eq!(t.settle(ack(5, true)), 0);
        assert_eq!(t.settle(ack(8, false)), 1);
        assert_eq!(t.settle(ack(6, false)), 1);
        assert_eq!(t.settle(ack(7, false)), 1);
        assert_eq!(t.upto, 8, "gaps closed");
        assert!(t.above.is_empty());
        assert_eq!(t.settle(ack(10, true)), 2);
    }

    #[test]
    fn a_multiple_confirm_skips_singles_above_it() {
        let mut t = ConfirmTracker::new();
        assert_eq!(t.settle(ack(9, false)), 1);
        assert_eq!(t.settle(ack(4, true)), 4);
        assert_eq!(t.settle(ack(9, true)), 4, "5..=8; 9 was settled");
    }

    #[test]
    fn the_queue_is_declared_durable_and_quorum() {
        let args = quorum_queue("q");
        let debug = format!("{args:?}");
        assert!(debug.contains("x-queue-type"), "{debug}");
        assert!(debug.contains("quorum"), "{debug}");
        assert!(debug.contains("durable: true"), "{debug}");
    }
}

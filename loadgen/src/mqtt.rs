//! The peer: workload (a) against an MQTT broker (mosquitto), the broker a
//! team might deploy as a relay instead. A minimal MQTT 3.1.1 client (the
//! six packets the workload needs) over tokio TCP, so no second TLS or
//! runtime stack enters the workspace.
//!
//! Mapping: each device is one connection with a persistent session
//! (clean session = 0) subscribed at QoS 1 to its own topic; a message is
//! a QoS 1 PUBLISH to the partner's topic, acknowledged by the broker's
//! PUBACK (the counterpart of the server's `SendResponse`); the receiver
//! PUBACKs every delivery (the counterpart of the envelope ack).
//!
//! Not owned here: starting the broker (procs.rs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc};

use crate::driver::{DriveConfig, DriveReport};
use crate::error::{LoadError, LoadResult};
use crate::payload::{self, Stamp};
use crate::peer_run::PeerRun;

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const PUBACK: u8 = 0x40;
const SUBSCRIBE: u8 = 0x82;
const SUBACK: u8 = 0x90;

fn put_remaining_length(buf: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = u8::try_from(len % 128).unwrap_or(0);
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(buf: &mut BytesMut, s: &str) {
    buf.put_u16(u16::try_from(s.len()).unwrap_or(u16::MAX));
    buf.put_slice(s.as_bytes());
}

fn packet(first: u8, body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(body.len() + 5);
    buf.put_u8(first);
    put_remaining_length(&mut buf, body.len());
    buf.put_slice(body);
    buf.freeze()
}

/// CONNECT (MQTT 3.1.1, keep-alive 60 s).
pub fn connect_packet(client_id: &str, clean_session: bool) -> Bytes {
    let mut body = BytesMut::new();
    put_str(&mut body, "MQTT");
    body.put_u8(4);
    body.put_u8(if clean_session { 0x02 } else { 0x00 });
    body.put_u16(60);
    put_str(&mut body, client_id);
    packet(CONNECT, &body)
}

/// SUBSCRIBE to one topic at QoS 1.
pub fn subscribe_packet(packet_id: u16, topic: &str) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u16(packet_id);
    put_str(&mut body, topic);
    body.put_u8(1);
    packet(SUBSCRIBE, &body)
}

/// PUBLISH at QoS 1.
pub fn publish_packet(topic: &str, packet_id: u16, payload: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(topic.len() + payload.len() + 4);
    put_str(&mut body, topic);
    body.put_u16(packet_id);
    body.put_slice(payload);
    packet(PUBLISH | 0x02, &body)
}

/// PUBACK.
pub fn puback_packet(packet_id: u16) -> Bytes {
    packet(PUBACK, &packet_id.to_be_bytes())
}

/// One packet as read: the first byte and the rest.
#[derive(Debug)]
pub struct Packet {
    /// Type and flags.
    pub first: u8,
    /// Variable header and payload.
    pub body: Bytes,
}

/// Reads one packet; `None` at end of stream.
///
/// # Errors
/// [`LoadError::Mqtt`] for a malformed length.
pub async fn read_packet(reader: &mut BufReader<OwnedReadHalf>) -> LoadResult<Option<Packet>> {
    let Ok(first) = reader.read_u8().await else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut shift = 0u32;
    loop {
        let byte = reader
            .read_u8()
            .await
            .map_err(|e| LoadError::Mqtt(e.to_string()))?;
        len |= usize::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(LoadError::Mqtt("remaining length over 4 bytes".into()));
        }
    }
    let mut body = vec![0u8; len];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|e| LoadError::Mqtt(e.to_string()))?;
    Ok(Some(Packet {
        first,
        body: Bytes::from(body),
    }))
}

/// An incoming PUBLISH: packet id (QoS > 0) and payload.
fn parse_publish(p: &Packet) -> Option<(Option<u16>, Bytes)> {
    let topic_len = usize::from(u16::from_be_bytes(p.body.get(0..2)?.try_into().ok()?));
    let mut at = 2 + topic_len;
    let qos = (p.first >> 1) & 0x03;
    let id = if qos > 0 {
        let id = u16::from_be_bytes(p.body.get(at..at + 2)?.try_into().ok()?);
        at += 2;
        Some(id)
    } else {
        None
    };
    Some((id, p.body.slice(at.min(p.body.len())..)))
}

async fn expect(
    reader: &mut BufReader<OwnedReadHalf>,
    kind: u8,
    what: &'static str,
) -> LoadResult<Packet> {
    let p = tokio::time::timeout(Duration::from_secs(10), read_packet(reader))
        .await
        .map_err(|_| LoadError::Timeout(what))??
        .ok_or_else(|| LoadError::Mqtt(format!("connection closed while {what}")))?;
    if p.first & 0xF0 != kind & 0xF0 {
        return Err(LoadError::Mqtt(format!(
            "unexpected packet {:#x} while {what}",
            p.first
        )));
    }
    Ok(p)
}

/// A connected, subscribed device.
struct MqttDevice {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

async fn open_device(broker: SocketAddr, client_id: &str, topic: &str) -> LoadResult<MqttDevice> {
    let stream = TcpStream::connect(broker)
        .await
        .map_err(|e| LoadError::Mqtt(format!("connect: {e}")))?;
    stream
        .set_nodelay(true)
        .map_err(|e| LoadError::Mqtt(e.to_string()))?;
    let (read, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    writer
        .write_all(&connect_packet(client_id, false))
        .await
        .map_err(|e| LoadError::Mqtt(e.to_string()))?;
    let ack = expect(&mut reader, CONNACK, "waiting for CONNACK").await?;
    if ack.body.get(1).copied() != Some(0) {
        return Err(LoadError::Mqtt("CONNECT refused".into()));
    }
    writer
        .write_all(&subscribe_packet(1, topic))
        .await
        .map_err(|e| LoadError::Mqtt(e.to_string()))?;
    let sub = expect(&mut reader, SUBACK, "waiting for SUBACK").await?;
    if sub.body.get(2).copied() != Some(1) {
        return Err(LoadError::Mqtt("subscription not granted at QoS 1".into()));
    }
    Ok(MqttDevice { reader, writer })
}

/// Workload (a) against the broker at `broker`: `devices` connections in
/// pairs, each publishing `messages` QoS 1 messages to its partner.
///
/// # Errors
/// Connection or protocol failures while setting up.
pub async fn run_pairs(
    broker: SocketAddr,
    devices: usize,
    messages: u64,
    config: &DriveConfig,
) -> LoadResult<DriveReport> {
    if devices == 0 || !devices.is_multiple_of(2) || config.window == 0 || config.window > 60_000 {
        return Err(LoadError::Invalid(
            "mqtt pairs: even device count, window 1..=60000",
        ));
    }
    let prefix = crate::provision::run_prefix();
    let mut conns = Vec::with_capacity(devices);
    for i in 0..devices {
        conns.push(open_device(broker, &format!("{prefix}-{i}"), &format!("{prefix}/{i}")).await?);
    }
    let shared = Arc::new(PeerRun::start(devices, messages, config));
    let start_us = shared.start_us;
    let mut readers = tokio::task::JoinSet::new();
    for (i, device) in conns.into_iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        tokio::spawn(write_loop(device.writer, rx));
        let window = Arc::new(Semaphore::new(config.window));
        tokio::spawn(send_loop(
            tx.clone(),
            Arc::clone(&window),
            Arc::clone(&shared),
            config.clone(),
            messages,
            (i, devices),
            format!("{prefix}/{}", i ^ 1),
        ));
        readers.spawn(read_loop(device.reader, tx, window, Arc::clone(&shared)));
    }
    let mut report = DriveReport {
        devices,
        ..DriveReport::default()
    };
    let mut last_us = start_us;
    while let Some(joined) = readers.join_next().await {
        let (delivered, acked, last, latency) =
            joined.map_err(|e| LoadError::Connection(e.to_string()))?;
        report.delivered += delivered;
        report.sent_ok += acked;
        last_us = last_us.max(last);
        report.latency.merge(latency);
    }
    report.expected = report.sent_ok;
    report.elapsed = Duration::from_micros(last_us.saturating_sub(start_us));
    Ok(report)
}

async fn write_loop(mut writer: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        buf.extend_from_slice(&first);
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if writer.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = writer.shutdown().await;
}

async fn send_loop(
    tx: mpsc::UnboundedSender<Bytes>,
    window: Arc<Semaphore>,
    shared: Arc<PeerRun>,
    config: DriveConfig,
    messages: u64,
    (index, devices): (usize, usize),
    topic: String,
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
        // Packet ids 1..=60000, reused only after the window moved on.
        let packet_id = u16::try_from(k % 60_000 + 1).unwrap_or(1);
        let body = payload::encode(stamp, config.payload_len);
        if tx.send(publish_packet(&topic, packet_id, &body)).is_err() {
            return;
        }
    }
}

async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    tx: mpsc::UnboundedSender<Bytes>,
    window: Arc<Semaphore>,
    shared: Arc<PeerRun>,
) -> (u64, u64, u64, crate::stats::Latencies) {
    let mut latency = crate::stats::Latencies::new();
    let (mut delivered, mut acked, mut last) = (0u64, 0u64, 0u64);
    loop {
        if shared.over() {
            break;
        }
        let packet = match tokio::time::timeout(
            Duration::from_millis(100),
            read_packet(&mut reader),
        )
        .await
        {
            Err(_) => continue,
            Ok(Ok(Some(p))) => p,
            Ok(_) => break,
        };
        match packet.first & 0xF0 {
            PUBACK => {
                window.add_permits(1);
                acked += 1;
                shared.answered.fetch_add(1, Ordering::AcqRel);
            }
            PUBLISH => {
                if let Some((id, body)) = parse_publish(&packet) {
                    let now = shared.clock.now_us();
                    if let Some(stamp) = payload::decode(&body) {
                        latency.record_us(now.saturating_sub(stamp.sent_us));
                    }
                    delivered += 1;
                    last = now;
                    shared.delivered.fetch_add(1, Ordering::AcqRel);
                    if let Some(id) = id {
                        let _ = tx.send(puback_packet(id));
                    }
                }
            }
            _ => {}
        }
    }
    (delivered, acked, last, latency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_uses_base_128_continuation() {
        let p = packet(PUBACK, &[0u8; 200]);
        assert_eq!(&p[..3], &[PUBACK, 0xC8, 0x01]);
        let p = publish_packet("t", 7, b"xy");
        assert_eq!(&p[..], &[0x32, 7, 0, 1, b't', 0, 7, b'x', b'y']);
        let parsed = parse_publish(&Packet {
            first: p[0],
            body: p.slice(2..),
        })
        .unwrap();
        assert_eq!(parsed, (Some(7), Bytes::from_static(b"xy")));
    }
}

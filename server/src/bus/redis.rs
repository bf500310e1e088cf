//! The Redis [`Bus`] for several server nodes (SPEC.md §18 "Scale-out"):
//! a push accepted on node A reaches a device connected to node B at once.
//!
//! Delivery: every node subscribes to one pub/sub channel,
//! `<namespace>:bus`, when it starts. `publish` hands the event to this
//! node's own connections of the device directly and broadcasts it on the
//! channel; each other node hands it to its connections of that device, if
//! any. Because a node's channel subscription exists before it accepts any
//! connection, and a connection registers locally before its login is
//! answered, there is no window in which a push for a device that has just
//! logged in can be missed: either the envelope was committed before the
//! device's first fetch (and the fetch returns it), or the broadcast comes
//! after the registration.
//!
//! Presence (which node holds which device): each node keeps the set of its
//! connected devices in `<namespace>:node:<node id>` (refreshed every
//! [`HEARTBEAT`], expiring after [`PRESENCE_TTL`] when a node dies) and
//! announces changes on the channel. Every node mirrors the other nodes'
//! sets, so `publish` can say whether the device is connected anywhere (the
//! webhook for offline devices fires only when it is not); operators can
//! read the sets to see where a device is.
//!
//! Redis unavailable: pushes are notifications of durable state, so nothing
//! is lost, but a connection may miss one. When a node loses its Redis link
//! it closes its connections with `ERROR_CODE_UNAVAILABLE` (the clients
//! reconnect and fetch their queues), and does so again once the link is
//! back; pushes it could not broadcast meanwhile are named in a resync
//! message after the link returns, and the nodes holding those devices close
//! their connections too, so the devices fetch. Local delivery goes on
//! without Redis.
//!
//! A Redis Cluster (`redis+cluster://…`) carries the same messages on
//! sharded channels, with the presence sets in one hash slot; how each mode
//! names and reaches things, and what a failover does, is redis_link.rs's.
//!
//! Not owned here: what a connection does with an event (connection.rs).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use microbot_protocol::transport::{ErrorCode, Push};
use prost::Message as _;
use tokio::sync::mpsc;

use super::nodes::{self, NodeSnapshot, NodeStatus, NodeTable, Scope};
use super::redis_link::{self, Client, Conn, SHARDS};
use super::{Bus, BusEvent, PUSH_CHANNEL_CAPACITY, Subscription};
use crate::admin::rollups::Point;

/// How often a node refreshes its presence set and re-reads the others'.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A presence set expires this long after its node's last heartbeat.
pub const PRESENCE_TTL: Duration = Duration::from_secs(10);
/// Longest wait for one Redis command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Events waiting to be broadcast; beyond this they are dropped (and the
/// devices concerned resynchronised later).
const OUTGOING_CAPACITY: usize = 65_536;
/// Most waiting events sent in one go (pushes in one pipeline).
const MAX_PIPELINE: usize = 256;
/// Devices remembered for a resync; beyond this every node resyncs all.
const MAX_RESYNC_DEVICES: usize = 10_000;
/// While Redis stays unavailable, how often the outage is repeated at WARN.
const OUTAGE_REPORT_EVERY: Duration = Duration::from_secs(30);
/// Length of a node id.
const NODE_ID_LEN: usize = 16;

type NodeId = [u8; NODE_ID_LEN];

/// Kinds of bus messages (first byte).
const KIND_PUSH: u8 = 1;
const KIND_DISCONNECT: u8 = 2;
const KIND_ONLINE: u8 = 3;
const KIND_OFFLINE: u8 = 4;
const KIND_RESYNC: u8 = 5;
const KIND_NODE: u8 = 6;

/// Errors starting the Redis bus.
#[derive(Debug, thiserror::Error)]
pub enum RedisBusError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    Url(String),
}

/// Live connections per device: (subscription id, channel).
type Routes = HashMap<u64, Vec<(u64, mpsc::Sender<BusEvent>)>>;

enum Outgoing {
    /// A message for the channel about `device` (None: about no device).
    Frame(Vec<u8>, Option<u64>),
    /// The first connection of a device registered here.
    Online(u64),
    /// The last connection of a device left.
    Offline(u64),
}

/// Pushes that could not be broadcast, to be named in a resync.
#[derive(Default)]
struct Missed {
    devices: HashSet<u64>,
    all: bool,
}

struct Inner {
    node: NodeId,
    namespace: String,
    /// A Redis Cluster (sharded channels), not one Redis.
    cluster: bool,
    next_id: AtomicU64,
    routes: Mutex<Routes>,
    /// Other nodes' connected devices: device → nodes.
    remote: Mutex<HashMap<u64, HashSet<NodeId>>>,
    link_up: AtomicBool,
    missed: Mutex<Missed>,
    outgoing: mpsc::Sender<Outgoing>,
    /// The nodes' snapshots (SPEC.md §18.7 Nodes), this one's included.
    nodes: Mutex<NodeTable>,
}

/// Redis-backed bus shared by the nodes of one cluster.
#[derive(Clone)]
pub struct RedisBus {
    inner: Arc<Inner>,
    _close: Arc<CloseOnDrop>,
}

/// Stops the link task (and removes this node's presence set) when the
/// last handle of the bus is dropped.
struct CloseOnDrop(tokio::sync::watch::Sender<bool>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("node", &hex::encode(self.inner.node))
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedisBus {
    /// Starts the bus: checks the URL and spawns the task that keeps the
    /// Redis link (reconnecting with back-off while Redis is away). Must be
    /// called inside a tokio runtime. `namespace` prefixes every key and
    /// channel, so several clusters can share one Redis.
    ///
    /// # Errors
    /// [`RedisBusError::Url`].
    pub fn start(url: &str, namespace: &str) -> Result<Self, RedisBusError> {
        let client = Client::open(url).map_err(RedisBusError::Url)?;
        let mut node = [0u8; NODE_ID_LEN];
        rand::fill(&mut node);
        let (outgoing, rx) = mpsc::channel(OUTGOING_CAPACITY);
        let inner = Arc::new(Inner {
            node,
            namespace: namespace.to_owned(),
            cluster: client.is_cluster(),
            next_id: AtomicU64::new(0),
            routes: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            link_up: AtomicBool::new(false),
            missed: Mutex::new(Missed::default()),
            outgoing,
            nodes: Mutex::new(NodeTable::default()),
        });
        let (close, closed) = tokio::sync::watch::channel(false);
        tokio::spawn(run(Arc::clone(&inner), client, rx, closed));
        Ok(Self {
            inner,
            _close: Arc::new(CloseOnDrop(close)),
        })
    }

    /// This node's id (hex), as used in its presence key.
    pub fn node_id(&self) -> String {
        hex::encode(self.inner.node)
    }

    /// Whether the Redis link is up now.
    pub fn is_linked(&self) -> bool {
        self.inner.link_up.load(Ordering::Relaxed)
    }
}

impl Inner {
    /// The channel of a message about `device` (None: about no device).
    fn channel(&self, device: Option<u64>) -> String {
        if self.cluster {
            format!("{}:bus:{}", self.namespace, redis_link::shard_of(device))
        } else {
            format!("{}:bus", self.namespace)
        }
    }

    /// Every channel this node listens on.
    fn channels(&self) -> Vec<String> {
        if self.cluster {
            (0..SHARDS)
                .map(|k| format!("{}:bus:{k}", self.namespace))
                .collect()
        } else {
            vec![self.channel(None)]
        }
    }

    /// `PUBLISH`, or `SPUBLISH` on a cluster's sharded channels.
    fn publish_command(&self) -> &'static str {
        if self.cluster { "SPUBLISH" } else { "PUBLISH" }
    }

    /// Prefix of the presence sets; in a cluster, hash-tagged so that all
    /// of a namespace's sets share one slot.
    fn presence_prefix(&self) -> String {
        if self.cluster {
            format!("{{{}}}:node:", self.namespace)
        } else {
            format!("{}:node:", self.namespace)
        }
    }

    fn presence_key(&self, node: &NodeId) -> String {
        format!("{}{}", self.presence_prefix(), hex::encode(node))
    }

    /// Queues a message for Redis; when it cannot be sent now, remembers
    /// the device for the resync.
    fn send(&self, message: Outgoing) {
        let device = match &message {
            Outgoing::Frame(_, device) => *device,
            Outgoing::Online(_) | Outgoing::Offline(_) => None,
        };
        if self.outgoing.try_send(message).is_err() {
            self.missed_push(device);
        }
    }

    fn missed_push(&self, device: Option<u64>) {
        let mut missed = lock(&self.missed);
        match device {
            Some(d) if missed.devices.len() < MAX_RESYNC_DEVICES => {
                missed.devices.insert(d);
            }
            Some(_) => missed.all = true,
            None => {}
        }
    }

    /// Hands an event to this node's connections of `device`.
    fn deliver_local(&self, device_id: u64, event: &BusEvent) -> usize {
        let mut routes = lock(&self.routes);
        let Some(list) = routes.get_mut(&device_id) else {
            return 0;
        };
        let mut reached = 0;
        // A full channel: drop the sender so the connection closes and the
        // client reconnects and fetches (as the local bus does).
        list.retain(|(_, tx)| match tx.try_send(event.clone()) {
            Ok(()) => {
                reached += 1;
                true
            }
            Err(_) => false,
        });
        if list.is_empty() {
            routes.remove(&device_id);
            drop(routes);
            self.send(Outgoing::Offline(device_id));
        }
        reached
    }

    /// Closes every local connection (`devices` None) or those of the
    /// listed devices with `ERROR_CODE_UNAVAILABLE`, so they fetch again.
    fn resync_local(&self, devices: Option<&[u64]>) {
        let ids: Vec<u64> = match devices {
            Some(list) => list.to_vec(),
            None => lock(&self.routes).keys().copied().collect(),
        };
        for device in ids {
            self.deliver_local(device, &BusEvent::Disconnect(ErrorCode::Unavailable));
        }
    }

    fn local_devices(&self) -> Vec<u64> {
        lock(&self.routes).keys().copied().collect()
    }

    fn frame(&self, kind: u8, device: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + NODE_ID_LEN + 8 + body.len());
        out.push(kind);
        out.extend_from_slice(&self.node);
        out.extend_from_slice(&device.to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    /// Applies a message from the channel; malformed ones are ignored.
    fn receive(&self, payload: &[u8]) {
        let Some((&kind, rest)) = payload.split_first() else {
            return;
        };
        let Some((origin, rest)) = rest.split_first_chunk::<NODE_ID_LEN>() else {
            return;
        };
        if *origin == self.node {
            return;
        }
        if kind == KIND_RESYNC {
            let devices: Vec<u64> = rest
                .chunks_exact(8)
                .filter_map(|c| <[u8; 8]>::try_from(c).ok().map(u64::from_be_bytes))
                .collect();
            tracing::info!(
                devices = devices.len(),
                "bus resync requested by another node"
            );
            self.resync_local(if devices.is_empty() {
                None
            } else {
                Some(&devices)
            });
            return;
        }
        if kind == KIND_NODE {
            match nodes::decode(rest) {
                Ok(snapshot) => lock(&self.nodes).update(snapshot, crate::clock::system_now_ms()),
                Err(error) => tracing::debug!(%error, "bad node snapshot on the bus"),
            }
            return;
        }
        let Some((device, body)) = rest.split_first_chunk::<8>() else {
            return;
        };
        let device = u64::from_be_bytes(*device);
        match kind {
            KIND_PUSH => match Push::decode(body) {
                Ok(push) => {
                    self.deliver_local(device, &BusEvent::Push(Box::new(push)));
                }
                Err(error) => tracing::debug!(%error, "malformed push on the bus"),
            },
            KIND_DISCONNECT => {
                let code = body
                    .first_chunk::<4>()
                    .map(|b| i32::from_be_bytes(*b))
                    .and_then(|c| ErrorCode::try_from(c).ok())
                    .unwrap_or(ErrorCode::Unavailable);
                self.deliver_local(device, &BusEvent::Disconnect(code));
            }
            KIND_ONLINE => {
                lock(&self.remote)
                    .entry(device)
                    .or_default()
                    .insert(*origin);
            }
            KIND_OFFLINE => {
                let mut remote = lock(&self.remote);
                if let Some(nodes) = remote.get_mut(&device) {
                    nodes.remove(origin);
                    if nodes.is_empty() {
                        remote.remove(&device);
                    }
                }
            }
            _ => tracing::debug!(kind, "unknown bus message kind"),
        }
    }
}

impl Bus for RedisBus {
    fn subscribe(&self, device_id: u64) -> Subscription {
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(PUSH_CHANNEL_CAPACITY);
        let first = {
            let mut routes = lock(&inner.routes);
            let list = routes.entry(device_id).or_default();
            list.push((id, tx));
            list.len() == 1
        };
        if first {
            inner.send(Outgoing::Online(device_id));
        }
        Subscription {
            device_id,
            id,
            events: rx,
        }
    }

    fn unsubscribe(&self, device_id: u64, subscription_id: u64) {
        let last = {
            let mut routes = lock(&self.inner.routes);
            match routes.get_mut(&device_id) {
                Some(list) => {
                    list.retain(|(id, _)| *id != subscription_id);
                    if list.is_empty() {
                        routes.remove(&device_id);
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if last {
            self.inner.send(Outgoing::Offline(device_id));
        }
    }

    fn publish(&self, device_id: u64, event: BusEvent) -> usize {
        let inner = &self.inner;
        let frame = match &event {
            BusEvent::Push(push) => inner.frame(KIND_PUSH, device_id, &push.encode_to_vec()),
            BusEvent::Disconnect(code) => {
                inner.frame(KIND_DISCONNECT, device_id, &(*code as i32).to_be_bytes())
            }
        };
        let local = inner.deliver_local(device_id, &event);
        if inner.link_up.load(Ordering::Relaxed) {
            inner.send(Outgoing::Frame(frame, Some(device_id)));
        } else {
            inner.missed_push(Some(device_id));
        }
        let remote = lock(&inner.remote).get(&device_id).map_or(0, HashSet::len);
        local.saturating_add(remote)
    }

    fn linked(&self) -> bool {
        self.is_linked()
    }

    fn node_id(&self) -> String {
        hex::encode(self.inner.node)
    }

    fn publish_node(&self, snapshot: NodeSnapshot) {
        let inner = &self.inner;
        let body = nodes::encode(&snapshot);
        lock(&inner.nodes).update(snapshot, crate::clock::system_now_ms());
        if inner.link_up.load(Ordering::Relaxed) {
            let mut frame = Vec::with_capacity(1 + NODE_ID_LEN + body.len());
            frame.push(KIND_NODE);
            frame.extend_from_slice(&inner.node);
            frame.extend_from_slice(&body);
            inner.send(Outgoing::Frame(frame, None));
        }
    }

    fn nodes(&self, now_ms: u64) -> Vec<NodeStatus> {
        lock(&self.inner.nodes).rows(now_ms)
    }

    fn points(&self, scope: Scope<'_>, from: u64) -> Option<Vec<Point>> {
        lock(&self.inner.nodes).points(scope, from)
    }
}

/// Keeps the link: connect, serve until it breaks, back off, repeat.
async fn run(
    inner: Arc<Inner>,
    client: Client,
    mut rx: mpsc::Receiver<Outgoing>,
    mut closed: tokio::sync::watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(100);
    let mut was_linked = false;
    // When the current outage was last reported at WARN (None: not yet).
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        let outcome = tokio::select! {
            outcome = serve(&inner, &client, &mut rx, &mut was_linked) => outcome,
            () = stopped(&mut closed) => {
                remove_presence(&inner, &client).await;
                return;
            }
        };
        if was_linked {
            inner.link_up.store(false, Ordering::Relaxed);
            tracing::warn!(error = %outcome, "Redis link lost: closing connections so clients fetch their queues; this node is not ready until the link is back");
            inner.resync_local(None);
            delay = Duration::from_millis(100);
            was_linked = false;
            warned = Some(tokio::time::Instant::now());
        } else if warned.is_none_or(|at| at.elapsed() >= OUTAGE_REPORT_EVERY) {
            // Unreachable, or refusing this node (a wrong password): loud
            // at the start of an outage and every so often while it lasts.
            tracing::warn!(error = %outcome, "Redis unavailable: this node is not ready (the bus is not linked); retrying");
            warned = Some(tokio::time::Instant::now());
        } else {
            tracing::debug!(error = %outcome, "Redis unavailable");
        }
        // Nothing can be broadcast now: remember whom it concerned.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                () = stopped(&mut closed) => return,
                message = rx.recv() => match message {
                    Some(Outgoing::Frame(_, device)) => inner.missed_push(device),
                    Some(_) => {}
                    None => return,
                },
            }
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

async fn timed<T>(future: impl Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
    match tokio::time::timeout(COMMAND_TIMEOUT, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("Redis command timed out".to_owned()),
    }
}

/// One link's life; returns why it ended.
async fn serve(
    inner: &Arc<Inner>,
    client: &Client,
    rx: &mut mpsc::Receiver<Outgoing>,
    was_linked: &mut bool,
) -> String {
    match serve_inner(inner, client, rx, was_linked).await {
        Ok(()) => "bus closed".to_owned(),
        Err(error) => error,
    }
}

async fn serve_inner(
    inner: &Arc<Inner>,
    client: &Client,
    rx: &mut mpsc::Receiver<Outgoing>,
    was_linked: &mut bool,
) -> Result<(), String> {
    let (mut conn, mut incoming) = timed(client.link(&inner.channels())).await?;
    let own_key = inner.presence_key(&inner.node);
    write_presence(&mut conn, &own_key, &inner.local_devices()).await?;
    refresh_mirror(inner, &mut conn).await?;
    inner.link_up.store(true, Ordering::Relaxed);
    *was_linked = true;
    tracing::info!(node = %hex::encode(inner.node), "Redis bus linked");
    // Connections open while the link was down may have missed pushes, and
    // pushes this node could not broadcast are named for the other nodes.
    inner.resync_local(None);
    let missed = std::mem::take(&mut *lock(&inner.missed));
    if missed.all || !missed.devices.is_empty() {
        let list: Vec<u64> = if missed.all {
            Vec::new()
        } else {
            missed.devices.into_iter().collect()
        };
        let mut frame = Vec::with_capacity(1 + NODE_ID_LEN + 8 * list.len());
        frame.push(KIND_RESYNC);
        frame.extend_from_slice(&inner.node);
        for d in &list {
            frame.extend_from_slice(&d.to_be_bytes());
        }
        publish(inner, &mut conn, None, frame).await?;
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            message = rx.recv() => {
                let Some(first) = message else { return Ok(()) };
                // Everything already waiting goes out with it: consecutive
                // pushes share one pipelined round trip.
                let mut batch = vec![first];
                while batch.len() < MAX_PIPELINE {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                broadcast(inner, &mut conn, &own_key, batch).await?;
            }
            message = incoming.next() => inner.receive(&message?),
            _ = heartbeat.tick() => {
                timed(redis::cmd("PEXPIRE").arg(&own_key).arg(ttl_ms()).query_async::<i64>(&mut conn)).await?;
                refresh_mirror(inner, &mut conn).await?;
            }
        }
    }
}

/// Resolves once the bus is closed.
async fn stopped(closed: &mut tokio::sync::watch::Receiver<bool>) {
    // An error means the sender is gone, which is closing too.
    let _ = closed.wait_for(|c| *c).await;
}

/// Deletes this node's presence set on a clean stop (best effort).
async fn remove_presence(inner: &Inner, client: &Client) {
    let key = inner.presence_key(&inner.node);
    if let Ok(mut conn) = timed(client.connect()).await {
        let _ = timed(redis::cmd("DEL").arg(&key).query_async::<i64>(&mut conn)).await;
    }
}

fn ttl_ms() -> u64 {
    u64::try_from(PRESENCE_TTL.as_millis()).unwrap_or(10_000)
}

/// Sends `batch` in order: runs of push frames as one pipeline of
/// `PUBLISH`es per channel (one channel unless a cluster; the pipelines
/// at once), presence changes one by one. A push that could not be sent is
/// remembered for the resync after the link returns.
async fn broadcast(
    inner: &Inner,
    conn: &mut Conn,
    own_key: &str,
    batch: Vec<Outgoing>,
) -> Result<(), String> {
    let mut frames: Vec<(Vec<u8>, Option<u64>)> = Vec::new();
    let mut rest = batch.into_iter().peekable();
    while let Some(message) = rest.next() {
        let sent = match message {
            Outgoing::Frame(frame, device) => {
                frames.push((frame, device));
                if matches!(rest.peek(), Some(Outgoing::Frame(..))) {
                    continue;
                }
                // A pipeline stays in one hash slot: one per channel.
                let mut pipes: BTreeMap<String, redis::Pipeline> = BTreeMap::new();
                for (frame, device) in &frames {
                    pipes
                        .entry(inner.channel(*device))
                        .or_insert_with(redis::pipe)
                        .cmd(inner.publish_command())
                        .arg(inner.channel(*device))
                        .arg(frame.as_slice())
                        .ignore();
                }
                // Concurrently: in a cluster they go to several primaries,
                // and only one device's messages need an order (one channel).
                let sent: Result<(), String> =
                    futures_util::future::join_all(pipes.values().map(|pipe| {
                        let mut conn = conn.clone();
                        async move { timed(pipe.query_async::<()>(&mut conn)).await }
                    }))
                    .await
                    .into_iter()
                    .collect();
                if sent.is_ok() {
                    frames.clear();
                }
                sent
            }
            Outgoing::Online(device) => {
                presence(
                    inner,
                    conn,
                    "SADD",
                    own_key,
                    device,
                    inner.frame(KIND_ONLINE, device, &[]),
                )
                .await
            }
            Outgoing::Offline(device) => {
                presence(
                    inner,
                    conn,
                    "SREM",
                    own_key,
                    device,
                    inner.frame(KIND_OFFLINE, device, &[]),
                )
                .await
            }
        };
        if let Err(error) = sent {
            // Nothing after the failure was sent: name it for the resync.
            let unsent = rest.filter_map(|m| match m {
                Outgoing::Frame(_, device) => Some(device),
                Outgoing::Online(_) | Outgoing::Offline(_) => None,
            });
            for device in frames.drain(..).map(|(_, d)| d).chain(unsent) {
                inner.missed_push(device);
            }
            return Err(error);
        }
    }
    Ok(())
}

/// A presence change: the set update, then its announcement.
async fn presence(
    inner: &Inner,
    conn: &mut Conn,
    command: &str,
    own_key: &str,
    device: u64,
    announcement: Vec<u8>,
) -> Result<(), String> {
    timed(
        redis::cmd(command)
            .arg(own_key)
            .arg(device)
            .query_async::<i64>(conn),
    )
    .await?;
    publish(inner, conn, Some(device), announcement).await
}

/// Publishes one message about `device` on its channel.
async fn publish(
    inner: &Inner,
    conn: &mut Conn,
    device: Option<u64>,
    frame: Vec<u8>,
) -> Result<(), String> {
    timed(
        redis::cmd(inner.publish_command())
            .arg(inner.channel(device))
            .arg(frame)
            .query_async::<i64>(conn),
    )
    .await
    .map(|_| ())
}

/// Replaces this node's presence set with `devices`.
async fn write_presence(conn: &mut Conn, key: &str, devices: &[u64]) -> Result<(), String> {
    let mut pipe = redis::pipe();
    pipe.atomic().cmd("DEL").arg(key).ignore();
    if !devices.is_empty() {
        pipe.cmd("SADD").arg(key).arg(devices).ignore();
    }
    pipe.cmd("PEXPIRE").arg(key).arg(ttl_ms()).ignore();
    timed(pipe.query_async::<()>(conn)).await
}

/// Re-reads every other node's presence set into the mirror.
async fn refresh_mirror(inner: &Inner, conn: &mut Conn) -> Result<(), String> {
    let prefix = inner.presence_prefix();
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch) = timed(conn.scan(cursor, &pattern)).await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut mirror: HashMap<u64, HashSet<NodeId>> = HashMap::new();
    for key in keys {
        let Some(node) = key
            .strip_prefix(&prefix)
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| NodeId::try_from(b).ok())
        else {
            continue;
        };
        if node == inner.node {
            continue;
        }
        let devices: Vec<u64> = timed(redis::cmd("SMEMBERS").arg(&key).query_async(conn)).await?;
        for device in devices {
            mirror.entry(device).or_default().insert(node);
        }
    }
    *lock(&inner.remote) = mirror;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use microbot_protocol::transport::{PrekeyLowStock, push};

    fn node(id: u8) -> (Arc<Inner>, mpsc::Receiver<Outgoing>) {
        let (outgoing, rx) = mpsc::channel(16);
        let inner = Arc::new(Inner {
            node: [id; NODE_ID_LEN],
            namespace: "t".to_owned(),
            cluster: false,
            next_id: AtomicU64::new(0),
            routes: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            link_up: AtomicBool::new(true),
            missed: Mutex::new(Missed::default()),
            outgoing,
            nodes: Mutex::new(NodeTable::default()),
        });
        (inner, rx)
    }

    fn bus(inner: &Arc<Inner>) -> RedisBus {
        let (close, _) = tokio::sync::watch::channel(false);
        RedisBus {
            inner: Arc::clone(inner),
            _close: Arc::new(CloseOnDrop(close)),
        }
    }

    fn low_stock() -> BusEvent {
        BusEvent::Push(Box::new(Push {
            event: Some(push::Event::PrekeyLowStock(PrekeyLowStock {
                one_time_prekeys: 1,
                kem_prekeys: 2,
                threshold: 3,
            })),
        }))
    }

    #[test]
    fn a_push_published_on_one_node_reaches_the_device_on_another() {
        let (a, mut a_out) = node(1);
        let (b, mut b_out) = node(2);
        let mut sub = bus(&b).subscribe(42);
        assert!(matches!(b_out.try_recv(), Ok(Outgoing::Online(42))));
        assert_eq!(bus(&a).publish(42, low_stock()), 0, "no presence known yet");
        let Ok(Outgoing::Frame(frame, Some(42))) = a_out.try_recv() else {
            panic!("node A broadcasts the push");
        };
        b.receive(&frame);
        match sub.events.try_recv() {
            Ok(BusEvent::Push(p)) => {
                assert!(matches!(p.event, Some(push::Event::PrekeyLowStock(_))))
            }
            other => panic!("{other:?}"),
        }
        // Its own broadcast coming back is ignored (already delivered locally).
        a.receive(&frame);
        // Presence: B announces the device, A counts it as reached.
        a.receive(&b.frame(KIND_ONLINE, 42, &[]));
        assert_eq!(bus(&a).publish(42, low_stock()), 1);
        a.receive(&b.frame(KIND_OFFLINE, 42, &[]));
        assert_eq!(bus(&a).publish(42, low_stock()), 0);
    }

    #[test]
    fn malformed_bus_messages_are_ignored() {
        let (b, _out) = node(2);
        let mut sub = bus(&b).subscribe(7);
        let mut frame = b.frame(KIND_PUSH, 7, &[0xff, 0xff, 0xff]);
        frame[1] = 9; // another origin
        for bad in [
            &[][..],
            &[KIND_PUSH][..],
            &[KIND_PUSH, 9, 9][..],
            &frame[..],
            &frame[..20],
            &[99; 40][..],
        ] {
            b.receive(bad);
        }
        assert!(sub.events.try_recv().is_err(), "nothing was delivered");
        let mut disconnect = b.frame(KIND_DISCONNECT, 7, &[0, 0]);
        disconnect[1] = 9;
        b.receive(&disconnect);
        assert!(matches!(
            sub.events.try_recv(),
            Ok(BusEvent::Disconnect(ErrorCode::Unavailable))
        ));
    }

    #[test]
    fn pushes_that_could_not_be_broadcast_are_remembered_for_a_resync() {
        let (a, _out) = node(1);
        a.link_up.store(false, Ordering::Relaxed);
        bus(&a).publish(5, low_stock());
        bus(&a).publish(6, low_stock());
        let missed = lock(&a.missed);
        assert!(missed.devices.contains(&5) && missed.devices.contains(&6));
        assert!(!missed.all);
    }
}

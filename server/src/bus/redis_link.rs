//! One Redis link of the bus (SPEC.md §18.6): a command connection plus
//! the subscription the other nodes' messages arrive on, to one Redis or to
//! a Redis Cluster. redis.rs decides what to send; this module knows how
//! each mode names and reaches things.
//!
//! One instance: classic pub/sub on the single channel `<ns>:bus`,
//! presence sets `<ns>:node:<id>` found by `SCAN`.
//!
//! Redis Cluster: sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7) on
//! [`SHARDS`] channels `<ns>:bus:<k>`, each in its own hash slot, so the
//! push traffic spreads over the primaries instead of every message
//! crossing the whole cluster bus as classic `PUBLISH` does. A message
//! about device `d` goes on channel `d mod SHARDS` (a device's pushes and
//! presence announcements stay in order on one channel); messages about
//! no device (node snapshots, resync requests) on channel 0. Every node
//! subscribes to all of them. The presence sets are
//! `{<ns>}:node:<id>`: the hash tag puts every set of a namespace in one
//! slot, so one `SCAN` on that slot's primary lists them.
//!
//! Failover: the cluster connection reports a lost node connection (a
//! killed primary) as a `Disconnection` push, and the server's own
//! unsubscription of a moved shard channel as `sunsubscribe`; either ends
//! the link, as a lost single Redis does, so redis.rs closes this node's
//! connections, reconnects (re-reading the topology, reaching the promoted
//! replica) and resynchronises: whatever was published into the gap is
//! fetched from the durable queues.
//!
//! Not owned here: the message format and what is sent when (redis.rs).

use std::pin::Pin;
use std::time::Duration;

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, PushKind, RedisFuture, Value};
use tokio::sync::mpsc;

use super::target::Target;

/// Sharded channels of a cluster-mode bus.
pub const SHARDS: u64 = 16;
/// Longest wait to connect to a node, or for one reply, inside the
/// cluster client (redis.rs bounds every command as a whole too).
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the bus connects.
pub(super) enum Client {
    Single(redis::Client),
    Cluster(Vec<String>),
}

impl Client {
    /// Checks the `redis` URL.
    pub(super) fn open(url: &str) -> Result<Self, String> {
        match Target::parse(url).map_err(|e| e.to_string())? {
            Target::Single(url) => redis::Client::open(url)
                .map(Self::Single)
                .map_err(|e| e.to_string()),
            Target::Cluster(seeds) => {
                // Checked now so a bad seed is a start-up error.
                cluster_client(&seeds, None).map_err(|e| e.to_string())?;
                Ok(Self::Cluster(seeds))
            }
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A command connection without a subscription.
    pub(super) async fn connect(&self) -> redis::RedisResult<Conn> {
        match self {
            Self::Single(client) => client
                .get_multiplexed_async_connection()
                .await
                .map(Conn::Single),
            Self::Cluster(seeds) => {
                let client = cluster_client(seeds, None)?;
                client.get_async_connection().await.map(Conn::Cluster)
            }
        }
    }

    /// A command connection and the subscription to `channels`.
    pub(super) async fn link(&self, channels: &[String]) -> redis::RedisResult<(Conn, Incoming)> {
        match self {
            Self::Single(client) => {
                let mut pubsub = client.get_async_pubsub().await?;
                for channel in channels {
                    pubsub.subscribe(channel).await?;
                }
                let conn = client.get_multiplexed_async_connection().await?;
                Ok((
                    Conn::Single(conn),
                    Incoming::Single(pubsub.into_on_message()),
                ))
            }
            Self::Cluster(seeds) => {
                let (tx, rx) = mpsc::unbounded_channel();
                let client = cluster_client(seeds, Some(tx))?;
                let mut conn = client.get_async_connection().await?;
                // One channel per command: they are in different slots.
                for channel in channels {
                    conn.ssubscribe(channel).await?;
                }
                Ok((Conn::Cluster(conn), Incoming::Cluster(rx)))
            }
        }
    }
}

fn cluster_client(
    seeds: &[String],
    pushes: Option<mpsc::UnboundedSender<redis::PushInfo>>,
) -> redis::RedisResult<redis::cluster::ClusterClient> {
    let mut builder = redis::cluster::ClusterClientBuilder::new(seeds.iter().map(String::as_str))
        .use_protocol(redis::ProtocolVersion::RESP3)
        .connection_timeout(CLUSTER_TIMEOUT)
        .response_timeout(CLUSTER_TIMEOUT)
        .retries(2);
    if let Some(tx) = pushes {
        builder = builder.push_sender(tx);
    }
    builder.build()
}

/// The command connection of a link (clones share it).
#[derive(Clone)]
pub(super) enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// One `SCAN` step for keys matching `pattern`; in a cluster, on the
    /// primary of `pattern`'s hash slot (the pattern carries the tag).
    pub(super) async fn scan(
        &mut self,
        cursor: u64,
        pattern: &str,
    ) -> redis::RedisResult<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        match self {
            Self::Single(c) => cmd.query_async(c).await,
            Self::Cluster(c) => {
                let route = Route::with_key(pattern.as_bytes(), SlotAddr::Master);
                let value = c
                    .route_command(
                        cmd,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                    )
                    .await?;
                Ok(redis::from_redis_value(value)?)
            }
        }
    }
}

/// Where the other nodes' messages arrive.
pub(super) enum Incoming {
    Single(redis::aio::PubSubStream),
    Cluster(mpsc::UnboundedReceiver<redis::PushInfo>),
}

impl Incoming {
    /// The next message's payload; an error when the subscription is gone
    /// (or, in a cluster, may have missed messages).
    pub(super) async fn next(&mut self) -> Result<Vec<u8>, String> {
        match self {
            Self::Single(stream) => {
                let message = std::future::poll_fn(|cx| {
                    futures_core::Stream::poll_next(Pin::new(&mut *stream), cx)
                })
                .await
                .ok_or_else(|| "Redis subscription closed".to_owned())?;
                Ok(message.get_payload_bytes().to_vec())
            }
            Self::Cluster(rx) => loop {
                let push = rx
                    .recv()
                    .await
                    .ok_or_else(|| "Redis Cluster connection closed".to_owned())?;
                match push.kind {
                    PushKind::SMessage => {
                        if let Some(Value::BulkString(payload)) = push.data.into_iter().nth(1) {
                            return Ok(payload);
                        }
                    }
                    PushKind::Disconnection => {
                        return Err("lost the connection to a Redis Cluster node".to_owned());
                    }
                    PushKind::SUnsubscribe => {
                        return Err(
                            "a sharded channel moved to another Redis Cluster node".to_owned()
                        );
                    }
                    _ => {}
                }
            },
        }
    }
}

/// The shard channel of a message about `device` (None: about no device).
pub fn shard_of(device: Option<u64>) -> u64 {
    device.map_or(0, |d| d % SHARDS)
}

//! # microbot-loadgen
//!
//! Load generator and server benchmarks for Microbot (issue 8; results and
//! conditions in `BENCHMARKS.md`, "Server load"). It speaks the transport
//! of SPEC.md §12 directly (pre-encrypted envelopes: the server alone) or
//! through the client SDK (crypto included), and compares the server with
//! a floor and a peer measured on the same machine in the same run:
//!
//! - [`pairs`]: (a) devices in pairs, 256-byte messages, saturation and a
//!   fixed offered rate, end-to-end latency percentiles;
//! - [`fanout`]: (b) group fan-out to groups of 10/100/1000 members;
//! - [`idle`]: (c) idle logged-in connections and server RSS per connection;
//! - [`logins`]: (d) QUIC handshakes + challenge logins per second;
//! - [`relay`]: the floor, a plain QUIC relay without storage or auth;
//! - [`mqtt`]: the peer, workload (a) against mosquitto (QoS 1, persistence on);
//! - [`amqp`]: the durable peer, workload (a) against RabbitMQ (a quorum
//!   queue per receiving device, publisher confirms: fsynced before confirmed);
//! - [`sdk`]: workload (a) through `microbot-client`, crypto included;
//! - [`suite`]: all of the above against child processes, one table;
//! - [`cluster`]: workload (a) on 1, 2, 3… nodes sharing PostgreSQL + Redis
//!   (issue 9, SPEC.md §18.6), beside one node on SQLite, on a Redis
//!   Cluster and behind nginx ([`balancer`]), with what each run left in
//!   the engines ([`footprint`]);
//! - [`targets`]: the targets of issue 17, met or missed, from one run's figures.
//!
//! Supporting modules: [`wire`] (transport client), [`provision`] (accounts
//! with real TOTP codes), [`driver`] (the send/receive/ack engine),
//! [`payload`] (timestamped messages), [`stats`] (percentiles, table),
//! [`procs`] (child processes, RSS), [`cpu`] (CPU per unit of work, the
//! cap it puts on this machine).
//!
//! Not owned here: the server and the SDK being measured.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(not(feature = "amqp"))]
#[path = "amqp_absent.rs"]
pub mod amqp;
pub mod balancer;
pub mod cluster;
pub mod cpu;
pub mod driver;
pub mod error;
pub mod fanout;
pub mod footprint;
pub mod idle;
pub mod logins;
pub mod mqtt;
pub mod pairs;
pub mod payload;
mod peer_run;
pub mod procs;
pub mod provision;
pub mod relay;
pub mod sdk;
pub mod stats;
pub mod suite;
pub mod targets;
pub mod wire;

pub use error::{LoadError, LoadResult};

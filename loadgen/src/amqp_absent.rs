//! The durable peer in a build without the `amqp` feature: the same
//! entry point, refusing with the command that builds it in. The
//! workspace's default build leaves the AMQP client out (the tests never
//! start RabbitMQ); scripts/bench-server.sh builds with the feature.

use std::net::SocketAddr;

use crate::driver::{DriveConfig, DriveReport};
use crate::error::{LoadError, LoadResult};

/// This build has no AMQP client (the `amqp` feature is off).
pub const BUILT: bool = false;

/// Refuses: this build cannot speak AMQP.
///
/// # Errors
/// Always [`LoadError::AmqpNotBuilt`].
pub async fn run_pairs(
    _broker: SocketAddr,
    _devices: usize,
    _messages: u64,
    _config: &DriveConfig,
) -> LoadResult<DriveReport> {
    Err(LoadError::AmqpNotBuilt)
}

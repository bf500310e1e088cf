//! The one error type of the load generator: every failure says which step
//! of a workload went wrong, so a benchmark run that fails reads clearly.

use microbot_protocol::transport::ErrorCode;

/// Why a workload (or setting it up) failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The QUIC or TLS configuration could not be built.
    #[error("configuration: {0}")]
    Config(String),
    /// A UDP/TCP socket or a file could not be opened.
    #[error("i/o while {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The QUIC connection could not be made or was lost.
    #[error("connection: {0}")]
    Connection(String),
    /// A frame could not be encoded or decoded.
    #[error("frame: {0}")]
    Frame(String),
    /// The server answered a request with an error.
    #[error("server refused {request}: {code:?} ({message})")]
    Refused {
        /// The request.
        request: &'static str,
        /// The error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The server answered with a result of the wrong kind.
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
    /// Nothing arrived in time.
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// A child process (server, relay, broker) misbehaved.
    #[error("process {name}: {reason}")]
    Process {
        /// Which program.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The workload parameters are inconsistent.
    #[error("invalid workload: {0}")]
    Invalid(&'static str),
    /// The client SDK failed (crypto-included mode).
    #[error("client SDK: {0}")]
    Sdk(String),
    /// An MQTT broker misbehaved or refused.
    #[error("mqtt: {0}")]
    Mqtt(String),
    /// An AMQP broker (RabbitMQ) misbehaved or refused.
    #[error("amqp: {0}")]
    Amqp(String),
    /// The durable peer was asked for, but this build has no AMQP client:
    /// build with `--features amqp` (scripts/bench-server.sh does).
    #[error(
        "the load generator was built without the `amqp` feature: \
         cargo build --release -p microbot-loadgen --features amqp"
    )]
    AmqpNotBuilt,
}

impl LoadError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io { what, source }
    }

    /// Wraps any displayable connection failure.
    pub fn connection(error: impl std::fmt::Display) -> Self {
        Self::Connection(error.to_string())
    }
}

/// Result of the load generator.
pub type LoadResult<T> = Result<T, LoadError>;

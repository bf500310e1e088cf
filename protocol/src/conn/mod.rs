//! The client–server conversation as a sans-I/O state machine (SPEC.md
//! §12.3 streams, §12.4 Hello and versions, §12.8 errors).
//!
//! In the quinn-proto model: the caller feeds received bytes (a QUIC request
//! stream) or whole frame bodies (one WebSocket message each) in, and takes
//! frames to write and typed outputs out. The machine never touches a
//! socket, a task or a clock, so its tests run without a runtime.
//!
//! - [`ClientConn`]: the client role. Hello and the check of its answer,
//!   request ids, answers matched to pending requests, pushes kept apart,
//!   error frames mapped to [`WireError`].
//! - [`ServerConn`]: the server role. Hello first (and only once), version
//!   negotiation, request frames validated, answers and pushes framed.
//!
//! Invariants: bad input from the peer never panics; it is a typed error
//! ([`ClientConnError`], [`ServerConnError`]) and leaves the machine's state
//! as it was (bytes the codec refuses are not kept; a body that does not
//! decode is consumed and nothing else changes). Only errors about Hello
//! move a client machine to its closed state, as they end the connection.
//!
//! Not owned here: what a request means (the server's handlers), when to
//! time out or reconnect (the I/O shells in server/ and client/), and the
//! frame codec itself ([`crate::codec`]).

mod client;
mod error;
mod server;
mod wire_error;

pub use client::{ClientConn, ClientEvent, Transmit};
pub use error::{AnswerError, ClientConnError, ServerConnError};
pub use server::{Incoming, ServerConfig, ServerConn, answer_frame, push_frame};
pub use wire_error::WireError;

/// The ALPN protocol id of Microbot v1 on QUIC (SPEC.md §12.3).
pub const ALPN: &[u8] = b"microbot/1";

/// The smallest step of QUIC path MTU discovery on every Microbot endpoint
/// (the server and the client SDK set it on quinn's `MtuDiscoveryConfig`):
/// more than half of the range from QUIC's 1200 bytes to 1452 (a
/// 1500-byte Ethernet path), so the upper bound is probed first and a path
/// that carries it is found with one probe, not quinn's default four
/// (1326, 1389, 1420, 1452), each of which the receiver parses a byte of
/// padding at a time. A path that drops 1452 bytes is searched at 1325 and
/// settles within this step of its MTU.
pub const MTU_PROBE_STEP: u16 = 127;

/// The protocol versions this implementation speaks (SPEC.md §12.4).
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// The longest `Hello.client_agent` a server accepts, in bytes (SPEC.md §12.4).
pub const MAX_CLIENT_AGENT_LEN: usize = 128;

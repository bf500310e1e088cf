//! What the workspace's integration tests share, written once:
//! - [`server`]: a real server running in-process on loopback
//!   ([`BlockingServer`], for tests that drive child processes such as the
//!   `microbot` CLI, node or a compiled C program) and the cheap
//!   configuration every test server uses ([`test_config`]);
//! - [`totp`]: an authenticator app ([`Authenticator`]) that computes
//!   RFC 6238 codes from the base32 secret a registration prints;
//! - [`sdk`]: the harness of tests written against the client SDK (an
//!   async in-process server, registered users, enrolled devices, waiting
//!   for events), used by the SDK's and the bots' tests;
//! - [`engines`]: the PostgreSQL and Redis engines of the scale-out tests
//!   (URLs from the environment, a fresh schema per test);
//! - [`layout`]: the check that every integration test file is built;
//! - [`udp_link`]: a UDP relay between a QUIC client and a server that a
//!   test can cut or give a slow uplink ([`UdpLink`]).
//!
//! Test code: a failure to start is a test failure, so the functions here
//! panic with the reason instead of returning errors.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod engines;
pub mod layout;
pub mod sdk;
pub mod server;
pub mod totp;
pub mod udp_link;

pub use server::{BlockingServer, test_config};
pub use totp::{Authenticator, now_secs};
pub use udp_link::UdpLink;

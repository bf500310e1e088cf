//! # microbot-protocol
//!
//! The wire format shared by Microbot clients and servers, sans-I/O:
//! protobuf messages generated from `proto/` and the frame codec.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codec;

/// Messages carried inside the end-to-end ciphertext (`proto/content.proto`).
#[allow(missing_docs, clippy::all)]
pub mod content {
    include!(concat!(env!("OUT_DIR"), "/microbot.content.v1.rs"));
}

/// Client ↔ server RPC messages (`proto/transport.proto`).
#[allow(missing_docs, clippy::all)]
pub mod transport {
    include!(concat!(env!("OUT_DIR"), "/microbot.transport.v1.rs"));
}

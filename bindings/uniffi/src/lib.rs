//! # microbot-uniffi: the Microbot client SDK for Python, Kotlin and Swift
//!
//! UniFFI proc-macro bindings over `microbot-client`, the same surface as
//! the C ABI (`bindings/c`): a [`Server`] (address + pinned certificate,
//! registration), an [`Account`] (enrol or open, connect, send, react,
//! edit, groups, files) and its events, pulled with
//! [`Account::next_event`] or pushed to an [`EventListener`].
//!
//! Every method blocks the calling thread on an internal tokio runtime
//! (two worker threads); call them from a worker thread of the app, not
//! its UI thread. A listener is called on one thread per account
//! (`microbot-events`), in order.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod account;
mod error;
mod event;
mod runtime;
mod server;

pub use account::{Account, EventListener};
pub use error::MicrobotError;
pub use event::{Event, GroupUpdate};
pub use server::{Registration, Server};

uniffi::setup_scaffolding!();

/// The library's version.
#[uniffi::export]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

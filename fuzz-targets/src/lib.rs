//! # microbot-fuzz-targets
//!
//! The bodies of Microbot's fuzz targets (issue 7), one pure function per
//! target: `pub fn <target>(data: &[u8])`. The cargo-fuzz project in `fuzz/`
//! wraps each in a two-line `fuzz_target!`; `tests/corpus_replay.rs` runs every
//! committed corpus and seed file through the same functions, so `cargo test`
//! guards every input the fuzzer ever kept.
//!
//! A target never panics on any input. It `assert!`s only invariants whose
//! breach is a real bug in the code under test: a failed decrypt changed the
//! state, decode → encode → decode is not stable, a tampered ciphertext
//! decrypted, a genuine message was refused, a buffer grew past its bound.
//!
//! Targets by module:
//! - [`frames`]: the frame decoder against a reference model (SPEC.md §10).
//! - [`messages`]: every prost message a server or client parses, content
//!   validation and padding, edit/delete convergence (SPEC.md §11, §12).
//! - [`ratchet`]: session and ratchet decryption on arbitrary and on mutated
//!   real messages, and a two-party conversation model (SPEC.md §4.3, §5).
//! - [`prekey`]: prekey messages handled by `Session::peek` / `Session::accept`.
//! - [`sender_key`]: sender-key decryption (SPEC.md §6).
//! - [`sealed_sender`]: opening sealed envelopes and parsing sender
//!   certificates (SPEC.md §19).
//! - [`device_list`]: parsing and verifying signed device lists (SPEC.md §20).
//! - [`attachment`]: STREAM attachment decryption (SPEC.md §7).
//! - [`attachment_http`]: the id and `If-None-Match` of an attachment
//!   download over HTTP (SPEC.md §12.16).
//! - [`state`]: every persisted state's `from_bytes` (SPEC.md §5.7, §6.7, §9).
//! - [`bot`]: the bot framework's command, delay and reminder-file parsers.
//! - [`admin`]: what a node reads from the others for the dashboard
//!   (node snapshots, SPEC.md §18.7).
//! - [`conn_machine`]: the sans-I/O connection machine, client and server
//!   role, on well-formed and arbitrary traffic (SPEC.md §12).
//! - [`server_handler`]: the server's request handler fed frame sequences on
//!   several connections, before and after login (SPEC.md §12).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod attachment;
pub mod attachment_http;
pub mod bot;
pub mod conn_machine;
pub mod device_list;
pub mod fixtures;
pub mod frames;
pub mod messages;
pub mod mutate;
pub mod prekey;
pub mod ratchet;
pub mod sealed_sender;
pub mod sender_key;
pub mod server_handler;
pub mod state;

/// A fuzz target: a pure function of its input that never panics unless an
/// invariant of the code under test is broken.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` wrapper and
/// its corpus directories `fuzz/corpus/<name>/` and `fuzz/seeds/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_decoder", frames::frame_decoder),
    ("client_frame", messages::client_frame),
    ("server_frame", messages::server_frame),
    ("content", messages::content),
    ("convergence", messages::convergence),
    ("session_decrypt", ratchet::session_decrypt),
    ("ratchet_mutated", ratchet::ratchet_mutated),
    ("ratchet_conversation", ratchet::ratchet_conversation),
    ("prekey_message", prekey::prekey_message),
    ("prekey_mutated", prekey::prekey_mutated),
    ("sender_key_decrypt", sender_key::sender_key_decrypt),
    ("sender_key_mutated", sender_key::sender_key_mutated),
    ("attachment_decrypt", attachment::attachment_decrypt),
    ("attachment_mutated", attachment::attachment_mutated),
    (
        "attachment_http_path",
        attachment_http::attachment_http_path,
    ),
    ("stored_state", state::stored_state),
    ("server_handler", server_handler::server_handler),
    ("sealed_sender_open", sealed_sender::sealed_sender_open),
    ("device_list_parse", device_list::device_list_parse),
    ("bot_command", bot::bot_command),
    ("admin_input", admin::admin_input),
    ("conn_machine", conn_machine::conn_machine),
];

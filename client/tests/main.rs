//! The client SDK's integration tests, in one binary: one link instead of
//! one per file; the harness (`common`) is `microbot_test_support::sdk`,
//! shared with the bots' tests. Each
//! file is a module named as the file; `cargo test -p microbot-client
//! --test client groups::` runs one of them. `every_test_file_is_built`
//! fails when a file in this folder is not a module here, so no test is
//! left out silently (Cargo.toml sets `autotests = false`).

use microbot_test_support::sdk as common;

mod address_tokens;
mod attachments;
mod bot_from_nothing;
mod convergence;
mod dead_node;
mod device_lists;
mod downgrade;
mod echo_bot;
mod event_streams;
mod failover;
mod groups;
mod history_pages;
mod linking;
mod messaging;
mod module_graph;
mod offline;
mod outbox_events;
mod own_backend;
mod own_device_sync;
mod queued_files;
mod sealed_sender;
mod security;
mod shown;
mod store_files;
mod websocket;

/// Every `.rs` file in this folder is a module of this binary.
#[test]
fn every_test_file_is_built() {
    microbot_test_support::layout::assert_every_test_file_is_built(env!("CARGO_MANIFEST_DIR"));
}

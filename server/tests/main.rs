//! The server's integration tests, in one binary: one compile of the
//! shared harness (`common`, `support`) and one link, instead of one per
//! file. Each file is a module named as the file; `cargo test -p
//! microbot-server --test server queues::` runs one of them.
//!
//! Three files stay binaries of their own because each installs the
//! process's global log subscriber to read what the server logged
//! (`logs.rs`, `ops_health.rs`, `sealed_sender.rs`); they are listed as
//! `[[test]]` in Cargo.toml. `every_test_file_is_built` fails when a file in
//! this folder is neither a module here nor a binary there, so no test is
//! left out silently (Cargo.toml sets `autotests = false`).

mod common;
mod support;

mod admin_accounts;
mod admin_cluster;
mod admin_listener;
mod admin_storage;
mod analytics;
mod attachment_cdn;
mod attachments;
mod auth;
mod backup;
mod bad_input;
mod cluster;
mod complete_accounts;
mod crash_sigkill;
mod deploy_examples;
mod device_lists;
mod end_to_end;
mod groups;
mod health_checks;
mod limits;
mod load_balancer;
mod metrics;
mod monitoring_docs;
mod ops_start;
mod pipelined_requests;
mod plaintext_scan;
mod prekeys;
mod provisioning;
mod queues;
mod redis_cluster;
mod redis_fallback;
mod review_accounts;
mod review_connections;
mod review_groups_prekeys;
mod review_hardening;
mod review_quotas;
mod review_shared_quotas;
mod review_storage;
mod sealed_sender_recipient;
mod shared_limits;
mod slow_reader;
mod startup;
mod storage_backends;
mod web_app;
mod webhooks;
mod websocket;

/// Every `.rs` file in this folder is built: a module of this binary, or a
/// `[[test]]` of its own in Cargo.toml.
#[test]
fn every_test_file_is_built() {
    microbot_test_support::layout::assert_every_test_file_is_built(env!("CARGO_MANIFEST_DIR"));
}

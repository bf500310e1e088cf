//! The `microbot` command line's integration tests, in one binary: one
//! compile of the shared harness (`common`) and one link instead of one
//! per file. Each file is a module named as the file; `cargo test -p
//! microbot-cli --test cli history::` runs one of them.
//! `every_test_file_is_built` fails when a file in this folder is not a
//! module here, so no test is left out silently (Cargo.toml sets
//! `autotests = false`).

mod common;

mod cluster_failover;
mod failover;
mod history;
mod new_user;
mod sealed_sender;
mod two_profiles;
mod typescript_interop;

/// Every `.rs` file in this folder is a module of this binary.
#[test]
fn every_test_file_is_built() {
    microbot_test_support::layout::assert_every_test_file_is_built(env!("CARGO_MANIFEST_DIR"));
}

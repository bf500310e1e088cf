//! The client SDK's integration tests, in one binary: one link instead of
//! one per file; the harness (`common`) is `microbot_test_support::sdk`,
//! shared with the bots' tests. Each
//! file is a module named as the file; `cargo test -p microbot-client
//! --test client groups::` runs one of them. `every_test_file_is_built`
//! fails when a file in this folder is not a module here, so no test is
//! left out silently (Cargo.toml sets `autotests = false`).

use microbot_test_support::sdk as common;

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
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(stem) = path.file_stem().and_then(|n| n.to_str()) else {
            continue;
        };
        let is_rust = path.extension().is_some_and(|e| e == "rs");
        if is_rust && stem != "main" && !main.contains(&format!("\nmod {stem};\n")) {
            missing.push(stem.to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "test files built by nothing: {missing:?}"
    );
}

//! Generates the protobuf code from `proto/*.proto` with `protox`, a pure-Rust
//! protobuf compiler, so a fresh machine needs only cargo (no system protoc).

use std::path::PathBuf;

/// Content messages whose generated `Debug` is replaced by a redacting one.
const REDACTED_DEBUG: &[&str] = &[
    "Content",
    "Text",
    "ReplyTo",
    "Reaction",
    "Edit",
    "Delete",
    "ReadReceipt",
    "DeliveryReceipt",
    "Typing",
    "AttachmentPointer",
    "GroupChange",
    "GroupMetadata",
    "SenderKeyDistribution",
    "CallSignal",
    "CallOffer",
    "CallAnswer",
    "CallIceCandidate",
    "CallHangup",
    "SyncMessage",
    "SentTranscript",
    "ProvisionMessage",
    "ProvisionedContact",
    "ProvisionedGroup",
    "HistoryMessage",
    "MiniappEvent",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from("proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&proto_dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed=proto");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&proto_dir])?;
    prost_build::Config::new()
        .bytes(["."])
        // Content messages carry plaintext and keys: their `Debug` impls are
        // written by hand and redact them (src/content_ext/debug.rs).
        .skip_debug(
            REDACTED_DEBUG
                .iter()
                .map(|name| format!(".microbot.content.v1.{name}")),
        )
        .compile_fds(descriptors)?;
    Ok(())
}

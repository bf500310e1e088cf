//! Everything an implementer needs, built into the binary (SPEC.md §17.1):
//! the vector files, a JSON Schema per kind, and the normative protobuf
//! files `transport.proto` and `content.proto`. An installed or copied
//! `microbot-conformance` therefore runs anywhere, and `export` writes the
//! same files out from these embedded originals, so no second copy is kept
//! by hand.

use std::path::Path;

use crate::vector::VectorFile;

/// The committed vector files, `(file name, text)`, in kind order.
pub const VECTOR_FILES: &[(&str, &str)] = &[
    ("kdf.json", include_str!("../vectors/kdf.json")),
    ("x3dh.json", include_str!("../vectors/x3dh.json")),
    ("ratchet.json", include_str!("../vectors/ratchet.json")),
    ("session.json", include_str!("../vectors/session.json")),
    (
        "sender_key.json",
        include_str!("../vectors/sender_key.json"),
    ),
    (
        "attachment.json",
        include_str!("../vectors/attachment.json"),
    ),
    (
        "safety_number.json",
        include_str!("../vectors/safety_number.json"),
    ),
    ("framing.json", include_str!("../vectors/framing.json")),
    ("failure.json", include_str!("../vectors/failure.json")),
    (
        "provisioning.json",
        include_str!("../vectors/provisioning.json"),
    ),
    (
        "sealed_sender.json",
        include_str!("../vectors/sealed_sender.json"),
    ),
    (
        "device_list.json",
        include_str!("../vectors/device_list.json"),
    ),
];

/// The JSON Schema of each kind's vector file, `(file name, text)`.
pub const SCHEMA_FILES: &[(&str, &str)] = &[
    ("kdf.schema.json", include_str!("../schema/kdf.schema.json")),
    (
        "x3dh.schema.json",
        include_str!("../schema/x3dh.schema.json"),
    ),
    (
        "ratchet.schema.json",
        include_str!("../schema/ratchet.schema.json"),
    ),
    (
        "session.schema.json",
        include_str!("../schema/session.schema.json"),
    ),
    (
        "sender_key.schema.json",
        include_str!("../schema/sender_key.schema.json"),
    ),
    (
        "attachment.schema.json",
        include_str!("../schema/attachment.schema.json"),
    ),
    (
        "safety_number.schema.json",
        include_str!("../schema/safety_number.schema.json"),
    ),
    (
        "framing.schema.json",
        include_str!("../schema/framing.schema.json"),
    ),
    (
        "failure.schema.json",
        include_str!("../schema/failure.schema.json"),
    ),
    (
        "provisioning.schema.json",
        include_str!("../schema/provisioning.schema.json"),
    ),
    (
        "sealed_sender.schema.json",
        include_str!("../schema/sealed_sender.schema.json"),
    ),
    (
        "device_list.schema.json",
        include_str!("../schema/device_list.schema.json"),
    ),
];

/// The normative protobuf files of SPEC.md §11–§12, `(file name, text)`,
/// exactly as in `protocol/proto/`.
pub const PROTO_FILES: &[(&str, &str)] = &[
    (
        "transport.proto",
        include_str!("../../protocol/proto/transport.proto"),
    ),
    (
        "content.proto",
        include_str!("../../protocol/proto/content.proto"),
    ),
];

/// Why the embedded files could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// An embedded vector file does not parse (a build from a broken tree).
    #[error("embedded {0}: {1}")]
    Parse(&'static str, serde_json::Error),
    /// Writing a file failed.
    #[error("{0}: {1}")]
    Write(String, std::io::Error),
}

/// The embedded vector files, parsed, in kind order.
pub fn vector_files() -> Result<Vec<VectorFile>, BundleError> {
    VECTOR_FILES
        .iter()
        .map(|(name, text)| serde_json::from_str(text).map_err(|e| BundleError::Parse(name, e)))
        .collect()
}

/// Writes `files` into `dir` (created if needed); returns the paths written.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) -> Result<Vec<String>, BundleError> {
    std::fs::create_dir_all(dir).map_err(|e| BundleError::Write(dir.display().to_string(), e))?;
    files
        .iter()
        .map(|(name, text)| {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| BundleError::Write(path.display().to_string(), e))?;
            Ok(path.display().to_string())
        })
        .collect()
}

/// Writes the whole kit into `out`: `vectors/`, `schema/` and `proto/`.
pub fn export(out: &Path) -> Result<Vec<String>, BundleError> {
    let mut written = write_files(&out.join("vectors"), VECTOR_FILES)?;
    written.extend(write_files(&out.join("schema"), SCHEMA_FILES)?);
    written.extend(write_files(&out.join("proto"), PROTO_FILES)?);
    Ok(written)
}

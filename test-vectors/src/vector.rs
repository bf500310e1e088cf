//! The vector file format (SPEC.md §17).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the vector file format.
pub const VECTOR_FORMAT_VERSION: u32 = 1;

/// One file of `test-vectors/vectors/`: the vectors of one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorFile {
    /// Format version (1).
    pub format_version: u32,
    /// The kind every vector in the file has.
    pub kind: String,
    /// What the vectors exercise and which SPEC.md section defines them.
    pub description: String,
    /// The vectors.
    pub vectors: Vec<Vector>,
}

/// One vector: an input an implementation must turn into exactly `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vector {
    /// Unique within the file.
    pub name: String,
    /// Every secret, every random draw (in order) and every received byte string.
    pub input: Value,
    /// Every value the implementation must reproduce.
    pub output: Value,
}

/// Why a vector could not be computed or did not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    /// No such kind.
    #[error("unknown vector kind {0:?}")]
    UnknownKind(String),
    /// The input lacks a field.
    #[error("input field {0:?} is missing")]
    MissingField(String),
    /// A field does not parse (bad hex, wrong length, wrong type).
    #[error("input field {0:?} is malformed")]
    BadField(String),
    /// The implementation failed where the vector expects success.
    #[error("operation failed: {0}")]
    Failed(String),
}

/// The canonical text of a vector file: pretty JSON with a final newline.
pub fn to_pretty_json(file: &VectorFile) -> String {
    let mut text = serde_json::to_string_pretty(file).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads every `*.json` vector file of `dir`, sorted by name.
pub fn read_dir(dir: &std::path::Path) -> Result<Vec<VectorFile>, String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

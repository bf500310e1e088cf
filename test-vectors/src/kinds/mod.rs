//! Every vector kind: how to generate its vectors and how our implementation
//! computes an output from an input (SPEC.md §17).

use serde_json::Value;

use crate::vector::{VECTOR_FORMAT_VERSION, Vector, VectorError, VectorFile};

pub mod attachment;
pub mod device_list;
pub mod failure;
mod failure_cases;
pub mod framing;
pub mod kdf;
pub mod provisioning;
pub mod ratchet;
pub mod safety_number;
pub mod sealed_sender;
pub mod sender_key;
pub mod session;
pub mod x3dh;

/// One kind of vector.
pub struct Kind {
    /// Name, also the file name (`<name>.json`).
    pub name: &'static str,
    /// One line for the file's header.
    pub description: &'static str,
    /// Draws inputs from seeded RNGs and computes their outputs.
    pub generate: fn() -> Result<Vec<Vector>, VectorError>,
    /// Our implementation: input → output.
    pub compute: fn(&Value) -> Result<Value, VectorError>,
}

macro_rules! kind {
    ($module:ident) => {
        Kind {
            name: stringify!($module),
            description: $module::DESCRIPTION,
            generate: $module::generate,
            compute: $module::compute,
        }
    };
}

/// All kinds, in file order.
pub fn all() -> Vec<Kind> {
    vec![
        kind!(kdf),
        kind!(x3dh),
        kind!(ratchet),
        kind!(session),
        kind!(sender_key),
        kind!(attachment),
        kind!(safety_number),
        kind!(framing),
        kind!(failure),
        kind!(provisioning),
        kind!(sealed_sender),
        kind!(device_list),
    ]
}

/// Computes the output of a vector of `kind` with our implementation.
pub fn compute(kind: &str, input: &Value) -> Result<Value, VectorError> {
    let kind = all()
        .into_iter()
        .find(|k| k.name == kind)
        .ok_or_else(|| VectorError::UnknownKind(kind.to_owned()))?;
    (kind.compute)(input)
}

/// Generates every vector file.
pub fn generate_all() -> Result<Vec<VectorFile>, VectorError> {
    all()
        .into_iter()
        .map(|kind| {
            Ok(VectorFile {
                format_version: VECTOR_FORMAT_VERSION,
                kind: kind.name.to_owned(),
                description: kind.description.to_owned(),
                vectors: (kind.generate)()?,
            })
        })
        .collect()
}

//! Reading and writing byte strings as lowercase hex inside JSON values.

use serde_json::{Map, Value};

use crate::vector::VectorError;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: impl AsRef<[u8]>) -> Value {
    Value::String(hex::encode(bytes))
}

/// The JSON object's field `name` as bytes (hex string).
pub fn bytes(object: &Value, name: &str) -> Result<Vec<u8>, VectorError> {
    let text = object
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| VectorError::MissingField(name.to_owned()))?;
    hex::decode(text).map_err(|_| VectorError::BadField(name.to_owned()))
}

/// The field as exactly `N` bytes.
pub fn array<const N: usize>(object: &Value, name: &str) -> Result<[u8; N], VectorError> {
    bytes(object, name)?
        .try_into()
        .map_err(|_| VectorError::BadField(name.to_owned()))
}

/// The field as an unsigned integer.
pub fn uint(object: &Value, name: &str) -> Result<u64, VectorError> {
    object
        .get(name)
        .and_then(Value::as_u64)
        .ok_or_else(|| VectorError::MissingField(name.to_owned()))
}

/// The field as a string.
pub fn string<'a>(object: &'a Value, name: &str) -> Result<&'a str, VectorError> {
    object
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| VectorError::MissingField(name.to_owned()))
}

/// The field as a list of hex byte strings.
pub fn byte_list(object: &Value, name: &str) -> Result<Vec<Vec<u8>>, VectorError> {
    object
        .get(name)
        .and_then(Value::as_array)
        .ok_or_else(|| VectorError::MissingField(name.to_owned()))?
        .iter()
        .map(|v| {
            v.as_str()
                .and_then(|t| hex::decode(t).ok())
                .ok_or_else(|| VectorError::BadField(name.to_owned()))
        })
        .collect()
}

/// Builds a JSON object from `(name, value)` pairs, keeping their order.
pub fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (name, value) in fields {
        map.insert(name.to_owned(), value);
    }
    Value::Object(map)
}

//! A small checker for the JSON Schemas shipped beside the vectors
//! (`test-vectors/schema/<kind>.schema.json`, SPEC.md §17.1).
//!
//! The schemas are standard JSON Schema (draft 2020-12), written once and
//! read by any validator an implementer likes. This checker implements only
//! the keywords they use and refuses a schema with any other keyword or an
//! unknown `pattern`, so a keyword is never silently ignored: the tests run
//! every committed vector file through its schema, and a schema that
//! disagrees with a vector fails them.

use serde_json::{Map, Value};

/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &["$schema", "$id", "$defs", "title", "description"];

/// Why an instance does not match, or the schema is not one this checker reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The instance breaks the schema at `path`.
    #[error("{path}: {why}")]
    Mismatch {
        /// Where in the instance (`$.vectors[3].output.dh1`).
        path: String,
        /// What is wrong, in plain words.
        why: String,
    },
    /// The schema uses something this checker does not implement.
    #[error("schema at {0}: {1}")]
    Unsupported(String, String),
}

/// Checks `instance` against `schema` (its own root resolves `#/$defs/…`).
pub fn check(schema: &Value, instance: &Value) -> Result<(), SchemaError> {
    Checker { root: schema }.check(schema, instance, "$")
}

struct Checker<'a> {
    root: &'a Value,
}

fn mismatch(path: &str, why: impl Into<String>) -> SchemaError {
    SchemaError::Mismatch {
        path: path.to_owned(),
        why: why.into(),
    }
}

impl Checker<'_> {
    fn check(&self, schema: &Value, value: &Value, path: &str) -> Result<(), SchemaError> {
        let Value::Object(schema) = schema else {
            return Err(SchemaError::Unsupported(
                path.into(),
                "a schema must be an object".into(),
            ));
        };
        for (keyword, argument) in schema {
            if ANNOTATIONS.contains(&keyword.as_str()) {
                continue;
            }
            self.keyword(schema, keyword, argument, value, path)?;
        }
        Ok(())
    }

    fn keyword(
        &self,
        schema: &Map<String, Value>,
        keyword: &str,
        argument: &Value,
        value: &Value,
        path: &str,
    ) -> Result<(), SchemaError> {
        let unsupported = |why: &str| SchemaError::Unsupported(path.into(), why.into());
        match keyword {
            "$ref" => {
                let target = argument
                    .as_str()
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .and_then(|name| self.root.get("$defs")?.get(name))
                    .ok_or_else(|| unsupported("$ref must name an entry of the root's $defs"))?;
                self.check(target, value, path)
            }
            "type" => {
                let ok = match argument.as_str() {
                    Some("object") => value.is_object(),
                    Some("array") => value.is_array(),
                    Some("string") => value.is_string(),
                    Some("boolean") => value.is_boolean(),
                    Some("integer") => value.is_i64() || value.is_u64(),
                    _ => return Err(unsupported("type must be one known type name")),
                };
                ok.then_some(())
                    .ok_or_else(|| mismatch(path, format!("is not of type {argument}")))
            }
            "const" => (value == argument)
                .then_some(())
                .ok_or_else(|| mismatch(path, format!("must be {argument}"))),
            "enum" => {
                let options = argument
                    .as_array()
                    .ok_or_else(|| unsupported("enum must be a list"))?;
                options
                    .contains(value)
                    .then_some(())
                    .ok_or_else(|| mismatch(path, format!("must be one of {argument}")))
            }
            "minimum" | "maximum" => {
                let bound = argument
                    .as_f64()
                    .ok_or_else(|| unsupported("a bound must be a number"))?;
                match value.as_f64() {
                    Some(n) if keyword == "minimum" && n < bound => {
                        Err(mismatch(path, format!("must be at least {bound}")))
                    }
                    Some(n) if keyword == "maximum" && n > bound => {
                        Err(mismatch(path, format!("must be at most {bound}")))
                    }
                    _ => Ok(()),
                }
            }
            "minItems" => {
                let min = argument
                    .as_u64()
                    .ok_or_else(|| unsupported("minItems must be a count"))?;
                match value.as_array() {
                    Some(items) if (items.len() as u64) < min => {
                        Err(mismatch(path, format!("needs at least {min} items")))
                    }
                    _ => Ok(()),
                }
            }
            "pattern" => {
                let pattern = argument
                    .as_str()
                    .ok_or_else(|| unsupported("pattern must be a string"))?;
                match value.as_str() {
                    Some(text) => match matches_pattern(pattern, text) {
                        Some(true) => Ok(()),
                        Some(false) => Err(mismatch(path, format!("does not match {pattern}"))),
                        None => Err(unsupported(&format!(
                            "pattern {pattern} is not one this checker knows"
                        ))),
                    },
                    None => Ok(()),
                }
            }
            "items" => match value.as_array() {
                Some(items) => items
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, item)| self.check(argument, item, &format!("{path}[{i}]"))),
                None => Ok(()),
            },
            "properties" => {
                let properties = argument
                    .as_object()
                    .ok_or_else(|| unsupported("properties must be an object"))?;
                match value.as_object() {
                    Some(object) => properties.iter().try_for_each(|(key, sub)| {
                        object
                            .get(key)
                            .map_or(Ok(()), |v| self.check(sub, v, &format!("{path}.{key}")))
                    }),
                    None => Ok(()),
                }
            }
            "required" => {
                let names = argument
                    .as_array()
                    .ok_or_else(|| unsupported("required must be a list"))?;
                match value.as_object() {
                    Some(object) => names.iter().try_for_each(|name| {
                        let name = name.as_str().unwrap_or_default();
                        object
                            .contains_key(name)
                            .then_some(())
                            .ok_or_else(|| mismatch(path, format!("lacks the field {name:?}")))
                    }),
                    None => Ok(()),
                }
            }
            "additionalProperties" => {
                if argument != &Value::Bool(false) {
                    return Err(unsupported("additionalProperties must be false"));
                }
                let known = schema.get("properties").and_then(Value::as_object);
                match value.as_object() {
                    Some(object) => object
                        .keys()
                        .find(|key| !known.is_some_and(|k| k.contains_key(*key)))
                        .map_or(Ok(()), |key| {
                            Err(mismatch(
                                path,
                                format!("has a field {key:?} the schema does not allow"),
                            ))
                        }),
                    None => Ok(()),
                }
            }
            "oneOf" => {
                let options = argument
                    .as_array()
                    .ok_or_else(|| unsupported("oneOf must be a list"))?;
                let mut reasons = Vec::new();
                let mut matched = 0;
                for option in options {
                    match self.check(option, value, path) {
                        Ok(()) => matched += 1,
                        Err(e @ SchemaError::Unsupported(..)) => return Err(e),
                        Err(e) => reasons.push(e.to_string()),
                    }
                }
                match matched {
                    1 => Ok(()),
                    0 => Err(mismatch(
                        path,
                        format!("matches none of the alternatives: {}", reasons.join("; ")),
                    )),
                    n => Err(mismatch(
                        path,
                        format!("matches {n} alternatives, not exactly one"),
                    )),
                }
            }
            other => Err(unsupported(&format!(
                "keyword {other:?} is not implemented"
            ))),
        }
    }
}

/// The patterns the shipped schemas use; `None` for any other.
fn matches_pattern(pattern: &str, text: &str) -> Option<bool> {
    let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if pattern == "^([0-9a-f]{2})*$" {
        return Some(text.len().is_multiple_of(2) && text.chars().all(lower_hex));
    }
    if pattern == "^[0-9]{5}( [0-9]{5}){11}$" {
        let groups: Vec<&str> = text.split(' ').collect();
        return Some(
            groups.len() == 12
                && groups
                    .iter()
                    .all(|g| g.len() == 5 && g.chars().all(|c| c.is_ascii_digit())),
        );
    }
    let counted = |prefix: &str, class: &dyn Fn(char) -> bool| -> Option<bool> {
        let count: usize = pattern
            .strip_prefix(prefix)?
            .strip_suffix("}$")?
            .parse()
            .ok()?;
        Some(text.chars().count() == count && text.chars().all(class))
    };
    counted("^[0-9a-f]{", &lower_hex).or_else(|| counted("^[0-9]{", &|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(matches_pattern("^([0-9a-f]{2})*$", "00ff"), Some(true));
        assert_eq!(matches_pattern("^([0-9a-f]{2})*$", "0F"), Some(false));
        assert_eq!(matches_pattern("^[0-9a-f]{4}$", "abcd"), Some(true));
        assert_eq!(matches_pattern("^[0-9a-f]{4}$", "abc"), Some(false));
        assert_eq!(matches_pattern("^[0-9]{2}$", "1a"), Some(false));
        assert_eq!(matches_pattern("^a+$", "a"), None);
    }

    #[test]
    fn unknown_keywords_are_refused_not_ignored() {
        let schema = json!({"type": "string", "format": "email"});
        assert!(matches!(
            check(&schema, &json!("x")),
            Err(SchemaError::Unsupported(..))
        ));
    }

    #[test]
    fn one_of_needs_exactly_one() {
        let schema = json!({"oneOf": [{"type": "string"}, {"const": "a"}]});
        assert!(check(&schema, &json!("b")).is_ok());
        assert!(check(&schema, &json!("a")).is_err());
        assert!(check(&schema, &json!(1)).is_err());
    }
}

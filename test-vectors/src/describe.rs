//! Plain-words descriptions of JSON values and of where two differ, for the
//! runner's FAIL lines: the path of the first difference, the expected and
//! the received value, shortened so a 1 KiB hex string stays one line.

use serde_json::Value;

/// Longest rendering of a string before it is shortened.
const MAX_TEXT: usize = 40;

/// A value as a reader wants to see it in one line: strings quoted and
/// shortened (`"3f2a…9b" (64 hex digits)`), lists and objects summarised.
pub fn shorten(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.is_empty() => "\"\" (empty)".into(),
        Value::String(s) => {
            let chars = s.chars().count();
            let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
            let shown = if chars > MAX_TEXT {
                let head: String = s.chars().take(24).collect();
                let tail: String = s.chars().skip(chars - 8).collect();
                format!("\"{head}…{tail}\"")
            } else {
                format!("\"{s}\"")
            };
            match (hex, chars > MAX_TEXT) {
                (true, true) => format!("{shown} ({chars} hex digits)"),
                (false, true) => format!("{shown} ({chars} characters)"),
                _ => shown,
            }
            // An adapter's text never moves the cursor or colours the terminal.
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
        }
        Value::Array(items) => match items.len() {
            0 => "an empty list".into(),
            1 => "a list of 1 item".into(),
            n => format!("a list of {n} items"),
        },
        Value::Object(map) if map.is_empty() => "an empty object".into(),
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().map(String::as_str).take(6).collect();
            let more = if map.len() > 6 { ", …" } else { "" };
            format!("an object with {}{more}", keys.join(", "))
        }
    }
}

/// The first place where `received` differs from `expected`, in plain words
/// (`output.dh1: expected "3f…" (64 hex digits), received "00"`), or `None`
/// when they are equal. Object keys are compared as sets: a missing and an
/// unexpected key are both differences.
pub fn difference(expected: &Value, received: &Value, path: &str) -> Option<String> {
    match (expected, received) {
        (Value::Object(e), Value::Object(r)) => {
            for (key, value) in e {
                let here = format!("{path}.{key}");
                match r.get(key) {
                    None => {
                        return Some(format!(
                            "{here} is missing from the answer: expected {}",
                            shorten(value)
                        ));
                    }
                    Some(other) => {
                        if let Some(diff) = difference(value, other, &here) {
                            return Some(diff);
                        }
                    }
                }
            }
            r.iter()
                .find(|(key, _)| !e.contains_key(*key))
                .map(|(key, value)| {
                    format!(
                        "{path}.{key} is not expected, the answer has it as {}",
                        shorten(value)
                    )
                })
        }
        (Value::Array(e), Value::Array(r)) => {
            if e.len() != r.len() {
                return Some(format!(
                    "{path}: expected {}, received {}",
                    shorten(expected),
                    shorten(received)
                ));
            }
            e.iter()
                .zip(r)
                .enumerate()
                .find_map(|(i, (x, y))| difference(x, y, &format!("{path}[{i}]")))
        }
        _ => (expected != received).then(|| {
            format!(
                "{path}: expected {}, received {}",
                shorten(expected),
                shorten(received)
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn long_hex_is_shortened_with_its_length() {
        let long = "ab".repeat(40);
        assert_eq!(
            shorten(&json!(long)),
            format!("\"{}…{}\" (80 hex digits)", "ab".repeat(12), "ab".repeat(4))
        );
        assert_eq!(shorten(&json!("")), "\"\" (empty)");
        assert_eq!(shorten(&json!([1, 2])), "a list of 2 items");
        assert_eq!(shorten(&json!("a\u{1b}[31mb\nc")), "\"a [31mb c\"");
    }

    #[test]
    fn differences_name_the_path_and_both_values() {
        let expected = json!({"a": {"b": ["00", "11"]}, "c": 1});
        assert_eq!(difference(&expected, &expected, "output"), None);
        let received = json!({"a": {"b": ["00", "12"]}, "c": 1});
        assert_eq!(
            difference(&expected, &received, "output").as_deref(),
            Some("output.a.b[1]: expected \"11\", received \"12\"")
        );
        let received = json!({"a": {"b": ["00", "11"]}});
        assert_eq!(
            difference(&expected, &received, "output").as_deref(),
            Some("output.c is missing from the answer: expected 1")
        );
        let received = json!({"a": {"b": ["00", "11"]}, "c": 1, "d": true});
        assert_eq!(
            difference(&expected, &received, "output").as_deref(),
            Some("output.d is not expected, the answer has it as true")
        );
    }
}

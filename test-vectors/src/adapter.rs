//! The conformance adapter protocol (SPEC.md §17.3) and our implementation's end of it.
//!
//! The runner starts the implementation under test as a child process and
//! talks JSON lines over its stdin/stdout, one request and one answer at a time:
//!
//! ```text
//! runner → adapter  {"id": 7, "kind": "x3dh", "input": {…}}
//! adapter → runner  {"id": 7, "output": {…}}          computed output
//!                   {"id": 7, "unsupported": true}     kind not implemented (skipped)
//!                   {"id": 7, "error": "…"}            failure (counts as failed)
//! ```
//! A vector passes when the adapter's `output` equals the vector's `output`
//! exactly (same fields, same values). [`serve`] is our implementation's
//! adapter; [`crate::runner`] is the runner.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

use crate::kinds;
use crate::vector::VectorError;

/// Answers adapter requests from `input` with our implementation until EOF.
pub fn serve(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Err(e) => json!({"id": Value::Null, "error": format!("request is not JSON: {e}")}),
            Ok(request) => {
                let id = request.get("id").cloned().unwrap_or(Value::Null);
                let kind = request.get("kind").and_then(Value::as_str).unwrap_or("");
                let input = request.get("input").cloned().unwrap_or(Value::Null);
                match kinds::compute(kind, &input) {
                    Ok(result) => json!({"id": id, "output": result}),
                    Err(VectorError::UnknownKind(_)) => json!({"id": id, "unsupported": true}),
                    Err(e) => json!({"id": id, "error": e.to_string()}),
                }
            }
        };
        writeln!(output, "{answer}")?;
        output.flush()?;
    }
    Ok(())
}

//! The conformance adapter protocol (SPEC.md §17.3) and its two ends.
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
//! adapter; [`run_vectors`] is the runner.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::kinds;
use crate::vector::{VectorError, VectorFile};

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

/// The result of one vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Output matched.
    Passed,
    /// Output differed or the adapter reported an error; the text says where.
    Failed(String),
    /// The adapter does not implement this kind.
    Skipped,
}

/// One line of a report.
#[derive(Debug, Clone)]
pub struct VectorResult {
    /// `kind/name`.
    pub vector: String,
    /// What happened.
    pub outcome: Outcome,
}

/// Why the runner could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The implementation's command could not be started or talked to.
    #[error("adapter process: {0}")]
    Process(#[from] std::io::Error),
    /// The adapter closed its output early.
    #[error("adapter closed its output after {0} answers")]
    ClosedEarly(usize),
}

/// Runs every vector of `files` against the adapter started by `sh -c command`.
pub fn run_vectors(command: &str, files: &[VectorFile]) -> Result<Vec<VectorResult>, RunnerError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut answers = BufReader::new(stdout).lines();
    let mut results = Vec::new();
    let mut id = 0u64;
    for file in files {
        for vector in &file.vectors {
            id += 1;
            let request = json!({"id": id, "kind": file.kind, "input": vector.input});
            writeln!(stdin, "{request}")?;
            stdin.flush()?;
            let line = answers
                .next()
                .ok_or(RunnerError::ClosedEarly(results.len()))??;
            let outcome = judge(&line, id, &vector.output);
            results.push(VectorResult {
                vector: format!("{}/{}", file.kind, vector.name),
                outcome,
            });
        }
    }
    drop(stdin);
    let _ = child.wait();
    Ok(results)
}

fn judge(line: &str, id: u64, expected: &Value) -> Outcome {
    let Ok(answer) = serde_json::from_str::<Value>(line) else {
        return Outcome::Failed("answer is not JSON".into());
    };
    if answer.get("id").and_then(Value::as_u64) != Some(id) {
        return Outcome::Failed(format!(
            "answer has id {:?}, expected {id}",
            answer.get("id")
        ));
    }
    if answer.get("unsupported").and_then(Value::as_bool) == Some(true) {
        return Outcome::Skipped;
    }
    if let Some(error) = answer.get("error") {
        return Outcome::Failed(format!("adapter error: {error}"));
    }
    match answer.get("output") {
        Some(output) => match first_difference(expected, output, "output") {
            None => Outcome::Passed,
            Some(path) => Outcome::Failed(format!("{path} differs")),
        },
        None => Outcome::Failed("answer has no output".into()),
    }
}

/// The path of the first place where `expected` and `actual` differ.
pub fn first_difference(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let here = format!("{path}.{key}");
                match a.get(key) {
                    None => return Some(format!("{here} (missing)")),
                    Some(other) => {
                        if let Some(diff) = first_difference(value, other, &here) {
                            return Some(diff);
                        }
                    }
                }
            }
            a.keys()
                .find(|key| !e.contains_key(*key))
                .map(|key| format!("{path}.{key} (unexpected)"))
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!("{path} (length {} vs {})", e.len(), a.len()));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]")))
        }
        _ => (expected != actual).then(|| path.to_owned()),
    }
}

/// Counts of a report: (passed, failed, skipped).
pub fn tally(results: &[VectorResult]) -> (usize, usize, usize) {
    results
        .iter()
        .fold((0, 0, 0), |(p, f, s), r| match r.outcome {
            Outcome::Passed => (p + 1, f, s),
            Outcome::Failed(_) => (p, f + 1, s),
            Outcome::Skipped => (p, f, s + 1),
        })
}

//! Our implementation reproduces every committed vector byte for byte, the
//! committed files are what the generator makes now, and the conformance
//! runner passes our adapter and catches a wrong answer.

use std::path::Path;

use microbot_test_vectors::runner::{Outcome, Report, RunnerOptions, VectorResult, run};
use microbot_test_vectors::vector::{read_dir, to_pretty_json};
use microbot_test_vectors::{VectorFile, kinds};

/// Runs `files` against our adapter with the default options.
fn run_vectors(adapter: &str, files: &[VectorFile]) -> Result<Vec<VectorResult>, String> {
    run(adapter, files, &RunnerOptions::default(), |_| {})
        .map(|report: Report| report.results)
        .map_err(|e| e.to_string())
}

fn tally(results: &[VectorResult]) -> (usize, usize, usize) {
    microbot_test_vectors::runner::tally(results)
}

fn committed() -> Vec<VectorFile> {
    read_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")).expect("vector files")
}

#[test]
fn every_committed_vector_is_reproduced() {
    let files = committed();
    let expected_kinds: Vec<_> = kinds::all().iter().map(|k| k.name).collect();
    assert_eq!(files.len(), expected_kinds.len(), "one file per kind");
    let mut count = 0;
    for file in &files {
        assert!(!file.vectors.is_empty(), "{} has no vectors", file.kind);
        for vector in &file.vectors {
            let output = kinds::compute(&file.kind, &vector.input)
                .unwrap_or_else(|e| panic!("{}/{}: {e}", file.kind, vector.name));
            assert_eq!(output, vector.output, "{}/{}", file.kind, vector.name);
            count += 1;
        }
    }
    assert!(count >= 30);
}

#[test]
fn committed_files_are_what_the_generator_makes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    for file in kinds::generate_all().expect("generate") {
        let path = dir.join(format!("{}.json", file.kind));
        let on_disk = std::fs::read_to_string(&path).expect("read vector file");
        assert!(
            on_disk == to_pretty_json(&file),
            "{} is stale: run `cargo run -p microbot-test-vectors --bin microbot-conformance -- generate`",
            path.display()
        );
    }
}

#[test]
fn runner_passes_our_adapter_and_catches_a_wrong_output() {
    let adapter = format!("{} adapter", env!("CARGO_BIN_EXE_microbot-conformance"));
    let mut files = committed();
    let results = run_vectors(&adapter, &files).expect("run adapter");
    let (passed, failed, skipped) = tally(&results);
    assert_eq!((failed, skipped), (0, 0), "{results:?}");
    assert!(passed >= 30);

    // Corrupt one expected value: the runner must report exactly that vector.
    let kind = files[0].kind.clone();
    let vector = &mut files[0].vectors[0];
    let name = format!("{kind}/{}", vector.name);
    let object = vector.output.as_object_mut().expect("object output");
    let (key, value) = object
        .iter_mut()
        .find(|(_, v)| v.is_string())
        .expect("a string field");
    let key = key.clone();
    *value = serde_json::Value::String("00".into());
    let results = run_vectors(&adapter, &files).expect("run adapter");
    let failures: Vec<_> = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].vector, name);
    assert!(matches!(&failures[0].outcome, Outcome::Failed(why) if why.contains(&key)));
}

#[test]
fn replay_refuses_wrong_draws() {
    let files = committed();
    let x3dh = files.iter().find(|f| f.kind == "x3dh").expect("x3dh file");
    let mut input = x3dh.vectors[0].input.clone();
    input["alice_draws"].as_array_mut().expect("draws").pop();
    assert!(kinds::compute("x3dh", &input).is_err());
}

fn file(kind: &str) -> VectorFile {
    committed()
        .into_iter()
        .find(|f| f.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} file"))
}

#[test]
fn failure_vectors_name_an_error_and_leave_state_unchanged() {
    let failures = file("failure");
    let mut ops = std::collections::BTreeSet::new();
    for vector in &failures.vectors {
        let error = vector.output["error"].as_str().expect("error name");
        assert!(!error.is_empty(), "{} is accepted", vector.name);
        assert!(
            error.chars().all(|c| c.is_ascii_alphanumeric()),
            "{}: {error}",
            vector.name
        );
        for field in ["state", "prekeys_state"] {
            if let Some(after) = vector.output.get(field) {
                assert_eq!(Some(after), vector.input.get(field), "{}", vector.name);
            }
        }
        ops.insert(vector.input["op"].as_str().expect("op").to_owned());
    }
    for op in [
        "ratchet_decrypt",
        "sender_key_decrypt",
        "attachment_decrypt",
        "prekey_bundle",
        "prekey_message",
    ] {
        assert!(ops.contains(op), "no {op} vector");
    }
    // The runner compares the error name, not only the fact of failing: our
    // adapter's right answer fails against a vector expecting another name.
    let adapter = format!("{} adapter", env!("CARGO_BIN_EXE_microbot-conformance"));
    let mut files = vec![failures.clone()];
    files[0].vectors[0].output["error"] = serde_json::Value::from("Duplicate");
    let results = run_vectors(&adapter, &files).expect("run adapter");
    let (passed, failed, _) = tally(&results);
    assert_eq!((passed, failed), (failures.vectors.len() - 1, 1));
    assert!(matches!(&results[0].outcome, Outcome::Failed(why) if why.contains("error")));
}

#[test]
fn session_vector_pins_prekey_then_ratchet_messages() {
    let session = file("session");
    let vector = &session.vectors[0];
    let messages = vector.output["messages"].as_array().expect("messages");
    let types: Vec<&str> = messages
        .iter()
        .map(|m| &m.as_str().expect("hex")[..2])
        .collect();
    // Alice's two first messages carry the handshake; after Bob's reply
    // decrypted (message 2), hers are plain ratchet messages.
    assert_eq!(types, ["02", "02", "01", "01", "01", "01"]);
    for state in [
        "alice_session_state_pending",
        "alice_session_state",
        "bob_session_state",
        "bob_prekeys_state_before",
        "bob_prekeys_state_after",
    ] {
        assert!(
            vector.output[state].as_str().is_some_and(|s| s.len() > 64),
            "{state}"
        );
    }
    // The handshake's SK is the ratchet's first root key (SPEC.md §5.2).
    let handshake = &vector.output["handshake"];
    assert_eq!(
        handshake["alice_initial_root_step"]["previous_root_key"],
        handshake["shared_secret"]
    );
    assert_eq!(
        handshake["associated_data"].as_str().map(str::len),
        Some(128)
    );
    assert_ne!(
        vector.output["bob_prekeys_state_before"], vector.output["bob_prekeys_state_after"],
        "the used one-time prekey is removed"
    );
}

//! The JSON Schemas shipped beside the vectors (SPEC.md §17.1) agree with
//! every committed vector, and disagree with a vector that breaks its kind's
//! contract: a missing or an extra field, a value of the wrong length, an
//! error name SPEC does not list, a classical-mode value that is not `""`.

use std::path::Path;

use microbot_test_vectors::bundle::{SCHEMA_FILES, VECTOR_FILES, vector_files};
use microbot_test_vectors::kinds;
use microbot_test_vectors::schema::{SchemaError, check};
use serde_json::Value;

fn schema(kind: &str) -> Value {
    let name = format!("{kind}.schema.json");
    let (_, text) = SCHEMA_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no schema for {kind}"));
    serde_json::from_str(text).expect("schema is JSON")
}

fn file(kind: &str) -> Value {
    let name = format!("{kind}.json");
    let (_, text) = VECTOR_FILES.iter().find(|(n, _)| *n == name).expect("file");
    serde_json::from_str(text).expect("vector file is JSON")
}

#[test]
fn every_kind_has_its_file_and_schema_built_in_and_on_disk() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kinds: Vec<&str> = kinds::all().iter().map(|k| k.name).collect();
    let listed = |files: &[(&str, &str)], suffix: &str| -> Vec<String> {
        files
            .iter()
            .map(|(n, _)| n.strip_suffix(suffix).expect("suffix").to_owned())
            .collect()
    };
    assert_eq!(listed(VECTOR_FILES, ".json"), kinds);
    assert_eq!(listed(SCHEMA_FILES, ".schema.json"), kinds);
    for (sub, suffix) in [("vectors", ".json"), ("schema", ".schema.json")] {
        let mut on_disk: Vec<String> = std::fs::read_dir(dir.join(sub))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .map(|n| n.strip_suffix(suffix).expect("file suffix").to_owned())
            .collect();
        on_disk.sort();
        let mut expected: Vec<String> = kinds.iter().map(|k| (*k).to_owned()).collect();
        expected.sort();
        assert_eq!(on_disk, expected, "{sub}/ holds exactly one file per kind");
    }
    assert_eq!(vector_files().expect("parse").len(), kinds.len());
}

#[test]
fn every_committed_vector_file_matches_its_schema() {
    for kind in kinds::all() {
        check(&schema(kind.name), &file(kind.name))
            .unwrap_or_else(|e| panic!("{}: {e}", kind.name));
    }
}

/// The schema refuses `file` after `change`, naming a path under `at`.
fn refused(kind: &str, change: impl FnOnce(&mut Value), at: &str) {
    let mut broken = file(kind);
    change(&mut broken);
    match check(&schema(kind), &broken) {
        Err(SchemaError::Mismatch { path, why }) => {
            assert!(path.starts_with(at), "{kind}: {path}: {why}")
        }
        other => panic!("{kind}: a broken vector was not refused: {other:?}"),
    }
}

#[test]
fn a_vector_that_breaks_its_kind_contract_fails_the_schema() {
    let v = |n: usize| format!("$.vectors[{n}]");
    // Fields: missing, extra, wrong length, wrong type.
    refused(
        "x3dh",
        |f| {
            f["vectors"][0]["output"]
                .as_object_mut()
                .expect("output")
                .remove("dh1");
        },
        &v(0),
    );
    refused(
        "x3dh",
        |f| f["vectors"][0]["output"]["extra"] = Value::from("00"),
        &v(0),
    );
    refused(
        "x3dh",
        |f| f["vectors"][0]["output"]["shared_secret"] = Value::from("00"),
        &v(0),
    );
    refused(
        "kdf",
        |f| f["vectors"][0]["input"]["length"] = Value::from("32"),
        &v(0),
    );
    // Classical mode: KEM values are "" or a key of the right size, nothing else.
    refused(
        "x3dh",
        |f| f["vectors"][0]["output"]["kem_ciphertext"] = Value::from("00"),
        &v(0),
    );
    // A delivery has no `message`; framing errors and failure names are closed lists.
    refused(
        "ratchet",
        |f| f["vectors"][0]["output"]["deliveries"][0]["message"] = Value::from("00"),
        &v(0),
    );
    refused(
        "framing",
        |f| {
            let vector = f["vectors"]
                .as_array_mut()
                .expect("vectors")
                .iter_mut()
                .find(|v| v["input"]["op"] == "decode")
                .expect("decode vector");
            vector["output"]["error"] = Value::from("too_long");
        },
        "$.vectors",
    );
    refused(
        "failure",
        |f| f["vectors"][0]["output"]["error"] = Value::from("Failed"),
        &v(0),
    );
    // The file header.
    refused("session", |f| f["format_version"] = Value::from(2), "$");
    refused("session", |f| f["kind"] = Value::from("ratchet"), "$");
}

//! The runner against broken and stub adapters, through the real
//! `microbot-conformance vectors` command (SPEC.md §17.2–§17.3): a hang, a
//! crash, a bad exit, stray lines, skipped kinds and wrong values each get a
//! precise report, the closing `conformance:` line is always printed, and the
//! exit status is non-zero whenever the run is not conformant.
//!
//! The broken adapters are small POSIX shell scripts around our own adapter,
//! so every other vector is answered correctly and the report must single
//! out exactly the broken one.

use std::process::Command;

/// The runner binary under test.
const RUNNER: &str = env!("CARGO_BIN_EXE_microbot-conformance");

/// Every vector the runner has built in.
fn total() -> usize {
    microbot_test_vectors::bundle::vector_files()
        .expect("embedded vectors")
        .iter()
        .map(|f| f.vectors.len())
        .sum()
}

/// What one run printed and how it ended.
struct Run {
    stdout: String,
    success: bool,
}

impl Run {
    fn closing_line(&self) -> &str {
        self.stdout
            .lines()
            .last()
            .expect("the runner printed nothing")
    }

    fn lines_starting(&self, prefix: &str) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with(prefix))
            .collect()
    }
}

/// Runs `microbot-conformance vectors --impl SCRIPT ARGS…`.
fn vectors(script: &str, args: &[&str]) -> Run {
    let output = Command::new(RUNNER)
        .args(["vectors", "--impl", script])
        .args(args)
        .output()
        .expect("run microbot-conformance");
    Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        success: output.status.success(),
    }
}

/// A shell adapter that runs our adapter once per request, except that a
/// request of `kind` gets `action` (shell code) instead.
fn per_request(kind: &str, action: &str) -> String {
    format!(
        r#"while IFS= read -r line; do case "$line" in *'"kind":"{kind}"'*) {action};; *) printf '%s\n' "$line" | {RUNNER} adapter;; esac; done"#
    )
}

#[test]
fn a_hanging_adapter_fails_the_vector_in_progress_by_name_and_the_run_goes_on() {
    // The adapter's shell starts a child that hangs: killing the adapter
    // must end that child too (its process group), not leave it running.
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("hung.pid");
    let hang = format!("sleep 60 & echo $! > '{}'; wait", pid_file.display());
    let run = vectors(&per_request("session", &hang), &["--timeout", "3"]);
    let failures = run.lines_starting("FAIL");
    assert_eq!(failures.len(), 1, "{}", run.stdout);
    assert!(
        failures[0].starts_with("FAIL session/hybrid-with-one-time-prekey: no answer within 3 s"),
        "{}",
        failures[0]
    );
    assert!(
        run.stdout
            .contains("starting the adapter again after session/")
    );
    assert_eq!(
        run.closing_line(),
        format!("conformance: {} passed, 1 failed, 0 skipped", total() - 1)
    );
    assert!(!run.success);
    let pid = std::fs::read_to_string(&pid_file).expect("the hung child wrote its pid");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
    if let Ok(stat) = stat {
        // Gone, or a zombie waiting to be reaped: not running.
        let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
        assert!(state.starts_with('Z') || state.starts_with('X'), "{stat}");
    }
}

#[test]
fn a_crashing_adapter_is_named_and_the_closing_line_still_printed() {
    let run = vectors(&per_request("ratchet", "exit 3"), &[]);
    let failures = run.lines_starting("FAIL");
    assert_eq!(
        failures,
        [
            "FAIL ratchet/conversation-26-messages: the adapter stopped before answering: it exited with status 3"
        ],
        "{}",
        run.stdout
    );
    assert_eq!(
        run.closing_line(),
        format!("conformance: {} passed, 1 failed, 0 skipped", total() - 1)
    );
    assert!(!run.success);

    // An adapter that cannot even start: every vector fails, the runner
    // gives up after a few restarts, and still closes the report.
    let run = vectors("echo 'cannot load my library' >&2; exit 7", &[]);
    assert_eq!(
        run.closing_line(),
        format!("conformance: 0 passed, {} failed, 0 skipped", total())
    );
    assert!(run.stdout.contains("it exited with status 7"));
    assert!(
        run.stdout
            .contains("not run: the adapter hung or died too often")
    );
    assert!(
        run.stdout
            .contains("NOTE giving up on the adapter after 3 restarts")
    );
    assert!(!run.success);
}

#[test]
fn a_nonzero_exit_after_the_last_answer_fails_the_run() {
    let run = vectors(&format!("{RUNNER} adapter; exit 1"), &[]);
    assert!(run.lines_starting("FAIL").is_empty(), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("NOT CONFORMANT: the adapter exited with status 1 after its stdin closed"),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.closing_line(),
        format!("conformance: {} passed, 0 failed, 0 skipped", total())
    );
    assert!(!run.success);
}

#[test]
fn stray_lines_are_reported_and_skipped_and_answers_matched_by_id() {
    // A banner before the first answer, a debug line after the third, and
    // an answer to a request nobody made: nothing shifts.
    let script = format!(
        r#"echo 'my adapter v0.1 starting'; n=0; {RUNNER} adapter | while IFS= read -r answer; do n=$((n+1)); if [ $n = 3 ]; then echo 'debug: derived keys'; echo '{{"id": 999, "output": {{}}}}'; fi; printf '%s\n' "$answer"; done"#
    );
    let run = vectors(&script, &[]);
    assert!(run.success, "{}", run.stdout);
    assert_eq!(
        run.closing_line(),
        format!("conformance: {} passed, 0 failed, 0 skipped", total())
    );
    let notes = run.lines_starting("NOTE");
    assert_eq!(notes.len(), 3, "{}", run.stdout);
    assert!(notes[0].contains("not a JSON answer") && notes[0].contains("my adapter v0.1"));
    assert!(notes[1].contains("not a JSON answer") && notes[1].contains("debug: derived keys"));
    assert!(notes[2].contains("an answer with id 999"));
}

#[test]
fn skipped_vectors_fail_the_run_unless_allowed() {
    // A stub that implements nothing cannot look green.
    let stub = r#"while IFS= read -r line; do id=${line#*\"id\":}; id=${id%%,*}; printf '{"id":%s,"unsupported":true}\n' "$id"; done"#;
    let run = vectors(stub, &[]);
    assert_eq!(
        run.closing_line(),
        format!("conformance: 0 passed, 0 failed, {} skipped", total())
    );
    assert!(
        run.stdout
            .contains(&format!("NOT CONFORMANT: all {} were skipped", total())),
        "{}",
        run.stdout
    );
    assert!(!run.success);
    assert!(vectors(stub, &["--allow-skip"]).success);

    // An adapter without the kdf kind: 10 of the vectors skipped.
    let no_kdf = per_request(
        "kdf",
        r#"id=${line#*\"id\":}; id=${id%%,*}; printf '{"id":%s,"unsupported":true}\n' "$id""#,
    );
    let skipped = microbot_test_vectors::bundle::vector_files().expect("vectors")[0]
        .vectors
        .len();
    let share = 100.0 * skipped as f64 / total() as f64;
    let run = vectors(&no_kdf, &[]);
    assert!(!run.success);
    assert!(run.stdout.contains("SKIP kdf/"), "{}", run.stdout);
    assert!(
        run.stdout.contains("more than the 0% allowed"),
        "{}",
        run.stdout
    );
    let below = format!("--allow-skip={}", share.floor() - 1.0);
    let above = format!("--allow-skip={}", share.ceil());
    assert!(!vectors(&no_kdf, &[&below]).success);
    let run = vectors(&no_kdf, &[&above]);
    assert!(run.success, "{}", run.stdout);
    assert_eq!(
        run.closing_line(),
        format!(
            "conformance: {} passed, 0 failed, {skipped} skipped",
            total() - skipped
        )
    );
}

#[test]
fn fail_lines_show_expected_and_received_values_in_plain_words() {
    // Vector files whose expected shared secret is wrong: our right answer
    // must be reported as a difference at that field, with both values.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut x3dh = microbot_test_vectors::bundle::vector_files()
        .expect("vectors")
        .into_iter()
        .find(|f| f.kind == "x3dh")
        .expect("x3dh");
    x3dh.vectors.truncate(1);
    let name = x3dh.vectors[0].name.clone();
    let right = x3dh.vectors[0].output["shared_secret"]
        .as_str()
        .expect("hex")
        .to_owned();
    x3dh.vectors[0].output["shared_secret"] = serde_json::Value::from("00".repeat(32));
    std::fs::write(
        dir.path().join("x3dh.json"),
        microbot_test_vectors::vector::to_pretty_json(&x3dh),
    )
    .expect("write");
    let run = vectors(
        &format!("{RUNNER} adapter"),
        &["--dir", dir.path().to_str().expect("path")],
    );
    let failures = run.lines_starting("FAIL");
    assert_eq!(
        failures,
        [format!(
            "FAIL x3dh/{name}: output.shared_secret: expected \"{}…{}\" (64 hex digits), received \"{}…{}\" (64 hex digits)",
            "0".repeat(24),
            "0".repeat(8),
            &right[..24],
            &right[56..]
        )]
    );
    assert_eq!(
        run.closing_line(),
        "conformance: 0 passed, 1 failed, 0 skipped"
    );
    assert!(!run.success);

    // An error answer is quoted, shortened, not debug-printed.
    let erring = per_request(
        "kdf",
        r#"id=${line#*\"id\":}; id=${id%%,*}; printf '{"id":%s,"error":"HKDF is not implemented yet, sorry about that, really"}\n' "$id""#,
    );
    let run = vectors(&erring, &[]);
    let first = run.lines_starting("FAIL")[0];
    assert!(
        first.ends_with(
            ": the adapter answered with an error: \"HKDF is not implemented …, really\" (53 characters)"
        ),
        "{first}"
    );
    assert!(!run.stdout.contains("String(") && !run.stdout.contains("Some("));
}

#[test]
fn an_endless_line_is_dropped_not_kept() {
    // 17 MiB without a newline before the real answers: reported, dropped,
    // and every answer still matched.
    let script = format!("head -c 17825792 /dev/zero | tr '\\0' a; echo; exec {RUNNER} adapter");
    let run = vectors(&script, &[]);
    assert!(run.success, "{}", run.stdout);
    let notes = run.lines_starting("NOTE");
    assert_eq!(
        notes,
        ["NOTE ignored a line longer than 16 MiB while waiting for kdf/hkdf-rfc5869-case-1"]
    );
}

#[test]
fn an_adapter_that_never_reads_cannot_block_the_runner() {
    // A request larger than a pipe's buffer to an adapter that reads
    // nothing: the runner's write never completes, its timeout still fires.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kdf = microbot_test_vectors::bundle::vector_files()
        .expect("vectors")
        .into_iter()
        .find(|f| f.kind == "kdf")
        .expect("kdf");
    kdf.vectors.truncate(1);
    kdf.vectors[0].input["ikm"] = serde_json::Value::from("ab".repeat(256 * 1024));
    std::fs::write(
        dir.path().join("kdf.json"),
        microbot_test_vectors::vector::to_pretty_json(&kdf),
    )
    .expect("write");
    let name = kdf.vectors[0].name.clone();
    let run = vectors(
        "exec sleep 60",
        &[
            "--dir",
            dir.path().to_str().expect("path"),
            "--timeout",
            "1",
        ],
    );
    assert_eq!(
        run.lines_starting("FAIL"),
        [format!(
            "FAIL kdf/{name}: no answer within 1 s: the adapter hangs on this vector (it was killed)"
        )]
    );
    assert_eq!(
        run.closing_line(),
        "conformance: 0 passed, 1 failed, 0 skipped"
    );
    assert!(!run.success);
}

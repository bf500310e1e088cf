//! The runner as an implementer gets it: the binary copied to a directory
//! of its own and run from another, with no source checkout to lean on
//! (SPEC.md §17.1–§17.3). It runs the built-in vectors, exports the kit
//! (vectors, schemas, protobuf files) equal to the originals, and passes a
//! third-party adapter written in another language: the TypeScript SDK's.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The source checkout's root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The runner binary copied into a fresh directory, and a second fresh
/// directory to run it from.
struct Installed {
    _bin_dir: tempfile::TempDir,
    work_dir: tempfile::TempDir,
    runner: PathBuf,
}

fn install() -> Installed {
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let runner = bin_dir.path().join("microbot-conformance");
    std::fs::copy(env!("CARGO_BIN_EXE_microbot-conformance"), &runner).expect("copy the binary");
    Installed {
        _bin_dir: bin_dir,
        work_dir: tempfile::tempdir().expect("tempdir"),
        runner,
    }
}

impl Installed {
    /// Runs the copied binary in the work directory; (stdout, success).
    fn run(&self, args: &[&str]) -> (String, bool) {
        let mut tries = 0;
        let output = loop {
            let output = Command::new(&self.runner)
                .args(args)
                .current_dir(self.work_dir.path())
                .env_remove("CARGO_MANIFEST_DIR")
                .output();
            // A test thread forking while another copies a binary holds the
            // copy open for writing a moment ("text file busy"): try again.
            match output {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other.expect("run the copied runner"),
            }
        };
        (
            String::from_utf8_lossy(&output.stdout).into_owned(),
            output.status.success(),
        )
    }
}

fn total() -> usize {
    microbot_test_vectors::bundle::vector_files()
        .expect("embedded vectors")
        .iter()
        .map(|f| f.vectors.len())
        .sum()
}

#[test]
fn a_copied_runner_runs_the_built_in_vectors_from_anywhere() {
    let installed = install();
    let adapter = format!("{} adapter", installed.runner.display());
    let (stdout, success) = installed.run(&["vectors", "--impl", &adapter]);
    assert!(success, "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some(format!("conformance: {} passed, 0 failed, 0 skipped", total()).as_str())
    );
}

#[test]
fn export_writes_the_kit_equal_to_the_originals() {
    let installed = install();
    let (stdout, success) = installed.run(&["export", "--out", "kit"]);
    assert!(success, "{stdout}");
    let kit = installed.work_dir.path().join("kit");
    let source = workspace();
    for (dir, original_dir) in [
        ("vectors", source.join("test-vectors/vectors")),
        ("schema", source.join("test-vectors/schema")),
    ] {
        let mut originals: Vec<_> = std::fs::read_dir(&original_dir)
            .expect("read originals")
            .map(|e| e.expect("entry").file_name())
            .collect();
        originals.sort();
        let mut exported: Vec<_> = std::fs::read_dir(kit.join(dir))
            .expect("read export")
            .map(|e| e.expect("entry").file_name())
            .collect();
        exported.sort();
        assert_eq!(exported, originals, "{dir}: the same files");
        for name in originals {
            assert_eq!(
                std::fs::read(kit.join(dir).join(&name)).expect("exported"),
                std::fs::read(original_dir.join(&name)).expect("original"),
                "{dir}/{name:?}"
            );
        }
    }
    for proto in ["transport.proto", "content.proto"] {
        let original = std::fs::read(source.join("protocol/proto").join(proto)).expect("original");
        assert_eq!(
            std::fs::read(kit.join("proto").join(proto)).expect("exported"),
            original,
            "{proto}"
        );
        let (_, success) = installed.run(&["protos", "--out", "protos"]);
        assert!(success);
        assert_eq!(
            std::fs::read(installed.work_dir.path().join("protos").join(proto)).expect("protos"),
            original
        );
    }

    // --dir runs the exported files just like the built-in ones.
    let adapter = format!("{} adapter", installed.runner.display());
    let (stdout, success) = installed.run(&["vectors", "--impl", &adapter, "--dir", "kit/vectors"]);
    assert!(success, "{stdout}");
    assert!(stdout.ends_with(&format!(
        "conformance: {} passed, 0 failed, 0 skipped\n",
        total()
    )));
}

#[test]
fn the_typescript_sdk_adapter_passes_through_the_installed_runner() {
    let adapter = workspace().join("web/sdk/dist/adapter.js");
    let node = Command::new("node").arg("--version").output();
    if !matches!(&node, Ok(out) if out.status.success()) {
        println!("SKIPPED: `node` is not installed; the TypeScript adapter cannot run");
        return;
    }
    if !adapter.exists() {
        println!(
            "SKIPPED: {} is missing; build it with `cd web && npm ci && npm run build`",
            adapter.display()
        );
        return;
    }
    let installed = install();
    let command = format!("node '{}'", adapter.display());
    let (stdout, success) = installed.run(&["vectors", "--impl", &command, "--timeout", "60"]);
    assert!(success, "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some(format!("conformance: {} passed, 0 failed, 0 skipped", total()).as_str()),
        "{stdout}"
    );
}

//! Replays every committed fuzz input through its target: the seeds in
//! `fuzz/seeds/<target>/`, the minimised corpus in `fuzz/corpus/<target>/`,
//! and every crash or hang the fuzzer found (once fixed) in
//! `fuzz/regressions/<target>/`. This is how `cargo test` (and so `.ci/run`)
//! guards what fuzzing found.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use microbot_fuzz_targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Regular files directly inside `dir` (none if it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_input_passes_its_target() {
    let mut replayed = 0;
    for (name, target) in TARGETS {
        for kind in ["seeds", "corpus", "regressions"] {
            for path in files(&fuzz_dir().join(kind).join(name)) {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{} fails target {name}", path.display());
                replayed += 1;
            }
        }
    }
    assert!(replayed > 0, "no committed fuzz input found under fuzz/");
}

#[test]
fn every_target_has_committed_seeds() {
    for (name, _) in TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name}/ is empty");
    }
}

#[test]
fn the_cargo_fuzz_project_wraps_exactly_these_targets() {
    let wrappers: BTreeSet<String> = files(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(str::to_owned))
        .collect();
    let targets: BTreeSet<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(wrappers, targets);
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for name in &targets {
        let wrapper =
            std::fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{name}.rs"))).unwrap();
        assert!(
            wrapper.contains(&format!("::{name}(")),
            "fuzz_targets/{name}.rs does not call its target"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
}

//! Seed corpora from real data (see `seeds/mod.rs`).
//!
//! Regenerate the committed seeds with
//! `cargo test -p microbot-fuzz-targets --test generate_seeds -- --ignored`.

mod seeds;

use microbot_fuzz_targets::TARGETS;

fn target(name: &str) -> microbot_fuzz_targets::Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no target {name}"))
}

#[test]
fn seeds_pass_their_targets() {
    let seeds = seeds::all();
    for (name, _) in TARGETS {
        assert!(
            seeds.iter().any(|s| s.target == *name),
            "target {name} has no seed"
        );
    }
    for seed in &seeds {
        target(seed.target)(&seed.bytes);
    }
}

#[test]
#[ignore = "writes fuzz/seeds/; run with --ignored to regenerate the committed seeds"]
fn generate_seeds() {
    let root = seeds::repo_root().join("fuzz/seeds");
    for (name, _) in TARGETS {
        let dir = root.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
    }
    for seed in seeds::all() {
        let path = root.join(seed.target).join(&seed.name);
        assert!(!path.exists(), "two seeds named {path:?}");
        std::fs::write(&path, &seed.bytes).unwrap();
    }
}

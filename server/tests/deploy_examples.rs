//! The deployment examples in `docs/deploy/` (docs/OPERATIONS.md
//! "Scaling") stay runnable: the node settings parse and validate as the
//! server reads them, the Kubernetes ConfigMap carries the same settings,
//! every `MICROBOT_*` variable and `--flag` they use is one the server
//! reads, and the systemd unit passes `systemd-analyze verify` (with the
//! built binary in place of the installed one; skipped with a note where
//! systemd-analyze is missing). The autoscaler's metric is checked against
//! a live node in monitoring_docs.rs.

use std::path::PathBuf;
use std::process::Command;

use microbot_server::Config;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(name)).unwrap()
}

/// The node settings of the Kubernetes ConfigMap (its `node.toml: |` block).
fn configmap_toml(yaml: &str) -> String {
    let block = yaml
        .split("node.toml: |\n")
        .nth(1)
        .expect("a node.toml block");
    block
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect()
}

/// Every `MICROBOT_…` name and every `--flag` in `text` (a YAML `---` is
/// no flag).
fn names_used(text: &str) -> (Vec<String>, Vec<String>) {
    let word = |from: &str, allowed: fn(char) -> bool| {
        let mut out = Vec::new();
        for (at, _) in text.match_indices(from) {
            let rest = &text[at + from.len()..];
            let end = rest.find(|c: char| !allowed(c)).unwrap_or(rest.len());
            if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
                out.push(format!("{from}{}", &rest[..end]));
            }
        }
        out
    };
    (
        word("MICROBOT_", |c| c.is_ascii_uppercase() || c == '_'),
        word("--", |c| c.is_ascii_lowercase() || c == '-'),
    )
}

#[test]
fn the_node_settings_parse_validate_and_match_the_configmap() {
    let file = Config::from_toml(&read("node.toml")).expect("node.toml parses");
    file.validate().expect("node.toml is valid");
    assert_eq!(file.shutdown_grace_secs, 30);
    assert!(
        file.metrics_listen.is_some(),
        "the probes need metrics_listen"
    );
    let yaml = read("kubernetes.yaml");
    let map = Config::from_toml(&configmap_toml(&yaml)).expect("the ConfigMap's node.toml parses");
    assert_eq!(map, file);
    // The pod may take longer to stop than a drain.
    let grace: u64 = yaml
        .split("terminationGracePeriodSeconds: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(grace > file.shutdown_grace_secs);
    let unit = read("microbot-node.service");
    let stop: u64 = unit
        .split("TimeoutStopSec=")
        .nth(1)
        .and_then(|r| r.lines().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(stop > file.shutdown_grace_secs);
}

#[test]
fn every_variable_and_flag_the_examples_use_is_read_by_the_server() {
    let help = Command::new(env!("CARGO_BIN_EXE_microbot-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let mut seen = 0;
    for name in ["kubernetes.yaml", "microbot-node.service"] {
        let text = read(name);
        let (variables, _) = names_used(&text);
        // Flags only where the server is started (comments name other commands').
        let starts: String = text
            .lines()
            .filter(|l| l.starts_with("ExecStart=") || l.trim_start().starts_with("args:"))
            .collect();
        let (_, flags) = names_used(&starts);
        assert!(!flags.is_empty(), "{name} starts the server");
        for variable in variables {
            assert!(
                help.contains(&format!("[env: {variable}")),
                "{name} sets {variable}, which the server does not read"
            );
            seen += 1;
        }
        for flag in flags {
            assert!(
                help.contains(&format!("{flag} ")),
                "{name} passes {flag}, which the server does not take"
            );
            seen += 1;
        }
    }
    assert!(seen >= 6, "the examples set the storage, Redis and config");
}

#[test]
fn the_systemd_unit_verifies() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = read("microbot-node.service")
        .replace(
            "/usr/local/bin/microbot-server",
            env!("CARGO_BIN_EXE_microbot-server"),
        )
        // The `microbot` user exists only where the server is installed.
        .replace("User=microbot", "User=root")
        .replace("Group=microbot", "Group=root");
    let path = dir.path().join("microbot-node.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

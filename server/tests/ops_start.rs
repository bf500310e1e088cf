//! What the `microbot-server` binary tells an operator (issue 24): the
//! settings in effect at start (passwords as `***`), SIGHUP drains and
//! stops like SIGTERM instead of killing the process, `backup --to` a
//! missing directory says so, and a wrong PostgreSQL password is reported
//! in the engine's words (without the password).

use crate::common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use microbot_server::Server;

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_microbot-server"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MICROBOT_") {
            command.env_remove(key);
        }
    }
    command
        .env("MICROBOT_ARGON2_MEMORY_KIB", "64")
        .env("MICROBOT_ARGON2_ITERATIONS", "1");
    command
}

/// Starts the binary with `args`, reads stdout up to the fingerprint line
/// and the settings after it; returns the child and what it printed.
fn start(args: &[&str]) -> (std::process::Child, String) {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("server ended early: {seen}\n{err}");
        }
        seen.push_str(&line);
        if line.starts_with("webhooks: ") {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
    });
    (child, seen)
}

fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    for _ in 0..400 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("server did not stop");
}

#[test]
fn start_prints_the_settings_in_effect_without_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut child, printed) = start(&[
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--redis",
        "redis://:redis-secret-pw@127.0.0.1:1/",
        "--metrics-listen",
        "127.0.0.1:0",
        "--webhook-url",
        "http://127.0.0.1:9/push/token-in-path",
        "--webhook-allow-private",
        "true",
        "--webhook-secret",
        "gateway-secret-value",
    ]);
    assert!(
        printed.contains(&format!("storage: SQLite {data}/microbot.sqlite3")),
        "{printed}"
    );
    assert!(
        printed.contains("bus: Redis redis://:***@127.0.0.1:1/ (namespace microbot"),
        "{printed}"
    );
    assert!(
        printed.contains("metrics: http://127.0.0.1:0/metrics"),
        "{printed}"
    );
    assert!(
        printed.contains("webhooks: http://127.0.0.1:9/… (timeout 5000 ms, 5 retries"),
        "{printed}"
    );
    assert!(!printed.contains("redis-secret-pw"), "{printed}");
    assert!(!printed.contains("token-in-path"), "{printed}");
    assert!(
        printed.contains("back-off from 500 ms, signed)"),
        "{printed}"
    );
    assert!(!printed.contains("gateway-secret-value"), "{printed}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sighup_drains_and_stops_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, printed) = start(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--shutdown-grace-secs",
        "1",
    ]);
    assert!(printed.contains("bus: in-process"), "{printed}");
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_exit(&mut child);
    assert_eq!(
        status.code(),
        Some(0),
        "SIGHUP killed the server: {status:?}"
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("SIGHUP: draining"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_to_a_missing_directory_says_so() {
    let server = TestServer::start().await;
    let dir = server.stop_keep_dir().await;
    let missing = dir.path().join("no-such-dir");
    let out = bin()
        .args(["--data-dir", dir.path().to_str().unwrap(), "backup", "--to"])
        .arg(missing.join("b.sqlite3"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "backup directory {} does not exist",
            missing.display()
        )),
        "{err}"
    );
    let out = bin()
        .args(["--data-dir", dir.path().to_str().unwrap(), "backup", "--to"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is a directory"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_postgres_password_is_reported_in_the_engines_words() {
    let Ok(url) = std::env::var("MICROBOT_TEST_POSTGRES") else {
        eprintln!("MICROBOT_TEST_POSTGRES not set (scripts/services.sh); skipped");
        return;
    };
    // postgres://user:password@host… with the password replaced.
    let (scheme_user, rest) = url.split_once('@').unwrap();
    let (scheme_user, _) = scheme_user.rsplit_once(':').unwrap();
    let wrong = format!("{scheme_user}:not-the-password-42@{rest}");
    let dir = tempfile::tempdir().unwrap();
    let config = microbot_server::Config {
        storage: Some(microbot_server::config::SecretUrl::new(wrong)),
        ..test_config(dir.path())
    };
    let error = match Server::bind(config).await {
        Ok(_) => panic!("a wrong password was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("password authentication failed"),
        "the engine's message is missing: {error}"
    );
    assert!(!error.contains("not-the-password-42"), "{error}");
}

#[test]
fn help_states_the_precedence_and_backup_help_only_its_options() {
    let out = bin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("built-in default < the TOML file of --config < its MICROBOT_* environment"),
        "{help}"
    );
    for (command, own) in [("backup", "--to"), ("restore", "--from")] {
        let out = bin().args([command, "--help"]).output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains(own) && help.contains("--data-dir"), "{help}");
        for foreign in ["--rate-send-per-account", "--listen", "--webhook-url"] {
            assert!(
                !help.contains(foreign),
                "{command} --help lists {foreign}:\n{help}"
            );
        }
    }
}

#[test]
fn an_empty_allow_list_variable_means_every_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = bin();
    command
        .env("MICROBOT_ALLOW_IPS", "")
        .env("MICROBOT_DENY_IPS", "")
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        line.starts_with("microbot-server listening on"),
        "refused an empty MICROBOT_ALLOW_IPS: {status:?} {line} {err}"
    );
}

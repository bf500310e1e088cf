//! Test harness: a real in-process server on loopback, and the real
//! `microbot` binary run as a child process with its profiles in a temp
//! dir. TOTP codes are computed from the secret the binary prints, as an
//! authenticator app would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The authenticator app (a fresh time step per code).
pub use microbot_test_support::Authenticator;
/// A server running on its own runtime for the length of a test.
pub use microbot_test_support::BlockingServer as TestServer;

/// What a finished run of the binary left.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self
    }

    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?} in {self:#?}"))
            })
            .collect()
    }
}

/// Profiles of one test: the binary's environment.
pub struct Cli {
    pub home: tempfile::TempDir,
    pub server: String,
    pub fingerprint: String,
}

pub fn password(profile: &str) -> String {
    format!("pw-{profile}-long-enough")
}

impl Cli {
    pub fn new(server: &TestServer) -> Self {
        Self {
            home: tempfile::tempdir().unwrap(),
            server: server.addr.to_string(),
            fingerprint: server.fingerprint.clone(),
        }
    }

    pub fn home(&self) -> &Path {
        self.home.path()
    }

    pub fn command(&self, profile: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_microbot"));
        command
            .arg("--profile")
            .arg(profile)
            .args(args)
            .env("MICROBOT_HOME", self.home())
            .env("MICROBOT_PASSWORD", password(profile))
            .env("MICROBOT_CONNECT_TIMEOUT", "20")
            .env_remove("MICROBOT_PASSPHRASE")
            .env_remove("MICROBOT_PROFILE")
            .env_remove("RUST_BACKTRACE");
        command
    }

    /// Runs the binary with `input` on standard input.
    pub fn run_with_input(&self, profile: &str, args: &[&str], input: &str) -> Output {
        run_command(self.command(profile, args), input)
    }

    pub fn run(&self, profile: &str, args: &[&str]) -> Output {
        self.run_with_input(profile, args, "")
    }

    /// `recv --json --only KIND --count COUNT --timeout 30` as `profile`,
    /// which must succeed: the events it printed.
    pub fn recv(&self, profile: &str, kind: &str, count: usize) -> Vec<serde_json::Value> {
        let count = count.to_string();
        let args = [
            "recv",
            "--json",
            "--only",
            kind,
            "--count",
            &count,
            "--timeout",
            "30",
        ];
        self.run(profile, &args).ok().json_lines()
    }

    /// Runs `register`, reading the TOTP secret it prints and answering
    /// with codes from `codes` (called once the secret is known).
    pub fn register_with(
        &self,
        profile: &str,
        username: &str,
        server: &str,
        fingerprint: &str,
        codes: impl FnOnce(&mut Authenticator) -> Vec<String>,
    ) -> (Output, Option<Authenticator>) {
        let command = self.command(
            profile,
            &[
                "register",
                username,
                "--server",
                server,
                "--cert-sha256",
                fingerprint,
            ],
        );
        register_command(command, codes)
    }
}

/// Runs a `register` command, reading the TOTP secret it prints and
/// answering with codes from `codes` (called once the secret is known).
pub fn register_command(
    mut command: Command,
    codes: impl FnOnce(&mut Authenticator) -> Vec<String>,
) -> (Output, Option<Authenticator>) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut auth = None;
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(secret) = line.trim_end().strip_prefix("secret: ") {
            let mut authenticator = Authenticator::from_base32(secret);
            for code in codes(&mut authenticator) {
                writeln!(stdin, "{code}").unwrap();
            }
            auth = Some(authenticator);
            break;
        }
    }
    drop(stdin);
    stdout.read_to_string(&mut seen).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    (
        Output {
            code: status.code().unwrap_or(-1),
            stdout: seen,
            stderr,
        },
        auth,
    )
}

impl Cli {
    /// Registers `name` as profile `name` with correct codes.
    pub fn register(&self, name: &str) -> Authenticator {
        let (server, fingerprint) = (self.server.clone(), self.fingerprint.clone());
        let (out, auth) = self.register_with(name, name, &server, &fingerprint, |auth| {
            vec![auth.fresh(), auth.fresh()]
        });
        let out = out.ok();
        assert!(out.stdout.contains("otpauth://totp/"), "{out:#?}");
        assert!(out.stdout.contains("Recovery codes"), "{out:#?}");
        assert!(out.stdout.contains("enrolled"), "{out:#?}");
        auth.unwrap()
    }

    pub fn profile_dir(&self, name: &str) -> PathBuf {
        self.home().join("profiles").join(name)
    }
}

/// Runs `command` with `input` on standard input.
pub fn run_command(mut command: Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A command may stop reading early (an over-long text): a closed pipe is fine.
    match stdin.write_all(input.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// What linking a new profile printed: the new device's `microbot link`
/// and the existing device's `microbot devices link CODE`.
pub struct Linked {
    /// The provisioning code the new device showed.
    pub code: String,
    /// `microbot devices link CODE` on the existing device.
    pub sender: Output,
    /// `microbot link` on the new device.
    pub receiver: Output,
}

impl Cli {
    /// Links profile `new` to the account of profile `old` (SPEC.md §12.14):
    /// runs `microbot link` for `new` (password of `account`, then `codes` on
    /// standard input), reads the code it shows, and runs `microbot devices
    /// link CODE` on `old`.
    pub fn link(&self, old: &str, new: &str, account: &str, codes: &str) -> Linked {
        self.link_with(old, new, account, codes, &[])
    }

    /// [`Cli::link`] with more arguments for `devices link` (`--history N`).
    pub fn link_with(
        &self,
        old: &str,
        new: &str,
        account: &str,
        codes: &str,
        sender_args: &[&str],
    ) -> Linked {
        let mut command = self.command(
            new,
            &[
                "link",
                "--server",
                &self.server,
                "--cert-sha256",
                &self.fingerprint,
                "--wait",
                "60",
            ],
        );
        command
            .env("MICROBOT_PASSWORD", password(account))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(codes.as_bytes()).unwrap();
        drop(stdin);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = String::new();
        let code = loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let mut stderr = String::new();
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                panic!("`microbot link` ended without a code: {seen}{stderr}");
            }
            seen.push_str(&line);
            if let Some(code) = line.strip_prefix("code: ") {
                break code.trim().to_owned();
            }
        };
        let mut args = vec!["devices", "link", code.as_str()];
        args.extend_from_slice(sender_args);
        let sender = self.run(old, &args);
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        Linked {
            code,
            sender,
            receiver: Output {
                code: status.code().unwrap_or(-1),
                stdout: seen + &rest,
                stderr,
            },
        }
    }
}

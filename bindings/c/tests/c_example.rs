//! `examples/chat.c` compiled with the system C compiler (through the `cc`
//! crate) against this crate's static library and run against a real
//! in-process server on loopback, with the real `microbot` CLI on the other
//! side: the C program registers and enrols with TOTP codes this test
//! computes from the secret it prints, sends a text the CLI receives,
//! receives the CLI's answer through its event callback and replies.
//!
//! The CLI binary comes from `$MICROBOT_BIN_DIR` (set by scripts/test.sh
//! after `cargo build --bins`) or else this profile's directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use microbot_test_support::{Authenticator, BlockingServer};

/// `target/<profile>`, two levels above this test's executable.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

fn cli_binary() -> PathBuf {
    let dir = std::env::var_os("MICROBOT_BIN_DIR").map_or_else(profile_dir, PathBuf::from);
    let bin = dir.join(format!("microbot{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p microbot-cli-client --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Compiles examples/chat.c against `libmicrobot_ffi.a` into `out`.
fn compile_example(out: &Path) {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = profile_dir();
    assert!(
        lib_dir.join("libmicrobot_ffi.a").exists(),
        "{} has no libmicrobot_ffi.a",
        lib_dir.display()
    );
    let compiler = cc::Build::new()
        .target(env!("MICROBOT_FFI_TARGET"))
        .host(env!("MICROBOT_FFI_HOST"))
        .opt_level(0)
        .cargo_metadata(false)
        .warnings(true)
        .extra_warnings(true)
        .get_compiler();
    let mut command = compiler.to_command();
    command
        .arg("-std=c11")
        .arg("-D_POSIX_C_SOURCE=200809L")
        .arg("-Werror")
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("examples").join("chat.c"))
        .arg("-o")
        .arg(out)
        .arg(lib_dir.join("libmicrobot_ffi.a"))
        .args(["-lpthread", "-ldl", "-lm", "-lrt"]);
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "compiling chat.c failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A child process killed when dropped, its stdout lines on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line starting with `prefix`; returns the rest.
    fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(_) => panic!("no line starting with {prefix:?}; saw {:#?}", self.seen),
            }
        }
    }

    fn write_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `microbot` CLI with its profiles in `home`.
struct Cli {
    home: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(cli_binary());
        command
            .args(["--profile", "carol"])
            .args(args)
            .env("MICROBOT_HOME", &self.home)
            .env("MICROBOT_PASSWORD", "pw-carol-long-enough")
            .env("MICROBOT_CONNECT_TIMEOUT", "20")
            .env_remove("MICROBOT_PASSPHRASE")
            .env_remove("MICROBOT_PROFILE");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            output.status.success(),
            "microbot {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Waits for one message and returns (from, text).
    fn recv_one(&self) -> (String, String) {
        let output = self.run(&[
            "recv",
            "--json",
            "--only",
            "message",
            "--count",
            "1",
            "--timeout",
            "60",
        ]);
        let stdout = String::from_utf8(output.stdout).unwrap();
        let line = stdout.lines().next().unwrap_or_default();
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("recv printed {stdout:?}: {e}"));
        (
            json["from"].as_str().unwrap().to_owned(),
            json["text"].as_str().unwrap().to_owned(),
        )
    }
}

#[test]
fn c_example_chats_with_the_cli_through_a_live_server() {
    let work = tempfile::tempdir().unwrap();
    let program = work.path().join("chat");
    compile_example(&program);

    let server = BlockingServer::start();
    let addr = server.addr.to_string();
    let fingerprint = server.fingerprint.clone();

    // The CLI user, registered and enrolled by the real binary.
    let cli = Cli {
        home: work.path().join("cli"),
    };
    let mut register = Running::spawn(cli.command(&[
        "register",
        "carol",
        "--server",
        &addr,
        "--cert-sha256",
        &fingerprint,
    ]));
    let mut auth = Authenticator::from_base32(&register.expect("secret: "));
    register.write_line(&auth.fresh());
    register.write_line(&auth.fresh());
    register.expect("This device is enrolled as carol");
    assert!(register.child.wait().unwrap().success());

    // The C program, answering its TOTP prompts from the secret it prints.
    let mut c = Running::spawn({
        let mut command = Command::new(&program);
        command.args([
            addr.as_str(),
            fingerprint.as_str(),
            "cuser",
            "pw-cuser-long-enough",
            work.path().join("cuser.sqlite3").to_str().unwrap(),
            "carol",
        ]);
        command
    });
    assert!(c.expect("microbot ").starts_with(env!("CARGO_PKG_VERSION")));
    let mut auth = Authenticator::from_base32(&c.expect("secret: "));
    c.write_line(&auth.fresh());
    c.write_line(&auth.fresh());
    c.expect("connected");
    let sent = c.expect("sent: ");
    assert_eq!(sent.len(), 32, "{sent}");

    assert_eq!(
        cli.recv_one(),
        ("cuser".to_owned(), "hello from C".to_owned())
    );
    cli.run(&["send", "cuser", "hi from the cli"]);
    assert_eq!(c.expect("received: "), "hi from the cli");
    c.expect("replied: ");
    assert_eq!(
        cli.recv_one(),
        ("cuser".to_owned(), "echo: hi from the cli".to_owned())
    );
    let error = c.expect("error: ");
    assert!(error.contains("conversation"), "{error}");
    let mut rest = String::new();
    c.child
        .stdout
        .take()
        .map(|mut s| s.read_to_string(&mut rest));
    let status = c.child.wait().unwrap();
    assert!(
        status.success(),
        "chat.c exited with {status}; saw {:#?}",
        c.seen
    );

    server.stop();
}

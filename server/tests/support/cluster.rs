//! Shared by the cluster tests (cluster.rs, redis_fallback.rs,
//! load_balancer.rs, health_checks.rs): server nodes as child processes of
//! the real binary on one PostgreSQL schema and one Redis namespace,
//! private `redis-server`s, and SDK accounts with real TOTP codes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{engines, ledger, redis};
#[allow(unused_imports)] // each test file uses a different part
pub use engines::{Schema, random_hex, services};
#[allow(unused_imports)]
pub use ledger::Ledger;
#[allow(unused_imports)]
pub use redis::{RedisGuard, free_port, redis_server};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use microbot_client::{
    Account, AccountConfig, ConnectionState, Enrolment, Event, Events, IdentitySource, KdfParams,
    SecondFactor, ServerConfig, StoreConfig,
};
use zeroize::Zeroizing;

/// What every node of one test cluster shares.
pub struct ClusterSpec {
    pub storage_url: String,
    pub redis_url: String,
    pub namespace: String,
    pub attachments: PathBuf,
    /// Certificate and key of the first node, reused by the others.
    pub cert: Option<(PathBuf, PathBuf)>,
}

/// One `microbot-server` process.
pub struct Node {
    child: Child,
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node and waits until it prints its address and pin.
    pub fn start(spec: &mut ClusterSpec) -> Self {
        Self::start_with(spec, &[])
    }

    /// [`Node::start`] with more command-line arguments.
    pub fn start_with(spec: &mut ClusterSpec, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_microbot-server"));
        command
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0"])
            .args(["--storage", &spec.storage_url])
            .args(["--storage-pool-size", "4"])
            .args(["--redis", &spec.redis_url])
            .args(["--redis-namespace", &spec.namespace])
            .args(["--attachments-dir", spec.attachments.to_str().unwrap()])
            .args(["--argon2-memory-kib", "64", "--argon2-iterations", "1"])
            .args(["--totp-skew-steps", "10", "--shutdown-grace-secs", "1"])
            .args(["--idle-timeout-secs", "4"])
            .args(["--rate-login-per-ip", "0", "--rate-login-per-account", "0"])
            .args([
                "--rate-register-per-ip",
                "0",
                "--rate-send-per-account",
                "0",
            ])
            .args(["--rate-prekey-fetch-per-account", "0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("MICROBOT_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some((cert, key)) = &spec.cert {
            command
                .args(["--cert-pem", cert.to_str().unwrap()])
                .args(["--key-pem", key.to_str().unwrap()]);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut addr = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(a) = line.strip_prefix("microbot-server listening on ") {
                    addr = a.parse::<SocketAddr>().ok();
                }
                if let Some(f) = line.strip_prefix("certificate SHA-256 fingerprint: ") {
                    let _ = tx.send((addr, f.trim().to_owned()));
                }
            }
        });
        let (addr, fingerprint) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("node did not start: {}", log_of(dir.path())));
        if spec.cert.is_none() {
            spec.cert = Some((dir.path().join("cert.pem"), dir.path().join("key.pem")));
        }
        Self {
            child,
            addr: addr.unwrap(),
            fingerprint,
            dir,
        }
    }

    /// SIGTERM: the node drains (SPEC.md §12.9) and exits; waits for the
    /// exit and asserts it was clean.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(
            exit.success(),
            "drained node exited with {exit}: {}",
            self.log()
        );
    }

    /// SIGKILL: no drain, no goodbye.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn log(&self) -> String {
        log_of(self.dir.path())
    }
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The failing test's output then says what each node saw.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- node {} log, last lines ---", self.addr);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Codes from the secret the server returned, one fresh step per use.
pub struct Authenticator {
    totp: totp_rs::Totp,
    next_step: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Authenticator {
    pub fn fresh(&mut self) -> String {
        let step = self.next_step.max(now_secs() / 30);
        self.next_step = step + 1;
        self.totp.generate(step * 30).to_string()
    }
}

pub const CHEAP_KDF: KdfParams = KdfParams::new(64, 1, 1);

pub fn fast_config() -> AccountConfig {
    let mut config = AccountConfig::default();
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(500);
    config.prekey_batch = 20;
    config.connect_timeout = Duration::from_secs(1);
    config
}

/// A registered user with one connected device.
pub struct Device {
    pub username: String,
    pub account: Account,
    pub events: Option<Events>,
    pub dir: tempfile::TempDir,
}

/// Registers `username` through `server` and enrols and connects one device.
pub async fn user(server: &ServerConfig, username: &str) -> Device {
    user_with(server, username, fast_config()).await
}

/// [`user`] with the device's SDK settings given.
pub async fn user_with(server: &ServerConfig, username: &str, config: AccountConfig) -> Device {
    let password = format!("pw-{username}-secret");
    let registration = microbot_client::register(server, username, &password)
        .await
        .unwrap();
    let secret = totp_rs::Secret::try_from_base32(registration.totp_secret_base32.as_str())
        .unwrap()
        .as_bytes()
        .to_vec();
    let mut auth = Authenticator {
        totp: totp_rs::Builder::new().with_secret(secret).build().unwrap(),
        next_step: now_secs() / 30,
    };
    microbot_client::confirm_registration(server, username, &password, &auth.fresh())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(dir.path().join("client.sqlite3")).with_kdf(CHEAP_KDF);
    let (account, mut events) = Account::enrol(
        &store,
        server.clone(),
        Enrolment {
            username: username.to_owned(),
            password: Zeroizing::new(password),
            second_factor: SecondFactor::Totp(auth.fresh()),
            identity: IdentitySource::New,
        },
        config,
    )
    .await
    .unwrap();
    account.connect();
    wait_for(&mut events, Duration::from_secs(30), |e| {
        matches!(e, Event::Connection(ConnectionState::Connected)).then_some(())
    })
    .await;
    Device {
        username: username.to_owned(),
        account,
        events: Some(events),
        dir,
    }
}

/// The first event `f` accepts; panics after `wait`.
pub async fn wait_for<T>(
    events: &mut Events,
    wait: Duration,
    mut f: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(event)) => {
                if let Some(value) = f(&event) {
                    return value;
                }
            }
            Ok(None) => panic!("event stream ended"),
            Err(_) => panic!("timed out waiting for an event"),
        }
    }
}

/// Established TCP connections whose local port is `node`'s: the
/// connections a load balancer holds open to that node (Linux, /proc/net/tcp).
pub fn tcp_connections_to(node: SocketAddr) -> usize {
    let port = format!(":{:04X}", node.port());
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1).is_some_and(|local| local.ends_with(&port))
                && fields.get(3) == Some(&"01")
        })
        .count()
}

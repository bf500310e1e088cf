//! A real server in-process on loopback for a test, and the cheap
//! configuration test servers use.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use microbot_server::{Config, Server, ShutdownHandle};

/// A server configuration for tests: data in `data_dir`, QUIC (and the
/// WebSocket on the same port number) on `listen`, argon2id at its
/// cheapest, TOTP codes accepted ±10 steps (each step once), a one-second
/// shutdown grace, and no per-address or per-account login and
/// registration rate limits (tests register many users from 127.0.0.1).
pub fn test_config(data_dir: &Path, listen: SocketAddr) -> Config {
    Config {
        data_dir: data_dir.to_owned(),
        listen,
        argon2_memory_kib: 64,
        argon2_iterations: 1,
        argon2_parallelism: 1,
        totp_skew_steps: 10,
        shutdown_grace_secs: 1,
        rate_register_per_ip: 0,
        rate_login_per_ip: 0,
        rate_login_per_account: 0,
        ..Config::default()
    }
}

/// A server on its own tokio runtime for the length of a test, stopped
/// (with its grace period) when dropped. Its data directory (certificate,
/// key, SQLite database) is a temporary directory unless the configuration
/// names storage elsewhere.
pub struct BlockingServer {
    /// The QUIC address; the WebSocket listens on the same port over TCP.
    pub addr: SocketAddr,
    /// The certificate's SHA-256 fingerprint, hex (what clients pin).
    pub fingerprint: String,
    runtime: tokio::runtime::Runtime,
    handle: ShutdownHandle,
    task: Option<tokio::task::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl BlockingServer {
    /// A server with [`test_config`] on a free loopback port.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// A server with [`test_config`] on `listen`.
    pub fn start_on(listen: SocketAddr) -> Self {
        Self::start_with(listen, |_| {})
    }

    /// A server with [`test_config`] on `listen`, changed by `tweak` first
    /// (storage, Redis, a shared certificate...).
    pub fn start_with(listen: SocketAddr, tweak: impl FnOnce(&mut Config)) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path(), listen);
        tweak(&mut config);
        let (addr, fingerprint, handle, task) = runtime.block_on(async {
            let server = Server::bind(config).await.unwrap();
            let addr = server.local_addr().unwrap();
            let fingerprint = server.fingerprint().to_owned();
            let (handle, rx) = server.handle();
            let task = tokio::spawn(server.run(rx));
            (addr, fingerprint, handle, task)
        });
        Self {
            addr,
            fingerprint,
            runtime,
            handle,
            task: Some(task),
            dir,
        }
    }

    /// The server's data directory (`cert.pem`, `key.pem`,
    /// `microbot.sqlite3`).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server now and waits (at most 10 s) for it to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        }
    }
}

impl Drop for BlockingServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

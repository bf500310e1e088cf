//! Debian's nginx (`MICROBOT_NGINX`, set by scripts/services.sh) as a child
//! process with its own prefix directory, for the cache and load-balancer
//! tests: started with a configuration body, reloaded with another, killed
//! on drop.

#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The stream module of Debian's `libnginx-mod-stream`.
pub const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// A running nginx.
pub struct Nginx {
    binary: PathBuf,
    conf: PathBuf,
    child: Child,
    dir: tempfile::TempDir,
}

/// The nginx binary, or `None` (with a note) when the services script was
/// not run.
pub fn binary() -> Option<PathBuf> {
    let found = std::env::var_os("MICROBOT_NGINX").map(PathBuf::from);
    if found.is_none() {
        eprintln!("skipped: MICROBOT_NGINX is not set (scripts/services.sh sets it)");
    }
    found
}

/// A free TCP port on loopback (also free for UDP in practice).
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Nginx {
    /// Starts nginx whose configuration is `body(prefix dir)` after the
    /// common top (one worker, logs and pid in the prefix directory); its
    /// `load_module` lines go first.
    pub fn start(binary: &Path, body: impl Fn(&Path) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Workers run as an unprivileged user when nginx starts as root.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let conf = dir.path().join("nginx.conf");
        write_conf(&conf, dir.path(), &body);
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            binary: binary.to_owned(),
            conf,
            child,
            dir,
        }
    }

    /// Replaces the configuration and tells nginx to reload it (new workers
    /// take new connections; old ones finish theirs), and returns once the
    /// old worker has stopped taking new ones. `nginx -s reload` only
    /// signals the master: until the old worker closes its listening
    /// sockets, a new UDP client may start its session there (to the old
    /// upstreams) and then have its next datagrams read by the new worker,
    /// which opens a second session, possibly to another node: a QUIC
    /// handshake split between two nodes never completes.
    pub fn reload(&self, body: impl Fn(&Path) -> String) {
        let shut_down_before = self.old_workers_shut_down();
        write_conf(&self.conf, self.dir.path(), &body);
        let status = Command::new(&self.binary)
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "reload"])
            .status()
            .unwrap();
        assert!(status.success(), "nginx reload: {}", self.error_log());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.old_workers_shut_down() == shut_down_before {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not reload within 10 s: {}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // The worker logs that line just before it closes its sockets.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// How many times a worker began its graceful shutdown (notice level).
    fn old_workers_shut_down(&self) -> usize {
        self.error_log().matches("gracefully shutting down").count()
    }

    /// Waits until nginx accepts TCP connections on `addr`.
    pub async fn wait_listening(&self, addr: SocketAddr) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx did not listen: {}",
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

fn write_conf(conf: &Path, dir: &Path, body: &impl Fn(&Path) -> String) {
    let d = dir.display();
    let body = body(dir);
    // `load_module` lines must come before everything else.
    let (modules, rest): (Vec<&str>, Vec<&str>) = body
        .lines()
        .partition(|line| line.trim_start().starts_with("load_module"));
    let text = format!(
        "{}\nworker_processes 1;\nerror_log {d}/error.log notice;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 256; }}\n{}\n",
        modules.join("\n"),
        rest.join("\n")
    );
    std::fs::write(conf, text).unwrap();
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers too (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

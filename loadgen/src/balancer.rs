//! Debian's nginx (stream module) in front of a cluster's nodes, for the
//! "through the load balancer" row of the cluster benchmark (issue 21,
//! docs/OPERATIONS.md "One address in front"): QUIC by a consistent hash
//! of the client's address and port, TCP by least connections, at one
//! address, TLS passed through.
//!
//! Not owned here: the nodes (cluster.rs), the workload.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::{LoadError, LoadResult};

/// The stream module of Debian's `libnginx-mod-stream`.
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// A running nginx, stopped (SIGTERM, so its workers go too) on drop.
pub struct Balancer {
    child: Child,
    /// The one address clients use (TCP and UDP).
    pub front: SocketAddr,
    dir: tempfile::TempDir,
}

fn failed(reason: String) -> LoadError {
    LoadError::Process {
        name: "nginx".to_owned(),
        reason,
    }
}

/// nginx's configuration: `front` (TCP and UDP) to `nodes`, files in `dir`.
fn configuration(dir: &Path, front: SocketAddr, nodes: &[SocketAddr]) -> String {
    let servers: String = nodes.iter().map(|n| format!("    server {n};\n")).collect();
    let d = dir.display();
    format!(
        "load_module {STREAM_MODULE};\n\
         worker_processes 1;\n\
         error_log {d}/error.log;\n\
         pid {d}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         stream {{\n\
           upstream tcp_nodes {{\n    least_conn;\n{servers}  }}\n\
           upstream udp_nodes {{\n    hash $remote_addr$remote_port consistent;\n{servers}  }}\n\
           server {{ listen {front}; proxy_pass tcp_nodes; proxy_timeout 1h; }}\n\
           server {{ listen {front} udp; proxy_pass udp_nodes; proxy_timeout 1h; }}\n\
         }}\n"
    )
}

impl Balancer {
    /// Starts `binary` in front of `nodes` on a free loopback port and
    /// waits until it listens.
    ///
    /// # Errors
    /// [`LoadError::Process`] when nginx cannot start or does not listen
    /// within 10 s (its error log is in the reason).
    pub async fn start(binary: &Path, nodes: &[SocketAddr]) -> LoadResult<Self> {
        let dir = tempfile::tempdir().map_err(LoadError::io("creating nginx's directory"))?;
        // Workers run as an unprivileged user when nginx starts as root.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .map_err(LoadError::io("opening nginx's directory"))?;
        let front = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(LoadError::io("finding a free port"))?;
        let conf: PathBuf = dir.path().join("nginx.conf");
        std::fs::write(&conf, configuration(dir.path(), front, nodes))
            .map_err(LoadError::io("writing nginx.conf"))?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| failed(format!("cannot start {}: {e}", binary.display())))?;
        let balancer = Self { child, front, dir };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(front).await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                return Err(failed(format!(
                    "not listening on {front}: {}",
                    balancer.error_log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(balancer)
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

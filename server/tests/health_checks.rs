//! A load balancer that health-checks the nodes' readiness endpoint
//! (docs/OPERATIONS.md "Load balancing", SPEC.md §18.6): open-source nginx
//! only marks a node failed after connections to it fail, so the active
//! check against `/readyz` is Debian's HAProxy (`MICROBOT_HAPROXY`, set by
//! scripts/services.sh) in TCP mode, by least connections, checking every
//! node's `GET /readyz` on its metrics listener. Three nodes share
//! PostgreSQL; A and B share the test Redis, C's bus is a private
//! `redis-server` the test takes away. While C's bus is lost, C answers
//! `/readyz` with 503, HAProxy marks it down and every new connection goes
//! to A or B; when C's Redis comes back, C is ready again, HAProxy puts it
//! back and new connections reach it. A WebSocket client registers and
//! talks through the balancer while C is out.
//! Needs `MICROBOT_TEST_POSTGRES`, `MICROBOT_TEST_REDIS` and
//! `MICROBOT_HAPROXY` (`.ci/run` sets them); skipped with a note otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::cluster as support;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use microbot_client::{Conversation, Event, ServerConfig, Transport};
use support::{
    ClusterSpec, Node, Schema, free_port, redis_server, services, tcp_connections_to, user,
    wait_for,
};

/// The HAProxy binary, or `None` (with a note) when the services script
/// was not run.
fn binary() -> Option<PathBuf> {
    let found = std::env::var_os("MICROBOT_HAPROXY").map(PathBuf::from);
    if found.is_none() {
        eprintln!("skipped: MICROBOT_HAPROXY is not set (scripts/services.sh sets it)");
    }
    found
}

/// A running HAProxy in the foreground, killed on drop.
struct HaProxy {
    child: Child,
    dir: tempfile::TempDir,
}

impl HaProxy {
    /// HAProxy on `front` to `nodes` (name, node address, metrics address):
    /// the configuration docs/OPERATIONS.md gives, with the check interval
    /// shortened for the test.
    fn start(binary: &Path, front: SocketAddr, nodes: &[(&str, SocketAddr, SocketAddr)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let servers: String = nodes
            .iter()
            .map(|(name, addr, metrics)| {
                format!("    server {name} {addr} check port {}\n", metrics.port())
            })
            .collect();
        let conf = format!(
            "global\n\
             \x20   stats socket {sock} mode 600 level admin\n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect 2s\n\
             \x20   timeout client 1h\n\
             \x20   timeout server 1h\n\
             \x20   timeout check 1s\n\
             frontend microbot\n\
             \x20   bind {front}\n\
             \x20   default_backend nodes\n\
             backend nodes\n\
             \x20   balance leastconn\n\
             \x20   option httpchk GET /readyz\n\
             \x20   http-check expect status 200\n\
             \x20   default-server inter 200ms fall 2 rise 2\n\
             {servers}",
            sock = dir.path().join("admin.sock").display(),
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, conf).unwrap();
        let check = Command::new(binary)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "haproxy -c: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, dir }
    }

    /// The status HAProxy gives server `name` of backend `nodes` (`UP`,
    /// `DOWN`, `UP 1/2`, …), from `show stat` on its admin socket.
    fn status(&self, name: &str) -> Option<String> {
        let mut socket =
            std::os::unix::net::UnixStream::connect(self.dir.path().join("admin.sock")).ok()?;
        socket.write_all(b"show stat\n").ok()?;
        let mut csv = String::new();
        socket.read_to_string(&mut csv).ok()?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.trim_start_matches("# ").split(',').collect();
        let column = header.iter().position(|h| *h == "status")?;
        lines.find_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields.first() == Some(&"nodes") && fields.get(1) == Some(&name))
                .then(|| fields.get(column).map(|s| (*s).to_owned()))
                .flatten()
        })
    }

    /// Waits until server `name` is `want` (10 s at most).
    async fn until(&self, name: &str, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.status(name);
            if status.as_deref() == Some(want) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "haproxy never marked {name} {want}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /readyz` on `metrics`: the status code.
fn readyz(metrics: SocketAddr) -> u16 {
    let mut stream = std::net::TcpStream::connect(metrics).unwrap();
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Opens `n` connections through the balancer and waits until `enough`
/// says they were placed; the connections, to be dropped.
async fn hold(
    front: SocketAddr,
    n: usize,
    enough: impl Fn() -> bool,
) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(tokio::net::TcpStream::connect(front).await.unwrap());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !enough() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the balancer never placed the connections"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn haproxy_takes_a_node_out_while_it_is_not_ready_and_back_when_it_is() {
    let Some((pg, redis)) = services("health_checks") else {
        return;
    };
    let Some(haproxy) = binary() else {
        return;
    };
    let schema = Schema::new(&pg, "health_checks");
    let shared = tempfile::tempdir().unwrap();
    let namespace = format!("test-hc-{}", support::random_hex(4));
    let mut spec = ClusterSpec {
        storage_url: schema.url.clone(),
        redis_url: redis,
        namespace: namespace.clone(),
        attachments: shared.path().to_owned(),
        cert: None,
    };
    let metrics: Vec<SocketAddr> = (0..3)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let args = |i: usize| ["--metrics-listen".to_owned(), metrics[i].to_string()];
    let a = Node::start_with(&mut spec, &args(0).each_ref().map(String::as_str));
    let b = Node::start_with(&mut spec, &args(1).each_ref().map(String::as_str));
    let c_redis_port = free_port();
    let mut c_redis = redis_server(c_redis_port);
    let mut c_spec = ClusterSpec {
        storage_url: schema.url.clone(),
        redis_url: format!("redis://127.0.0.1:{c_redis_port}/"),
        namespace,
        attachments: shared.path().to_owned(),
        cert: spec.cert.clone(),
    };
    let c = Node::start_with(&mut c_spec, &args(2).each_ref().map(String::as_str));
    let pin = a.fingerprint.clone();
    assert_eq!(c.fingerprint, pin);

    let front = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let lb = HaProxy::start(
        &haproxy,
        front,
        &[
            ("a", a.addr, metrics[0]),
            ("b", b.addr, metrics[1]),
            ("c", c.addr, metrics[2]),
        ],
    );
    for name in ["a", "b", "c"] {
        lb.until(name, "UP").await;
    }

    // C loses its bus: not ready, and HAProxy's check takes it out.
    c_redis.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while readyz(metrics[2]) != 503 {
        assert!(tokio::time::Instant::now() < deadline, "C stayed ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(readyz(metrics[0]), 200);
    lb.until("c", "DOWN").await;
    // Every new connection goes to A or B.
    let held = hold(front, 6, || {
        tcp_connections_to(a.addr) + tcp_connections_to(b.addr) >= 6
    })
    .await;
    assert_eq!(tcp_connections_to(c.addr), 0, "a connection reached C");
    drop(held);
    // A client registers and talks through the balancer meanwhile.
    let via = ServerConfig::new(front, &pin)
        .unwrap()
        .with_transport(Transport::WebSocket);
    let wendy = user(&via, "wendy").await;
    let mut walt = user(&via, "walt").await;
    wendy
        .account
        .send_text(&Conversation::Direct("walt".to_owned()), "through haproxy")
        .unwrap();
    let mut events = walt.events.take().unwrap();
    let text = wait_for(&mut events, Duration::from_secs(30), |e| match e {
        Event::Message(m) => Some(m.text.clone()),
        _ => None,
    })
    .await;
    assert_eq!(text, "through haproxy");
    assert_eq!(tcp_connections_to(c.addr), 0, "a client reached C");

    // C's Redis comes back: C relinks, is ready, and HAProxy puts it back;
    // least connections sends it the next ones.
    let _c_redis = redis_server(c_redis_port);
    lb.until("c", "UP").await;
    assert_eq!(readyz(metrics[2]), 200);
    let held = hold(front, 3, || tcp_connections_to(c.addr) >= 1).await;
    drop(held);
    wendy.account.disconnect().await;
    walt.account.disconnect().await;
    drop((a, b, c, lb, schema));
}

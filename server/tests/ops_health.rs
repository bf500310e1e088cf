//! What an operator sees when something around a node fails (issue 24):
//! a node whose Redis is unreachable, or refuses its password, answers
//! `/healthz` but not `/readyz` and reports `microbot_bus_linked 0`; the
//! metrics carry build and process series; a webhook gateway that accepts
//! and never answers holds one notice, not the others; a notice given up is
//! counted and its WARN names the cause.
//! The Redis tests need the `redis-server` binary (scripts/services.sh).

mod common;
#[path = "support/redis.rs"]
mod redis;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use redis::free_port;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Everything the server logs in this test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        captured
    })
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

fn redis_with_password(port: u16, password: &str) -> redis::RedisGuard {
    redis::redis_server_with(port, &["--requirepass", password])
}

/// Polls `/readyz` until it answers `want` (a node may link a moment
/// after it starts).
async fn readyz_becomes(addr: std::net::SocketAddr, want: u16) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let answer = http_get(addr, "/readyz").await;
        if answer.0 == want || tokio::time::Instant::now() >= deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_node_without_its_redis_is_alive_but_not_ready() {
    logs();
    let closed = free_port();
    let server = TestServer::start_with(|c| {
        c.redis = Some(format!("redis://127.0.0.1:{closed}/").parse().unwrap());
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = server.metrics_addr.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(http_get(metrics, "/healthz").await.0, 200);
    let (status, body) = http_get(metrics, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Redis bus is not linked"), "{body}");
    let (_, exposition) = http_get(metrics, "/metrics").await;
    assert_eq!(
        metric(&exposition, "microbot_bus_linked").as_deref(),
        Some("0")
    );
    let log = logged();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("Redis unavailable")
            && l.contains("refused")),
        "the outage is not logged at WARN:\n{log}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_node_whose_redis_refuses_the_password_is_not_ready() {
    logs();
    let port = free_port();
    let _redis = redis_with_password(port, "right-password");
    let wrong = TestServer::start_with(|c| {
        c.redis = Some(
            format!("redis://:wrong-password@127.0.0.1:{port}/")
                .parse()
                .unwrap(),
        );
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let right = TestServer::start_with(|c| {
        c.redis = Some(
            format!("redis://:right-password@127.0.0.1:{port}/")
                .parse()
                .unwrap(),
        );
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (status, body) = readyz_becomes(right.metrics_addr.unwrap(), 200).await;
    assert_eq!(status, 200, "{body}");
    let (_, exposition) = http_get(right.metrics_addr.unwrap(), "/metrics").await;
    assert_eq!(
        metric(&exposition, "microbot_bus_linked").as_deref(),
        Some("1")
    );
    // The refusal is logged at WARN in Redis's words; the node stays not ready.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !logged().lines().any(|l| {
        l.contains("WARN") && l.contains("Redis unavailable") && l.contains("AuthenticationFailed")
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no WARN for the refused password:\n{}",
            logged()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = http_get(wrong.metrics_addr.unwrap(), "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        !logged().contains("wrong-password"),
        "a password was logged"
    );
    wrong.stop().await;
    right.stop().await;
}

#[tokio::test]
async fn metrics_carry_build_and_process_series() {
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = server.metrics_addr.unwrap();
    // Without Redis the in-process bus is always linked.
    assert_eq!(http_get(metrics, "/readyz").await, (200, "ready\n".into()));
    let (_, body) = http_get(metrics, "/metrics").await;
    let build = format!(
        "microbot_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric(&body, &build).as_deref(), Some("1"), "{body}");
    assert_eq!(metric(&body, "microbot_bus_linked").as_deref(), Some("1"));
    assert_eq!(
        metric(&body, "microbot_webhooks_given_up_total").as_deref(),
        Some("0")
    );
    if cfg!(target_os = "linux") {
        for name in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_cpu_seconds_total",
        ] {
            let value: f64 = metric(&body, name)
                .unwrap_or_else(|| panic!("{name} missing:\n{body}"))
                .parse()
                .unwrap();
            assert!(value >= 0.0);
        }
        assert!(metric(&body, "process_resident_memory_bytes").unwrap() != "0");
    }
    server.stop().await;
}

/// Reads one request's head and body from a gateway connection.
async fn read_request(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "request ended early");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        match text.split_once("\r\n\r\n") {
            Some((_, body)) if body.ends_with('}') => return body.to_owned(),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_gateway_holding_one_notice_does_not_hold_the_others() {
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", gateway.local_addr().unwrap());
    let server = TestServer::start_with(|c| {
        c.webhook_url = Some(url);
        c.webhook_allow_private = true;
        // Far longer than the test waits: with one serial worker, the
        // second notice would wait behind the first for this long.
        c.webhook_timeout_ms = 120_000;
        c.webhook_retries = 0;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let mut alice = new_device(&server, "alice").await;
    let bob = new_device(&server, "bob").await;
    let carol = new_device(&server, "carol").await;
    drop(bob.client);
    drop(carol.client);
    tokio::time::sleep(Duration::from_millis(200)).await;

    send_to(
        &mut alice.client,
        &[(bob.device_id, Bytes::from_static(b"1"))],
    )
    .await;
    // The gateway takes Bob's notice and never answers it.
    let (mut held, _) = tokio::time::timeout(TIMEOUT, gateway.accept())
        .await
        .unwrap()
        .unwrap();
    let body = read_request(&mut held).await;
    assert!(
        body.contains(&format!("\"device_id\":{}", bob.device_id)),
        "{body}"
    );

    send_to(
        &mut alice.client,
        &[(carol.device_id, Bytes::from_static(b"2"))],
    )
    .await;
    let (mut next, _) = tokio::time::timeout(TIMEOUT, gateway.accept())
        .await
        .expect("Carol's notice waited behind the held one")
        .unwrap();
    let body = read_request(&mut next).await;
    assert!(
        body.contains(&format!("\"device_id\":{}", carol.device_id)),
        "{body}"
    );
    next.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    drop(next);
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn a_notice_given_up_is_counted_and_its_cause_logged() {
    logs();
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", gateway.local_addr().unwrap());
    let server = TestServer::start_with(|c| {
        c.webhook_url = Some(url);
        c.webhook_allow_private = true;
        c.webhook_retries = 1;
        c.webhook_backoff_base_ms = 20;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let answering = tokio::spawn(async move {
        for _ in 0..2 {
            let (mut c, _) = gateway.accept().await.unwrap();
            read_request(&mut c).await;
            c.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
        }
        gateway
    });
    let mut alice = new_device(&server, "alice").await;
    let bob = new_device(&server, "bob").await;
    drop(bob.client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_to(
        &mut alice.client,
        &[(bob.device_id, Bytes::from_static(b"x"))],
    )
    .await;
    let _gateway = tokio::time::timeout(TIMEOUT, answering)
        .await
        .unwrap()
        .unwrap();
    wait_for_metric(
        server.metrics_addr.unwrap(),
        "microbot_webhooks_given_up_total",
        "1",
    )
    .await;
    let log = logged();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("webhook notice given up")
            && l.contains("HTTP status 503")),
        "the give-up WARN does not name the cause:\n{log}"
    );
    server.stop().await;
}

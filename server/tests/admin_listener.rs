//! The admin listener on axum (SPEC.md §18.7): the same `/metrics`,
//! `/healthz`, `/readyz` answers as before, 404/405 for the rest, the
//! dashboard's files under `/admin/` with a strict CSP and nothing outside
//! their directory, the JSON API refused without a session, and HTTPS with
//! the server's certificate when the listener is not on loopback.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One request on `stream`, read to end of stream: (status, head, body).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
) -> (u16, String, String) {
    stream
        .write_all(
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

async fn plain(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    exchange(TcpStream::connect(addr).await.unwrap(), method, path).await
}

fn dashboard_dir() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let dist = root.path().join("dist");
    std::fs::create_dir(&dist).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>dash</title>",
    )
    .unwrap();
    std::fs::write(dist.join("app.js"), "console.log(1)").unwrap();
    std::fs::write(root.path().join("secret.txt"), "outside").unwrap();
    root
}

#[tokio::test]
async fn health_metrics_and_unknown_paths_answer_as_before() {
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let addr = server.metrics_addr.unwrap();
    let (status, head, body) = plain(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.contains("microbot_connections_total 0"), "{body}");
    assert_eq!(plain(addr, "GET", "/healthz").await.2, "ok\n");
    assert_eq!(plain(addr, "GET", "/readyz").await.2, "ready\n");
    assert_eq!(plain(addr, "GET", "/nope").await.0, 404);
    assert_eq!(plain(addr, "POST", "/metrics").await.0, 405);
    assert_eq!(plain(addr, "DELETE", "/nope").await.0, 405);
    // No dashboard configured: /admin/ is not found, the API still refuses.
    assert_eq!(plain(addr, "GET", "/admin/").await.0, 404);
    let (status, _, body) = plain(addr, "GET", "/admin/api/overview").await;
    assert_eq!(status, 401, "{body}");
    // A request head that never ends is cut off, not buffered without bound.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let junk = vec![b'a'; 200 * 1024];
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nX: ").await;
    let _ = stream.write_all(&junk).await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "an endless head is not cut off");
    assert!(!String::from_utf8_lossy(&rest).contains(" 200 "));
    server.stop().await;
}

#[tokio::test]
async fn dashboard_files_carry_a_strict_csp_and_stay_in_their_directory() {
    let root = dashboard_dir();
    let dist = root.path().join("dist");
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.admin_dashboard_dir = Some(dist);
    })
    .await;
    let addr = server.metrics_addr.unwrap();
    let (status, head, body) = plain(addr, "GET", "/admin/").await;
    assert_eq!(status, 200, "{head}");
    assert!(body.contains("<title>dash</title>"));
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self';"),
        "{head}"
    );
    assert!(head.contains("frame-ancestors 'none'"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let (status, head, _) = plain(addr, "GET", "/admin/app.js").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    for escape in [
        "/admin/../secret.txt",
        "/admin/%2e%2e/secret.txt",
        "/admin/..%2fsecret.txt",
    ] {
        let (status, _, body) = plain(addr, "GET", escape).await;
        assert_ne!(status, 200, "{escape}");
        assert!(!body.contains("outside"), "{escape}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_listener_off_loopback_speaks_https_with_the_server_certificate() {
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("0.0.0.0:0".parse().unwrap());
    })
    .await;
    let port = server.metrics_addr.unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Plain HTTP gets no answer.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut text)).await;
    assert!(!String::from_utf8_lossy(&text).contains("ok\n"));
    // TLS pinned to the server's certificate does.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let pinned = microbot_client::ServerConfig::new(addr, &server.fingerprint).unwrap();
    let config = microbot_client::websocket_tls_config(&pinned).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (status, _, body) = exchange(tls, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    server.stop().await;
}

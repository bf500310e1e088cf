//! The web app over HTTPS on the TCP listener (SPEC.md §12.16), with a raw
//! HTTP/1.1 client over the pinned TLS: content types, cache headers, the
//! Content-Security-Policy, no way out of the directory, only GET/HEAD, a
//! missing directory answered in words, and the WebSocket beside it.
use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use microbot_protocol::transport::{ClientFrame, Hello, ServerFrame, client_frame, server_frame};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::Message;

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls(addr: SocketAddr, fingerprint: &str) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let server = microbot_client::ServerConfig::new(addr, fingerprint).unwrap();
    let config = microbot_client::websocket_tls_config(&server).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// One HTTP answer: status, lower-case headers, body.
/// Sends `method path` over TLS and reads the whole answer.
async fn request(server: &TestServer, method: &str, path: &str) -> HttpAnswer {
    http_exchange(
        tls(server.addr, &server.fingerprint).await,
        method,
        path,
        &[],
    )
    .await
}

/// A built app: index.html, a hashed script, a manifest; and a secret
/// file next to the directory that must stay out of reach.
fn built_app(root: &Path) -> std::path::PathBuf {
    let dist = root.join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>Microbot</title><script type=module src=/assets/index-AbCd1234.js></script>",
    )
    .unwrap();
    std::fs::write(dist.join("assets/index-AbCd1234.js"), "console.log(1)").unwrap();
    std::fs::write(dist.join("manifest.webmanifest"), "{}").unwrap();
    std::fs::write(root.join("secret.txt"), "do not serve").unwrap();
    dist
}

/// Says Hello over a WebSocket on the same listener.
async fn websocket_hello(server: &TestServer) {
    let stream = tls(server.addr, &server.fingerprint).await;
    let mut request = format!("wss://{}/v1/ws", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "microbot.v1".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let hello = ClientFrame {
        request_id: 3,
        request: Some(client_frame::Request::Hello(Hello {
            versions: vec![1],
            client_agent: "web app test".into(),
        })),
    };
    ws.send(Message::Binary(Bytes::from(hello.encode_to_vec())))
        .await
        .unwrap();
    let reply = loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(body) => break ServerFrame::decode(body).unwrap(),
            _ => continue,
        }
    };
    assert!(
        matches!(reply.kind, Some(server_frame::Kind::Response(ref r)) if r.request_id == 3),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_is_served_at_the_root_with_strict_headers() {
    let files = tempfile::tempdir().unwrap();
    let dist = built_app(files.path());
    let server = TestServer::start_with(|c| c.web_app_dir = dist.clone()).await;

    let index = request(&server, "GET", "/").await;
    assert_eq!(index.status, 200, "{index:?}");
    assert!(
        index
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    let csp = index.header("content-security-policy").unwrap();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(String::from_utf8_lossy(&index.body).contains("<title>Microbot</title>"));

    let script = request(&server, "GET", "/assets/index-AbCd1234.js").await;
    assert_eq!(script.status, 200);
    assert!(
        script
            .header("content-type")
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(
        script.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(script.body, b"console.log(1)");

    let manifest = request(&server, "GET", "/manifest.webmanifest").await;
    assert_eq!(manifest.status, 200);
    assert_eq!(manifest.header("cache-control"), Some("no-cache"));

    let head = request(&server, "HEAD", "/").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // Nothing outside the directory, however the path is spelled.
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
    ] {
        let answer = request(&server, "GET", path).await;
        assert_ne!(answer.status, 200, "{path}: {answer:?}");
        assert!(
            !String::from_utf8_lossy(&answer.body).contains("do not serve"),
            "{path}"
        );
    }
    let missing = request(&server, "GET", "/nope.js").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-content-type-options"), Some("nosniff"));

    let post = request(&server, "POST", "/").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // The WebSocket endpoint without an upgrade is no file.
    let plain_get = request(&server, "GET", "/v1/ws").await;
    assert_eq!(plain_get.status, 400);

    websocket_hello(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_app_directory_answers_in_words_and_the_websocket_still_works() {
    let files = tempfile::tempdir().unwrap();
    let absent = files.path().join("not-built");
    let server = TestServer::start_with(|c| c.web_app_dir = absent.clone()).await;
    let root = request(&server, "GET", "/").await;
    assert_eq!(root.status, 404);
    assert!(
        root.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        String::from_utf8_lossy(&root.body).contains("The web app is not built"),
        "{root:?}"
    );
    websocket_hello(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_connection_serving_files_holds_a_connection_slot() {
    let files = tempfile::tempdir().unwrap();
    let dist = built_app(files.path());
    let server = TestServer::start_with(|c| {
        c.web_app_dir = dist.clone();
        c.max_connections_per_ip = 1;
    })
    .await;
    // A keep-alive connection that fetched a file counts as open...
    let mut keep = tls(server.addr, &server.fingerprint).await;
    keep.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = keep.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // ...so with a cap of one, a second connection gets no TLS.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let server_config =
        microbot_client::ServerConfig::new(server.addr, &server.fingerprint).unwrap();
    let config = microbot_client::websocket_tls_config(&server_config).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    assert!(refused.is_err());
    // Once it is closed, the slot is free again.
    drop(keep);
    let mut freed = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let config = microbot_client::websocket_tls_config(&server_config).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        if let Ok(stream) = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
        {
            drop(stream);
            freed = true;
            break;
        }
    }
    assert!(freed, "the slot was given back");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    websocket_hello(&server).await;
    server.stop().await;
}

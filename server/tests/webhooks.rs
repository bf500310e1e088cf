//! Webhooks (SPEC.md §18.5): a content-free POST for offline devices,
//! retried with back-off, never delaying delivery. The gateway is a plain
//! TCP listener in the test.

use crate::common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::response;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Reads one HTTP request; returns (request line, body).
async fn read_request(stream: &mut TcpStream) -> (String, String) {
    read_request_from(stream).await
}

/// Reads one HTTP request from any stream; returns (request line, body).
async fn read_request_from<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> (String, String) {
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "request ended early");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            if body.len() >= len {
                return (
                    head.lines().next().unwrap().to_owned(),
                    body[..len].to_owned(),
                );
            }
        }
    }
}

#[tokio::test]
async fn offline_device_gets_a_content_free_post_retried_after_failure() {
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push/v1", gateway.local_addr().unwrap());
    let server = TestServer::start_with(|c| {
        c.webhook_url = Some(url);
        c.webhook_allow_private = true;
        c.webhook_backoff_base_ms = 50;
    })
    .await;
    let mut alice = new_device(&server, "alice").await;
    let mut bob = new_device(&server, "bob").await;

    // Online recipient: pushed directly, no webhook.
    send_to(
        &mut alice.client,
        &[(bob.device_id, Bytes::from_static(b"online"))],
    )
    .await;
    bob.client.next_push().await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), gateway.accept())
            .await
            .is_err(),
        "no webhook for a connected device"
    );
    let bob_id = bob.device_id;
    drop(bob.client);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let r = send_to(
        &mut alice.client,
        &[(bob_id, Bytes::from_static(b"SECRET-CIPHERTEXT"))],
    )
    .await;
    assert!(matches!(r, response::Result::Send(_)));
    // First attempt: the gateway fails.
    let (mut first, _) = tokio::time::timeout(TIMEOUT, gateway.accept())
        .await
        .unwrap()
        .unwrap();
    let (line, body) = read_request(&mut first).await;
    assert_eq!(line, "POST /push/v1 HTTP/1.1");
    first
        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    drop(first);
    // The retry: same content, accepted.
    let (mut second, _) = tokio::time::timeout(TIMEOUT, gateway.accept())
        .await
        .unwrap()
        .unwrap();
    let (_, retried) = read_request(&mut second).await;
    second
        .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(body, retried);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let object = json.as_object().unwrap();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec!["device_id", "queued"],
        "nothing but the device and the count"
    );
    assert_eq!(object["device_id"], serde_json::json!(bob_id));
    assert_eq!(object["queued"], serde_json::json!(2));
    assert!(!body.contains("SECRET") && !body.contains("alice"));
    // Delivered and acknowledged: no further attempt.
    assert!(
        tokio::time::timeout(Duration::from_millis(400), gateway.accept())
            .await
            .is_err()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_gateway_that_never_answers_does_not_delay_delivery() {
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", gateway.local_addr().unwrap());
    // Accept and hold connections without ever answering.
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = gateway.accept().await {
            conns.push(c);
        }
    });
    let server = TestServer::start_with(|c| {
        c.webhook_url = Some(url);
        c.webhook_allow_private = true;
        c.webhook_timeout_ms = 30_000;
    })
    .await;
    let mut alice = new_device(&server, "alice").await;
    let bob = new_device(&server, "bob").await;
    drop(bob.client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for i in 0..40 {
        let r = send_to(
            &mut alice.client,
            &[(bob.device_id, Bytes::from(format!("m{i}")))],
        )
        .await;
        assert!(matches!(r, response::Result::Send(_)), "{r:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "sends were not held up by the webhook"
    );
    let mut bob_client = reconnect(&server, bob.device_id, &bob.key).await;
    assert_eq!(fetch(&mut bob_client).await.envelopes.len(), 40);
    server.stop().await;
    held.abort();
}

/// An HTTPS gateway on 127.0.0.1 with a fresh self-signed certificate for
/// `localhost`: (listener, acceptor, the certificate's PEM).
async fn tls_gateway() -> (TcpListener, tokio_rustls::TlsAcceptor, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = certified.cert.pem();
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    (
        listener,
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        pem,
    )
}

/// Alice sends to Bob while Bob is offline; returns Bob's device id.
async fn send_to_offline(server: &TestServer) -> u64 {
    let mut alice = new_device(server, "alice").await;
    let bob = new_device(server, "bob").await;
    let bob_id = bob.device_id;
    drop(bob.client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = send_to(&mut alice.client, &[(bob_id, Bytes::from_static(b"x"))]).await;
    assert!(matches!(r, response::Result::Send(_)), "{r:?}");
    bob_id
}

#[tokio::test]
async fn https_webhooks_verify_the_gateway_and_sign_the_body() {
    let (gateway, acceptor, pem) = tls_gateway().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("gateway-ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let url = format!(
        "https://localhost:{}/push?token=t0k3n",
        gateway.local_addr().unwrap().port()
    );
    let server = TestServer::start_with(|c| {
        c.webhook_url = Some(url);
        c.webhook_allow_private = true;
        c.webhook_ca_pem = Some(ca);
        c.webhook_secret = Some(microbot_server::config::Secret::new("s3cret"));
    })
    .await;
    let bob_id = send_to_offline(&server).await;
    let (tcp, _) = tokio::time::timeout(TIMEOUT, gateway.accept())
        .await
        .unwrap()
        .unwrap();
    let mut tls = acceptor.accept(tcp).await.unwrap();
    // Read the head too, for the signature header.
    let mut data = Vec::new();
    let mut buf = [0u8; 2048];
    let (head, body) = loop {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "request ended early");
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n")
            && body.ends_with('}')
        {
            break (head.to_owned(), body.to_owned());
        }
    };
    tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    assert!(
        head.starts_with("POST /push?token=t0k3n HTTP/1.1"),
        "{head}"
    );
    assert_eq!(body, format!("{{\"device_id\":{bob_id},\"queued\":1}}"));
    let signature = head
        .lines()
        .find_map(|l| {
            let lower = l.to_ascii_lowercase();
            lower
                .starts_with("x-microbot-signature:")
                .then(|| l.split_once(':').unwrap().1.trim().to_owned())
        })
        .expect("a signature header");
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap();
    let t: u64 = t.parse().unwrap();
    assert!(now_secs().abs_diff(t) < 60, "{t}");
    use hmac::{KeyInit as _, Mac as _};
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(b"s3cret").unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    assert_eq!(v1, hex::encode(mac.finalize().into_bytes()));
    server.stop().await;
}

#[tokio::test]
async fn an_untrusted_gateway_certificate_is_refused_and_the_notice_dead_lettered() {
    let (gateway, acceptor, _pem) = tls_gateway().await;
    let url = format!(
        "https://localhost:{}/",
        gateway.local_addr().unwrap().port()
    );
    // Every handshake the server attempts fails on our side too: count them.
    let handshakes = tokio::spawn(async move {
        let mut refused = 0;
        while let Ok((tcp, _)) = gateway.accept().await {
            if acceptor.accept(tcp).await.is_err() {
                refused += 1;
            }
            if refused == 2 {
                return refused;
            }
        }
        refused
    });
    let server = TestServer::start_with(|c| {
        c.webhook_url = Some(url);
        c.webhook_allow_private = true;
        c.webhook_retries = 1;
        c.webhook_backoff_base_ms = 20;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    send_to_offline(&server).await;
    assert_eq!(
        tokio::time::timeout(TIMEOUT, handshakes)
            .await
            .unwrap()
            .unwrap(),
        2
    );
    wait_for_metric(
        server.metrics_addr.unwrap(),
        "microbot_webhooks_given_up_total",
        "1",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn webhooks_never_reach_internal_addresses_unless_allowed() {
    // A literal internal address is a configuration error at start.
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.webhook_url = Some("http://169.254.169.254/latest/meta-data".into());
    let refused = microbot_server::Server::bind(config).await;
    let Err(error) = refused else {
        panic!("a literal internal webhook address was accepted")
    };
    let error = error.to_string();
    assert!(
        error.contains("internal address 169.254.169.254"),
        "{error}"
    );

    // A name that resolves only inward: the notice is never sent.
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://localhost:{}/", gateway.local_addr().unwrap().port());
    let server = TestServer::start_with(|c| {
        c.webhook_url = Some(url);
        c.webhook_retries = 1;
        c.webhook_backoff_base_ms = 20;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    send_to_offline(&server).await;
    wait_for_metric(
        server.metrics_addr.unwrap(),
        "microbot_webhooks_given_up_total",
        "1",
    )
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), gateway.accept())
            .await
            .is_err(),
        "no connection to an internal address"
    );
    server.stop().await;
}

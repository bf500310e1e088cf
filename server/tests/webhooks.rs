//! Webhooks (SPEC.md §18.5): a content-free POST for offline devices,
//! retried with back-off, never delaying delivery. The gateway is a plain
//! TCP listener in the test.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::response;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Reads one HTTP request; returns (request line, body).
async fn read_request(stream: &mut TcpStream) -> (String, String) {
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

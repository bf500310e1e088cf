//! Clients that stop reading (issue 7, SPEC.md §12.7 "Push flow control"):
//! the server binary runs as a child process so its own memory can be
//! read from `/proc/<pid>/status`.
//!
//! - A logged-in device that never reads its stream while another account
//!   floods it is cut off with `ERROR_CODE_UNAVAILABLE` once its outgoing
//!   backlog passes the cap, the server's peak memory grows by far less than
//!   the flood, other clients keep being served, and every envelope is still
//!   queued when the device reconnects.
//! - A client that pipelines requests and never reads the responses makes
//!   the server stop reading its requests at the cap; the server's memory
//!   stays bounded and others are served.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use microbot_protocol::transport::{self, ClientFrame, ErrorCode, client_frame::Request, push};

/// The server binary as a child process on a temp data dir, with cheap
/// argon2, a wide TOTP window, no send rate limit and a metrics endpoint.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    fingerprint: String,
    _dir: tempfile::TempDir,
}

fn free_tcp_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl ChildServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let metrics = free_tcp_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_microbot-server"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--metrics-listen"])
            .arg(metrics.to_string())
            .args(["--argon2-memory-kib", "64", "--argon2-iterations", "1"])
            .args(["--totp-skew-steps", "10", "--rate-send-per-account", "0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addr = None;
        let fingerprint = loop {
            let line = lines
                .next()
                .expect("server exited before printing its fingerprint")
                .unwrap();
            if let Some(a) = line.strip_prefix("microbot-server listening on ") {
                addr = Some(a.parse().unwrap());
            }
            if let Some(f) = line.strip_prefix("certificate SHA-256 fingerprint: ") {
                break f.to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            addr: addr.unwrap(),
            metrics,
            fingerprint,
            _dir: dir,
        }
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    }

    async fn metric(&self, series: &str) -> f64 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(self.metrics).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut text))
            .await
            .unwrap()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.parse().unwrap())
    }

    async fn client(&self) -> Client {
        Client::connect(self.addr, &self.fingerprint).await
    }

    async fn device(&self, username: &str) -> Device {
        let mut client = self.client().await;
        let mut account = register_active(&mut client, username).await;
        let (device_id, key) = enrol(&mut client, &mut account).await;
        login(&mut client, device_id, &key).await;
        Device {
            client,
            account,
            device_id,
            key,
        }
    }

    async fn reconnect(&self, device_id: u64, key: &ed25519_dalek::SigningKey) -> Client {
        let mut client = self.client().await;
        login(&mut client, device_id, key).await;
        client
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every envelope in the queue, oldest first.
async fn fetch_all(client: &mut Client) -> Vec<transport::Envelope> {
    let mut out: Vec<transport::Envelope> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.envelope_id);
        let page = match client
            .request(Request::FetchEnvelopes(transport::FetchEnvelopesRequest {
                after_envelope_id: after,
                limit: 1000,
            }))
            .await
        {
            transport::response::Result::Envelopes(e) => e,
            other => panic!("{other:?}"),
        };
        out.extend(page.envelopes);
        if !page.more {
            return out;
        }
    }
}

/// Envelope size of the flood: close to the default 256 KiB maximum.
const FLOOD_ENVELOPE: usize = 250 * 1024;
/// Envelopes in the flood: 48 MiB, an order of magnitude over the backlog
/// cap (4 MiB) plus QUIC's stream window (1.25 MB).
const FLOOD_COUNT: usize = 200;
/// Most the server's peak memory may grow during the flood.
const MEMORY_BOUND_KIB: u64 = 24 * 1024;

fn flood_ciphertext(i: usize) -> Bytes {
    let mut ct = vec![u8::try_from(i % 251).unwrap(); FLOOD_ENVELOPE];
    ct[..8].copy_from_slice(&u64::try_from(i).unwrap().to_be_bytes());
    Bytes::from(ct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_reads_is_cut_off_at_the_backlog_cap_and_loses_nothing() {
    let server = ChildServer::start();
    let mut alice = server.device("alice").await;
    let bob = server.device("bob").await;
    let carol = server.device("carol").await;
    // From here on bob's connection never reads: its pushes pile up in the
    // server unless the server bounds them.
    let bob_stuck = bob.client;
    let baseline_kib = server.memory_kib("VmHWM");

    // Carol reads every push, as a well-behaved client does.
    let mut carol_client = carol.client;
    let carol_reader = tokio::spawn(async move {
        let mut received = 0;
        while received < FLOOD_COUNT {
            let p = carol_client.next_push().await;
            if let Some(push::Event::Envelope(e)) = p.event {
                assert_eq!(e.ciphertext, flood_ciphertext(received));
                received += 1;
            }
        }
        carol_client
    });

    // Alice floods bob and carol; every send is acknowledged.
    for i in 0..FLOOD_COUNT {
        let ct = flood_ciphertext(i);
        let r = send_to(
            &mut alice.client,
            &[(bob.device_id, ct.clone()), (carol.device_id, ct)],
        )
        .await;
        assert!(
            matches!(r, transport::response::Result::Send(_)),
            "send {i}: {r:?}"
        );
    }
    let mut carol_client = tokio::time::timeout(Duration::from_secs(30), carol_reader)
        .await
        .expect("carol kept receiving her pushes")
        .unwrap();
    // Others are still served.
    assert_eq!(fetch_all(&mut carol_client).await.len(), FLOOD_COUNT);

    // Bob's connection was closed with UNAVAILABLE without him reading a byte.
    let reason = tokio::time::timeout(TIMEOUT, bob_stuck.connection.closed())
        .await
        .expect("the server closes a connection whose backlog is over the cap");
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => assert_eq!(
            close.error_code.into_inner(),
            u64::try_from(ErrorCode::Unavailable as i32).unwrap()
        ),
        other => panic!("closed by {other:?}"),
    }
    assert_eq!(
        server
            .metric("microbot_rate_limited_total{limit=\"push_backlog\"}")
            .await,
        1.0
    );

    // The server's peak memory grew by far less than the 48 MiB it was sent.
    let growth_kib = server.memory_kib("VmHWM").saturating_sub(baseline_kib);
    eprintln!("server peak memory growth during the flood: {growth_kib} KiB");
    assert!(
        growth_kib < MEMORY_BOUND_KIB,
        "peak memory grew by {growth_kib} KiB during a {} KiB flood",
        FLOOD_COUNT * FLOOD_ENVELOPE / 1024
    );

    // Nothing was lost: bob reconnects and fetches the whole flood, in order.
    let mut bob_client = server.reconnect(bob.device_id, &bob.key).await;
    let queued = fetch_all(&mut bob_client).await;
    assert_eq!(queued.len(), FLOOD_COUNT);
    for (i, e) in queued.iter().enumerate() {
        assert_eq!(e.ciphertext, flood_ciphertext(i), "envelope {i}");
        assert_eq!(e.sender_username, "alice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_whose_responses_are_never_read_are_held_back_at_the_cap() {
    let server = ChildServer::start();
    let mut alice = server.device("alice").await;
    let bob = server.device("bob").await;
    let mut bob_client = bob.client;
    // Fill bob's queue so that each fetch answers with a ~1 MiB frame.
    let ct = Bytes::from(vec![7u8; FLOOD_ENVELOPE]);
    for _ in 0..8 {
        let r = send_to(&mut alice.client, &[(bob.device_id, ct.clone())]).await;
        assert!(matches!(r, transport::response::Result::Send(_)), "{r:?}");
    }
    let full_page = fetch_all(&mut bob_client).await;
    assert_eq!(full_page.len(), 8);
    let baseline_kib = server.memory_kib("VmHWM");

    // 200 fetches (~200 MiB of responses) written without reading a byte.
    let mut greedy = server.reconnect(bob.device_id, &bob.key).await;
    let mut frames = bytes::BytesMut::new();
    for id in 0..200u64 {
        microbot_protocol::codec::encode_frame(
            &ClientFrame {
                request_id: 1000 + id,
                request: Some(Request::FetchEnvelopes(
                    transport::FetchEnvelopesRequest::default(),
                )),
            },
            &mut frames,
        )
        .unwrap();
    }
    // The request bytes are small: they fit the stream window whether or
    // not the server reads them.
    greedy.send_raw(&frames).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Others are served meanwhile.
    let r = send_to(&mut alice.client, &[(bob.device_id, ct.clone())]).await;
    assert!(matches!(r, transport::response::Result::Send(_)), "{r:?}");
    assert_eq!(fetch_all(&mut bob_client).await.len(), 9);

    let growth_kib = server.memory_kib("VmHWM").saturating_sub(baseline_kib);
    eprintln!("server peak memory growth with unread responses: {growth_kib} KiB");
    assert!(
        growth_kib < MEMORY_BOUND_KIB,
        "peak memory grew by {growth_kib} KiB holding unread responses"
    );
    assert_eq!(server.metric("microbot_connections_open").await, 3.0);

    // When the client goes away, so does everything held for it.
    greedy.connection.close(0u32.into(), b"bye");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while server.metric("microbot_connections_open").await != 2.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

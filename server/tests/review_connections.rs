//! Issue 14 (independent review), connection-level hardening (SPEC.md
//! §12.3, §12.4, §12.12): connection slots are taken only after the
//! handshake, unvalidated addresses get a QUIC Retry, handshakes, logins,
//! frames and attachment stream headers have deadlines.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use microbot_protocol::transport::{
    self, ClientFrame, ErrorCode, client_frame::Request, response, server_frame,
};
use microbot_server::Server;

/// The first datagrams of `count` real QUIC connection attempts (Initials
/// with a ClientHello, each its own connection id), caught on a socket
/// that never answers.
async fn captured_initials(fingerprint: &str, count: usize) -> Vec<Vec<u8>> {
    let trap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client_config(fingerprint));
    let mut attempts = Vec::new();
    let mut initials = Vec::new();
    for _ in 0..count {
        attempts.push(
            endpoint
                .connect(trap.local_addr().unwrap(), "localhost")
                .unwrap(),
        );
        let mut buf = vec![0u8; 2048];
        let (n, _) = tokio::time::timeout(TIMEOUT, trap.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        buf.truncate(n);
        assert!(n >= 1200 && buf[0] & 0xf0 == 0xc0, "a long-header Initial");
        initials.push(buf);
    }
    initials
}

/// Sends each Initial to `server` from a fresh port of 127.0.0.1 and never
/// answers: lone Initials, as a spoofer would send them.
async fn lone_initials(server: SocketAddr, initials: &[Vec<u8>]) -> Vec<tokio::net::UdpSocket> {
    let mut sockets = Vec::new();
    for initial in initials {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(initial, server).await.unwrap();
        sockets.push(socket);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    sockets
}

#[tokio::test(flavor = "multi_thread")]
async fn lone_initials_do_not_lock_out_a_client_of_the_same_address() {
    let server = TestServer::start_with(|c| c.max_connections_per_ip = 4).await;
    let initials = captured_initials(&server.fingerprint, 40).await;
    let _spoofer = lone_initials(server.addr, &initials).await;
    // Retry by default: no handshake state for an unvalidated address.
    assert_eq!(server.limits.handshakes_in_progress(), 0);
    let mut client = Client::connect(server.addr, &server.fingerprint).await;
    register(&mut client, "alice").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_retry_unfinished_handshakes_hold_no_slot_and_expire() {
    let server = TestServer::start_with(|c| {
        c.max_connections_per_ip = 4;
        c.retry_above_handshakes = 1000;
        c.handshake_timeout_secs = 1;
    })
    .await;
    let initials = captured_initials(&server.fingerprint, 40).await;
    let _spoofer = lone_initials(server.addr, &initials).await;
    assert!(server.limits.handshakes_in_progress() > 0);
    let mut client = Client::connect(server.addr, &server.fingerprint).await;
    register(&mut client, "bob").await;
    let mut left = u32::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = server.limits.handshakes_in_progress();
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "abandoned handshakes end after their deadline");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_under_load_only_when_configured() {
    // With a threshold, a lone Initial below it gets a handshake (no
    // Retry), and above it gets a Retry.
    let server = TestServer::start_with(|c| {
        c.retry_above_handshakes = 5;
        c.handshake_timeout_secs = 2;
    })
    .await;
    let initials = captured_initials(&server.fingerprint, 20).await;
    let _spoofer = lone_initials(server.addr, &initials).await;
    assert_eq!(server.limits.handshakes_in_progress(), 5);
    let client = Client::connect(server.addr, &server.fingerprint).await;
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_does_not_log_in_is_closed() {
    let server = TestServer::start_with(|c| c.login_timeout_secs = 2).await;
    let mut idle = server.client().await;
    // A successful registration restarts the clock...
    tokio::time::sleep(Duration::from_millis(1200)).await;
    register(&mut idle, "carol").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let reply = idle
        .request(Request::Challenge(transport::ChallengeRequest {}))
        .await;
    assert!(matches!(reply, response::Result::Challenge(_)), "{reply:?}");
    // ...a challenge does not: the connection is closed.
    let closed = idle.closed().await;
    assert_eq!(
        closed.closing.map(|e| e.code),
        Some(ErrorCode::NotAuthenticated as i32)
    );
    // A logged-in connection stays.
    let mut device = new_device(&server, "dave").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let reply = device
        .client
        .request(Request::ListDevices(transport::ListDevicesRequest {}))
        .await;
    assert!(
        matches!(reply, response::Result::DeviceList(_)),
        "{reply:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_frame_is_not_held_forever() {
    let server = TestServer::start_with(|c| {
        c.frame_timeout_secs = 1;
        c.login_timeout_secs = 3600;
    })
    .await;
    let mut client = server.client().await;
    // A length prefix announcing 1000 bytes, then 10 of them.
    client.send_raw(&[0xe8, 0x07]).await;
    client.send_raw(&[0u8; 10]).await;
    let closed = client.closed().await;
    assert_eq!(
        closed.closing.map(|e| e.code),
        Some(ErrorCode::ProtocolViolation as i32)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attachment_stream_without_a_header_times_out() {
    let server = TestServer::start_with(|c| c.frame_timeout_secs = 1).await;
    let device = new_device(&server, "erin").await;
    let (mut send, mut recv) = device.client.connection.open_bi().await.unwrap();
    // One byte of a header length that never completes.
    send.write_all(&[0x80]).await.unwrap();
    let bytes = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(64 * 1024))
        .await
        .expect("the server must give up on the stream")
        .unwrap();
    let mut decoder = microbot_protocol::codec::FrameDecoder::new(64 * 1024);
    decoder.push(&bytes).unwrap();
    let result: transport::AttachmentStreamResult = decoder.next_message().unwrap().unwrap();
    assert_eq!(
        result.error.map(|e| e.code),
        Some(ErrorCode::ProtocolViolation as i32)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_agent_over_128_bytes_is_refused() {
    let server = TestServer::start().await;
    let hello = |agent: String| ClientFrame {
        request_id: 1,
        request: Some(Request::Hello(transport::Hello {
            versions: vec![1],
            client_agent: agent,
        })),
    };
    let mut long = Client::connect_raw(server.addr, &server.fingerprint).await;
    long.send_frame(&hello("a".repeat(300))).await;
    let closed = long.closed().await;
    assert_eq!(
        closed.closing.map(|e| e.code),
        Some(ErrorCode::InvalidArgument as i32)
    );
    let mut fits = Client::connect_raw(server.addr, &server.fingerprint).await;
    fits.send_frame(&hello("a".repeat(128))).await;
    let frame = fits.read_frame().await.unwrap();
    assert!(
        matches!(
            frame.kind,
            Some(server_frame::Kind::Response(transport::Response {
                result: Some(response::Result::Hello(_)),
                ..
            }))
        ),
        "{frame:?}"
    );
    server.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn the_data_dir_is_0700_and_the_database_and_key_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("fresh");
    let mut config = test_config(&data);
    config.data_dir = data.clone();
    let server = Server::bind(config).await.unwrap();
    let (handle, rx) = server.handle();
    let task = tokio::spawn(server.run(rx));
    let mode = |name: &str| {
        std::fs::metadata(data.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700, "data dir");
    assert_eq!(mode("microbot.sqlite3"), 0o600);
    assert_eq!(mode("key.pem"), 0o600);
    for name in ["microbot.sqlite3-wal", "microbot.sqlite3-shm"] {
        if data.join(name).exists() {
            assert_eq!(mode(name), 0o600, "{name}");
        }
    }
    handle.shutdown();
    task.await.unwrap();
}

#[test]
fn server_logs_to_a_file_carry_no_colour_codes() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_microbot-server"))
        .env("MICROBOT_DATA_DIR", dir.path().join("data"))
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .args(["--listen", "127.0.0.1:0", "--argon2-memory-kib", "64"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    while let Some(Ok(line)) = lines.next() {
        if line.starts_with("certificate SHA-256 fingerprint") {
            break;
        }
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("INFO"), "{logged}");
    assert!(!logged.contains('\u{1b}'), "{logged:?}");
}

//! The WebSocket transport against the server, with a raw client (SPEC.md
//! §12.13): an oversize message refused from its header, the IP deny rule,
//! a client that never reads disconnected with bounded backlog, the close
//! codes, the transport metrics, and the plaintext scan over envelopes sent
//! by WebSocket.
use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use microbot_protocol::transport::{
    self, ClientFrame, ErrorCode, Hello, LoginRequest, ServerFrame, client_frame::Request,
    response, server_frame,
};
use prost::Message as _;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// TLS to `addr` with the pinned certificate, over a socket with a small
/// receive buffer when `small_buffer` (a client that reads slowly fills it fast).
async fn tls(addr: SocketAddr, fingerprint: &str, small_buffer: bool) -> std::io::Result<Tls> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if small_buffer {
        socket.set_recv_buffer_size(16 * 1024)?;
    }
    let tcp = socket.connect(addr).await?;
    let server = microbot_client::ServerConfig::new(addr, fingerprint).unwrap();
    let config = microbot_client::websocket_tls_config(&server).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

struct WsClient {
    ws: WebSocketStream<Tls>,
    next_id: u64,
    challenge: Bytes,
}

/// How the server ended a WebSocket.
#[derive(Debug)]
struct WsClosed {
    closing: Option<transport::Error>,
    close_code: Option<u16>,
    /// Bytes of frames read before the end.
    bytes_before: usize,
}

impl WsClient {
    async fn open(addr: SocketAddr, fingerprint: &str, small_buffer: bool) -> Self {
        Self::open_path(addr, fingerprint, small_buffer, "/v1/ws").await
    }

    async fn open_path(
        addr: SocketAddr,
        fingerprint: &str,
        small_buffer: bool,
        path: &str,
    ) -> Self {
        let stream = tls(addr, fingerprint, small_buffer).await.unwrap();
        let mut request = format!("wss://{addr}{path}").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "microbot.v1".parse().unwrap());
        let (ws, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .unwrap();
        assert_eq!(
            response.headers().get("sec-websocket-protocol").unwrap(),
            "microbot.v1"
        );
        Self {
            ws,
            next_id: 1,
            challenge: Bytes::new(),
        }
    }

    /// Opens and says Hello.
    async fn connect(addr: SocketAddr, fingerprint: &str, small_buffer: bool) -> Self {
        let mut client = Self::open(addr, fingerprint, small_buffer).await;
        let reply = client
            .request(Request::Hello(Hello {
                versions: vec![1],
                client_agent: "ws test".into(),
            }))
            .await;
        let response::Result::Hello(hello) = reply else {
            panic!("{reply:?}")
        };
        client.challenge = hello.challenge;
        client
    }

    async fn send_frame(&mut self, request: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = ClientFrame {
            request_id: id,
            request: Some(request),
        };
        self.ws
            .send(Message::Binary(Bytes::from(frame.encode_to_vec())))
            .await
            .unwrap();
        id
    }

    async fn read_frame(&mut self) -> Option<ServerFrame> {
        loop {
            match tokio::time::timeout(TIMEOUT, self.ws.next()).await.unwrap() {
                Some(Ok(Message::Binary(body))) => return Some(ServerFrame::decode(body).unwrap()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// One request; pushes before the response are skipped.
    async fn request(&mut self, request: Request) -> response::Result {
        let id = self.send_frame(request).await;
        loop {
            let frame = self.read_frame().await.expect("connection open");
            if let Some(server_frame::Kind::Response(r)) = frame.kind {
                assert_eq!(r.request_id, id);
                return r.result.unwrap();
            }
        }
    }

    async fn login(&mut self, device_id: u64, key: &ed25519_dalek::SigningKey) {
        let signature = login_signature(key, &self.challenge.clone(), device_id);
        let reply = self
            .request(Request::Login(LoginRequest {
                device_id,
                signature,
            }))
            .await;
        assert!(matches!(reply, response::Result::Login(_)), "{reply:?}");
    }

    /// Reads everything up to the end; what the server said last.
    async fn closed(mut self) -> WsClosed {
        let mut closing = None;
        let mut bytes_before = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("the server ends the connection")
            {
                Some(Ok(Message::Binary(body))) => {
                    bytes_before += body.len();
                    if let Ok(ServerFrame {
                        kind: Some(server_frame::Kind::Closing(e)),
                    }) = ServerFrame::decode(body)
                    {
                        closing = Some(e);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return WsClosed {
                        closing,
                        close_code: frame.map(|f| u16::from(f.code)),
                        bytes_before,
                    };
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => {
                    return WsClosed {
                        closing,
                        close_code: None,
                        bytes_before,
                    };
                }
            }
        }
    }
}

fn ws_addr(server: &TestServer) -> SocketAddr {
    // By default the WebSocket listens on TCP at the QUIC port number.
    server.addr
}

async fn metric(server: &TestServer, line_start: &str) -> f64 {
    let addr = server.metrics_addr.unwrap();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut body)
        .await
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_speaks_the_same_frames_and_counts_by_transport() {
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let mut quic = server.client().await;
    let mut account = register_active(&mut quic, "wendy").await;
    let (device_id, key) = enrol(&mut quic, &mut account).await;
    let mut ws = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
    // Before login: NOT_AUTHENTICATED, the socket stays open.
    let reply = ws
        .request(Request::ListDevices(transport::ListDevicesRequest {}))
        .await;
    let response::Result::Error(e) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(code(&e), ErrorCode::NotAuthenticated);
    ws.login(device_id, &key).await;
    let reply = ws
        .request(Request::ListDevices(transport::ListDevicesRequest {}))
        .await;
    assert!(
        matches!(reply, response::Result::DeviceList(_)),
        "{reply:?}"
    );
    assert_eq!(
        metric(
            &server,
            "microbot_transport_connections_open{transport=\"websocket\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &server,
            "microbot_transport_connections_open{transport=\"quic\"}"
        )
        .await,
        1.0
    );
    // A second Hello closes with PROTOCOL_VIOLATION: frame, then 4002.
    ws.send_frame(Request::Hello(Hello {
        versions: vec![1],
        client_agent: String::new(),
    }))
    .await;
    let closed = ws.closed().await;
    assert_eq!(code(&closed.closing.unwrap()), ErrorCode::ProtocolViolation);
    assert_eq!(closed.close_code, Some(4002));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_is_refused_from_its_header_without_buffering() {
    let server = TestServer::start().await;
    let ws = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
    // A masked binary frame announcing 64 MiB, followed by only 1 KiB: a
    // server that buffered the message would wait for the rest.
    let mut raw = ws.ws.into_inner();
    let mut header = vec![0x82u8, 0x80 | 127];
    header.extend_from_slice(&(64u64 << 20).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.write_all(&header).await.unwrap();
    raw.write_all(&[0u8; 1024]).await.unwrap();
    raw.flush().await.unwrap();
    let ws = WebSocketStream::from_raw_socket(raw, Role::Client, None).await;
    let closed = WsClient {
        ws,
        next_id: 1,
        challenge: Bytes::new(),
    }
    .closed()
    .await;
    assert_eq!(code(&closed.closing.unwrap()), ErrorCode::FrameTooLarge);
    assert_eq!(closed.close_code, Some(4004));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ip_deny_rule_refuses_a_websocket_client_before_tls() {
    let denied = TestServer::start_with(|c| {
        c.deny_ips = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let refused = tls(ws_addr(&denied), &denied.fingerprint, false).await;
    assert!(refused.is_err(), "no TLS for a denied address");
    denied.stop().await;
    // The same client is served where it is not denied.
    let open = TestServer::start().await;
    let ws = WsClient::connect(ws_addr(&open), &open.fingerprint, false).await;
    drop(ws);
    open.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_never_reads_is_disconnected_and_its_backlog_dropped() {
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let mut sender = new_device(&server, "sam").await;
    let mut quic = server.client().await;
    let mut account = register_active(&mut quic, "rita").await;
    let (device_id, key) = enrol(&mut quic, &mut account).await;
    drop(quic);
    let mut reader = WsClient::connect(ws_addr(&server), &server.fingerprint, true).await;
    reader.login(device_id, &key).await;
    // From now on the reader reads nothing. 96 pushes of 200 KiB (19 MiB)
    // are far more than the 4 MiB backlog cap plus socket buffers.
    let envelope = random_bytes(200 * 1024);
    let mut sent = 0usize;
    for _ in 0..96 {
        let reply = send_to(&mut sender.client, &[(device_id, envelope.clone())]).await;
        assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
        sent += envelope.len();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while metric(
        &server,
        "microbot_rate_limited_total{limit=\"push_backlog\"}",
    )
    .await
        < 1.0
    {
        assert!(tokio::time::Instant::now() < deadline, "never disconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The client now reads: what reached it is well short of what was
    // sent (the backlog was dropped, not kept). The closing frame and the
    // Close 4051 reach it only if its socket had room for them within 2 s
    // (it had not read); otherwise the TCP connection just ends.
    let closed = reader.closed().await;
    assert!(
        closed.bytes_before < sent / 2,
        "{} of {sent} bytes delivered",
        closed.bytes_before
    );
    if let Some(closing) = &closed.closing {
        assert_eq!(code(closing), ErrorCode::Unavailable);
    }
    assert!(matches!(closed.close_code, None | Some(4051)), "{closed:?}");
    assert_eq!(
        metric(
            &server,
            "microbot_transport_connections_open{transport=\"websocket\"}"
        )
        .await,
        0.0
    );
    // The envelopes stay queued for the next fetch.
    let mut again = reconnect(&server, device_id, &key).await;
    assert!(!fetch(&mut again).await.envelopes.is_empty());
    server.stop().await;
}

const MARKER: &[u8] = b"PLAINTEXT-MARKER-ws-5e1d-do-not-store";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_sent_over_websocket_are_stored_as_ciphertext_only() {
    let server = TestServer::start().await;
    let walt = new_device(&server, "walt").await;
    let mut quic = server.client().await;
    let mut account = register_active(&mut quic, "vera").await;
    let (device_id, key) = enrol(&mut quic, &mut account).await;
    let mut vera = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
    vera.login(device_id, &key).await;
    let key = Key::try_from(random_bytes(32).as_ref()).unwrap();
    let cipher = ChaCha20Poly1305::new(&key);
    let mut ciphertexts = Vec::new();
    for i in 0u8..10 {
        let nonce = Nonce::try_from([i; 12].as_slice()).unwrap();
        let mut plaintext = MARKER.to_vec();
        plaintext.push(i);
        let ct = Bytes::from(cipher.encrypt(&nonce, plaintext.as_slice()).unwrap());
        let reply = vera
            .request(Request::Send(transport::SendRequest {
                envelopes: vec![transport::OutgoingEnvelope {
                    recipient_device_id: walt.device_id,
                    ciphertext: ct.clone(),
                }],
                complete_accounts: Vec::new(),
            }))
            .await;
        assert!(matches!(reply, response::Result::Send(_)), "{reply:?}");
        ciphertexts.push(ct);
    }
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(b) = std::fs::read(format!("{}{suffix}", server.db_path().display())) {
            bytes.extend_from_slice(&b);
        }
    }
    assert!(
        ciphertexts.iter().all(|ct| contains(&bytes, ct)),
        "scan sees stored envelopes"
    );
    assert!(
        !contains(&bytes, MARKER),
        "plaintext marker found in the store"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_holds_no_connection_slot_and_is_dropped_at_its_deadline() {
    let server = TestServer::start_with(|c| {
        c.max_connections_per_ip = 1;
        c.handshake_timeout_secs = 1;
    })
    .await;
    // A TCP connection that never starts TLS.
    let mut stalled = TcpStream::connect(ws_addr(&server)).await.unwrap();
    // It does not count against the cap of one: a real client gets in.
    let mut ws = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
    // The stalled one is closed once its handshake deadline passes.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut stalled, &mut buf),
    )
    .await
    .expect("closed by the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Now the cap is reached (WebSocket and QUIC count together): a new
    // WebSocket gets no TLS, a QUIC client is refused.
    assert!(
        tls(ws_addr(&server), &server.fingerprint, false)
            .await
            .is_err()
    );
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client_config(&server.fingerprint));
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        endpoint.connect(server.addr, "localhost").unwrap(),
    )
    .await
    .unwrap();
    assert!(
        refused.is_err(),
        "QUIC refused while the WebSocket holds the slot"
    );
    // The open WebSocket still works.
    let reply = ws
        .request(Request::ListDevices(transport::ListDevicesRequest {}))
        .await;
    assert!(matches!(reply, response::Result::Error(_)), "{reply:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_not_completed_in_time_closes_the_socket() {
    let server = TestServer::start_with(|c| c.frame_timeout_secs = 1).await;
    let ws = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
    // A 100 KiB binary frame of which only 10 bytes ever arrive.
    let mut raw = ws.ws.into_inner();
    let mut header = vec![0x82u8, 0x80 | 127];
    header.extend_from_slice(&(100u64 * 1024).to_be_bytes());
    header.extend_from_slice(&[9, 9, 9, 9]);
    raw.write_all(&header).await.unwrap();
    raw.write_all(&[0u8; 10]).await.unwrap();
    raw.flush().await.unwrap();
    let ws = WebSocketStream::from_raw_socket(raw, Role::Client, None).await;
    // Well before the first keep-alive ping (20 s): the deadline runs from
    // the bytes' arrival, not from the next event of the connection.
    let closed = tokio::time::timeout(
        Duration::from_secs(10),
        WsClient {
            ws,
            next_id: 1,
            challenge: Bytes::new(),
        }
        .closed(),
    )
    .await
    .expect("closed at the frame deadline");
    let closing = closed.closing.unwrap();
    assert_eq!(code(&closing), ErrorCode::ProtocolViolation);
    assert!(closing.message.contains("in time"), "{closing:?}");
    assert_eq!(closed.close_code, Some(4002));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ws_on_loopback_when_configured_and_wrong_path_or_subprotocol_refused() {
    let server = TestServer::start_with(|c| c.ws_plain = true).await;
    // Plain ws:// speaks the same frames.
    let tcp = TcpStream::connect(ws_addr(&server)).await.unwrap();
    let mut request = format!("ws://{}/v1/ws", ws_addr(&server))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "microbot.v1".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let hello = ClientFrame {
        request_id: 7,
        request: Some(Request::Hello(Hello {
            versions: vec![1],
            client_agent: String::new(),
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
        matches!(reply.kind, Some(server_frame::Kind::Response(ref r)) if r.request_id == 7),
        "{reply:?}"
    );
    // Without the subprotocol, or on another path: no WebSocket.
    for (path, subprotocol) in [("/v1/ws", false), ("/other", true)] {
        let tcp = TcpStream::connect(ws_addr(&server)).await.unwrap();
        let mut request = format!("ws://{}{path}", ws_addr(&server))
            .into_client_request()
            .unwrap();
        if subprotocol {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", "microbot.v1".parse().unwrap());
        }
        assert!(tokio_tungstenite::client_async(request, tcp).await.is_err());
    }
    server.stop().await;
}

#[test]
fn plain_ws_is_refused_off_loopback_unless_a_tls_proxy_is_declared() {
    let mut config = test_config(std::path::Path::new("/tmp/unused"));
    config.ws_plain = true;
    config.ws_listen = Some("0.0.0.0:7447".into());
    assert!(config.validate().is_err());
    config.ws_tls_proxy = true;
    assert!(config.validate().is_ok());
    config.ws_listen = Some("not an address".into());
    assert!(config.validate().is_err());
    config.ws_listen = Some("off".into());
    assert!(config.validate().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_apply_over_websocket_per_source() {
    let server = TestServer::start_with(|c| c.rate_register_per_ip = 1).await;
    let mut ws = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
    let register = |name: &str| {
        Request::Register(transport::RegisterRequest {
            username: name.into(),
            password: "a long enough password".into(),
            bot: false,
        })
    };
    let first = ws.request(register("una")).await;
    assert!(matches!(first, response::Result::Register(_)), "{first:?}");
    // The same source over QUIC shares the bucket.
    let mut quic = server.client().await;
    let second = quic.request(register("dos")).await;
    let response::Result::Error(e) = second else {
        panic!("{second:?}")
    };
    assert_eq!(code(&e), ErrorCode::RateLimited);
    assert!(e.retry_after_ms > 0);
    let third = ws.request(register("tres")).await;
    let response::Result::Error(e) = third else {
        panic!("{third:?}")
    };
    assert_eq!(code(&e), ErrorCode::RateLimited);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_is_closed_at_the_idle_timeout() {
    let server = TestServer::start_with(|c| {
        c.idle_timeout_secs = 1;
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    // Says Hello, then neither sends nor reads (no Pong either).
    let ws = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
    let open = "microbot_transport_connections_open{transport=\"websocket\"}";
    assert_eq!(metric(&server, open).await, 1.0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The server has let it go while the client still holds its socket.
    assert_eq!(metric(&server, open).await, 0.0);
    // What the client then reads ends with the Close 1001 and no closing
    // frame (or a reset, when its Pongs to the server's pings hit the
    // closed socket first).
    let closed = tokio::time::timeout(Duration::from_secs(10), ws.closed())
        .await
        .expect("ended by the server");
    assert!(closed.closing.is_none(), "{closed:?}");
    assert!(matches!(closed.close_code, None | Some(1001)), "{closed:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_socket_answers_only_hello_and_login() {
    let server = TestServer::start().await;
    let mut ws = WsClient::open_path(
        ws_addr(&server),
        &server.fingerprint,
        false,
        "/v1/ws/attachment",
    )
    .await;
    let reply = ws
        .request(Request::Hello(Hello {
            versions: vec![1],
            client_agent: String::new(),
        }))
        .await;
    assert!(matches!(reply, response::Result::Hello(_)), "{reply:?}");
    ws.send_frame(Request::ListDevices(transport::ListDevicesRequest {}))
        .await;
    let closed = ws.closed().await;
    assert_eq!(code(&closed.closing.unwrap()), ErrorCode::ProtocolViolation);
    assert_eq!(closed.close_code, Some(4002));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_a_websocket_with_unavailable_and_a_retry_hint() {
    let server = TestServer::start().await;
    let ws = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
    let stopping = tokio::spawn(server.stop());
    let closed = ws.closed().await;
    let closing = closed.closing.unwrap();
    assert_eq!(code(&closing), ErrorCode::Unavailable);
    assert_eq!(closing.retry_after_ms, 1000);
    assert_eq!(closed.close_code, Some(4051));
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_message_or_a_body_that_is_no_client_frame_closes_with_malformed_frame() {
    let server = TestServer::start().await;
    for message in [
        Message::Text("hello".into()),
        // Field 1 as a length-delimited field of 200 bytes with 3 present.
        Message::Binary(Bytes::from_static(&[0x0a, 0xc8, 0x01, 1, 2, 3])),
    ] {
        let mut ws = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
        ws.ws.send(message).await.unwrap();
        let closed = ws.closed().await;
        assert_eq!(code(&closed.closing.unwrap()), ErrorCode::MalformedFrame);
        assert_eq!(closed.close_code, Some(4003));
    }
    // The server still serves.
    let mut ws = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
    let reply = ws
        .request(Request::ListDevices(transport::ListDevicesRequest {}))
        .await;
    assert!(matches!(reply, response::Result::Error(_)), "{reply:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_over_websocket_are_answered_and_stored_in_order() {
    let server = TestServer::start().await;
    let mut bob = new_device(&server, "bob").await;
    let mut quic = server.client().await;
    let mut account = register_active(&mut quic, "wanda").await;
    let (device_id, key) = enrol(&mut quic, &mut account).await;
    let mut ws = WsClient::connect(ws_addr(&server), &server.fingerprint, false).await;
    ws.login(device_id, &key).await;
    // 40 sends written without reading (more than the 32 a connection may
    // have in storage's hands), a device listing among them.
    let mut ids = Vec::new();
    for n in 0..40u8 {
        let request = if n == 17 {
            Request::ListDevices(transport::ListDevicesRequest {})
        } else {
            Request::Send(transport::SendRequest {
                envelopes: vec![transport::OutgoingEnvelope {
                    recipient_device_id: bob.device_id,
                    ciphertext: Bytes::from(vec![n; 32]),
                }],
                complete_accounts: Vec::new(),
            })
        };
        ids.push(ws.send_frame(request).await);
    }
    let mut answered = Vec::new();
    while answered.len() < ids.len() {
        let frame = ws.read_frame().await.expect("connection open");
        if let Some(server_frame::Kind::Response(r)) = frame.kind {
            let ok = match r.result.unwrap() {
                response::Result::Send(_) => true,
                response::Result::DeviceList(list) => list.devices.len() == 1,
                other => panic!("request {} answered {other:?}", r.request_id),
            };
            assert!(ok);
            answered.push(r.request_id);
        }
    }
    assert_eq!(answered, ids, "one response per request, in request order");
    let page = fetch(&mut bob.client).await;
    let got: Vec<u8> = page.envelopes.iter().map(|e| e.ciphertext[0]).collect();
    let sent: Vec<u8> = (0..40u8).filter(|n| *n != 17).collect();
    assert_eq!(got, sent, "stored in request order");
    assert!(
        page.envelopes
            .windows(2)
            .all(|w| w[0].envelope_id < w[1].envelope_id)
    );
    server.stop().await;
}

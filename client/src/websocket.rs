//! The WebSocket transport (SPEC.md §12.13): TLS 1.3 to the same address
//! and port number as QUIC (on TCP) with the same pinned certificate, path
//! `/v1/ws`, subprotocol `microbot.v1`, one frame body per binary message.
//! Also the memory of which addresses need it (QUIC did not answer there).
//!
//! A writer task owns the socket's sending half and pings every
//! [`PING_INTERVAL`]; the reader (transport.rs) gives up when nothing at
//! all arrives for [`SILENCE_LIMIT`] (the server pings at least every 20 s).
//!
//! Not owned here: matching responses to requests (the protocol crate's
//! connection machine, driven by transport.rs and, for the Hello and login
//! of an attachment socket, by [`open_attachment`]), when to fall back
//! (transport.rs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Message, WebSocketConfig};

use crate::config::ServerConfig;
use crate::error::{ServerError, TransportError};
use microbot_protocol::codec::DEFAULT_MAX_FRAME_LEN;
use microbot_protocol::conn::{AnswerError, ClientConn, ClientConnError, ClientEvent};
use microbot_protocol::transport::{Hello, client_frame::Request, response};

/// Request path of the WebSocket endpoint.
pub(crate) const PATH: &str = "/v1/ws";
/// Request path of attachment sockets (one transfer each).
pub(crate) const ATTACH_PATH: &str = "/v1/ws/attachment";
/// Largest message on an attachment socket.
const MAX_ATTACHMENT_MESSAGE: usize = 64 * 1024;
/// The subprotocol offered and required back.
pub(crate) const SUBPROTOCOL: &str = "microbot.v1";
/// Keep-alive pings from the client.
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// With nothing received for this long, the connection counts as lost.
pub(crate) const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// How long an address where QUIC did not answer but WebSocket did is
/// reached by WebSocket first.
pub(crate) const FALLBACK_MEMORY: Duration = Duration::from_secs(10 * 60);

/// The socket type of one WebSocket connection.
pub(crate) type Socket = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;
/// Its receiving half.
pub(crate) type Source = futures_util::stream::SplitStream<Socket>;
/// Its sending half.
pub(crate) type Sink = futures_util::stream::SplitSink<Socket, Message>;

/// What the writer task sends.
pub(crate) enum Out {
    /// One `ClientFrame` body.
    Frame(Bytes),
    /// A clean close (code 1000), then the task ends.
    Close,
}

/// Addresses that answered on WebSocket after QUIC did not, and when.
fn fallbacks() -> &'static Mutex<HashMap<SocketAddr, Instant>> {
    static FALLBACKS: std::sync::OnceLock<Mutex<HashMap<SocketAddr, Instant>>> =
        std::sync::OnceLock::new();
    FALLBACKS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Remembers that `addr` needed the WebSocket fallback.
pub(crate) fn remember_fallback(addr: SocketAddr) {
    if let Ok(mut map) = fallbacks().lock() {
        map.retain(|_, at| at.elapsed() < FALLBACK_MEMORY);
        map.insert(addr, Instant::now());
    }
}

/// Whether `addr` needed the WebSocket fallback recently.
pub(crate) fn prefers_websocket(addr: SocketAddr) -> bool {
    fallbacks()
        .lock()
        .ok()
        .and_then(|map| map.get(&addr).map(|at| at.elapsed() < FALLBACK_MEMORY))
        .unwrap_or(false)
}

/// Opens TLS (pinned certificate, ALPN `http/1.1`) and the WebSocket to
/// `addr` within `timeout`.
pub(crate) async fn connect(
    server: &ServerConfig,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Socket, TransportError> {
    connect_path(server, addr, PATH, timeout).await
}

/// [`connect`] to `path`.
async fn connect_path(
    server: &ServerConfig,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<Socket, TransportError> {
    let connect = |e: &dyn std::fmt::Display| TransportError::Connect(format!("websocket: {e}"));
    let tls = crate::tls::websocket_tls_config(server)?;
    let name = ServerName::try_from(server.server_name.clone())
        .map_err(|e| TransportError::Config(e.to_string()))?;
    let mut request = format!("wss://{addr}{path}")
        .into_client_request()
        .map_err(|e| TransportError::Config(e.to_string()))?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let config = WebSocketConfig::default()
        .max_message_size(Some(microbot_protocol::codec::DEFAULT_MAX_FRAME_LEN))
        .max_frame_size(Some(microbot_protocol::codec::DEFAULT_MAX_FRAME_LEN))
        .write_buffer_size(0);
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| connect(&e))?;
        let _ = tcp.set_nodelay(true);
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| connect(&e))?;
        let (socket, response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .map_err(|e| connect(&e))?;
        let agreed = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            == Some(SUBPROTOCOL);
        if !agreed {
            return Err(connect(&"the server did not agree to microbot.v1"));
        }
        Ok(socket)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| TransportError::Connect("websocket: handshake timed out".into()))?
}

/// Writes frames in order and pings; ends after [`Out::Close`] or when the
/// socket fails.
pub(crate) async fn write_loop(mut sink: Sink, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    loop {
        let sent = tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Frame(body)) => sink.send(Message::Binary(body)).await,
                Some(Out::Close) | None => {
                    let close = CloseFrame { code: 1000.into(), reason: "bye".into() };
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        sink.send(Message::Close(Some(close))),
                    )
                    .await;
                    return;
                }
            },
            _ = ping.tick() => sink.send(Message::Ping(Bytes::new())).await,
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The next binary message body; `Err(reason)` when the connection ended
/// (closed, broken, or silent for [`SILENCE_LIMIT`]).
pub(crate) async fn next_body(source: &mut Source) -> Result<Bytes, String> {
    loop {
        let message = tokio::time::timeout(SILENCE_LIMIT, source.next())
            .await
            .map_err(|_| "the server went silent".to_owned())?;
        match message {
            Some(Ok(Message::Binary(body))) => return Ok(body),
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(frame) => {
                        format!("server closed the websocket ({})", u16::from(frame.code))
                    }
                    None => "server closed the websocket".to_owned(),
                });
            }
            Some(Ok(Message::Text(_))) => return Err("text message from the server".to_owned()),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.to_string()),
            None => return Err("server ended the websocket".to_owned()),
        }
    }
}

/// Splits `socket` and starts its writer; returns the sender for frames,
/// the receiving half and the writer task.
pub(crate) fn start(
    socket: Socket,
) -> (
    mpsc::UnboundedSender<Out>,
    Source,
    tokio::task::JoinHandle<()>,
) {
    let (sink, source) = socket.split();
    let (tx, rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(sink, rx));
    (tx, source, writer)
}

/// One request on an attachment socket before its transfer, through the
/// socket's connection machine: its response result, or the error the
/// server answered or closed with.
async fn exchange(
    sink: &mut Sink,
    source: &mut Source,
    machine: &mut ClientConn,
    request: Request,
) -> Result<response::Result, TransportError> {
    let closed = |error: microbot_protocol::conn::WireError| {
        TransportError::ConnectionLost(format!(
            "server closed the connection: {}",
            ServerError::from_proto(error.to_proto())
        ))
    };
    let request_id = machine.request(request).map_err(|e| match e {
        ClientConnError::Encode(error) => TransportError::Frame(error),
        other => TransportError::ConnectionLost(other.to_string()),
    })?;
    while let Some(transmit) = machine.poll_transmit() {
        sink.send(Message::Binary(transmit.body()))
            .await
            .map_err(|e| TransportError::ConnectionLost(e.to_string()))?;
    }
    let body = next_body(source)
        .await
        .map_err(TransportError::ConnectionLost)?;
    machine
        .handle_message(body)
        .map_err(|e| TransportError::ConnectionLost(e.to_string()))?;
    match machine.poll_event() {
        Ok(Some(ClientEvent::Hello {
            response: hello, ..
        })) => Ok(response::Result::Hello(hello)),
        Ok(Some(ClientEvent::Answer {
            request_id: answered,
            result,
        })) if answered == request_id => match result {
            Ok(result) => Ok(result),
            Err(AnswerError::Refused(error)) => Err(TransportError::Server(
                ServerError::from_proto(error.to_proto()),
            )),
            Err(AnswerError::NoResult) => Err(TransportError::UnexpectedResponse {
                expected: "a result",
            }),
        },
        Ok(Some(ClientEvent::Closing { error, .. }))
        | Err(ClientConnError::UnsupportedVersion(error) | ClientConnError::HelloRefused(error)) => {
            Err(closed(error))
        }
        Err(ClientConnError::UnexpectedHelloAnswer) => {
            Err(TransportError::UnexpectedResponse { expected: "Hello" })
        }
        Err(error @ (ClientConnError::Frame(_) | ClientConnError::Malformed(_))) => {
            Err(TransportError::ConnectionLost(error.to_string()))
        }
        _ => Err(TransportError::UnexpectedResponse {
            expected: "a response",
        }),
    }
}

/// Opens an attachment socket to `addr` and logs it in as `device_id`
/// (Hello, then `login` with the device key), ready for one transfer.
pub(crate) async fn open_attachment(
    server: &ServerConfig,
    addr: SocketAddr,
    timeout: Duration,
    device_id: u64,
    device_key: &ed25519_dalek::SigningKey,
) -> Result<(Sink, Source), TransportError> {
    let socket = connect_path(server, addr, ATTACH_PATH, timeout).await?;
    let (mut sink, mut source) = socket.split();
    let mut machine = ClientConn::new(DEFAULT_MAX_FRAME_LEN);
    let hello = Request::Hello(Hello {
        versions: microbot_protocol::conn::SUPPORTED_VERSIONS.to_vec(),
        client_agent: "microbot-client attachment".to_owned(),
    });
    let challenge = match exchange(&mut sink, &mut source, &mut machine, hello).await? {
        response::Result::Hello(hello) => hello.challenge,
        _ => return Err(TransportError::UnexpectedResponse { expected: "Hello" }),
    };
    let login = Request::Login(crate::device_login::login_request(
        &challenge, device_id, device_key,
    ));
    match exchange(&mut sink, &mut source, &mut machine, login).await? {
        response::Result::Login(_) => Ok((sink, source)),
        _ => Err(TransportError::UnexpectedResponse {
            expected: "LoginResponse",
        }),
    }
}

/// Writes `bytes` to an attachment socket in messages of at most 64 KiB.
pub(crate) async fn write_all(sink: &mut Sink, bytes: &[u8]) -> Result<(), TransportError> {
    for piece in bytes.chunks(MAX_ATTACHMENT_MESSAGE) {
        sink.feed(Message::Binary(Bytes::copy_from_slice(piece)))
            .await
            .map_err(|e| TransportError::ConnectionLost(e.to_string()))?;
    }
    sink.flush()
        .await
        .map_err(|e| TransportError::ConnectionLost(e.to_string()))
}

/// Ends the client's bytes on an attachment socket (an empty message).
pub(crate) async fn write_end(sink: &mut Sink) -> Result<(), TransportError> {
    sink.send(Message::Binary(Bytes::new()))
        .await
        .map_err(|e| TransportError::ConnectionLost(e.to_string()))
}

/// The server's next bytes on an attachment socket; `None` at its Close
/// 1000 (any other close code means the transfer broke).
pub(crate) async fn read_bytes(source: &mut Source) -> Result<Option<Bytes>, TransportError> {
    loop {
        match source.next().await {
            Some(Ok(Message::Binary(body))) if body.is_empty() => {}
            Some(Ok(Message::Binary(body))) => return Ok(Some(body)),
            Some(Ok(Message::Close(frame))) => {
                return match frame.map(|f| u16::from(f.code)) {
                    None | Some(1000) => Ok(None),
                    Some(code) => Err(TransportError::ConnectionLost(format!(
                        "attachment socket closed with {code}"
                    ))),
                };
            }
            Some(Ok(Message::Text(_))) => {
                return Err(TransportError::ConnectionLost("text message".into()));
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(TransportError::ConnectionLost(error.to_string())),
            None => return Ok(None),
        }
    }
}

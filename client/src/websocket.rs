//! The WebSocket transport (SPEC.md §12.13): TLS 1.3 to the same address
//! and port number as QUIC (on TCP) with the same pinned certificate, path
//! `/v1/ws`, subprotocol `microbot.v1`, one frame body per binary message.
//! Also the memory of which addresses need it (QUIC did not answer there).
//!
//! A writer task owns the socket's sending half and pings every
//! [`PING_INTERVAL`]; the reader (transport.rs) gives up when nothing at
//! all arrives for [`SILENCE_LIMIT`] (the server pings at least every 20 s).
//!
//! Not owned here: matching responses to requests (transport.rs), when to
//! fall back (transport.rs).

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
use crate::error::TransportError;

/// Request path of the WebSocket endpoint.
pub(crate) const PATH: &str = "/v1/ws";
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
    let connect = |e: &dyn std::fmt::Display| TransportError::Connect(format!("websocket: {e}"));
    let mut tls = crate::transport::pinned_tls_config(server)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(server.server_name.clone())
        .map_err(|e| TransportError::Config(e.to_string()))?;
    let mut request = format!("wss://{addr}{PATH}")
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
pub(crate) async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut rx: mpsc::UnboundedReceiver<Out>,
) {
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

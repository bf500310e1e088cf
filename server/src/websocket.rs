//! The WebSocket transport (SPEC.md §12.13): the same `ClientFrame` /
//! `ServerFrame` conversation as the QUIC request stream, one frame body
//! per binary WebSocket message, for networks that drop UDP and for
//! browsers. The listener speaks HTTP/1.1 (hyper): the upgrade on
//! [`PATH`] / [`ATTACH_PATH`] becomes a WebSocket, every other path is a
//! file of the web app (web_app.rs, SPEC.md §12.16).
//!
//! Invariants:
//! - A connection is admitted like a QUIC one: the IP rules and caps are
//!   checked before the TLS handshake (refused: the TCP connection is
//!   closed, nothing is written), the TLS + WebSocket handshake runs under a
//!   handshake slot and within `handshake_timeout_secs`, and only then does
//!   it take a connection slot (lost race: WebSocket close code
//!   4000 + `ERROR_CODE_RATE_LIMITED`).
//! - No message over `max_frame_len` is buffered: tungstenite refuses a
//!   frame whose header announces more before reading its payload, and the
//!   connection is closed with `ERROR_CODE_FRAME_TOO_LARGE`.
//! - What waits to be written is bounded as on QUIC
//!   ([`connection::backlog_cap`]): over the cap no further request is
//!   read, and a push that takes it over closes with
//!   `ERROR_CODE_UNAVAILABLE`.
//! - Requests go through the one [`RequestHandler`]; nothing here knows
//!   what a request means.
//!
//! Not owned here: the request state machine (dispatch.rs), the QUIC
//! endpoint (endpoint.rs, connection.rs), attachments over WebSocket
//! (websocket_attach.rs).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use microbot_protocol::transport::{ErrorCode, ServerFrame};
use prost::Message as _;
use std::sync::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Message, WebSocketConfig};

use crate::attachment_http;
use crate::attachments;
use crate::connection::{self, HELLO_TIMEOUT, SHUTDOWN_RETRY_AFTER_MS};
use crate::dispatch::{self, Close, Outlet, RequestHandler};
use crate::endpoint::{EndpointError, ServerIdentity};
use crate::limits::{ConnectionSlot, HandshakeSlot, Refusal};
use crate::state::ServerState;
use crate::web_app::{self, Body};
use crate::websocket_attach::{self, ATTACH_PATH};

/// The request path of the WebSocket endpoint.
pub const PATH: &str = "/v1/ws";
/// The WebSocket subprotocol a client must offer (`Sec-WebSocket-Protocol`).
pub const SUBPROTOCOL: &str = "microbot.v1";
/// WebSocket close code of an `ErrorCode` = this + the code's number.
pub const CLOSE_CODE_BASE: u16 = 4000;
/// Keep-alive: the server pings this often (or at a third of the idle
/// timeout, if that is shorter).
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// Time given to the peer to take the closing frame and the Close.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);
/// Time given to the peer to answer the Close.
const CLOSE_LINGER: Duration = Duration::from_millis(500);
/// Read buffer of one connection (tungstenite reads at most this at a time).
const READ_BUFFER: usize = 16 * 1024;
/// Most bytes of one HTTP request head held (a longer head is refused).
const HTTP_BUFFER: usize = 16 * 1024;

/// The WebSocket close code for `code` (SPEC.md §12.13).
pub fn close_code(code: ErrorCode) -> u16 {
    CLOSE_CODE_BASE.saturating_add(u16::try_from(code as i32).unwrap_or(0))
}

/// The TLS configuration of the WebSocket listener: the server's own
/// certificate, TLS 1.3 only, ALPN `http/1.1`, the QUIC endpoint's suites
/// ([`crate::endpoint::tls_config`]).
///
/// # Errors
/// [`EndpointError::Tls`].
pub fn tls_acceptor(identity: &ServerIdentity) -> Result<tokio_rustls::TlsAcceptor, EndpointError> {
    let tls = crate::endpoint::tls_config(identity, b"http/1.1")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))
}

/// The byte stream under the WebSocket: TLS, or plain TCP where the
/// operator allowed it; counts the bytes read (for the frame and idle
/// deadlines).
pub(crate) struct Link {
    inner: Inner,
    read: Arc<ReadCount>,
}

/// Bytes read from a connection, and a wake-up for the connection loop
/// when some arrive (it arms the frame deadline).
#[derive(Default)]
struct ReadCount {
    bytes: AtomicU64,
    arrived: Notify,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Link {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.read.bytes.fetch_add(n as u64, Ordering::Relaxed);
            this.read.arrived.notify_one();
        }
        polled
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why an upgrade request gets no WebSocket.
fn refuse_upgrade(status: StatusCode, why: &'static str) -> Response<Body> {
    web_app::plain(status, why)
}

/// The HTTP upgrade check: path [`PATH`] (or [`ATTACH_PATH`]), a
/// WebSocket version 13 upgrade, and subprotocol [`SUBPROTOCOL`] offered;
/// else why not (answered with 400, no WebSocket). Ok: the `101` answer.
fn check_upgrade<B>(request: &Request<B>) -> Result<Response<Body>, &'static str> {
    let headers = request.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if request.method() != Method::GET
        || !has_token(header::UPGRADE, "websocket")
        || !has_token(header::CONNECTION, "upgrade")
        || headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("This path takes a WebSocket (version 13) upgrade only.\n");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err("Sec-WebSocket-Key is missing.\n");
    };
    if !has_token(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        return Err("the subprotocol microbot.v1 is required\n");
    }
    let accept = derive_accept_key(key.as_bytes());
    let mut response = Response::new(web_app::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    out.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let accept = HeaderValue::from_str(&accept).map_err(|_| "Sec-WebSocket-Key is invalid.\n")?;
    out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

/// WebSocket limits of one connection: no message or frame over
/// `max_frame_len`, small buffers.
fn ws_config(max_frame_len: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(max_frame_len))
        .max_frame_size(Some(max_frame_len))
}

/// Runs the TLS handshake (unless `tls` is `None`).
async fn accept_tls(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    read: Arc<ReadCount>,
) -> Result<Link, String> {
    let inner = match tls {
        Some(acceptor) => Inner::Tls(Box::new(
            acceptor.accept(stream).await.map_err(|e| e.to_string())?,
        )),
        None => Inner::Plain(stream),
    };
    Ok(Link { inner, read })
}

/// The state of one HTTP connection shared with its request handler.
struct HttpConn {
    state: Arc<ServerState>,
    remote: SocketAddr,
    /// Held from accept until the connection is a WebSocket or serves files.
    handshake: Mutex<Option<HandshakeSlot>>,
    /// Held while the connection serves files.
    files_slot: Mutex<Option<ConnectionSlot>>,
    /// Where an accepted upgrade goes (taken by the first one).
    upgrade: Mutex<Option<oneshot::Sender<(OnUpgrade, bool)>>>,
    /// Set once the connection has served a file (no handshake deadline).
    serving_files: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl HttpConn {
    /// One HTTP request: a WebSocket upgrade on [`PATH`] / [`ATTACH_PATH`],
    /// else a file of the web app (§12.16).
    async fn handle(self: Arc<Self>, mut request: Request<Incoming>) -> Response<Body> {
        let attach = match request.uri().path() {
            PATH => Some(false),
            ATTACH_PATH => Some(true),
            _ => None,
        };
        if let Some(attach) = attach {
            let response = match check_upgrade(&request) {
                Ok(response) => response,
                Err(why) => return refuse_upgrade(StatusCode::BAD_REQUEST, why),
            };
            let Some(sender) = lock(&self.upgrade).take() else {
                return refuse_upgrade(StatusCode::BAD_REQUEST, "one upgrade per connection\n");
            };
            let on_upgrade = hyper::upgrade::on(&mut request);
            if sender.send((on_upgrade, attach)).is_err() {
                return refuse_upgrade(StatusCode::SERVICE_UNAVAILABLE, "connection ending\n");
            }
            return response;
        }
        if !self.serving_files.load(Ordering::Relaxed) {
            // The first file request: from here on the connection counts
            // as an open connection, not a handshake.
            let slot = match self.state.limits.admit(self.remote.ip()) {
                Ok(slot) => slot,
                Err(refusal) => {
                    self.state.metrics.connections_refused.inc();
                    tracing::debug!(?refusal, "web app connection refused");
                    let mut response = web_app::plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Too many connections; try again in a moment.\n",
                    );
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    return response;
                }
            };
            *lock(&self.files_slot) = Some(slot);
            drop(lock(&self.handshake).take());
            self.serving_files.store(true, Ordering::Relaxed);
        }
        if request
            .uri()
            .path()
            .starts_with(attachments::ATTACHMENT_PATH_PREFIX)
        {
            return attachment_http::respond(&self.state, request).await;
        }
        web_app::respond(&self.state.config.web_app_dir, request).await
    }
}

/// Runs the TLS handshake and HTTP until the connection becomes a
/// WebSocket (`Some`), or has ended serving files or failed (`None`).
/// The handshake deadline covers TLS and the upgrade; a connection serving
/// files lives at most the idle timeout.
async fn handshake(
    conn: Arc<HttpConn>,
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    read: Arc<ReadCount>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(WebSocketStream<Io>, bool)> {
    let state = Arc::clone(&conn.state);
    let max_frame_len = usize::try_from(state.config.max_frame_len).unwrap_or(usize::MAX);
    let deadline = Duration::from_secs(state.config.handshake_timeout_secs);
    let mut handshake_by = tokio::time::Instant::now() + deadline;
    let link = match tokio::time::timeout_at(handshake_by, accept_tls(stream, tls, read)).await {
        Ok(Ok(link)) => link,
        Ok(Err(error)) => {
            tracing::debug!(%error, "websocket tls handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!("websocket handshake not finished in time");
            return None;
        }
    };
    let (upgrade_tx, mut upgrade_rx) = oneshot::channel();
    *lock(&conn.upgrade) = Some(upgrade_tx);
    let service_conn = Arc::clone(&conn);
    let service = service_fn(move |request| {
        let conn = Arc::clone(&service_conn);
        async move { Ok::<_, std::convert::Infallible>(conn.handle(request).await) }
    });
    let http = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(deadline)
        .max_buf_size(HTTP_BUFFER)
        .serve_connection(TokioIo::new(link), service)
        .with_upgrades();
    tokio::pin!(http);
    let files_until = tokio::time::Instant::now()
        + Duration::from_secs(state.config.idle_timeout_secs).max(deadline);
    let mut upgrade: Option<(OnUpgrade, bool)> = None;
    let ended = loop {
        let serving_files = conn.serving_files.load(Ordering::Relaxed);
        let bound = if serving_files && upgrade.is_none() {
            files_until
        } else {
            handshake_by
        };
        tokio::select! {
            ended = &mut http => break ended,
            got = &mut upgrade_rx, if upgrade.is_none() => {
                if let Ok(got) = got {
                    if serving_files {
                        handshake_by = tokio::time::Instant::now() + deadline;
                    }
                    upgrade = Some(got);
                }
            }
            () = tokio::time::sleep_until(bound) => {
                tracing::debug!(serving_files, "http connection over its time");
                return None;
            }
            _ = shutdown.changed() => return None,
        }
    };
    if let Err(error) = ended {
        tracing::debug!(%error, "http connection failed");
        return None;
    }
    // The upgrade may have been handed over in the same poll as the end.
    let (on_upgrade, attach) = upgrade.or_else(|| upgrade_rx.try_recv().ok())?;
    let upgraded = match tokio::time::timeout_at(handshake_by, on_upgrade).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(error)) => {
            tracing::debug!(%error, "websocket upgrade failed");
            return None;
        }
        Err(_) => {
            tracing::debug!("websocket handshake not finished in time");
            return None;
        }
    };
    let ws = WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Server,
        Some(ws_config(max_frame_len)),
    )
    .await;
    Some((ws, attach))
}

/// Serves one accepted TCP connection until it ends or `shutdown` fires
/// (the WebSocket counterpart of [`connection::serve`]); a connection
/// that asks for files of the web app is served those instead (§12.16).
pub async fn serve(
    state: Arc<ServerState>,
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    handshake_slot: HandshakeSlot,
) {
    let max_frame_len = usize::try_from(state.config.max_frame_len).unwrap_or(usize::MAX);
    let read = Arc::new(ReadCount::default());
    let _ = stream.set_nodelay(true);
    let conn = Arc::new(HttpConn {
        state: Arc::clone(&state),
        remote,
        handshake: Mutex::new(Some(handshake_slot)),
        files_slot: Mutex::new(None),
        upgrade: Mutex::new(None),
        serving_files: AtomicBool::new(false),
    });
    let handshaken = handshake(
        Arc::clone(&conn),
        stream,
        tls,
        Arc::clone(&read),
        &mut shutdown,
    )
    .await;
    drop(lock(&conn.handshake).take());
    drop(lock(&conn.files_slot).take());
    let Some((mut ws, attach)) = handshaken else {
        return;
    };
    let _slot = match state.limits.admit(remote.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            state.metrics.connections_refused.inc();
            if refusal != Refusal::Blocked {
                state.metrics.rate_limited("connections");
            }
            tracing::debug!(?refusal, "websocket connection refused after its handshake");
            let frame = CloseFrame {
                code: CloseCode::from(close_code(ErrorCode::RateLimited)),
                reason: "too many connections".into(),
            };
            let _ = tokio::time::timeout(CLOSE_FLUSH, ws.close(Some(frame))).await;
            return;
        }
    };
    state.metrics.connections_total.inc();
    state.metrics.connections_open.inc();
    state.metrics.websocket_connections_total.inc();
    state.metrics.websocket_connections_open.inc();
    let _gauge = OpenGauge(Arc::clone(&state));
    tracing::debug!(%remote, "websocket connection open");
    let (sink, stream) = ws.split();
    if attach {
        websocket_attach::serve(state, sink, stream, remote, shutdown).await;
        tracing::debug!(%remote, "attachment websocket closed");
        return;
    }
    let shared = Arc::new(Shared::default());
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(write_loop(sink, out_rx, Arc::clone(&shared)));
    let mut conn = WsConn {
        handler: RequestHandler::new(Arc::clone(&state), remote.ip()),
        state,
        out: out_tx,
        shared,
        read,
        max_frame_len,
        backlog_cap: connection::backlog_cap(max_frame_len),
    };
    let mut stream = stream;
    let outcome = conn.run(&mut stream, &mut shutdown).await;
    conn.handler.unsubscribe();
    conn.close(outcome, writer, &mut stream).await;
    tracing::debug!(%remote, "websocket connection closed");
}

/// Keeps the open-connection gauges right however the task ends.
struct OpenGauge(Arc<ServerState>);

impl Drop for OpenGauge {
    fn drop(&mut self) {
        self.0.metrics.connections_open.dec();
        self.0.metrics.websocket_connections_open.dec();
    }
}

/// What the writer task sends.
enum Out {
    /// One encoded `ServerFrame` body.
    Frame(Bytes),
    /// A keep-alive ping.
    Ping,
    /// The last frames: an optional closing `ServerFrame`, then the Close.
    Close(Option<Bytes>, u16, String),
}

/// State shared between the connection loop and its writer task.
#[derive(Default)]
struct Shared {
    /// Bytes of frames handed to the writer and not yet written.
    queued: AtomicUsize,
    /// Set when what is queued is to be dropped (a client that does not read).
    discard: AtomicBool,
    /// Signalled whenever the writer has written a frame.
    drained: Notify,
}

/// The sending half of a server WebSocket.
pub(crate) type Sink = futures_util::stream::SplitSink<WebSocketStream<Io>, Message>;
/// The receiving half of a server WebSocket.
pub(crate) type Source = futures_util::stream::SplitStream<WebSocketStream<Io>>;
/// The byte stream of an upgraded connection (over a [`Link`]).
pub(crate) type Io = TokioIo<Upgraded>;

/// Writes frames in order; one write at a time, so a client that does not
/// read holds up only this task.
async fn write_loop(mut sink: Sink, mut rx: mpsc::UnboundedReceiver<Out>, shared: Arc<Shared>) {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Frame(frame) => {
                let len = frame.len();
                let written = if shared.discard.load(Ordering::Relaxed) {
                    Ok(())
                } else if rx.is_empty() {
                    sink.send(Message::Binary(frame)).await
                } else {
                    sink.feed(Message::Binary(frame)).await
                };
                shared.queued.fetch_sub(len, Ordering::Relaxed);
                shared.drained.notify_one();
                if written.is_err() {
                    break;
                }
            }
            Out::Ping => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
            Out::Close(closing, code, reason) => {
                if let Some(frame) = closing {
                    let _ = sink.feed(Message::Binary(frame)).await;
                }
                let close = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                let _ = sink.send(Message::Close(Some(close))).await;
                break;
            }
        }
    }
}

struct WsConn {
    state: Arc<ServerState>,
    out: mpsc::UnboundedSender<Out>,
    shared: Arc<Shared>,
    read: Arc<ReadCount>,
    handler: RequestHandler,
    max_frame_len: usize,
    backlog_cap: usize,
}

/// How a connection loop ended.
enum Ended {
    /// Close with this code and a closing frame.
    Close(Close),
    /// The client closed cleanly (WebSocket Close): answer with 1000.
    Clean,
    /// Nothing arrived for the idle timeout, or the socket broke: no frame.
    Silent(&'static str),
}

impl Outlet for WsConn {
    fn handler(&mut self) -> &mut RequestHandler {
        &mut self.handler
    }

    fn unwritten(&self) -> usize {
        self.queued()
    }

    fn backlog_cap(&self) -> usize {
        self.backlog_cap
    }

    /// Encodes a frame body (no length prefix: the message delimits it)
    /// and hands it to the writer.
    fn enqueue(&mut self, frame: &ServerFrame) -> Result<(), Close> {
        let len = frame.encoded_len();
        if len > self.max_frame_len {
            return Err(Close::new(
                ErrorCode::Internal,
                "response over the frame limit",
            ));
        }
        let mut buf = BytesMut::with_capacity(len);
        frame
            .encode(&mut buf)
            .map_err(|e| Close::new(ErrorCode::Internal, e.to_string()))?;
        self.shared.queued.fetch_add(len, Ordering::Relaxed);
        self.out
            .send(Out::Frame(buf.freeze()))
            .map_err(|_| Close::new(ErrorCode::Unavailable, "writer ended"))
    }
}

impl WsConn {
    fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    async fn run(&mut self, stream: &mut Source, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let hello_deadline = tokio::time::Instant::now() + HELLO_TIMEOUT;
        let login_timeout = Duration::from_secs(self.state.config.login_timeout_secs);
        let frame_timeout = Duration::from_secs(self.state.config.frame_timeout_secs);
        let idle_timeout = Duration::from_secs(self.state.config.idle_timeout_secs);
        let ping_every = PING_INTERVAL
            .min(idle_timeout / 3)
            .max(Duration::from_millis(100));
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let mut login_deadline: Option<tokio::time::Instant> = None;
        let mut frame_deadline: Option<tokio::time::Instant> = None;
        // Bytes read when the last whole message arrived, and when anything last did.
        let mut read_at_message = self.read.bytes.load(Ordering::Relaxed);
        let mut last_read = (read_at_message, tokio::time::Instant::now());
        loop {
            // Answer what can be answered now, as long as the client takes
            // its responses.
            if let Err(close) = dispatch::take_ready_replies(self, &mut login_deadline).await {
                return Ended::Close(close);
            }
            let within_cap = self.within_cap();
            let read_requests = within_cap && self.handler.takes_requests();
            let awaiting_hello = self.handler.awaiting_hello();
            let awaiting_login = !awaiting_hello && self.handler.caller().is_none();
            if awaiting_login && login_deadline.is_none() {
                login_deadline = Some(tokio::time::Instant::now() + login_timeout);
            }
            // A message is under way when bytes arrived after the last one.
            let partial = self.read.bytes.load(Ordering::Relaxed) > read_at_message;
            if !read_requests || !partial {
                frame_deadline = None;
            } else if frame_deadline.is_none() {
                frame_deadline = Some(tokio::time::Instant::now() + frame_timeout);
            }
            let login_by = login_deadline.unwrap_or_else(tokio::time::Instant::now);
            let frame_by = frame_deadline.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                message = stream.next(), if read_requests => {
                    read_at_message = self.read.bytes.load(Ordering::Relaxed);
                    frame_deadline = None;
                    match message {
                        // Answered at the top of the loop (a send or an
                        // acknowledgement once stored, through `next_wake`).
                        Some(Ok(Message::Binary(body))) => self.handler.accept_message(body),
                        Some(Ok(Message::Text(_))) => {
                            return Ended::Close(Close::new(
                                ErrorCode::MalformedFrame,
                                "text messages are not used; frames travel as binary messages",
                            ));
                        }
                        Some(Ok(Message::Close(_))) | None => return Ended::Clean,
                        Some(Ok(_)) => {} // ping (answered by tungstenite), pong
                        Some(Err(error)) => return Ended::Close(ws_error_close(&error)),
                    }
                }
                () = self.shared.drained.notified(), if !within_cap => {}
                // Bytes arrived: the loop arms the frame deadline.
                () = self.read.arrived.notified(), if read_requests && frame_deadline.is_none() => {}
                // The pushes already waiting go to the writer with an
                // event, which then flushes once for all of them.
                wake = self.handler.next_wake() => {
                    if let Err(close) = self.take_wake(wake, &mut login_deadline) {
                        return Ended::Close(close);
                    }
                }
                _ = ping.tick() => {
                    let now = self.read.bytes.load(Ordering::Relaxed);
                    if now != last_read.0 {
                        last_read = (now, tokio::time::Instant::now());
                    } else if last_read.1.elapsed() >= idle_timeout {
                        return Ended::Silent("idle timeout");
                    }
                    if self.out.send(Out::Ping).is_err() {
                        return Ended::Silent("writer ended");
                    }
                }
                _ = tokio::time::sleep_until(hello_deadline), if awaiting_hello => {
                    return Ended::Close(Close::new(ErrorCode::ProtocolViolation, "no Hello in time"));
                }
                _ = tokio::time::sleep_until(login_by), if awaiting_login => {
                    return Ended::Close(Close::new(ErrorCode::NotAuthenticated, "no login in time"));
                }
                _ = tokio::time::sleep_until(frame_by), if frame_deadline.is_some() => {
                    return Ended::Close(Close::new(ErrorCode::ProtocolViolation, "frame not completed in time"));
                }
                _ = shutdown.changed() => {
                    let mut close = Close::new(ErrorCode::Unavailable, "server shutting down");
                    close.retry_after_ms = SHUTDOWN_RETRY_AFTER_MS;
                    return Ended::Close(close);
                }
            }
        }
    }

    /// Sends the closing frame and the Close, waits briefly for the
    /// client's Close, and ends the writer.
    async fn close(
        &mut self,
        ended: Ended,
        writer: tokio::task::JoinHandle<()>,
        stream: &mut Source,
    ) {
        let last = match ended {
            Ended::Close(close) => {
                tracing::debug!(code = ?close.code, message = %close.message, "closing websocket");
                if close.code == ErrorCode::Unavailable && self.queued() > self.backlog_cap {
                    // The client does not read: drop what waits (the
                    // envelopes stay queued), offer only the closing frame.
                    self.shared.discard.store(true, Ordering::Relaxed);
                }
                let reason: String = close.message.chars().take(60).collect();
                let body = close.frame().encode_to_vec();
                Out::Close(Some(Bytes::from(body)), close_code(close.code), reason)
            }
            Ended::Clean => Out::Close(None, 1000, "done".to_owned()),
            Ended::Silent(why) => Out::Close(None, 1001, why.to_owned()),
        };
        let _ = self.out.send(last);
        let mut writer = writer;
        if tokio::time::timeout(CLOSE_FLUSH, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
            return;
        }
        // Read (and drop) until the client's Close, so unread input does
        // not turn the TCP close into a reset that loses our Close.
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(message)) = stream.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// The close for a read error: oversize message → `FRAME_TOO_LARGE`,
/// anything else the peer did wrong → `MALFORMED_FRAME`.
fn ws_error_close(error: &tokio_tungstenite::tungstenite::Error) -> Close {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Capacity(_) => Close::new(ErrorCode::FrameTooLarge, error.to_string()),
        _ => Close::new(ErrorCode::MalformedFrame, error.to_string()),
    }
}

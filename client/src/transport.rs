//! The connection to the server (SPEC.md §12.3, §12.13): TLS 1.3 with the
//! server certificate pinned by its SHA-256; over QUIC (ALPN `microbot/1`,
//! one bidirectional request stream carrying length-prefixed frames) or
//! over a WebSocket (one frame body per binary message, websocket.rs).
//! Hello, request ids, matching responses to requests and telling pushes
//! apart are the protocol crate's connection machine ([`ClientConn`]);
//! this file sends requests through it, and transport/reader.rs feeds it
//! what arrives, wakes the waiting requests and forwards pushes. [`Transport::Auto`] tries QUIC for [`QUIC_FALLBACK_AFTER`] and
//! then the WebSocket, and remembers addresses that needed it.
//!
//! Not owned here: what requests mean (auth.rs, sync.rs) or when to
//! reconnect (sync.rs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use microbot_protocol::codec::DEFAULT_MAX_FRAME_LEN;
use microbot_protocol::conn::{ClientConn, ClientConnError};
use microbot_protocol::transport::{Hello, HelloResponse, Push, client_frame::Request, response};
use tokio::sync::{mpsc, oneshot};

use crate::config::{ServerConfig, Transport};
use crate::error::TransportError;
use crate::tls::{AddressTokens, quic_client_config_keeping};
use crate::websocket;

mod reader;

use reader::{Machine, Pending, Reply, fail_all, read_loop, read_loop_ws};

/// Protocol versions this client speaks.
pub const PROTOCOL_VERSIONS: &[u32] = microbot_protocol::conn::SUPPORTED_VERSIONS;
/// Longest wait for one response.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for the QUIC handshake of a one-off connection
/// (registration, enrolment); the background loop uses
/// `AccountConfig::connect_timeout`.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// With [`Transport::Auto`]: how long QUIC may take to answer before the
/// WebSocket is tried (UDP blocked).
pub const QUIC_FALLBACK_AFTER: Duration = Duration::from_secs(3);

/// The transport under one connection.
enum Link {
    Quic {
        endpoint: quinn::Endpoint,
        connection: quinn::Connection,
        send: tokio::sync::Mutex<quinn::SendStream>,
    },
    WebSocket {
        out: mpsc::UnboundedSender<websocket::Out>,
        closed: Arc<std::sync::atomic::AtomicBool>,
        remote: SocketAddr,
        writer: tokio::task::JoinHandle<()>,
        /// For attachment sockets: where, and how they log in.
        server: Box<ServerConfig>,
        login: Mutex<Option<(u64, ed25519_dalek::SigningKey)>>,
    },
}

/// The sending side of one attachment transfer (SPEC.md §12.11, §12.13).
pub(crate) enum StreamSend {
    Quic(quinn::SendStream),
    WebSocket(websocket::Sink),
}

/// The receiving side of one attachment transfer.
pub(crate) enum StreamRecv {
    Quic(quinn::RecvStream),
    WebSocket(websocket::Source),
}

impl StreamSend {
    /// Writes all of `bytes`.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        match self {
            Self::Quic(send) => send
                .write_all(bytes)
                .await
                .map_err(|e| TransportError::ConnectionLost(e.to_string())),
            Self::WebSocket(sink) => websocket::write_all(sink, bytes).await,
        }
    }

    /// Ends this side: QUIC FIN, or the empty message on a WebSocket.
    pub(crate) async fn finish(&mut self) -> Result<(), TransportError> {
        match self {
            Self::Quic(send) => send
                .finish()
                .map_err(|e| TransportError::ConnectionLost(e.to_string())),
            Self::WebSocket(sink) => websocket::write_end(sink).await,
        }
    }
}

impl StreamRecv {
    /// The next bytes (at most `max` on QUIC); `None` at the end.
    pub(crate) async fn read_chunk(
        &mut self,
        max: usize,
    ) -> Result<Option<bytes::Bytes>, TransportError> {
        match self {
            Self::Quic(recv) => recv
                .read_chunk(max, true)
                .await
                .map(|c| c.map(|c| c.bytes))
                .map_err(|e| TransportError::ConnectionLost(e.to_string())),
            Self::WebSocket(source) => websocket::read_bytes(source).await,
        }
    }
}

/// One live connection with its request stream.
pub(crate) struct Connection {
    link: Link,
    pending: Pending,
    machine: Machine,
    reader: tokio::task::JoinHandle<()>,
    /// The server's answer to Hello (limits, first challenge).
    pub(crate) hello: HelloResponse,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        match &self.link {
            Link::Quic {
                endpoint,
                connection,
                ..
            } => {
                connection.close(0u32.into(), b"bye");
                endpoint.close(0u32.into(), b"bye");
            }
            Link::WebSocket { out, writer, .. } => {
                // The writer sends the Close and ends by itself.
                if out.send(websocket::Out::Close).is_err() {
                    writer.abort();
                }
            }
        }
    }
}

impl Connection {
    /// Connects to one of `server`'s addresses, trying each once in
    /// round-robin order from `start` until one completes Hello (SPEC.md
    /// §12.1). Only failures to reach an address move on; a refusal
    /// (no common version, bad configuration) is returned at once, as is
    /// the last address's failure.
    pub(crate) async fn connect_any(
        server: &ServerConfig,
        start: usize,
        client_agent: &str,
        timeout: Duration,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Push>), TransportError> {
        let addresses = server.addresses();
        let mut last = TransportError::Config("no server address".into());
        for step in 0..addresses.len() {
            let index = start.wrapping_add(step) % addresses.len();
            let Some(&addr) = addresses.get(index) else {
                continue;
            };
            match Self::connect(server, addr, client_agent, timeout).await {
                Ok(connected) => return Ok(connected),
                Err(error) if error.is_connection_problem() => {
                    tracing::debug!(%addr, %error, "server address failed, trying the next");
                    last = error;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }

    /// Connects to `addr` by the configured transport and completes
    /// Hello. With [`Transport::Auto`], QUIC gets at most
    /// [`QUIC_FALLBACK_AFTER`] (an address that needed the fallback
    /// recently goes straight to the WebSocket); when it fails to connect,
    /// the WebSocket at the same address is tried. Pushes go to the
    /// returned receiver.
    pub(crate) async fn connect(
        server: &ServerConfig,
        addr: SocketAddr,
        client_agent: &str,
        timeout: Duration,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Push>), TransportError> {
        Self::connect_keeping(server, addr, client_agent, timeout, None).await
    }

    /// [`Connection::connect`] spending and keeping QUIC address
    /// validation tokens in `tokens` (for an account's own reconnects
    /// only: tls.rs [`AddressTokens`]).
    pub(crate) async fn connect_keeping(
        server: &ServerConfig,
        addr: SocketAddr,
        client_agent: &str,
        timeout: Duration,
        tokens: Option<&AddressTokens>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Push>), TransportError> {
        let quic = |timeout| Self::connect_quic(server, addr, client_agent, timeout, tokens);
        match server.transport {
            Transport::Quic => quic(timeout).await,
            Transport::WebSocket => Self::connect_ws(server, addr, client_agent, timeout).await,
            Transport::Auto if websocket::prefers_websocket(addr) => {
                match Self::connect_ws(server, addr, client_agent, timeout).await {
                    Ok(connected) => Ok(connected),
                    Err(error) if error.is_connection_problem() => quic(timeout).await,
                    Err(error) => Err(error),
                }
            }
            Transport::Auto => {
                let quic_timeout = timeout.min(QUIC_FALLBACK_AFTER);
                match quic(quic_timeout).await {
                    Ok(connected) => Ok(connected),
                    Err(TransportError::Connect(quic_error)) => {
                        tracing::debug!(%addr, %quic_error, "QUIC did not answer; trying the WebSocket");
                        // The rest of the budget (at least half of it), so a
                        // dead address costs about `timeout`, as with QUIC alone.
                        let ws_timeout = timeout.saturating_sub(quic_timeout).max(timeout / 2);
                        let connected =
                            Self::connect_ws(server, addr, client_agent, ws_timeout).await?;
                        websocket::remember_fallback(addr);
                        Ok(connected)
                    }
                    Err(error) => Err(error),
                }
            }
        }
    }

    /// The transport this connection uses.
    pub(crate) fn transport(&self) -> Transport {
        match self.link {
            Link::Quic { .. } => Transport::Quic,
            Link::WebSocket { .. } => Transport::WebSocket,
        }
    }

    /// Connects by WebSocket to `addr` and completes Hello.
    async fn connect_ws(
        server: &ServerConfig,
        addr: SocketAddr,
        client_agent: &str,
        timeout: Duration,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Push>), TransportError> {
        let socket = websocket::connect(server, addr, timeout).await?;
        let (out, source, writer) = websocket::start(socket);
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let machine: Machine = Arc::new(Mutex::new(ClientConn::new(DEFAULT_MAX_FRAME_LEN)));
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = tokio::spawn(read_loop_ws(
            source,
            Arc::clone(&machine),
            Arc::clone(&pending),
            push_tx,
            Arc::clone(&closed),
        ));
        let conn = Self {
            link: Link::WebSocket {
                out,
                closed,
                remote: addr,
                writer,
                server: Box::new(server.clone()),
                login: Mutex::new(None),
            },
            pending,
            machine,
            reader,
            hello: HelloResponse::default(),
        };
        conn.hello(client_agent).await.map(|conn| (conn, push_rx))
    }

    /// Connects by QUIC to `addr`, opens the request stream and completes Hello.
    async fn connect_quic(
        server: &ServerConfig,
        addr: SocketAddr,
        client_agent: &str,
        timeout: Duration,
        tokens: Option<&AddressTokens>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Push>), TransportError> {
        let bind: SocketAddr = if addr.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([0u8; 4], 0))
        };
        let mut endpoint =
            quinn::Endpoint::client(bind).map_err(|e| TransportError::Connect(e.to_string()))?;
        endpoint.set_default_client_config(quic_client_config_keeping(server, tokens)?);
        let connecting = endpoint
            .connect(addr, &server.server_name)
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let connection = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| TransportError::Connect("handshake timed out".into()))?
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let (send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let machine: Machine = Arc::new(Mutex::new(ClientConn::new(DEFAULT_MAX_FRAME_LEN)));
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(
            recv,
            Arc::clone(&machine),
            Arc::clone(&pending),
            push_tx,
        ));
        let conn = Self {
            link: Link::Quic {
                endpoint,
                connection,
                send: tokio::sync::Mutex::new(send),
            },
            pending,
            machine,
            reader,
            hello: HelloResponse::default(),
        };
        conn.hello(client_agent).await.map(|conn| (conn, push_rx))
    }

    /// Sends Hello and keeps the server's answer.
    async fn hello(mut self, client_agent: &str) -> Result<Self, TransportError> {
        let hello = self
            .request(Request::Hello(Hello {
                versions: PROTOCOL_VERSIONS.to_vec(),
                client_agent: client_agent.chars().take(100).collect(),
            }))
            .await;
        self.hello = match hello {
            Ok(response::Result::Hello(hello)) => hello,
            Ok(_) => {
                return Err(TransportError::UnexpectedResponse { expected: "Hello" });
            }
            Err(error) => return Err(error),
        };
        Ok(self)
    }

    /// Opens a bidirectional stream for one attachment transfer (§12.11).
    /// On a WebSocket connection: a new attachment socket to the same
    /// address, logged in as the device this connection logged in as.
    pub(crate) async fn open_stream(&self) -> Result<(StreamSend, StreamRecv), TransportError> {
        match &self.link {
            Link::Quic { connection, .. } => connection
                .open_bi()
                .await
                .map(|(send, recv)| (StreamSend::Quic(send), StreamRecv::Quic(recv)))
                .map_err(|e| TransportError::ConnectionLost(e.to_string())),
            Link::WebSocket {
                remote,
                server,
                login,
                ..
            } => {
                let login = login.lock().ok().and_then(|l| l.clone()).ok_or_else(|| {
                    TransportError::Config(
                        "attachment transfers need a logged-in connection".into(),
                    )
                })?;
                let (sink, source) =
                    websocket::open_attachment(server, *remote, CONNECT_TIMEOUT, login.0, &login.1)
                        .await?;
                Ok((StreamSend::WebSocket(sink), StreamRecv::WebSocket(source)))
            }
        }
    }

    /// Remembers the device this connection logged in as (a WebSocket
    /// connection logs its attachment sockets in with it).
    pub(crate) fn remember_login(&self, device_id: u64, key: &ed25519_dalek::SigningKey) {
        if let Link::WebSocket { login, .. } = &self.link
            && let Ok(mut slot) = login.lock()
        {
            *slot = Some((device_id, key.clone()));
        }
    }

    /// The server address this connection goes to.
    pub(crate) fn remote_address(&self) -> SocketAddr {
        match &self.link {
            Link::Quic { connection, .. } => connection.remote_address(),
            Link::WebSocket { remote, .. } => *remote,
        }
    }

    /// Whether the connection has ended.
    pub(crate) fn is_closed(&self) -> bool {
        match &self.link {
            Link::Quic { connection, .. } => connection.close_reason().is_some(),
            Link::WebSocket { closed, .. } => closed.load(Ordering::Relaxed),
        }
    }

    /// Closes the connection now (the background task reconnects).
    pub(crate) fn abort(&self, reason: &str) {
        match &self.link {
            Link::Quic { connection, .. } => connection.close(0u32.into(), reason.as_bytes()),
            Link::WebSocket { out, closed, .. } => {
                closed.store(true, Ordering::Relaxed);
                let _ = out.send(websocket::Out::Close);
                fail_all(&self.pending, reason);
            }
        }
    }

    /// Sends one request and waits for its response. A server error is
    /// [`TransportError::Server`].
    pub(crate) async fn request(&self, request: Request) -> Reply {
        let lost = || TransportError::ConnectionLost("connection state poisoned".into());
        let (tx, rx) = oneshot::channel();
        let transmit = {
            let mut pending = self.pending.lock().map_err(|_| lost())?;
            let Some(map) = pending.as_mut() else {
                return Err(TransportError::ConnectionLost("connection closed".into()));
            };
            let mut machine = self.machine.lock().map_err(|_| lost())?;
            let request_id = match machine.request(request) {
                Ok(id) => id,
                Err(ClientConnError::Encode(error)) => return Err(TransportError::Frame(error)),
                Err(_) => return Err(TransportError::ConnectionLost("connection closed".into())),
            };
            let transmit = machine
                .poll_transmit()
                .filter(|t| t.request_id == request_id)
                .ok_or_else(lost)?;
            map.insert(request_id, tx);
            transmit
        };
        let request_id = transmit.request_id;
        match &self.link {
            Link::Quic { send, .. } => {
                let mut send = send.lock().await;
                send.write_all(transmit.stream_bytes())
                    .await
                    .map_err(|e| TransportError::ConnectionLost(e.to_string()))?;
            }
            Link::WebSocket { out, .. } => {
                // The message delimits the frame: the body without its prefix.
                out.send(websocket::Out::Frame(transmit.body()))
                    .map_err(|_| TransportError::ConnectionLost("connection closed".into()))?;
            }
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(TransportError::ConnectionLost("connection closed".into())),
            Err(_) => {
                if let Ok(mut pending) = self.pending.lock()
                    && let Some(map) = pending.as_mut()
                {
                    map.remove(&request_id);
                }
                if let Ok(mut machine) = self.machine.lock() {
                    machine.cancel(request_id);
                }
                Err(TransportError::Timeout)
            }
        }
    }
}

/// The live connection of an account, while logged in: set by the
/// background task, read by every request that needs the server.
pub(crate) struct ConnectionSlot {
    conn: Mutex<Option<Arc<Connection>>>,
    /// True from the `Connected` event until the connection ends.
    ready: tokio::sync::watch::Sender<bool>,
}

impl Default for ConnectionSlot {
    fn default() -> Self {
        Self {
            conn: Mutex::new(None),
            ready: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl ConnectionSlot {
    /// The live connection, while logged in.
    pub(crate) fn get(&self) -> Option<Arc<Connection>> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records the live connection (`None` once it ended, which also ends
    /// readiness).
    pub(crate) fn set(&self, conn: Option<Arc<Connection>>) {
        if conn.is_none() {
            self.set_ready(false);
        }
        *self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
    }

    /// Marks the connection ready (set up, `Connected` announced) or not.
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.send_replace(ready);
    }

    /// Waits until the connection is ready.
    pub(crate) async fn ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives as long as `self`: this cannot fail while we wait.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

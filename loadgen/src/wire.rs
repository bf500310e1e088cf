//! The transport as a device speaks it (SPEC.md §12), without the SDK: one
//! QUIC connection, one request stream, `ClientFrame`s out and
//! `ServerFrame`s in, through the protocol crate's connection machine
//! ([`ClientConn`]: Hello, request ids, answers, pushes, error frames).
//!
//! Two ways to use a connection: [`RequestChannel`] for one request at a time
//! (provisioning, login), and [`RequestChannel::into_duplex`] for load, where a
//! writer task coalesces frames from many producers into few stream writes
//! and a [`FrameSource`] reads responses and pushes as they come.
//!
//! Not owned here: what the workloads send (pairs.rs, fanout.rs), accounts
//! and their TOTP codes (provision.rs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ed25519_dalek::{Signer as _, SigningKey};
use microbot_protocol::codec::{DEFAULT_MAX_FRAME_LEN, encode_frame};
use microbot_protocol::conn::{AnswerError, ClientConn, ClientConnError, ClientEvent};
use microbot_protocol::transport::{
    ClientFrame, ErrorCode, Hello, LoginRequest, LoginResponse, Push, Response, ServerFrame,
    client_frame::Request, response, server_frame,
};
use tokio::sync::mpsc;

use crate::error::{LoadError, LoadResult};

/// Time allowed for one request's answer during set-up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Most bytes one coalesced stream write carries.
const WRITE_COALESCE: usize = 64 * 1024;

/// A server to load: its UDP address and certificate pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// QUIC address.
    pub addr: SocketAddr,
    /// SHA-256 of its certificate, hex.
    pub fingerprint: String,
}

/// A few client endpoints (UDP sockets) that connections are spread over,
/// so one socket's receive path is not the load generator's bottleneck.
#[derive(Debug)]
pub struct Endpoints {
    endpoints: Vec<quinn::Endpoint>,
    next: AtomicUsize,
    target: Target,
}

impl Endpoints {
    /// `count` client endpoints on loopback, pinned to `target`'s certificate
    /// exactly as the client SDK pins it.
    ///
    /// # Errors
    /// [`LoadError::Config`] for a bad fingerprint, [`LoadError::Io`] when a
    /// socket cannot be bound.
    pub fn new(target: &Target, count: usize) -> LoadResult<Self> {
        let server = microbot_client::ServerConfig::new(target.addr, &target.fingerprint)
            .map_err(|e| LoadError::Config(e.to_string()))?;
        let config = microbot_client::quic_client_config(&server)
            .map_err(|e| LoadError::Config(e.to_string()))?;
        let bind: SocketAddr = if target.addr.is_ipv6() {
            SocketAddr::from(([0u16; 8], 0))
        } else {
            SocketAddr::from(([127, 0, 0, 1], 0))
        };
        let mut endpoints = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            let mut endpoint =
                quinn::Endpoint::client(bind).map_err(LoadError::io("binding a client socket"))?;
            endpoint.set_default_client_config(config.clone());
            endpoints.push(endpoint);
        }
        Ok(Self {
            endpoints,
            next: AtomicUsize::new(0),
            target: target.clone(),
        })
    }

    /// The target these endpoints connect to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Completes a QUIC handshake with the target (round-robin over the endpoints).
    ///
    /// # Errors
    /// [`LoadError::Connection`].
    pub async fn connect(&self) -> LoadResult<quinn::Connection> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let endpoint = self
            .endpoints
            .get(i)
            .ok_or(LoadError::Invalid("no client endpoint"))?;
        let connecting = endpoint
            .connect(self.target.addr, "localhost")
            .map_err(LoadError::connection)?;
        tokio::time::timeout(REQUEST_TIMEOUT, connecting)
            .await
            .map_err(|_| LoadError::Timeout("completing a QUIC handshake"))?
            .map_err(LoadError::connection)
    }

    /// Waits until every endpoint has no connection left.
    pub async fn close(&self) {
        for endpoint in &self.endpoints {
            endpoint.close(0u32.into(), b"done");
        }
        for endpoint in &self.endpoints {
            let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
        }
    }
}

/// Encodes one client frame.
///
/// # Errors
/// [`LoadError::Frame`].
pub fn encode_client_frame(request_id: u64, request: Request) -> LoadResult<Bytes> {
    let mut buf = BytesMut::new();
    encode_frame(
        &ClientFrame {
            request_id,
            request: Some(request),
        },
        &mut buf,
    )
    .map_err(|e| LoadError::Frame(e.to_string()))?;
    Ok(buf.freeze())
}

/// The error a refused request carries.
pub fn refusal(request: &'static str, result: response::Result) -> LoadError {
    match result {
        response::Result::Error(e) => LoadError::Refused {
            request,
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
            message: e.message,
        },
        _ => LoadError::Unexpected(request),
    }
}

/// Reads the request stream through the connection machine.
#[derive(Debug)]
pub struct FrameSource {
    recv: quinn::RecvStream,
    conn: ClientConn,
    /// The stream ended (or failed).
    ended: bool,
}

impl FrameSource {
    fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            conn: ClientConn::new(DEFAULT_MAX_FRAME_LEN),
            ended: false,
        }
    }

    /// The machine's next event; `None` when the stream ended. A refused
    /// Hello comes as the server's closing; answers to ids the machine
    /// does not track and empty frames are skipped.
    ///
    /// # Errors
    /// [`LoadError::Frame`] for bytes or a frame the machine refused.
    async fn next_event(&mut self) -> LoadResult<Option<ClientEvent>> {
        loop {
            match self.conn.poll_event() {
                Ok(Some(event)) => return Ok(Some(event)),
                Ok(None) if self.ended => return Ok(None),
                Ok(None) => self.read().await?,
                Err(
                    ClientConnError::UnsupportedVersion(error)
                    | ClientConnError::HelloRefused(error),
                ) => {
                    return Ok(Some(ClientEvent::Closing {
                        error,
                        abandoned: Vec::new(),
                    }));
                }
                Err(error) if !error.is_fatal() => {}
                Err(error) => return Err(LoadError::Frame(error.to_string())),
            }
        }
    }

    /// The next frame; `None` when the stream ended. Answers to requests
    /// the caller framed itself (ids of its choosing) come as they are.
    ///
    /// # Errors
    /// [`LoadError::Frame`] for an undecodable frame.
    pub async fn next(&mut self) -> LoadResult<Option<ServerFrame>> {
        loop {
            let kind = match self.conn.poll_event() {
                Ok(Some(ClientEvent::Answer { request_id, result })) => {
                    server_frame::Kind::Response(Response {
                        request_id,
                        result: AnswerError::as_wire(result),
                    })
                }
                Ok(Some(ClientEvent::Push(push))) => server_frame::Kind::Push(push),
                Ok(Some(ClientEvent::Closing { error, .. })) => {
                    server_frame::Kind::Closing(error.to_proto())
                }
                Err(ClientConnError::UnknownRequestId { request_id, result }) => {
                    server_frame::Kind::Response(Response {
                        request_id,
                        result: result.map(|r| *r),
                    })
                }
                Ok(Some(ClientEvent::Hello { .. })) | Err(ClientConnError::EmptyFrame) => continue,
                Ok(None) if self.ended => return Ok(None),
                Ok(None) => {
                    self.read().await?;
                    continue;
                }
                Err(error) => return Err(LoadError::Frame(error.to_string())),
            };
            return Ok(Some(ServerFrame { kind: Some(kind) }));
        }
    }

    /// Reads one chunk into the machine; sets `ended` at the end of the stream.
    async fn read(&mut self) -> LoadResult<()> {
        match self.recv.read_chunk(READ_CHUNK, true).await {
            Ok(Some(chunk)) => self
                .conn
                .handle_stream_bytes(&chunk.bytes)
                .map_err(|e| LoadError::Frame(e.to_string())),
            Ok(None) | Err(_) => {
                self.ended = true;
                Ok(())
            }
        }
    }
}

/// Sends encoded frames through a writer task that coalesces them.
#[derive(Clone, Debug)]
pub struct FrameSink {
    tx: mpsc::UnboundedSender<Bytes>,
}

impl FrameSink {
    /// Starts the writer task for `send`.
    pub fn spawn(send: quinn::SendStream) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(send, rx));
        Self { tx }
    }

    /// Queues an encoded frame; false when the writer has stopped.
    pub fn send(&self, frame: Bytes) -> bool {
        self.tx.send(frame).is_ok()
    }
}

async fn write_loop(mut send: quinn::SendStream, mut rx: mpsc::UnboundedReceiver<Bytes>) {
    let mut buf = BytesMut::with_capacity(WRITE_COALESCE);
    while let Some(first) = rx.recv().await {
        buf.extend_from_slice(&first);
        while buf.len() < WRITE_COALESCE {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = send.finish();
}

/// One connection with its request stream, used one request at a time.
#[derive(Debug)]
pub struct RequestChannel {
    /// The QUIC connection.
    pub connection: quinn::Connection,
    send: quinn::SendStream,
    source: FrameSource,
    challenge: Bytes,
}

impl RequestChannel {
    /// Connects, opens the request stream and completes Hello.
    ///
    /// # Errors
    /// Connection failures, or a refused Hello.
    pub async fn open(endpoints: &Endpoints) -> LoadResult<Self> {
        let connection = endpoints.connect().await?;
        Self::on(connection).await
    }

    /// Opens the request stream on an established connection and completes Hello.
    ///
    /// # Errors
    /// Connection failures, or a refused Hello.
    pub async fn on(connection: quinn::Connection) -> LoadResult<Self> {
        let (send, recv) = connection.open_bi().await.map_err(LoadError::connection)?;
        let mut channel = Self {
            connection,
            send,
            source: FrameSource::new(recv),
            challenge: Bytes::new(),
        };
        match channel
            .request(Request::Hello(Hello {
                versions: vec![1],
                client_agent: concat!("microbot-loadgen/", env!("CARGO_PKG_VERSION")).to_owned(),
            }))
            .await?
        {
            response::Result::Hello(h) => channel.challenge = h.challenge,
            other => return Err(refusal("Hello", other)),
        }
        Ok(channel)
    }

    /// Sends a request and waits for its answer; pushes in between are dropped.
    ///
    /// # Errors
    /// Connection failures, a timeout, or a frame without result.
    pub async fn request(&mut self, request: Request) -> LoadResult<response::Result> {
        let id = self
            .source
            .conn
            .request(request)
            .map_err(|e| LoadError::Frame(e.to_string()))?;
        while let Some(transmit) = self.source.conn.poll_transmit() {
            self.send
                .write_all(transmit.stream_bytes())
                .await
                .map_err(LoadError::connection)?;
        }
        loop {
            let event = tokio::time::timeout(REQUEST_TIMEOUT, self.source.next_event())
                .await
                .map_err(|_| LoadError::Timeout("waiting for a response"))??
                .ok_or_else(|| LoadError::Connection("stream ended before the response".into()))?;
            match event {
                ClientEvent::Answer { request_id, result } if request_id == id => {
                    return AnswerError::as_wire(result)
                        .ok_or(LoadError::Unexpected("a response without result"));
                }
                ClientEvent::Hello {
                    response: hello, ..
                } => return Ok(response::Result::Hello(hello)),
                ClientEvent::Closing { error, .. } => {
                    return Err(LoadError::Connection(format!(
                        "server closed the connection: {}",
                        error.message
                    )));
                }
                _ => {}
            }
        }
    }

    /// Waits for the next push that `wanted` accepts; answers and other
    /// pushes in between are dropped.
    ///
    /// # Errors
    /// Connection failures, the server's closing, or no such push within
    /// [`REQUEST_TIMEOUT`].
    pub async fn await_push(&mut self, wanted: impl Fn(&Push) -> bool) -> LoadResult<Push> {
        let wait = async {
            loop {
                match self.source.next_event().await? {
                    Some(ClientEvent::Push(push)) if wanted(&push) => return Ok(push),
                    Some(ClientEvent::Closing { error, .. }) => {
                        return Err(LoadError::Connection(format!(
                            "server closed the connection: {}",
                            error.message
                        )));
                    }
                    Some(_) => {}
                    None => {
                        return Err(LoadError::Connection("stream ended before the push".into()));
                    }
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, wait)
            .await
            .map_err(|_| LoadError::Timeout("waiting for a push"))?
    }

    /// Logs this connection in as `device` by signing the Hello challenge (§12.5).
    ///
    /// # Errors
    /// The server's refusal.
    pub async fn login(&mut self, device_id: u64, key: &SigningKey) -> LoadResult<LoginResponse> {
        let signature = login_signature(key, &self.challenge, device_id);
        match self
            .request(Request::Login(LoginRequest {
                device_id,
                signature,
            }))
            .await?
        {
            response::Result::Login(r) => Ok(r),
            other => Err(refusal("Login", other)),
        }
    }

    /// Splits into a coalescing writer and a frame reader; request ids for
    /// the duplex side are the caller's to choose.
    pub fn into_duplex(self) -> (quinn::Connection, FrameSink, FrameSource) {
        (self.connection, FrameSink::spawn(self.send), self.source)
    }
}

/// `Ed25519(device key, "Microbot device login v1" ‖ 0x00 ‖ challenge ‖ device_id BE)`.
pub fn login_signature(key: &SigningKey, challenge: &[u8], device_id: u64) -> Bytes {
    let mut message = microbot_client::auth::LOGIN_CONTEXT.to_vec();
    message.extend_from_slice(challenge);
    message.extend_from_slice(&device_id.to_be_bytes());
    Bytes::copy_from_slice(&key.sign(&message).to_bytes())
}

/// Shared handle to endpoints, for tasks.
pub type SharedEndpoints = Arc<Endpoints>;

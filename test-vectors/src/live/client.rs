//! A raw protocol client for the live-server scenario: QUIC with the server
//! certificate pinned by SHA-256 fingerprint, ALPN `microbot/1`, one request
//! stream of length-delimited frames (SPEC.md §12). It speaks frames, not
//! sessions, so the scenario can also send bad ones. Request ids, answers,
//! pushes and error frames go through the protocol crate's connection
//! machine ([`ClientConn`]); this file only moves its bytes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use microbot_protocol::conn::{AnswerError, ClientConn, ClientConnError, ClientEvent};
use microbot_protocol::transport::{Push, client_frame::Request, response};

/// How long one answer may take unless the caller says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Why the scenario's client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The fingerprint is not 64 hex digits.
    #[error("certificate fingerprint must be 64 hex digits")]
    BadFingerprint,
    /// QUIC or TLS set-up failed.
    #[error("connection: {0}")]
    Connect(String),
    /// The server closed the stream or connection.
    #[error("the server ended the connection")]
    Ended,
    /// The server did not connect or answer in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The server sent a frame that does not decode, or an unexpected one.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

fn client_config(addr: SocketAddr, fingerprint: &str) -> Result<quinn::ClientConfig, ClientError> {
    let server = microbot_client::ServerConfig::new(addr, fingerprint)
        .map_err(|_| ClientError::BadFingerprint)?;
    microbot_client::quic_client_config(&server).map_err(|e| ClientError::Connect(e.to_string()))
}

/// One connection with its request stream.
pub struct RawClient {
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    conn: ClientConn,
    pushes: VecDeque<Push>,
    timeout: Duration,
}

impl RawClient {
    /// Connects and opens the request stream (no Hello yet), waiting up to [`TIMEOUT`].
    pub async fn connect(addr: SocketAddr, fingerprint: &str) -> Result<Self, ClientError> {
        Self::connect_within(addr, fingerprint, TIMEOUT).await
    }

    /// [`RawClient::connect`] with `timeout` for the connection and every answer.
    pub async fn connect_within(
        addr: SocketAddr,
        fingerprint: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let bind: SocketAddr = if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|_| ClientError::Connect("bind address".into()))?;
        let mut endpoint =
            quinn::Endpoint::client(bind).map_err(|e| ClientError::Connect(e.to_string()))?;
        endpoint.set_default_client_config(client_config(addr, fingerprint)?);
        let connecting = endpoint
            .connect(addr, "localhost")
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let connection = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ClientError::TimedOut(timeout))?
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let (send, recv) = connection
            .open_bi()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        Ok(Self {
            _endpoint: endpoint,
            connection,
            send,
            recv,
            conn: ClientConn::new(16 * 1024 * 1024),
            pushes: VecDeque::new(),
            timeout,
        })
    }

    /// Writes raw bytes on the request stream (for bad-frame checks).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.send
            .write_all(bytes)
            .await
            .map_err(|_| ClientError::Ended)
    }

    /// Writes the frames the machine has queued.
    async fn flush(&mut self) -> Result<(), ClientError> {
        while let Some(transmit) = self.conn.poll_transmit() {
            self.send_raw(transmit.stream_bytes()).await?;
        }
        Ok(())
    }

    /// The machine's next event, reading from the stream as needed. A
    /// refused Hello is the server's error as an answer.
    async fn next_event(&mut self) -> Result<ClientEvent, ClientError> {
        loop {
            match self.conn.poll_event() {
                Ok(Some(event)) => return Ok(event),
                Ok(None) => {}
                Err(
                    ClientConnError::UnsupportedVersion(error)
                    | ClientConnError::HelloRefused(error),
                ) => {
                    return Ok(ClientEvent::Closing {
                        error,
                        abandoned: Vec::new(),
                    });
                }
                Err(error) => return Err(ClientError::Unexpected(error.to_string())),
            }
            match tokio::time::timeout(self.timeout, self.recv.read_chunk(64 * 1024, true)).await {
                Ok(Ok(Some(chunk))) => self
                    .conn
                    .handle_stream_bytes(&chunk.bytes)
                    .map_err(|e| ClientError::Unexpected(e.to_string()))?,
                Err(_) => return Err(ClientError::TimedOut(self.timeout)),
                _ => return Err(ClientError::Ended),
            }
        }
    }

    /// Sends one request and returns its result; pushes that arrive first are kept.
    pub async fn request(&mut self, request: Request) -> Result<response::Result, ClientError> {
        let id = self
            .conn
            .request(request)
            .map_err(|e| ClientError::Unexpected(e.to_string()))?;
        self.flush().await?;
        loop {
            match self.next_event().await? {
                ClientEvent::Answer { request_id, result } if request_id == id => {
                    return AnswerError::as_wire(result)
                        .ok_or_else(|| ClientError::Unexpected("response without result".into()));
                }
                ClientEvent::Hello {
                    response: hello, ..
                } => return Ok(response::Result::Hello(hello)),
                ClientEvent::Push(p) => self.pushes.push_back(p),
                // The server ends the connection with this error instead of answering.
                ClientEvent::Closing { error, .. } => {
                    return Ok(response::Result::Error(error.to_proto()));
                }
                other => return Err(ClientError::Unexpected(format!("{other:?}"))),
            }
        }
    }

    /// The next push, waiting up to the client's timeout.
    pub async fn next_push(&mut self) -> Result<Push, ClientError> {
        if let Some(push) = self.pushes.pop_front() {
            return Ok(push);
        }
        match self.next_event().await? {
            ClientEvent::Push(p) => Ok(p),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Waits for the server to close the connection; true when it did.
    pub async fn closed_by_server(&mut self) -> bool {
        while self.next_event().await.is_ok() {}
        tokio::time::timeout(self.timeout, self.connection.closed())
            .await
            .is_ok()
    }
}

//! The server role of the connection machine (SPEC.md §12.3, §12.4).
//!
//! Bytes of the request stream go in through
//! [`ServerConn::handle_stream_bytes`]; [`ServerConn::poll_request`] takes
//! one frame at a time and returns it validated as an [`Incoming`]. A
//! WebSocket message goes straight to [`ServerConn::accept_body`], and an
//! already decoded `ClientFrame` to [`ServerConn::accept`].
//!
//! Rules held here: the first frame is Hello and Hello comes once; a Hello
//! with an over-long `client_agent` or no version in common is refused;
//! the chosen version is the highest both sides speak. Every refusal is a
//! [`ServerConnError`] whose [`ServerConnError::to_wire`] is the closing
//! frame's error, and the machine is left as it was.
//!
//! Not owned here: answering requests (the server's dispatch), login, and
//! timers (Hello, login and frame deadlines are the I/O shell's).

use bytes::Bytes;

use crate::codec::FrameDecoder;
use crate::transport::{
    ClientFrame, Hello, Push, Response, ServerFrame, client_frame::Request, response, server_frame,
};

use super::{MAX_CLIENT_AGENT_LEN, SUPPORTED_VERSIONS, ServerConnError};

/// What the server role checks against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The versions this server speaks.
    pub supported_versions: Vec<u32>,
    /// The largest frame body accepted.
    pub max_frame_len: usize,
    /// The longest `Hello.client_agent` accepted, in bytes.
    pub max_client_agent_len: usize,
}

impl ServerConfig {
    /// [`SUPPORTED_VERSIONS`] and [`MAX_CLIENT_AGENT_LEN`] with this frame limit.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            supported_versions: SUPPORTED_VERSIONS.to_vec(),
            max_frame_len,
            max_client_agent_len: MAX_CLIENT_AGENT_LEN,
        }
    }
}

/// One validated client frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// The connection's Hello, accepted: answer it with a `HelloResponse`
    /// naming `version`.
    Hello {
        /// The frame's request id.
        request_id: u64,
        /// The highest version both sides speak.
        version: u32,
        /// The client's Hello.
        hello: Hello,
    },
    /// A request after Hello (never a Hello).
    Request {
        /// The frame's request id.
        request_id: u64,
        /// The request.
        request: Request,
    },
    /// A request whose oneof is empty or unknown to this build: answer
    /// `ERROR_CODE_UNKNOWN_REQUEST` and go on.
    Unknown {
        /// The frame's request id.
        request_id: u64,
    },
}

/// The server side of one connection; see the module documentation.
#[derive(Debug)]
pub struct ServerConn {
    config: ServerConfig,
    decoder: FrameDecoder,
    /// The version chosen by Hello; `None` while Hello is awaited.
    version: Option<u32>,
}

impl ServerConn {
    /// A machine awaiting Hello.
    pub fn new(config: ServerConfig) -> Self {
        Self {
            decoder: FrameDecoder::new(config.max_frame_len),
            config,
            version: None,
        }
    }

    /// Whether Hello has not been accepted yet.
    pub fn awaiting_hello(&self) -> bool {
        self.version.is_none()
    }

    /// The version Hello chose.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// Bytes received on the request stream.
    ///
    /// # Errors
    /// [`ServerConnError::Frame`] for an oversize or invalid length prefix;
    /// none of `bytes` is kept.
    pub fn handle_stream_bytes(&mut self, bytes: &[u8]) -> Result<(), ServerConnError> {
        self.decoder.push(bytes).map_err(ServerConnError::Frame)
    }

    /// Received bytes not yet taken as frames (a frame under way).
    pub fn buffered_len(&self) -> usize {
        self.decoder.buffered_len()
    }

    /// At the end of the stream: whether a frame was cut short.
    ///
    /// # Errors
    /// [`ServerConnError::Frame`] with `Truncated`.
    pub fn finish(&self) -> Result<(), ServerConnError> {
        self.decoder.finish().map_err(ServerConnError::Frame)
    }

    /// The next whole frame of the stream, validated; `Ok(None)` when more
    /// bytes are needed.
    ///
    /// # Errors
    /// See [`ServerConn::accept_body`]; the frame is consumed.
    pub fn poll_request(&mut self) -> Result<Option<Incoming>, ServerConnError> {
        match self.decoder.next_frame().map_err(ServerConnError::Frame)? {
            Some(body) => self.accept_body(body).map(Some),
            None => Ok(None),
        }
    }

    /// One whole frame body (a WebSocket message, or a frame taken from
    /// another decoder), validated.
    ///
    /// # Errors
    /// [`ServerConnError::Oversize`], [`ServerConnError::Malformed`], or
    /// see [`ServerConn::accept`].
    pub fn accept_body(&mut self, body: Bytes) -> Result<Incoming, ServerConnError> {
        if body.len() > self.config.max_frame_len {
            return Err(ServerConnError::Oversize {
                length: body.len(),
                max: self.config.max_frame_len,
            });
        }
        let frame: ClientFrame =
            prost::Message::decode(body).map_err(ServerConnError::Malformed)?;
        self.accept(frame)
    }

    /// A decoded frame, validated against the connection's phase.
    ///
    /// # Errors
    /// [`ServerConnError::HelloExpected`], [`ServerConnError::HelloTwice`],
    /// [`ServerConnError::ClientAgentTooLong`],
    /// [`ServerConnError::UnsupportedVersion`]; the machine is unchanged.
    pub fn accept(&mut self, frame: ClientFrame) -> Result<Incoming, ServerConnError> {
        let request_id = frame.request_id;
        match (frame.request, self.version) {
            (Some(Request::Hello(hello)), None) => {
                let version = self.negotiate(&hello)?;
                self.version = Some(version);
                Ok(Incoming::Hello {
                    request_id,
                    version,
                    hello,
                })
            }
            (_, None) => Err(ServerConnError::HelloExpected),
            (Some(Request::Hello(_)), Some(_)) => Err(ServerConnError::HelloTwice),
            (None, Some(_)) => Ok(Incoming::Unknown { request_id }),
            (Some(request), Some(_)) => Ok(Incoming::Request {
                request_id,
                request,
            }),
        }
    }

    fn negotiate(&self, hello: &Hello) -> Result<u32, ServerConnError> {
        if hello.client_agent.len() > self.config.max_client_agent_len {
            return Err(ServerConnError::ClientAgentTooLong {
                max: self.config.max_client_agent_len,
            });
        }
        hello
            .versions
            .iter()
            .copied()
            .filter(|v| self.config.supported_versions.contains(v))
            .max()
            .ok_or_else(|| ServerConnError::UnsupportedVersion {
                supported: self.config.supported_versions.clone(),
            })
    }
}

/// The `ServerFrame` answering request `request_id` with `result`.
pub fn answer_frame(request_id: u64, result: response::Result) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Response(Response {
            request_id,
            result: Some(result),
        })),
    }
}

/// The `ServerFrame` carrying a push.
pub fn push_frame(push: Push) -> ServerFrame {
    ServerFrame {
        kind: Some(server_frame::Kind::Push(push)),
    }
}

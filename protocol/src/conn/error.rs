//! The errors of the connection machine: one enum per role, and the reasons
//! an answer carries no result.
//!
//! A peer's bad bytes are always one of these, never a panic. The server's
//! errors all end the connection; [`ServerConnError::code`] is the code its
//! closing frame carries (SPEC.md §12.8). The client's errors say whether
//! they end the connection ([`ClientConnError::is_fatal`]).

use crate::codec::FrameError;
use crate::transport::ErrorCode;

use super::WireError;

/// Why an answer to a request is not a result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The server refused the request with this error.
    #[error("refused: {0}")]
    Refused(WireError),
    /// The `Response` had no result at all.
    #[error("a response without result")]
    NoResult,
}

impl AnswerError {
    /// An answer as the wire carried it, for callers that handle a refusal
    /// and a result in one `match`: a refusal becomes
    /// `response::Result::Error` again; `None` when the response had no
    /// result at all.
    pub fn as_wire(
        answer: Result<crate::transport::response::Result, Self>,
    ) -> Option<crate::transport::response::Result> {
        match answer {
            Ok(result) => Some(result),
            Err(Self::Refused(error)) => {
                Some(crate::transport::response::Result::Error(error.to_proto()))
            }
            Err(Self::NoResult) => None,
        }
    }
}

/// Why the client machine refused bytes, a frame or a call.
#[derive(Debug, thiserror::Error)]
pub enum ClientConnError {
    /// The byte stream cannot be split into frames (oversize or invalid
    /// length prefix): nothing of it was kept. Fatal.
    #[error("bad frame from the server: {0}")]
    Frame(#[source] FrameError),
    /// A frame body is not a `ServerFrame`; it was consumed, nothing else
    /// changed. Fatal (the server never sends one).
    #[error("bad frame from the server: {0}")]
    Malformed(#[source] prost::DecodeError),
    /// A `ServerFrame` with no kind set; ignored.
    #[error("a server frame without content")]
    EmptyFrame,
    /// An answer whose `request_id` is not pending (never sent through
    /// this machine, cancelled, or answered already); not fatal. A caller
    /// that frames some requests itself finds their answers here.
    #[error("an answer to request {request_id}, which is not pending")]
    UnknownRequestId {
        /// The id the answer carried.
        request_id: u64,
        /// The answer's result as it came.
        result: Option<Box<crate::transport::response::Result>>,
    },
    /// Hello was refused for want of a common version
    /// (`ERROR_CODE_UNSUPPORTED_VERSION`). Fatal.
    #[error("no protocol version in common with the server: {0}")]
    UnsupportedVersion(WireError),
    /// Hello was refused for another reason. Fatal.
    #[error("the server refused Hello: {0}")]
    HelloRefused(WireError),
    /// The server chose a version this client did not offer. Fatal.
    #[error("the server chose protocol version {chosen}, which was not offered")]
    VersionNotOffered {
        /// The version the server chose.
        chosen: u32,
    },
    /// The answer to Hello was not a `HelloResponse`. Fatal.
    #[error("the answer to Hello is not a HelloResponse")]
    UnexpectedHelloAnswer,
    /// A request too large to send; nothing was queued.
    #[error("request cannot be sent: {0}")]
    Encode(#[source] FrameError),
    /// The connection has ended (closing frame or a fatal error).
    #[error("the connection is closed")]
    Closed,
}

impl ClientConnError {
    /// Whether the connection cannot go on after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Self::EmptyFrame | Self::UnknownRequestId { .. } | Self::Encode(_)
        )
    }
}

/// Why the server machine refused a client's frame. Every variant ends the
/// connection with a closing frame of [`ServerConnError::code`].
#[derive(Debug, thiserror::Error)]
pub enum ServerConnError {
    /// The byte stream cannot be split into frames; nothing of it was kept.
    #[error("{0}")]
    Frame(#[source] FrameError),
    /// A frame body is not a `ClientFrame`.
    #[error("{0}")]
    Malformed(#[source] prost::DecodeError),
    /// A frame body longer than the limit (a WebSocket message).
    #[error("frame length {length} exceeds the maximum of {max} bytes")]
    Oversize {
        /// The body length.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The first frame was not Hello.
    #[error("the first frame must be Hello")]
    HelloExpected,
    /// Hello came a second time.
    #[error("Hello sent twice")]
    HelloTwice,
    /// `Hello.client_agent` is longer than allowed.
    #[error("Hello.client_agent must be at most {max} bytes")]
    ClientAgentTooLong {
        /// The limit, in bytes.
        max: usize,
    },
    /// No version in common.
    #[error("no common protocol version; this server speaks {supported:?}")]
    UnsupportedVersion {
        /// The versions this server speaks.
        supported: Vec<u32>,
    },
}

impl ServerConnError {
    /// The code of the closing frame (and of the QUIC close).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Frame(FrameError::Oversize { .. }) | Self::Oversize { .. } => {
                ErrorCode::FrameTooLarge
            }
            Self::Frame(_) | Self::Malformed(_) => ErrorCode::MalformedFrame,
            Self::HelloExpected | Self::HelloTwice => ErrorCode::ProtocolViolation,
            Self::ClientAgentTooLong { .. } => ErrorCode::InvalidArgument,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
        }
    }

    /// The error the closing frame carries: code, message, and with
    /// [`ServerConnError::UnsupportedVersion`] the supported versions.
    pub fn to_wire(&self) -> WireError {
        let mut wire = WireError::new(self.code(), self.to_string());
        if let Self::UnsupportedVersion { supported } = self {
            wire.supported_versions.clone_from(supported);
        }
        wire
    }
}

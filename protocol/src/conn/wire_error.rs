//! [`WireError`]: the typed view of a `transport::Error` (SPEC.md §12.8),
//! whether it came as a refused answer or as the closing frame.

use crate::transport::{self, ErrorCode};

/// An error the peer sent: in a `Response` (the request was refused) or as
/// `ServerFrame.closing` (the connection is ending).
///
/// `code` is typed; a code this build does not know is
/// [`ErrorCode::Unspecified`], and `raw_code` keeps the number that came.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct WireError {
    /// The error code, [`ErrorCode::Unspecified`] when unknown.
    pub code: ErrorCode,
    /// The code as it was on the wire.
    pub raw_code: i32,
    /// Human-readable detail; not for programs.
    pub message: String,
    /// When non-zero: milliseconds after which a retry may succeed.
    pub retry_after_ms: u64,
    /// With [`ErrorCode::UnsupportedVersion`]: the versions the server speaks.
    pub supported_versions: Vec<u32>,
    /// With [`ErrorCode::StaleGroupVersion`]: the group's current version.
    pub current_group_version: u64,
    /// The devices concerned (queue full, missing devices, …).
    pub device_ids: Vec<u64>,
}

impl WireError {
    /// An error with a code and a message, every other field empty.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            raw_code: code as i32,
            message: message.into(),
            retry_after_ms: 0,
            supported_versions: Vec::new(),
            current_group_version: 0,
            device_ids: Vec::new(),
        }
    }

    /// The protobuf message for this error (the raw code is kept).
    pub fn to_proto(&self) -> transport::Error {
        transport::Error::from(self.clone())
    }

    /// The `ServerFrame.closing` frame announcing this error.
    pub fn closing_frame(&self) -> transport::ServerFrame {
        transport::ServerFrame {
            kind: Some(transport::server_frame::Kind::Closing(self.to_proto())),
        }
    }
}

impl From<transport::Error> for WireError {
    fn from(error: transport::Error) -> Self {
        Self {
            code: ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Unspecified),
            raw_code: error.code,
            message: error.message,
            retry_after_ms: error.retry_after_ms,
            supported_versions: error.supported_versions,
            current_group_version: error.current_group_version,
            device_ids: error.device_ids,
        }
    }
}

impl From<WireError> for transport::Error {
    fn from(error: WireError) -> Self {
        Self {
            code: error.raw_code,
            message: error.message,
            retry_after_ms: error.retry_after_ms,
            supported_versions: error.supported_versions,
            current_group_version: error.current_group_version,
            device_ids: error.device_ids,
        }
    }
}

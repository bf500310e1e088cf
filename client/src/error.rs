//! Typed errors, one enum per kind of operation.
//!
//! Server refusals keep the server's [`ErrorCode`] so callers can switch on
//! it (SPEC.md §12: `transport.proto`, `ErrorCode`). Not owned here: what
//! each operation does.

use microbot_protocol::transport::ErrorCode;

/// A request the server answered with an error.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("server refused the request: {code:?}: {message}")]
pub struct ServerError {
    /// The server's error code.
    pub code: ErrorCode,
    /// Human-readable detail from the server (never contains secrets).
    pub message: String,
    /// When non-zero: milliseconds after which a retry may succeed.
    pub retry_after_ms: u64,
    /// Recipient devices concerned (queue full, unknown or removed device).
    pub device_ids: Vec<u64>,
}

impl ServerError {
    pub(crate) fn from_proto(error: microbot_protocol::transport::Error) -> Self {
        Self {
            code: ErrorCode::try_from(error.code).unwrap_or(ErrorCode::Unspecified),
            message: error.message,
            retry_after_ms: error.retry_after_ms,
            device_ids: error.device_ids,
        }
    }
}

/// Why talking to the server failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server address or certificate pin is unusable.
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// The QUIC/TLS connection could not be set up (server unreachable,
    /// certificate does not match the pinned fingerprint, …).
    #[error("cannot connect to the server: {0}")]
    Connect(String),
    /// The connection ended (closed by the server, network loss).
    #[error("connection to the server lost: {0}")]
    ConnectionLost(String),
    /// The server did not answer in time.
    #[error("the server did not answer in time")]
    Timeout,
    /// A frame could not be encoded or decoded.
    #[error("bad frame: {0}")]
    Frame(#[from] microbot_protocol::codec::FrameError),
    /// The server answered with an error.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The server answered with a result of the wrong kind.
    #[error("unexpected answer from the server (expected {expected})")]
    UnexpectedResponse {
        /// What was expected.
        expected: &'static str,
    },
    /// The server speaks no protocol version we speak.
    #[error("the server speaks no common protocol version")]
    UnsupportedVersion,
}

impl TransportError {
    /// The server's error code, when the server refused the request.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            TransportError::Server(error) => Some(error.code),
            _ => None,
        }
    }

    /// Whether the failure is about the network (retry after reconnecting),
    /// not about the request.
    pub fn is_connection_problem(&self) -> bool {
        matches!(
            self,
            TransportError::Connect(_)
                | TransportError::ConnectionLost(_)
                | TransportError::Timeout
        ) || matches!(
            self.server_code(),
            Some(ErrorCode::Unavailable | ErrorCode::RateLimited)
        )
    }
}

/// Why the local store failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage backend reported an error (disk full, I/O error, a
    /// locked or damaged file, the application's database failing); the
    /// detail is in the message. The operation changed nothing and may be
    /// retried once the cause is fixed.
    #[error("database error: {0}")]
    Database(DatabaseError),
    /// A stored value cannot be read back (corrupt, or written by a newer version).
    #[error("stored {what} is corrupt")]
    Corrupt {
        /// Which value.
        what: &'static str,
    },
    /// A sealed value does not open with this store's key.
    #[error("stored {what} failed authentication (tampered or wrong key)")]
    Tampered {
        /// Which value.
        what: &'static str,
    },
    /// The store holds no account yet.
    #[error("the store holds no account; enrol a device first")]
    NoAccount,
}

/// Why a store could not be opened.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store is encrypted and no passphrase was given.
    #[error("the store is encrypted: a passphrase is required")]
    PassphraseRequired,
    /// The passphrase does not open the store.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// A passphrase was given for a store that is not encrypted.
    #[error("the store is not encrypted; open it without a passphrase")]
    NotEncrypted,
    /// The key-derivation parameters are invalid.
    #[error("invalid key-derivation parameters: {0}")]
    KdfParams(String),
    /// The store's schema is newer than this library.
    #[error("store schema version {found} is newer than this library's {supported}")]
    NewerSchema {
        /// Version in the file.
        found: i64,
        /// Newest version this build reads.
        supported: i64,
    },
    /// The store already holds an account (enrol into a fresh file).
    #[error("the store already holds an account")]
    AlreadyEnrolled,
    /// There is no store at this path: check it, or enrol to create one.
    #[error("no store at {}: check the path, or enrol this device to create one", path.display())]
    NotFound {
        /// The path that was given.
        path: std::path::PathBuf,
    },
    /// Another handle (in this process or another) has this store open;
    /// close it first — one store runs one account at a time.
    #[error("the store at {} is in use by another handle", path.display())]
    InUse {
        /// The store's path.
        path: std::path::PathBuf,
    },
    /// A store in memory could not get its temporary staging directory
    /// (the system's temporary directory is missing or full).
    #[error("cannot create the temporary directory of a store in memory: {0}")]
    TempDir(std::io::Error),
    /// Any other store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A storage backend's own error, kept opaque so the SDK's public API
/// names no dependency's types: its message is the detail, and
/// [`std::error::Error::source`] reaches the backend's error. A backend
/// of the application's own ([`crate::store::Backend`]) wraps its errors
/// in one with [`DatabaseError::new`].
#[derive(Debug)]
pub struct DatabaseError(Box<dyn std::error::Error + Send + Sync>);

impl DatabaseError {
    /// Wraps a backend's error (or a message: `&str` and `String` convert).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// Why registration, confirmation or device enrolment failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The input is refused before anything is sent (see the message).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The server could not be reached or refused the request; switch on
    /// [`TransportError::server_code`] (`USERNAME_TAKEN`,
    /// `INVALID_CREDENTIALS`, `INVALID_SECOND_FACTOR`, `TOTP_REPLAYED`, …).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The local store could not be created.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Why a message could not be queued for sending.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The contact's safety number changed; call
    /// [`crate::Account::acknowledge_identity_change`] first.
    #[error("the safety number of {username} changed and is not acknowledged yet")]
    UntrustedIdentity {
        /// The contact.
        username: String,
    },
    /// The text is empty or only white space.
    #[error("the message is empty")]
    EmptyText,
    /// The text is longer than a message holds ([`crate::MAX_TEXT_LEN`],
    /// SPEC.md §11.2); longer text goes as a file.
    #[error(
        "the text is {len} bytes; a message holds at most {max} bytes (send longer text as a file)"
    )]
    TextTooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit, [`crate::MAX_TEXT_LEN`].
        max: usize,
    },
    /// The content breaks a protocol limit (SPEC.md §11.2).
    #[error("invalid content: {0}")]
    InvalidContent(#[from] microbot_protocol::ContentError),
    /// The target message is not known locally, or is not ours to edit or delete.
    #[error("no message of ours with this id")]
    UnknownMessage,
    /// The username is not a valid account name.
    #[error("invalid username")]
    InvalidUsername,
    /// The group is not known on this device.
    #[error("unknown group")]
    UnknownGroup,
    /// This account left or was removed from the group.
    #[error("this account is not a member of the group")]
    NotGroupMember,
    /// The local store failed; nothing was queued.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an operation that needs a live connection failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    /// The account is not connected right now.
    #[error("not connected to the server")]
    NotConnected,
    /// The request failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a page of history could not be read ([`crate::Account::history_page`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The cursor was handed out for another conversation: nothing was
    /// read. Page this conversation from its newest page (no cursor).
    #[error("the history cursor belongs to another conversation; start from the newest page")]
    ForeignCursor,
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a text is not a [`crate::HistoryCursor`]'s text form.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHistoryCursor {
    /// It does not start like a cursor this release writes (not a cursor,
    /// or one from a newer release): start from the newest page.
    #[error("not a history cursor (it should start with \"h1-\")")]
    UnknownForm,
    /// It starts like a cursor but is cut short or changed: hand back the
    /// text exactly as it was given out, or start from the newest page.
    #[error("the history cursor is damaged (cut short or changed)")]
    Malformed,
}

/// Why a safety-number change could not be acknowledged.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AcknowledgeError {
    /// There is no unacknowledged change for this contact.
    #[error("no pending safety-number change for {username}")]
    NothingPending {
        /// The contact.
        username: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a group operation failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The operation needs the connection and the account is not connected.
    #[error("not connected to the server")]
    NotConnected,
    /// The input is refused before anything is sent (see the message).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The group is not known on this device.
    #[error("unknown group")]
    UnknownGroup,
    /// This account is not (or no longer) a member of the group.
    #[error("this account is not a member of the group")]
    NotMember,
    /// Concurrent changes by other admins won every attempt.
    #[error("the group kept changing; gave up after {attempts} attempts")]
    Conflict {
        /// Attempts made.
        attempts: u32,
    },
    /// The server refused the change (switch on
    /// [`TransportError::server_code`]: `NOT_GROUP_ADMIN`,
    /// `UNKNOWN_ACCOUNT`, `INVALID_ARGUMENT`, …) or could not be reached.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The announcement to the members could not be queued.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<OnlineError> for GroupError {
    fn from(error: OnlineError) -> Self {
        match error {
            OnlineError::NotConnected => GroupError::NotConnected,
            OnlineError::Transport(error) => GroupError::Transport(error),
            OnlineError::Store(error) => GroupError::Store(error),
        }
    }
}

/// Why a file could not be sent or received.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// The transfer needs the connection and the account is not connected.
    #[error("not connected to the server")]
    NotConnected,
    /// Reading the file or writing the download failed.
    #[error("file error: {0}")]
    Io(#[from] std::io::Error),
    /// The file is too large for the attachment format.
    #[error("the file is too large")]
    TooLarge,
    /// The file changed size while it was being read.
    #[error("the file changed while it was being sent")]
    FileChanged,
    /// No file message with this id is known locally.
    #[error("no file message with this id")]
    UnknownMessage,
    /// The pointer is malformed (see the message).
    #[error("invalid attachment pointer: {0}")]
    InvalidPointer(&'static str),
    /// The downloaded bytes failed verification (tampered, truncated, or
    /// not the file the pointer names); nothing was written to the
    /// destination.
    #[error("the downloaded file failed verification: {0}")]
    Corrupt(#[from] microbot_crypto::attachment::AttachmentDecryptError),
    /// The server's or the decrypted size differs from the pointer's.
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What the pointer announced.
        expected: u64,
        /// What arrived.
        actual: u64,
    },
    /// The upload kept failing; it can be retried later.
    #[error("the upload did not complete after {attempts} attempts")]
    Incomplete {
        /// Attempts made.
        attempts: u32,
    },
    /// The server refused (`ATTACHMENT_TOO_LARGE`, `QUOTA_EXCEEDED`,
    /// `UNKNOWN_ATTACHMENT`, …: [`TransportError::server_code`]) or could
    /// not be reached.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The file message could not be queued.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a step of the background connection (draining the outbox,
/// receiving an envelope, refreshing a group) stopped early: the
/// connection or the local store failed. What was not done is done again
/// after reconnecting (an unacknowledged envelope is redelivered, a
/// queued send stays queued).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Interrupted {
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] TransportError),
    /// The local store failed.
    #[error("local store: {0}")]
    Store(#[from] StoreError),
}

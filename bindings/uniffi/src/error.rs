//! The one error type of the bindings: which kind of operation failed, and
//! the SDK's message saying why.

/// An error raised by any method (an exception in Python, Kotlin, Swift).
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum MicrobotError {
    /// A malformed address, conversation, message id or fingerprint.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What is wrong.
        message: String,
    },
    /// Registration, confirmation or enrolment was refused or failed.
    #[error("authentication failed: {message}")]
    Auth {
        /// Why.
        message: String,
    },
    /// The local store could not be opened.
    #[error("cannot open the store: {message}")]
    Open {
        /// Why.
        message: String,
    },
    /// A message could not be queued.
    #[error("cannot send: {message}")]
    Send {
        /// Why.
        message: String,
    },
    /// A request to the server failed.
    #[error("server request failed: {message}")]
    Transport {
        /// Why.
        message: String,
    },
    /// The local store failed.
    #[error("store error: {message}")]
    Store {
        /// Why.
        message: String,
    },
    /// A group operation failed.
    #[error("group operation failed: {message}")]
    Group {
        /// Why.
        message: String,
    },
    /// A file upload or download failed.
    #[error("file transfer failed: {message}")]
    Attachment {
        /// Why.
        message: String,
    },
    /// Not possible in this state (listener already set, runtime missing).
    #[error("not possible now: {message}")]
    State {
        /// Why.
        message: String,
    },
}

macro_rules! from_sdk {
    ($($sdk:ty => $variant:ident),* $(,)?) => {$(
        impl From<$sdk> for MicrobotError {
            fn from(error: $sdk) -> Self {
                MicrobotError::$variant { message: error.to_string() }
            }
        }
    )*};
}

from_sdk!(
    microbot_client::AuthError => Auth,
    microbot_client::OpenError => Open,
    microbot_client::SendError => Send,
    microbot_client::TransportError => Transport,
    microbot_client::OnlineError => Transport,
    microbot_client::StoreError => Store,
    microbot_client::GroupError => Group,
    microbot_client::AttachmentError => Attachment,
);

impl MicrobotError {
    pub(crate) fn invalid(message: impl std::fmt::Display) -> Self {
        MicrobotError::InvalidArgument {
            message: message.to_string(),
        }
    }

    pub(crate) fn state(message: impl std::fmt::Display) -> Self {
        MicrobotError::State {
            message: message.to_string(),
        }
    }
}

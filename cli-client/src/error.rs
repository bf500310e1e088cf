//! The CLI's errors: one line for the user and an exit code a script can
//! switch on. SDK errors are translated here, in one place, into what the
//! user can act on (wrong code, server unreachable, certificate changed,
//! unknown contact). Not owned here: printing (main.rs).

use microbot_client::{
    AcknowledgeError, AttachmentError, AuthError, ErrorCode, GroupError, OnlineError, OpenError,
    SendError, SendFailureReason, StoreError, TransportError,
};

/// Exit codes (also listed in `microbot --help`).
pub mod exit {
    /// Anything not listed below.
    pub const FAILURE: u8 = 1;
    /// Wrong password, TOTP code or recovery code; username taken.
    pub const AUTH: u8 = 3;
    /// The server could not be reached or the connection failed.
    pub const UNREACHABLE: u8 = 4;
    /// The server's certificate does not match the pinned fingerprint.
    pub const CERTIFICATE: u8 = 5;
    /// Unknown contact, group, message, device or profile.
    pub const NOT_FOUND: u8 = 6;
    /// `recv --count N` timed out before N events arrived.
    pub const TIMEOUT: u8 = 7;
}

/// Why a command failed. `Display` is the one line shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The TOTP or recovery code was refused.
    #[error("wrong code: {0}")]
    WrongCode(String),
    /// Username, password or (at enrolment, SPEC.md §13.6: one generic
    /// error, no password oracle) the code refused.
    #[error("wrong username, password or code")]
    WrongCredentials,
    /// Registration with a name that exists.
    #[error("username {0} is already taken")]
    UsernameTaken(String),
    /// The server could not be reached (or did not answer in time).
    #[error("server unreachable at {addr}: {reason}")]
    Unreachable {
        /// The server's address.
        addr: String,
        /// What failed.
        reason: String,
    },
    /// The certificate the server presented is not the pinned one.
    #[error(
        "the server's certificate does not match the pinned SHA-256 fingerprint \
         (certificate changed, or not the server you expect); refusing to connect"
    )]
    CertificateChanged,
    /// The server refused this device for good.
    #[error("the server refused this device ({0}); it was removed or is unknown: log in again")]
    DeviceRefused(String),
    /// A contact that is not known or has no account.
    #[error("unknown contact: {0}")]
    UnknownContact(String),
    /// A group that is not known.
    #[error("unknown group: {0}")]
    UnknownGroup(String),
    /// A message id that is not known (or not ours to change).
    #[error("unknown message: {0}")]
    UnknownMessage(String),
    /// A profile that has no account yet.
    #[error("profile {0} has no account yet: run `microbot register` or `microbot login` first")]
    NoProfile(String),
    /// A profile that already holds an account.
    #[error("profile {0} already holds an account; choose another with --profile")]
    ProfileExists(String),
    /// The safety number of the contact changed and is not accepted yet.
    #[error(
        "the safety number of {0} changed: compare it (`microbot verify {0}`), then accept it \
         with `microbot verify {0} --accept`"
    )]
    UntrustedIdentity(String),
    /// `recv --count N` ran out of time.
    #[error("timed out after receiving {got} of {wanted} events")]
    Timeout {
        /// Events received.
        got: u64,
        /// Events asked for.
        wanted: u64,
    },
    /// The store passphrase is missing or wrong.
    #[error("{0} (set MICROBOT_PASSPHRASE)")]
    Passphrase(String),
    /// Invalid input from the user.
    #[error("{0}")]
    Input(String),
    /// The server refused a request.
    #[error("the server refused: {0}")]
    Refused(String),
    /// A local file or terminal failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Anything else (one line from the SDK).
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::WrongCode(_) | CliError::WrongCredentials | CliError::UsernameTaken(_) => {
                exit::AUTH
            }
            CliError::Unreachable { .. } => exit::UNREACHABLE,
            CliError::CertificateChanged => exit::CERTIFICATE,
            CliError::UnknownContact(_)
            | CliError::UnknownGroup(_)
            | CliError::UnknownMessage(_)
            | CliError::NoProfile(_) => exit::NOT_FOUND,
            CliError::Timeout { .. } => exit::TIMEOUT,
            _ => exit::FAILURE,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CliError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Whether a connection failure text is the certificate pin refusing the
/// server. The SDK reports it inside `TransportError::Connect`'s text (the
/// verifier's message travels through rustls and quinn as a string).
pub fn is_pin_mismatch(reason: &str) -> bool {
    reason.contains("pinned fingerprint")
}

/// Translates a connection failure text (from a `Disconnected` event or a
/// `TransportError::Connect`).
pub fn connection_failure(addr: &str, reason: &str) -> CliError {
    if is_pin_mismatch(reason) {
        CliError::CertificateChanged
    } else {
        CliError::Unreachable {
            addr: addr.to_owned(),
            reason: reason
                .strip_prefix("cannot connect to the server: ")
                .unwrap_or(reason)
                .to_owned(),
        }
    }
}

/// Translates a transport error for the server at `addr`.
pub fn transport(addr: &str, error: &TransportError) -> CliError {
    match error {
        TransportError::Connect(reason) => connection_failure(addr, reason),
        TransportError::Timeout | TransportError::ConnectionLost(_) => CliError::Unreachable {
            addr: addr.to_owned(),
            reason: error.to_string(),
        },
        TransportError::Server(server) => match server.code {
            ErrorCode::InvalidSecondFactor => {
                CliError::WrongCode("the server refused the code".into())
            }
            ErrorCode::TotpReplayed => CliError::WrongCode(
                "this code was already used; wait for the next one (30 s)".into(),
            ),
            ErrorCode::InvalidCredentials => CliError::WrongCredentials,
            ErrorCode::UnknownAccount => CliError::UnknownContact(server.message.clone()),
            ErrorCode::UnknownGroup | ErrorCode::NotGroupMember => {
                CliError::UnknownGroup(server.message.clone())
            }
            ErrorCode::NotGroupAdmin => {
                CliError::Refused("only the group's admins may do that".into())
            }
            ErrorCode::UnknownAttachment => CliError::UnknownMessage(
                "the server no longer has this file (expired or never uploaded)".into(),
            ),
            ErrorCode::AttachmentTooLarge => {
                CliError::Refused("the file is larger than the server accepts".into())
            }
            ErrorCode::QuotaExceeded => {
                CliError::Refused("your attachment storage quota on the server is used up".into())
            }
            ErrorCode::UnknownDevice => CliError::Refused(format!(
                "unknown device{}",
                if server.message.is_empty() {
                    String::new()
                } else {
                    format!(": {}", server.message)
                }
            )),
            ErrorCode::RateLimited => CliError::Refused(format!(
                "too many requests; retry in {} s",
                server.retry_after_ms.div_ceil(1000).max(1)
            )),
            _ => CliError::Refused(format!("{:?}: {}", server.code, server.message)),
        },
        TransportError::Config(reason) => CliError::Input(reason.clone()),
        other => CliError::Other(other.to_string()),
    }
}

/// Translates a registration or enrolment error.
pub fn auth(addr: &str, username: &str, error: AuthError) -> CliError {
    match error {
        AuthError::InvalidInput(reason) => CliError::Input(reason.to_owned()),
        AuthError::Transport(TransportError::Server(ref server))
            if server.code == ErrorCode::UsernameTaken =>
        {
            CliError::UsernameTaken(username.to_owned())
        }
        AuthError::Transport(ref transport_error) => transport(addr, transport_error),
        AuthError::Open(open_error) => open(open_error),
        other => CliError::Other(other.to_string()),
    }
}

/// Translates a store-opening error.
pub fn open(error: OpenError) -> CliError {
    match error {
        OpenError::PassphraseRequired | OpenError::WrongPassphrase | OpenError::NotEncrypted => {
            CliError::Passphrase(error.to_string())
        }
        other => CliError::Other(format!("local store: {other}")),
    }
}

/// Translates a store error.
pub fn store(error: StoreError) -> CliError {
    CliError::Other(format!("local store: {error}"))
}

/// The one error for a text over [`microbot_client::MAX_TEXT_LEN`]
/// (`len` when known), pointing to `file send`.
pub fn text_too_long(target: &str, len: Option<usize>) -> CliError {
    let max = microbot_client::MAX_TEXT_LEN;
    let size = match len {
        Some(len) => format!("{len} bytes"),
        None => format!("more than {max} bytes"),
    };
    CliError::Input(format!(
        "the text is {size}; a message holds at most {max} bytes: send it as a file with \
         `microbot file send {target} PATH`"
    ))
}

/// Translates a send error for `target`.
pub fn send(target: &str, error: SendError) -> CliError {
    match error {
        SendError::EmptyText => CliError::Input("the message is empty; nothing was sent".into()),
        SendError::TextTooLong { len, .. } => text_too_long(target, Some(len)),
        SendError::UntrustedIdentity { username } => CliError::UntrustedIdentity(username),
        SendError::InvalidUsername => CliError::UnknownContact(target.to_owned()),
        SendError::UnknownMessage => {
            CliError::UnknownMessage("no message of yours with this number or id".into())
        }
        other => CliError::Other(other.to_string()),
    }
}

/// Translates an error of a request on the live connection.
pub fn online(addr: &str, error: OnlineError) -> CliError {
    match error {
        OnlineError::NotConnected => CliError::Unreachable {
            addr: addr.to_owned(),
            reason: "not connected".into(),
        },
        OnlineError::Transport(transport_error) => transport(addr, &transport_error),
        OnlineError::Store(store_error) => store(store_error),
        other => CliError::Other(other.to_string()),
    }
}

/// Translates a linking error (SPEC.md §12.14).
pub fn link(addr: &str, error: microbot_client::LinkError) -> CliError {
    use microbot_client::LinkError;
    match error {
        LinkError::InvalidCode => {
            CliError::Input("not a provisioning code; copy it again from the new device".into())
        }
        LinkError::NotConnected => CliError::Unreachable {
            addr: addr.to_owned(),
            reason: "not connected".into(),
        },
        LinkError::TimedOut => CliError::Other(
            "no account arrived in time (run `microbot devices link CODE` on an existing device)"
                .into(),
        ),
        LinkError::Transport(transport_error) => transport(addr, &transport_error),
        LinkError::Store(store_error) => store(store_error),
        other => CliError::Refused(other.to_string()),
    }
}

/// Translates a group operation's error for `group`.
pub fn group(addr: &str, group: &str, error: GroupError) -> CliError {
    match error {
        GroupError::NotConnected => CliError::Unreachable {
            addr: addr.to_owned(),
            reason: "not connected".into(),
        },
        GroupError::InvalidInput(reason) => CliError::Input(reason.to_owned()),
        GroupError::UnknownGroup => CliError::UnknownGroup(group.to_owned()),
        GroupError::NotMember => {
            CliError::UnknownGroup(format!("{group} (you are no longer a member)"))
        }
        GroupError::Transport(TransportError::Server(ref server))
            if server.code == ErrorCode::UnknownAccount =>
        {
            CliError::UnknownContact(format!(
                "{} (no such account on the server)",
                server.message
            ))
        }
        GroupError::Transport(ref transport_error) => transport(addr, transport_error),
        GroupError::Send(send_error) => send(group, send_error),
        GroupError::Store(store_error) => store(store_error),
        other => CliError::Other(other.to_string()),
    }
}

/// Translates a file transfer's error.
pub fn attachment(addr: &str, target: &str, error: AttachmentError) -> CliError {
    match error {
        AttachmentError::NotConnected => CliError::Unreachable {
            addr: addr.to_owned(),
            reason: "not connected".into(),
        },
        AttachmentError::Io(source) => CliError::io("file", source),
        AttachmentError::UnknownMessage => {
            CliError::UnknownMessage(format!("{target} (no file message with this id here)"))
        }
        AttachmentError::Transport(ref transport_error) => transport(addr, transport_error),
        AttachmentError::Send(send_error) => send(target, send_error),
        AttachmentError::Store(store_error) => store(store_error),
        other => CliError::Other(other.to_string()),
    }
}

/// Translates an acknowledgement error.
pub fn acknowledge(error: AcknowledgeError) -> CliError {
    match error {
        AcknowledgeError::NothingPending { username } => CliError::Input(format!(
            "the safety number of {username} did not change; nothing to accept"
        )),
        AcknowledgeError::Store(store_error) => store(store_error),
        other => CliError::Other(other.to_string()),
    }
}

/// Translates the reason of a `SendFailed` event for `target`.
pub fn send_failed(target: &str, reason: &SendFailureReason) -> CliError {
    match reason {
        SendFailureReason::UnknownAccount { .. }
        | SendFailureReason::ServerRefused {
            code: ErrorCode::UnknownAccount,
            ..
        } => CliError::UnknownContact(format!("{target} (no such account on the server)")),
        SendFailureReason::UnknownGroup { .. }
        | SendFailureReason::NotGroupMember { .. }
        | SendFailureReason::ServerRefused {
            code: ErrorCode::UnknownGroup | ErrorCode::NotGroupMember,
            ..
        } => CliError::UnknownGroup(format!("{target} (not a member)")),
        other => CliError::Other(format!("sending to {target} failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_send_is_translated_by_its_cause() {
        let unknown = SendFailureReason::UnknownAccount {
            username: "frank".into(),
        };
        assert!(matches!(
            send_failed("frank", &unknown),
            CliError::UnknownContact(what) if what.starts_with("frank")
        ));
        let removed = SendFailureReason::NotGroupMember {
            group_id: microbot_client::GroupId::from_bytes([1; 16]),
        };
        assert!(matches!(
            send_failed("#team", &removed),
            CliError::UnknownGroup(what) if what.starts_with("#team")
        ));
        let refused = SendFailureReason::ServerRefused {
            code: ErrorCode::NotGroupMember,
            message: "not a member".into(),
        };
        assert!(matches!(
            send_failed("#team", &refused),
            CliError::UnknownGroup(_)
        ));
        let full = SendFailureReason::ServerRefused {
            code: ErrorCode::QueueFull,
            message: "recipient queue full".into(),
        };
        let CliError::Other(text) = send_failed("bob", &full) else {
            panic!("a full queue is no unknown contact");
        };
        assert_eq!(
            text,
            "sending to bob failed: server refused the request: QueueFull: recipient queue full"
        );
    }
}

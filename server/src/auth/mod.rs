//! Authentication (SPEC.md §13): passwords, TOTP, recovery codes, device
//! enrolment and challenge login.
//!
//! Not owned here: storage (storage/), transport framing (connection.rs).

pub mod accounts;
pub mod devices;
mod error;
pub mod login_records;
pub mod password;
pub mod recovery;
pub mod totp;

pub use error::AuthError;

use microbot_protocol::transport::client_frame::Request;

/// What [`valid_username`] accepts, for error messages.
pub const USERNAME_RULE: &str = "username must be 3..=32 bytes of [a-z0-9_.-]";

/// Usernames: 3..=32 bytes of `[a-z0-9_.-]` (SPEC.md §13.1).
pub fn valid_username(username: &str) -> bool {
    (3..=32).contains(&username.len())
        && username.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

/// Passwords: 8..=1024 bytes.
pub fn valid_password(password: &str) -> bool {
    (8..=1024).contains(&password.len())
}

/// Every username a request carries, checked with [`valid_username`]
/// before any rate limiter, back-off record, Redis key or storage lookup
/// sees it (SPEC.md §12.12): an invalid one gets `INVALID_ARGUMENT` and
/// leaves no state behind. Requests that need a login are checked only on
/// a logged-in connection (before login they get `NOT_AUTHENTICATED`
/// without touching anything).
///
/// # Errors
/// [`AuthError::InvalidUsername`].
pub fn check_usernames(request: &Request, logged_in: bool) -> Result<(), AuthError> {
    let names: Box<dyn Iterator<Item = &String> + '_> = match request {
        Request::Register(r) => Box::new(std::iter::once(&r.username)),
        Request::ConfirmRegistration(r) => Box::new(std::iter::once(&r.username)),
        Request::EnrolDevice(r) => Box::new(std::iter::once(&r.username)),
        _ if !logged_in => Box::new(std::iter::empty()),
        Request::FetchPrekeys(r) => Box::new(std::iter::once(&r.username)),
        Request::SetGroupRole(r) => Box::new(std::iter::once(&r.username)),
        Request::CreateGroup(r) => Box::new(r.members.iter()),
        Request::AddGroupMembers(r) => Box::new(r.usernames.iter()),
        Request::RemoveGroupMembers(r) => Box::new(r.usernames.iter()),
        Request::Send(r) => Box::new(r.complete_accounts.iter()),
        _ => Box::new(std::iter::empty()),
    };
    for name in names {
        if !valid_username(name) {
            return Err(AuthError::InvalidUsername);
        }
    }
    Ok(())
}

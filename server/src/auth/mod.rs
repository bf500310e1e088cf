//! Authentication (SPEC.md §13): passwords, TOTP, recovery codes, device
//! enrolment and challenge login.
//!
//! Not owned here: storage (storage/), transport framing (connection.rs).

pub mod accounts;
pub mod devices;
pub mod password;
pub mod recovery;
pub mod totp;

/// Usernames: 3..=32 bytes of `[a-z0-9_.-]`.
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

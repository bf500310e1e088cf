//! TOTP second factor (SPEC.md §13.3): RFC 6238 with HMAC-SHA-1, 6 digits,
//! 30-second steps, the settings authenticator apps expect.
//!
//! A code is accepted for the current step or up to `skew` steps either
//! side; the accepted step must be newer than every step accepted before for
//! the account (the caller stores it), so a code is never accepted twice.

use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

/// Issuer shown by authenticator apps.
pub const ISSUER: &str = "Microbot";
/// Secret length in bytes (160 bits, RFC 4226's recommendation).
pub const SECRET_LEN: usize = 20;
/// Step length in seconds.
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: u8 = 6;

/// Errors building the TOTP enrolment.
#[derive(Debug, thiserror::Error)]
pub enum TotpSetupError {
    /// totp-rs refused the parameters (e.g. a ':' in the account name).
    #[error("cannot build TOTP: {0}")]
    Build(String),
}

/// A fresh random secret.
pub fn new_secret(rng: &dyn crate::clock::Rng) -> Zeroizing<Vec<u8>> {
    let mut secret = Zeroizing::new(vec![0u8; SECRET_LEN]);
    rng.fill(&mut secret);
    secret
}

fn totp(secret: &[u8], skew: u8, account: &str) -> Result<Totp, TotpSetupError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP_SECS)
        .with_skew(u16::from(skew))
        .with_secret(secret.to_vec())
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .build()
        .map_err(|e| TotpSetupError::Build(e.to_string()))
}

/// The `otpauth://` URI and base32 secret for an authenticator app.
///
/// # Errors
/// [`TotpSetupError`].
pub fn enrolment(secret: &[u8], username: &str) -> Result<(String, String), TotpSetupError> {
    let totp = totp(secret, 0, username)?;
    let url = totp
        .to_url()
        .map_err(|e| TotpSetupError::Build(e.to_string()))?;
    // totp-rs leaves out parameters equal to the defaults; some apps want them.
    let url = format!("{url}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}");
    Ok((url, totp.secret().to_base32()))
}

/// The time step `code` matches at `now_secs`, within `skew` steps, if any.
/// Does not check replay: the caller must require a step newer than the last
/// one accepted.
pub fn matching_step(secret: &[u8], code: &str, now_secs: u64, skew: u8) -> Option<i64> {
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, skew, "").ok()?;
    totp.check(code, now_secs)
        .and_then(|step| i64::try_from(step).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 Appendix B, SHA-1, T = 59 s: 94287082 (8 digits) -> last 6.
        let secret = b"12345678901234567890";
        assert_eq!(matching_step(secret, "287082", 59, 0), Some(1));
        assert_eq!(matching_step(secret, "287083", 59, 0), None);
        assert_eq!(matching_step(secret, "28708", 59, 0), None);
    }

    #[test]
    fn window_is_skew_steps_each_side() {
        let secret = new_secret(&crate::clock::SystemRng);
        let now = 1_000_000_000;
        let code_next = totp(&secret, 0, "")
            .unwrap()
            .generate(now + STEP_SECS)
            .to_string();
        let code_far = totp(&secret, 0, "")
            .unwrap()
            .generate(now + 2 * STEP_SECS)
            .to_string();
        assert!(matching_step(&secret, &code_next, now, 1).is_some());
        assert!(matching_step(&secret, &code_far, now, 1).is_none());
    }

    #[test]
    fn uri_names_all_parameters() {
        let (uri, b32) = enrolment(&new_secret(&crate::clock::SystemRng), "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/Microbot:alice?secret="));
        assert!(
            uri.contains("algorithm=SHA1") && uri.contains("digits=6") && uri.contains("period=30")
        );
        assert_eq!(b32.len(), 32);
    }
}

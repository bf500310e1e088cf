//! TOTP codes for an account this program holds the secret of — a bot, a
//! script, a test — so it can confirm its registration and enrol devices
//! without an authenticator app (SPEC.md §13: SHA-1, 6 digits, 30 s).
//!
//! The server accepts each time step once per account (a replayed code is
//! refused with `TOTP_REPLAYED`) and only within its skew window (±1 step
//! by default). [`TotpGenerator::next_code`] therefore hands out each step
//! once, starting with the current one, and waits when the next unused
//! step is not yet inside the window — so confirming a registration and
//! enrolling the first device back to back just works.
//!
//! People should keep using an authenticator app: whoever holds the
//! secret holds the second factor.

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

/// Seconds per TOTP step.
const STEP_SECS: u64 = 30;
/// Steps ahead of now the server accepts by default.
const SERVER_SKEW_STEPS: u64 = 1;

/// Why a TOTP secret could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TotpError {
    /// The secret is not base32 (copy `Registration::totp_secret_base32`).
    #[error("the TOTP secret is not base32")]
    NotBase32,
    /// The secret decodes but is unusable (too short).
    #[error("the TOTP secret is unusable: {0}")]
    Unusable(String),
}

/// Makes the codes of one account's TOTP secret, each time step once.
pub struct TotpGenerator {
    totp: totp_rs::Totp,
    next_step: u64,
}

impl fmt::Debug for TotpGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpGenerator")
            .field("next_step", &self.next_step)
            .finish_non_exhaustive()
    }
}

impl TotpGenerator {
    /// A generator for the base32 secret the server returned at
    /// registration ([`crate::Registration::totp_secret_base32`]).
    ///
    /// # Errors
    /// [`TotpError`] when the text is not a usable secret.
    pub fn from_base32(secret: &str) -> Result<Self, TotpError> {
        let bytes = Zeroizing::new(
            totp_rs::Secret::try_from_base32(secret.trim())
                .map_err(|_| TotpError::NotBase32)?
                .as_bytes()
                .to_vec(),
        );
        let totp = totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(6)
            .with_step_duration(STEP_SECS)
            .with_secret(bytes.to_vec())
            .build()
            .map_err(|e| TotpError::Unusable(e.to_string()))?;
        Ok(Self { totp, next_step: 0 })
    }

    /// The code for the time `unix_secs` (seconds since the Unix epoch).
    pub fn code_at(&self, unix_secs: u64) -> Zeroizing<String> {
        Zeroizing::new(self.totp.generate(unix_secs).to_string())
    }

    /// A code whose time step this generator has not handed out before:
    /// the current step, or the next unused one, waiting until the server
    /// accepts it (at most one step ahead of its clock).
    pub async fn next_code(&mut self) -> Zeroizing<String> {
        loop {
            let now = unix_secs();
            let current = now / STEP_SECS;
            let step = self.next_step.max(current);
            if step <= current + SERVER_SKEW_STEPS {
                self.next_step = step + 1;
                return self.code_at(step * STEP_SECS);
            }
            // Sleep until `step` is one step ahead of the clock.
            let opens_at = (step - SERVER_SKEW_STEPS) * STEP_SECS;
            tokio::time::sleep(Duration::from_secs(opens_at.saturating_sub(now).max(1))).await;
        }
    }
}

fn unix_secs() -> u64 {
    crate::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238's SHA-1 secret, "12345678901234567890", in base32.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn codes_match_rfc_6238() {
        let totp = TotpGenerator::from_base32(RFC_SECRET).unwrap();
        // RFC 6238 appendix B, truncated to 6 digits.
        assert_eq!(totp.code_at(59).as_str(), "287082");
        assert_eq!(totp.code_at(1_111_111_109).as_str(), "081804");
        assert_eq!(totp.code_at(2_000_000_000).as_str(), "279037");
    }

    #[test]
    fn a_bad_secret_is_refused() {
        assert_eq!(
            TotpGenerator::from_base32("not base32!").unwrap_err(),
            TotpError::NotBase32
        );
    }

    #[tokio::test]
    async fn each_step_is_handed_out_once_and_never_beyond_the_window() {
        let mut totp = TotpGenerator::from_base32(RFC_SECRET).unwrap();
        let before = unix_secs() / STEP_SECS;
        let first = totp.next_code().await;
        let second = totp.next_code().await;
        // The current step, then the next one (inside the ±1 window, so
        // neither call waits); a step boundary may pass in between.
        let start = (before..=before + 1)
            .find(|step| first == totp.code_at(step * STEP_SECS))
            .expect("the first code is for the current step");
        assert_eq!(second, totp.code_at((start + 1) * STEP_SECS));
        assert_eq!(totp.next_step, start + 2);
    }
}

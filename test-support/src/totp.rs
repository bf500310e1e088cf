//! An authenticator app for tests: RFC 6238 codes from a registration's
//! base32 secret, each time step handed out once.

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The authenticator app: every code is from a fresh time step (a server
/// accepts each step once; [`crate::test_config`] accepts ±10 steps).
pub struct Authenticator {
    totp: totp_rs::Totp,
    next_step: u64,
}

impl Authenticator {
    /// An authenticator for the base32 `secret` a registration printed.
    pub fn from_base32(secret: &str) -> Self {
        let bytes = totp_rs::Secret::try_from_base32(secret)
            .unwrap()
            .as_bytes()
            .to_vec();
        Self {
            totp: totp_rs::Builder::new().with_secret(bytes).build().unwrap(),
            next_step: now_secs() / 30,
        }
    }

    /// The code for the time `secs` (seconds since the Unix epoch), used or
    /// not.
    pub fn code_at(&self, secs: u64) -> String {
        self.totp.generate(secs).to_string()
    }

    /// The code of the next unused time step (never earlier than now).
    pub fn fresh(&mut self) -> String {
        let step = self.next_step.max(now_secs() / 30);
        self.next_step = step + 1;
        self.totp.generate(step * 30).to_string()
    }

    /// A six-digit code that no step within ±12 of now produces (so a
    /// server with [`crate::test_config`] refuses it).
    pub fn wrong(&self) -> String {
        let now = now_secs() / 30;
        let valid: Vec<String> = (now.saturating_sub(12)..=now + 12)
            .map(|step| self.totp.generate(step * 30).to_string())
            .collect();
        (0..1_000_000u32)
            .map(|n| format!("{n:06}"))
            .find(|code| !valid.contains(code))
            .unwrap()
    }
}

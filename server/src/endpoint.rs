//! The QUIC endpoint and its certificate (SPEC.md §12.1, §12.2).
//!
//! TLS 1.3 only, ALPN `microbot/1`. Without configured PEM files the server
//! generates a self-signed certificate (ECDSA P-256, SAN = `server_name`) on
//! first start and keeps it as `cert.pem` / `key.pem` in the data directory,
//! so its fingerprint stays stable across restarts. Clients pin the
//! certificate by its fingerprint: lowercase hex of SHA-256 over the leaf
//! certificate's DER encoding.
//!
//! Not owned here: what happens on a connection (connection.rs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// ALPN protocol id of protocol version 1 (defined once, in the protocol crate).
pub use microbot_protocol::conn::ALPN;
/// Generated certificate file in the data directory.
pub const CERT_FILE: &str = "cert.pem";
/// Generated private key file in the data directory.
pub const KEY_FILE: &str = "key.pem";

/// Errors setting up the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// A certificate or key file could not be read or written.
    #[error("certificate file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file holds no usable certificate or key.
    #[error("certificate file {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Certificate generation failed.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate/key pair.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn refused the TLS configuration.
    #[error("QUIC TLS configuration: {0}")]
    Quic(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The certificate chain and key the server presents.
pub struct ServerIdentity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: PrivateKeyDer<'static>,
    /// Lowercase hex SHA-256 of the leaf DER.
    pub fingerprint: String,
    /// Whether the certificate was generated during this call.
    pub generated: bool,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("fingerprint", &self.fingerprint)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

/// Lowercase hex SHA-256 of a DER certificate: the pin clients compare.
pub fn fingerprint(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EndpointError + '_ {
    move |source| EndpointError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read_pem(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), EndpointError> {
    let pem_err = |path: &Path, reason: String| EndpointError::Pem {
        path: path.to_owned(),
        reason,
    };
    let cert_bytes = std::fs::read(cert_path).map_err(io_err(cert_path))?;
    let chain = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(cert_path, "no CERTIFICATE block".to_owned()));
    }
    let key_bytes = zeroize::Zeroizing::new(std::fs::read(key_path).map_err(io_err(key_path))?);
    let key =
        PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| pem_err(key_path, e.to_string()))?;
    Ok((chain, key))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), EndpointError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(contents).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Loads the configured PEM files, or the generated certificate from the
/// data directory, generating it on first start.
///
/// # Errors
/// [`EndpointError`].
pub fn load_identity(config: &Config) -> Result<ServerIdentity, EndpointError> {
    let (cert_path, key_path, generated) = match (&config.cert_pem, &config.key_pem) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
        _ => {
            let cert = config.data_dir.join(CERT_FILE);
            let key = config.data_dir.join(KEY_FILE);
            let generated = if cert.exists() && key.exists() {
                false
            } else {
                let certified =
                    rcgen::generate_simple_self_signed(vec![config.server_name.clone()])?;
                let key_pem = zeroize::Zeroizing::new(certified.signing_key.serialize_pem());
                // Key first: a crash in between leaves no certificate without key.
                if key.exists() {
                    std::fs::remove_file(&key).map_err(io_err(&key))?;
                }
                write_private(&key, key_pem.as_bytes())?;
                std::fs::write(&cert, certified.cert.pem()).map_err(io_err(&cert))?;
                true
            };
            (cert, key, generated)
        }
    };
    let (chain, key) = read_pem(&cert_path, &key_path)?;
    let fingerprint = chain
        .first()
        .map(|c| fingerprint(c.as_ref()))
        .unwrap_or_default();
    Ok(ServerIdentity {
        chain,
        key,
        fingerprint,
        generated,
    })
}

/// Builds the quinn server configuration (TLS 1.3, ALPN `microbot/1`).
///
/// # Errors
/// [`EndpointError::Tls`] / [`EndpointError::Quic`].
pub fn server_config(
    config: &Config,
    identity: &ServerIdentity,
) -> Result<quinn::ServerConfig, EndpointError> {
    let tls = tls_config(identity, ALPN)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| EndpointError::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // One request stream per connection and up to 3 concurrent attachment
    // streams. No unidirectional streams.
    transport.max_concurrent_bidi_streams(4u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    let idle = quinn::IdleTimeout::try_from(Duration::from_secs(config.idle_timeout_secs))
        .map_err(|e| EndpointError::Quic(e.to_string()))?;
    transport.max_idle_timeout(Some(idle));
    transport.mtu_discovery_config(Some(mtu_discovery()));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// The server's TLS settings, for QUIC and for the WebSocket listener:
/// TLS 1.3 only, the server's certificate, one ALPN protocol, and the
/// cipher suites in the server's order ([`cipher_suites`]).
///
/// # Errors
/// [`EndpointError::Tls`].
pub fn tls_config(
    identity: &ServerIdentity,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, EndpointError> {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: cipher_suites(),
        ..rustls::crypto::ring::default_provider()
    };
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls.ignore_client_order = true;
    Ok(tls)
}

/// TLS 1.3 suites, the server's choice first: AES-128-GCM with SHA-256.
/// rustls (and so the client SDK) lists AES-256-GCM with SHA-384 first,
/// and this machine, like most, hashes SHA-256 in hardware (SHA-NI) but
/// SHA-384 in software: the key schedule's HKDF alone was 6 % of the
/// server's CPU in a login storm. AES-128 is TLS 1.3's mandatory suite,
/// the one QUIC's Initial packets use anyway, and costs four AES rounds
/// less per block on every packet. The others stay acceptable.
fn cipher_suites() -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite;
    vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
    ]
}

/// Path MTU discovery with the project's probe step
/// ([`microbot_protocol::conn::MTU_PROBE_STEP`]: the upper bound first).
fn mtu_discovery() -> quinn::MtuDiscoveryConfig {
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.minimum_change(microbot_protocol::conn::MTU_PROBE_STEP);
    mtu
}

/// Length of the connection IDs this server issues, all of it random.
const CONNECTION_ID_LEN: usize = 8;

/// The endpoint settings: quinn's defaults except connection IDs, which are
/// 8 random bytes instead of quinn's default of a 3-byte random nonce plus a
/// keyed hash of it. The server sends a QUIC Retry to every connection
/// attempt ([`crate::limits::Limits::wants_retry`]), and the connection ID a
/// Retry hands out is not checked against those already in use (quinn-proto
/// 0.11 `Endpoint::retry`): with 2^24 possible nonces, a server holding
/// thousands of connections handed one out again in about one load run in
/// two, and the second client's handshake was routed to the first
/// connection and never answered ("connection: timed out" after the idle
/// timeout). With 64 random bits that takes about 2^32 live connections.
fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config.cid_generator(connection_ids);
    config
}

/// The generator of the connection IDs this server issues (see
/// [`endpoint_config`]).
fn connection_ids() -> Box<dyn quinn::ConnectionIdGenerator> {
    Box::new(quinn_proto::RandomConnectionIdGenerator::new(
        CONNECTION_ID_LEN,
    ))
}

/// Binds the endpoint on `udp` with [`endpoint_config`].
fn endpoint_on(
    udp: std::net::UdpSocket,
    server_config: quinn::ServerConfig,
) -> std::io::Result<quinn::Endpoint> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for the QUIC endpoint"))?;
    quinn::Endpoint::new(endpoint_config(), Some(server_config), udp, runtime)
}

/// Binds the endpoint.
///
/// # Errors
/// [`EndpointError::Bind`].
pub fn bind(
    config: &Config,
    server_config: quinn::ServerConfig,
) -> Result<quinn::Endpoint, EndpointError> {
    std::net::UdpSocket::bind(config.listen)
        .and_then(|udp| endpoint_on(udp, server_config))
        .map_err(|source| EndpointError::Bind {
            addr: config.listen,
            source,
        })
}

/// Binds the QUIC endpoint and the WebSocket listener (SPEC.md §12.13).
/// With `ws_listen` unset the TCP listener takes the UDP socket's port
/// number; when `listen` asks for any port (0) and that number is taken on
/// TCP, both are bound again on another port (up to 32 tries). If the
/// number stays taken on TCP, the server starts without the WebSocket
/// listener (a warning is logged); an explicit `ws_listen` must bind.
///
/// # Errors
/// [`EndpointError::Bind`]; an invalid `ws_listen` is refused by
/// [`Config::validate`] first.
pub fn bind_with_websocket(
    config: &Config,
    server_config: quinn::ServerConfig,
) -> Result<(quinn::Endpoint, Option<std::net::TcpListener>), EndpointError> {
    use crate::config::WsListen;
    let bind_err = |addr| move |source| EndpointError::Bind { addr, source };
    let tcp = |addr: std::net::SocketAddr| {
        std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(bind_err(addr))
    };
    match config.ws_listen().unwrap_or(WsListen::Off) {
        WsListen::Off => Ok((bind(config, server_config)?, None)),
        WsListen::At(addr) => {
            let listener = tcp(addr)?;
            Ok((bind(config, server_config)?, Some(listener)))
        }
        WsListen::SameAsQuic => {
            let mut tries = 0;
            loop {
                tries += 1;
                let udp =
                    std::net::UdpSocket::bind(config.listen).map_err(bind_err(config.listen))?;
                let bound = udp.local_addr().map_err(bind_err(config.listen))?;
                let listener = match tcp(bound) {
                    Ok(listener) => Some(listener),
                    Err(EndpointError::Bind { source, .. })
                        if config.listen.port() == 0
                            && source.kind() == std::io::ErrorKind::AddrInUse
                            && tries < 32 =>
                    {
                        continue;
                    }
                    Err(error) => {
                        // The implicit default is best-effort: QUIC still
                        // serves; an explicit `ws_listen` is required instead.
                        tracing::warn!(%error, "WebSocket listener not started (its TCP port is taken); set ws_listen to choose one");
                        None
                    }
                };
                let endpoint = endpoint_on(udp, server_config).map_err(bind_err(bound))?;
                return Ok((endpoint, listener));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::connection_ids;
    use std::sync::Arc;
    use std::time::Duration;

    /// Default settings with a data directory of their own, and the
    /// certificate the server generates in it.
    fn generated_identity() -> (
        tempfile::TempDir,
        crate::config::Config,
        super::ServerIdentity,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = crate::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..crate::config::Config::default()
        };
        let identity = super::load_identity(&config).expect("identity");
        (dir, config, identity)
    }

    /// A client that prefers AES-256 (rustls' default order, the client
    /// SDK's) gets AES-128 with SHA-256: the server's order decides.
    #[test]
    fn the_server_picks_aes_128_with_sha_256() {
        let (_dir, config, identity) = generated_identity();
        let server_tls = super::tls_config(&identity, super::ALPN).expect("server TLS");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(identity.chain[0].clone()).expect("root");
        let client_tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
        assert_eq!(
            client_tls.crypto_provider().cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "the client asks for AES-256 first"
        );
        let name = rustls::pki_types::ServerName::try_from(config.server_name.clone())
            .expect("server name");
        let mut client = rustls::ClientConnection::new(Arc::new(client_tls), name).expect("client");
        let mut server = rustls::ServerConnection::new(Arc::new(server_tls)).expect("server");
        // Shuttle the handshake's bytes between the two ends in memory.
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).expect("client writes");
            }
            server.read_tls(&mut wire.as_slice()).expect("server reads");
            server.process_new_packets().expect("server processes");
            let mut wire = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut wire).expect("server writes");
            }
            client.read_tls(&mut wire.as_slice()).expect("client reads");
            client.process_new_packets().expect("client processes");
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert!(!client.is_handshaking(), "the handshake completes");
        assert_eq!(
            client.negotiated_cipher_suite().map(|s| s.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
    }

    /// A loopback path carries 1452 bytes: both ends find it with one
    /// probe each (quinn's default search sends four), using the server's
    /// transport settings and the client SDK's.
    #[tokio::test]
    async fn path_mtu_is_found_with_one_probe_each_way() {
        let (_dir, config, identity) = generated_identity();
        let server_config = super::server_config(&config, &identity).expect("server config");
        let server = quinn::Endpoint::server(server_config, ([127, 0, 0, 1], 0).into())
            .expect("server endpoint");
        let address = server.local_addr().expect("address");
        let accepting = tokio::spawn(async move {
            let incoming = server.accept().await.expect("a connection");
            let connection = incoming.await.expect("handshake");
            (server, connection)
        });
        let pin = microbot_client::ServerConfig::new(address, &identity.fingerprint)
            .expect("client settings");
        let mut client = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).expect("client");
        client.set_default_client_config(
            microbot_client::quic_client_config(&pin).expect("client config"),
        );
        let connection = client
            .connect(address, "localhost")
            .expect("connect")
            .await
            .expect("handshake");
        let (_server, accepted) = accepting.await.expect("accept task");
        for (side, conn) in [("client", &connection), ("server", &accepted)] {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while conn.stats().path.current_mtu < 1452 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let path = conn.stats().path;
            assert_eq!(path.current_mtu, 1452, "{side}");
            assert_eq!(path.sent_plpmtud_probes, 1, "{side}");
        }
    }

    /// A Retry's connection ID is not checked against those in use, so
    /// issued IDs must not repeat among many thousands. quinn's default
    /// generator (a 3-byte nonce) repeats about 300 times in 100 000.
    #[test]
    fn issued_connection_ids_do_not_repeat_among_a_hundred_thousand() {
        let mut generator = connection_ids();
        let mut seen = std::collections::HashSet::new();
        let repeats = (0..100_000)
            .filter(|_| !seen.insert(generator.generate_cid()))
            .count();
        assert_eq!(repeats, 0);
        assert_eq!(generator.cid_len(), super::CONNECTION_ID_LEN);
    }

    /// The same test against quinn's default shows what it guards against.
    #[test]
    fn quinns_default_generator_repeats_among_a_hundred_thousand() {
        let mut generator = quinn_proto::HashedConnectionIdGenerator::default();
        let mut seen = std::collections::HashSet::new();
        let repeats = (0..100_000)
            .filter(|_| !seen.insert(quinn::ConnectionIdGenerator::generate_cid(&mut generator)))
            .count();
        assert!(repeats > 0);
    }
}

//! Accepting admin connections: plain TCP on loopback, TLS elsewhere
//! (SPEC.md §18.7), one HTTP/1.1 request per connection.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::endpoint::{EndpointError, ServerIdentity};
use crate::state::ServerState;

/// Time a client has for its TLS handshake and request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin listener's TLS 1.3 acceptor (the server's certificate).
#[derive(Clone)]
pub struct AdminTls(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminTls")
    }
}

/// The TLS 1.3 acceptor for the admin listener, with the server's
/// certificate.
///
/// # Errors
/// The certificate or key is not usable by rustls.
pub fn tls_acceptor(identity: &ServerIdentity) -> Result<AdminTls, EndpointError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(AdminTls(tokio_rustls::TlsAcceptor::from(Arc::new(tls))))
}

/// Serves the admin router on `listener` (TLS when `tls` is set) until
/// `stop` fires. `analytics` is the node's analytics feed (run by the
/// server), flushed before a report; `rollups` the node's chart history
/// (fed by [`super::cluster::publish_loop`]).
pub async fn serve(
    state: Arc<ServerState>,
    listener: TcpListener,
    tls: Option<AdminTls>,
    analytics: Arc<super::analytics::Flusher>,
    rollups: Arc<super::rollups::Rollups>,
    mut stop: watch::Receiver<bool>,
) {
    let router = super::router(state, tls.is_some(), rollups, analytics);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(router.clone(), stream, tls.clone(), stop.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "admin listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

async fn connection(
    router: axum::Router,
    stream: TcpStream,
    tls: Option<AdminTls>,
    stop: watch::Receiver<bool>,
) {
    match tls {
        None => http(router, stream, stop).await,
        Some(AdminTls(acceptor)) => {
            match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => http(router, stream, stop).await,
                Ok(Err(error)) => tracing::debug!(%error, "admin TLS handshake failed"),
                Err(_) => tracing::debug!("admin TLS handshake timed out"),
            }
        }
    }
}

async fn http<S>(router: axum::Router, stream: S, mut stop: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(router);
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .header_read_timeout(HEAD_TIMEOUT)
        .timer(hyper_util::rt::TokioTimer::new())
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "admin connection ended with an error");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

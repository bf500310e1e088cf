//! A connected device notices a node that died without a word (a `kill -9`
//! of its host, a partition) within the SDK's QUIC idle timeout (issue 24),
//! not after the QUIC default of 30 s: the client sends keep-alives every
//! few seconds and offers a short idle timeout, so it can move to another
//! node (SPEC.md §12.1). The node is reached through a UDP relay that
//! starts dropping every datagram, as a dead host does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{CHEAP_KDF, TestServer, fast_config, register, try_enrol, wait_connected};
use microbot_client::{
    ConnectionState, Event, IdentitySource, ServerConfig, StoreConfig, Transport,
};
use tokio::net::UdpSocket;

/// A one-client UDP relay to `upstream`; forwards while `alive` is true and
/// drops everything after.
async fn relay(upstream: SocketAddr, alive: Arc<AtomicBool>) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(upstream).await.unwrap();
    let addr = front.local_addr().unwrap();
    let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
    {
        let (front, back, alive, client) = (
            Arc::clone(&front),
            Arc::clone(&back),
            Arc::clone(&alive),
            Arc::clone(&client),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                if alive.load(Ordering::SeqCst) {
                    let _ = back.send(&buf[..n]).await;
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = back.recv(&mut buf).await {
            let to = *client.lock().unwrap();
            if let Some(to) = to
                && alive.load(Ordering::SeqCst)
            {
                let _ = front.send_to(&buf[..n], to).await;
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_node_is_noticed_within_the_idle_timeout() {
    let server = TestServer::start().await;
    let alive = Arc::new(AtomicBool::new(true));
    let through = relay(server.addr, Arc::clone(&alive)).await;
    let mut user = register(&server, "nadia").await;
    let relayed = ServerConfig::new(through, &server.config.fingerprint_hex())
        .unwrap()
        .with_transport(Transport::Quic);
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(dir.path().join("client.sqlite3")).with_kdf(CHEAP_KDF);
    let (account, mut events) = try_enrol(
        &relayed,
        &store,
        &mut user,
        IdentitySource::New,
        fast_config(),
    )
    .await
    .unwrap();
    account.connect();
    wait_connected(&mut events).await;

    // The node's host dies: nothing more comes back, nothing is closed.
    alive.store(false, Ordering::SeqCst);
    let noticed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.next().await {
                Some(Event::Connection(ConnectionState::Disconnected { reason, .. })) => {
                    return reason;
                }
                Some(_) => {}
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("the dead node was not noticed within 20 s (the QUIC default idle timeout is 30 s)");
    assert!(!noticed.is_empty());
    account.disconnect().await;
    server.stop().await;
}

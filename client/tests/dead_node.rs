//! A connected device notices a node that died without a word (a `kill -9`
//! of its host, a partition) within the SDK's QUIC idle timeout (issue 24),
//! not after the QUIC default of 30 s: the client sends keep-alives every
//! few seconds and offers a short idle timeout, so it can move to another
//! node (SPEC.md §12.1). The node is reached through a UDP relay that
//! starts dropping every datagram, as a dead host does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;

use std::time::Duration;

use common::{CHEAP_KDF, TestServer, fast_config, register, try_enrol, wait_connected};
use microbot_client::{ConnectionState, Event, IdentitySource, StoreConfig};
use microbot_test_support::UdpLink;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dead_node_is_noticed_within_the_idle_timeout() {
    let server = TestServer::start().await;
    let link = UdpLink::start(server.addr).await;
    let mut user = register(&server, "nadia").await;
    let relayed = link.server_config(&server.config);
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
    link.cut();
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

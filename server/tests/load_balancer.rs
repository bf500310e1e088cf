//! Nodes behind a load balancer, grown and shrunk under traffic
//! (docs/OPERATIONS.md, SPEC.md §12.9): Debian's nginx with its stream
//! module fronts the cluster at one address, TCP (the WebSocket transport,
//! TLS passed through so the pinned certificate is the nodes' own) by
//! least connections and UDP (QUIC) by a consistent hash of the client's
//! address. The cluster starts as one node; two nodes join (nginx
//! reloaded) and take the next connections; then the first two leave the
//! way an operator removes a node: out of nginx first, then SIGTERM, so
//! they drain and tell their clients to come back, and the clients land
//! on the node that is left. Messages flow in every phase, and every one
//! is acknowledged and delivered exactly once.
//! Needs `MICROBOT_TEST_POSTGRES`, `MICROBOT_TEST_REDIS` and
//! `MICROBOT_NGINX` (`.ci/run` sets them); skipped with a note otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::cluster as support;
use crate::support::nginx;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use microbot_client::{Conversation, ServerConfig, Transport};
use support::{ClusterSpec, Device, Ledger, Node, Schema, services, tcp_connections_to, user};

/// nginx's stream configuration: `front` (TCP and UDP) to `nodes`.
fn balancer(front: SocketAddr, nodes: Vec<SocketAddr>) -> impl Fn(&Path) -> String {
    move |_| {
        let servers = |extra: &str| {
            nodes
                .iter()
                .map(|n| format!("    server {n}{extra};\n"))
                .collect::<String>()
        };
        format!(
            "load_module {module};\n\
             stream {{\n\
               upstream tcp_nodes {{\n    least_conn;\n{tcp}  }}\n\
               upstream udp_nodes {{\n    hash $remote_addr$remote_port consistent;\n{udp}  }}\n\
               server {{ listen {front}; proxy_pass tcp_nodes; proxy_connect_timeout 2s; proxy_timeout 1h; }}\n\
               server {{ listen {front} udp; proxy_pass udp_nodes; proxy_timeout 1h; }}\n\
             }}\n",
            module = nginx::STREAM_MODULE,
            tcp = servers(" max_fails=1 fail_timeout=30s"),
            udp = servers(""),
        )
    }
}

/// Waits until `f` holds; panics with `what` after 30 s.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One round: every device sends one message to the next one.
fn round(devices: &[Device], ledger: &mut Ledger, label: &str) {
    for (i, device) in devices.iter().enumerate() {
        let to = (i + 1) % devices.len();
        let id = device
            .account
            .send_text(
                &Conversation::Direct(devices[to].username.clone()),
                &format!("{label} {i}->{to}"),
            )
            .unwrap();
        ledger.sent(i, id, [to]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_join_and_drain_behind_nginx_and_every_message_arrives_once() {
    let Some((pg, redis)) = services("load_balancer") else {
        return;
    };
    let Some(nginx_bin) = nginx::binary() else {
        return;
    };
    let schema = Schema::new(&pg, "load_balancer");
    let shared = tempfile::tempdir().unwrap();
    let mut spec = ClusterSpec {
        storage_url: schema.url.clone(),
        redis_url: redis,
        namespace: format!("test-lb-{}", support::random_hex(4)),
        attachments: shared.path().to_owned(),
        cert: None,
    };
    let mut nodes = vec![Node::start(&mut spec)];
    let pin = nodes[0].fingerprint.clone();
    let front = nginx::free_addr();
    let lb = nginx::Nginx::start(&nginx_bin, balancer(front, vec![nodes[0].addr]));
    lb.wait_listening(front).await;
    let via = |transport| {
        ServerConfig::new(front, &pin)
            .unwrap()
            .with_transport(transport)
    };

    // One node: a QUIC and a WebSocket device through the balancer.
    let mut devices = vec![
        user(&via(Transport::Quic), "quinn").await,
        user(&via(Transport::WebSocket), "wendy").await,
    ];
    let mut ledger = Ledger::default();
    for device in &mut devices {
        ledger.record(device.events.take().unwrap());
    }
    round(&devices, &mut ledger, "one node");

    // Grow to three: the new nodes join nginx and take the next
    // connections (least connections sends new TCP clients to them).
    nodes.push(Node::start(&mut spec));
    nodes.push(Node::start(&mut spec));
    assert!(nodes.iter().all(|n| n.fingerprint == pin));
    lb.reload(balancer(front, nodes.iter().map(|n| n.addr).collect()));
    for name in ["xavier", "yvonne"] {
        let mut device = user(&via(Transport::WebSocket), name).await;
        ledger.record(device.events.take().unwrap());
        devices.push(device);
    }
    let mut device = user(&via(Transport::Quic), "quentin").await;
    ledger.record(device.events.take().unwrap());
    devices.push(device);
    // Six connections held open at once: least connections gives each of
    // the three nodes two of them (the old worker's connections are its own).
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(tokio::net::TcpStream::connect(front).await.unwrap());
    }
    eventually(
        "each new node holds two connections from the balancer",
        || tcp_connections_to(nodes[1].addr) >= 2 && tcp_connections_to(nodes[2].addr) >= 2,
    )
    .await;
    drop(held);
    round(&devices, &mut ledger, "three nodes");

    // Shrink to one: out of the balancer first, then drained with SIGTERM;
    // the drained nodes' clients come back through nginx to the last node.
    lb.reload(balancer(front, vec![nodes[2].addr]));
    round(&devices, &mut ledger, "draining");
    nodes[0].terminate();
    nodes[1].terminate();
    round(&devices, &mut ledger, "last node");
    eventually("every WebSocket device is on the last node", || {
        tcp_connections_to(nodes[2].addr) >= 3
    })
    .await;

    ledger
        .assert_exactly_once(Duration::from_secs(60), || {
            format!(
                "last node's log:\n{}\nnginx:\n{}",
                nodes[2].log(),
                lb.error_log()
            )
        })
        .await;
    assert!(ledger.total_expected() >= 4 * 5 - 3, "traffic flowed");
    for i in [0, 1] {
        assert!(
            ledger.logins(i) >= 1,
            "{} came back after the drain",
            devices[i].username
        );
    }
    for device in &devices {
        device.account.disconnect().await;
    }
    drop(schema);
}

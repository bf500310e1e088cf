//! Several server addresses (SPEC.md §12.1): devices spread over them by a
//! stable index, move to the next address when one is dead or goes away,
//! and keep the list across a reopen. The cluster case runs two real
//! in-process nodes on one PostgreSQL schema and one Redis namespace; it
//! needs `MICROBOT_TEST_POSTGRES` and `MICROBOT_TEST_REDIS`
//! (`eval "$(bash scripts/services.sh)"`) and is skipped with a note
//! otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::common;
use microbot_test_support::engines;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{Authenticator, CHEAP_KDF, TestServer, fast_config, next_text, wait_for};
use engines::{Schema, random_hex, services};
use microbot_client::{
    Account, AccountConfig, ConnectionState, Conversation, Enrolment, Event, Events,
    IdentitySource, SecondFactor, ServerConfig, StoreConfig, TransportError,
};
use microbot_server::config::SecretUrl;
use microbot_server::{Config, Server, ShutdownHandle};
use zeroize::Zeroizing;

/// A loopback UDP port nobody listens on.
fn dead_address() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

fn failover_config() -> AccountConfig {
    let mut config = fast_config();
    config.connect_timeout = Duration::from_millis(400);
    config
}

/// Registers and confirms `username` through `server`.
async fn register(server: &ServerConfig, username: &str) -> (String, Authenticator) {
    let password = format!("pw-{username}-secret");
    let registration = microbot_client::register(server, username, &password)
        .await
        .unwrap();
    let mut auth = Authenticator::from_base32(&registration.totp_secret_base32);
    microbot_client::confirm_registration(server, username, &password, &auth.fresh())
        .await
        .unwrap();
    (password, auth)
}

/// Enrols a device of `username` with `server` as its server (not connected).
async fn enrol(
    server: &ServerConfig,
    username: &str,
    password: &str,
    auth: &mut Authenticator,
    dir: &Path,
) -> (Account, Events, StoreConfig) {
    let store = StoreConfig::new(dir.join("client.sqlite3")).with_kdf(CHEAP_KDF);
    let (account, events) = Account::enrol(
        &store,
        server.clone(),
        Enrolment {
            username: username.to_owned(),
            password: Zeroizing::new(password.to_owned()),
            second_factor: SecondFactor::Totp(auth.fresh()),
            identity: IdentitySource::New,
        },
        failover_config(),
    )
    .await
    .unwrap();
    (account, events, store)
}

#[test]
fn a_hundred_devices_spread_evenly_over_three_addresses() {
    let addresses: Vec<SocketAddr> = (1..=3)
        .map(|p| SocketAddr::from(([10, 0, 0, p], 7447)))
        .collect();
    let server = ServerConfig::with_addresses(addresses.clone(), &"ab".repeat(32)).unwrap();
    let mut counts = [0usize; 3];
    for user in 0..25 {
        for device in 1..=4u64 {
            let username = format!("user{user}");
            let index = server.start_index(&username, device);
            assert_eq!(
                index,
                microbot_client::config::start_index(&username, device, 3),
                "the same function as the free helper"
            );
            assert_eq!(index, server.start_index(&username, device), "stable");
            counts[index] += 1;
        }
    }
    assert_eq!(counts.iter().sum::<usize>(), 100);
    assert!(counts.iter().all(|&n| n >= 20), "uneven spread: {counts:?}");

    // The index is the SPEC's: SHA-256(username ‖ 0x00 ‖ device id BE),
    // first 8 bytes big-endian, modulo the count. Pinned values, so another
    // implementation can check itself against these.
    let pinned: Vec<usize> = [
        ("alice", 0),
        ("alice", 1),
        ("bob", 1),
        ("bob", 2),
        ("carol", 7),
    ]
    .iter()
    .map(|(u, d)| microbot_client::config::start_index(u, *d, 1000))
    .collect();
    assert_eq!(pinned, expected_pinned());
    assert_eq!(microbot_client::config::start_index("alice", 1, 0), 0);
    assert_eq!(microbot_client::config::start_index("alice", 1, 1), 0);
}

/// The pinned indexes, computed independently of the SDK with the
/// formula of SPEC.md §12.1 (sha2 directly).
fn expected_pinned() -> Vec<usize> {
    use sha2::{Digest as _, Sha256};
    [
        ("alice", 0u64),
        ("alice", 1),
        ("bob", 1),
        ("bob", 2),
        ("carol", 7),
    ]
    .iter()
    .map(|(u, d)| {
        let mut input = u.as_bytes().to_vec();
        input.push(0);
        input.extend_from_slice(&d.to_be_bytes());
        let digest = Sha256::digest(&input);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        usize::try_from(u64::from_be_bytes(first) % 1000).unwrap()
    })
    .collect()
}

#[test]
fn an_address_list_is_never_empty_and_has_no_repeats() {
    let fp = "cd".repeat(32);
    let a = SocketAddr::from(([127, 0, 0, 1], 1));
    let b = SocketAddr::from(([127, 0, 0, 1], 2));
    assert!(matches!(
        ServerConfig::with_addresses(Vec::new(), &fp),
        Err(TransportError::Config(_))
    ));
    assert!(matches!(
        ServerConfig::with_addresses([a], "not hex"),
        Err(TransportError::Config(_))
    ));
    let server = ServerConfig::with_addresses([a, b, a], &fp).unwrap();
    assert_eq!(server.addresses(), [a, b]);
    let single = ServerConfig::new(a, &fp).unwrap();
    assert_eq!(single.addresses(), [a]);
    assert_eq!(single.start_index("anyone", 42), 0);
    assert_eq!(single.with_fallbacks([b, a, b]).addresses(), [a, b]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_first_address_is_dead_connects_through_the_next() {
    let server = TestServer::start().await;
    let dead = dead_address();
    let list = ServerConfig::with_addresses([dead, server.addr], &server.config.fingerprint_hex())
        .unwrap();

    // Devices get their ids from the server, so enrol users until one
    // device's own index points at the dead address (each does with
    // probability 1/2). Enrolment goes through the list too (registration
    // does not: its handshake timeout is the default 10 s).
    let mut found = None;
    for attempt in 0..24 {
        let username = format!("dana{attempt}");
        let (password, mut auth) = register(&server.config, &username).await;
        let dir = tempfile::tempdir().unwrap();
        let (account, events, store) =
            enrol(&list, &username, &password, &mut auth, dir.path()).await;
        if list.addresses()[list.start_index(&username, account.device_id())] == dead {
            found = Some((account, events, store, dir));
            break;
        }
    }
    let (account, mut events, store, _dir) = found.expect("some device starts at the dead address");

    account.connect();
    // The dead address fails (handshake timeout), the device moves on at
    // once (no backoff within a round) and logs in through the live one.
    let retry = wait_for(&mut events, |e| match e {
        Event::Connection(ConnectionState::Disconnected { retry_in_ms, .. }) => Some(*retry_in_ms),
        _ => None,
    })
    .await;
    assert_eq!(retry, 0, "the next address is tried without waiting");
    common::wait_connected(&mut events).await;
    assert_eq!(account.connected_to(), Some(server.addr));
    account.disconnect().await;
    assert_eq!(account.connected_to(), None);
    drop(account);

    // The store keeps the whole list, in order.
    let (reopened, _events) = Account::open(&store, failover_config()).unwrap();
    assert_eq!(reopened.server().addresses(), [dead, server.addr]);
    assert_eq!(reopened.server().fingerprint, list.fingerprint);
    drop(reopened);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_address_dead_the_device_backs_off_once_per_round() {
    let server = TestServer::start().await;
    let (password, mut auth) = register(&server.config, "erin").await;
    let dir = tempfile::tempdir().unwrap();
    // Enrolled with the live server and two dead addresses behind it.
    let list = server
        .config
        .clone()
        .with_fallbacks([dead_address(), dead_address()]);
    assert_eq!(list.addresses().len(), 3);
    let (account, events, store) = enrol(&list, "erin", &password, &mut auth, dir.path()).await;
    drop((account, events));
    let addr = server.addr;
    let data = server.stop().await;

    let (account, mut events) = Account::open(&store, failover_config()).unwrap();
    account.connect();
    // Three addresses, all dead: two immediate moves, then one wait.
    let mut retries = Vec::new();
    while retries.len() < 6 {
        let retry = wait_for(&mut events, |e| match e {
            Event::Connection(ConnectionState::Disconnected { retry_in_ms, .. }) => {
                Some(*retry_in_ms)
            }
            _ => None,
        })
        .await;
        retries.push(retry);
    }
    let waited: Vec<bool> = retries.iter().map(|r| *r > 0).collect();
    assert_eq!(
        waited,
        [false, false, true, false, false, true],
        "one wait per round of three addresses: {retries:?}"
    );

    // The server comes back at its address: the device gets there.
    let server = TestServer::start_in(data, addr).await;
    common::wait_connected(&mut events).await;
    assert_eq!(account.connected_to(), Some(addr));
    account.disconnect().await;
    server.stop().await;
}

/// One in-process cluster node.
struct Node {
    addr: SocketAddr,
    fingerprint: String,
    dir: tempfile::TempDir,
    handle: ShutdownHandle,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// A node on the shared database, bus and attachments directory; with
    /// `cert` the certificate of an earlier node (one pin for the cluster).
    async fn start(
        schema: &Schema,
        redis: &str,
        namespace: &str,
        shared: &Path,
        cert: Option<&Node>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            totp_skew_steps: 10,
            shutdown_grace_secs: 1,
            storage: Some(SecretUrl::new(schema.url.clone())),
            storage_pool_size: 4,
            redis: Some(SecretUrl::new(redis)),
            redis_namespace: namespace.to_owned(),
            attachments_dir: Some(shared.to_owned()),
            cert_pem: cert.map(|n| n.dir.path().join("cert.pem")),
            key_pem: cert.map(|n| n.dir.path().join("key.pem")),
            ..Config::default()
        };
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let fingerprint = server.fingerprint().to_owned();
        let (handle, rx) = server.handle();
        let task = tokio::spawn(server.run(rx));
        Self {
            addr,
            fingerprint,
            dir,
            handle,
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_its_node_stops_a_device_moves_to_another_and_gets_what_was_sent_meanwhile() {
    let Some((pg, redis)) = services("failover cluster test") else {
        return;
    };
    let schema = Schema::new(&pg, "client_failover");
    let shared = tempfile::tempdir().unwrap();
    let namespace = format!("test-client-failover-{}", random_hex(4));
    let mut first = Node::start(&schema, &redis, &namespace, shared.path(), None).await;
    let mut second = Node::start(&schema, &redis, &namespace, shared.path(), Some(&first)).await;
    assert_eq!(first.fingerprint, second.fingerprint, "one certificate");
    let cluster =
        ServerConfig::with_addresses([first.addr, second.addr], &first.fingerprint).unwrap();

    let (alice_password, mut alice_auth) = register(&cluster, "alice").await;
    let (bob_password, mut bob_auth) = register(&cluster, "bob").await;
    let alice_dir = tempfile::tempdir().unwrap();
    let bob_dir = tempfile::tempdir().unwrap();
    let (alice, mut alice_events, _) = enrol(
        &cluster,
        "alice",
        &alice_password,
        &mut alice_auth,
        alice_dir.path(),
    )
    .await;
    let (bob, mut bob_events, _) = enrol(
        &cluster,
        "bob",
        &bob_password,
        &mut bob_auth,
        bob_dir.path(),
    )
    .await;
    alice.connect();
    bob.connect();
    common::wait_connected(&mut alice_events).await;
    common::wait_connected(&mut bob_events).await;
    let to_bob = Conversation::Direct("bob".into());
    alice.send_text(&to_bob, "before").unwrap();
    assert_eq!(next_text(&mut bob_events).await.text, "before");

    // Node A is the one Bob is on; it stops. Bob's connection closes and he
    // logs in through node B by himself (no backoff: B is the next address).
    let on = bob.connected_to().unwrap();
    assert!(cluster.addresses().contains(&on));
    let (node_a, node_b) = if on == first.addr {
        (&mut first, &second)
    } else {
        (&mut second, &first)
    };
    node_a.stop().await;
    let retry = wait_for(&mut bob_events, |e| match e {
        Event::Connection(ConnectionState::Disconnected { retry_in_ms, .. }) => Some(*retry_in_ms),
        _ => None,
    })
    .await;
    assert_eq!(retry, 0, "straight to the next node");
    alice.send_text(&to_bob, "while node A is down").unwrap();
    assert_eq!(
        next_text(&mut bob_events).await.text,
        "while node A is down"
    );
    assert_eq!(bob.connected_to(), Some(node_b.addr));
    alice.disconnect().await;
    bob.disconnect().await;
    drop((first, second));
    drop(schema);
}
